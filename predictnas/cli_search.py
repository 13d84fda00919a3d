"""Commands of the last stages: ``search`` (top.json from the LUT and the predictor) and ``verify``."""

from __future__ import annotations

from pathlib import Path

import click

from .cli_options import TRAINING_PRESETS, FiniteFloat, data_options, no_progress_option, ray_address_option


@click.command("search")
@click.option("--budget", required=True, help="Latency budget with a unit: 40ms, 0.04s.")
@click.option("--lambda", "lam", type=FiniteFloat(min=0), default=0.02, show_default=True,
              help="Weight of log(latency) in the reward -WER - lambda * log(latency_ms).")
@click.option("--max-params", default=None, help="Soft parameter budget, e.g. 5M (penalized, not forbidden).")
@click.option("--max-memory", default=None, help="Soft memory budget (weights + peak activations), e.g. 64MB.")
@click.option("--top-k", type=click.IntRange(min=1), default=3, show_default=True,
              help="Picks written to top.json (verify fine-tunes each).")
@click.option("--pareto", is_flag=True, help="NSGA-II for the WER/latency front instead of the scalar reward.")
@click.option("--environment", default=None, help="Optimize WER in this acoustic environment (default: all).")
@click.option("--generations", type=click.IntRange(min=1), default=None, help="Stop after N generations...")
@click.option("--seconds", type=FiniteFloat(min=0.1), default=60.0, show_default=True, help="...or after S seconds.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--population", type=click.IntRange(min=2), default=None, help="Population size (default 20000, NSGA-II 10000).")
@click.option("--rescore", type=click.IntRange(min=0), default=0, show_default=True,
              help="Measure the N best candidates with the supernet's weights (dev set) and pick the top-k by "
                   "measured WER; the evaluations join the run's store.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Processes for --rescore.")
@click.option("--time-finalists", type=click.IntRange(min=0), default=0, show_default=True,
              help="Time the N best candidates on this machine with the table's protocol and pick only those within "
                   "the budget (the table must be this machine's). With --rescore M, max(M, N) finalists get both.")
@click.option("--predictor", "predictor_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="predictor.json (default: RUN_DIR/predictor.json, else the shipped one).")
@click.option("--finetune-calibration", "calibration_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Optimize the WER verify will measure after fine-tuning: the predictor's shared-weight "
                                 "WER (or CER) and the architecture's descriptors through this calibration (made by "
                                 "`predictnas calibrate`; default: the shipped one when the predictor is the shipped "
                                 "one).")
@click.option("--shared-weight-wer", is_flag=True,
              help="Optimize the predictor's shared-weight WER: no fine-tuning calibration.")
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/default"), show_default=True)
@click.option("--lut", "lut_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Latency table (default: the shipped table of --device).")
@click.option("--device", "device_name", default="cpu", show_default=True)
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write top.json (default: RUN_DIR/top.json); pareto.json/png go beside it.")
@ray_address_option
@no_progress_option
def search_command(budget: str, lam: float, max_params: str | None, max_memory: str | None, top_k: int, pareto: bool,
                   environment: str | None, generations: int | None, seconds: float, seed: int, population: int | None,
                   rescore: int, workers: int, time_finalists: int, predictor_path: Path | None,
                   calibration_path: Path | None, shared_weight_wer: bool, run_dir: Path, lut_path: Path | None,
                   device_name: str, out_path: Path | None, ray_address: str | None, no_progress: bool) -> None:
    """Genetic search for the most accurate models under a latency budget; writes top.json."""
    import statistics
    import sys

    from .latency.table import LatencyTable, find_table
    from .predictor import AccuracyPredictor
    from .search.job import SearchSettings, parse_bytes, parse_count, parse_latency_ms, run_search

    settings = SearchSettings(
        budget_ms=parse_latency_ms(budget), lam=lam, max_params=parse_count(max_params) if max_params else None,
        max_memory_bytes=parse_bytes(max_memory) if max_memory else None, top_k=top_k, pareto=pareto,
        environment=environment, generations=generations, seconds=seconds, seed=seed, population=population,
        rescore=rescore, time_finalists=time_finalists)
    predictor_path, calibration_path = search_inputs(run_dir, predictor_path, calibration_path, shared_weight_wer)
    predictor = AccuracyPredictor.load(predictor_path)
    table = LatencyTable.load(lut_path or find_table(device_name, predictor.space.config.name))
    out_path = out_path or run_dir / "top.json"
    finetune = None
    if calibration_path:
        from .predictor.finetune import FinetuneCalibration

        finetune = FinetuneCalibration.load(calibration_path)
        click.echo(f"optimizing the WER after fine-tuning ({calibration_path}; --shared-weight-wer to optimize "
                   "shared-weight WER instead)", err=True)
    meter = None
    if rescore:
        from .latency.estimate import LatencyEstimator
        from .predictor.runner import supernet_meter

        supernet = (predictor.supernet or {}).get("path") or run_dir / "supernet.pt"
        meter = lambda target: supernet_meter(target, supernet, run_dir, workers, LatencyEstimator(table),  # noqa: E731
                                              not no_progress, ray_address)
    bundle = run_search(settings, table, predictor, out_path, predictor_path, not no_progress,
                        command=" ".join(["predictnas"] + sys.argv[1:]), log=lambda m: click.echo(m, err=True),
                        meter=meter, finetune=finetune)
    stats = bundle.search
    click.echo(f"{stats['candidates']:,} candidates scored in {stats['seconds']:.1f} s "
               f"({stats['candidates_per_second']:,.0f}/s, {stats['generations']} generations); budget "
               f"{settings.budget_ms:g} ms on {table.device_id} (fastest reachable {stats['fastest_ms']:.1f} ms)")
    # what a rescored finalist's WER is: measured with the supernet's weights, or fine-tuned WER estimated from
    # its measured WER (or CER)
    measured_key, what = (("finetuned_wer", f"fine-tuned WER from their dev {finetune.source.split('/')[0].upper()}")
                          if finetune else ("supernet_wer", "dev WER"))
    if "rescored" in stats:
        measured, predicted = ([100 * f[k] for f in stats["finalists"]] for k in (measured_key, "wer"))
        click.echo(f"measured {stats['rescored']} finalists with the supernet in {stats['rescore_seconds']:.1f} s: "
                   f"{what} {min(measured):.2f}-{max(measured):.2f} % (predicted {min(predicted):.2f}-"
                   f"{max(predicted):.2f} %); the predictor's favourite measured {measured[0]:.2f} %")
    if "timed" in stats:
        ratios = [f["measured_latency_ms"] / f["latency_ms"] for f in stats["finalists"]]
        within = sum(f["measured_latency_ms"] <= settings.budget_ms for f in stats["finalists"])
        click.echo(f"timed {stats['timed']} finalists on this machine in {stats['timing_seconds']:.1f} s: timed / table "
                   f"latency {min(ratios):.2f}-{max(ratios):.2f} (median {statistics.median(ratios):.2f}); "
                   f"{within} within the budget")
    click.echo(f"  {'rank':<5}{'arch_id':<18}{'WER %':>7}{'measured WER %':>16}{'latency ms':>12}{'timed ms':>10}"
               f"{'params':>12}{'reward':>9}")
    for c in bundle.candidates:
        p = c.predicted
        measured = f"{100 * p[measured_key]:.2f}" if measured_key in p else "-"
        timed = f"{p['measured_latency_ms']:.2f}" if "measured_latency_ms" in p else "-"
        click.echo(f"  {c.rank:<5}{c.arch.arch_id:<18}{100 * p['wer']:>7.2f}{measured:>16}{p['latency_ms']:>12.2f}"
                   f"{timed:>10}{int(p['params']):>12,}{p['reward']:>9.4f}")
    click.echo(f"wrote {out_path}, {out_path.parent / 'pareto.json'}, {out_path.parent / 'pareto.png'}")



def search_inputs(run_dir: Path, predictor_path: Path | None, calibration_path: Path | None,
                  shared_weight_wer: bool) -> tuple[Path, Path | None]:
    """The predictor and fine-tuning calibration a search uses: the given ones; else the run directory's
    predictor; else the shipped predictor with the shipped calibration fitted beside it."""
    from . import pretrained
    from .errors import PredictnasError

    if predictor_path is None:
        own = run_dir / "predictor.json"
        predictor_path = own if own.exists() else pretrained.artifact("predictor")
        if predictor_path is None:
            raise PredictnasError(f"no predictor: none in {run_dir} and none shipped; run `predictnas fit` or pass "
                                  "--predictor")
        if predictor_path != own and calibration_path is None and not shared_weight_wer:
            calibration_path = pretrained.artifact("finetune")
    if shared_weight_wer and calibration_path is not None:
        raise PredictnasError("--shared-weight-wer and --finetune-calibration exclude each other")
    return predictor_path, calibration_path


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
                   production_sample_rate: int | None, baselines: bool, baseline_paths: tuple[Path, ...], out_dir: Path | None, supernet_path: Path | None,
                   lut_path: Path | None, allow_hardware_gap: bool, test_data: Path | None, protocols: str,
                   latency_repeats: int, picks: int | None, ray_address: str | None, no_progress: bool) -> None:
    """Retrain the picks of TOP.json, export ONNX fp32 + int8, measure latency and WER, compare with predictions.

    Resumable: models already verified in the output folder are not redone.
    """
    from .bundle import Bundle
    from .errors import PredictnasError
    from .latency.protocol import PROTOCOLS
    from .report import markdown
    from .verify import VerifySettings, run_verify, shipped_baselines

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
    out_dir = out_dir or bundle_path.parent / "verify"
    verification = run_verify(bundle_path, out_dir, settings, supernet_path, lut_path, progress=not no_progress,
                              log=lambda m: click.echo(m, err=True))
    click.echo(markdown(verification))
    click.echo(f"wrote {out_dir / 'verify.json'}, {out_dir / 'report.md'}, {out_dir / 'verify.png'}")


@click.command("run")
@click.option("--budget", default="40ms", show_default=True, help="Latency budget of the search.")
@click.option("--preset", type=click.Choice(TRAINING_PRESETS), default="small", show_default=True,
              help="tiny: a smoke run in minutes (trains its own); small: the default space and corpus.")
@click.option("--train", "train_own", is_flag=True,
              help="Train your own supernet (and sample, fit, calibrate) instead of starting from the shipped one.")
@data_options
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The run directory (default: runs/default from the shipped artifacts, runs/train when training "
                   "your own, runs/<preset> for another preset).")
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
    from . import pretrained
    from .bundle import Bundle
    from .experiment import DataSources, get_preset
    from .io import read_json
    from .pipeline import PipelineSettings, run_pipeline
    from .report import predicted_wer_of

    user_data = train_data is not None or dev_data is not None or test_data is not None
    data = DataSources(corpus_preset=get_preset(preset).corpus, train=train_data, dev=dev_data, test=test_data,
                       resample=resample) if user_data else None
    shipped = (not train_own and data is None and get_preset(preset).space == pretrained.DEFAULT
               and pretrained.artifact("finetune") is not None)
    if run_dir is None:  # one run directory per kind of run: their files must not mix
        run_dir = Path("runs") / ("default" if shipped else "train" if preset == "small" else preset)
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
    verified = top.parent / "verify" / "verify.json"
    if verified.exists():
        measured = next(m["measured"] for m in read_json(verified)["models"] if m["name"] == "nas-1")
        line += (f"; verify measured {100 * measured['wer']['all']:.2f} % at {measured['latency']['ms']:.2f} ms "
                 f"(report: {verified.parent / 'report.md'})")
    click.echo(line)
