"""Dev-set accuracy of the largest, the smallest and N random subnets of a trained supernet.

    python tools/eval_spread.py [--run-dir runs/small | --supernet PATH|pretrained:speech-v1] [--random 20]
                                [--near 20] [--seed 0] [--split dev | --manifest M.jsonl] [--dimensions]
                                [--baselines] [--json spread.json]

Shows whether the supernet serves the whole space and whether the spread between subnets is wide enough
for an accuracy predictor to rank: WER per environment, CER, intent accuracy, parameters, and
min / median / max over the random subnets (uniform draws from the space). ``--near N`` adds N subnets
drawn as the sandwich draws them (the largest with a uniform share of its choices redrawn, see
:func:`predictnas.train.near_largest`), summarized apart. ``--manifest`` scores another evaluation set (a JSONL manifest,
e.g. the dev split of another corpus), so supernets trained on different corpora compare on the same one.
``--dimensions`` also scores the largest subnet with one dimension changed at a time (each other choice of
each global gene; each block field set in every block): which choices the shared weights serve, and which
they leave near 100 % WER. ``--baselines`` adds the hand-crafted Conformers shipped for the space, with the
shared weights (compare them with the same models trained alone).
"""

from __future__ import annotations

import argparse
import dataclasses
import json

from pathlib import Path

import numpy as np

from predictnas import pretrained
from predictnas.io import read_json
from predictnas.complexity import param_counts
from predictnas.data.dataset import FeatureStore, epoch_batches
from predictnas.data.features import FeatureConfig
from predictnas.data.manifest import load_dataset
from predictnas.data.text import CharTokenizer
from predictnas.evaluate import bind, evaluate
from predictnas.experiment import decoder_for, load_split, load_trained_supernet
from predictnas.space import (BLOCK_FIELDS, CONV_FIELDS, GLOBAL_FIELDS, NO_CONV, Arch, SearchSpace, largest_arch,
                              smallest_arch)
from predictnas.train import near_largest
from benchutil import spread  # noqa: E402  (tools/ is on sys.path when run as a script)


def one_change_variants(space: SearchSpace, base: Arch) -> list[tuple[str, Arch]]:
    """``base`` with one dimension set to each of its other choices (a block field in every block)."""
    variants = []
    for field, choices in zip(GLOBAL_FIELDS, space.global_choices):
        for v in choices:
            beyond_depth = field in ("depth", "downsample_after") and v is not None and v >= base.depth
            if v == getattr(base, field) or beyond_depth:
                continue
            change = {"blocks": base.blocks[:v]} if field == "depth" else {field: v}
            variants.append((f"{field}={v}", dataclasses.replace(base, **change)))
    for field, choices in zip(BLOCK_FIELDS, space.block_choices):
        for v in choices:
            if v == getattr(base.blocks[0], field):
                continue
            change = {field: v, **({name: None for name in CONV_FIELDS} if v == NO_CONV else {})}
            blocks = tuple(dataclasses.replace(b, **change) for b in base.blocks)
            variants.append((f"{field}={v}", dataclasses.replace(base, blocks=blocks)))
    return variants


def spread_of(rows: list[dict], environments: list[str]) -> dict:
    """min / median / max of WER per environment and overall, CER and intent accuracy over ``rows``."""
    summary = {}
    for metric, key in [("wer", e) for e in environments + ["all"]] + [("cer", "all"), ("intent_accuracy", "all")]:
        values = [r[metric][key] for r in rows]
        if values:
            summary[f"{metric}/{key}"] = spread(values)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", default="runs/small")
    parser.add_argument("--supernet", help="a supernet file or pretrained:<name> instead of the run dir's")
    parser.add_argument("--baselines", action="store_true", help="also the shipped Conformers of the space")
    parser.add_argument("--random", type=int, default=20)
    parser.add_argument("--near", type=int, default=0, help="subnets drawn as the sandwich draws them")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", default="dev")
    parser.add_argument("--manifest", help="evaluate on this JSONL manifest instead of the run's split")
    parser.add_argument("--dimensions", action="store_true", help="also the largest with one dimension changed")
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()

    supernet = load_trained_supernet(args.run_dir, args.supernet)
    decoder = decoder_for(supernet)
    space = SearchSpace(supernet.space)
    if args.manifest:
        features = FeatureConfig.from_dict(supernet.metadata["features"])
        store = FeatureStore.build(load_dataset(args.manifest), features, cache_dir=None)
    else:
        store = load_split(supernet, args.split, args.run_dir)
    batches = epoch_batches(store, supernet.metadata["intents"], batch_seconds=120.0)
    archs = [("largest", largest_arch(space)), ("smallest", smallest_arch(space))]
    archs += [(f"random{i}", space.decode(g)) for i, g in enumerate(space.sample(args.random, np.random.default_rng(args.seed)))]
    archs += [(f"near{i}", arch) for i, arch in enumerate(near_largest(space, args.near, np.random.default_rng(args.seed)))]
    if args.baselines:
        archs += [(Path(path).stem, space.from_json(read_json(path))) for path in pretrained.baselines(space.config.name)]
    if args.dimensions:
        archs += [(label, space.check(arch)) for label, arch in one_change_variants(space, largest_arch(space))]

    rows = []
    environments = sorted(store.environments)
    header = "".join(f"{'WER ' + e[:14]:>20}" for e in environments)
    print(f"{'subnet':<24}{'params':>10}{header}{'WER all':>9}{'CER all':>9}{'intent':>8}{'eval s':>8}")
    for label, arch in archs:
        result = evaluate(bind(supernet, arch), batches, CharTokenizer(), decoder)
        params = int(param_counts(space, space.encode(arch)[None])[0])
        rows.append({"label": label, "arch_id": arch.arch_id, "arch": arch.to_dict(), "params": params, **result.to_dict()})
        wers = "".join(f"{100 * result.wer[e]:>20.2f}" for e in environments)
        print(f"{label:<24}{params:>10,}{wers}{100 * result.wer['all']:>9.2f}{100 * result.cer['all']:>9.2f}"
              f"{100 * result.intent_accuracy['all']:>8.2f}{result.seconds:>8.1f}", flush=True)

    grouped = {group: [r for r in rows if r["label"].startswith(group)] for group in ("random", "near")}
    summary = {group: spread_of(members, environments) for group, members in grouped.items()}
    for group, metrics in summary.items():
        if metrics:
            print(f"\nover {len(grouped[group])} {group} subnets (min / median / max, %):")
        for name, s in metrics.items():
            print(f"  {name:<32}{100 * s['min']:>8.2f}{100 * s['median']:>8.2f}{100 * s['max']:>8.2f}")
    if args.json_path:
        with open(args.json_path, "w") as f:
            json.dump({"supernet": args.supernet or args.run_dir, "split": args.manifest or args.split, "rows": rows, "random_summary": summary["random"],
                       "near_summary": summary["near"]}, f, indent=2)


if __name__ == "__main__":
    main()
