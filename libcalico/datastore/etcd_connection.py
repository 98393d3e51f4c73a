"""One live aetcd client at a time, failing over between etcd endpoints.

How it works::

    call(op, fn) ──► client() ──► current client? ──yes──► fn(client)
                        │ no                                   │ gRPC failure
                        ▼                                      ▼
              try endpoints in turn (probe         classify: not sent or lost → drop
              each with a linearizable read);      the client, retry on the next one;
              jittered backoff between rounds;     TLS → fail fast; refusal → translate
              Unavailable once the budget is spent

aetcd's client talks to one host over an insecure channel; :class:`EtcdClient`
adds TLS and the ``hasleader`` metadata (so a member cut off from its leader
refuses requests instead of serving stale ones). A request that never left
(``failed to connect``) is safe to send anywhere. One cut off in flight may or
may not have applied: it is retried too (every write is compare-guarded or an
unconditional put, so none can apply twice), and the loss is reported to the
caller, which turns a failed compare after a loss into Unavailable (outcome
unknown) rather than a false conflict.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import aetcd
import aetcd.watcher
import grpc
import structlog
from aetcd import rpc

from libcalico.datastore.etcd_config import Endpoint, EtcdConfig, TLSConfig
from libcalico.errors import DatastoreError, ResyncRequired, Unavailable, ValidationError

log = structlog.get_logger(__name__)

T = TypeVar("T")

CHANNEL_OPTIONS = {
    "grpc.max_receive_message_length": 256 * 1024 * 1024,
    "grpc.max_send_message_length": 16 * 1024 * 1024,
    "grpc.keepalive_time_ms": 10_000,  # etcd refuses pings more often than every 5 s
    "grpc.keepalive_timeout_ms": 5_000,
    "grpc.initial_reconnect_backoff_ms": 100,
    "grpc.min_reconnect_backoff_ms": 100,
    "grpc.max_reconnect_backoff_ms": 1_000,
}
BACKOFF_BASE = 0.05
BACKOFF_CAP = 1.0
CLOSE_TIMEOUT = 5.0


class Failure(enum.Enum):
    """What a failed RPC means for retrying it."""

    NOT_SENT = "not-sent"  # the request never reached a server: retry anywhere
    LOST = "lost"  # cut off or timed out in flight: outcome unknown
    TLS = "tls"  # the TLS handshake failed: a configuration problem
    COMPACTED = "compacted"  # the requested revision was compacted away
    REFUSED = "refused"  # the server answered no (bad argument, permission, quota)


@dataclass(frozen=True, slots=True)
class RpcFailure:
    """A classified gRPC failure: its kind, status code and details."""

    kind: Failure
    code: grpc.StatusCode | None
    details: str


_TLS_MARKERS = (
    "Tls handshake failed",
    "TSI_",
    "SSL_ERROR",
    "Unwrap failed",
    "CERTIFICATE_VERIFY_FAILED",
)


def classify(exc: BaseException) -> RpcFailure:
    """Say what an aetcd or gRPC exception means for retrying."""
    rpc_error = exc if isinstance(exc, grpc.aio.AioRpcError) else exc.__cause__
    if not isinstance(rpc_error, grpc.aio.AioRpcError):
        if isinstance(exc, aetcd.ConnectionFailedError):
            return RpcFailure(Failure.LOST, grpc.StatusCode.UNAVAILABLE, str(exc))
        if isinstance(exc, aetcd.ConnectionTimeoutError | aetcd.WatchTimeoutError):
            return RpcFailure(
                Failure.LOST, grpc.StatusCode.DEADLINE_EXCEEDED, str(exc) or "watch timed out"
            )
        return RpcFailure(Failure.REFUSED, None, str(exc))
    code, details = rpc_error.code(), rpc_error.details() or ""
    if code is grpc.StatusCode.UNAVAILABLE:
        if any(marker in details for marker in _TLS_MARKERS):
            return RpcFailure(Failure.TLS, code, details)
        if (
            details.startswith("failed to connect to all addresses")
            or details == "etcdserver: no leader"
        ):
            return RpcFailure(Failure.NOT_SENT, code, details)
        return RpcFailure(Failure.LOST, code, details)
    if code in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
        return RpcFailure(Failure.LOST, code, details)
    if code is grpc.StatusCode.INTERNAL and details == "Internal error from Core":
        # gRPC's own failure when the channel breaks under a call (seen creating a watch
        # while the member dies), not an answer from etcd.
        return RpcFailure(Failure.LOST, code, details)
    if code is grpc.StatusCode.OUT_OF_RANGE and "compacted" in details:
        return RpcFailure(Failure.COMPACTED, code, details)
    return RpcFailure(Failure.REFUSED, code, details)


def refusal_error(op: str, key: str, failure: RpcFailure) -> DatastoreError | ValidationError:
    """The libcalico error for a request etcd answered with a refusal."""
    too_large = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED)
    if failure.code in too_large and (
        "too large" in failure.details or "larger than max" in failure.details
    ):
        return ValidationError("value", f"{key}: too large for etcd ({failure.details})")
    if failure.code is grpc.StatusCode.OUT_OF_RANGE and "future revision" in failure.details:
        return ValidationError("revision", f"{key}: {failure.details}")
    if failure.code is grpc.StatusCode.RESOURCE_EXHAUSTED:
        return Unavailable(f"etcd cannot take {op} of {key} now: {failure.details}")
    return DatastoreError(f"etcd refused {op} of {key}: {failure.details}")


def backoff_delay(attempt: int) -> float:
    """Equal-jitter exponential backoff: half fixed, half random, capped."""
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * (2**attempt))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


class EtcdClient(aetcd.Client):
    """An aetcd client for one endpoint, over TLS when configured, that requires a leader."""

    def __init__(self, endpoint: Endpoint, tls: TLSConfig | None, timeout: float) -> None:
        super().__init__(
            host=endpoint.host, port=endpoint.port, timeout=timeout, options=dict(CHANNEL_OPTIONS)
        )
        self.endpoint = endpoint
        self._tls = tls
        # Set once the connection drops this client: watch creations still queued in aetcd's
        # watcher would otherwise each wait out the request timeout, one after another.
        self.dropped = asyncio.Event()

    async def connect(self) -> None:
        """Open the channel (lazily: no network traffic until the first request)."""
        if self._connected.is_set():
            return
        options = list(self._options.items())
        if self._tls is not None:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=self._tls.ca,
                private_key=self._tls.key,
                certificate_chain=self._tls.cert,
            )
            self.channel = rpc.secure_channel(self.endpoint.target, credentials, options=options)
        else:
            self.channel = rpc.insecure_channel(self.endpoint.target, options=options)
        self.metadata = (("hasleader", "true"),)
        self.kvstub = rpc.KVStub(self.channel)
        self.clusterstub = rpc.ClusterStub(self.channel)
        self.leasestub = rpc.LeaseStub(self.channel)
        self.maintenancestub = rpc.MaintenanceStub(self.channel)
        self._watcher = aetcd.watcher.Watcher(
            rpc.WatchStub(self.channel), timeout=self._timeout, metadata=self.metadata
        )
        self._connected.set()

    async def range(self, request: rpc.RangeRequest) -> rpc.RangeResponse:
        """A raw Range request (aetcd's own ignore limit and revision)."""
        return await self.kvstub.Range(request, timeout=self._timeout, metadata=self.metadata)


class EtcdConnection:
    """The endpoint list, the current client and the retry policy around every request."""

    def __init__(self, config: EtcdConfig) -> None:
        self.config = config
        self._index = 0
        self._client: EtcdClient | None = None
        self._lock = asyncio.Lock()
        self._closed = False
        self._closers: set[asyncio.Task[None]] = set()
        self._retired: set[EtcdClient] = set()

    @property
    def current(self) -> EtcdClient | None:
        """The client in use, if connected."""
        return self._client

    async def client(self, deadline: float) -> EtcdClient:
        """The current client, connecting (and failing over) until ``deadline`` if there is none."""
        async with self._lock:
            loop = asyncio.get_running_loop()
            endpoints = self.config.endpoints
            errors: dict[str, str] = {}
            tls_failed: set[Endpoint] = set()
            tried_in_round = 0
            rounds = 0
            while True:
                if self._closed:
                    raise Unavailable("etcd backend is closed")
                if self._client is not None:
                    return self._client
                endpoint = endpoints[self._index]
                candidate = EtcdClient(endpoint, self.config.tls, self.config.request_timeout)
                timeout = max(0.05, min(self.config.connect_timeout, deadline - loop.time()))
                try:
                    await candidate.connect()
                    await candidate.kvstub.Range(
                        rpc.RangeRequest(key=b"\x00", count_only=True),
                        timeout=timeout,
                        metadata=candidate.metadata,
                    )
                except (grpc.aio.AioRpcError, aetcd.ClientError) as exc:
                    await _close_quietly(candidate)
                    failure = classify(exc)
                    errors[str(endpoint)] = failure.details
                    log.warning(
                        "etcd endpoint failed", endpoint=str(endpoint), error=failure.details
                    )
                    if failure.kind is Failure.REFUSED:
                        raise refusal_error("connect", str(endpoint), failure) from exc
                    self._index = (self._index + 1) % len(endpoints)
                    if failure.kind is Failure.TLS:
                        tls_failed.add(endpoint)
                        if len(tls_failed) == len(endpoints):
                            raise Unavailable(self._tls_message(errors)) from exc
                    if loop.time() >= deadline:
                        raise Unavailable(_unreachable_message(errors)) from exc
                    tried_in_round += 1
                    if tried_in_round >= len(endpoints):
                        tried_in_round = 0
                        await asyncio.sleep(
                            min(backoff_delay(rounds), max(0.0, deadline - loop.time()))
                        )
                        rounds += 1
                    continue
                self._client = candidate
                log.info("etcd connected", endpoint=str(endpoint))
                return candidate

    def _tls_message(self, errors: dict[str, str]) -> str:
        hint = "check ETCD_CA_CERT_FILE, ETCD_CERT_FILE and ETCD_KEY_FILE"
        tls = self.config.tls
        if tls is not None and tls.cert is None:
            hint = (
                "the server may require a client certificate: set ETCD_CERT_FILE and ETCD_KEY_FILE"
            )
        detail = "; ".join(f"{ep}: {err}" for ep, err in errors.items())
        return f"TLS handshake with etcd failed ({hint}): {detail}"

    def discard(self, client: EtcdClient, failure: RpcFailure) -> None:
        """Stop using ``client`` after a connection failure and move on to the next endpoint."""
        client.dropped.set()
        if self._client is not client:
            return
        self._client = None
        self._index = (self._index + 1) % len(self.config.endpoints)
        log.warning("etcd connection dropped", endpoint=str(client.endpoint), error=failure.details)
        # Let other requests in flight on it finish before closing its channel.
        self._retired.add(client)
        task = asyncio.get_running_loop().create_task(self._close_later(client))
        self._closers.add(task)
        task.add_done_callback(self._closers.discard)

    async def _close_later(self, client: EtcdClient) -> None:
        await asyncio.sleep(self.config.request_timeout)
        self._retired.discard(client)
        await _close_quietly(client)

    async def call(
        self,
        op: str,
        key: str,
        fn: Callable[[EtcdClient], Awaitable[T]],
        *,
        lost: list[RpcFailure] | None = None,
    ) -> T:
        """Run ``fn`` on a live client, failing over and retrying until the retry budget is spent.

        A request cut off in flight is retried too, and recorded in ``lost``: every
        write here is either guarded by a compare (so it cannot apply twice) or an
        unconditional put (applying it twice equals a later write); the caller reads
        a failed compare after a loss as an unknown outcome. Raises Unavailable when
        no endpoint serves the request in time, ResyncRequired for a compacted
        revision, and the translated refusal otherwise.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.retry_timeout
        attempt = 0
        while True:
            client = await self.client(deadline)
            try:
                return await fn(client)
            except (grpc.aio.AioRpcError, aetcd.ClientError) as exc:
                failure = classify(exc)
                if failure.kind is Failure.COMPACTED:
                    raise ResyncRequired(0) from exc
                if failure.kind is Failure.REFUSED:
                    raise refusal_error(op, key, failure) from exc
                self.discard(client, failure)
                if failure.kind is Failure.LOST and lost is not None:
                    lost.append(failure)
                if loop.time() >= deadline:
                    raise Unavailable(
                        f"etcd {op} of {key} failed at {client.endpoint}: {failure.details}"
                    ) from exc
                await asyncio.sleep(min(backoff_delay(attempt), max(0.0, deadline - loop.time())))
                attempt += 1

    async def close(self) -> None:
        """Close every client this connection opened."""
        self._closed = True
        closers = list(self._closers)
        for task in closers:
            task.cancel()
        await asyncio.gather(*closers, return_exceptions=True)
        clients = list(self._retired) + ([self._client] if self._client is not None else [])
        self._client = None
        self._retired.clear()
        for client in clients:
            await _close_quietly(client)


def _unreachable_message(errors: dict[str, str]) -> str:
    detail = "; ".join(f"{ep}: {err}" for ep, err in errors.items())
    return f"no etcd endpoint reachable ({detail})"


async def _close_quietly(client: EtcdClient) -> None:
    """Close a client whose channel may already be broken, within a bound."""
    with contextlib.suppress(grpc.aio.AioRpcError, aetcd.ClientError, TimeoutError, OSError):
        async with asyncio.timeout(CLOSE_TIMEOUT):
            await client.close()
