"""``build-lut``: measure a device's latency table."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .options import FiniteFloat, no_progress_option, space_option


@click.command("build-lut")
@click.option("--device", "device_name", default="cpu", show_default=True,
              help="cpu, cpu:N (N intra-op threads), cpu-int8 or cpu-int8:N.")
@click.option("--input-seconds", type=FiniteFloat(min=0, min_open=True), default=None,
              help="Reference input length in seconds of audio (default 24, see predictnas/pretrained/lut/README.md).")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the table (default: the user cache, <cache>/lut/<device-id>.json).")
@space_option
@click.option("--calibration", "calibration_models", type=click.IntRange(min=3), default=None,
              help="Random subnets timed end to end to fit the calibration (default 30; 12 with --adapt-from).")
@click.option("--heldout", "heldout_models", type=click.IntRange(min=2), default=None,
              help="Other random subnets, timed twice, to report fidelity and the noise floor (default 30; 20, "
                   "timed once, with --adapt-from).")
@click.option("--adapt-from", "adapt_from", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              metavar="TABLE", help="Adapt TABLE, measured on another machine, to this one in minutes: keep its "
                                    "entries, time a few subnets here and refit its calibration.")
@click.option("--protocol", "protocols", default="standard", show_default=True,
              help="Timing protocol: standard (drift-normalized), plain (not normalized) or quick (smoke tests only).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the calibration and held-out subnets.")
@no_progress_option
def build_lut_command(device_name: str, input_seconds: float | None, out_path: Path | None, space_name: str,
                      calibration_models: int | None, heldout_models: int | None, adapt_from: Path | None,
                      protocols: str, seed: int, no_progress: bool) -> None:
    """Measure every module shape of the space on a device, calibrate, and write the latency table.

    Resumable: a killed build continues from OUT's .partial.json when rerun with the same options.
    """
    from ..latency.build import DEFAULT_INPUT_SECONDS, BuildSettings, build_lut
    from ..latency.devices import get_device
    from ..latency.table import LatencyTable, default_table_path

    device = get_device(device_name)
    if adapt_from is not None:
        from ..latency.adapt import DEFAULT_HELDOUT, DEFAULT_MODELS, adapt_table

        source = LatencyTable.load(adapt_from)
        out_path = out_path or default_table_path(device.device_id, source.space.name)
        table = adapt_table(source, device, out_path, calibration_models or DEFAULT_MODELS,
                            heldout_models or DEFAULT_HELDOUT, seed, progress=not no_progress,
                            command=" ".join(["predictnas"] + sys.argv[1:]))
        held, before = table.accuracy["heldout"], table.accuracy["heldout_source_calibration"]
        phases = table.build["phase_seconds"]
        click.echo(f"wrote {out_path}: {source.device_id} adapted to {table.device_id} in "
                   f"{table.build['seconds'] / 60:.1f} min ({len(table.models['calibration'])} subnets timed for the "
                   f"calibration in {phases['calibration'] / 60:.1f} min, {held['n']} held out in "
                   f"{phases['heldout'] / 60:.1f} min; reference graph {table.accuracy['reference_ratio']:.2f}x the "
                   "source's)")
        click.echo(f"calibration: {table.calibration.describe()}")
        click.echo(f"held-out ({held['n']} subnets, timed here): MAPE {100 * held['mape']:.1f} %, within +-10 % "
                   f"{100 * held['within_10']:.0f} %, Spearman {held['spearman']:.3f} (the source table as it was: "
                   f"MAPE {100 * before['mape']:.1f} %, within +-10 % {100 * before['within_10']:.0f} %)")
        return
    calibration_models, heldout_models = calibration_models or 30, heldout_models or 30
    settings = BuildSettings(space=space_name, input_seconds=input_seconds or DEFAULT_INPUT_SECONDS,
                             calibration_models=calibration_models, heldout_models=heldout_models,
                             protocols=protocols, seed=seed)
    out_path = out_path or default_table_path(device.device_id, space_name)
    table = build_lut(device, settings, out_path, progress=not no_progress,
                      command=" ".join(["predictnas"] + sys.argv[1:]))
    acc = table.accuracy
    held, retest = acc["heldout"], acc["test_retest"]
    click.echo(f"wrote {out_path}: {len(table.entries)} entries on {table.device_id}, {table.input_seconds:g} s input "
               f"({table.frames.input} frames, {table.frames.encoder} encoder frames), "
               f"built in {table.build['seconds'] / 60:.1f} min")
    click.echo(f"calibration on {len(table.models['calibration'])} subnets: {table.calibration.describe()}")
    click.echo(f"held-out ({held['n']} subnets): MAPE {100 * held['mape']:.1f} %, within +-10 % "
               f"{100 * held['within_10']:.0f} %, Spearman {held['spearman']:.3f}, Kendall {held['kendall']:.3f} "
               f"(raw sum: MAPE {100 * acc['heldout_raw_sum']['mape']:.1f} %)")
    click.echo(f"noise floor (the held-out subnets timed twice): within +-10 % {100 * retest['within_10']:.0f} %, "
               f"MAPE {100 * retest['mape']:.1f} %")
    low, high = acc["measured_range_ms"]
    est, span = acc["random_subnets_estimate_ms"], acc["space_span_ms"]
    click.echo(f"span of the space: fastest subnet {span['fastest']['measured_ms']:.1f} ms measured "
               f"({span['fastest']['predicted_ms']:.1f} predicted), slowest {span['slowest']['measured_ms']:.1f} ms "
               f"({span['slowest']['predicted_ms']:.1f} predicted); random subnets measured {low:.1f}-{high:.1f} ms, "
               f"estimated p1 {est['p1']:.1f} / median {est['p50']:.1f} / p99 {est['p99']:.1f} ms")
