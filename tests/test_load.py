"""The load generator (``course-ws load``) and the reconnect-burst measurement.

Short real runs against the chat server in a thread and against a real
``course-ws serve fastapi`` process: nothing lost or duplicated, every figure
reported. Timings are reported, never asserted (a loaded CI machine is slow,
not broken); the burst test compares two runs of the same machine instead.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from serving import COURSE_WS, course_ws_serve

from course_ws import serve_in_background
from course_ws.bench import ONE_ADDRESS_CROWD
from course_ws.hosting.open_files import OpenFilesLimit
from course_ws.load import LoadPlan, measure_reconnect_burst, run_load_test
from course_ws.load.generator import shares
from course_ws.load.members import MemberTally, ProcessResult
from course_ws.load.plan import MAX_CLIENTS, loopback_base
from course_ws.load.report import LoadReport, ServerMemory
from course_ws.load.system import cpu_seconds, process_tree, resident_bytes

CROWD_FLAGS = [f"--{name.replace('_', '-')}={value}" for name, value in ONE_ADDRESS_CROWD.items()]


def strict_json(text: str) -> dict[str, object]:
    """``text`` parsed as JSON that a strict parser accepts: no NaN, no Infinity."""

    def refuse(constant: str) -> None:
        raise ValueError(f"not strict JSON: {constant}")

    data: dict[str, object] = json.loads(text, parse_constant=refuse)
    return data


def check_clean_run(data: dict[str, object], clients: int, room_size: int) -> None:
    """What a run against a healthy server must show, from its JSON."""
    connections, messages = data["connections"], data["messages"]
    assert isinstance(connections, dict)
    assert isinstance(messages, dict)
    assert connections["connected"] == clients, connections["failed"]
    assert messages["sent"] > 0
    assert messages["accepted"] == messages["sent"], messages
    assert messages["refused"] == {}
    assert messages["unanswered"] == 0
    assert messages["lost"] == 0
    assert messages["duplicated"] == 0
    assert messages["delivered"] == messages["expected"] == messages["accepted"] * room_size
    assert data["close_codes"] == {}
    for figures in (data["latency_ms"], connections["connect_ms"]):
        assert isinstance(figures, dict)
        assert 0 < figures["p50"] <= figures["p95"] <= figures["p99"], figures
    quantiles = data["latency_ms_quantiles"]
    assert isinstance(quantiles, list)
    assert len(quantiles) == 101
    assert quantiles == sorted(quantiles)


# -- a run against the chat server, in process ---------------------------------------


def test_a_short_run_against_the_chat_server_loses_nothing_and_reports_everything():
    with serve_in_background("chat", **ONE_ADDRESS_CROWD) as server:
        plan = LoadPlan(server.url, clients=50, rooms=5, rate=100, duration=2, processes=2)
        report = run_load_test(plan, server_pids=[os.getpid()])
        assert server.running
    print(f"\n{report}")
    check_clean_run(strict_json(report.to_json()), clients=50, room_size=10)
    assert report.sent == plan.planned_messages  # no connection closed: every send went out
    assert report.server.metrics_connections == 50  # the server saw them all at once
    assert report.server.per_connection is not None
    assert len(report.addresses) == 2
    assert "lost 0, duplicated 0" in str(report)


# -- the command against a real `course-ws serve fastapi` ------------------------------


@pytest.fixture
def fastapi_server(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """``course-ws serve fastapi`` with load-test limits: its ws:// URL and process id."""
    with course_ws_serve("fastapi", *CROWD_FLAGS, log=tmp_path / "fastapi.log") as server:
        yield server.url, server.process.pid
    assert "Traceback" not in server.log_text(), server.log_text()


def test_the_command_against_fastapi_in_its_own_process(fastapi_server, tmp_path):
    url, pid = fastapi_server
    output = tmp_path / "load.json"
    done = subprocess.run(
        [
            *(COURSE_WS, "load", url, "--clients", "50", "--rooms", "5", "--rate", "100"),
            *("--duration", "2s", "--processes", "2", "--server-pid", str(pid)),
            *("--json", str(output)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    print(done.stdout)
    assert done.returncode == 0, done.stderr
    assert re.search(r"connect time p50 [\d.]+ ms, p95 [\d.]+ ms, p99 [\d.]+ ms", done.stdout)
    assert re.search(r"latency +p50 [\d.]+ ms, p95 [\d.]+ ms, p99 [\d.]+ ms", done.stdout)
    assert "LimitNOFILE" in done.stdout
    assert "ulimit -n" in done.stdout
    assert re.search(r"connecting .* 50/50", done.stderr)  # the progress bar, on stderr
    data = strict_json(output.read_text())
    check_clean_run(data, clients=50, room_size=10)
    server = data["server"]
    assert isinstance(server, dict)
    assert server["pids"] == [pid]
    assert server["metrics_connections"] == 50
    assert isinstance(server["per_connection_bytes"], float)


# -- refusals: one line, status 2, before anything connects ---------------------------


@pytest.mark.parametrize(
    "url",
    ["ws://192.0.2.1:8000", "ws://example.com:8000", "ws://0.0.0.0:8000", "ws://[2001:db8::1]:80"],
)
def test_a_url_off_this_machine_is_refused(url):
    done = subprocess.run(
        [COURSE_WS, "load", url, "--clients", "1", "--rooms", "1", "--no-progress"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1
    assert "is not a loopback address" in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--clients", "0"], "--clients must be between 1 and 20000"),
        (["--clients", str(MAX_CLIENTS + 1)], "--clients must be between"),
        (["--clients", "ten"], "invalid int value"),
        (["--rooms", "11"], "--rooms must be between 1 and 10"),
        (["--rate", "-1"], "--rate must be between 0"),
        (["--rate", "nan"], "--rate must be between 0"),
        (["--duration", "soon"], "invalid parse_duration value"),
        (["--duration", "301"], "--duration must be between 0.1 and 300"),
        (["--processes", "0"], "--processes must be between 1"),
        (["--addresses", "251"], "--addresses must be between 1 and 250"),
        (["--server-pid", "999999999"], "no running process with id"),
        (["--json", "/no/such/folder/load.json"], "--json: no folder"),
    ],
)
def test_bad_arguments_get_one_line_and_status_2(args, message):
    done = subprocess.run(
        [COURSE_WS, "load", "ws://127.0.0.1:9", "--clients", "10", "--no-progress", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("course-ws load: error: ")
    assert message in done.stderr


def test_the_loopback_check_accepts_this_machine_only():
    assert loopback_base("ws://127.0.0.1:8000/") == "ws://127.0.0.1:8000"
    assert loopback_base("ws://127.1.2.3:8000/prefix") == "ws://127.1.2.3:8000/prefix"
    assert loopback_base("ws://localhost:8000") == "ws://127.0.0.1:8000"
    assert loopback_base("ws://[::1]:8000") == "ws://[::1]:8000"
    for refused in ("wss://127.0.0.1:8000", "http://127.0.0.1", "ws://127.0.0.1:8000/?since=1"):
        with pytest.raises(ValueError, match=r"127\.0\.0\.1"):
            loopback_base(refused)


# -- how the work is split, and how losses are counted (no sockets) -------------------


def test_each_process_holds_members_of_every_room_and_addresses_alternate():
    plan = LoadPlan("ws://127.0.0.1:1", clients=300, rooms=3, rate=90, processes=2)
    parts = shares(plan, "t")
    assert [len(part.clients) for part in parts] == [150, 150]
    assert sum(part.rate for part in parts) == pytest.approx(90)
    for part in parts:
        assert {room for _, room, _ in part.clients} == {"load-t-0", "load-t-1", "load-t-2"}
    addresses = Counter(address for part in parts for _, _, address in part.clients)
    assert addresses == {"127.0.0.2": 100, "127.0.0.3": 100, "127.0.0.4": 100}
    assert LoadPlan("ws://[::1]:1", clients=300).source_addresses() == []


def tally(room: str, ids: list[int], close_code: int | None = None) -> MemberTally:
    member = MemberTally(room, base_id=0, close_code=close_code)
    member.distinct = len(set(ids))
    member.top_id = max(ids, default=0)
    member.duplicates = len(ids) - len(set(ids))
    return member


def test_losses_and_duplicates_are_counted_by_id_for_members_connected_throughout():
    members = [
        tally("a", [1, 2, 3, 4]),
        tally("a", [1, 3, 4]),  # missed 2
        tally("a", [1, 2, 2, 3, 4]),  # got 2 twice
        tally("a", [1], close_code=1013),  # dropped: not owed the rest
        tally("b", [1, 2]),
    ]
    result = ProcessResult(members=members, sent=6, echoed=5, refused=Counter(rate_limited=1))
    report = LoadReport(
        plan=LoadPlan("ws://127.0.0.1:1", clients=5, rooms=2),
        tag="t",
        addresses=[],
        open_files=OpenFilesLimit(1024, 1024, 1024),
        server=ServerMemory("unknown"),
        server_open_files=None,
        elapsed=1.0,
        results=[result],
    )
    assert report.accepted == 6
    assert report.expected == 3 * 4 + 2
    assert report.lost == 1
    assert report.duplicated == 1
    assert report.close_codes == {1013: 1}
    assert report.unanswered == 0
    assert strict_json(report.to_json())["latency_ms"] == {"p50": None, "p95": None, "p99": None}
    assert "--message-rate" in str(report)  # refused as rate_limited: the report says what to do


def test_the_server_memory_is_read_from_proc_with_its_workers():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert process_tree(os.getpid())[:1] == [os.getpid()]
        assert child.pid in process_tree(os.getpid())
        assert resident_bytes([os.getpid()]) > 10 * 2**20  # this interpreter and pytest
    finally:
        child.kill()
        child.wait(10)


def test_cpu_seconds_grow_while_a_process_computes_and_a_gone_one_counts_nothing():
    before = cpu_seconds([os.getpid()])
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:
        pass
    assert cpu_seconds([os.getpid()]) - before >= 0.2
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert cpu_seconds([gone.pid]) == 0.0


# -- a burst of reconnects after a restart --------------------------------------------


def middle_span(times: list[float]) -> float:
    """Seconds from the 10th to the 90th percentile of ``times``."""
    deciles = statistics.quantiles(times, n=10)
    return deciles[-1] - deciles[0]


@pytest.mark.timeout(120)
async def test_jitter_spreads_the_reconnect_burst_after_a_restart():
    report = await measure_reconnect_burst("chat", clients=100, jitters=(0.0, 1.0), seed=6)
    print(f"\n{report}")
    together, spread = report.series
    for series in report.series:
        assert len(series.connected) >= 100  # everyone came back to the new server
        assert min(series.connected) >= report.down_for  # none before the new server
    # Fewer attempts at once; and the herd on the new server, where it hurts, spread out:
    # the middle 80% of the handshakes take several times as long to arrive. (Not the peak
    # per 100 ms: the server runs in a thread of this process, and on a loaded machine the
    # handshakes that queued while it started complete in one batch, jitter or not.)
    assert spread.peak() < together.peak(), (spread.peak(), together.peak())
    assert middle_span(spread.connected) >= 3 * middle_span(together.connected), (
        middle_span(spread.connected),
        middle_span(together.connected),
    )
    data = strict_json(report.to_json())
    assert [s["label"] for s in data["series"]] == ["no jitter", "full jitter"]  # type: ignore[index]
