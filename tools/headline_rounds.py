"""The seed's headline, measured: NAS picks against hand-crafted Conformers trained as a user would.

    python tools/headline_rounds.py --run-dir runs/long --steps 2000 [--budget 40ms] [--also-from-scratch]
                                    [--out RUN_DIR/rounds]

Two rounds, each a search and a verify, run as the commands a user types (printed as they run):

1. ``--budget`` (40 ms): ``predictnas search`` with the run's predictor and fine-tuning calibration,
   finalists measured and timed; ``predictnas verify --picks 1 --baselines --baselines-from-scratch
   --finetune-steps STEPS``: the best pick fine-tuned from the shared weights and the shipped Conformers
   trained from random weights, the same number of steps each.
2. Half of conformer-l's latency as round 1 measured it: the same, with the Conformers' trained folders
   copied over (they do not depend on the search).

``--also-from-scratch`` also trains each round's pick from random weights for the same steps, so the
report can say which start serves the pick better. Every command resumes where it stopped. Writes
``OUT/rounds.json`` and prints one table: test WER per environment, intent accuracy and measured latency
of each model, and the pick's predicted WER and latency.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from predictnas.rundir import RunDir, VerifyFiles


def predictnas(*args) -> None:
    command = [sys.executable, "-m", "predictnas", *map(str, args)]
    print("$ predictnas " + " ".join(map(str, args)), flush=True)
    if subprocess.run(command).returncode != 0:
        raise SystemExit(f"failed: {' '.join(command)}")


def search(run_dir: Path, budget: str, top: Path) -> None:
    if top.exists():
        return
    calibration = RunDir(run_dir).finetune
    predictnas("search", "--budget", budget, "--run-dir", run_dir, "--rescore", 32, "--time-finalists", 32,
               *(("--finetune-calibration", calibration) if calibration.exists() else ()), "--out", top,
               "--no-progress")


def verify(top: Path, out: Path, steps: int, *extra) -> dict:
    report = VerifyFiles(out).report_json
    if not report.exists():
        predictnas("verify", top, "--picks", 1, "--finetune-steps", steps, "--out", out, "--no-progress", *extra)
    return json.loads(report.read_text())


def rows(verification: dict, label: str) -> list[dict]:
    found = []
    for m in verification["models"]:
        measured = m["measured"]
        found.append({"round": label, "name": m["name"], "kind": m["kind"], "from_scratch": m["training"]["from_scratch"],
                      "steps": m["training"]["steps"], "wer": measured["wer"], "intent": measured["intent_accuracy"]["all"],
                      "latency_ms": measured["latency"]["ms"], "predicted_wer": m["predicted"].get("wer"),
                      "predicted_latency_ms": m["predicted"].get("latency_ms"), "params": m["params"]})
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--budget", default="40ms")
    parser.add_argument("--also-from-scratch", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    out = args.out or args.run_dir / "rounds"

    found = []
    first = out / args.budget
    search(args.run_dir, args.budget, first / "top.json")
    verification = verify(first / "top.json", first / "verify", args.steps, "--baselines", "--baselines-from-scratch")
    found += rows(verification, args.budget)
    large = next(m for m in verification["models"] if m["name"] == "conformer-l")
    half = f"{large['measured']['latency']['ms'] / 2:.1f}ms"
    second = out / "half-conformer-l"
    search(args.run_dir, half, second / "top.json")
    for m in verification["models"]:  # the Conformers are trained once; only the pick is new
        there = second / "verify" / m["name"]
        if m["kind"] == "baseline" and not there.exists():
            shutil.copytree(first / "verify" / m["name"], there)
    found += rows(verify(second / "top.json", second / "verify", args.steps, "--baselines", "--baselines-from-scratch"),
                  half)
    if args.also_from_scratch:
        for folder, label in ((first, args.budget), (second, half)):
            found += [r for r in rows(verify(folder / "top.json", folder / "verify-scratch", args.steps,
                                             "--from-scratch"), label) if r["kind"] == "nas"]
    (out / "rounds.json").write_text(json.dumps({"steps": args.steps, "rows": found}, indent=2))
    environments = sorted({e for r in found for e in r["wer"] if e != "all"})
    print("\n| round | model | start | " + " | ".join(f"WER {e} %" for e in environments) +
          " | WER all % | intent % | latency ms | predicted WER % | predicted ms |")
    print("|---" * (8 + len(environments)) + "|")
    for r in found:
        start = "scratch" if r["from_scratch"] else "shared weights"
        predicted = "-" if r["predicted_wer"] is None else f"{100 * r['predicted_wer']:.1f}"
        predicted_ms = "-" if r["predicted_latency_ms"] is None else f"{r['predicted_latency_ms']:.1f}"
        print(f"| {r['round']} | {r['name']} | {start} | " +
              " | ".join(f"{100 * r['wer'][e]:.1f}" for e in environments) +
              f" | {100 * r['wer']['all']:.1f} | {100 * r['intent']:.1f} | {r['latency_ms']:.1f} | {predicted} | "
              f"{predicted_ms} |")


if __name__ == "__main__":
    main()
