"""Peers for the RawClient tests, all on 127.0.0.1 and bounded in time.

* ``echo_url``: a real ``websockets`` server (threaded sync API), so that
  interoperability is checked against code we didn't write.
* ``scripted_server``: a hand-written peer on a raw socket, for what a
  well-behaved server never does (glue a frame to its 101, hang up early...).
* ``client_and_peer``: a RawClient on one end of a socketpair, for
  exchanges scripted byte by byte without any thread.
"""

import socket
import threading
from collections.abc import Callable, Iterator
from http import HTTPStatus

import pytest
from websockets.http11 import Request, Response
from websockets.server import ServerProtocol
from websockets.sync.server import ServerConnection, serve

from course_ws.clients.raw import RawClient

TIMEOUT = 3.0


def echo_handler(websocket: ServerConnection) -> None:
    """Echo messages; two magic messages make the server act on its own."""
    for message in websocket:
        if message == "close please":
            websocket.close(4000, "as requested")
        elif message == "ping me":
            pong_received = websocket.ping(b"from server")
            websocket.send("pong received" if pong_received.wait(TIMEOUT) else "no pong")
        else:
            websocket.send(message)


def refuse_forbidden(connection: ServerConnection, request: Request) -> Response | None:
    if request.path == "/forbidden":
        return connection.respond(HTTPStatus.FORBIDDEN, "go away\n")
    return None


@pytest.fixture(scope="module")
def echo_url() -> Iterator[str]:
    """URL of a websockets echo server running in a background thread."""
    server = serve(echo_handler, "127.0.0.1", 0, process_request=refuse_forbidden)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.socket.getsockname()
        yield f"ws://{host}:{port}"
    finally:
        server.shutdown()
        thread.join(TIMEOUT)


def read_handshake(conn: socket.socket) -> bytes:
    """Read a handshake request on ``conn``; return websockets' 101 response bytes."""
    protocol = ServerProtocol()
    while not (events := protocol.events_received()):
        protocol.receive_data(conn.recv(65536))
    protocol.send_response(protocol.accept(events[0]))
    return b"".join(protocol.data_to_send())


@pytest.fixture
def scripted_server() -> Iterator[Callable[[Callable[[socket.socket, bytes], None]], str]]:
    """Start a one-connection server; return its URL.

    The server reads the handshake request, then calls ``script(conn,
    response)`` where ``response`` is the correct 101 answer, not yet sent:
    the script decides what the client really gets.
    """
    threads: list[threading.Thread] = []

    def start(script: Callable[[socket.socket, bytes], None]) -> str:
        listener = socket.create_server(("127.0.0.1", 0))
        listener.settimeout(TIMEOUT)

        def run() -> None:
            with listener, listener.accept()[0] as conn:
                conn.settimeout(TIMEOUT)
                script(conn, read_handshake(conn))

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        threads.append(thread)
        return f"ws://127.0.0.1:{listener.getsockname()[1]}/"

    yield start
    for thread in threads:
        thread.join(TIMEOUT)


@pytest.fixture
def client_and_peer() -> Iterator[tuple[RawClient, socket.socket]]:
    """A RawClient past its handshake, and the socket playing the server."""
    client_sock, peer = socket.socketpair()
    client_sock.settimeout(TIMEOUT)
    peer.settimeout(TIMEOUT)
    with client_sock, peer:
        yield RawClient(client_sock, request_bytes=b"", response_bytes=b""), peer
