"""Errors the service runtime raises on purpose."""

from __future__ import annotations

from libcalico.errors import CalicoError


class ServiceError(CalicoError):
    """Base class of every error of the service runtime."""


class SettingsError(ServiceError, ValueError):
    """A setting could not be loaded: says which parameter, from where, and why.

    ``param`` is the Calico parameter name (``HealthPort``), empty for a problem with a
    whole source (an unreadable config file); ``source`` says where the bad value came
    from (``environment variable TYPHA_HEALTHPORT``, ``/etc/calico/typha.cfg:3``,
    ``flag --health-port``).
    """

    def __init__(self, reason: str, *, param: str = "", source: str = "", raw: str | None = None) -> None:
        self.reason = reason
        self.param = param
        self.source = source
        self.raw = raw
        parts = []
        if source:
            parts.append(source)
        if param:
            parts.append(f"invalid value {raw!r} for {param}" if raw is not None else param)
        parts.append(reason)
        super().__init__(": ".join(parts))
