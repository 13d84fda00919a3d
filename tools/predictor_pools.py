"""Does a sample around the largest subnet train a better predictor than a uniform one, at equal size?

    python tools/predictor_pools.py --run-dir runs/small [--seed 0] [--lut LUT.json] [--folds 5]
                                    [--repeats 3] [--json pools.json]

Reads a store filled by ``predictnas sample --around-largest`` and sorts its rows back into the pools of
:func:`predictnas.predictor.sampling.coverage_sample` (the same seed and latency table as ``sample``):
the two anchors, the stratified uniform pool and the pool around the largest. Rows of neither (e.g.
added by ``search --rescore``) are counted and left out. Then, over ``--repeats`` shuffles of k-fold
cross-validation, three predictors are trained per fold (default features, trees by nested early
stopping, as ``fit``):

- ``uniform``: the training folds' uniform rows only, what ``sample`` without ``--around-largest`` gives;
- ``mixed``: as many rows, drawn at random from the training folds' rows of both pools: the same
  evaluation budget spent as ``--around-largest`` spends it;
- ``all``: every training row (both pools; twice the uniform count), for reference.

Each is scored by Kendall tau on the held-out rows of each pool, and of both. The anchors are always
trained on, never tested. Prints median (min-max) over repeats and writes everything with ``--json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.model_selection import KFold

from predictnas.latency.estimate import LatencyEstimator
from predictnas.latency.table import LatencyTable, find_table
from predictnas.predictor.features import FeatureSpec
from predictnas.predictor.fit import target_values
from predictnas.predictor.model import fit_booster
from predictnas.predictor.sampling import coverage_sample
from predictnas.predictor.store import SQLiteStore
from predictnas.ranking import kendall
from predictnas.rundir import RunDir
from predictnas.space import SearchSpace, largest_arch, smallest_arch
from benchutil import spread  # noqa: E402  (tools/ is on sys.path when run as a script)

TARGETS = ("wer/all", "wer/quiet_home", "cer/all", "intent_error/all")
TRAINING_SETS = ("uniform", "mixed", "all")
TEST_POOLS = ("uniform", "around", "both")


def pool_labels(space: SearchSpace, records: list, seed: int, estimator) -> np.ndarray:
    """``anchor`` / ``uniform`` / ``around`` / ``other`` per record, from the sample's own order: after
    the two anchors, even positions come from the uniform pool and odd ones from around the largest."""
    anchors = np.stack([space.encode(largest_arch(space)), space.encode(smallest_arch(space))])
    rows = coverage_sample(space, len(records), seed, cost=estimator.estimate if estimator else None,
                           anchors=anchors, centre=anchors[0])
    label_of = {}
    for position, row in enumerate(rows):
        pool = "anchor" if position < 2 else ("uniform", "around")[position % 2]
        label_of[space.decode(row).arch_id] = pool
    return np.array([label_of.get(r.arch_id, "other") for r in records])


def compare(x: np.ndarray, y: np.ndarray, labels: np.ndarray, folds: int, repeats: int) -> dict:
    """Kendall tau per (training set, test pool) and repeat, pooled over each repeat's held-out folds."""
    taus = {(t, p): [] for t in TRAINING_SETS for p in TEST_POOLS}
    anchors = np.flatnonzero(labels == "anchor")
    testable = np.flatnonzero(np.isin(labels, ("uniform", "around")))
    for repeat in range(repeats):
        rng = np.random.default_rng(repeat)
        predicted = {t: np.full(len(y), np.nan) for t in TRAINING_SETS}
        for train, test in KFold(folds, shuffle=True, random_state=repeat).split(testable):
            train, test = testable[train], testable[test]
            uniform = train[labels[train] == "uniform"]
            chosen = {"uniform": uniform, "mixed": rng.choice(train, size=len(uniform), replace=False), "all": train}
            for name, rows in chosen.items():
                rows = np.concatenate([anchors, rows])
                predicted[name][test] = fit_booster(x[rows], y[rows]).inplace_predict(x[test])
        for name in TRAINING_SETS:
            for pool in TEST_POOLS:
                held_out = testable if pool == "both" else testable[labels[testable] == pool]
                taus[(name, pool)].append(kendall(y[held_out], predicted[name][held_out]))
    return {f"{t}->{p}": {"taus": v, **spread(v)} for (t, p), v in taus.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, default=Path("runs/default"))
    parser.add_argument("--seed", type=int, default=0, help="the sample's --seed")
    parser.add_argument("--lut", type=Path, default=None, help="the table `sample` used (default: as `sample`)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", dest="json_path", type=Path)
    args = parser.parse_args()

    with SQLiteStore(RunDir(args.run_dir).store) as store:
        space = SearchSpace(store.space_config())
        records = store.records("dev")
    lut = args.lut or find_table("cpu", space.config.name)
    estimator = LatencyEstimator(LatencyTable.load(lut))
    labels = pool_labels(space, records, args.seed, estimator)
    counts = {pool: int((labels == pool).sum()) for pool in ("anchor", "uniform", "around", "other")}
    print(f"{RunDir(args.run_dir).store}: {len(records)} subnets; pools {counts} (strata by {lut})")
    if min(counts["uniform"], counts["around"]) < 2 * args.folds:
        raise SystemExit("too few rows of each pool: fill the store with `predictnas sample --around-largest`")

    genes = np.stack([space.encode(space.from_json(r.arch)) for r in records])
    x = FeatureSpec.parse("encoding,closed_form", space.config).matrix(space, genes)
    results = {}
    for target in TARGETS:
        y = target_values(records, target)
        results[target] = compare(x, y, labels, args.folds, args.repeats)
        print(f"\n{target}: Kendall tau on held-out rows, median (min-max) over {args.repeats} repeats")
        print(f"  {'trained on':<12}" + "".join(f"{'test ' + p:>22}" for p in TEST_POOLS))
        for name in TRAINING_SETS:
            cells = [results[target][f"{name}->{p}"] for p in TEST_POOLS]
            print(f"  {name:<12}" + "".join(f"{c['median']:>10.3f} ({c['min']:.3f}-{c['max']:.3f})" for c in cells))
    if args.json_path:
        args.json_path.write_text(json.dumps({"store": str(RunDir(args.run_dir).store), "lut": str(lut), "pools": counts,
                                              "folds": args.folds, "repeats": args.repeats, "results": results},
                                             indent=2))


if __name__ == "__main__":
    main()
