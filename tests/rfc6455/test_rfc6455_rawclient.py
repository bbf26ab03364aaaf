"""RawClient behaviour, against scripted peers: what real servers rarely do."""

import socket
from collections.abc import Callable

import pytest

from course_ws.clients.raw import ConnectionClosed, RawClient
from course_ws.rfc6455 import (
    CloseCode,
    Frame,
    FrameDecoder,
    HandshakeError,
    Opcode,
    ProtocolError,
    build_close,
    encode_frame,
    parse_close,
)

ClientAndPeer = tuple[RawClient, socket.socket]
Script = Callable[[socket.socket, bytes], None]  # see the scripted_server fixture


def frames_sent_until_close(peer: socket.socket) -> list[Frame]:
    """Decode, as a server would, everything the client sent before hanging up."""
    decoder = FrameDecoder(role="server")
    frames = []
    while data := peer.recv(65536):
        frames += decoder.feed(data)
    return frames


def close_frame(code: int | None, reason: str = "") -> bytes:
    return encode_frame(Opcode.CLOSE, build_close(code, reason))


# -- Handshake -------------------------------------------------------------------


@pytest.mark.parametrize("url", ["wss://example.com/", "http://example.com/", "ws:///path"])
def test_connect_needs_a_ws_url_with_a_host(url: str) -> None:
    with pytest.raises(ValueError, match=r"ws://|host"):
        RawClient.connect(url)


def test_frame_glued_to_the_101_is_not_lost(scripted_server: Callable[[Script], str]) -> None:
    def script(conn: socket.socket, response: bytes) -> None:
        conn.sendall(response + encode_frame(Opcode.TEXT, b"early bird"))
        conn.recv(1024)  # the client's close frame
        conn.sendall(close_frame(1000, "ok"))

    ws = RawClient.connect(scripted_server(script))
    assert ws.response_bytes.startswith(b"HTTP/1.1 101 ")
    assert ws.response_bytes.endswith(b"\r\n\r\n")
    assert ws.recv() == "early bird"
    assert ws.close() == (1000, "ok")


def test_wrong_accept_fails_the_handshake(scripted_server: Callable[[Script], str]) -> None:
    def script(conn: socket.socket, response: bytes) -> None:
        conn.sendall(response.replace(b"Sec-WebSocket-Accept: ", b"Sec-WebSocket-Accept: x"))

    with pytest.raises(HandshakeError) as info:
        RawClient.connect(scripted_server(script))
    assert info.value.status == 502
    assert "Sec-WebSocket-Accept" in info.value.reason


def test_hang_up_during_handshake(scripted_server: Callable[[Script], str]) -> None:
    with pytest.raises(HandshakeError, match="closed during the opening handshake"):
        RawClient.connect(scripted_server(lambda conn, response: None))


# -- Receiving -----------------------------------------------------------------------


def test_bytes_received_with_the_handshake_come_first() -> None:
    client_sock, peer = socket.socketpair()
    with client_sock, peer:
        received = encode_frame(Opcode.TEXT, b"first") + encode_frame(Opcode.TEXT, b"sec")
        client = RawClient(client_sock, request_bytes=b"", response_bytes=b"", received=received)
        peer.sendall(encode_frame(Opcode.CONT, b"ond"))
        assert [client.recv_frame().payload for _ in range(3)] == [b"first", b"sec", b"ond"]


def test_ping_is_answered_and_pong_skipped(client_and_peer: ClientAndPeer) -> None:
    client, peer = client_and_peer
    peer.sendall(
        encode_frame(Opcode.PONG, b"unsolicited")
        + encode_frame(Opcode.TEXT, b"a", fin=False)
        + encode_frame(Opcode.PING, b"in the middle")  # control frames may interleave
        + encode_frame(Opcode.CONT, b"b")
    )
    assert client.recv() == "ab"
    assert FrameDecoder(role="server").feed(peer.recv(1024)) == [
        Frame(Opcode.PONG, b"in the middle")
    ]


def test_recv_frame_returns_control_frames_untouched(client_and_peer: ClientAndPeer) -> None:
    client, peer = client_and_peer
    peer.sendall(encode_frame(Opcode.PING, b"raw"))
    assert client.recv_frame() == Frame(Opcode.PING, b"raw")


def test_timeout_keeps_a_partial_frame(client_and_peer: ClientAndPeer) -> None:
    client, peer = client_and_peer
    client.timeout = 0.1
    wire = encode_frame(Opcode.BINARY, b"split in two")
    peer.sendall(wire[:5])
    with pytest.raises(TimeoutError):
        client.recv()
    peer.sendall(wire[5:])
    assert client.recv() == b"split in two"


def test_server_close_is_echoed_and_raised(client_and_peer: ClientAndPeer) -> None:
    client, peer = client_and_peer
    peer.sendall(close_frame(CloseCode.GOING_AWAY, "maintenance"))
    with pytest.raises(ConnectionClosed) as info:
        client.recv()
    assert (info.value.code, info.value.reason) == (1001, "maintenance")
    assert frames_sent_until_close(peer) == [Frame(Opcode.CLOSE, build_close(1001))]
    with pytest.raises(ConnectionClosed, match="1001"):
        client.send_text("too late")
    assert client.close() == (1001, "maintenance")


def test_server_hanging_up_right_after_its_close(client_and_peer: ClientAndPeer) -> None:
    client, peer = client_and_peer
    peer.sendall(close_frame(1000, "bye"))
    peer.close()  # impolite: doesn't wait for our answer
    with pytest.raises(ConnectionClosed) as info:
        client.recv()
    assert (info.value.code, info.value.reason) == (1000, "bye")


def test_empty_close_is_echoed_empty(client_and_peer: ClientAndPeer) -> None:
    client, peer = client_and_peer
    peer.sendall(close_frame(None))
    with pytest.raises(ConnectionClosed) as info:
        client.recv()
    assert info.value.code is None
    assert frames_sent_until_close(peer) == [Frame(Opcode.CLOSE, b"")]


def test_hang_up_without_close_frame_is_1006(client_and_peer: ClientAndPeer) -> None:
    client, peer = client_and_peer
    peer.shutdown(socket.SHUT_WR)
    with pytest.raises(ConnectionClosed) as info:
        client.recv()
    assert info.value.code == CloseCode.ABNORMAL_CLOSURE


@pytest.mark.parametrize(
    ("wire", "code"),
    [
        (encode_frame(Opcode.TEXT, b"x", mask=b"abcd"), CloseCode.PROTOCOL_ERROR),
        (encode_frame(Opcode.CLOSE, b"\x03"), CloseCode.PROTOCOL_ERROR),
        (encode_frame(Opcode.TEXT, b"\xff"), CloseCode.INVALID_DATA),
        (encode_frame(Opcode.CONT, b"orphan"), CloseCode.PROTOCOL_ERROR),
    ],
    ids=["masked-frame", "1-byte-close", "invalid-utf8", "orphan-continuation"],
)
def test_protocol_violation_fails_the_connection(
    client_and_peer: ClientAndPeer, wire: bytes, code: CloseCode
) -> None:
    client, peer = client_and_peer
    peer.sendall(wire)
    with pytest.raises(ProtocolError) as info:
        client.recv()
    assert info.value.code == code
    [sent] = frames_sent_until_close(peer)
    assert sent.opcode is Opcode.CLOSE
    assert parse_close(sent.payload) == (code, info.value.reason)
    with pytest.raises(ConnectionClosed) as closed:
        client.recv()
    assert closed.value.code == code


def test_message_over_max_size_is_1009() -> None:
    client_sock, peer = socket.socketpair()
    with client_sock, peer:
        client = RawClient(client_sock, request_bytes=b"", response_bytes=b"", max_size=10)
        peer.sendall(encode_frame(Opcode.BINARY, b"x" * 11))
        with pytest.raises(ProtocolError) as info:
            client.recv()
        assert info.value.code == CloseCode.MESSAGE_TOO_BIG


# -- Sending and closing -------------------------------------------------------------


def test_frames_are_masked_with_fresh_keys(client_and_peer: ClientAndPeer) -> None:
    client, peer = client_and_peer
    first = client.send_frame(Opcode.BINARY, b"same")
    second = client.send_frame(Opcode.BINARY, b"same")
    assert first[1] & 0x80  # MASK bit
    assert first[2:6] != second[2:6]
    assert FrameDecoder(role="server").feed(peer.recv(1024)) == [Frame(Opcode.BINARY, b"same")] * 2


def test_send_fragmented(client_and_peer: ClientAndPeer) -> None:
    client, peer = client_and_peer
    client.send_fragmented([b"a", b"b", b"c"], opcode=Opcode.BINARY)
    assert FrameDecoder(role="server").feed(peer.recv(1024)) == [
        Frame(Opcode.BINARY, b"a", fin=False),
        Frame(Opcode.CONT, b"b", fin=False),
        Frame(Opcode.CONT, b"c"),
    ]
    with pytest.raises(ValueError, match="at least one"):
        client.send_fragmented([])


def test_ping_payload_is_limited(client_and_peer: ClientAndPeer) -> None:
    client, _ = client_and_peer
    with pytest.raises(ValueError, match="125"):
        client.ping(b"x" * 126)


def test_close_discards_messages_until_the_servers_close(client_and_peer: ClientAndPeer) -> None:
    client, peer = client_and_peer
    peer.sendall(encode_frame(Opcode.TEXT, b"late") + close_frame(1000, "bye"))
    assert client.close(4001, "done") == (1000, "bye")
    assert frames_sent_until_close(peer) == [Frame(Opcode.CLOSE, build_close(4001, "done"))]
    assert client.close() == (1000, "bye")  # idempotent


def test_invalid_close_code_is_refused_before_sending(client_and_peer: ClientAndPeer) -> None:
    client, peer = client_and_peer
    with pytest.raises(ValueError, match="1006"):
        client.close(CloseCode.ABNORMAL_CLOSURE)
    client.send_text("still open")
    assert FrameDecoder(role="server").feed(peer.recv(1024)) == [Frame(Opcode.TEXT, b"still open")]


def test_close_timeout_closes_the_socket(client_and_peer: ClientAndPeer) -> None:
    client, _ = client_and_peer
    client.timeout = 0.1
    with pytest.raises(TimeoutError):
        client.close()
    with pytest.raises(ConnectionClosed) as info:
        client.recv()
    assert info.value.code == CloseCode.ABNORMAL_CLOSURE


def test_exit_does_not_hide_the_error_of_the_block(client_and_peer: ClientAndPeer) -> None:
    client, peer = client_and_peer
    peer.close()  # the polite close in __exit__ is bound to fail
    with pytest.raises(RuntimeError, match="the real problem"), client:
        raise RuntimeError("the real problem")


def test_close_after_recv_frame_saw_the_servers_close_answers_it(
    client_and_peer: ClientAndPeer,
) -> None:
    """Once recv_frame has handed out the server's CLOSE, close() replies instead of waiting."""
    client, peer = client_and_peer
    peer.sendall(close_frame(4001, "bye"))
    assert client.recv_frame().opcode is Opcode.CLOSE
    assert client.close() == (4001, "bye")
    assert frames_sent_until_close(peer)[-1].payload == close_frame(4001)[2:]
