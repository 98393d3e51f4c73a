"""How to reach etcd: endpoints, TLS files and timeouts, read from Calico's environment variables.

``ETCD_ENDPOINTS`` is a comma-separated list of ``http://`` or ``https://``
URLs (a bare ``host:port`` means ``http://``). TLS client authentication comes
from ``ETCD_CERT_FILE`` and ``ETCD_KEY_FILE`` (always together) and the server
is checked against ``ETCD_CA_CERT_FILE`` (or the system roots when it is not
given). Every mistake is a :class:`~libcalico.errors.ValidationError` naming
the variable.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from libcalico.errors import ValidationError

DEFAULT_ENDPOINTS = "http://127.0.0.1:2379"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One etcd member's client address."""

    host: str
    port: int
    secure: bool

    @property
    def target(self) -> str:
        """The gRPC target string (``host:port``, IPv6 in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def __str__(self) -> str:
        return f"{'https' if self.secure else 'http'}://{self.target}"


@dataclass(frozen=True, slots=True)
class TLSConfig:
    """PEM bytes for a TLS channel; ``ca`` None means the system roots."""

    ca: bytes | None
    cert: bytes | None
    key: bytes | None


@dataclass(frozen=True, slots=True)
class EtcdConfig:
    """Everything needed to open the etcd backend."""

    endpoints: tuple[Endpoint, ...]
    tls: TLSConfig | None = None
    request_timeout: float = 10.0  # one RPC
    connect_timeout: float = 3.0  # reaching one member
    retry_timeout: float = 15.0  # failing over and reconnecting, in all
    page_size: int = 1000  # keys per Range page when listing

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> EtcdConfig:
        """Read ``ETCD_ENDPOINTS`` and the ``ETCD_*_FILE`` variables; raise ValidationError."""
        endpoints = parse_endpoints(env.get("ETCD_ENDPOINTS") or DEFAULT_ENDPOINTS)
        tls = _read_tls(env)
        secure = {e.secure for e in endpoints}
        if len(secure) > 1:
            raise ValidationError("ETCD_ENDPOINTS", "mixes http:// and https:// endpoints")
        if tls is not None and not endpoints[0].secure:
            raise ValidationError(
                "ETCD_ENDPOINTS",
                "TLS files are set (ETCD_CA_CERT_FILE/ETCD_CERT_FILE/ETCD_KEY_FILE) "
                "but the endpoints are http://; use https://",
            )
        if tls is None and endpoints[0].secure:
            tls = TLSConfig(None, None, None)
        return cls(endpoints=endpoints, tls=tls)


def parse_endpoints(text: str) -> tuple[Endpoint, ...]:
    """Parse a comma-separated endpoint list; raise ValidationError naming the bad entry."""
    out: list[Endpoint] = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        url = item if "://" in item else f"http://{item}"
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https"):
            raise ValidationError("ETCD_ENDPOINTS", f"{item!r}: scheme must be http or https")
        try:
            port = parsed.port
        except ValueError:
            raise ValidationError("ETCD_ENDPOINTS", f"{item!r}: bad port") from None
        if not parsed.hostname:
            raise ValidationError("ETCD_ENDPOINTS", f"{item!r}: no host")
        if parsed.path not in ("", "/") or parsed.query or parsed.fragment:
            raise ValidationError("ETCD_ENDPOINTS", f"{item!r}: an endpoint has no path or query")
        out.append(Endpoint(parsed.hostname, port or 2379, parsed.scheme == "https"))
    if not out:
        raise ValidationError("ETCD_ENDPOINTS", "no endpoint given")
    return tuple(out)


def _read_file(env: Mapping[str, str], var: str) -> bytes | None:
    path = env.get(var) or ""
    if not path:
        return None
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ValidationError(var, f"cannot read {path}: {exc.strerror or exc}") from exc
    if b"-----BEGIN" not in data:
        raise ValidationError(var, f"{path} is not a PEM file")
    return data


def _read_tls(env: Mapping[str, str]) -> TLSConfig | None:
    cert_set = bool(env.get("ETCD_CERT_FILE"))
    key_set = bool(env.get("ETCD_KEY_FILE"))
    if cert_set != key_set:
        missing = "ETCD_KEY_FILE" if cert_set else "ETCD_CERT_FILE"
        given = "ETCD_CERT_FILE" if cert_set else "ETCD_KEY_FILE"
        raise ValidationError(
            missing, f"must be set together with {given} (partial TLS configuration)"
        )
    ca = _read_file(env, "ETCD_CA_CERT_FILE")
    cert = _read_file(env, "ETCD_CERT_FILE")
    key = _read_file(env, "ETCD_KEY_FILE")
    if ca is None and cert is None:
        return None
    return TLSConfig(ca, cert, key)
