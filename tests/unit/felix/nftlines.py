"""Batch scripts as lines of single commands, for tests that look for ``add rule`` lines.

The dataplane writes new chains' rules as ``chain … { … }`` blocks inside one
``table inet calico { … }`` block (``Batch.add_chain_block``); this turns each
rule there back into the ``add rule inet calico <chain> <rule>`` line it
stands for, and leaves every other line as it is.
"""

from __future__ import annotations


def script_lines(text: str) -> list[str]:
    """``text``'s lines, with the rules of chain blocks as ``add rule`` lines."""
    out: list[str] = []
    table: str | None = None
    chain: str | None = None
    for line in text.splitlines():
        if table is None and line.startswith("table ") and line.endswith(" {"):
            table = line[len("table "):-2]
        elif table is not None and chain is None and line == "}":
            table = None
        elif table is not None and chain is None:
            assert line.startswith("chain ") and line.endswith(" {"), line
            chain = line[len("chain "):-2]
        elif chain is not None and line == "}":
            chain = None
        elif chain is not None:
            out.append(f"add rule {table} {chain} {line}")
        else:
            out.append(line)
    assert table is None and chain is None, "an unclosed block"
    return out
