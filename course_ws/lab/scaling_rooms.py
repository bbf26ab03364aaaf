"""Who hears whom across worker processes, seen from the clients only.

Behind one port (``course-ws serve chat --workers 2``) the kernel hands each
new connection to whichever worker accepts it first: a client cannot choose,
and is not told. The chat's welcome tells it anyway: its ``members`` are the
users already in the room *on that worker* (each process knows only its own
connections). :func:`split_by_worker` uses that to sort members by worker,
connecting until each of two workers holds ``per_worker`` of them (a member
landing on a full worker is closed again), and :func:`everyone_says` has each
member say one line and counts who heard what, and which ids each worker gave.

:class:`ResumingMember` is the client the chapter's fault demonstrations use:
it keeps the id of every message it received, and after its connection closes
it joins again with ``?since=LAST_ID``, wherever the next connection lands.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any, Self

from websockets.exceptions import ConnectionClosed

from course_ws.clients.chat import ChatClient, Event

ATTEMPTS = 200
"""Connections :func:`split_by_worker` may open before giving up."""
WORKER_NAMES = "AB"
REPLAY_WAIT = 1.0
"""Seconds a resumed member waits for its own line in the replay before saying it again."""


@dataclass
class WorkerGroups:
    """Members sorted by the worker that holds them (as their welcomes showed)."""

    url: str
    room: str
    groups: list[list[ChatClient]]
    attempts: int
    """Connections opened to get there (those landing on a full worker were closed)."""

    @property
    def members(self) -> list[tuple[int, ChatClient]]:
        """(worker index, member) for every member, worker A's first."""
        return [(index, member) for index, group in enumerate(self.groups) for member in group]

    def __str__(self) -> str:
        sizes = " + ".join(str(len(group)) for group in self.groups)
        return f"{sizes} members in room {self.room}, one group per worker"

    async def aclose(self) -> None:
        """Close every member (1000)."""
        await asyncio.gather(*(member.close() for _, member in self.members))

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


async def split_by_worker(
    url: str,
    room: str = "lobby",
    *,
    per_worker: int = 3,
    workers: int = 2,
    attempts: int = ATTEMPTS,
) -> WorkerGroups:
    """Connect members to ``url`` until each of ``workers`` workers holds ``per_worker``.

    A member whose welcome lists nobody starts a new group (a worker where the
    room is empty); one that lists members of a group joins it. :class:`RuntimeError`
    if ``attempts`` connections were not enough (the kernel kept choosing one worker).
    """
    groups: list[list[ChatClient]] = []
    opened = 0
    try:
        while len(groups) < workers or any(len(group) < per_worker for group in groups):
            if opened == attempts:
                sizes = [len(group) for group in groups]
                raise RuntimeError(f"{attempts} connections gave groups of {sizes} members")
            member = await ChatClient.connect(url, room, user=f"member{opened}")
            opened += 1
            known = set(member.welcome["members"] or ())
            mine = [group for group in groups if known & {m.user for m in group}]
            group: list[ChatClient] | None = mine[0] if mine else None
            if group is None and not known and len(groups) < workers:
                group = []  # nobody here yet: a worker not seen before
                groups.append(group)
            if group is not None and len(group) < per_worker:
                group.append(member)
            else:  # its worker holds enough members already
                await member.close()
    except BaseException:
        await asyncio.gather(*(m.close() for group in groups for m in group))
        raise
    return WorkerGroups(url, room, groups, opened)


@dataclass
class Exchange:
    """What every member heard after each member said one line."""

    workers: list[int]
    """The worker index of each member, in speaking order."""
    heard: list[set[int]]
    """For each member, the speakers (by index) whose line it received."""
    ids: list[int | None]
    """The id each member's own line got (``None``: it never came back)."""

    @property
    def owed(self) -> int:
        """Deliveries owed: each line to every member but its speaker."""
        return len(self.workers) * (len(self.workers) - 1)

    def reached_on(self, worker: int) -> tuple[int, int]:
        """(received, owed) for the members of ``worker``."""
        members = [i for i, w in enumerate(self.workers) if w == worker]
        got = sum(len(self.heard[i] - {i}) for i in members)
        return got, len(members) * (len(self.workers) - 1)

    @property
    def reached(self) -> int:
        return sum(len(heard - {i}) for i, heard in enumerate(self.heard))

    @property
    def lost(self) -> int:
        return self.owed - self.reached

    def ids_by_worker(self) -> dict[int, list[int | None]]:
        """The ids the lines said on each worker got, in speaking order."""
        found: dict[int, list[int | None]] = {}
        for worker, message_id in zip(self.workers, self.ids, strict=True):
            found.setdefault(worker, []).append(message_id)
        return found

    def __str__(self) -> str:
        per_worker = ", ".join(
            f"members on worker {WORKER_NAMES[w]} got {got} of {owed}"
            for w in sorted(set(self.workers))
            for got, owed in [self.reached_on(w)]
        )
        ids = "; ".join(
            f"said on worker {WORKER_NAMES[w]}: {', '.join(map(str, found))}"
            for w, found in self.ids_by_worker().items()
        )
        return (
            f"deliveries: {self.reached} of {self.owed} owed, {self.lost} lost ({per_worker})\n"
            f"ids of the lines {ids}"
        )


async def everyone_says(groups: WorkerGroups, *, settle: float = 0.5) -> Exchange:
    """Each member, worker A's first, says ``"hello from USER"`` once its previous speaker
    heard its own line back; then everyone listens ``settle`` seconds more."""
    members = groups.members
    users = {member.user: index for index, (_, member) in enumerate(members)}
    heard: list[set[int]] = [set() for _ in members]
    ids: list[int | None] = [None] * len(members)
    echoed = [asyncio.Event() for _ in members]

    async def listen(index: int, member: ChatClient) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                event = await member.event(timeout=3600)
                if event["type"] != "message":
                    continue
                speaker = users.get(str(event["text"]).removeprefix("hello from "))
                if speaker is not None:
                    heard[index].add(speaker)
                    if speaker == index:
                        ids[index] = int(event["id"])
                        echoed[index].set()

    listeners = [asyncio.create_task(listen(i, m)) for i, (_, m) in enumerate(members)]
    try:
        for index, (_, member) in enumerate(members):
            await member.say(f"hello from {member.user}")
            async with asyncio.timeout(5):
                await echoed[index].wait()
        await asyncio.sleep(settle)
    finally:
        for task in listeners:
            task.cancel()
        await asyncio.gather(*listeners, return_exceptions=True)
    return Exchange([worker for worker, _ in members], heard, ids)


@dataclass
class ResumingMember:
    """A member that keeps every message id it got and resumes with ``?since=`` after a close.

    ``base`` is where it connects (nginx, or one worker); ``connect_options`` go to
    :meth:`ChatClient.connect` (``local_addr=("127.0.0.2", 0)``, ...).
    """

    base: str
    user: str
    room: str = "lobby"
    connect_options: dict[str, Any] = field(default_factory=dict)
    ids: list[int] = field(default_factory=list)
    """Every message id received, in order."""
    closes: list[int | None] = field(default_factory=list)
    """The close code of each connection that ended under it (``None``: no close frame)."""
    client: ChatClient | None = None

    @property
    def last_id(self) -> int | None:
        return self.ids[-1] if self.ids else None

    async def join(self, base: str | None = None) -> Self:
        """Connect (to ``base`` this time, if given), resuming after the last id received."""
        self.client = await ChatClient.connect(
            base or self.base, self.room, user=self.user, since=self.last_id, **self.connect_options
        )
        return self

    async def message(self, timeout: float = 5.0) -> Event:
        """The next message; after a close, record its code, join again and go on."""
        while True:
            assert self.client is not None, "join() first"
            try:
                event = await self.client.next("message", timeout=timeout)
            except ConnectionClosed as closed:
                self.closes.append(closed.rcvd.code if closed.rcvd else None)
                await self.join()
                continue
            self.ids.append(int(event["id"]))
            return event

    async def messages_until(self, text: str, timeout: float = 5.0) -> list[Event]:
        """Messages up to and including the first that says ``text``."""
        got = [await self.message(timeout)]
        while got[-1]["text"] != text:
            got.append(await self.message(timeout))
        return got

    async def say_and_hear(self, text: str, timeout: float = 10.0) -> Event:
        """Say ``text`` and return it as it comes back with its id.

        If the connection closes before it comes back (a worker stopping), the
        resumed connection's replay shows whether it was accepted; if it is not
        there within a second, it was not, and it is said again.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            closes = len(self.closes)
            await self.say(text)
            with contextlib.suppress(TimeoutError):
                while (left := deadline - loop.time()) > 0:
                    wait = min(left, REPLAY_WAIT) if len(self.closes) > closes else left
                    event = await self.message(timeout=wait)
                    if event["text"] == text:
                        return event
            if loop.time() >= deadline:
                raise TimeoutError(f"{text!r} did not come back within {timeout:g} s")

    async def say(self, text: str) -> None:
        """Say ``text``; if the connection is gone, join again first."""
        assert self.client is not None, "join() first"
        try:
            await self.client.say(text)
        except ConnectionClosed as closed:
            self.closes.append(closed.rcvd.code if closed.rcvd else None)
            await self.join()
            await self.client.say(text)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()
