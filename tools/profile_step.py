"""Where a supernet training step's time goes: batch, SpecAugment, each sandwich subnet, the optimizer.

    python tools/profile_step.py [--supernet pretrained:speech-v1] [--preset long] [--steps 8] [--json out.json]

Runs the preset's sandwich step (largest, smallest, one subnet near the largest, with distillation and
front-end matching as in training) on real training batches of the preset's size, under the preset's
autocast, and times each part separately: ``--steps`` different batches and subnets, median / min / max
seconds. For comparison, the largest alone with and without autocast. Run it with nothing else running.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from predictnas.data.dataset import epoch_batches
from predictnas.data.features import SpecAugment
from predictnas.experiment import get_preset, load_split
from predictnas.pretrained import resolve_supernet
from predictnas.space import SearchSpace, largest_arch, smallest_arch
from predictnas.supernet import SubnetOutput, load_supernet
from predictnas.train import SandwichObjective, autocast_dtype, labelled_loss, near_largest
from benchutil import print_stages, spread, timed  # noqa: E402  (tools/ is on sys.path when run as a script)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--supernet", default="pretrained:speech-v1")
    parser.add_argument("--preset", default="long")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()

    config = get_preset(args.preset).train
    net = load_supernet(resolve_supernet(args.supernet)).float().train()
    space = SearchSpace(net.space)
    train = load_split(net, "train", progress=False)
    batches = epoch_batches(train, net.metadata["intents"], batch_seconds=config.batch_seconds, shuffle=True,
                            generator=torch.Generator().manual_seed(0))
    augment = SpecAugment().train()
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-5)  # tiny steps: the weights stay what they were
    dtype = autocast_dtype(config.precision)
    objective = SandwichObjective(space)
    full_distillation = config.steps - 1  # a step where the distillation weight has ramped up
    times: dict[str, list[float]] = {}

    def add(name: str, seconds: float) -> None:
        times.setdefault(name, []).append(seconds)

    def subnet_step(name: str, arch, features, batch, teacher=None):
        def run():
            with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
                return objective.train_subnet(net, features, batch, arch, teacher, config, full_distillation)[0]
        seconds, out = timed(run)
        add(name, seconds)
        return out

    for step in range(args.steps + 1):  # the first step warms up allocators and kernels, and is dropped
        rng = np.random.default_rng(step)
        seconds, batch = timed(lambda: batches[step])
        features_seconds, features = timed(lambda: augment(batch.features, batch.feature_lengths,
                                                           torch.Generator().manual_seed(step)))
        optimizer.zero_grad(set_to_none=True)
        largest = subnet_step("largest fwd+bwd", largest_arch(space), features, batch)
        teacher = SubnetOutput(largest.ctc_logits.detach(), largest.intent_logits.detach(), largest.lengths)
        subnet_step("smallest fwd+bwd (+distill, +match)", smallest_arch(space), features, batch, teacher)
        subnet_step("near-largest fwd+bwd (+distill)", near_largest(space, 1, rng)[0], features, batch, teacher)
        optimizer_seconds, _ = timed(optimizer.step)
        if step == 0:
            times.clear()
            continue
        add("batch (collate)", seconds)
        add("SpecAugment", features_seconds)
        add("optimizer step", optimizer_seconds)
        if dtype is not None:
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast("cpu", enabled=False):
                seconds, _ = timed(lambda: labelled_loss(net(features, largest_arch(space), batch.feature_lengths),
                                                         batch, config).backward())
            add("largest fwd+bwd in fp32 (for comparison)", seconds)
    summary = {name: spread(values) for name, values in times.items()}
    print(f"{args.steps} steps of {config.batch_seconds:g} s of padded audio, autocast {dtype or 'none'}, "
          f"{torch.get_num_threads()} threads")
    print_stages(summary, 1, "steps/s")
    if args.json_path:
        with open(args.json_path, "w") as f:
            json.dump({"preset": args.preset, "steps": args.steps, "autocast": str(dtype), "threads":
                       torch.get_num_threads(), "seconds": summary}, f, indent=2)


if __name__ == "__main__":
    main()
