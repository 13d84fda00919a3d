"""``run``: every stage in one run directory (the README's first command)."""

from __future__ import annotations

from pathlib import Path

import click

from .options import TRAINING_PRESETS, FiniteFloat, data_options, no_progress_option, ray_address_option, run_dir_option


@click.command("run")
@click.option("--budget", default="40ms", show_default=True, help="Latency budget of the search.")
@click.option("--preset", type=click.Choice(TRAINING_PRESETS), default="small", show_default=True,
              help="tiny: a smoke run in minutes (trains its own); small: the default space and corpus.")
@click.option("--train", "train_own", is_flag=True,
              help="Train your own supernet (and sample, fit, calibrate) instead of starting from the shipped one.")
@data_options
@run_dir_option(None, "The run directory (default: runs/default from the shipped artifacts, runs/train when "
                      "training your own, runs/<preset> for another preset).")
@click.option("--n", "subnets", type=click.IntRange(min=10), default=300, show_default=True, help="Subnets to evaluate.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--search-seconds", type=FiniteFloat(min=0.1), default=60.0, show_default=True)
@click.option("--rescore", type=click.IntRange(min=0), default=32, show_default=True,
              help="Finalists of the search measured with the supernet before the top-k is chosen.")
@click.option("--top-k", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--finetune-steps", type=click.IntRange(min=0), default=400, show_default=True)
@click.option("--no-verify", is_flag=True, help="Stop after the search.")
@click.option("--no-baselines", is_flag=True, help="Verify without the hand-crafted Conformers.")
@click.option("--no-calibrate", is_flag=True,
              help="Stop after the first verify: no calibration, no second search for the fine-tuned WER.")
@click.option("--lut", "lut_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Latency table (default: this machine's, measured once where none is shipped).")
@click.option("--protocol", "protocols", default="standard", show_default=True, help="Verify's timing protocol.")
@ray_address_option
@no_progress_option
def run_command(budget: str, preset: str, train_own: bool, train_data: Path | None, dev_data: Path | None,
                test_data: Path | None, resample: bool, run_dir: Path, subnets: int, workers: int,
                search_seconds: float, rescore: int, top_k: int, finetune_steps: int, no_verify: bool,
                no_baselines: bool, no_calibrate: bool, lut_path: Path | None, protocols: str,
                ray_address: str | None, no_progress: bool) -> None:
    """Search and verify from the shipped supernet, predictor and calibration; or, with --train, user data or
    another preset, every stage: corpus, supernet, sample, fit, search, verify, then calibrate, search and
    verify again for the fine-tuned WER. What is done already is skipped."""
    from .. import pretrained
    from ..bundle import Bundle
    from ..experiment import DataSources, get_preset
    from ..pipeline import PipelineSettings, run_pipeline
    from ..report import predicted_wer_of
    from ..rundir import DEFAULT_RUN_DIR, SearchFiles
    from ..verification import Verification

    user_data = train_data is not None or dev_data is not None or test_data is not None
    data = DataSources(corpus_preset=get_preset(preset).corpus, train=train_data, dev=dev_data, test=test_data,
                       resample=resample) if user_data else None
    shipped = (not train_own and data is None and get_preset(preset).space == pretrained.DEFAULT
               and pretrained.artifact("finetune") is not None)
    if run_dir is None:  # one run directory per kind of run: their files must not mix
        run_dir = DEFAULT_RUN_DIR if shipped else DEFAULT_RUN_DIR.parent / ("train" if preset == "small" else preset)
    settings = PipelineSettings(budget=budget, preset=preset, subnets=subnets, workers=workers,
                                search_seconds=search_seconds, rescore=rescore, top_k=top_k, verify=not no_verify,
                                finetune_steps=finetune_steps, baselines=not no_baselines, lut=lut_path,
                                protocol=protocols, calibrate=not no_calibrate, pretrained=shipped, data=data,
                                ray_address=ray_address)
    top = run_pipeline(run_dir, settings, log=lambda m: click.echo(m, err=True), progress=not no_progress)
    bundle = Bundle.load(top)
    best = bundle.candidates[0]
    line = (f"best under {bundle.objective['budget_ms']:g} ms: {best.arch.arch_id}, predicted WER "
            f"{100 * predicted_wer_of(best.to_dict()):.2f} % at {best.predicted['latency_ms']:.2f} ms")
    verified = SearchFiles(top).verify
    if verified.report_json.exists():
        measured = Verification.load(verified.report_json).model("nas-1")["measured"]
        line += (f"; verify measured {100 * measured['wer']['all']:.2f} % at {measured['latency']['ms']:.2f} ms "
                 f"(report: {verified.report_md})")
    click.echo(line)
