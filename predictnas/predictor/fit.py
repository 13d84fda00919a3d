"""Fitting and judging the accuracy predictor on the evaluated-subnet store.

``fit_predictor`` cross-validates (k folds over subnets), reports Kendall tau, Spearman and RMSE on the
held-out folds beside single-feature baselines (params, FLOPs, each zero-cost proxy: how well ranking
by that number alone does) and the noise ceiling (how well one evaluation of the same subnets ranks
another, independent one), then fits the final boosters on every row.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
from sklearn.model_selection import KFold

from ..errors import PredictnasError
from ..ranking import kendall, spearman
from ..space import SearchSpace
from .features import FeatureSpec, closed_form
from .model import AccuracyPredictor, fit_booster
from .proxies import PROXIES
from .store import EvalRecord, EvalStore

MIN_ROWS = 10
NOISE_PROTOCOL = "repeat"
INT8_PROTOCOL = "dev_int8"  # the dev evaluation as the cpu-int8 device computes (predictnas.quantization)
INT8 = "int8/"  # prefix of the targets fitted on those evaluations: int8/wer/all...


def rank_metrics(truth: np.ndarray, predicted: np.ndarray) -> dict[str, float | None]:
    """Kendall tau, Spearman and RMSE; the rank correlations are None where either side is constant."""
    rmse = float(np.sqrt(np.mean((truth - predicted) ** 2)))
    if np.ptp(truth) == 0 or np.ptp(predicted) == 0:
        return {"kendall_tau": None, "spearman": None, "rmse": rmse}
    return {"kendall_tau": kendall(truth, predicted), "spearman": spearman(truth, predicted), "rmse": rmse}


def target_values(records: list[EvalRecord], target: str) -> np.ndarray:
    """``wer/<env>``, ``cer/<env>`` or ``intent_error/<env>`` (1 - intent accuracy) of each record."""
    metric, key = target.split("/", 1)
    if metric == "intent_error":
        return np.array([1.0 - r.intent_accuracy[key] for r in records], dtype=np.float64)
    return np.array([getattr(r, metric)[key] for r in records], dtype=np.float64)


def cross_validate(spec: FeatureSpec, space: SearchSpace, genes: np.ndarray, y: np.ndarray,
                   proxies: list[dict] | None, folds: int = 5, seed: int = 0) -> dict[str, float]:
    """Metrics over the pooled held-out predictions of ``folds``-fold cross-validation. The number of
    trees is chosen inside each training fold (nested), so the held-out rows never pick it."""
    x = spec.matrix(space, genes, proxies)
    predicted = np.empty_like(y)
    for train, test in KFold(folds, shuffle=True, random_state=seed).split(x):
        predicted[test] = fit_booster(x[train], y[train]).inplace_predict(x[test])
    return rank_metrics(y, predicted)


def single_feature_baselines(space: SearchSpace, genes: np.ndarray, y: np.ndarray,
                             proxies: list[dict]) -> dict[str, dict[str, float]]:
    """Rank agreement with WER of one number alone, oriented so that bigger means lower WER."""
    cf = closed_form(space, genes)  # log params, log FLOPs
    features = {"params": cf[:, 0], "flops": cf[:, 1]}
    for name in PROXIES:
        values = np.array([p.get(name, np.nan) for p in proxies], dtype=np.float64)
        if np.isfinite(values).all():
            features[f"proxy.{name}"] = values
    out = {}
    for name, values in features.items():
        metrics = rank_metrics(y, -values)
        out[name] = {"kendall_tau": metrics["kendall_tau"], "spearman": metrics["spearman"]}
    return out


def noise_ceiling(store: EvalStore, target: str) -> dict[str, float] | None:
    """Rank agreement between the dev evaluation and the repeated one, on the subnets that have both (the
    repeats are float evaluations: none for an int8 target)."""
    if target.startswith(INT8):
        return None
    repeats = {r.arch_id: r for r in store.records(NOISE_PROTOCOL)}
    pairs = [(r, repeats[r.arch_id]) for r in store.records("dev") if r.arch_id in repeats]
    if len(pairs) < 3:
        return None
    first = target_values([a for a, _ in pairs], target)
    second = target_values([b for _, b in pairs], target)
    return {**rank_metrics(first, second), "subnets": len(pairs)}


def data_hash(records: list[EvalRecord], targets: list[str]) -> str:
    """The float targets' values (int8 targets come from other rows; a fit records them in its metrics)."""
    rows = sorted((r.arch_id, [target_values([r], t)[0] for t in targets if not t.startswith(INT8)])
                  for r in records)
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]


def fit_predictor(store: EvalStore, space: SearchSpace, spec: FeatureSpec, folds: int = 5,
                  compare: bool = True, max_rows: int | None = None) -> tuple[AccuracyPredictor, dict]:
    """Cross-validate and fit one booster per target on the store's dev rows (the first ``max_rows`` of
    them, in the order stored, if given); returns the predictor and the report."""
    records = store.records("dev")[:max_rows]
    if len(records) < MIN_ROWS:
        raise PredictnasError(f"the store holds {len(records)} evaluated subnets; fitting needs at least "
                              f"{MIN_ROWS} (run `predictnas sample` first)")
    genes = np.stack([space.encode(space.from_json(r.arch)) for r in records])
    proxies = [r.proxies for r in records]
    has_proxies = all(set(PROXIES) <= set(p) for p in proxies)
    if spec.needs_proxies and not has_proxies:
        raise PredictnasError("some stored subnets have no zero-cost proxies; re-run `predictnas sample` "
                              "with proxies, or fit without them")
    environments = sorted({k for r in records for k in r.wer if k != "all"})
    # WER drives the search; CER still ranks subnets where WER saturates near 100 %, and the intent head
    # shares the trunk, so its error is a target too
    targets = ["wer/all"] + [f"wer/{e}" for e in environments] + ["cer/all"]
    if all(r.intent_accuracy.get("all") is not None for r in records):
        targets.append("intent_error/all")

    report: dict = {"rows": len(records), "folds": folds, "features": list(spec.groups), "targets": {}}
    alternatives = [spec]
    if compare:
        for groups in (("encoding",), ("encoding", "closed_form"), ("encoding", "closed_form", "proxies")):
            if groups != spec.groups and (has_proxies or "proxies" not in groups):
                alternatives.append(FeatureSpec(groups, spec.space, spec.reference_frames))
    int8 = {r.arch_id: r for r in store.records(INT8_PROTOCOL)}
    if int8 and not all(r.arch_id in int8 for r in records):
        raise PredictnasError(f"{sum(r.arch_id in int8 for r in records)} of {len(records)} stored subnets have an "
                              "int8 evaluation; run `predictnas sample --int8` again to complete them")
    values = {t: target_values(records, t) for t in targets}
    if int8:
        values.update({INT8 + t: target_values([int8[r.arch_id] for r in records], t) for t in targets})
        report["int8_vs_float"] = {t: rank_metrics(values[t], values[INT8 + t]) for t in targets}
    boosters = {}
    for target, y in values.items():
        entry = {"cv": {",".join(s.groups): cross_validate(s, space, genes, y, proxies if s.needs_proxies else None,
                                                           folds) for s in alternatives},
                 "baselines": single_feature_baselines(space, genes, y, proxies),
                 "noise_ceiling": noise_ceiling(store, target),
                 "range": [float(y.min()), float(np.median(y)), float(y.max())]}
        boosters[target] = fit_booster(spec.matrix(space, genes, proxies if spec.needs_proxies else None), y)
        entry["trees"] = boosters[target].num_boosted_rounds()
        report["targets"][target] = entry
    metrics = {t: {"cv": e["cv"][",".join(spec.groups)], "noise_ceiling": e["noise_ceiling"], "trees": e["trees"]}
               for t, e in report["targets"].items()}
    supernet = getattr(store, "info", {})
    predictor = AccuracyPredictor(spec, boosters, metrics, data_hash(records, list(values)), len(records), supernet)
    return predictor, report
