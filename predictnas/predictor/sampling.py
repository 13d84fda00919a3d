"""Which subnets to evaluate: a sample that covers the space, not only its crowded middle.

Uniform draws concentrate on mid-sized models (the latency of a random architecture is a sum of many
independent block costs), so the fastest and slowest ends, where a latency-constrained search ends up,
would get few training rows. :func:`coverage_sample` stratifies a large uniform pool by depth, width
and latency (equal-width bins of log latency, so the tails are bins of their own) and takes strata in
turn. The order is fixed by the seed and the pool, so ``n=300`` is a prefix of ``n=400``: a store can
grow without re-evaluating anything. The largest and the smallest architectures come first, to anchor
both ends.

Uniform draws also all lie far from the supernet's largest subnet: each changes nearly every choice of
it. With a ``centre`` (the largest), every other row comes from a second pool, the centre with a share
of its genes redrawn (the share uniform over [0, 1] across the pool), taken in random order: stratified
by depth, width and cost, it would keep only the rows far from the centre, where those strata are. These
are the subnets the supernet trains (see :func:`predictnas.train.near_largest`), and they span the accuracy
range, where the uniform rows sat at 91-105 % WER (a small-preset sample drawn uniformly) and gave the
predictor nothing to rank.
"""

from __future__ import annotations

import numpy as np

from ..complexity import param_counts
from ..space import WIDTH_GENE, SearchSpace

POOL_SIZE = 100_000
DEPTH_BINS = 3
LATENCY_BINS = 6


def coverage_sample(space: SearchSpace, n: int, seed: int = 0, cost=None, anchors: np.ndarray | None = None,
                    pool_size: int = POOL_SIZE, centre: np.ndarray | None = None) -> np.ndarray:
    """``n`` distinct canonical gene rows covering depth x width x cost strata.

    ``cost(genes) -> array`` is the latency estimate (ms) used for the cost strata; without one, the
    parameter count stands in. ``anchors`` (rows) are taken first, in order. With a ``centre`` row, the
    rows after the anchors alternate between the stratified uniform pool and the pool around the centre
    (in its own random order, so at every distance from the centre; see the module docstring).
    """
    rng = np.random.default_rng(seed)
    given = [np.zeros((0, space.n_genes), dtype=np.int8) if anchors is None else np.asarray(anchors, dtype=np.int8),
             space.sample(pool_size, rng)]
    if centre is not None:
        given.append(around_centre(space, np.asarray(centre, dtype=np.int8), pool_size, rng))
    pool = np.concatenate(given)
    source = np.repeat(np.arange(len(given)), [len(g) for g in given])
    _, first = np.unique(space.row_keys(pool), return_index=True)
    keep = np.sort(first)  # distinct rows; anchors, which come first, included once
    pool, source = pool[keep], source[keep]

    uniform = np.flatnonzero(source == 1)
    costs = np.asarray(cost(pool[uniform]) if cost is not None else param_counts(space, pool[uniform]),
                       dtype=np.float64)
    order = uniform[_round_robin(_strata(space, pool[uniform], costs), rng)]
    if centre is not None:
        order = _alternate(order, np.flatnonzero(source == 2))
    chosen = np.concatenate([np.flatnonzero(source == 0), order])[:n]
    return np.ascontiguousarray(pool[chosen])


def around_centre(space: SearchSpace, centre: np.ndarray, n: int, rng: np.random.Generator,
                  levels: int = 64) -> np.ndarray:
    """``n`` rows in random order: ``centre`` with each gene redrawn with probability r, r spread evenly
    over (0, 1)."""
    per_level = -(-n // levels)
    rows = [space.mutate(np.repeat(centre[None], per_level, axis=0), rng, rate=(level + 0.5) / levels)
            for level in range(levels)]
    return np.concatenate(rows)[rng.permutation(per_level * levels)[:n]]


def _alternate(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a[0], b[0], a[1], b[1], ...; the rest of the longer one at the end."""
    common = min(len(a), len(b))
    pairs = np.stack([a[:common], b[:common]], axis=1).reshape(-1)
    return np.concatenate([pairs, a[common:], b[common:]])


def _strata(space: SearchSpace, genes: np.ndarray, costs: np.ndarray) -> np.ndarray:
    """Stratum index per row: depth tercile x width choice x log-cost bin."""
    depths = np.asarray(space.config.depths)
    depth_edges = np.quantile(depths, np.linspace(0, 1, DEPTH_BINS + 1)[1:-1])
    depth_bin = np.searchsorted(depth_edges, space.depth_of(genes), side="right")
    width_bin = genes[:, WIDTH_GENE].astype(np.int64)
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
