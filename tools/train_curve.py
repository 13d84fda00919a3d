"""WER against training compute: the largest subnet and the median of N random subnets at each snapshot.

    python tools/train_curve.py --run-dir runs/long/train [--random 10] [--seed 0] [--split dev]
                                [--after STEP:MINUTES:AUDIO_HOURS] [--extra LABEL=SUPERNET:STEP:MINUTES:AUDIO_HOURS ...]
                                [--json curve.json] [--plot curve.png]

Reads the snapshots a training with ``snapshot_every_steps`` kept (``<run-dir>/snapshots/step-N.pt``) and
the final ``supernet.pt``, and the per-step history of the run (``train.json``, else the checkpoint) for
the compute each one had: steps, wall minutes and audio hours. Every snapshot is scored on the same dev
utterances, with the same random subnets (uniform draws, ``--seed``) and the supernet's decoder.
``--extra`` adds single points of other runs, e.g. the shipped ``small`` supernet at its last step.
``--after`` places a run that continued another (``train --init-from``) on the same axis: the compute
of the stages before it is added to each of its points.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from pathlib import Path

import numpy as np
import torch

from predictnas.data.dataset import epoch_batches
from predictnas.data.text import CharTokenizer
from predictnas.evaluate import bind, evaluate
from predictnas.experiment import decoder_for, load_split
from predictnas.pretrained import resolve_supernet
from predictnas.space import SearchSpace, largest_arch
from predictnas.supernet import load_supernet
from predictnas.rundir import RunDir


def history_of(run_dir: Path) -> list[dict]:
    files = RunDir(run_dir).training
    if files.summary.exists():
        return json.loads(files.summary.read_text())["history"]
    return torch.load(files.checkpoint, map_location="cpu", weights_only=True)["history"]


def compute_at(history: list[dict], step: int) -> dict:
    """Training compute of the first ``step`` steps: wall minutes (sum of step times) and audio hours."""
    done = history[:step]
    return {"step": step, "minutes": sum(r["seconds"] for r in done) / 60,
            "audio_hours": sum(r["audio_seconds"] for r in done) / 3600}


def compute_of(text: str) -> dict:
    step, minutes, hours = text.split(":")
    return {"step": int(step), "minutes": float(minutes), "audio_hours": float(hours)}


def points_of(run_dir: Path, before: dict) -> list[tuple[str, Path, dict]]:
    history, files = history_of(run_dir), RunDir(run_dir).training
    at = lambda step: {k: before[k] + v for k, v in compute_at(history, step).items()}  # noqa: E731
    points = []
    for path in sorted(files.snapshots.glob("step-*.pt")):
        step = int(re.search(r"step-(\d+)", path.name).group(1))
        points.append((run_dir.name, path, at(step)))
    if files.artifact.exists() and all(p[2]["step"] != before["step"] + len(history) for p in points):
        points.append((run_dir.name, files.artifact, at(len(history))))
    return points


def score(path: Path, n_random: int, seed: int, split: str, cache: dict) -> dict:
    supernet = load_supernet(path).float()
    if "batches" not in cache:  # every point on the same utterances, random subnets and decoder
        cache["decoder"] = decoder_for(supernet)
        store = load_split(supernet, split)
        cache["batches"] = epoch_batches(store, supernet.metadata["intents"], batch_seconds=120.0)
        space = SearchSpace(supernet.space)
        cache["random"] = [space.decode(g) for g in space.sample(n_random, np.random.default_rng(seed))]
    space = SearchSpace(supernet.space)
    run = lambda arch: evaluate(bind(supernet, arch), cache["batches"], CharTokenizer(), cache["decoder"])  # noqa: E731
    largest = run(largest_arch(space))
    random = [run(arch) for arch in cache["random"]]
    environments = [e for e in largest.wer if e != "all"]
    return {"largest": {"wer": largest.wer, "intent_accuracy": largest.intent_accuracy["all"]},
            "random_median": {e: statistics.median(r.wer[e] for r in random) for e in environments + ["all"]},
            "random_wer_all": [r.wer["all"] for r in random]}


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for run in sorted({r["run"] for r in rows}):
        mine = sorted((r for r in rows if r["run"] == run), key=lambda r: r["audio_hours"])
        hours = [r["audio_hours"] for r in mine]
        ax.plot(hours, [100 * r["largest"]["wer"]["all"] for r in mine], "o-", label=f"{run}: largest")
        ax.plot(hours, [100 * r["random_median"]["all"] for r in mine], "s--", label=f"{run}: median random")
    ax.set_xlabel("training audio (hours)")
    ax.set_ylabel("dev WER % (shared weights, all environments)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", required=True, type=Path)
    parser.add_argument("--random", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", default="dev")
    parser.add_argument("--after", default="0:0:0", help="STEP:MINUTES:AUDIO_HOURS of the stages this run continued")
    parser.add_argument("--extra", action="append", default=[],
                        help="LABEL=SUPERNET:STEP:MINUTES:AUDIO_HOURS, a single point of another run")
    parser.add_argument("--json", dest="json_path", type=Path)
    parser.add_argument("--plot", dest="plot_path", type=Path)
    args = parser.parse_args()

    points = points_of(args.run_dir, compute_of(args.after))
    for extra in args.extra:
        label, rest = extra.split("=", 1)
        where, *compute = rest.rsplit(":", 3)
        points.append((label, resolve_supernet(where), compute_of(":".join(compute))))
    cache: dict = {}
    rows = []
    print(f"{'run':<12}{'step':>7}{'minutes':>9}{'audio h':>9}{'largest WER %':>15}{'median random WER %':>21}"
          f"{'largest intent %':>18}")
    for run, path, compute in points:
        row = {"run": run, "supernet": str(path), **compute, **score(path, args.random, args.seed, args.split, cache)}
        rows.append(row)
        print(f"{run:<12}{compute['step']:>7}{compute['minutes']:>9.1f}{compute['audio_hours']:>9.1f}"
              f"{100 * row['largest']['wer']['all']:>15.2f}{100 * row['random_median']['all']:>21.2f}"
              f"{100 * row['largest']['intent_accuracy']:>18.2f}", flush=True)
    if args.json_path:
        args.json_path.write_text(json.dumps({"split": args.split, "random": args.random, "seed": args.seed,
                                              "rows": rows}, indent=2))
    if args.plot_path:
        plot(rows, args.plot_path)


if __name__ == "__main__":
    main()
