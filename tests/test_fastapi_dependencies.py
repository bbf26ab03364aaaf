"""FastAPI dependencies on WebSocket routes, on the wire, through the course's uvicorn host.

What tutorials and issue threads disagree about, settled for FastAPI 0.165:

- a dependency that raises ``HTTPException(401)`` runs before the endpoint,
  so before accept: the client gets a real ``401`` over HTTP, with the body;
- a dependency that accepts and then raises ``WebSocketException(1008)``
  closes the open socket with 1008 and its reason;
- the security classes (``APIKeyHeader``, ``OAuth2PasswordBearer``,
  ``APIKeyQuery``) take an ``HTTPConnection`` now and work on WebSocket routes
  (a 401 when the key is missing); only the header ones are out of reach of a
  browser, whose ``WebSocket`` API cannot set headers;
- a parameter that fails validation (a required ``?user=`` missing) makes
  FastAPI's default handler close before accept with 1008, which a server
  turns into HTTP 403: the 1008 never reaches the client.

No ``from __future__ import annotations`` here: FastAPI reads the endpoints'
annotations at run time, and as strings they would name dependencies defined
inside ``demo_app`` that it cannot resolve (every route would then refuse).
"""

from collections.abc import Iterator
from typing import Annotated

import pytest
from fastapi import Depends, FastAPI, HTTPException, Query, WebSocket, WebSocketException
from fastapi.security import APIKeyHeader, APIKeyQuery, OAuth2PasswordBearer
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from course_ws import BackgroundServer, serve_in_background

TOKEN = "s3cret"


def demo_app() -> FastAPI:
    app = FastAPI()

    async def token_before_accept(websocket: WebSocket) -> str:
        if websocket.query_params.get("token") != TOKEN:
            raise HTTPException(401, "a valid ?token= is required")
        return "alice"

    async def token_after_accept(websocket: WebSocket) -> str:
        await websocket.accept()
        if websocket.cookies.get("token") != TOKEN:
            raise WebSocketException(1008, "a valid token cookie is required")
        return "alice"

    @app.websocket("/before")
    async def before(websocket: WebSocket, user: Annotated[str, Depends(token_before_accept)]):
        await websocket.accept()
        await websocket.send_text(f"hello {user}")
        await websocket.close()

    @app.websocket("/after")
    async def after(websocket: WebSocket, user: Annotated[str, Depends(token_after_accept)]):
        await websocket.send_text(f"hello {user}")
        await websocket.close()

    header_key = APIKeyHeader(name="X-API-Key")
    query_key = APIKeyQuery(name="key")
    bearer = OAuth2PasswordBearer(tokenUrl="token")

    @app.websocket("/header-key")
    async def with_header_key(websocket: WebSocket, key: Annotated[str, Depends(header_key)]):
        await websocket.accept()
        await websocket.send_text(f"key {key}")
        await websocket.close()

    @app.websocket("/query-key")
    async def with_query_key(websocket: WebSocket, key: Annotated[str, Depends(query_key)]):
        await websocket.accept()
        await websocket.send_text(f"key {key}")
        await websocket.close()

    @app.websocket("/bearer")
    async def with_bearer(websocket: WebSocket, token: Annotated[str, Depends(bearer)]):
        await websocket.accept()
        await websocket.send_text(f"token {token}")
        await websocket.close()

    @app.websocket("/named")
    async def named(websocket: WebSocket, user: Annotated[str, Query(min_length=1)]):
        await websocket.accept()
        await websocket.send_text(f"hello {user}")
        await websocket.close()

    return app


@pytest.fixture(scope="module")
def server() -> Iterator[BackgroundServer]:
    with serve_in_background(demo_app()) as running:
        yield running


async def refused_with(url: str, **kwargs: object) -> tuple[int, bytes]:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, **kwargs):  # type: ignore[arg-type]
            pass
    response = refused.value.response
    return response.status_code, bytes(response.body or b"")


async def first_message(url: str, **kwargs: object) -> str:
    async with connect(url, **kwargs) as websocket:  # type: ignore[arg-type]
        message = await websocket.recv()
        assert isinstance(message, str)
        return message


async def test_http_exception_before_accept_is_a_real_401(server: BackgroundServer) -> None:
    status, body = await refused_with(f"{server.url}/before")
    assert (status, body) == (401, b'{"detail":"a valid ?token= is required"}')
    assert await first_message(f"{server.url}/before?token={TOKEN}") == "hello alice"


async def test_websocket_exception_after_accept_closes_with_1008(server: BackgroundServer) -> None:
    async with connect(f"{server.url}/after") as websocket:
        with pytest.raises(ConnectionClosed) as closed:
            await websocket.recv()
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (
        1008,
        "a valid token cookie is required",
    )
    cookie = {"Cookie": f"token={TOKEN}"}
    assert await first_message(f"{server.url}/after", additional_headers=cookie) == "hello alice"


@pytest.mark.parametrize(
    ("path", "credentials", "expected"),
    [
        ("/header-key", {"additional_headers": {"X-API-Key": "k1"}}, "key k1"),
        ("/query-key?key=k2", {}, "key k2"),
        ("/bearer", {"additional_headers": {"Authorization": "Bearer t0k"}}, "token t0k"),
    ],
)
async def test_security_classes_work_on_websocket_routes(
    server: BackgroundServer, path: str, credentials: dict[str, object], expected: str
) -> None:
    bare_path = path.partition("?")[0]
    status, body = await refused_with(f"{server.url}{bare_path}")
    assert (status, body) == (401, b'{"detail":"Not authenticated"}')
    assert await first_message(f"{server.url}{path}", **credentials) == expected


async def test_a_failed_validation_closes_before_accept_so_the_client_sees_403(
    server: BackgroundServer,
) -> None:
    status, _ = await refused_with(f"{server.url}/named")
    assert status == 403
    assert await first_message(f"{server.url}/named?user=bob") == "hello bob"
    assert "Traceback" not in "\n".join(server.logs)
