"""A scorer built from this package's parts: latency table, closed-form costs, an injected WER model."""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..complexity import BYTES_PER_FLOAT, param_counts, peak_activation_bytes
from ..latency.estimate import LatencyEstimator
from .problem import Scores


class CostScorer:
    """``genes -> Scores``: latency from a :class:`LatencyEstimator`, parameters and peak memory in closed
    form, WER from ``wer`` (any vectorized function of gene matrices, e.g. the XGBoost predictor).

    ``memory_bytes`` is the fp32 weights plus the peak activations of a batch-1 forward on the latency
    table's reference input (:func:`predictnas.complexity.peak_activation_bytes`).

    With ``costs=False`` the scores leave ``params`` and ``memory_bytes`` out (``None``): a search without
    budgets on them needs them only for the rows it returns, which :meth:`with_costs` fills in. They cost
    about as much as the latency estimate, so a search scans about 7 % more candidates without them.
    """

    def __init__(self, estimator: LatencyEstimator, wer: Callable[[np.ndarray], np.ndarray],
                 frames: int | None = None, costs: bool = True):
        self.estimator, self.space, self.wer = estimator, estimator.space, wer
        self.frames = frames or estimator.table.frames.input
        self.costs = costs

    def __call__(self, genes: np.ndarray, latency_ms: np.ndarray | None = None) -> Scores:
        """Scores of the rows; ``latency_ms``, when given, is their estimate already computed (the
        search screens every row with the same estimator before scoring it)."""
        latency = self.estimator.estimate(genes) if latency_ms is None else np.asarray(latency_ms, dtype=np.float64)
        scores = Scores(wer=np.asarray(self.wer(genes), dtype=np.float64), latency_ms=latency)
        return self.with_costs(genes, scores) if self.costs else scores

    def with_costs(self, genes: np.ndarray, scores: Scores) -> Scores:
        """``scores`` (of the rows ``genes``) with parameters and peak memory (as given when it has them)."""
        if scores.params is not None and scores.memory_bytes is not None:
            return scores
        params = param_counts(self.space, genes)
        memory = params * BYTES_PER_FLOAT + peak_activation_bytes(self.space, genes, self.frames)
        return scores._replace(params=params, memory_bytes=memory)
