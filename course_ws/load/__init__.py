"""A load generator for the course's chat servers, and a measurement of reconnect bursts.

From a terminal::

    course-ws load ws://127.0.0.1:8000 --clients 1000 --rooms 10 --rate 200 --duration 10

From a notebook or a test::

    from course_ws.load import LoadPlan, run_load_test
    report = run_load_test(LoadPlan(server.url, clients=50, rooms=5, rate=100, duration=2))
    print(report)            # the text report
    report.to_json()         # the figures, for plots

It opens chat members from several processes (each a core's worth of client
work) and several loopback source addresses, has them talk at a set rate, and
reports connect times, delivery latency, messages lost or duplicated (by id),
close codes and the server's memory per connection. It only ever targets this
machine, and every quantity is capped (:mod:`course_ws.load.plan`).

:func:`measure_reconnect_burst` restarts a server under reconnecting clients
and counts their connection attempts over time, with and without jitter.
"""

from course_ws.load.burst import BurstReport, BurstSeries, measure_reconnect_burst
from course_ws.load.generator import run_load_test
from course_ws.load.plan import LoadPlan
from course_ws.load.report import LoadReport

__all__ = [
    "BurstReport",
    "BurstSeries",
    "LoadPlan",
    "LoadReport",
    "measure_reconnect_burst",
    "run_load_test",
]
