"""The ``channels`` server's store on a real SQLite file: the Store contract, on the Django ORM.

Django's settings belong to the process, so every test here (and every
``channels`` server started in this pytest process) uses the one database of
the process's default options; each test uses rooms of its own.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap

import pytest

from course_ws.clients.probes import fresh_room
from course_ws.options import ServeOptions
from course_ws.servers._channels.settings import configure

DATABASE = configure(ServeOptions().database)

from course_ws.servers._channels.chat import migrate  # noqa: E402  (Django is configured now)
from course_ws.servers._channels.store import DjangoStore, append_message  # noqa: E402


@pytest.fixture
async def store():
    store = DjangoStore(history_size=5, history_bytes=10_000)
    await store.run(migrate)
    await store.load()
    try:
        yield store
    finally:
        await store.aclose()


async def test_ids_increase_by_one_per_room_under_concurrent_appends(store):
    other = DjangoStore()  # a second thread and connection on the same file
    room, elsewhere = fresh_room(), fresh_room()
    try:
        appended = await asyncio.gather(
            *(s.append(room, "ada", f"m{n}") for n in range(40) for s in (store, other)),
            *(store.append(elsewhere, "bob", f"e{n}") for n in range(10)),
        )
    finally:
        await other.aclose()
    ids = sorted(m.id for m in appended if m.room == room)
    assert ids == list(range(1, 81))
    assert sorted(m.id for m in appended if m.room == elsewhere) == list(range(1, 11))


async def test_ids_stay_unique_when_another_process_appends_at_the_same_time(store):
    room = fresh_room()
    script = textwrap.dedent(
        f"""
        import asyncio
        from course_ws.servers._channels.settings import configure
        configure({str(DATABASE)!r})
        from course_ws.servers._channels.store import DjangoStore

        async def main():
            store = DjangoStore()
            ids = [(await store.append({room!r}, "other", str(n))).id for n in range(50)]
            await store.aclose()
            print(" ".join(map(str, ids)))

        asyncio.run(main())
        """
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, stdout=subprocess.PIPE
    )
    mine = [(await store.append(room, "me", str(n))).id for n in range(50)]
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    theirs = [int(word) for word in output.split()]
    assert process.returncode == 0
    assert mine == sorted(mine)
    assert theirs == sorted(theirs)
    assert sorted(mine + theirs) == list(range(1, 101))  # never the same id twice


async def test_history_is_bounded_in_messages(store):
    room = fresh_room()
    for n in range(12):
        await store.append(room, "ada", f"m{n}")
    last_id, kept = await store.replay(room, 0)
    assert last_id == 12
    assert [m.id for m in kept] == [8, 9, 10, 11, 12]
    assert [m.text for m in kept] == ["m7", "m8", "m9", "m10", "m11"]


async def test_history_is_bounded_in_bytes_and_the_gauges_follow(store):
    room = fresh_room()
    rooms, size = store.rooms, store.bytes
    first = await store.append(room, "ada", "a" * 1500)
    assert (store.rooms, store.bytes) == (rooms + 1, size + first.size)
    said = [first] + [await store.append(room, "ada", c * 1500) for c in "bcd"]
    _, kept = await store.replay(room, 0)
    assert kept == said[1:]  # four are over the 10,000 bytes, the last three are not
    assert sum(m.size for m in said) > store.history_bytes >= sum(m.size for m in kept)
    assert store.bytes == size + sum(m.size for m in kept)
    huge = await store.append(room, "ada", "e" * 4096 * 3)  # alone over the bound: kept alone
    assert await store.replay(room, 0) == (huge.id, [huge])
    assert (store.rooms, store.bytes) == (rooms + 1, size + huge.size)


async def test_replay_follows_the_store_contract(store):
    room = fresh_room()
    assert await store.replay(room, None) == (0, [])
    assert await store.replay(room, 0) == (0, [])
    said = [await store.append(room, "ada", f"m{n}") for n in range(3)]
    assert await store.replay(room, None) == (3, [])  # a new member: no replay
    assert await store.replay(room, 1) == (3, said[1:])
    assert await store.replay(room, 3) == (3, [])
    assert await store.replay(room, 99) == (3, said)  # from before a reset: everything


async def test_a_new_store_finds_the_same_messages_and_goes_on_counting(store):
    room = fresh_room()
    said = [await store.append(room, "ada", f"m{n}") for n in range(3)]
    again = DjangoStore()
    try:
        await again.load()
        assert again.rooms >= 1
        assert again.bytes >= sum(m.size for m in said)
        assert await again.replay(room, 0) == (3, said)
        assert (await again.append(room, "bob", "later")).id == 4
    finally:
        await again.aclose()


async def test_the_orm_on_the_event_loop_raises_synchronous_only_operation():
    """Why the store runs its queries in a thread: Django refuses them on a running loop."""
    from django.core.exceptions import SynchronousOnlyOperation

    with pytest.raises(SynchronousOnlyOperation):
        append_message(fresh_room(), "ada", "hi", 10, 10_000)
