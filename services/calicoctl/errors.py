"""Errors calicoctl reports: each becomes one message on stderr and exit status 1."""

from __future__ import annotations


class CalicoctlError(Exception):
    """Base class: a failure reported to the user as its message, exit status 1."""


class UsageError(CalicoctlError):
    """The command line does not match the command's usage."""

    def __init__(self, argv: list[str]) -> None:
        super().__init__(
            f"Invalid option: 'calicoctl {' '.join(argv)}'. Use flag '--help' to read about a specific subcommand."
        )


class ManifestError(CalicoctlError):
    """A file, directory or stdin could not be read or holds an invalid document; nothing was written."""


class EmptyManifest(CalicoctlError):
    """A file or directory holds no resources (and --skip-empty was not given)."""


class ClientConfigError(CalicoctlError):
    """The datastore connection could not be configured or opened."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"Failed to create Calico API client: {reason}")


class OperationNotSupported(CalicoctlError):
    """An operation calicoctl refuses for a kind or resource (Calico's ErrorOperationNotSupported)."""

    def __init__(self, operation: str, identifier: str, reason: str = "") -> None:
        tail = f": {reason}" if reason else ""
        super().__init__(f"operation {operation} is not supported on {identifier}{tail}")


class NamespaceError(CalicoctlError):
    """The namespace flags do not fit the resource kind or the resource's own namespace."""
