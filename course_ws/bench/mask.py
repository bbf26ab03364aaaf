"""``course-ws bench mask``: how fast can Python XOR a payload with a 4-byte key?

Every frame a client sends is masked (RFC 6455 §5.3) and every frame a server
receives is unmasked, so masking runs on every byte of client traffic. Three
ways to do it, measured in one run on the same payloads:

* the per-byte loop — :func:`course_ws.rfc6455.mask_bytes_naive`, the
  definition in §5.3 written as Python: one interpreted step per byte;
* ours — :func:`course_ws.rfc6455.mask_bytes`: the payload and the repeated
  key as two big integers, XORed in one C-level operation;
* websockets' own — whatever ``websockets.frames`` actually calls: its C
  extension (``websockets.speedups``) when it was compiled for this machine,
  else the same big-integer trick as ours (``websockets.utils``), which is
  measured too so that you can compare like with like.

Throughput is in MB/s (10⁶ bytes per second), best of N runs, and each row
shows its ratio to the per-byte loop.
"""

from __future__ import annotations

import functools
import platform
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import version

from course_ws.bench.timing import best_time
from course_ws.rfc6455 import mask_bytes, mask_bytes_naive

__all__ = ["SIZES", "Implementation", "MaskReport", "Measurement", "implementations", "run"]

SIZES = (125, 4 * 1024, 64 * 1024, 1024 * 1024)
"""Payload sizes: the largest 7-bit length, a typical message, a big one, a huge one."""

KEY = bytes.fromhex("37fa213d")  # the masking key of RFC 6455 §5.7's examples
TARGET_RATIO = 10.0
"""What chapter 01 promises: ours is at least 10× the per-byte loop from 64 KiB up."""

Mask = Callable[[bytes, bytes], bytes]


@dataclass(frozen=True)
class Implementation:
    """A masking function and how the report names it."""

    label: str
    function_name: str
    mask: Mask


@dataclass(frozen=True)
class Measurement:
    """One implementation on one payload size."""

    label: str
    function_name: str
    size: int
    seconds: float  # per call, best run

    @property
    def mb_per_s(self) -> float:
        return self.size / self.seconds / 1e6


@dataclass(frozen=True)
class MaskReport:
    """Everything measured by one :func:`run`; ``str()`` is the report."""

    measurements: tuple[Measurement, ...]
    repeat: int
    quick: bool
    websockets_uses: str
    environment: str

    def throughput(self, label: str, size: int) -> float:
        """MB/s of the implementation called ``label`` on ``size``-byte payloads."""
        for measurement in self.measurements:
            if (measurement.label, measurement.size) == (label, size):
                return measurement.mb_per_s
        raise LookupError(f"no measurement of {label!r} at {size} bytes")

    def ratio(self, label: str, size: int) -> float:
        """How many times faster than the per-byte loop ``label`` is at ``size``."""
        return self.throughput(label, size) / self.throughput(NAIVE, size)

    @property
    def sizes(self) -> list[int]:
        return sorted({measurement.size for measurement in self.measurements})

    def __str__(self) -> str:
        mode = "quick run" if self.quick else "full run"
        lines = [
            f"course-ws bench mask: masking throughput, best of {self.repeat} ({mode})",
            self.environment,
            f"websockets masks frames with {self.websockets_uses}",
            "",
            f"{'payload':<9}{'implementation':<22}{'function':<32}{'MB/s':>9}{'× loop':>9}",
        ]
        for size in self.sizes:
            for measurement in (m for m in self.measurements if m.size == size):
                first = measurement.label == self.measurements[0].label
                lines.append(
                    f"{format_size(size) if first else '':<9}{measurement.label:<22}"
                    f"{measurement.function_name:<32}{_number(measurement.mb_per_s):>9}"
                    f"{_number(self.ratio(measurement.label, size)):>9}"
                )
        big = [size for size in self.sizes if size >= 64 * 1024]
        if big:
            ratios = ", ".join(f"{self.ratio(OURS, s):.0f}× at {format_size(s)}" for s in big)
            met = all(self.ratio(OURS, s) >= TARGET_RATIO for s in big)
            lines += [
                "",
                f"{OURS} vs the per-byte loop: {ratios} "
                f"(target ≥ {TARGET_RATIO:.0f}× from 64 KiB: {'met' if met else 'NOT met'})",
            ]
        return "\n".join(lines)


NAIVE = "per-byte loop"
OURS = "course_ws"


def implementations() -> list[Implementation]:
    """The functions to compare, websockets' as it is installed here."""
    import websockets.frames
    import websockets.utils

    found = [
        Implementation(NAIVE, "rfc6455.mask_bytes_naive", mask_bytes_naive),
        Implementation(OURS, "rfc6455.mask_bytes", mask_bytes),
    ]
    used = vars(websockets.frames)["apply_mask"]  # what frames.py calls; not re-exported
    if used is websockets.utils.apply_mask:
        found.append(Implementation("websockets (Python)", "utils.apply_mask", used))
    else:
        found.append(Implementation("websockets (C)", "speedups.apply_mask", used))
        found.append(
            Implementation("websockets (Python)", "utils.apply_mask", websockets.utils.apply_mask)
        )
    return found


def websockets_masking() -> str:
    """Which function ``websockets.frames`` really calls, in words."""
    import websockets.frames
    import websockets.utils

    if vars(websockets.frames)["apply_mask"] is websockets.utils.apply_mask:
        return "websockets.utils.apply_mask (pure Python: its C extension is not installed)"
    return "websockets.speedups.apply_mask (its C extension)"


def run(*, quick: bool = False, sizes: Sequence[int] = SIZES) -> MaskReport:
    """Measure every implementation on every size, in one run; ``quick`` takes ~1 s.

    Each function is first checked against the per-byte definition: a fast
    wrong answer is not a result.
    """
    repeat, min_time = (3, 0.01) if quick else (5, 0.2)
    rng = random.Random(6455)
    measurements = []
    for size in sizes:
        payload = rng.randbytes(size)
        expected = mask_bytes_naive(payload, KEY)
        for implementation in implementations():
            mask = implementation.mask
            if mask(payload, KEY) != expected:
                raise AssertionError(f"{implementation.function_name} masks {size} bytes wrongly")
            seconds = best_time(
                functools.partial(mask, payload, KEY),
                repeat=repeat,
                min_time=min_time,
            )
            measurements.append(
                Measurement(implementation.label, implementation.function_name, size, seconds)
            )
    environment = (
        f"Python {platform.python_version()} on {platform.system()} {platform.machine()}, "
        f"websockets {version('websockets')}"
    )
    return MaskReport(tuple(measurements), repeat, quick, websockets_masking(), environment)


def format_size(size: int) -> str:
    """``125 B``, ``4 KiB``, ``1 MiB``."""
    for unit, factor in (("MiB", 2**20), ("KiB", 2**10)):
        if size >= factor and size % factor == 0:
            return f"{size // factor} {unit}"
    return f"{size} B"


def _number(value: float) -> str:
    """Three significant digits or so, without scientific notation."""
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"
