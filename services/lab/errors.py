"""Errors of calico-lab: every failure says which host (if any) and which step."""

from __future__ import annotations


class LabError(Exception):
    """A lab operation failed; ``host`` and ``step`` say where."""

    def __init__(self, message: str, *, host: str | None = None, step: str | None = None) -> None:
        self.message = message
        self.host = host
        self.step = step
        where = []
        if host:
            where.append(f"host {host}")
        if step:
            where.append(f"step '{step}'")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)

    def at(self, *, host: str | None = None, step: str | None = None) -> LabError:
        """The same error, with a host and step filled in where it had none."""
        return LabError(self.message, host=self.host or host, step=self.step or step)


class CommandFailed(LabError):
    """An external command (ip, nft, a CNI plugin) exited non-zero."""
