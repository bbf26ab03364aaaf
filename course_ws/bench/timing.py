"""Timing small functions the way :mod:`timeit` does: a loop long enough, best of N.

Why the *best* run and not the mean: every disturbance (another process, a
garbage collection, a CPU frequency change) only ever makes a run slower, so
the fastest run is the closest to what the code itself costs. The ``timeit``
documentation gives the same advice.
"""

from __future__ import annotations

import itertools
import timeit
from collections.abc import Callable


def best_time(func: Callable[[], object], *, repeat: int, min_time: float) -> float:
    """Seconds per call of ``func``: the best of ``repeat`` loops of at least ``min_time`` each.

    The loop count is calibrated first (1, 2, 5, 10, 20, 50... calls, as
    ``timeit.Timer.autorange`` does) so that a 100 ns call and a 100 ms call
    are both timed over a span long enough for the clock to be precise. The
    calibrating loop is a real measurement too, so it counts as the first run.
    """
    timer = timeit.Timer(func)
    for exponent in itertools.count():
        for base in (1, 2, 5):
            number = base * 10**exponent
            elapsed = timer.timeit(number)
            if elapsed >= min_time:
                runs = [elapsed, *timer.repeat(repeat - 1, number)]
                return min(runs) / float(number)
    raise AssertionError("unreachable")  # itertools.count() never ends
