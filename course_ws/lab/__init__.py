"""Experiments small enough to run in a notebook cell (the benchmarks in :mod:`course_ws.bench`
measure the same at full size)."""
