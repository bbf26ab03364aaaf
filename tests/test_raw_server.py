"""The ``raw`` server (asyncio streams + course_ws.rfc6455) against real clients.

Every rule of its behaviour table has a test here. The peers are independent
code: the ``websockets`` client, and RawClient or bare sockets for the frames a
polite client never sends. Where both catalogue servers must behave alike, the
same exchange runs against ``raw`` and ``echo`` (built on ``websockets``).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from websockets.asyncio.client import connect as connect_async
from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK
from websockets.sync.client import connect

from course_ws import BackgroundServer, serve_in_background
from course_ws.clients.raw import ConnectionClosed, RawClient, upgrade_request
from course_ws.hosting.listening import bind_listener
from course_ws.options import ServeOptions
from course_ws.rfc6455 import (
    MAX_FRAGMENTS,
    Frame,
    HttpHeadReader,
    Opcode,
    build_request,
    check_response,
    encode_frame,
    parse_close,
)
from course_ws.servers import raw

TIMEOUT = 3.0
SIZES = [0, 1, 125, 126, 65535, 65536, 2**20 - 1]
KEY = b"\x01\x02\x03\x04"  # masking key for hand-built client frames
COURSE_WS = str(Path(sys.executable).with_name("course-ws"))


@pytest.fixture(scope="module")
def server() -> Iterator[BackgroundServer]:
    with serve_in_background("raw", log_level="info") as server:
        yield server


@pytest.fixture(scope="module", params=["raw", "echo"])
def either(request: pytest.FixtureRequest) -> Iterator[BackgroundServer]:
    """Each exchange that uses this runs against both servers: they must answer alike."""
    with serve_in_background(request.param) as server:
        yield server


# -- helpers -------------------------------------------------------------------


def open_socket(server: BackgroundServer, path: str = "/echo") -> tuple[socket.socket, RawClient]:
    """Handshake by hand; return the socket (to send anything at all) and a RawClient reading it."""
    return open_socket_at(server.host, server.port, path)


def open_socket_at(host: str, port: int, path: str = "/echo") -> tuple[socket.socket, RawClient]:
    """:func:`open_socket` for a server that is not a BackgroundServer."""
    sock = socket.create_connection((host, port), timeout=TIMEOUT)
    request, key = build_request(f"{host}:{port}", path)
    sock.sendall(request)
    reader = HttpHeadReader()
    result = None
    while result is None:
        result = reader.feed(sock.recv(65536))
    head, rest = result
    check_response(head, key)
    return sock, RawClient(sock, request_bytes=request, response_bytes=head, received=rest)


def close_code_after(server: BackgroundServer, data: bytes) -> int | None:
    """Send ``data`` right after the handshake; return the code of the CLOSE that answers it."""
    sock, client = open_socket(server)
    with sock:
        sock.sendall(data)
        frames = []
        while not frames or frames[-1].opcode is not Opcode.CLOSE:
            frames.append(client.recv_frame())
    assert [frame.opcode for frame in frames] == [Opcode.CLOSE], frames
    return parse_close(frames[-1].payload).code


def http_exchange(server: BackgroundServer, request: bytes) -> bytes:
    """Send raw bytes and return everything the server sends until it hangs up."""
    with socket.create_connection((server.host, server.port), timeout=TIMEOUT) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def run_in_own_loop(main: Callable[[], Coroutine[None, None, None]]) -> None:
    """``asyncio.run(main())`` in a worker thread, bounded in time.

    Not an ``async def`` test: once a browser test has run, Playwright's sync
    API keeps an event loop marked as running in the main thread for the rest
    of the session, and pytest-asyncio then refuses to start one there.
    """
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, main()).result(timeout=10)


def wait_for(condition: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


# -- messages: the websockets client -------------------------------------------


@pytest.mark.parametrize("size", SIZES)
def test_websockets_client_gets_text_and_binary_back(server, size):
    text = "é" * (size // 2) + "a" * (size % 2)
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    with connect(server.url + "/echo", max_size=None, compression=None) as websocket:
        websocket.send(text)
        assert websocket.recv(timeout=TIMEOUT) == text
        websocket.send(payload)
        got = websocket.recv(timeout=TIMEOUT)
        assert isinstance(got, bytes)
        assert got == payload


def test_asyncio_client_and_query_string(server):
    async def exchange() -> None:
        async with connect_async(server.url + "/echo?user=ada", open_timeout=TIMEOUT) as websocket:
            await websocket.send("naïve café – 🚀")
            assert await asyncio.wait_for(websocket.recv(), TIMEOUT) == "naïve café – 🚀"
            pong = await websocket.ping(b"still there?")
            await asyncio.wait_for(pong, TIMEOUT)

    run_in_own_loop(exchange)


def test_websockets_client_offers_compression_and_the_server_declines(server):
    with connect(server.url + "/echo") as websocket:  # offers permessage-deflate by default
        assert websocket.response.headers.get("Sec-WebSocket-Extensions") is None
        websocket.send("x" * 1000)
        assert websocket.recv(timeout=TIMEOUT) == "x" * 1000


def test_client_close_code_is_echoed_to_the_websockets_client(server):
    with connect(server.url + "/echo") as websocket:
        websocket.close(4000, "done here")
        assert websocket.close_code == 4000


def test_message_over_max_size_is_closed_with_1009():
    with (
        serve_in_background("raw", max_size=1000) as small,
        connect(small.url + "/echo") as websocket,
    ):
        websocket.send(b"x" * 1000)
        assert websocket.recv(timeout=TIMEOUT) == b"x" * 1000
        websocket.send(b"x" * 1001)
        with pytest.raises(ConnectionClosedError) as closed:
            websocket.recv(timeout=TIMEOUT)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1009


# -- the same exchanges against raw and echo -------------------------------------


def test_fragmented_text_with_a_split_character_is_reassembled(either):
    euro = "€".encode()
    with RawClient.connect(either.url + "/echo") as client:
        client.send_fragmented([b"price: 5 " + euro[:1], euro[1:2], euro[2:] + b"!"])
        assert client.recv_frame() == Frame(Opcode.TEXT, "price: 5 €!".encode())


def test_fragmented_binary_is_reassembled_and_sent_back_in_one_frame(either):
    parts = [bytes([n]) * 1000 for n in range(5)]
    with RawClient.connect(either.url + "/echo") as client:
        client.send_fragmented(parts, Opcode.BINARY)
        assert client.recv_frame() == Frame(Opcode.BINARY, b"".join(parts))


def test_ping_between_fragments_is_answered_first(either):
    with RawClient.connect(either.url + "/echo") as client:
        client.send_frame(Opcode.TEXT, b"hel", fin=False)
        client.ping(b"in the middle")
        client.send_frame(Opcode.CONT, b"lo", fin=True)
        assert client.recv_frame() == Frame(Opcode.PONG, b"in the middle")
        assert client.recv_frame() == Frame(Opcode.TEXT, b"hello")


@pytest.mark.parametrize("payload", [b"", b"are you there?", bytes(range(125))])
def test_ping_gets_a_pong_with_the_same_payload(either, payload):
    with RawClient.connect(either.url + "/echo") as client:
        client.ping(payload)
        assert client.recv_frame() == Frame(Opcode.PONG, payload)


def test_unsolicited_pong_is_ignored(either):
    with RawClient.connect(either.url + "/echo") as client:
        client.send_frame(Opcode.PONG, b"heartbeat")
        client.send_text("after")
        assert client.recv_frame() == Frame(Opcode.TEXT, b"after")


@pytest.mark.parametrize("code", [1000, 1001, 3000, 4000, 4999])
def test_close_code_and_reason_are_echoed(either, code):
    client = RawClient.connect(either.url + "/echo")
    assert client.close(code, "bye") == (code, "bye")


def test_close_without_a_code_gets_a_close_without_a_code(either):
    sock, client = open_socket(either)
    with sock:
        client.send_frame(Opcode.CLOSE, b"")
        frame = client.recv_frame()
        assert (frame.opcode, parse_close(frame.payload).code) == (Opcode.CLOSE, None)
        assert sock.recv(1) == b"", "the server hangs up after the closing handshake"


def masked(opcode: int, payload: bytes, **bits: bool) -> bytes:
    return encode_frame(opcode, payload, mask=KEY, **bits)


PROTOCOL_ERRORS = {
    "unmasked frame": (encode_frame(Opcode.TEXT, b"hi"), 1002),
    "reserved data opcode 0x3": (masked(0x3, b"x"), 1002),
    "reserved control opcode 0xB": (masked(0xB, b""), 1002),
    "RSV1 without an extension": (masked(Opcode.TEXT, b"x", rsv1=True), 1002),
    "RSV3 without an extension": (masked(Opcode.BINARY, b"x", rsv3=True), 1002),
    "fragmented PING": (masked(Opcode.PING, b"x", fin=False), 1002),
    "PING of 126 bytes": (masked(Opcode.PING, bytes(126)), 1002),
    "continuation without a start": (masked(Opcode.CONT, b"x"), 1002),
    "new message inside a fragmented one": (
        masked(Opcode.TEXT, b"a", fin=False) + masked(Opcode.TEXT, b"b"),
        1002,
    ),
    "close payload of 1 byte": (masked(Opcode.CLOSE, b"\x03"), 1002),
    "close code 1005 on the wire": (masked(Opcode.CLOSE, struct.pack("!H", 1005)), 1002),
    "close code 999": (masked(Opcode.CLOSE, struct.pack("!H", 999)), 1002),
    "invalid UTF-8 in text": (masked(Opcode.TEXT, b"caf\xc3("), 1007),
    "invalid UTF-8 across fragments": (
        masked(Opcode.TEXT, b"caf\xc3", fin=False) + masked(Opcode.CONT, b"("),
        1007,
    ),
    "invalid UTF-8 in a close reason": (
        masked(Opcode.CLOSE, struct.pack("!H", 1000) + b"\xff"),
        1007,
    ),
    "frame announcing 2 MiB": (b"\x82\xff" + struct.pack("!Q", 2**21) + KEY, 1009),
    "fragments adding up to over 1 MiB": (
        masked(Opcode.BINARY, bytes(2**19), fin=False)
        + masked(Opcode.CONT, bytes(2**19), fin=False)
        + masked(Opcode.CONT, b"!"),
        1009,
    ),
}


@pytest.mark.parametrize(("data", "code"), PROTOCOL_ERRORS.values(), ids=PROTOCOL_ERRORS.keys())
def test_protocol_errors_are_closed_with_the_right_code(either, data, code):
    assert close_code_after(either, data) == code


# -- fragment floods (raw only: websockets caps a message's size, not its fragments) ---


def test_message_in_too_many_fragments_is_closed_with_1009(server):
    """1 MiB in 1-byte fragments used to be buffered as a million objects (~44 MB)."""
    flood = masked(Opcode.TEXT, b"a", fin=False) + masked(Opcode.CONT, b"a", fin=False) * 2000
    assert close_code_after(server, flood) == 1009


def test_endless_empty_continuation_frames_are_closed_with_1009(server):
    """Empty fragments add no bytes: only the fragment cap stops a message that never ends."""
    flood = masked(Opcode.BINARY, b"", fin=False) + masked(Opcode.CONT, b"", fin=False) * 5000
    assert close_code_after(server, flood) == 1009


def test_fragments_up_to_the_cap_make_a_message(server):
    pieces = [bytes([n % 256]) for n in range(MAX_FRAGMENTS)]
    with RawClient.connect(server.url + "/echo", timeout=TIMEOUT) as client:
        client.send_fragmented(pieces, Opcode.BINARY)
        assert client.recv_frame() == Frame(Opcode.BINARY, b"".join(pieces))


def test_a_flood_of_tiny_frames_does_not_hog_the_event_loop(monkeypatch):
    """Between two turns of another task, the server handles a few hundred frames at most.

    Before, it decoded a whole 64 KiB read at once: 11,000 empty fragments, and
    every other client of the loop waited ~100 ms at a time.
    """
    burst = 0
    handle = raw.RawConnection._on_frame

    def counting(self: raw.RawConnection, frame: Frame, assembler: object) -> bool:
        nonlocal burst
        burst += 1
        return handle(self, frame, assembler)  # type: ignore[arg-type]

    monkeypatch.setattr(raw.RawConnection, "_on_frame", counting)
    message = (
        masked(Opcode.BINARY, b"", fin=False)
        + masked(Opcode.CONT, b"", fin=False) * 1000
        + masked(Opcode.CONT, b"")
    )
    count = 50

    def flood(port: int) -> None:
        sock, client = open_socket_at("127.0.0.1", port)
        with sock:
            sock.sendall(message * count)
            for _ in range(count):
                assert client.recv_frame() == Frame(Opcode.BINARY, b"")

    async def measure() -> None:
        nonlocal burst
        sock = bind_listener("127.0.0.1", 0)
        running = await raw.start(ServeOptions(), sock)
        sender = asyncio.create_task(asyncio.to_thread(flood, sock.getsockname()[1]))
        worst = 0
        while not sender.done():
            await asyncio.sleep(0)  # another task of the same loop, taking its turns
            worst, burst = max(worst, burst), 0
        await sender
        await running.aclose()
        assert 0 < worst <= raw.TURN_SIZE // 6 + 1, f"{worst} frames in one turn"

    run_in_own_loop(measure)


def test_length_not_minimally_encoded_is_a_1002(server):
    """§5.2: "the minimal number of bytes MUST be used". Our codec enforces it;
    websockets is lenient here and echoes such a frame, so this rule is raw-only."""
    assert close_code_after(server, b"\x81\xfe\x00\x05" + KEY + b"hello") == 1002


# -- HTTP before the upgrade -----------------------------------------------------


def test_healthz_answers_200_ok(server):
    response = http_exchange(server, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 200 OK\r\n")
    assert response.endswith(b"\r\n\r\nok\n")


def test_healthz_only_answers_get(server):
    response = http_exchange(server, b"POST /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 405 Method Not Allowed\r\n")
    assert b"\r\nAllow: GET\r\n" in response


@pytest.mark.parametrize("path", ["/", "/chat/lobby", "/echo/", "/healthz/x"])
def test_unknown_path_is_404_before_upgrading(server, path):
    response = http_exchange(server, upgrade_request(server.url, path))
    assert response.startswith(b"HTTP/1.1 404 Not Found\r\n")
    assert response.endswith(f"no WebSocket endpoint at {path}\n".encode())


@pytest.mark.parametrize(
    ("changes", "status", "says"),
    [
        ({"Upgrade": None}, 400, "missing Upgrade header"),
        ({"Connection": "keep-alive"}, 400, "Connection header is 'keep-alive'"),
        ({"Sec-WebSocket-Key": None}, 400, "missing Sec-WebSocket-Key header"),
        ({"Sec-WebSocket-Key": "c2hvcnQ="}, 400, "Sec-WebSocket-Key must be base64 of 16 bytes"),
        ({"Host": None}, 400, "expected exactly one Host header"),
        ({"Sec-WebSocket-Version": "8"}, 426, "Sec-WebSocket-Version is '8', expected '13'"),
    ],
)
def test_bad_handshake_is_refused_with_the_codecs_reason(server, changes, status, says):
    response = http_exchange(server, upgrade_request(server.url, "/echo", **changes))
    assert response.startswith(f"HTTP/1.1 {status} ".encode()), response[:60]
    assert says.encode() in response
    if status == 426:
        assert b"\r\nSec-WebSocket-Version: 13\r\n" in response


def test_garbage_is_a_400(server):
    response = http_exchange(server, b"HELLO THERE\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"malformed request line" in response


def test_endless_head_is_a_431(server):
    response = http_exchange(server, b"GET /echo HTTP/1.1\r\nX: " + b"a" * 9000)
    assert response.startswith(b"HTTP/1.1 431 ")


def test_browser_offer_of_compression_is_not_accepted(server):
    request = upgrade_request(
        server.url,
        "/echo",
        Sec_WebSocket_Extensions="permessage-deflate; client_max_window_bits",
        Origin="http://localhost",
    )
    with socket.create_connection((server.host, server.port), timeout=TIMEOUT) as sock:
        sock.sendall(request)
        head = sock.recv(65536)
    assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in head
    assert b"sec-websocket-extensions" not in head.lower()


def test_silent_client_is_dropped_after_the_handshake_timeout(monkeypatch):
    monkeypatch.setattr(raw, "HANDSHAKE_TIMEOUT", 0.2)
    with serve_in_background("raw") as fast:
        started = time.monotonic()
        response = http_exchange(fast, b"GET /echo HTTP/1.1\r\n")  # and then nothing
        elapsed = time.monotonic() - started
    assert response.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert b"no complete request within 0.2 s" in response
    assert elapsed < 2


# -- lifecycle: shutdown, keepalive, lost peers ---------------------------------


def test_stop_closes_clients_with_1001():
    server = serve_in_background("raw")
    with connect(server.url + "/echo") as websocket:
        websocket.send("hi")
        assert websocket.recv(timeout=TIMEOUT) == "hi"
        server.stop()
        with pytest.raises(ConnectionClosedOK) as closed:
            websocket.recv(timeout=TIMEOUT)
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1001, "server shutting down")


def test_stop_drops_a_client_that_never_answers_the_close(monkeypatch):
    monkeypatch.setattr(raw, "CLOSE_TIMEOUT", 0.2)
    server = serve_in_background("raw", log_level="info")
    silent = RawClient.connect(server.url + "/echo", timeout=TIMEOUT)  # never reads, never answers
    started = time.monotonic()
    server.stop()
    elapsed = time.monotonic() - started
    frame = silent.recv_frame()
    with contextlib.suppress(ConnectionClosed, OSError):
        silent.recv_frame()
        silent.close()
    assert (frame.opcode, parse_close(frame.payload).code) == (Opcode.CLOSE, 1001)
    assert elapsed < 2
    assert any("did not answer our close frame within 0.2 s" in line for line in server.logs)


def test_stop_during_a_handshake_is_not_an_error():
    server = serve_in_background("raw", log_level="info")
    with socket.create_connection((server.host, server.port), timeout=TIMEOUT) as half:
        half.sendall(b"GET /echo HTTP/1.1\r\n")  # ...and the rest never comes
        time.sleep(0.1)  # let the server accept it (if not, stop() refuses it: fine too)
        server.stop()
        with contextlib.suppress(ConnectionResetError):
            assert half.recv(100) == b""
    assert not [line for line in server.logs if " ERROR " in line or "Traceback" in line]


def test_keepalive_drops_a_peer_that_never_answers_pings():
    with serve_in_background("raw", ping_interval=0.2, ping_timeout=0.2) as server:
        client = RawClient.connect(server.url + "/echo", timeout=TIMEOUT)
        started = time.monotonic()
        frames = []
        while not frames or frames[-1].opcode is not Opcode.CLOSE:
            frames.append(client.recv_frame())  # never answers anything
        elapsed = time.monotonic() - started
        with contextlib.suppress(ConnectionClosed):
            client.close()
    assert frames[0].opcode is Opcode.PING
    assert len(frames[0].payload) == 4
    assert parse_close(frames[-1].payload).code == 1011
    assert 0.3 < elapsed < 2


def test_keepalive_keeps_a_peer_that_answers():
    with (
        serve_in_background("raw", ping_interval=0.1, ping_timeout=0.2) as server,
        connect(server.url + "/echo") as websocket,  # answers pings on its own
    ):
        time.sleep(0.5)
        websocket.send("still here")
        assert websocket.recv(timeout=TIMEOUT) == "still here"


def test_abrupt_disconnect_is_one_info_line(server):
    sock, client = open_socket(server)
    port = sock.getsockname()[1]
    client.send_text("hello")
    assert client.recv() == "hello"
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()  # RST, no close frame
    mine = f"127.0.0.1:{port} "

    def logged() -> list[str]:
        return [line for line in server.logs if mine in line]

    wait_for(lambda: any("connection lost" in line for line in logged()), "the log line")
    assert not [line for line in logged() if " ERROR " in line or "Traceback" in line]


def send_until_blocked(sock: socket.socket, data: bytes, attempts: int = 64) -> bool:
    """Send ``data`` again and again; True once a send times out (the peer stopped reading)."""
    try:
        for _ in range(attempts):
            sock.sendall(data)
    except TimeoutError:
        return True
    return False


def test_slow_reader_does_not_block_other_clients(server):
    stuck, _ = open_socket(server)
    with stuck:
        big = masked(Opcode.BINARY, bytes(2**20 - 1))
        stuck.settimeout(0.3)
        # We never read the echoes, so the server's drain() waits for us and it
        # stops reading from us: our sends end up blocked. That's backpressure.
        assert send_until_blocked(stuck, big), "the server kept reading from a stuck client"
        with connect(server.url + "/echo") as websocket:
            for n in range(20):
                websocket.send(f"message {n}")
                assert websocket.recv(timeout=TIMEOUT) == f"message {n}"
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def test_aclose_leaves_no_task_behind():
    async def serve_and_close() -> None:
        sock = bind_listener("127.0.0.1", 0)
        running = await raw.start(ServeOptions(ping_interval=0.05), sock)
        port = sock.getsockname()[1]
        async with connect_async(f"ws://127.0.0.1:{port}/echo") as websocket:
            await websocket.send("hi")
            assert await asyncio.wait_for(websocket.recv(), TIMEOUT) == "hi"
            await asyncio.wait_for(running.aclose(), TIMEOUT)
            with pytest.raises(ConnectionClosedOK):
                await asyncio.wait_for(websocket.recv(), TIMEOUT)
        leftovers = [
            task
            for task in asyncio.all_tasks()
            if "RunningRaw." in repr(task) or "RawConnection." in repr(task)
        ]
        assert not leftovers
        assert not running.connections
        assert sock.fileno() == -1, "the listening socket is closed"

    run_in_own_loop(serve_and_close)


# -- the command line ------------------------------------------------------------


def test_course_ws_serve_raw_closes_with_1001_on_sigint_and_exits_0():
    with subprocess.Popen(
        [COURSE_WS, "serve", "raw", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:  # the with block closes the pipes and waits for the process
        try:
            assert process.stdout is not None
            first = process.stdout.readline()
            assert re.match(
                r"raw \(asyncio streams \+ course_ws\.rfc6455\) listening on 127\.0\.0\.1:\d+$",
                first,
            ), first
            url = process.stdout.readline().strip()
            assert re.fullmatch(r"ws://127\.0\.0\.1:\d+/echo", url)
            with connect(url) as websocket:
                websocket.send("over the command line")
                assert websocket.recv(timeout=TIMEOUT) == "over the command line"
                process.send_signal(signal.SIGINT)
                with pytest.raises(ConnectionClosedOK) as closed:
                    websocket.recv(timeout=10)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1001
            assert process.wait(10) == 0
            assert process.stderr is not None
            stderr = process.stderr.read()
            assert "Traceback" not in stderr
            assert "connection open" in stderr
        finally:
            if process.poll() is None:
                process.kill()
