"""Benchmark the genetic search: candidates scored per second, beside a per-candidate Python loop.

    python tools/bench_search.py [--predictor runs/small/predictor.json] [--lut TABLE.json]
                                 [--budget 40] [--seconds 60] [--repeats 3] [--loop-candidates 20000] [--json out.json]
    python tools/bench_search.py --convergence [--seconds 60] [--long-factor 10] [--seeds 5]

Throughput mode runs, in the same process: (1) the vectorized search (GA, ask/tell over gene matrices,
XGBoost + LUT scoring) for ``--seconds``, ``--repeats`` times (seeds 0, 1, ...: median, min, max);
(2) a per-candidate loop doing the same scoring one architecture at a time (decode, LUT walk, one-row
XGBoost prediction), the way research NAS code does.
Convergence mode compares the top-1 of a ``--seconds`` search with that of a ``--long-factor`` times
longer one, over ``--seeds`` seeds (predicted WER difference in points). Without ``--predictor`` a
predictor of 400 trees is fit on random labels (early stopping would keep almost none), and the output says so.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np

from predictnas.latency.estimate import LatencyEstimator
from predictnas.latency.table import LatencyTable, find_table
from predictnas.predictor import AccuracyPredictor, FeatureSpec
from predictnas.predictor.model import fit_booster
from predictnas.search import CostScorer, GeneticAlgorithm, MaxSeconds, Problem, minimize
from predictnas.space import get_space
from benchutil import spread  # noqa: E402  (tools/ is on sys.path when run as a script)


def load_predictor(path: str | None) -> AccuracyPredictor:
    if path:
        return AccuracyPredictor.load(path)
    space = get_space()
    spec = FeatureSpec(("encoding", "closed_form"), space.config)
    train = space.sample(300, np.random.default_rng(1))
    labels = np.random.default_rng(2).random(300)
    return AccuracyPredictor(spec, {"wer/all": fit_booster(spec.matrix(space, train), labels, rounds=400)})


def search(predictor, estimator, budget: float, seconds: float, seed: int):
    # costs=False: as `predictnas search` scores without params or memory budgets
    scorer = CostScorer(estimator, lambda genes: predictor.predict(genes), costs=False)
    problem = Problem(predictor.space, scorer, estimator, budget)
    return minimize(problem, GeneticAlgorithm(), MaxSeconds(seconds), seed=seed)


def python_loop(predictor, estimator, budget: float, n: int) -> dict:
    """The same scoring, one candidate at a time (the research-code pattern)."""
    space = predictor.space
    rows = space.sample(n, np.random.default_rng(5))
    start = time.perf_counter()
    best = -np.inf
    for row in rows:
        arch = space.decode(row)
        latency = estimator.estimate_arch(arch)
        if latency > budget:
            continue
        wer = float(predictor.predict(space.encode(arch)[None])[0])
        best = max(best, -wer - 0.02 * np.log(latency))
    seconds = time.perf_counter() - start
    return {"candidates": n, "seconds": seconds, "candidates_per_second": n / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--predictor")
    parser.add_argument("--lut")
    parser.add_argument("--budget", type=float, default=40.0, help="ms")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--repeats", type=int, default=3, help="throughput mode: searches to run")
    parser.add_argument("--loop-candidates", type=int, default=20_000)
    parser.add_argument("--convergence", action="store_true")
    parser.add_argument("--long-factor", type=float, default=10.0)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()

    predictor = load_predictor(args.predictor)
    table = LatencyTable.load(args.lut or find_table("cpu", predictor.space.config.name))
    estimator = LatencyEstimator(table, predictor.space)
    label = args.predictor or "(fit on random labels)"
    out: dict = {"predictor": label, "lut": table.source, "budget_ms": args.budget, "machine": platform.processor()}
    if args.convergence:
        rows = []
        for seed in range(args.seeds):
            short = search(predictor, estimator, args.budget, args.seconds, seed)
            long = search(predictor, estimator, args.budget, args.seconds * args.long_factor, seed + 1000)
            rows.append({"seed": seed, "short_wer": float(short.scores.wer[0]), "long_wer": float(long.scores.wer[0]),
                         "short_reward": float(short.reward[0]), "long_reward": float(long.reward[0]),
                         "gap_points": 100 * (float(short.scores.wer[0]) - float(long.scores.wer[0])),
                         "short_candidates": short.stats.candidates_scored, "long_candidates": long.stats.candidates_scored,
                         "short_latency_ms": float(short.scores.latency_ms[0]),
                         "long_latency_ms": float(long.scores.latency_ms[0]),
                         "short_arch": predictor.space.decode(short.genes[0]).to_dict(),
                         "long_arch": predictor.space.decode(long.genes[0]).to_dict()})
            r = rows[-1]
            print(f"seed {seed}: {args.seconds:g} s top-1 WER {100 * r['short_wer']:.2f} % ({r['short_candidates']:,} "
                  f"scored), {args.seconds * args.long_factor:g} s top-1 WER {100 * r['long_wer']:.2f} % "
                  f"({r['long_candidates']:,}); gap {r['gap_points']:+.3f} points", flush=True)
        gaps = [abs(r["gap_points"]) for r in rows]
        out["convergence"] = {"rows": rows, "abs_gap_points": spread(gaps)}
        print(f"|gap| over {len(rows)} seeds: median {np.median(gaps):.3f}, max {max(gaps):.3f} points "
              f"(goal <= 0.2: {'met' if max(gaps) <= 0.2 else 'MISSED'})")
    else:
        runs = [search(predictor, estimator, args.budget, args.seconds, seed).stats for seed in range(args.repeats)]
        loop = python_loop(predictor, estimator, args.budget, args.loop_candidates)
        scored = spread([s.candidates_scored for s in runs])
        rate = spread([s.candidates_per_second for s in runs])
        out["vectorized"] = {"runs": [s.to_dict() for s in runs], "candidates_scored": scored,
                             "candidates_per_second": rate}
        out["python_loop"] = loop
        print(f"predictor {label}, LUT {table.source}, budget {args.budget:g} ms, {args.repeats} searches")
        print(f"{'path':<28}{'candidates (median, min-max)':>34}{'seconds':>10}{'per second':>14}")
        cell = f"{int(scored['median']):,} ({scored['min']:,}-{scored['max']:,})"
        print(f"{'vectorized GA (ask/tell)':<28}{cell:>34}{max(s.seconds for s in runs):>10.1f}{rate['median']:>14,.0f}")
        print(f"{'per-candidate Python loop':<28}{loop['candidates']:>34,}{loop['seconds']:>10.1f}"
              f"{loop['candidates_per_second']:>14,.0f}")
        met = all(s.candidates_scored >= 30e6 and s.seconds <= 61 for s in runs)
        print(f"speed-up {rate['median'] / loop['candidates_per_second']:,.0f}x; goal >= 30,000,000 in 60 s "
              f"in every search: {'met' if met else 'MISSED'}")
    if args.json_path:
        with open(args.json_path, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
