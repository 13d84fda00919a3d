"""Commands about the search space: ``space`` (describe, sample, check), ``export`` (one subnet to ONNX) and
``estimate`` (predicted latency, parameters and WER of one architecture)."""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from ..complexity import describe_space, param_count
from ..space import SearchSpace, get_space
from .options import space_option


@click.command("space")
@click.option("--info", is_flag=True, help="Describe every dimension, the space size and the parameter range (default).")
@click.option("--json", "as_json", is_flag=True, help="Print the description as JSON.")
@click.option("--sample", type=click.IntRange(min=1), metavar="N", help="Print N random architectures, one JSON per line.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for --sample.")
@click.option("--check", "check_path", type=click.Path(dir_okay=False, path_type=Path), metavar="ARCH.json",
              help="Validate an architecture file and print its id and size.")
@space_option
def space_command(info: bool, as_json: bool, sample: int | None, seed: int, check_path: Path | None,
                  space_name: str) -> None:
    """Describe the search space, sample architectures from it, or check one."""
    space = get_space(space_name)
    if check_path is not None:
        arch = space.load_arch(check_path)
        click.echo(f"{check_path}: valid; arch_id {arch.arch_id}, depth {arch.depth}, width {arch.width}, "
                   f"{param_count(space, arch):,} parameters")
    elif sample:
        for genes in space.sample(sample, np.random.default_rng(seed)):
            click.echo(space.decode(genes).to_json())
    else:
        summary = describe_space(space)
        click.echo(json.dumps(summary, indent=2) if as_json else _format_summary(summary))


@click.command("export")
@click.argument("arch_path", metavar="ARCH.json", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the .onnx file.")
@click.option("--supernet", "supernet_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Trained supernet whose weights the subnet inherits.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random weights (no --supernet).")
@click.option("--exporter", type=click.Choice(["torchscript", "dynamo"]), default="torchscript", show_default=True)
@space_option
def export_command(arch_path: Path, out_path: Path, supernet_path: Path | None, seed: int, exporter: str,
                   space_name: str) -> None:
    """Extract ARCH.json as a standalone model and export it to ONNX, checked against PyTorch."""
    import torch

    from ..supernet import Supernet, load_supernet
    from ..supernet.export import OPSET, check_onnx, compare_with_torch, export_onnx

    if supernet_path is not None:
        supernet = load_supernet(supernet_path)
        space = SearchSpace(supernet.space)
    else:
        space = get_space(space_name)
        click.echo(f"note: no --supernet given: weights are randomly initialised (seed {seed}); "
                   "fine for latency, meaningless for accuracy", err=True)
        torch.manual_seed(seed)
        supernet = Supernet(space.config)
    arch = space.load_arch(arch_path)
    subnet = supernet.eval().extract(arch)
    export_onnx(subnet, out_path, exporter=exporter)
    check_onnx(out_path)
    parity = compare_with_torch(subnet, out_path)
    size_mb = out_path.stat().st_size / 1e6
    click.echo(f"wrote {out_path} (arch {arch.arch_id}, {param_count(space, arch):,} parameters, {size_mb:.1f} MB, "
               f"opset {OPSET}, dynamic frames)")
    click.echo(f"onnx.checker: ok; ONNX Runtime vs PyTorch: max abs diff {parity.max_abs_diff:.2e} "
               f"at {', '.join(map(str, parity.frames))} input frames")


@click.command("estimate")
@click.argument("arch_path", metavar="ARCH.json", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--lut", "lut_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Latency table (default: the shipped table of --device for --space).")
@click.option("--device", "device_name", default="cpu", show_default=True, help="Device whose shipped table to use.")
@space_option
@click.option("--predictor", "predictor_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also predict WER per environment with this predictor.json (from `predictnas fit`).")
@click.option("--json", "as_json", is_flag=True, help="Print the estimate as JSON.")
def estimate_command(arch_path: Path, lut_path: Path | None, device_name: str, space_name: str,
                     predictor_path: Path | None, as_json: bool) -> None:
    """Predicted latency (ms), parameter count and, with a predictor, WER of ARCH.json."""
    from ..latency.devices import get_device
    from ..latency.estimate import LatencyEstimator
    from ..latency.table import LatencyTable, find_table
    from ..predictor import AccuracyPredictor

    get_device(device_name)
    table = LatencyTable.load(lut_path or find_table(device_name, space_name))
    space = SearchSpace(table.space)
    arch = space.load_arch(arch_path)
    estimator = LatencyEstimator(table, space)
    raw_ns, _ = estimator.raw_arch(arch)
    latency = estimator.estimate_arch(arch)
    warning = table.check_device(allow_mismatch=True)
    if warning:
        click.echo(f"warning: hardware gap: {warning}", err=True)
    params = param_count(space, arch)
    predicted = AccuracyPredictor.load(predictor_path).predict_arch(arch, space) if predictor_path else None
    if as_json:
        click.echo(json.dumps({"arch_id": arch.arch_id, "latency_ms": latency, "table_sum_ms": raw_ns / 1e6,
                               "params": params, "device_id": table.device_id, "lut": table.source,
                               "input_seconds": table.input_seconds, "hardware_gap": warning,
                               "predicted": predicted}, indent=2))
        return
    click.echo(f"arch {arch.arch_id}: {latency:.2f} ms predicted on {table.device_id} ({table.input_seconds:g} s input; "
               f"table sum {raw_ns / 1e6:.2f} ms), {params:,} parameters")
    if predicted is not None:
        click.echo("  predicted " + ", ".join(f"{target} {100 * value:.2f} %" for target, value in predicted.items()))


def _format_summary(s: dict) -> str:
    lines = [f"search space {s['space']}: 10^{s['architectures_log10']:.2f} architectures, "
             f"{s['genes']} genes, {s['params']['min']:,} to {s['params']['max']:,} parameters", ""]
    for name, dim in s["dimensions"].items():
        choices = ", ".join("none" if v is None else str(v) for v in dim["choices"])
        lines.append(f"  {name:<18} {dim['scope']:<10} {choices}")
    lines.append("")
    lines.append("  fixed: " + ", ".join(f"{k}={v}" for k, v in s["fixed"].items()))
    lines.append("  conv_kernel, dilation and conv_placement apply only where conv_kind is not none; "
                 "downsample_after must be below the depth.")
    return "\n".join(lines)
