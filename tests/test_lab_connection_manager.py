"""The tutorials' ``ConnectionManager`` (``course_ws.lab.connection_manager``) and the experiments
of notebook 04b that run it (``course_ws.lab.rooms``, ``course_ws.lab.workers``).

The lab app must stay what the tutorials teach, flaws included: it relays to everyone, a
member that stops reading silences the room, and two processes never hear each other. The
experiments must tell that apart from the course's server, which keeps delivering and drops
the stalled member with 1013, and whose apps share rooms only through a shared broker.
"""

from __future__ import annotations

import asyncio
import contextlib

import httpx2
import pytest
from websockets.asyncio.client import connect

from course_ws import serve_in_background
from course_ws.chat.session import CloseCode
from course_ws.clients.waiting import wait_until
from course_ws.lab import connection_manager
from course_ws.lab.connection_manager import PREFIX, ConnectionManager
from course_ws.lab.rooms import COURSE, SEED, SmallSendBuffer, run_stalled_room
from course_ws.lab.workers import reach, serve_course_workers, start_uvicorn_workers

FAST = {"message_rate": 10_000.0, "message_burst": 10_000}
QUICK = {"messages": 120, "deadline": 1.0}


def test_the_manager_keeps_a_list_and_broadcasts_one_await_after_the_other() -> None:
    manager = ConnectionManager()
    assert manager.active_connections == []
    assert isinstance(manager.active_connections, list)
    assert connection_manager.app.routes[-1].path == "/ws"


async def test_every_member_hears_every_text_the_sender_included() -> None:
    connection_manager.manager.active_connections.clear()
    with serve_in_background(connection_manager.app) as server:
        async with (
            connect(server.url + "/ws") as ada,
            connect(server.url + "/ws") as bob,
        ):
            await wait_until(
                lambda: len(connection_manager.manager.active_connections) == 2,
                within=2,
                what="both members in the list",
            )
            await ada.send("hi")
            async with asyncio.timeout(2):
                assert await ada.recv() == f"{PREFIX}hi"
                assert await bob.recv() == f"{PREFIX}hi"
        await wait_until(
            lambda: not connection_manager.manager.active_connections,
            within=2,
            what="the list emptied",
        )


async def test_a_stalled_member_silences_the_tutorials_room_and_not_the_course_one() -> None:
    with serve_in_background(SmallSendBuffer(connection_manager.app)) as server:
        calm = await run_stalled_room(server.url, SEED, stalled=False, **QUICK)
        stalled = await run_stalled_room(server.url, SEED, stalled=True, **QUICK)
    assert calm.delivered == 1
    assert stalled.delivered < 0.9, stalled
    assert stalled.stalled_close is None  # nobody ever closes it
    assert stalled.slowest()[-1] == float("inf")

    with serve_in_background("fastapi", **FAST) as server:
        course = await run_stalled_room(server.url, COURSE, stalled=True, **QUICK)
    assert course.delivered == 1, course
    assert course.stalled_close == CloseCode.TRY_AGAIN_LATER
    assert max(course.slowest()) < 0.5


async def test_two_tutorial_workers_lose_what_the_other_one_hears() -> None:
    with start_uvicorn_workers("course_ws.lab.connection_manager:app", count=2) as workers:
        assert len(set(workers.pids)) == 2
        found = await reach(workers.urls, SEED, members=4, timeout=1.0)
    assert (found.reached, found.lost) == (1, 2)  # worker 1 heard it, worker 2 did not
    assert all(heard == (worker == 0) for worker, heard in found.heard)
    assert all(process.poll() is not None for process in workers.processes)


@pytest.mark.parametrize(("shared", "lost"), [(False, 2), (True, 0)])
async def test_course_apps_share_rooms_only_through_a_shared_broker(
    shared: bool, lost: int
) -> None:
    with serve_course_workers("fastapi", count=2, shared_broker=shared) as workers:
        found = await reach(workers.urls, COURSE, members=4, timeout=1.0)
        assert found.lost == lost, found
        assert not any("Traceback" in line for line in workers.logs)
    with contextlib.suppress(httpx2.TransportError):  # stopped: nothing listens any more
        async with httpx2.AsyncClient() as http:
            await http.get(workers.http_urls[1] + "/healthz", timeout=1)
        pytest.fail("a worker still answers after stop()")


async def test_a_post_to_one_course_app_reaches_the_members_of_both() -> None:
    with serve_course_workers("fastapi", count=2, shared_broker=True) as workers:

        async def post(text: str) -> None:
            async with httpx2.AsyncClient(base_url=workers.http_urls[1]) as http:
                answer = await http.post("/rooms/lobby/messages", json={"user": "t", "text": text})
                assert answer.status_code == 201, answer.text

        found = await reach(workers.urls, COURSE, members=4, speak=post, speaker_worker=1)
    assert (found.reached, found.listeners) == (4, 4)
    assert str(found) == "reached 4 of 4 (worker 1: 2 of 2, worker 2: 2 of 2), lost 0"
