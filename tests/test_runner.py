"""serve_in_background: every kind of target, clean stop, and errors that say what is wrong."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK
from websockets.sync.client import connect

from course_ws import BackgroundServer, serve_in_background
from course_ws.hosting.catalogue import UnknownServerError
from course_ws.hosting.listening import BindError
from course_ws.options import ServeOptions


async def reverse(websocket):
    async for message in websocket:
        await websocket.send(message[::-1])


async def asgi_echo(scope, receive, send):
    """A raw ASGI app: accept, echo text, stop on disconnect."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    while (event := await receive())["type"] == "websocket.receive":
        await send({"type": "websocket.send", "text": f"asgi:{event['text']}"})


def test_catalogue_server_round_trip_and_urls():
    with serve_in_background("echo") as server:
        assert server.url == f"ws://127.0.0.1:{server.port}"
        assert server.http_url == f"http://127.0.0.1:{server.port}"
        assert "running" in repr(server)
        with connect(server.url + "/echo") as websocket:
            websocket.send("ping")
            assert websocket.recv(timeout=2) == "ping"
    assert not server.running
    assert "stopped" in repr(server)


def test_handler_is_served_on_every_path():
    with (
        serve_in_background(reverse) as server,
        connect(server.url + "/any/path?x=1") as websocket,
    ):
        websocket.send("abc")
        assert websocket.recv(timeout=2) == "cba"


def test_asgi_app_is_served_by_uvicorn():
    with serve_in_background(asgi_echo) as server, connect(server.url + "/ws") as websocket:
        websocket.send("hi")
        assert websocket.recv(timeout=2) == "asgi:hi"


def test_stop_closes_clients_with_1001_and_frees_the_port():
    server = serve_in_background("echo")
    websocket = connect(server.url + "/echo").__enter__()
    server.stop()
    with pytest.raises(ConnectionClosedOK) as closed:
        websocket.recv(timeout=2)
    assert closed.value.rcvd.code == 1001
    with socket.create_server(("127.0.0.1", server.port)):
        pass  # the port is free again
    server.stop()  # idempotent


def test_several_servers_run_side_by_side():
    with serve_in_background("echo") as first, serve_in_background(reverse) as second:
        assert first.port != second.port
        with connect(first.url + "/echo") as a, connect(second.url) as b:
            a.send("ab")
            b.send("ab")
            assert (a.recv(timeout=2), b.recv(timeout=2)) == ("ab", "ba")


def test_unknown_name_lists_the_catalogue():
    with pytest.raises(UnknownServerError, match=r"unknown server 'nope'.*echo"):
        serve_in_background("nope")


def test_two_argument_handler_is_explained():
    async def old(websocket, path):
        pass

    with pytest.raises(TypeError, match=r"exactly one argument.*websocket\.request\.path"):
        serve_in_background(old)


def test_plain_function_is_refused():
    def not_async(websocket):
        pass

    with pytest.raises(TypeError, match="not a coroutine function"):
        serve_in_background(not_async)


def test_unknown_option_lists_the_options():
    with pytest.raises(TypeError, match=r"unknown option 'colour'.*max_size"):
        serve_in_background("echo", colour="blue")


def test_invalid_option_value_is_refused():
    with pytest.raises(ValueError, match="log_level must be one of"):
        serve_in_background("echo", log_level="loud")


def test_busy_port_says_what_to_do():
    with serve_in_background("echo") as server, pytest.raises(BindError, match="--port 0"):
        serve_in_background("echo", port=server.port)


def test_failing_start_raises_its_own_exception_quickly():
    class Broken(Exception):
        pass

    async def start(options, sock):
        raise Broken("no database")

    began = time.monotonic()
    with pytest.raises(Broken, match="no database"):
        BackgroundServer("broken", start, ServeOptions()).start()
    assert time.monotonic() - began < 10


def test_failing_asgi_lifespan_raises_instead_of_hanging():
    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            await receive()
            await send({"type": "lifespan.startup.failed", "message": "bad settings"})

    with pytest.raises(RuntimeError, match="SystemExit"):
        serve_in_background(app)


def test_hanging_start_times_out_and_releases_the_port():
    async def start(options, sock):
        await asyncio.sleep(3600)

    server = BackgroundServer("slow", start, ServeOptions())
    with pytest.raises(TimeoutError, match=r"did not start within 0\.2 s"):
        server.start(timeout=0.2)
    assert not server.running
    with socket.create_server(("127.0.0.1", server.port)):
        pass


def test_server_logs_are_kept_not_printed(capfd):
    with (
        serve_in_background("echo", log_level="info") as server,
        connect(server.url + "/echo") as websocket,
    ):
        websocket.send("x")
        websocket.recv(timeout=2)
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")
    assert any("connection open" in line for line in server.logs)


def test_warnings_are_kept_by_default_and_info_is_not():
    async def failing(websocket):
        raise ValueError("bug in the handler")

    with (
        serve_in_background(failing) as server,
        connect(server.url) as websocket,
        pytest.raises(ConnectionClosedError) as closed,
    ):
        websocket.recv(timeout=2)
    assert closed.value.rcvd.code == 1011
    assert any("connection handler failed" in line for line in server.logs)
    assert not any(" INFO " in line for line in server.logs)


def test_accepted_connections_send_small_writes_at_once():
    """TCP_NODELAY on accepted sockets: a head and a body are not held back 40 ms by Nagle."""

    async def report_nodelay(websocket):
        sock = websocket.transport.get_extra_info("socket")
        await websocket.send(str(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)))

    with serve_in_background(report_nodelay) as server, connect(server.url) as websocket:
        assert websocket.recv(timeout=2) != "0"
