"""Benchmark the vectorized search-space operators on a million architectures.

    python tools/bench_space.py [--n 1000000] [--repeats 7] [--json bench_space.json]

Prints a table (median, min, max over repeats, in seconds) and optionally writes the numbers as JSON.
Goal from the foundation issue: sample + validate + encode 1,000,000 architectures in under 1 s, where
"encode" gives every row its 64-bit key (the form the search dedups and looks up by).
"""

from __future__ import annotations

import argparse
import json
import platform

import numpy as np

from predictnas.complexity import param_counts
from predictnas.space import get_space
from benchutil import print_stages, spread, timed  # noqa: E402  (tools/ is on sys.path when run as a script)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--python-archs", type=int, default=10_000, help="architectures for the per-arch path")
    parser.add_argument("--json", dest="json_path", help="write the results here as JSON")
    args = parser.parse_args()

    space = get_space()
    rng = np.random.default_rng(0)
    stages = {name: [] for name in ("sample", "validate", "encode (row keys)", "sample+validate+encode",
                                    "mutate", "crossover", "param_counts")}
    valid_share = []
    for _ in range(args.repeats):
        t_sample, genes = timed(lambda: space.sample(args.n, rng))
        t_validate, ok = timed(lambda: space.validate(genes))
        t_keys, _ = timed(lambda: space.row_keys(genes))
        stages["sample"].append(t_sample)
        stages["validate"].append(t_validate)
        stages["encode (row keys)"].append(t_keys)
        stages["sample+validate+encode"].append(t_sample + t_validate + t_keys)
        valid_share.append(float(ok.mean()))
        other = space.sample(args.n, rng)
        stages["mutate"].append(timed(lambda: space.mutate(genes, rng))[0])
        stages["crossover"].append(timed(lambda: space.crossover(genes, other, rng))[0])
        stages["param_counts"].append(timed(lambda: param_counts(space, genes))[0])

    rows = space.sample(args.python_archs, rng)
    t_python, _ = timed(lambda: [space.encode(space.from_json(space.decode(r).to_json())) for r in rows])

    results = {
        "n": args.n, "repeats": args.repeats, "machine": platform.processor() or platform.machine(),
        "numpy": np.__version__, "valid_share": min(valid_share),
        "seconds": {k: spread(v) for k, v in stages.items()},
        "per_arch_python_round_trip_per_second": args.python_archs / t_python,
    }
    print(f"{args.n:,} architectures, {args.repeats} repeats (seconds)")
    print_stages(results["seconds"], args.n, "rows/s (median)")
    print(f"valid rows: {results['valid_share']:.1%}; per-arch Python genes->JSON->Arch->genes: "
          f"{results['per_arch_python_round_trip_per_second']:,.0f} archs/s")
    if args.n == 1_000_000:
        goal = results["seconds"]["sample+validate+encode"]["median"]
        print(f"goal sample+validate+encode < 1 s: {'met' if goal < 1 else 'MISSED'} ({goal:.3f} s median)")
    if args.json_path:
        with open(args.json_path, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
