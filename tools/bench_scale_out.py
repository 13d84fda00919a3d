"""Subnet evaluation on local processes against a local Ray cluster: the same rows, the wall time of each.

    python tools/bench_scale_out.py [--supernet pretrained:speech-v1] [--n 40] [--repeat 0] [--workers 2]
                                    [--work runs/bench-scale-out] [--json bench_scale_out.json]

Runs ``predictnas sample --n N`` three times into fresh run directories, as a user would: with one local
process (all cores), with ``--workers`` local processes, and through ``--ray-address`` on a Ray cluster
started here for the purpose (a head node with ``--workers`` CPUs, one actor per CPU). Prints the wall time
of each, the seconds per subnet, the overhead of Ray per subnet against the same number of local
processes, whether all three stored the same rows (architectures and their WER, CER and intent
accuracy), and the cost of the cluster's start. Run it with nothing else running.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
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
    parser.add_argument("--supernet", default="pretrained:speech-v1")
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("runs/bench-scale-out"))
    parser.add_argument("--port", type=int, default=6391)
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()

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
    if args.json_path:
        with open(args.json_path, "w") as f:
            json.dump({"supernet": args.supernet, "trials": trials, "seconds": seconds, "ray_start_seconds":
                       start_seconds, "ray_overhead_per_trial_s": (ray - local_n) / trials, "same_architectures": same_ids,
                       "identical_rows": same, "largest_wer_difference": largest_difference},
                      f, indent=2)


if __name__ == "__main__":
    main()
