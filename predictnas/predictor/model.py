"""The accuracy predictor: XGBoost regressors, one per target, on a :class:`FeatureSpec`.

``predictor.json`` holds everything needed to score gene matrices again: the feature spec, one booster
per target in XGBoost's own JSON model format (``"wer/all"``, ``"wer/quiet_home"``, ``"cer/all"``,
``"intent_error/all"``...), the cross-validation metrics, the hash of the rows it was fit on and the
supernet they were evaluated with. Predictions are fractions (0.1 = 10 %).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import xgboost as xgb

from ..artifact import Artifact
from ..errors import PredictnasError
from ..space import SearchSpace
from .features import FeatureSpec

FORMAT = "predictnas-predictor/1"
DEFAULT_TARGET = "wer/all"
# Small data (hundreds of rows): shallow trees, shrinkage and subsampling, as NASLib's XGBoost setup. A
# learning rate of 0.1 ranks held-out subnets as 0.05 did (a small-preset run, 300 subnets, 3 seeds of 5-fold
# CV, Kendall tau: WER 0.756 vs 0.755, CER 0.847 vs 0.849, intent error 0.873 vs 0.880) with about half
# the trees in those folds, and a search predicts millions of rows with them.
XGB_PARAMS = {"objective": "reg:squarederror", "eta": 0.1, "max_depth": 4, "min_child_weight": 2,
              "subsample": 0.8, "colsample_bytree": 0.7, "lambda": 1.0, "nthread": 2, "seed": 0}
MAX_ROUNDS = 1000
EARLY_STOPPING_ROUNDS = 50
ROUNDS_SLACK = 0.5  # standard errors of held-out RMSE traded for fewer trees (see choose_rounds)


def choose_rounds(x: np.ndarray, y: np.ndarray, params: dict | None = None, folds: int = 5, seed: int = 0) -> int:
    """Boosting rounds by cross-validation of ``(x, y)`` alone: the fewest whose held-out RMSE is within
    ``ROUNDS_SLACK`` standard errors of the best round's.

    A few hundred noisy rows support far fewer trees than a fixed large budget, and near its minimum the
    held-out error is flat: the best round itself is a noisy pick, anywhere between about 30 and 700.
    Fewer trees both overfit less and predict faster, and the search scores millions of rows with them.
    On a small-preset run (300 subnets, 3 seeds of 5-fold CV) the rule kept 37 trees for WER instead of 184 at
    Kendall tau 0.752 instead of 0.756 (CER 56 instead of 256 trees, 0.844 vs 0.847; intent error 61
    instead of 278, 0.871 vs 0.873).
    """
    folds = max(2, min(folds, len(y)))
    history = xgb.cv({**XGB_PARAMS, **(params or {})}, xgb.DMatrix(x, label=y), num_boost_round=MAX_ROUNDS,
                     nfold=folds, early_stopping_rounds=EARLY_STOPPING_ROUNDS, metrics="rmse", seed=seed,
                     shuffle=True, as_pandas=False)
    mean, std = np.asarray(history["test-rmse-mean"]), np.asarray(history["test-rmse-std"])
    best = int(np.argmin(mean))
    tolerable = mean[best] + ROUNDS_SLACK * std[best] / np.sqrt(folds)
    return int(np.argmax(mean <= tolerable)) + 1


def fit_booster(x: np.ndarray, y: np.ndarray, params: dict | None = None, rounds: int | None = None) -> xgb.Booster:
    """A booster on ``(x, y)``; ``rounds=None`` chooses the number of trees with :func:`choose_rounds`."""
    if rounds is None:
        rounds = choose_rounds(x, y, params)
    return xgb.train({**XGB_PARAMS, **(params or {})}, xgb.DMatrix(x, label=y), num_boost_round=rounds)


@dataclass
class AccuracyPredictor(Artifact):
    """Predicted WER of architectures. ``predict(genes, target)`` takes a gene matrix of the space."""

    spec: FeatureSpec
    boosters: dict[str, xgb.Booster]
    metrics: dict = field(default_factory=dict)
    data_hash: str = ""
    n_rows: int = 0
    supernet: dict = field(default_factory=dict)  # path, hash, sample rate, features of the supernet behind the data
    FORMAT: ClassVar[str] = FORMAT
    KIND: ClassVar[str] = "predictor"

    def __post_init__(self) -> None:
        self.space = SearchSpace(self.spec.space)
        for booster in self.boosters.values():
            booster.set_param({"nthread": XGB_PARAMS["nthread"]})

    @property
    def targets(self) -> list[str]:
        return list(self.boosters)

    def target_for(self, environment: str | None, int8: bool = False) -> str:
        """The WER target of ``environment`` (all by default); with ``int8``, the WER as the int8 device
        computes it (fitted where ``sample --int8`` scored the subnets in int8)."""
        target = ("int8/" if int8 else "") + f"wer/{environment or 'all'}"
        if target not in self.boosters:
            if int8 and f"wer/{environment or 'all'}" in self.boosters:
                raise PredictnasError("the predictor has no int8 WER model: score the subnets in int8 with "
                                      "`predictnas sample --int8`, then fit again")
            known = [t.split("/", 1)[1] for t in self.boosters if t.startswith("wer/")]
            raise PredictnasError(f"the predictor has no WER model for environment {environment!r}; it has "
                                  f"{', '.join(known)}")
        return target

    def predict(self, genes: np.ndarray, target: str = DEFAULT_TARGET, proxies: list[dict] | None = None) -> np.ndarray:
        """Predicted WER (fraction, float32) of every row of ``genes``."""
        if target not in self.boosters:
            raise PredictnasError(f"the predictor has no target {target!r}; it has {', '.join(self.boosters)}")
        x = self.spec.matrix(self.space, genes, proxies)
        return self.boosters[target].inplace_predict(x)

    def predict_arch(self, arch, space: SearchSpace | None = None) -> dict[str, float]:
        """Every target's prediction for one architecture (fractions); ``space``, where given, must be the
        predictor's."""
        if space is not None and self.space.config != space.config:
            raise PredictnasError(f"the predictor was fit on space {self.space.config.name!r}, the architecture is "
                                  f"in {space.config.name!r}")
        genes = self.space.encode(arch)[None]
        return {target: float(self.predict(genes, target)[0]) for target in self.targets}

    def to_dict(self) -> dict:
        return {"format": FORMAT, "features": self.spec.to_dict(),
                "feature_names": self.spec.names(self.space), "data_hash": self.data_hash, "n_rows": self.n_rows,
                "supernet": self.supernet, "metrics": self.metrics,
                "boosters": {t: json.loads(bytes(b.save_raw("json"))) for t, b in self.boosters.items()}}

    @classmethod
    def from_dict(cls, data: dict, source: str) -> "AccuracyPredictor":
        spec = FeatureSpec.from_dict(data["features"])
        boosters = {}
        try:
            for target, model in data["boosters"].items():
                booster = xgb.Booster()
                booster.load_model(bytearray(json.dumps(model).encode()))
                boosters[target] = booster
        except xgb.core.XGBoostError as e:  # its messages carry XGBoost's C++ stack after the first line
            raise ValueError(f"XGBoostError: {str(e).strip().splitlines()[0][:200] if str(e).strip() else ''}") from None
        predictor = cls(spec, boosters, data.get("metrics", {}), data.get("data_hash", ""), data.get("n_rows", 0),
                        data.get("supernet", {}))
        expected = len(spec.names(predictor.space))
        for target, booster in boosters.items():
            if booster.num_features() != expected:
                raise PredictnasError(f"{source}: booster {target!r} has {booster.num_features()} features, the "
                                      f"spec {expected}; the file was edited or written by another version")
        predictor.check_range(source)
        return predictor

    def check_range(self, source) -> None:
        """Refuse boosters that predict what no WER or CER can be (below 0, or not a number) on a probe of
        the space: a booster edited or fitted on another quantity would steer a search silently."""
        if "proxies" in self.spec.groups:
            return  # scores stored subnets only; nothing to probe with
        probe = self.space.sample(256, np.random.default_rng(0))
        for target in self.targets:
            predicted = self.predict(probe, target)
            if not np.isfinite(predicted).all() or predicted.min() < -0.05:
                raise PredictnasError(f"{source}: booster {target!r} predicts {float(np.nanmin(predicted)):.3g} for "
                                      "some architectures of the space, no error rate; the file was edited or damaged")
