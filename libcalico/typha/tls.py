"""TLS between Typha and its clients: contexts for both ends and the peer identity check.

How it works: both ends always verify the peer's certificate chain against
their CA file (``CERT_REQUIRED``); neither matches host names. Instead, once
the handshake is done, the peer is allowed only if its certificate's Common
Name equals the expected CN or one of its URI SANs equals the expected URI SAN
(Calico's ``TYPHA_CLIENTCN`` / ``TYPHA_CLIENTURISAN`` on the server,
``FELIX_TYPHACN`` / ``FELIX_TYPHAURISAN`` on the client). Skipping host-name
matching never skips the chain check.

A TLS configuration is all or nothing: CA, certificate and key, and at least
one of CN or URI SAN. Anything in between is a :class:`TLSConfigError`.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from libcalico.errors import CalicoError


class TLSConfigError(CalicoError, ValueError):
    """A TLS configuration is partial or its files cannot be loaded."""


class PeerNotAllowed(CalicoError):
    """The peer's certificate is valid but names neither the expected CN nor the expected URI SAN."""


@dataclass(frozen=True, slots=True)
class TLSConfig:
    """One end's TLS files and the identity it requires of its peer."""

    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    peer_cn: str = ""
    peer_uri_san: str = ""

    @property
    def enabled(self) -> bool:
        """Whether any TLS parameter is set (then all must be, see :meth:`check`)."""
        return any((self.ca_file, self.cert_file, self.key_file, self.peer_cn, self.peer_uri_san))

    def check(self, names: Mapping[str, str] | None = None) -> None:
        """Raise TLSConfigError naming what is missing when the configuration is partial."""
        if not self.enabled:
            return
        labels = {"ca_file": "CA file", "cert_file": "certificate file", "key_file": "key file",
                  "peer_cn": "CN", "peer_uri_san": "URI SAN"}
        labels.update(names or {})
        missing = [labels[f] for f in ("ca_file", "cert_file", "key_file") if not getattr(self, f)]
        if not (self.peer_cn or self.peer_uri_san):
            missing.append(f"{labels['peer_cn']} or {labels['peer_uri_san']}")
        if missing:
            raise TLSConfigError(
                "partial TLS configuration: when any TLS parameter is set, all must be "
                f"(either CN or URI SAN may be left unset); missing: {', '.join(missing)}"
            )

    def _context(self, purpose: int) -> ssl.SSLContext:
        self.check()
        ctx = ssl.SSLContext(purpose)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.check_hostname = False  # identity is checked by CN / URI SAN after the handshake
        ctx.verify_mode = ssl.CERT_REQUIRED  # the chain is always verified
        try:
            ctx.load_verify_locations(cafile=self.ca_file)
            ctx.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise TLSConfigError(f"cannot load TLS files (CA {self.ca_file}, certificate {self.cert_file}, "
                                 f"key {self.key_file}): {exc}") from exc
        return ctx

    def server_context(self) -> ssl.SSLContext:
        """A server context that requires and verifies client certificates."""
        return self._context(ssl.PROTOCOL_TLS_SERVER)

    def client_context(self) -> ssl.SSLContext:
        """A client context that verifies the server's chain and presents our certificate."""
        return self._context(ssl.PROTOCOL_TLS_CLIENT)

    def check_peer(self, cert: Mapping[str, Any] | None) -> None:
        """Raise PeerNotAllowed unless the verified peer certificate names the expected CN or URI SAN."""
        check_identity(cert, self.peer_cn, self.peer_uri_san)


def certificate_names(cert: Mapping[str, Any] | None) -> tuple[list[str], list[str]]:
    """The Common Names and URI SANs of a certificate as ``SSLSocket.getpeercert()`` returns it."""
    if not cert:
        return [], []
    cns = [value for rdn in cert.get("subject", ()) for (name, value) in rdn if name == "commonName"]
    uris = [value for (kind, value) in cert.get("subjectAltName", ()) if kind == "URI"]
    return cns, uris


def check_identity(cert: Mapping[str, Any] | None, cn: str, uri_san: str) -> None:
    """Raise PeerNotAllowed unless ``cert`` has CN ``cn`` or a URI SAN ``uri_san`` (empty: not accepted)."""
    cns, uris = certificate_names(cert)
    if cn and cn in cns:
        return
    if uri_san and uri_san in uris:
        return
    raise PeerNotAllowed(
        f"peer certificate (CN {cns or '-'}, URI SANs {uris or '-'}) matches neither "
        f"the required CN {cn or '-'} nor the required URI SAN {uri_san or '-'}"
    )
