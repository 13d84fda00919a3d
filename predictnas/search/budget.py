"""The fastest latency a space reaches on a latency estimator, so an impossible budget is refused up front."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..space import DOWNSAMPLE_GENE, SearchSpace

MAX_SWEEPS = 64
RANDOM_STARTS = 4096


def fastest_latency(space: SearchSpace, latency: Callable[[np.ndarray], np.ndarray] | Any,
                    pin: Callable[[np.ndarray], np.ndarray] | None = None,
                    rng: np.random.Generator | None = None) -> tuple[float, np.ndarray]:
    """The minimum latency (ms) the space reaches on ``latency`` and a row that reaches it.

    ``latency`` is a function of gene matrices (or a ``LatencyEstimator``); ``pin`` restricts the space
    (it maps a gene matrix to the same rows with some genes pinned, see :meth:`Problem.pin`).

    The estimators of this package are sums of per-module costs (plus a monotone calibration), so the
    minimum is the cheapest choice of each part. Rather than assume which choice that is, this runs a
    steepest descent over single-gene changes, evaluated all at once per step, from the all-first-choices
    row and from the fastest of a random sample; the result is a minimum no single-gene change improves,
    and exact for additive estimators. (Tests check that large random samples never go below it.)
    """
    if hasattr(latency, "estimate"):
        latency = latency.estimate
    pin = pin or (lambda genes: genes)
    rng = rng or np.random.default_rng(0)
    starts = pin(np.vstack([np.zeros((1, space.n_genes), dtype=np.int8), space.sample(RANDOM_STARTS, rng)]))
    start_latency = latency(starts)
    best_ms, best = np.inf, starts[0]
    for start in (starts[0], starts[int(np.argmin(start_latency))]):
        ms, row = _descend(space, latency, pin, start)
        if ms < best_ms:
            best_ms, best = ms, row
    return float(best_ms), best


def _descend(space: SearchSpace, latency, pin, row: np.ndarray) -> tuple[float, np.ndarray]:
    """Steepest descent: move to the best single-gene change of ``row`` until none is faster."""
    gene_of_variant = np.repeat(np.arange(space.n_genes), space.highs)
    choice_of_variant = np.concatenate([np.arange(h) for h in space.highs]).astype(np.int8)
    current = float(latency(row[None])[0])
    for _ in range(MAX_SWEEPS):
        variants = np.repeat(row[None], len(gene_of_variant), axis=0)
        variants[np.arange(len(variants)), gene_of_variant] = choice_of_variant
        variants = pin(_canonical(space, variants))
        variants = variants[space.validate(variants)]
        ms = latency(variants)
        i = int(np.argmin(ms))
        if not ms[i] < current:
            break
        current, row = float(ms[i]), variants[i]
    return current, row


def _canonical(space: SearchSpace, genes: np.ndarray) -> np.ndarray:
    """Zero the genes that mean nothing, and clear a downsampling point beyond the depth."""
    genes = genes * space.meaningful(genes)
    genes[genes[:, DOWNSAMPLE_GENE] >= space.depth_of(genes), DOWNSAMPLE_GENE] = 0
    return genes
