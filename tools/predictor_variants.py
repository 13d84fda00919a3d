"""Would another model than ``fit``'s booster rank subnets better? Kendall tau of predictor variants.

    python tools/predictor_variants.py --run-dir runs/small [--rows 300] [--target wer/all] [--folds 5]
                                       [--repeats 3] [--json variants.json]

Two tests of each variant, on the store's dev rows:

- cross-validation on the first ``--rows`` rows (the rows ``fit --rows`` uses), ``--repeats`` shuffles
  of ``--folds`` folds: median (min-max) Kendall tau of the pooled held-out predictions;
- where the store holds more rows than that (``search --rescore`` adds its finalists: the region a
  search cares about), trained on the first ``--rows`` and tested on the rest.

Variants, all on ``fit``'s default features (encoding, closed form) and, for the boosters, its nested
choice of the number of trees:

- ``booster``: what ``fit`` trains;
- ``bagged``: five boosters with other seeds, their predictions averaged;
- ``monotone``: a booster whose prediction may not rise with log parameters or log FLOPs;
- ``environments`` (``wer/all`` only): one booster on every environment's rows with an environment
  column, its predictions averaged over the environments;
- ``extra_trees``: scikit-learn's extremely randomized trees (500);
- ``cer_blend`` (WER targets): the booster's prediction averaged with a CER booster's, mapped to WER by
  an isotonic fit on the training rows.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

import numpy as np
from sklearn.ensemble import ExtraTreesRegressor
from sklearn.isotonic import IsotonicRegression
from sklearn.model_selection import KFold

from predictnas.io import write_json
from predictnas.predictor.features import FeatureSpec
from predictnas.predictor.fit import rank_metrics, target_values
from predictnas.predictor.model import fit_booster
from predictnas.rundir import RunDir
from predictnas.predictor.store import SQLiteStore
from predictnas.space import SearchSpace

MIN_HELD_OUT = 5

# (x, targets, train rows, test rows) -> predictions for the test rows
Variant = Callable[[np.ndarray, dict, np.ndarray, np.ndarray], np.ndarray]


def variants(target: str, names: list[str], environments: list[str]) -> dict[str, Variant]:
    def booster(x, t, train, test, params=None):
        return fit_booster(x[train], t[target][train], params).inplace_predict(x[test])

    def bagged(x, t, train, test):
        return np.mean([booster(x, t, train, test, {"seed": seed}) for seed in range(5)], axis=0)

    def monotone(x, t, train, test):
        signs = tuple(-1 if name in ("log_params", "log_flops") else 0 for name in names)
        return booster(x, t, train, test, {"monotone_constraints": str(signs)})

    def by_environment(x, t, train, test):
        def tagged(rows, k):
            return np.c_[x[rows], np.full(len(rows), k, dtype=np.float32)]
        model = fit_booster(np.concatenate([tagged(train, k) for k in range(len(environments))]),
                            np.concatenate([t[f"wer/{e}"][train] for e in environments]))
        return np.mean([model.inplace_predict(tagged(test, k)) for k in range(len(environments))], axis=0)

    def extra_trees(x, t, train, test):
        # one job: scikit-learn's threads beside XGBoost's OpenMP pool stalled on 2 cores
        model = ExtraTreesRegressor(500, min_samples_leaf=2, max_features=0.5, n_jobs=1, random_state=0)
        return model.fit(x[train], t[target][train]).predict(x[test])

    def cer_blend(x, t, train, test):
        to_wer = IsotonicRegression(out_of_bounds="clip").fit(t["cer/all"][train], t[target][train])
        cer = fit_booster(x[train], t["cer/all"][train]).inplace_predict(x[test])
        return (booster(x, t, train, test) + to_wer.predict(cer)) / 2

    chosen = {"booster": booster, "bagged": bagged, "monotone": monotone, "extra_trees": extra_trees}
    if target == "wer/all" and environments:
        chosen["environments"] = by_environment
    if target.startswith("wer/"):
        chosen["cer_blend"] = cer_blend
    return chosen


def judge(variant: Variant, x: np.ndarray, t: dict, target: str, rows: int, folds: int, repeats: int) -> dict:
    """Kendall taus of ``variant``; None where its predictions are constant (a few rows fit stumps)."""
    y = t[target]
    taus = []
    for seed in range(repeats):
        predicted = np.empty(rows)
        for train, test in KFold(folds, shuffle=True, random_state=seed).split(np.arange(rows)):
            predicted[test] = variant(x, t, train, test)
        taus.append(rank_metrics(y[:rows], predicted)["kendall_tau"])
    known = [tau for tau in taus if tau is not None]
    summary = {"median": float(np.median(known)), "min": min(known), "max": max(known)} if known else {}
    result = {"cv_kendall_tau": {**summary, "repeats": taus}}
    held_out = np.arange(rows, len(y))
    if len(held_out) >= MIN_HELD_OUT:
        predicted = variant(x, t, np.arange(rows), held_out)
        result["held_out"] = {"rows": len(held_out), "kendall_tau": rank_metrics(y[held_out], predicted)["kendall_tau"]}
    return result


def _tau(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, default=Path("runs/default"))
    parser.add_argument("--rows", type=int, default=300, help="rows trained on, the first stored (as fit --rows)")
    parser.add_argument("--target", default="wer/all")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", dest="json_path", type=Path)
    args = parser.parse_args()

    with SQLiteStore(RunDir(args.run_dir).store) as store:
        records = store.records("dev")
        space = SearchSpace(store.space_config())
    if len(records) < max(args.folds, 10):
        parser.error(f"{RunDir(args.run_dir).store} holds {len(records)} evaluated subnets; run `predictnas sample` first")
    rows = min(args.rows, len(records))
    spec = FeatureSpec(("encoding", "closed_form"), space.config)
    genes = np.stack([space.encode(space.from_json(r.arch)) for r in records])
    x = np.ascontiguousarray(spec.matrix(space, genes))
    environments = sorted({k for r in records for k in r.wer if k != "all"})
    names = ["wer/all", "cer/all", args.target] + [f"wer/{e}" for e in environments]
    t = {name: target_values(records, name) for name in dict.fromkeys(names)}

    print(f"{args.target}: {rows} rows, {args.repeats} x {args.folds}-fold CV; held out: the {len(records) - rows} "
          f"rows stored after them")
    print(f"  {'variant':<14}{'CV tau median (min-max)':>26}{'held-out tau':>15}")
    report = {"run_dir": str(args.run_dir), "target": args.target, "rows": rows, "folds": args.folds,
              "repeats": args.repeats, "variants": {}}
    for name, variant in variants(args.target, spec.names(space), environments).items():
        result = judge(variant, x, t, args.target, rows, args.folds, args.repeats)
        report["variants"][name] = result
        cv, held = result["cv_kendall_tau"], result.get("held_out")
        spread = f"{cv['median']:.3f} ({cv['min']:.3f}-{cv['max']:.3f})" if "median" in cv else "-"
        print(f"  {name:<14}{spread:>26}{_tau(held['kendall_tau']) if held else '-':>15}", flush=True)
    if args.json_path:
        write_json(args.json_path, report)


if __name__ == "__main__":
    main()
