"""Exercise 04 · name_required — a FastAPI dependency that refuses a WebSocket without a name.

``/hello?user=ada`` greets ``hello, ada``. The name comes from a *dependency*,
``name_required``: FastAPI calls it before the endpoint and passes what it returns
as the endpoint's ``user`` argument. Write it:

1. Read the name from the handshake: ``websocket.query_params.get("user")``
   (``None`` when the query has no ``user``).
2. A missing name, or one that is not 1 to 32 of ``A-Z a-z 0-9 _ . -``
   (``valid_user(name)`` tells), is refused: **accept the WebSocket first**, then
   ``raise WebSocketException(code=status.WS_1008_POLICY_VIOLATION, reason=...)``
   with a reason that says what to do (``connect with ?user=NAME``). FastAPI
   hands the exception to Starlette, which closes the socket with that code and
   reason; the endpoint never runs.
3. Otherwise return the name: the endpoint receives it.

Why accept first? Raised *before* accept, the same exception closes a socket
that was never opened: uvicorn answers the handshake with a bare ``403 Forbidden``,
and a browser's ``WebSocket`` only reports code 1006 — no status, no reason.
(That is also what FastAPI does on its own when a declared ``user: str`` query
parameter is missing.) Accepted first, the client gets close code 1008 (policy
violation) and your reason, which a page can show. The price: the handshake
succeeds (101) before the refusal, so HTTP logs and proxies count it as a success.
The course's ``fastapi`` server makes the other choice for its admission
(an ``HTTPException`` before accept, a real 400/404 for tools; notebook 04b
shows both).

Check your work with ``course_ws.check("name_required")`` in a notebook, or
``course-ws check name_required`` in a terminal.
"""

from typing import Annotated

from fastapi import Depends, FastAPI, WebSocket, WebSocketException, status  # noqa: F401

from course_ws.chat.protocol import valid_user  # noqa: F401

NO_NAME = "a name is required: connect with ?user=NAME"
BAD_NAME = "user: 1 to 32 of A-Z a-z 0-9 _ . -"

app = FastAPI()


async def name_required(websocket: WebSocket) -> str:
    """The ``?user=`` name of this handshake; without a valid one, close with 1008 and say why."""
    # TODO 1: read ``?user=`` with ``websocket.query_params.get("user")``.
    # TODO 2: no name, or ``not valid_user(name)``: ``await websocket.accept()``, then raise
    #         ``WebSocketException(code=status.WS_1008_POLICY_VIOLATION, reason=...)`` with
    #         NO_NAME or BAD_NAME as the reason.
    # TODO 3: return the name instead of this stand-in.
    return "guest"


@app.websocket("/hello")
async def hello(websocket: WebSocket, user: Annotated[str, Depends(name_required)]) -> None:
    """Greet the user by name, then close normally (written for you)."""
    await websocket.accept()
    await websocket.send_text(f"hello, {user}")
    await websocket.close()
