"""Errors of Felix's Linux dataplane; every one derives from :class:`DataplaneError`."""

from __future__ import annotations


class DataplaneError(Exception):
    """Base class of every error the dataplane raises on purpose."""


class NamespaceError(DataplaneError):
    """A network namespace could not be opened or entered."""


class NftablesError(DataplaneError):
    """``nft`` rejected a batch (syntax or kernel); the kernel kept its previous ruleset."""

    def __init__(self, message: str, *, batch_lines: int = 0) -> None:
        super().__init__(message)
        self.batch_lines = batch_lines


class RenderError(DataplaneError, ValueError):
    """A message cannot be rendered into nftables rules; ``where`` names the rule or object."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"{where}: {reason}" if where else reason)
        self.where = where
        self.reason = reason


class CapabilityMissing(DataplaneError):
    """The kernel lacks a feature (e.g. the ``ipip`` device) that a configuration asks for."""


class NetlinkOperationError(DataplaneError):
    """A route, link, neighbour or address operation failed."""
