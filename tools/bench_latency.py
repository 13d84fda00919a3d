"""Benchmark the vectorized latency estimator on a million architectures.

    python tools/bench_latency.py [--lut TABLE.json] [--n 1000000] [--repeats 7] [--json out.json]

Prints a table (median, min, max over repeats, in seconds) and optionally writes the numbers as JSON.
Goal from the latency issue: at least 5 million candidates per second on one core. Without --lut a
synthetic table with every key of the default space is used: the estimator's speed does not depend on
the entries' values.
"""

from __future__ import annotations

import argparse
import json
import platform

import numpy as np

from predictnas.latency import Calibration, Entry, LatencyEstimator, LatencyTable, Measurement, enumerate_keys
from predictnas.latency.keys import Frames
from predictnas.space import get_space
from benchutil import print_stages, spread, timed  # noqa: E402  (tools/ is on sys.path when run as a script)


def synthetic_table(space_name: str) -> LatencyTable:
    space = get_space(space_name)
    frames = Frames.of(401)
    rng = np.random.default_rng(0)
    entries = {k: Entry(k, Measurement(float(rng.uniform(0.01, 2.0)), 0.0, 0.0, 0.0, 0, 0), int(rng.integers(1, 10**5)))
               for k in enumerate_keys(space.config, frames)}
    return LatencyTable({"name": "cpu", "id": "synthetic", "fingerprint": {}}, space.config, 4.0, frames, {}, 1.0,
                        entries, Calibration(0.9, 0.5, 0.2, 8e6), source="synthetic table")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lut", help="latency table (default: a synthetic table of the default space)")
    parser.add_argument("--space", default="speech-v1", help="space of the synthetic table")
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--python-archs", type=int, default=5_000, help="architectures for the per-arch path")
    parser.add_argument("--json", dest="json_path", help="write the results here as JSON")
    args = parser.parse_args()

    table = LatencyTable.load(args.lut) if args.lut else synthetic_table(args.space)
    t_init, estimator = timed(lambda: LatencyEstimator(table))
    space = estimator.space
    rng = np.random.default_rng(0)
    genes = space.sample(args.n, rng)
    stages = {name: [] for name in ("estimate (F-order genes)", "estimate (C-order genes)", "raw sums only")}
    c_genes = np.ascontiguousarray(genes)
    for _ in range(args.repeats):
        stages["estimate (F-order genes)"].append(timed(lambda: estimator.estimate(genes))[0])
        stages["estimate (C-order genes)"].append(timed(lambda: estimator.estimate(c_genes))[0])
        stages["raw sums only"].append(timed(lambda: estimator.raw(genes))[0])
    archs = [space.decode(r) for r in genes[:args.python_archs]]
    t_python, _ = timed(lambda: [estimator.estimate_arch(a) for a in archs])

    results = {
        "n": args.n, "repeats": args.repeats, "table": table.source, "space": space.config.name,
        "machine": platform.processor() or platform.machine(), "numpy": np.__version__,
        "estimator_init_seconds": t_init,
        "seconds": {k: spread(v) for k, v in stages.items()},
        "per_arch_python_per_second": len(archs) / t_python,
    }
    print(f"{args.n:,} architectures of {space.config.name}, {args.repeats} repeats (seconds); table: {table.source}")
    print_stages(results["seconds"], args.n, "candidates/s (median)")
    print(f"estimator construction (dense tables): {t_init:.3f} s; per-arch path (walk + dict lookups): "
          f"{results['per_arch_python_per_second']:,.0f} archs/s")
    rate = args.n / results["seconds"]["estimate (F-order genes)"]["median"]
    print(f"goal >= 5,000,000 candidates/s on one core: {'met' if rate >= 5e6 else 'MISSED'} ({rate:,.0f}/s median)")
    if args.json_path:
        with open(args.json_path, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
