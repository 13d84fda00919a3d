"""Which subnets to evaluate: a sample that covers the space, not only its crowded middle.

Uniform draws concentrate on mid-sized models (the latency of a random architecture is a sum of many
independent block costs), so the fastest and slowest ends, where a latency-constrained search ends up,
would get few training rows. :func:`coverage_sample` stratifies a large uniform pool by depth, width
and latency (equal-width bins of log latency, so the tails are bins of their own) and takes strata in
turn. The order is fixed by the seed and the pool, so ``n=300`` is a prefix of ``n=400``: a store can
grow without re-evaluating anything. The largest and the smallest architectures come first, to anchor
both ends.
"""

from __future__ import annotations

import numpy as np

from ..complexity import param_counts
from ..space import SearchSpace

POOL_SIZE = 100_000
DEPTH_BINS = 3
LATENCY_BINS = 6


def coverage_sample(space: SearchSpace, n: int, seed: int = 0, cost=None, anchors: np.ndarray | None = None,
                    pool_size: int = POOL_SIZE) -> np.ndarray:
    """``n`` distinct canonical gene rows covering depth x width x cost strata.

    ``cost(genes) -> array`` is the latency estimate (ms) used for the cost strata; without one, the
    parameter count stands in. ``anchors`` (rows) are taken first, in order.
    """
    rng = np.random.default_rng(seed)
    pool = space.sample(pool_size, rng)
    if anchors is not None:
        pool = np.concatenate([np.asarray(anchors, dtype=np.int8), pool])
    _, first = np.unique(space.row_keys(pool), return_index=True)
    n_anchors = 0 if anchors is None else len(anchors)
    keep = np.sort(first)  # distinct rows, anchors (which come first) included once
    pool = pool[keep]
    n_anchors = int((keep < n_anchors).sum())

    costs = np.asarray(cost(pool) if cost is not None else param_counts(space, pool), dtype=np.float64)
    stratum = _strata(space, pool, costs)
    order = _round_robin(stratum[n_anchors:], rng) + n_anchors
    chosen = np.concatenate([np.arange(n_anchors), order])[:n]
    return np.ascontiguousarray(pool[chosen])


def _strata(space: SearchSpace, genes: np.ndarray, costs: np.ndarray) -> np.ndarray:
    """Stratum index per row: depth tercile x width choice x log-cost bin."""
    depths = np.asarray(space.config.depths)
    depth_edges = np.quantile(depths, np.linspace(0, 1, DEPTH_BINS + 1)[1:-1])
    depth_bin = np.searchsorted(depth_edges, space.depth_of(genes), side="right")
    width_bin = genes[:, 2].astype(np.int64)
    log_cost = np.log(np.maximum(costs, 1e-12))
    cost_edges = np.linspace(log_cost.min(), log_cost.max(), LATENCY_BINS + 1)[1:-1]
    cost_bin = np.searchsorted(cost_edges, log_cost, side="right")
    n_widths = len(space.config.widths)
    return (depth_bin * n_widths + width_bin) * LATENCY_BINS + cost_bin


def _round_robin(stratum: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Pool positions in the order: one from each non-empty stratum (shuffled), then again, ..."""
    shuffled = rng.permutation(len(stratum))
    by_stratum = shuffled[np.argsort(stratum[shuffled], kind="stable")]  # each stratum's members, random order
    counts = np.bincount(stratum[by_stratum])
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank_in_stratum = np.arange(len(by_stratum)) - np.repeat(starts, counts)
    # Rounds first; within a round, strata in a random (but fixed) order.
    stratum_order = rng.permutation(len(counts))
    position_of_stratum = np.empty_like(stratum_order)
    position_of_stratum[stratum_order] = np.arange(len(counts))
    key = rank_in_stratum * len(counts) + position_of_stratum[stratum[by_stratum]]
    return by_stratum[np.argsort(key, kind="stable")]
