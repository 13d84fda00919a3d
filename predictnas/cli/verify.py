"""``verify``: retrain the picks of a top.json and measure them on this machine."""

from __future__ import annotations

from pathlib import Path

import click

from .options import no_progress_option, ray_address_option, run_dir_option


@click.command("verify")
@click.argument("bundle_path", metavar="TOP.json", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--finetune-steps", type=click.IntRange(min=0), default=400, show_default=True,
              help="Training steps per model (fine-tuning from supernet weights, or from scratch).")
@click.option("--from-scratch", is_flag=True, help="Train each model from random weights instead of fine-tuning.")
@click.option("--baselines-from-scratch", is_flag=True,
              help="Train the baselines from random weights (as you would a hand-crafted model) and the picks "
                   "from the supernet's, for the same number of steps.")
@click.option("--device", "device_name", default="cpu", show_default=True, help="cpu or cpu-int8 (with :N threads).")
@click.option("--production-sample-rate", type=click.IntRange(min=1000), default=None,
              help="Sample rate of the production audio; if it differs from the model's, WER is also measured on "
                   "test audio captured at that rate.")
@click.option("--baselines", is_flag=True,
              help="Also train and measure the hand-crafted Conformers shipped for the space.")
@click.option("--baseline", "baseline_paths", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              metavar="ARCH.json", help="A hand-crafted model of your own to compare (repeatable).")
@run_dir_option(None, "Where a user data set's features are cached (default: TOP.json's folder).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder (default: verify/ beside TOP.json).")
@click.option("--supernet", "supernet_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Supernet (default: the one recorded in TOP.json).")
@click.option("--lut", "lut_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Latency table of the device (default: the shipped one).")
@click.option("--allow-hardware-gap", is_flag=True, help="Measure even if the table was built on other hardware.")
@click.option("--test-data", type=click.Path(exists=True, path_type=Path), default=None,
              help="Score on this set (JSONL manifest or LibriSpeech folder) instead of the supernet's test split.")
@click.option("--protocol", "protocols", default="standard", show_default=True, help="Timing protocol (quick: smoke tests).")
@click.option("--latency-repeats", type=click.IntRange(min=1), default=3, show_default=True,
              help="Times each model is timed with the whole protocol; the median is reported, with every timing.")
@click.option("--picks", type=click.IntRange(min=1), default=None,
              help="Verify only the first N picks of TOP.json (default: all); --picks 1 for a first look.")
@ray_address_option
@no_progress_option
def verify_command(bundle_path: Path, finetune_steps: int, from_scratch: bool, baselines_from_scratch: bool,
                   device_name: str,
                   production_sample_rate: int | None, baselines: bool, baseline_paths: tuple[Path, ...], run_dir: Path | None,
                   out_dir: Path | None, supernet_path: Path | None,
                   lut_path: Path | None, allow_hardware_gap: bool, test_data: Path | None, protocols: str,
                   latency_repeats: int, picks: int | None, ray_address: str | None, no_progress: bool) -> None:
    """Retrain the picks of TOP.json, export ONNX fp32 + int8, measure latency and WER, compare with predictions.

    Resumable: models already verified in the output folder are not redone.
    """
    from ..bundle import Bundle
    from ..errors import PredictnasError
    from ..latency.protocol import PROTOCOLS
    from ..report import markdown
    from ..rundir import SearchFiles, VerifyFiles
    from ..verify import VerifySettings, run_verify, shipped_baselines

    if protocols not in PROTOCOLS:
        raise PredictnasError(f"unknown protocol {protocols!r}; choose from {', '.join(PROTOCOLS)}")
    space_name = Bundle.load(bundle_path).space.name
    shipped = shipped_baselines(space_name) if baselines else ()
    if baselines and not shipped:
        click.echo(f"note: no hand-crafted baselines are shipped for space {space_name}; "
                   "pass your own with --baseline ARCH.json", err=True)
    settings = VerifySettings(finetune_steps=finetune_steps, from_scratch=from_scratch,
                              baselines_from_scratch=baselines_from_scratch, device=device_name,
                              production_sample_rate=production_sample_rate,
                              baselines=shipped + tuple(map(str, baseline_paths)),
                              allow_hardware_gap=allow_hardware_gap,
                              test_data=str(test_data.resolve()) if test_data else None, protocols=protocols, latency_repeats=latency_repeats, picks=picks,
                              ray_address=ray_address)
    out = VerifyFiles(out_dir) if out_dir else SearchFiles(bundle_path).verify
    verification = run_verify(bundle_path, settings, out, run_dir, supernet_path, lut_path, progress=not no_progress,
                              log=lambda m: click.echo(m, err=True))
    click.echo(markdown(verification))
    click.echo(f"wrote {out.report_json}, {out.report_md}, {out.plot}")
