"""How far one whole-model timing moves from the next: the reference normalizations compared on the same runs.

    python tools/bench_timing_noise.py [--device cpu] [--models 6] [--timings 8] [--json out.json]

Picks ``--models`` subnets of the default space at evenly spaced quantiles of the shipped table's latency
estimate, then times each ``--timings`` times with the table's whole-model protocol (3 fresh sessions,
each bracketed by 7 runs of the reference graph before and after; rounds interleave the models, so a slow
phase of the host touches all of them). Every timing is computed three ways from the same runs:

- ``plain``: the median of the session medians, not normalized;
- ``per session``: each session scaled by its own bracket (the protocol before the fix);
- ``pooled``: all runs scaled by the median of every bracketing reference run (the protocol now).

Printed per model and way: the median timing, the spread (max - min) / median and the robust CV over the
timings, and the share of timing pairs within +-2 % and +-5 % of each other. Run it alone: anything else
on the machine is what it measures. Retries of a noisy measurement (the protocol's ``max_cv``) are left
out, so the three ways see exactly the same runs.
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform

import numpy as np

from predictnas.latency import LatencyEstimator, LatencyTable, find_table, get_device
from predictnas.latency.modules import subnet_graph
from predictnas.latency.protocol import PROTOCOLS, REFERENCE_BLOCK, Reference, _time_session, reference_graph
from predictnas.space import SearchSpace

WAYS = ("plain", "per session", "pooled")


def one_timing(device, graph, protocol, reference: Reference, nominal_ms: float) -> dict[str, float]:
    """One measurement of ``graph`` (ms), computed the three ways from the same runs."""
    sessions, brackets = [], []
    for _ in range(protocol.sessions):
        before = reference.runs_ms(REFERENCE_BLOCK)
        runs, _ = _time_session(device, graph, protocol, None)
        after = reference.runs_ms(REFERENCE_BLOCK)
        sessions.append((runs * 1e3, (np.median(before) + np.median(after)) / 2))
        brackets += [before, after]
    pooled_now = float(np.median(np.concatenate(brackets)))
    return {"plain": float(np.median([np.median(runs) for runs, _ in sessions])),
            "per session": float(np.median([np.median(runs * nominal_ms / now) for runs, now in sessions])),
            "pooled": float(np.median([np.median(runs) for runs, _ in sessions]) * nominal_ms / pooled_now)}


def agreement(values: list[float], within: float) -> float:
    pairs = list(itertools.combinations(values, 2))
    return float(np.mean([abs(a / b - 1) <= within for a, b in pairs]))


def summary(values: list[float]) -> dict[str, float]:
    v = np.array(values)
    median = float(np.median(v))
    return {"median_ms": median, "spread": float(np.ptp(v) / median),
            "robust_cv": float(1.4826 * np.median(np.abs(v - median)) / median),
            "pairs_within_2": agreement(values, 0.02), "pairs_within_5": agreement(values, 0.05)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--lut", help="latency table (default: the one predictnas finds for --device)")
    parser.add_argument("--models", type=int, default=6)
    parser.add_argument("--timings", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", dest="json_path", help="write the results here as JSON")
    args = parser.parse_args()

    table = LatencyTable.load(args.lut or find_table(args.device))
    device, space = get_device(args.device), SearchSpace(table.space)
    protocols = PROTOCOLS[table.protocol["name"]]
    estimator = LatencyEstimator(table, space)
    pool = space.sample(2000, np.random.default_rng(args.seed))
    order = np.argsort(estimator.estimate(pool))
    picks = [space.decode(pool[i]) for i in order[np.linspace(0, len(order) - 1, args.models + 2).round()
                                                  .astype(int)[1:-1]]]
    graphs = [subnet_graph(arch, space.config, table.frames.input) for arch in picks]
    graphs = [type(g)(device.prepare(g.model), g.feeds, g.params) for g in graphs]
    reference = Reference(device, reference_graph())
    nominal_ms = reference.nominal_ms(protocols.reference_runs)

    timings = [[] for _ in picks]
    for round_ in range(args.timings):
        for i, graph in enumerate(graphs):
            timings[i].append(one_timing(device, graph, protocols.model, reference, nominal_ms))
        print(f"round {round_ + 1}/{args.timings} done", flush=True)

    results = {"device": device.device_id, "cpu": device.fingerprint().get("cpu_model"), "table": table.source,
               "python": platform.python_version(), "protocol": protocols.name, "timings": args.timings,
               "reference_nominal_ms": nominal_ms, "models": []}
    for arch, runs in zip(picks, timings):
        results["models"].append({"arch_id": arch.arch_id, "estimate_ms": estimator.estimate_arch(arch), **{
            way: {**summary([t[way] for t in runs]), "timings_ms": [t[way] for t in runs]} for way in WAYS}})
    for way in WAYS:
        print(f"\n{way}\n{'model':<12}{'estimate':>10}{'median':>10}{'spread':>8}{'CV':>7}{'pairs +-2 %':>13}{'+-5 %':>7}")
        for row in results["models"]:
            r = row[way]
            print(f"{row['arch_id'][:10]:<12}{row['estimate_ms']:>8.1f}ms{r['median_ms']:>8.2f}ms{100 * r['spread']:>7.1f}%"
                  f"{100 * r['robust_cv']:>6.1f}%{100 * r['pairs_within_2']:>12.0f}%{100 * r['pairs_within_5']:>6.0f}%")
    results["overall"] = {way: {
        "median_spread": float(np.median([m[way]["spread"] for m in results["models"]])),
        "median_robust_cv": float(np.median([m[way]["robust_cv"] for m in results["models"]])),
        "pairs_within_2": float(np.mean([m[way]["pairs_within_2"] for m in results["models"]])),
        "pairs_within_5": float(np.mean([m[way]["pairs_within_5"] for m in results["models"]]))} for way in WAYS}
    print("\nall models: " + "; ".join(
        f"{w}: median spread {100 * o['median_spread']:.1f} %, CV {100 * o['median_robust_cv']:.1f} %, pairs within "
        f"+-2 % {100 * o['pairs_within_2']:.0f} %, +-5 % {100 * o['pairs_within_5']:.0f} %"
        for w, o in results["overall"].items()))
    if args.json_path:
        with open(args.json_path, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
