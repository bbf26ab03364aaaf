"""RawClient against a real websockets server on 127.0.0.1 (see ``echo_url``)."""

import pytest

from course_ws.clients.raw import ConnectionClosed, RawClient
from course_ws.rfc6455 import CloseCode, Frame, HandshakeError, Opcode, ProtocolError

SIZES = [0, 125, 126, 65535, 65536, 2**20 - 1]


def test_handshake_is_kept_for_display(echo_url: str) -> None:
    with RawClient.connect(f"{echo_url}/chat?room=1", origin="http://localhost") as ws:
        assert ws.timeout == 5.0
        assert ws.request_bytes.startswith(b"GET /chat?room=1 HTTP/1.1\r\n")
        assert b"\r\nOrigin: http://localhost\r\n" in ws.request_bytes
        assert ws.response_bytes.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
        # We offered no extension, so the server compresses nothing.
        assert b"Sec-WebSocket-Extensions" not in ws.response_bytes


def test_text_echo(echo_url: str) -> None:
    with RawClient.connect(echo_url) as ws:
        ws.send_text("héllo, wörld ✓")
        assert ws.recv() == "héllo, wörld ✓"


@pytest.mark.parametrize("size", SIZES)
def test_binary_echo(echo_url: str, size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    with RawClient.connect(echo_url) as ws:
        ws.send_binary(payload)
        assert ws.recv() == payload


@pytest.mark.parametrize("size", SIZES)
def test_text_echo_sizes(echo_url: str, size: int) -> None:
    with RawClient.connect(echo_url) as ws:
        ws.send_text("x" * size)
        assert ws.recv() == "x" * size


def test_fragmented_text_with_a_character_split_across_fragments(echo_url: str) -> None:
    euro = "€".encode()
    with RawClient.connect(echo_url) as ws:
        ws.send_fragmented([b"price: 5 " + euro[:1], euro[1:2], euro[2:] + b"!"])
        assert ws.recv() == "price: 5 €!"


def test_ping_gets_a_pong_with_the_same_payload(echo_url: str) -> None:
    with RawClient.connect(echo_url) as ws:
        ws.ping(b"are you there?")
        assert ws.recv_frame() == Frame(Opcode.PONG, b"are you there?")


def test_server_ping_is_answered_automatically(echo_url: str) -> None:
    with RawClient.connect(echo_url) as ws:
        ws.send_text("ping me")
        assert ws.recv() == "pong received"


def test_close_handshake_returns_1000(echo_url: str) -> None:
    ws = RawClient.connect(echo_url)
    assert ws.close() == (CloseCode.NORMAL_CLOSURE, "")


def test_close_code_and_reason_are_echoed(echo_url: str) -> None:
    ws = RawClient.connect(echo_url)
    assert ws.close(4001, "done here") == (4001, "done here")


def test_server_initiated_close(echo_url: str) -> None:
    with RawClient.connect(echo_url) as ws:
        ws.send_text("close please")
        with pytest.raises(ConnectionClosed) as info:
            ws.recv()
    assert (info.value.code, info.value.reason) == (4000, "as requested")


def test_server_rejects_reserved_opcode_with_1002(echo_url: str) -> None:
    with RawClient.connect(echo_url) as ws:
        ws.send_frame(0x3, b"")
        with pytest.raises(ConnectionClosed) as info:
            ws.recv()
    assert info.value.code == CloseCode.PROTOCOL_ERROR


def test_server_rejects_message_over_its_max_size_with_1009(echo_url: str) -> None:
    with RawClient.connect(echo_url) as ws:
        ws.send_binary(bytes(2**20 + 1))  # the server's default limit is 1 MiB
        with pytest.raises(ConnectionClosed) as info:
            ws.recv()
    assert info.value.code == CloseCode.MESSAGE_TOO_BIG


def test_client_enforces_its_own_max_size(echo_url: str) -> None:
    ws = RawClient.connect(echo_url, max_size=100)
    ws.send_text("x" * 101)
    with pytest.raises(ProtocolError) as info:
        ws.recv()
    assert info.value.code == CloseCode.MESSAGE_TOO_BIG


def test_refused_handshake_keeps_the_servers_status(echo_url: str) -> None:
    with pytest.raises(HandshakeError) as info:
        RawClient.connect(f"{echo_url}/forbidden")
    assert info.value.status == 403
