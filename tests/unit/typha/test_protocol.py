"""The Typha protocol core: golden frames, both directions, malformed input, no network."""

from __future__ import annotations

import struct

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from libcalico.typha.connection import ClientConnection, ClientState, ServerConnection, ServerState
from libcalico.typha.protocol import (
    Bye,
    ByeReason,
    ClientHello,
    Error,
    FrameDecoder,
    KVs,
    KVUpdate,
    Ping,
    Pong,
    ProtocolError,
    Sender,
    ServerHello,
    Status,
    SyncStatus,
    encode,
    encode_map,
    parse_message,
)

# (hex frame, sender, expected message). Each hex string was checked by hand
# against the msgpack spec: 4-byte length, then a fixmap of the fields.
GOLDEN = [
    ("0000004085a474797065a568656c6c6fa776657273696f6e01a673796e636572a566656c6978a46e6f6465a56e6f"
     "646531a6636c69656e74ab66656c69782f302e312e30", Sender.CLIENT,
     ClientHello(syncer="felix", node="node1", client="felix/0.1.0")),
    ("0000003184a474797065a568656c6c6fa776657273696f6e01a6736572766572a774797068612d30a673796e6365"
     "72a566656c6978", Sender.SERVER, ServerHello(server="typha-0", syncer="felix")),
    ("0000002282a474797065a56572726f72a6726561736f6eae756e6b6e6f776e2073796e636572", Sender.SERVER,
     Error("unknown syncer")),
    ("0000001c82a474797065a6737461747573a6737461747573a7696e2d73796e63", Sender.SERVER,
     Status(SyncStatus.IN_SYNC)),
    ("0000002c82a474797065a36b7673a36b76739293a92f63616c69636f2f6b81a161010793a92f63616c69636f2f64"
     "c008", Sender.SERVER, KVs((KVUpdate("/calico/k", {"a": 1}, 7), KVUpdate("/calico/d", None, 8)))),
    ("0000001782a474797065a470696e67a27473cb3ff8000000000000", Sender.SERVER, Ping(1.5)),
    ("0000001782a474797065a4706f6e67a27473cb3ff8000000000000", Sender.CLIENT, Pong(1.5)),
    ("0000001a82a474797065a3627965a6726561736f6ea8746f6f2d736c6f77", Sender.SERVER,
     Bye(ByeReason.TOO_SLOW)),
    ("0000002782a474797065a6737461747573a6737461747573b2776169742d666f722d6461746173746f7265",
     Sender.SERVER, Status(SyncStatus.WAIT_FOR_DATASTORE)),
    ("0000002782a474797065a6737461747573a6737461747573b2726573796e632d696e2d70726f6772657373",
     Sender.SERVER, Status(SyncStatus.RESYNC_IN_PROGRESS)),
    ("0000001a82a474797065a3627965a6726561736f6ea873687574646f776e", Sender.SERVER, Bye(ByeReason.SHUTDOWN)),
    ("0000001b82a474797065a3627965a6726561736f6ea9726562616c616e6365", Sender.SERVER,
     Bye(ByeReason.REBALANCE)),
    ("0000001782a474797065a470696e67a27473cb4000000000000000", Sender.CLIENT, Ping(2.0)),
]


@pytest.mark.parametrize(("frame_hex", "sender", "expected"), GOLDEN, ids=lambda v: getattr(v, "TYPE", ""))
def test_golden_frames_decode_and_encode(frame_hex: str, sender: Sender, expected: object) -> None:
    frame = bytes.fromhex(frame_hex)
    (length,) = struct.unpack(">I", frame[:4])
    assert length == len(frame) - 4
    [raw] = FrameDecoder().feed(frame)
    assert parse_message(raw, sender) == expected
    assert encode(expected) == frame  # type: ignore[arg-type]


def test_decoder_handles_split_and_joined_frames() -> None:
    frames = b"".join(bytes.fromhex(h) for h, _, _ in GOLDEN)
    dec = FrameDecoder()
    got = []
    for i in range(0, len(frames), 7):
        got.extend(dec.feed(frames[i : i + 7]))
    assert len(got) == len(GOLDEN)
    assert dec.buffered == 0


def test_oversized_frame_is_a_protocol_error_before_the_body_arrives() -> None:
    dec = FrameDecoder(max_frame=1024)
    with pytest.raises(ProtocolError, match="exceeds the limit"):
        dec.feed(struct.pack(">I", 1025))


@pytest.mark.parametrize(
    ("raw", "sender", "match"),
    [
        ([1, 2], Sender.CLIENT, "not a map"),
        ({"version": 1}, Sender.CLIENT, "no string 'type'"),
        ({"type": "kvs", "kvs": []}, Sender.CLIENT, "unknown message type 'kvs' from client"),
        ({"type": "hello", "version": "1", "syncer": "felix", "node": "n"}, Sender.CLIENT, "'version' has the wrong type"),
        ({"type": "hello", "version": 1, "node": "n"}, Sender.CLIENT, "missing field 'syncer'"),
        ({"type": "hello", "version": 1, "syncer": "felix", "node": "n", "client": 3}, Sender.CLIENT, "'client' has the wrong type"),
        ({"type": "kvs", "kvs": [["k", {}, "7"]]}, Sender.SERVER, r"kvs\[0\]: revision"),
        ({"type": "kvs", "kvs": [["k", [1], 7]]}, Sender.SERVER, r"kvs\[0\]: value"),
        ({"type": "kvs", "kvs": [[1, None, 7]]}, Sender.SERVER, r"kvs\[0\]: key"),
        ({"type": "status", "status": "sleeping"}, Sender.SERVER, "unknown status"),
        ({"type": "ping", "ts": True}, Sender.SERVER, "wrong type"),
    ],
)
def test_malformed_messages_are_rejected(raw: object, sender: Sender, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        parse_message(raw, sender)


def test_bad_msgpack_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="bad msgpack"):
        FrameDecoder().feed(struct.pack(">I", 2) + b"\xc1\xc1")


def test_unknown_server_message_type_is_ignored_by_the_client() -> None:
    assert parse_message({"type": "future-thing", "x": 1}, Sender.SERVER) is None
    client = ClientConnection(0.0, syncer="felix", node="n1")
    client.receive(encode(ServerHello(server="t", syncer="felix")), 0.1)
    assert client.receive(encode_map({"type": "future-thing"}), 0.2) == []
    assert client.state is ClientState.STREAMING


def _pair(now: float = 0.0) -> tuple[ServerConnection, ClientConnection]:
    server = ServerConnection(now, ping_interval=5.0, pong_timeout=20.0)
    client = ClientConnection(now, syncer="felix", node="node1", client="test")
    return server, client


def test_back_to_back_handshake_stream_and_bye() -> None:
    server, client = _pair()
    [hello] = server.receive(client.data_to_send(), 0.1)
    assert hello == ClientHello(syncer="felix", node="node1", client="test")
    assert server.state is ServerState.HELLO_RECEIVED
    server.accept("typha-0", "felix")
    stream = server.data_to_send() + encode(Status(SyncStatus.IN_SYNC))
    msgs = client.receive(stream, 0.2)
    assert [type(m) for m in msgs] == [ServerHello, Status]
    assert client.state is ClientState.STREAMING
    # Ping/pong both ways, latency measured on the server.
    assert server.check_timers(6.0) is None
    client.receive(server.data_to_send(), 6.01)
    server.receive(client.data_to_send(), 6.05)
    assert server.ping_latency == pytest.approx(0.05)
    server.bye(ByeReason.REBALANCE)
    [bye] = client.receive(server.data_to_send(), 7.0)
    assert bye == Bye(ByeReason.REBALANCE)
    assert client.bye_reason is ByeReason.REBALANCE
    assert client.state is ClientState.CLOSING


def test_server_rejects_with_error_and_client_closes() -> None:
    server, client = _pair()
    server.receive(client.data_to_send(), 0.1)
    server.reject("unknown syncer 'felix'")
    assert server.state is ServerState.CLOSED
    [err] = client.receive(server.data_to_send(), 0.2)
    assert err == Error("unknown syncer 'felix'")
    assert client.state is ClientState.CLOSED


def test_messages_out_of_order_are_protocol_errors() -> None:
    server, _ = _pair()
    with pytest.raises(ProtocolError, match="'pong' not allowed in state await-hello"):
        server.receive(encode(Pong(1.0)), 0.1)
    client = ClientConnection(0.0, syncer="felix", node="n")
    with pytest.raises(ProtocolError, match="'kvs' not allowed in state await-hello"):
        client.receive(encode(KVs(())), 0.1)
    server2, client2 = _pair()
    server2.receive(client2.data_to_send(), 0.1)
    with pytest.raises(ProtocolError, match="'hello' not allowed"):
        server2.receive(client2.data_to_send() or encode(ClientHello(syncer="felix", node="n")), 0.2)


def test_server_frame_limit_after_handshake() -> None:
    server = ServerConnection(0.0, max_frame=128)
    with pytest.raises(ProtocolError, match="exceeds the limit of 128"):
        server.receive(encode_map({"type": "ping", "ts": 1.0, "pad": "x" * 200}), 0.1)


def test_timers_handshake_and_ping_timeouts() -> None:
    server = ServerConnection(0.0, handshake_timeout=10.0)
    assert server.check_timers(9.9) is None
    assert server.check_timers(10.1) == "handshake-timeout"
    server, client = _pair()
    server.receive(client.data_to_send(), 0.0)
    server.accept("t", "felix")
    assert server.check_timers(1.0) is None  # first ping queued
    assert server.check_timers(20.5) == "ping-timeout"  # never answered
    client2 = ClientConnection(0.0, syncer="felix", node="n", silence_timeout=30.0)
    client2.receive(encode(ServerHello(server="t", syncer="felix")), 1.0)
    assert client2.check_timers(30.0) is None
    assert client2.check_timers(31.5) == "server-silent"


def test_client_refuses_hello_for_another_syncer() -> None:
    client = ClientConnection(0.0, syncer="bgp", node="n")
    with pytest.raises(ProtocolError, match="asked 'bgp'"):
        client.receive(encode(ServerHello(server="t", syncer="felix")), 0.1)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
updates = st.builds(
    KVUpdate,
    key=st.text(min_size=1, max_size=60),
    value=st.none() | st.dictionaries(st.text(max_size=8), json_values, max_size=5),
    revision=st.integers(0, 2**62),
)


@given(st.lists(updates, max_size=20), st.integers(1, 50))
def test_kvs_round_trip_through_any_chunking(batch: list[KVUpdate], chunk: int) -> None:
    frame = encode(KVs(tuple(batch)))
    dec = FrameDecoder()
    raws = []
    for i in range(0, len(frame), chunk):
        raws.extend(dec.feed(frame[i : i + chunk]))
    assert [parse_message(r, Sender.SERVER) for r in raws] == [KVs(tuple(batch))]


@given(st.binary(max_size=200))
def test_random_bytes_never_crash_the_server_connection(data: bytes) -> None:
    server = ServerConnection(0.0)
    try:
        server.receive(data, 0.1)
    except ProtocolError:
        pass  # the only allowed failure: close this one connection
    assert server.state in (ServerState.AWAIT_HELLO, ServerState.HELLO_RECEIVED)


def test_msgpack_non_string_map_keys_are_rejected() -> None:
    body = msgpack.packb({1: "x"})
    with pytest.raises(ProtocolError):
        FrameDecoder().feed(struct.pack(">I", len(body)) + body)


def test_one_sync_status_for_the_wire_and_the_syncer_callbacks() -> None:
    from libcalico.syncer import SyncStatus as CallbackStatus

    assert SyncStatus is CallbackStatus
    assert [s.value for s in SyncStatus] == ["wait-for-datastore", "resync-in-progress", "in-sync"]


def test_server_answers_a_client_ping_in_any_state_after_opening() -> None:
    server, client = _pair()
    server.receive(client.data_to_send(), 0.1)
    [ping] = server.receive(encode(Ping(3.25)), 0.2)
    assert ping == Ping(3.25)
    assert server.data_to_send() == encode(Pong(3.25))


def test_unknown_bye_reason_from_a_newer_server_still_means_bye() -> None:
    assert parse_message({"type": "bye", "reason": "moon-phase"}, Sender.SERVER) == Bye(ByeReason.SHUTDOWN)
