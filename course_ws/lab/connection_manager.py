"""The ``ConnectionManager`` chat that FastAPI tutorials teach, kept as they write it.

Chapter 04 runs it against a client that stops reading and against two
workers, and watches it fail; the course's servers are the fix. Nothing here is
improved on purpose: the connections live in a ``list`` in this process's
memory (one module-level ``manager``, as the tutorials have it), and
``broadcast`` awaits ``send_text`` for one connection after the other, so it
waits as long as the slowest member makes it wait. Every message a member sends
goes to every member, the sender included, as ``"Message: <text>"``.

Serve it like the tutorials do, with ``uvicorn course_ws.lab.connection_manager:app``
(add ``--workers 2`` to see two processes that never hear each other), or in a
notebook with ``serve_in_background(app)``.

Two flaws beyond the two the chapter measures: ``disconnect`` uses
``list.remove``, which raises :class:`ValueError` for a connection removed twice;
and a ``send_text`` to a member that has just vanished raises
``WebSocketDisconnect`` in the *sender's* handler, whose ``except`` then removes
the sender from the list, not the vanished member.
"""

from fastapi import FastAPI, WebSocket, WebSocketDisconnect

PREFIX = "Message: "
"""What ``broadcast`` puts before each text a member sent."""


class ConnectionManager:
    """A list of connected WebSockets, and a broadcast that awaits each send in turn."""

    def __init__(self) -> None:
        self.active_connections: list[WebSocket] = []

    async def connect(self, websocket: WebSocket) -> None:
        """Accept the handshake and remember the connection."""
        await websocket.accept()
        self.active_connections.append(websocket)

    def disconnect(self, websocket: WebSocket) -> None:
        """Forget the connection (``ValueError`` if it was already forgotten)."""
        self.active_connections.remove(websocket)

    async def broadcast(self, message: str) -> None:
        """Send ``message`` to every connection, one ``await`` after the other."""
        for connection in self.active_connections:
            await connection.send_text(message)


app = FastAPI()
manager = ConnectionManager()


@app.websocket("/ws")
async def websocket_endpoint(websocket: WebSocket) -> None:
    """Relay every text message to everyone, until this client disconnects."""
    await manager.connect(websocket)
    try:
        while True:
            data = await websocket.receive_text()
            await manager.broadcast(f"{PREFIX}{data}")
    except WebSocketDisconnect:
        manager.disconnect(websocket)
