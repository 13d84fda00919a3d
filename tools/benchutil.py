"""Helpers shared by the benchmark scripts in this folder (run them from the repository root)."""

from __future__ import annotations

import time


def timed(fn):
    """``(seconds, result)`` of one call, by the monotonic high-resolution clock."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result
