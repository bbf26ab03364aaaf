"""A bounded wait for a condition that some other task or thread will make true.

Notebook cells and tests often need "wait until the client has reconnected",
where no event is at hand to await. Polling a cheap predicate every few
milliseconds is simple and, with a timeout, can never hang a notebook.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def wait_until(
    predicate: Callable[[], bool], *, within: float, interval: float = 0.01, what: str = ""
) -> None:
    """Return as soon as ``predicate()`` is true; raise :class:`TimeoutError` after ``within`` s.

    ``what`` names the condition in the error message ("the client reconnected").
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        if loop.time() >= deadline:
            raise TimeoutError(f"{what or 'the condition'} did not happen within {within:g} s")
        await asyncio.sleep(interval)
