"""Benchmark batch prediction of the accuracy predictor on a million gene rows.

    python tools/bench_predictor.py [--predictor runs/small/predictor.json] [--target wer/all] [--n 1000000]
                                    [--repeats 5] [--threads 2] [--json bench_predictor.json]

Stages (median, min, max seconds over repeats): building the feature matrix from genes, XGBoost's
prediction, and both together, with rows per second. Goal from the predictor issue: at least
1,000,000 predictions per second on 2 cores. Without ``--predictor`` a predictor of 400 trees (early
stopping would keep almost none on random labels) is fit on random labels, so the number exists before
a supernet is trained; the JSON says which one was measured and how many trees it has. ``--target``
picks the booster: ``wer/all`` for a plain search, ``cer/all`` for one with ``--finetune-calibration``.
"""

from __future__ import annotations

import argparse
import json
import platform

import numpy as np

from predictnas.predictor import AccuracyPredictor, FeatureSpec
from predictnas.predictor.model import XGB_PARAMS, fit_booster
from predictnas.space import get_space
from benchutil import print_stages, spread, timed  # noqa: E402  (tools/ is on sys.path when run as a script)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--predictor", help="predictor.json (default: one fit on random labels)")
    parser.add_argument("--target", default="wer/all", help="the booster to time (default wer/all)")
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=XGB_PARAMS["nthread"])
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()

    if args.predictor:
        predictor = AccuracyPredictor.load(args.predictor)
    else:
        space = get_space()
        spec = FeatureSpec(("encoding", "closed_form"), space.config)
        train = space.sample(300, np.random.default_rng(1))
        labels = np.random.default_rng(2).random(300)
        predictor = AccuracyPredictor(spec, {args.target: fit_booster(spec.matrix(space, train), labels, rounds=400)})
    booster = predictor.boosters[args.target]
    booster.set_param({"nthread": args.threads})
    space = predictor.space
    rng = np.random.default_rng(0)
    stages = {"features": [], "xgboost": [], "features+xgboost": []}
    for _ in range(args.repeats):
        genes = space.sample(args.n, rng)
        t_features, x = timed(lambda: predictor.spec.matrix(space, genes))
        t_predict, _ = timed(lambda: booster.inplace_predict(x))
        stages["features"].append(t_features)
        stages["xgboost"].append(t_predict)
        stages["features+xgboost"].append(t_features + t_predict)

    summary = {name: spread(v) for name, v in stages.items()}
    trees = len(booster.get_dump())
    print(f"{args.n:,} rows, {x.shape[1]} features, {args.target}: {trees} trees, {args.threads} threads, "
          f"predictor {args.predictor or '(random labels)'}")
    print_stages(summary, args.n, "rows/s")
    rate = args.n / summary["features+xgboost"]["median"]
    print(f"\ngoal >= 1,000,000 predictions/s: {rate:,.0f}/s -> {'met' if rate >= 1e6 else 'MISSED'}")
    if args.json_path:
        with open(args.json_path, "w") as f:
            json.dump({"n": args.n, "repeats": args.repeats, "threads": args.threads, "target": args.target, "trees": trees,
                       "features": int(x.shape[1]), "predictor": args.predictor, "machine": platform.processor(),
                       "seconds": summary, "rows_per_second": rate}, f, indent=2)


if __name__ == "__main__":
    main()
