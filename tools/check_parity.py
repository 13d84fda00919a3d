"""Report the numerical parity of the model paths (for release notes and closing notes).

    python tools/check_parity.py [--archs 200] [--json parity.json]

1. supernet slice vs extracted standalone subnet, over random architectures (padded batch of 2);
2. closed-form parameter count vs the extracted module's, same architectures;
3. ONNX Runtime vs PyTorch over the covering set (every choice of every dimension), both exporters
   for a few of them, at several input lengths.
Weights are random, with the dense skip weights and kernel transforms moved off their zero/identity
start so that every path is exercised.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from predictnas.complexity import param_counts
from predictnas.space import get_space
from predictnas.supernet import Supernet
from predictnas.supernet.export import check_onnx, compare_with_torch, export_onnx


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", type=int, default=200)
    parser.add_argument("--dynamo", type=int, default=2, help="covering archs also exported with dynamo")
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    space = get_space()
    torch.manual_seed(0)
    net = Supernet(space.config).eval().perturb_neutral_parts()

    genes = space.sample(args.archs, np.random.default_rng(7))
    features, lengths = torch.randn(2, 67, space.config.n_mels), torch.tensor([67, 41])
    slice_diff, param_mismatches = 0.0, 0
    with torch.no_grad():
        for row, expected in zip(genes, param_counts(space, genes)):
            arch = space.decode(row)
            subnet = net.extract(arch)
            a, b = net(features, arch, lengths), subnet(features, lengths)
            slice_diff = max(slice_diff, (a.ctc_logits - b.ctc_logits).abs().max().item(),
                             (a.intent_logits - b.intent_logits).abs().max().item())
            param_mismatches += sum(p.numel() for p in subnet.parameters()) != expected

    onnx_rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, arch in enumerate(space.covering()):
            subnet = net.extract(arch)
            for exporter in ("torchscript", "dynamo") if i < args.dynamo else ("torchscript",):
                path = Path(tmp) / f"{i}-{exporter}.onnx"
                start = time.perf_counter()
                export_onnx(subnet, path, exporter=exporter)
                seconds = time.perf_counter() - start
                check_onnx(path)
                parity = compare_with_torch(subnet, path, frames=(9, 37, 200, 611))
                onnx_rows.append({"arch_id": arch.arch_id, "depth": arch.depth, "exporter": exporter,
                                  "export_seconds": round(seconds, 2), "max_abs_diff": parity.max_abs_diff})

    result = {"archs": args.archs, "supernet_vs_subnet_max_abs_diff": slice_diff,
              "param_count_mismatches": int(param_mismatches), "onnx": onnx_rows,
              "onnx_max_abs_diff": max(r["max_abs_diff"] for r in onnx_rows)}
    print(f"supernet slice vs extracted subnet, {args.archs} random archs: max abs diff {slice_diff:.2e}")
    print(f"closed-form params vs module, {args.archs} archs: {param_mismatches} mismatches")
    print(f"ONNX Runtime vs PyTorch, {len(space.covering())} covering archs at 9/37/200/611 frames:")
    for r in onnx_rows:
        print(f"  {r['arch_id']}  depth {r['depth']:>2}  {r['exporter']:<11} export {r['export_seconds']:>5.2f} s"
              f"  max abs diff {r['max_abs_diff']:.2e}")
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
