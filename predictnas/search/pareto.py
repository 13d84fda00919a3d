"""Pareto dominance for two minimized objectives, vectorized: fronts, ranks and crowding distance.

``a`` dominates ``b`` when ``a`` is no worse in both objectives and better in one. With two objectives,
sorting by the first (then the second) leaves only earlier points able to dominate a point, so a front is a
running minimum of the second objective: ``O(n log n)`` for the sort, then ``O(n)`` per front.
"""

from __future__ import annotations

import numpy as np


def _lexsorted(f: np.ndarray) -> np.ndarray:
    """Order by the first objective, ties by the second."""
    return np.lexsort((f[:, 1], f[:, 0]))


def _first_front_of_sorted(f: np.ndarray) -> np.ndarray:
    """Non-dominated mask of points already in lexicographic order.

    A point is dominated by an earlier point with a smaller first objective and a second objective no
    larger, or by an earlier point of equal first objective and a smaller second one. (Equal points do
    not dominate each other: both stay.)
    """
    n = len(f)
    if n == 0:
        return np.zeros(0, dtype=bool)
    group_start = np.ones(n, dtype=bool)
    group_start[1:] = f[1:, 0] != f[:-1, 0]
    start_index = np.maximum.accumulate(np.where(group_start, np.arange(n), 0))
    running_min = np.minimum.accumulate(f[:, 1])
    before_group = np.where(start_index > 0, running_min[start_index - 1], np.inf)  # min over smaller f0
    best_of_group = f[start_index, 1]  # the group's smallest second objective (sorted within the group)
    return (before_group > f[:, 1]) & (f[:, 1] == best_of_group)


def non_dominated(f: np.ndarray) -> np.ndarray:
    """Boolean mask of the points of ``f`` (``(n, 2)``, minimized) that no other point dominates."""
    f = np.asarray(f, dtype=np.float64)
    order = _lexsorted(f)
    mask = np.zeros(len(f), dtype=bool)
    mask[order] = _first_front_of_sorted(f[order])
    return mask


def nondominated_rank(f: np.ndarray, at_least: int | None = None) -> np.ndarray:
    """Front index of every point (0 = non-dominated), peeling fronts until ``at_least`` points are ranked.

    Points left unranked get ``np.iinfo(int64).max``.
    """
    f = np.asarray(f, dtype=np.float64)
    n = len(f)
    at_least = n if at_least is None else min(at_least, n)
    rank = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    remaining = _lexsorted(f)  # a subsequence of a sorted sequence stays sorted: sort once
    front, ranked = 0, 0
    while ranked < at_least:
        on_front = _first_front_of_sorted(f[remaining])
        rank[remaining[on_front]] = front
        ranked += int(on_front.sum())
        remaining = remaining[~on_front]
        front += 1
    return rank


def crowding_distance(f: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """NSGA-II crowding distance of every point within its front (infinite at each front's extremes).

    Per objective, the gap between a point's two neighbours in its front, divided by the front's range
    in that objective; summed over objectives. All fronts at once, with no loop over fronts.
    """
    f = np.asarray(f, dtype=np.float64)
    n = len(f)
    distance = np.zeros(n)
    if n == 0:
        return distance
    for k in range(f.shape[1]):
        order = np.lexsort((f[:, k], rank))  # by front, then by this objective
        values, fronts = f[order, k], rank[order]
        first = np.ones(n, dtype=bool)
        first[1:] = fronts[1:] != fronts[:-1]
        last = np.ones(n, dtype=bool)
        last[:-1] = fronts[1:] != fronts[:-1]
        start = np.maximum.accumulate(np.where(first, np.arange(n), 0))
        end = np.minimum.accumulate(np.where(last, np.arange(n), n - 1)[::-1])[::-1]
        span = values[end] - values[start]
        gap = np.zeros(n)
        inner = ~first & ~last
        gap[inner] = (values[2:] - values[:-2])[inner[1:-1]] / np.where(span > 0, span, 1.0)[inner]
        gap[first | last] = np.inf
        distance[order] += gap
    return distance


def merge_front(front: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Mask of ``candidates`` that no point of ``front`` dominates or equals (``front`` is non-dominated).

    Cheap prefilter for keeping a running front over millions of candidates: a non-dominated front
    sorted by the second objective is decreasing in the first, so one binary search per candidate finds
    the only front point that can cover it. Equal points are rejected too: a front over a piecewise-constant
    predictor would otherwise collect every row of a tied outcome (337,483 rows at an 80-ms budget).
    """
    if len(front) == 0:
        return np.ones(len(candidates), dtype=bool)
    order = np.lexsort((front[:, 0], front[:, 1]))  # by second objective, ties by the first
    f0, f1 = front[order, 0], front[order, 1]
    # Among front points with second objective <= the candidate's, the last has the smallest first one.
    at = np.searchsorted(f1, candidates[:, 1], side="right") - 1
    covered = (at >= 0) & (f0[np.maximum(at, 0)] <= candidates[:, 0])
    return ~covered
