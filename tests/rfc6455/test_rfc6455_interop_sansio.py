"""Our codec against the websockets library's own sans-I/O codec, no network.

If both implementations agree on every frame, close payload and handshake,
a bug would have to exist identically in two independent code bases.
"""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.client import ClientProtocol
from websockets.exceptions import ProtocolError as WsProtocolError
from websockets.frames import Close as WsClose
from websockets.frames import Frame as WsFrame
from websockets.frames import Opcode as WsOpcode
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.streams import StreamReader
from websockets.uri import parse_uri

from course_ws.rfc6455 import (
    CloseCode,
    Frame,
    FrameDecoder,
    Opcode,
    ProtocolError,
    build_close,
    build_request,
    build_response,
    check_response,
    encode_frame,
    parse_close,
    parse_request,
    validate_request,
)

MAX_EXAMPLES = 60


def ws_parse(data: bytes, *, mask: bool) -> WsFrame:
    """Parse one frame with websockets' generator-based parser."""
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    parser = WsFrame.parse(reader.read_exact, mask=mask, max_size=None)
    try:
        next(parser)
    except StopIteration as done:
        return done.value
    raise AssertionError("websockets wanted more bytes than one frame")


@st.composite
def frames(draw: st.DrawFn) -> Frame:
    """Valid frames: data frames of any size around the boundaries, small control frames."""
    opcode = draw(st.sampled_from(Opcode))
    if opcode.is_control:
        return Frame(opcode, draw(st.binary(max_size=125)))
    length = draw(st.sampled_from([0, 1, 125, 126, 127, 65535, 65536, 65537]))
    filler = draw(st.binary(min_size=1, max_size=8))
    payload = (filler * (length // len(filler) + 1))[:length]
    return Frame(opcode, payload, fin=draw(st.booleans()))


@settings(max_examples=MAX_EXAMPLES, deadline=None)
@given(frame=frames(), masked=st.booleans())
def test_websockets_frames_decode_with_ours(frame: Frame, masked: bool) -> None:
    wire = WsFrame(WsOpcode(frame.opcode), frame.payload, frame.fin).serialize(mask=masked)
    decoder = FrameDecoder(role="server" if masked else "client", max_size=None)
    assert decoder.feed(wire) == [frame]


@settings(max_examples=MAX_EXAMPLES, deadline=None)
@given(frame=frames(), mask=st.none() | st.binary(min_size=4, max_size=4))
def test_our_frames_decode_with_websockets(frame: Frame, mask: bytes | None) -> None:
    parsed = ws_parse(frame.serialize(mask=mask), mask=mask is not None)
    assert (parsed.opcode, bytes(parsed.data), parsed.fin) == (
        frame.opcode,
        frame.payload,
        frame.fin,
    )


@given(code=st.sampled_from([1000, 1001, 1011, 3000, 4999]), reason=st.text(max_size=30))
def test_close_payloads_agree(code: int, reason: str) -> None:
    ours = build_close(code, reason)
    assert ours == WsClose(code, reason).serialize()
    assert parse_close(ours) == (code, reason)
    parsed = WsClose.parse(ours)
    assert (parsed.code, parsed.reason) == (code, reason)


def test_our_request_accepted_by_websockets_server() -> None:
    request_bytes, key = build_request("example.com", "/chat")
    server = ServerProtocol()
    server.receive_data(request_bytes)
    [request] = server.events_received()
    server.send_response(server.accept(request))
    response_bytes = b"".join(server.data_to_send())
    assert server.handshake_exc is None
    assert server.state is State.OPEN
    assert check_response(response_bytes, key).status == 101


def test_websockets_client_accepts_our_response() -> None:
    client = ClientProtocol(parse_uri("ws://example.com/chat?x=1"))
    client.send_request(client.connect())
    request = parse_request(b"".join(client.data_to_send()))
    assert request.path == "/chat?x=1"
    client.receive_data(build_response(validate_request(request)))
    assert client.events_received()[0].status_code == 101
    assert client.handshake_exc is None
    assert client.state is State.OPEN


def test_websockets_client_rejects_our_response_for_another_key() -> None:
    client = ClientProtocol(parse_uri("ws://example.com/"))
    client.send_request(client.connect())
    client.data_to_send()
    client.receive_data(build_response("dGhlIHNhbXBsZSBub25jZQ=="))
    assert client.handshake_exc is not None
    assert "Sec-WebSocket-Accept" in str(client.handshake_exc)


@pytest.mark.parametrize(
    ("wire", "their_message"),
    [
        (encode_frame(Opcode.TEXT, b"x", rsv1=True), "reserved bits"),
        (encode_frame(0x3, b""), "invalid opcode"),
        (encode_frame(Opcode.PING, b"", fin=False), "fragmented control frame"),
        (encode_frame(Opcode.PONG, b"x" * 126), "control frame too long"),
    ],
    ids=["rsv1", "reserved-opcode", "fragmented-ping", "long-pong"],
)
def test_both_codecs_reject_the_same_frames(wire: bytes, their_message: str) -> None:
    with pytest.raises(WsProtocolError, match=their_message):
        ws_parse(wire, mask=False)
    with pytest.raises(ProtocolError) as info:
        FrameDecoder(role="client").feed(wire)
    assert info.value.code == CloseCode.PROTOCOL_ERROR
