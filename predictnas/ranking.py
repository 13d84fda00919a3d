"""Rank agreement between two lists of numbers, the measure of every predictor, table and calibration here.

``spearman`` (Pearson correlation of ranks, ties averaged) and ``kendall`` (Kendall's tau-b) are
SciPy's; where either list is constant the agreement is undefined and both return NaN, without
SciPy's warning.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import kendalltau, spearmanr


def _defined(a, b) -> tuple[np.ndarray, np.ndarray] | None:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return None if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0 else (a, b)


def spearman(a, b) -> float:
    pair = _defined(a, b)
    return float("nan") if pair is None else float(spearmanr(*pair)[0])


def kendall(a, b) -> float:
    pair = _defined(a, b)
    return float("nan") if pair is None else float(kendalltau(*pair)[0])
