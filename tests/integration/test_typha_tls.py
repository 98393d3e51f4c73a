"""TLS between calico-typha and its clients, with trustme certificates: who is let in, who is not.

Refused: a client with the wrong CN, one whose certificate an untrusted CA
signed, one with no certificate; a server whose CN the client does not expect;
a server the client's CA did not sign. A client that opens TCP and never starts
the handshake delays nobody: the handshake runs in its own task.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from libcalico.datastore.sqlite import SqliteBackend
from libcalico.syncer import SyncStatus, ViewCallbacks
from libcalico.typha.client import TyphaClient
from libcalico.typha.tls import TLSConfig
from tests.unit.typha.certs import CertFiles, issue, write_ca
from tests.unit.typha.harness import RawClient, TyphaProcess, async_wait_until, hello
from tests.unit.typha.samples import global_policy


@dataclass
class PKI:
    ca: str
    other_ca: str
    server: CertFiles
    client: CertFiles
    client_uri: CertFiles
    wrong_cn: CertFiles
    untrusted: CertFiles


@pytest.fixture
def pki(tmp_path: Path) -> PKI:
    ca, other = trustme.CA(), trustme.CA()
    d = tmp_path / "pki"
    return PKI(
        ca=write_ca(ca, d), other_ca=write_ca(other, d, "other-ca"),
        server=issue(ca, d, "server", cn="typha-server"),
        client=issue(ca, d, "client", cn="typha-client"),
        client_uri=issue(ca, d, "client-uri", cn="someone", uri="spiffe://cluster.local/ns/calico/sa/felix"),
        wrong_cn=issue(ca, d, "wrong", cn="intruder"),
        untrusted=issue(other, d, "untrusted", cn="typha-client"),
    )


@pytest.fixture
async def typha(pki: PKI, sqlite_backend: SqliteBackend, sqlite_env: dict[str, str]
                ) -> AsyncIterator[TyphaProcess]:
    await sqlite_backend.create(*global_policy(1))
    proc = TyphaProcess({**sqlite_env, "TYPHA_CAFILE": pki.ca, "TYPHA_SERVERCERTFILE": pki.server.cert,
                         "TYPHA_SERVERKEYFILE": pki.server.key, "TYPHA_CLIENTCN": "typha-client",
                         "TYPHA_CLIENTURISAN": "spiffe://cluster.local/ns/calico/sa/felix",
                         "TYPHA_SERVERHANDSHAKETIMEOUTSECS": "3"})
    yield proc
    proc.kill()


def client_tls(pki: PKI, cert: CertFiles, *, ca: str | None = None, cn: str = "typha-server",
               uri: str = "") -> TLSConfig:
    return TLSConfig(ca or pki.ca, cert.cert, cert.key, peer_cn=cn, peer_uri_san=uri)


async def _sync(typha: TyphaProcess, tls: TLSConfig, timeout: float = 15) -> TyphaClient:
    view = ViewCallbacks()
    client = TyphaClient([typha.address], "felix", node="n1", callbacks=view, tls=tls)
    async with client:
        await view.wait_for_status(SyncStatus.IN_SYNC, timeout=timeout)
        assert global_policy(1)[0] in view.view
    return client


async def _refused(typha: TyphaProcess, tls: TLSConfig) -> str:
    view = ViewCallbacks()
    client = TyphaClient([typha.address], "felix", node="n1", callbacks=view, tls=tls)
    async with client:
        await async_wait_until(lambda: client.last_end, 10, "a failed attempt")
        await asyncio.sleep(0.3)
    assert client.connections == 0
    assert view.status is SyncStatus.WAIT_FOR_DATASTORE
    return client.last_end


async def test_allowed_clients_by_cn_and_by_uri_san(typha: TyphaProcess, pki: PKI) -> None:
    await _sync(typha, client_tls(pki, pki.client))
    await _sync(typha, client_tls(pki, pki.client_uri))
    # The client requires the server's CN or a URI SAN; the CN alone is enough.
    await _sync(typha, client_tls(pki, pki.client, uri="spiffe://cluster.local/ns/calico/sa/typha"))


async def test_refused_clients(typha: TyphaProcess, pki: PKI, tmp_path: Path) -> None:
    await _refused(typha, client_tls(pki, pki.wrong_cn))
    await async_wait_until(lambda: any(e.get("reason") == "identity-refused"
                                       for e in typha.find_all("client_gone")), 10, "identity refusal logged")
    await _refused(typha, client_tls(pki, pki.untrusted))
    # No client certificate at all: a TLS context with only the CA.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(pki.ca)
    raw = await RawClient.connect(typha.port, ssl=ctx, server_hostname="127.0.0.1")
    raw.writer.write(hello("n1"))
    try:
        msg = await raw.next_message(timeout=10)
    except (ssl.SSLError, ConnectionError):
        msg = None
    assert msg is None or msg.get("type") == "error"
    raw.close()
    # Only the wrong-CN client got as far as a session; the others failed in the TLS handshake,
    # each leaving one log line with its address and the reason.
    assert not typha.find_all("client_accepted")
    def reasons() -> list[str] | None:
        found = [e["reason"] for e in typha.find_all("tls_handshake_failed")]
        return found if "PEER_DID_NOT_RETURN_A_CERTIFICATE" in found else None

    found = await async_wait_until(reasons, 10, "handshake failures logged")
    # The untrusted client (one line per attempt; it retried meanwhile), then the one without a certificate.
    assert found[-1] == "PEER_DID_NOT_RETURN_A_CERTIFICATE" and found.count(found[-1]) == 1, found
    assert found[:-1] and set(found[:-1]) == {"CERTIFICATE_VERIFY_FAILED"}, found
    assert all(e["peer"].startswith("127.0.0.1:") for e in typha.find_all("tls_handshake_failed"))
    # Plain TCP to a TLS server gets nowhere either.
    plain = await RawClient.connect(typha.port)
    plain.writer.write(hello("n1"))
    assert await plain.closed_by_server(timeout=10)
    plain.close()


async def test_client_checks_the_servers_identity_and_chain(typha: TyphaProcess, pki: PKI) -> None:
    reason = await _refused(typha, client_tls(pki, pki.client, cn="some-other-typha"))
    assert "not allowed" in reason
    reason = await _refused(typha, client_tls(pki, pki.client, ca=pki.other_ca))
    assert "CERTIFICATE_VERIFY_FAILED" in reason or "certificate verify failed" in reason


async def test_stalled_tcp_clients_do_not_delay_anyone(typha: TyphaProcess, pki: PKI) -> None:
    stalled = [await RawClient.connect(typha.port) for _ in range(20)]  # TCP open, no TLS, no bytes
    try:
        started = time.monotonic()
        await _sync(typha, client_tls(pki, pki.client), timeout=10)
        took = time.monotonic() - started
        assert took < 2.0, f"a good client waited {took:.2f}s behind stalled handshakes"
        # The stalled ones are closed at the handshake deadline (3 s), not before it, one log line each.
        for raw in stalled:
            assert await raw.closed_by_server(timeout=10)
        assert time.monotonic() - started > 2.5
        timeouts = await async_wait_until(
            lambda: [e for e in typha.find_all("tls_handshake_failed") if e["reason"] == "handshake-timeout"]
            if len(typha.find_all("tls_handshake_failed")) >= len(stalled) else None, 10, "timeouts logged")
        assert len(timeouts) == len(stalled)
        assert {e["peer"] for e in timeouts} == {
            "{}:{}".format(*raw.writer.get_extra_info("sockname")[:2]) for raw in stalled}
    finally:
        for raw in stalled:
            raw.close()
