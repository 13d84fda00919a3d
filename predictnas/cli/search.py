"""``search``: top.json from the latency table and the accuracy predictor."""

from __future__ import annotations

from pathlib import Path

import click

from .options import FiniteFloat, no_progress_option, ray_address_option, run_dir_option


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
@run_dir_option()
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

    from ..latency.table import LatencyTable, find_table
    from ..predictor import AccuracyPredictor
    from ..rundir import RunDir, SearchFiles
    from ..search.search import (SearchSettings, parse_bytes, parse_count, parse_latency_ms, run_search,
                                 search_inputs, supernet_of)

    settings = SearchSettings(
        budget_ms=parse_latency_ms(budget), lam=lam, max_params=parse_count(max_params) if max_params else None,
        max_memory_bytes=parse_bytes(max_memory) if max_memory else None, top_k=top_k, pareto=pareto,
        environment=environment, generations=generations, seconds=seconds, seed=seed, population=population,
        rescore=rescore, time_finalists=time_finalists)
    run = RunDir(run_dir)
    predictor_path, calibration_path = search_inputs(run, predictor_path, calibration_path, shared_weight_wer)
    predictor = AccuracyPredictor.load(predictor_path)
    table = LatencyTable.load(lut_path or find_table(device_name, predictor.space.config.name))
    out = SearchFiles(out_path) if out_path else run.search
    finetune = None
    if calibration_path:
        from ..predictor.calibrate import FinetuneCalibration

        finetune = FinetuneCalibration.load(calibration_path)
        click.echo(f"optimizing the WER after fine-tuning ({calibration_path}; --shared-weight-wer to optimize "
                   "shared-weight WER instead)", err=True)
    meter = None
    if rescore:
        from ..latency.estimate import LatencyEstimator
        from ..predictor.sample import supernet_meter

        supernet = supernet_of(predictor, run)
        meter = lambda target: supernet_meter(target, supernet, run, workers, LatencyEstimator(table),  # noqa: E731
                                              not no_progress, ray_address)
    bundle = run_search(settings, table, predictor, out, predictor_path, not no_progress,
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
    click.echo(f"wrote {out.top}, {out.pareto_json}, {out.pareto_png}")
