"""Looking a kind up by its exact name loads that kind's module only; listing kinds loads them all, in order."""

from __future__ import annotations

import json
import subprocess
import sys


def _run(code: str) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout)


def test_kind_class_loads_only_the_module_of_that_kind() -> None:
    got = _run(
        "import json, sys\n"
        "from libcalico.resources.base import kind_class\n"
        "cls = kind_class('Tier')\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('libcalico.resources.'))\n"
        "print(json.dumps({'kind': cls.KIND.kind, 'loaded': loaded}))\n"
    )
    assert got["kind"] == "Tier"
    loaded = set(got["loaded"])  # type: ignore[arg-type]
    assert "libcalico.resources.policy" in loaded
    assert not loaded & {"libcalico.resources.felixconfig", "libcalico.resources.bgp", "libcalico.resources.node"}


def test_all_kinds_keeps_the_package_order_after_a_lazy_lookup() -> None:
    got = _run(
        "import json\n"
        "from libcalico.resources.base import all_kinds, kind_class\n"
        "kind_class('Tier'); kind_class('IPPool')\n"
        "print(json.dumps({'after': [c.KIND.kind for c in all_kinds()]}))\n"
    )
    fresh = _run(
        "import json\n"
        "from libcalico.resources.base import all_kinds\n"
        "print(json.dumps({'after': [c.KIND.kind for c in all_kinds()]}))\n"
    )
    assert got["after"] == fresh["after"]
    assert len(fresh["after"]) == 19  # type: ignore[arg-type]
