"""Subnet evaluation on local processes against a local Ray cluster: the same rows, the wall time of each.

    python tools/bench_scale_out.py --supernet SUPERNET.pt [--n 40] [--repeat 0] [--workers 2]
                                    [--work runs/bench-scale-out] [--plan 10000:16:16] [--json bench_scale_out.json]
    python tools/bench_scale_out.py --plan-from bench_scale_out.json [--work runs/bench-scale-out] [--plan ...]

Runs ``predictnas sample --n N`` three times into fresh run directories, as a user would: with one local
process (all cores), with ``--workers`` local processes, and through ``--ray-address`` on a Ray cluster
started here for the purpose (a head node with ``--workers`` CPUs, one actor per CPU). Prints the wall time
of each, the seconds per subnet, the overhead of Ray per subnet against the same number of local
processes, whether all three stored the same rows (architectures and their WER, CER and intent
accuracy), and the cost of the cluster's start. Run it with nothing else running.

``--plan N:NODES:CPUS`` turns the measured costs into a plan for N subnets on NODES machines of CPUS cores
each (one actor per core): the compute per subnet (the stored evaluation and proxy seconds, which ran
on one core per actor), an actor's start with Ray's per-task costs (the Ray run's wall time less its
evaluations spread over its actors), and the driver's serial work per row (a store transaction, timed
here): the cluster finishes N / (NODES x CPUS) subnets per actor, and the driver becomes the bottleneck
once the actors return rows faster than it can store them. ``--plan-from bench.json`` prints the plan
again from an earlier run's JSON and its ``--work`` folder. The supernet must not be the shipped one
(whose run directory starts from the shipped sample's rows).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchutil import timed  # noqa: E402  (tools/ is on sys.path when run as a script)

RAY = str(Path(sys.executable).parent / "ray")


def sample(work: Path, supernet: str, n: int, repeat: int, *extra: str) -> float:
    work.mkdir(parents=True)
    command = [sys.executable, "-m", "predictnas", "sample", "--run-dir", str(work), "--supernet", supernet,
               "--n", str(n), "--repeat", str(repeat), "--no-progress", *extra]
    seconds, result = timed(lambda: subprocess.run(command, capture_output=True, text=True))
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr}")
    return seconds


def rows(store: Path) -> dict:
    with sqlite3.connect(store) as db:
        return {(a, p): (w, c, i) for a, p, w, c, i in
                db.execute("SELECT arch_id, protocol, wer, cer, intent_accuracy FROM evals")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--supernet", help="a trained supernet file (not the shipped one)")
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("runs/bench-scale-out"))
    parser.add_argument("--port", type=int, default=6391)
    parser.add_argument("--plan", default="10000:16:16", help="N:NODES:CPUS of the paper plan")
    parser.add_argument("--plan-from", type=Path, help="only the plan, from this earlier run's JSON")
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()

    if args.plan_from:
        earlier = json.loads(args.plan_from.read_text())
        paper_plan(args.work / "ray" / "evals.sqlite", earlier["seconds"][f"Ray, {args.workers} actors"],
                   args.workers, *map(int, args.plan.split(":")))
        return
    if not args.supernet:
        parser.error("--supernet is required (or --plan-from)")
    if args.work.exists():
        shutil.rmtree(args.work)
    seconds = {"local, 1 process": sample(args.work / "local-1", args.supernet, args.n, args.repeat)}
    seconds[f"local, {args.workers} processes"] = sample(args.work / "local-n", args.supernet, args.n, args.repeat,
                                                         "--workers", str(args.workers))
    start_seconds, started = timed(lambda: subprocess.run(
        [RAY, "start", "--head", "--num-cpus", str(args.workers), "--port", str(args.port),
         "--include-dashboard=false", "--disable-usage-stats"], capture_output=True, text=True, env=os.environ))
    if started.returncode != 0:
        raise SystemExit(f"ray start failed:\n{started.stderr}")
    try:
        seconds[f"Ray, {args.workers} actors"] = sample(args.work / "ray", args.supernet, args.n, args.repeat,
                                                        "--ray-address", f"127.0.0.1:{args.port}")
    finally:
        subprocess.run([RAY, "stop", "--force"], capture_output=True)
    trials = args.n + min(args.repeat, args.n)
    stored = {name: rows(args.work / folder / "evals.sqlite")
              for name, folder in zip(seconds, ("local-1", "local-n", "ray"))}
    reference = stored["local, 1 process"]
    if any(len(r) != trials for r in stored.values()):
        raise SystemExit(f"the stores hold {[len(r) for r in stored.values()]} rows for {trials} evaluations: "
                         "pass a supernet other than the shipped one")
    same_ids = all(r.keys() == reference.keys() for r in stored.values())
    same = all(r == reference for r in stored.values())
    # 1 thread per actor against 2 per process: float sums in another order may move a decoded word
    largest_difference = max((abs(json.loads(r[k][0])["all"] - json.loads(reference[k][0])["all"])
                              for r in stored.values() for k in reference if k in r), default=0.0)
    local_n, ray = seconds[f"local, {args.workers} processes"], seconds[f"Ray, {args.workers} actors"]
    print(f"{trials} subnet evaluations of {args.supernet} ({time.strftime('%Y-%m-%d %H:%M')})")
    print(f"{'executor':<24}{'wall s':>9}{'s / subnet':>12}")
    for name, s in seconds.items():
        print(f"{name:<24}{s:>9.1f}{s / trials:>12.2f}")
    print(f"Ray's overhead per subnet against {args.workers} local processes: {(ray - local_n) / trials:+.2f} s; "
          f"ray start: {start_seconds:.1f} s; the same architectures: {same_ids}, identical rows: {same}, "
          f"largest WER difference: {100 * largest_difference:.2f} points")
    plan = paper_plan(args.work / "ray" / "evals.sqlite", ray, args.workers, *map(int, args.plan.split(":")))
    if args.json_path:
        with open(args.json_path, "w") as f:
            json.dump({"supernet": args.supernet, "trials": trials, "seconds": seconds, "ray_start_seconds":
                       start_seconds, "ray_overhead_per_trial_s": (ray - local_n) / trials, "same_architectures": same_ids,
                       "identical_rows": same, "largest_wer_difference": largest_difference, "plan": plan},
                      f, indent=2)


def paper_plan(store: Path, ray_wall: float, actors: int, n: int, nodes: int, cpus: int) -> dict:
    """The expected wall time of ``n`` subnets on ``nodes`` x ``cpus`` actors from this run's costs."""
    import statistics

    from predictnas.predictor.store import SQLiteStore

    with SQLiteStore(store) as source:
        records = source.records("dev")
    seconds = [r.eval_seconds + r.proxy_seconds for r in records]
    mean, median = statistics.mean(seconds), statistics.median(seconds)
    # what the Ray run spent besides its evaluations, spread over its actors: each actor's start (the
    # supernet and the dev features loaded) and Ray's per-task costs, which one run cannot tell apart
    actor_start = max(ray_wall - sum(seconds) / actors, 0.0)
    with tempfile.TemporaryDirectory() as tmp:  # the driver's serial share of a row: one store transaction
        with SQLiteStore(Path(tmp) / "evals.sqlite") as target:
            insert, _ = timed(lambda: [target.add(r) for r in records])
    insert /= len(records)
    workers = nodes * cpus
    wall = actor_start + n * mean / workers
    plan = {"subnets": n, "nodes": nodes, "cpus_per_node": cpus, "compute_per_subnet_mean_s": mean,
            "compute_per_subnet_median_s": median, "actor_start_and_overheads_s": actor_start,
            "driver_insert_s": insert, "expected_wall_s": max(wall, n * insert),
            "cluster_rows_per_s": workers / mean, "driver_rows_per_s": 1 / insert,
            "actors_at_driver_limit": mean / insert}
    print(f"\npaper plan: {n:,} subnets on {nodes} nodes x {cpus} cores ({workers} actors, one core each): "
          f"{mean:.2f} s of compute per subnet (mean; median {median:.2f}, over {len(records)}), {actor_start:.0f} s "
          f"of actor start and Ray overheads, {1e3 * insert:.2f} ms of the driver per row (a store transaction)")
    print(f"  expected wall time {plan['expected_wall_s'] / 60:.1f} min; the actors return {workers / mean:.0f} rows/s, "
          f"the driver stores up to {1 / insert:,.0f} rows/s: it becomes the bottleneck past "
          f"{plan['actors_at_driver_limit']:,.0f} actors")
    return plan


if __name__ == "__main__":
    main()
