"""An asyncio client of the chat protocol: for notebooks, tests and benchmarks."""

from __future__ import annotations

import asyncio
import json
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlencode

from websockets.asyncio.client import ClientConnection, connect

Event = dict[str, Any]


def chat_url(base: str, room: str, *, user: str | None = None, since: int | None = None) -> str:
    """``base`` (``ws://host:port``) + ``/chat/{room}`` + the query the protocol understands."""
    query = {key: value for key, value in (("user", user), ("since", since)) if value is not None}
    return f"{base}/chat/{room}" + (f"?{urlencode(query)}" if query else "")


class ChatClient:
    """One member of a room. ``welcome`` is the first event, read by :meth:`connect`."""

    def __init__(self, websocket: ClientConnection, welcome: Event) -> None:
        self.websocket = websocket
        self.welcome = welcome

    @property
    def user(self) -> str:
        return str(self.welcome["user"])

    @classmethod
    async def connect(
        cls,
        base: str,
        room: str,
        *,
        user: str | None = None,
        since: int | None = None,
        timeout: float = 5.0,
        **options: Any,
    ) -> ChatClient:
        """Join ``room`` on the server at ``base`` and wait for the welcome."""
        websocket = await connect(chat_url(base, room, user=user, since=since), **options)
        try:
            async with asyncio.timeout(timeout):
                welcome = json.loads(await websocket.recv())
        except BaseException:
            await websocket.close()
            raise
        if welcome.get("type") != "welcome":
            await websocket.close()
            raise ValueError(f"expected a welcome first, got {welcome}")
        return cls(websocket, welcome)

    async def say(self, text: str) -> None:
        """Send a ``say`` message."""
        await self.websocket.send(json.dumps({"type": "say", "text": text}))

    async def event(self, timeout: float = 2.0) -> Event:
        """The next event; :class:`TimeoutError` if none arrives within ``timeout``."""
        async with asyncio.timeout(timeout):
            frame = await self.websocket.recv()
        if not isinstance(frame, str):
            raise TypeError(f"the chat protocol uses text frames, got {len(frame)} binary bytes")
        event: Event = json.loads(frame)
        return event

    async def next(self, kind: str, timeout: float = 2.0) -> Event:
        """The next event of type ``kind``, skipping others."""
        async with asyncio.timeout(timeout):
            while (event := await self.event(timeout=timeout))["type"] != kind:
                pass
        return event

    async def close(self) -> None:
        await self.websocket.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
