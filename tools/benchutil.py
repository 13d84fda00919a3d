"""Helpers shared by the benchmark scripts in this folder (run them from the repository root)."""

from __future__ import annotations

import statistics
import time


def timed(fn):
    """``(seconds, result)`` of one call, by the monotonic high-resolution clock."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def spread(values) -> dict:
    """Median, min and max of repeated measurements (what every benchmark here reports)."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def print_stages(seconds: dict, n: int, rate_label: str) -> None:
    """One row per stage: median / min / max seconds over repeats, and ``n`` per median second."""
    width = max(map(len, seconds)) + 2
    rate_width = max(len(rate_label), 13) + 3  # room for rates of ten millions and more, with separators
    print(f"{'stage':<{width}}{'median':>9}{'min':>9}{'max':>9}{rate_label:>{rate_width}}")
    for name, s in seconds.items():
        print(f"{name:<{width}}{s['median']:>9.3f}{s['min']:>9.3f}{s['max']:>9.3f}{n / s['median']:>{rate_width},.0f}")
