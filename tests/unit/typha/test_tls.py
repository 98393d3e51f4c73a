"""TLS configuration checks and the CN / URI SAN identity check, with real certificates."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trustme

from libcalico.typha.tls import (
    PeerNotAllowed,
    TLSConfig,
    TLSConfigError,
    certificate_names,
    check_identity,
)
from tests.unit.typha.certs import issue, write_ca


@pytest.mark.parametrize(
    ("config", "missing"),
    [
        (TLSConfig(ca_file="ca.pem"), "certificate file, key file, CN or URI SAN"),
        (TLSConfig(ca_file="ca", cert_file="c", key_file="k"), "CN or URI SAN"),
        (TLSConfig(peer_cn="felix"), "CA file, certificate file, key file"),
        (TLSConfig(cert_file="c", key_file="k", peer_uri_san="spiffe://x"), "CA file"),
    ],
)
def test_partial_configuration_names_what_is_missing(config: TLSConfig, missing: str) -> None:
    with pytest.raises(TLSConfigError, match=f"missing: {missing}$"):
        config.check()


def test_complete_or_empty_configuration_passes() -> None:
    TLSConfig().check()
    TLSConfig("ca", "c", "k", peer_cn="typha").check()
    TLSConfig("ca", "c", "k", peer_uri_san="spiffe://cluster/typha").check()
    assert not TLSConfig().enabled


def test_unloadable_files_are_a_config_error(tmp_path: Path) -> None:
    cfg = TLSConfig(str(tmp_path / "nope.pem"), str(tmp_path / "c.pem"), str(tmp_path / "k.pem"), peer_cn="x")
    with pytest.raises(TLSConfigError, match="cannot load TLS files"):
        cfg.server_context()


def _peercert(ca: trustme.CA, tmp_path: Path, **names: str) -> dict:
    files = issue(ca, tmp_path, "leaf", **names)
    return ssl._ssl._test_decode_cert(files.cert)  # type: ignore[attr-defined]


def test_identity_by_cn_or_uri_san(tmp_path: Path) -> None:
    ca = trustme.CA()
    by_cn = _peercert(ca, tmp_path / "a", cn="typha-client")
    assert certificate_names(by_cn)[0] == ["typha-client"]
    check_identity(by_cn, "typha-client", "")
    check_identity(by_cn, "typha-client", "spiffe://other")
    with pytest.raises(PeerNotAllowed, match="matches neither the required CN felix"):
        check_identity(by_cn, "felix", "")
    by_uri = _peercert(ca, tmp_path / "b", cn="other", uri="spiffe://cluster.local/ns/calico/sa/felix")
    assert certificate_names(by_uri)[1] == ["spiffe://cluster.local/ns/calico/sa/felix"]
    check_identity(by_uri, "", "spiffe://cluster.local/ns/calico/sa/felix")
    check_identity(by_uri, "felix", "spiffe://cluster.local/ns/calico/sa/felix")
    with pytest.raises(PeerNotAllowed):
        check_identity(by_uri, "felix", "spiffe://cluster.local/ns/calico/sa/typha")
    with pytest.raises(PeerNotAllowed):
        check_identity(None, "felix", "spiffe://x")
    with pytest.raises(PeerNotAllowed):
        check_identity(by_cn, "", "")  # nothing required means nothing is accepted


def test_contexts_always_verify_the_chain(tmp_path: Path) -> None:
    ca = trustme.CA()
    leaf = issue(ca, tmp_path, "srv", cn="typha")
    cfg = TLSConfig(write_ca(ca, tmp_path), leaf.cert, leaf.key, peer_cn="felix")
    for ctx in (cfg.server_context(), cfg.client_context()):
        assert ctx.verify_mode is ssl.CERT_REQUIRED
        assert ctx.check_hostname is False
        assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2
