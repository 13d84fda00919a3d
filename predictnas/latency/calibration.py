"""From the raw sum of table entries to a whole-model latency, and how well that holds on held-out models.

Modules timed alone miss the fusions and the cache effects of the whole graph, so the raw sum is biased.
The correction, fitted per device on whole subnets measured end to end::

    latency = a * raw_sum + b + c * max(0, W - W0)

``W`` is the model's fp32 weight bytes. Below ``W0`` the weights stay cache-resident and modules timed
alone behave as in the model; above it GEMMs stream weights from memory and every isolated-module table
under-predicts. ``W0`` is fitted too (the knee moves between hosts); ``c = 0`` when no knee helps.
The fit minimizes squared *relative* error, the quantity the fidelity goals are stated in.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..ranking import kendall, spearman

FORM = "a * raw_sum_ms + b + c * max(0, weight_bytes - w0_bytes) / 1e6"
MIN_POINTS_PAST_KNEE = 3
MIN_LATENCY_MS = 1e-3


@dataclass(frozen=True)
class Calibration:
    a: float = 1.0
    b: float = 0.0
    c: float = 0.0  # ms per MB of weights past the knee
    w0_bytes: float = 0.0

    def apply(self, raw_ms: np.ndarray, weight_bytes: np.ndarray) -> np.ndarray:
        """Calibrated latency (ms), elementwise over arrays (one code path for one arch or a million)."""
        past = np.maximum(np.asarray(weight_bytes, dtype=np.float64) - self.w0_bytes, 0.0) / 1e6
        # Below the calibration models' range the linear fit can extrapolate under zero; no model runs in
        # negative time, and budgets, logs and rewards need a positive latency.
        return np.maximum(self.a * np.asarray(raw_ms, dtype=np.float64) + self.b + self.c * past, MIN_LATENCY_MS)

    def describe(self) -> str:
        """The formula with its coefficients, as the build commands print it."""
        knee = f" + {self.c:.3f} ms per MB of weights past {self.w0_bytes / 1e6:.1f} MB" if self.c else ""
        return f"latency = {self.a:.3f} x table sum {self.b:+.3f} ms{knee}"

    def to_dict(self) -> dict[str, Any]:
        return {"form": FORM, **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Calibration":
        """Raises ValueError for values no fit produces: latency must grow with work and with weights."""
        calibration = cls(**{k: float(d[k]) for k in ("a", "b", "c", "w0_bytes")})
        values = asdict(calibration)
        if not all(math.isfinite(v) for v in values.values()):
            raise ValueError(f"calibration: non-finite coefficient ({values})")
        if calibration.a <= 0 or calibration.c < 0 or calibration.w0_bytes < 0:
            raise ValueError(f"calibration: a must be positive and c, w0_bytes non-negative ({values})")
        return calibration


def fit(raw_ms: np.ndarray, weight_bytes: np.ndarray, measured_ms: np.ndarray) -> Calibration:
    """Least squares in relative error over ``(a, b, c)`` for each candidate knee; the best knee wins.

    Candidate knees are the measured models' own weight sizes with at least
    ``MIN_POINTS_PAST_KNEE`` models past them (a knee fitted on one or two models fits their noise).
    """
    raw, w, y = (np.asarray(v, dtype=np.float64) for v in (raw_ms, weight_bytes, measured_ms))
    if len(y) < 3:
        raise ValueError("calibration needs at least 3 measured models")
    scale = 1.0 / y  # rows divided by the target: residuals become relative errors
    best, best_loss = Calibration(), np.inf
    knees = [None] + [k for k in np.unique(w) if (w > k).sum() >= MIN_POINTS_PAST_KNEE]
    for knee in knees:
        columns = [raw, np.ones_like(raw)] + ([] if knee is None else [np.maximum(w - knee, 0.0) / 1e6])
        x = np.stack(columns, axis=1) * scale[:, None]
        coef, *_ = np.linalg.lstsq(x, y * scale, rcond=None)
        if coef[0] <= 0 or (knee is not None and coef[2] <= 0):
            continue  # a shrinking latency with more work or more weights is noise, not a knee
        loss = float(np.sum((x @ coef - 1.0) ** 2))
        if loss < best_loss - 1e-12:
            best = Calibration(float(coef[0]), float(coef[1]), float(coef[2]) if knee is not None else 0.0,
                               float(knee) if knee is not None else 0.0)
            best_loss = loss
    return best


# ---- fidelity metrics --------------------------------------------------------------------------------


def fidelity(predicted: np.ndarray, measured: np.ndarray) -> dict[str, float]:
    """MAPE, share within +-10 %, Spearman and Kendall of predictions against measurements."""
    p, m = np.asarray(predicted, dtype=np.float64), np.asarray(measured, dtype=np.float64)
    rel = np.abs(p - m) / m
    return {"n": int(len(m)), "mape": float(rel.mean()), "within_10": float((rel <= 0.10).mean()),
            "max_error": float(rel.max()), "spearman": spearman(p, m), "kendall": kendall(p, m)}


def retest_agreement(first: np.ndarray, second: np.ndarray) -> dict[str, float]:
    """Agreement of the same models measured twice: the noise floor of every fidelity figure."""
    a, b = np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)
    rel = np.abs(b - a) / a
    return {"n": int(len(a)), "within_10": float((rel <= 0.10).mean()), "mape": float(rel.mean()),
            "max_error": float(rel.max()), "spearman": spearman(a, b)}
