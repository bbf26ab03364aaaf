"""``course-ws bench mask``: the quick run works and reports every row.

Speeds are never asserted here: a busy CI machine is slow, not broken. The
≥ 10× target is recorded by the full run in ``benchmarks/mask.txt``.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from course_ws.bench import BENCHMARKS, run_benchmark
from course_ws.bench.mask import SIZES, MaskReport, format_size, implementations, run
from course_ws.bench.timing import best_time

COURSE_WS = str(Path(sys.executable).with_name("course-ws"))
LABELS = ["per-byte loop", "course_ws", "websockets (C)", "websockets (Python)"]


@pytest.fixture(scope="module")
def report() -> MaskReport:
    return run(quick=True)


def test_every_implementation_is_measured_at_every_size(report):
    assert report.quick
    assert report.sizes == list(SIZES)
    measured = {(m.label, m.size) for m in report.measurements}
    labels = [implementation.label for implementation in implementations()]
    assert measured == {(label, size) for label in labels for size in SIZES}
    assert all(m.seconds > 0 for m in report.measurements)


def test_websockets_masking_is_what_websockets_frames_calls(report):
    import websockets.frames
    import websockets.utils

    uses_c = websockets.frames.apply_mask is not websockets.utils.apply_mask
    assert ("C extension" in report.websockets_uses) == uses_c
    expected = LABELS if uses_c else [label for label in LABELS if label != "websockets (C)"]
    assert [implementation.label for implementation in implementations()] == expected


def test_report_prints_a_row_per_measurement_and_the_ratios(report):
    text = str(report)
    lines = text.splitlines()
    assert lines[0] == "course-ws bench mask: masking throughput, best of 3 (quick run)"
    assert "payload  implementation" in text
    for size in SIZES:
        assert re.search(rf"^{re.escape(format_size(size))}\s+per-byte loop\s", text, re.M)
    rows = [line for line in lines if re.search(r"\s[\d,.]+\s+[\d,.]+$", line)]
    assert len(rows) == len(report.measurements)
    assert all(row.rstrip().endswith("1.00") for row in rows if "per-byte loop" in row)
    assert re.search(r"^course_ws vs the per-byte loop: \d+× at 64 KiB, \d+× at 1 MiB", text, re.M)
    assert report.ratio("per-byte loop", 125) == 1.0


def test_sizes_are_named_for_humans():
    assert [format_size(size) for size in (125, 4096, 65536, 2**20, 1000)] == [
        "125 B",
        "4 KiB",
        "64 KiB",
        "1 MiB",
        "1000 B",
    ]


def test_best_time_takes_the_fastest_loop():
    calls = []
    seconds = best_time(lambda: calls.append(1), repeat=3, min_time=0.001)
    assert seconds > 0
    assert len(calls) >= 3


def test_run_benchmark_dispatches_by_name_and_refuses_unknown_names():
    assert set(BENCHMARKS) >= {"mask", "transports"}
    with pytest.raises(LookupError, match="unknown benchmark 'nope'; choose from mask"):
        run_benchmark("nope")


def test_command_line_quick_run():
    done = subprocess.run(
        [COURSE_WS, "bench", "mask", "--quick"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("course-ws bench mask: masking throughput")
    assert "(quick run)" in done.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["bench"], "the following arguments are required: benchmark"),
        (
            ["bench", "nope"],
            f"invalid choice: 'nope' (choose from {', '.join(map(repr, BENCHMARKS))})",
        ),
        (["bench", "mask", "--fast"], "unrecognized arguments: --fast"),
    ],
)
def test_bad_bench_arguments_get_one_line_and_status_2(args, message):
    done = subprocess.run([COURSE_WS, *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stdout == ""
    assert message in done.stderr
    assert done.stderr.count("\n") == 1, done.stderr


def test_committed_full_run_meets_the_target():
    """benchmarks/mask.txt is a full run, and it records the ≥ 10× promise of chapter 01."""
    text = (Path(__file__).parents[1] / "benchmarks" / "mask.txt").read_text(encoding="utf-8")
    assert "(full run)" in text.splitlines()[0]
    assert "(target ≥ 10× from 64 KiB: met)" in text
