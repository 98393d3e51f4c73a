"""The etcd backend's configuration: endpoints, TLS client certificates, and clear failures."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from libcalico.datastore import backend_from_env
from libcalico.datastore.etcd import EtcdBackend
from libcalico.datastore.etcd_config import EtcdConfig, parse_endpoints
from libcalico.errors import Unavailable, ValidationError
from tests.fixtures.etcd import EtcdCluster

KEY = "/calico/resources/v3/projectcalico.org/ippools/p1"
POOL = {
    "apiVersion": "projectcalico.org/v3",
    "kind": "IPPool",
    "metadata": {"name": "p1"},
    "spec": {"cidr": "10.1.0.0/16", "ipipMode": "Never", "vxlanMode": "Always"},
}


async def test_right_certificates_work(etcd_tls: EtcdCluster) -> None:
    backend = backend_from_env(etcd_tls.env())
    assert isinstance(backend, EtcdBackend)
    try:
        created = await backend.create(KEY, POOL)
        assert await backend.get(KEY) == created
        listing = await backend.list("/calico/resources/v3/projectcalico.org/ippools/")
        assert listing.items == [created]
        assert backend.connected_endpoint == etcd_tls.members[0].client_url
        assert backend.connected_endpoint.startswith("https://")
    finally:
        await backend.close()


async def test_wrong_ca_fails_fast_and_says_tls(etcd_tls: EtcdCluster) -> None:
    assert etcd_tls.tls is not None
    backend = EtcdBackend.from_env(etcd_tls.env(ca=etcd_tls.tls.other_ca), retry_timeout=30)
    try:
        started = time.monotonic()
        with pytest.raises(Unavailable) as caught:
            await backend.get(KEY)
        assert time.monotonic() - started < 5, "a TLS failure must not wait out the retry budget"
        message = str(caught.value)
        assert "TLS handshake with etcd failed" in message
        assert "CERTIFICATE_VERIFY_FAILED" in message and "ETCD_CA_CERT_FILE" in message
    finally:
        await backend.close()
    assert etcd_tls.count() == 0


async def test_missing_client_certificate_fails_and_says_so(etcd_tls: EtcdCluster) -> None:
    backend = EtcdBackend.from_env(etcd_tls.env(with_client_cert=False), retry_timeout=30)
    try:
        started = time.monotonic()
        with pytest.raises(Unavailable) as caught:
            await backend.create(KEY, POOL)
        assert time.monotonic() - started < 5
        assert "client certificate" in str(caught.value) and "ETCD_CERT_FILE" in str(caught.value)
    finally:
        await backend.close()
    assert etcd_tls.count() == 0, "nothing may be written without a client certificate"


async def test_plain_client_against_tls_server_is_unavailable(etcd_tls: EtcdCluster) -> None:
    url = etcd_tls.members[0].client_url.replace("https://", "http://")
    backend = EtcdBackend.from_env({"ETCD_ENDPOINTS": url}, retry_timeout=1.0, connect_timeout=0.3)
    try:
        with pytest.raises(Unavailable, match="no etcd endpoint reachable"):
            await backend.get(KEY)
    finally:
        await backend.close()


# ------------------------------------------------------------------ configuration errors (no etcd needed)


def test_partial_tls_configuration_is_an_error(tmp_path: Path) -> None:
    cert = tmp_path / "c.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
    with pytest.raises(ValidationError) as caught:
        EtcdConfig.from_env(
            {"ETCD_ENDPOINTS": "https://127.0.0.1:2379", "ETCD_CERT_FILE": str(cert)}
        )
    assert caught.value.field == "ETCD_KEY_FILE" and "partial TLS" in caught.value.reason
    with pytest.raises(ValidationError) as caught:
        EtcdConfig.from_env(
            {"ETCD_ENDPOINTS": "https://127.0.0.1:2379", "ETCD_KEY_FILE": str(cert)}
        )
    assert caught.value.field == "ETCD_CERT_FILE"


def test_unreadable_or_non_pem_files_name_the_variable(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(ValidationError) as caught:
        EtcdConfig.from_env({"ETCD_ENDPOINTS": "https://h:2379", "ETCD_CA_CERT_FILE": str(missing)})
    assert caught.value.field == "ETCD_CA_CERT_FILE" and str(missing) in caught.value.reason
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(ValidationError) as caught:
        EtcdConfig.from_env({"ETCD_ENDPOINTS": "https://h:2379", "ETCD_CA_CERT_FILE": str(junk)})
    assert caught.value.field == "ETCD_CA_CERT_FILE" and "not a PEM file" in caught.value.reason


def test_tls_files_with_http_endpoints_is_an_error(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
    with pytest.raises(ValidationError, match="use https://") as caught:
        EtcdConfig.from_env(
            {"ETCD_ENDPOINTS": "http://127.0.0.1:2379", "ETCD_CA_CERT_FILE": str(ca)}
        )
    assert caught.value.field == "ETCD_ENDPOINTS"


def test_endpoint_list_parsing() -> None:
    eps = parse_endpoints(
        " http://10.0.0.1:2379, https://etcd.example:4001 ,127.0.0.1:22379,http://[::1]:2379"
    )
    assert [str(e) for e in eps] == [
        "http://10.0.0.1:2379",
        "https://etcd.example:4001",
        "http://127.0.0.1:22379",
        "http://[::1]:2379",
    ]
    assert parse_endpoints("http://h")[0].port == 2379
    for bad, why in [
        ("", "no endpoint"),
        ("ftp://h:1", "scheme"),
        ("http://h:99999", "bad port"),
        ("http://h:1/v3", "no path"),
        ("http://:1", "no host"),
    ]:
        with pytest.raises(ValidationError, match=why) as caught:
            parse_endpoints(bad)
        assert caught.value.field == "ETCD_ENDPOINTS"
    with pytest.raises(ValidationError, match="mixes"):
        EtcdConfig.from_env({"ETCD_ENDPOINTS": "http://a:1,https://b:2"})


async def test_bad_values_are_refused_before_anything_is_written(
    etcd_backend: EtcdBackend, etcd_server: EtcdCluster
) -> None:
    with pytest.raises(ValidationError) as caught:
        await etcd_backend.create(KEY, ["not", "a", "map"])  # type: ignore[arg-type]
    assert caught.value.field == "value"
    with pytest.raises(ValidationError) as caught:
        await etcd_backend.create(KEY, {"x": float("nan")})
    assert caught.value.field == "value"
    with pytest.raises(ValidationError) as caught:
        await etcd_backend.create("relative/key", POOL)
    assert caught.value.field == "key"
    for ttl in (0, -1, float("inf")):
        with pytest.raises(ValidationError) as caught:
            await etcd_backend.create(KEY, POOL, ttl=ttl)
        assert caught.value.field == "ttl"
    for size in (1_600_000, 2 * 1024 * 1024):  # over etcd's request limit, then over its gRPC limit
        with pytest.raises(ValidationError) as caught:
            await etcd_backend.create(KEY, {"blob": "x" * size})
        assert caught.value.field == "value" and "too large" in caught.value.reason
    assert etcd_server.count() == 0
