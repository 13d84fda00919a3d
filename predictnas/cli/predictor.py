"""Commands of the predictor stage: ``sample`` (evaluate subnets into the store), ``fit`` (the XGBoost
predictor) and ``calibrate`` (shared-weight WER to the WER after fine-tuning)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..errors import PredictnasError
from .options import no_progress_option, ray_address_option, run_dir_option


@click.command("sample")
@click.option("--n", "n", type=click.IntRange(min=1), default=300, show_default=True, help="Subnets to evaluate.")
@run_dir_option()
@click.option("--supernet", "supernet_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Supernet to take the weights from (default: RUN_DIR/supernet.pt).")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Local worker processes (the cores are shared among them).")
@click.option("--repeat", type=click.IntRange(min=0), default=30, show_default=True,
              help="Also evaluate the first N subnets on the test split, for the noise ceiling.")
@click.option("--lut", "lut_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Latency table for the latency strata (default: the shipped cpu table, if it fits the space).")
@click.option("--no-proxies", is_flag=True, help="Skip the zero-cost proxies.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the covering sample.")
@click.option("--around-largest/--uniform-only", default=True, show_default=True,
              help="Every second subnet from around the largest (a random share of its choices redrawn, as the "
                   "supernet trains them) instead of the uniform pool; at equal size this ranks the subnets "
                   "near the largest better and the uniform ones no worse (tools/predictor_pools.py).")
@click.option("--int8", is_flag=True,
              help="Also score each subnet as the cpu-int8 device computes it (int8 weights, uint8 activations in "
                   "every linear layer), so fit learns the int8 WER a cpu-int8 search optimizes.")
@ray_address_option
@no_progress_option
def sample_command(n: int, run_dir: Path, supernet_path: Path | None, workers: int, repeat: int, lut_path: Path | None,
                   no_proxies: bool, seed: int, around_largest: bool, int8: bool, ray_address: str | None,
                   no_progress: bool) -> None:
    """Evaluate N subnets that cover the space with supernet weights; store them in RUN_DIR/evals.sqlite.

    Resumable: subnets already in the store are skipped.
    """
    from ..predictor.sample import sample_subnets, strata_estimator
    from ..rundir import RunDir

    run = RunDir(run_dir)
    summary = sample_subnets(run, n, workers=workers, seed=seed, supernet_path=supernet_path,
                             estimator=strata_estimator(run, supernet_path, lut_path), repeat=repeat,
                             with_proxies=not no_proxies, around_largest=around_largest, progress=not no_progress,
                             ray_address=ray_address, int8=int8)
    click.echo(f"{summary.store}: {summary.evaluated} subnets evaluated now, {summary.skipped} already stored "
               f"({summary.requested} requested, {summary.repeats} repeated on the test split) in "
               f"{summary.seconds / 60:.1f} min")


@click.command("fit")
@run_dir_option()
@click.option("--features", "features_text", default="encoding,closed_form", show_default=True,
              help="Feature groups: encoding, closed_form, proxies (proxies cannot score search candidates).")
@click.option("--folds", type=click.IntRange(min=2), default=5, show_default=True)
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the predictor (default: RUN_DIR/predictor.json).")
@click.option("--rows", "max_rows", type=click.IntRange(min=1), default=None,
              help="Fit on the first N evaluated subnets only, in the order stored (a sample's come before the ones "
                   "a later `search --rescore` added).")
@click.option("--json", "as_json", is_flag=True, help="Print the cross-validation report as JSON.")
def fit_command(run_dir: Path, features_text: str, folds: int, out_path: Path | None, max_rows: int | None,
                as_json: bool) -> None:
    """Fit the XGBoost WER predictor on the store; print cross-validated rank metrics and baselines."""
    from ..predictor.features import FeatureSpec
    from ..predictor.fit import fit_predictor
    from ..predictor.store import SQLiteStore
    from ..rundir import RunDir
    from ..space import SearchSpace

    run = RunDir(run_dir)
    store_path = run.store
    if not store_path.exists():
        raise PredictnasError(f"{store_path}: no evaluated subnets (run `predictnas sample --run-dir {run_dir}` first)")
    with SQLiteStore(store_path) as store:
        space = SearchSpace(store.space_config())
        predictor, report = fit_predictor(store, space, FeatureSpec.parse(features_text, space.config), folds,
                                          max_rows=max_rows)
    out_path = out_path or run.predictor
    predictor.save(out_path)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        click.echo(format_report(report))
    click.echo(f"wrote {out_path} ({report['rows']} subnets, features {','.join(predictor.spec.groups)}, "
               f"data {predictor.data_hash})")


LABEL = 42  # the longest label: the noise ceiling's


def _num(x, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def format_report(report: dict) -> str:
    lines = [f"{report['rows']} subnets, {report['folds']}-fold cross-validation (held-out predictions)"]
    for target, entry in report["targets"].items():
        low, mid, high = (100 * v for v in entry["range"])
        lines.append(f"\n{target}  (min / median / max: {low:.1f} / {mid:.1f} / {high:.1f} %; "
                     f"{entry['trees']} trees by early stopping)")
        lines.append(f"  {'predictor':<{LABEL}}{'Kendall':>9}{'Spearman':>10}{'RMSE pts':>10}")
        for features, m in entry["cv"].items():
            lines.append(f"  {'xgboost ' + features:<{LABEL}}{_num(m['kendall_tau']):>9}{_num(m['spearman']):>10}"
                         f"{100 * m['rmse']:>10.2f}")
        for name, m in entry["baselines"].items():
            lines.append(f"  {name + ' alone':<{LABEL}}{_num(m['kendall_tau']):>9}{_num(m['spearman']):>10}{'':>10}")
        ceiling = entry["noise_ceiling"]
        if ceiling:
            lines.append(f"  {'noise ceiling (' + str(ceiling['subnets']) + ' subnets, dev vs test)':<{LABEL}}"
                         f"{_num(ceiling['kendall_tau']):>9}{_num(ceiling['spearman']):>10}{100 * ceiling['rmse']:>10.2f}")
        elif not target.startswith("int8/"):
            lines.append("  noise ceiling: not measured (run `predictnas sample --repeat 30`)")
    agreement = report.get("int8_vs_float")
    if agreement:
        lines.append("\nint8 against float evaluations of the same subnets (rank agreement, RMSE in points):")
        for target, m in agreement.items():
            lines.append(f"  {target:<{LABEL}}{_num(m['kendall_tau']):>9}{_num(m['spearman']):>10}{100 * m['rmse']:>10.2f}")
    return "\n".join(lines)


@click.command("calibrate")
@click.argument("verify_paths", metavar="VERIFY.json...", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@run_dir_option()
@click.option("--supernet", "supernet_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Supernet the verified models were fine-tuned from (default: RUN_DIR/supernet.pt).")
# the choices of predictor.calibrate.SOURCES, written out so that `--help` need not import the predictor
@click.option("--source", type=click.Choice(["wer/all", "cer/all"]), default="wer/all", show_default=True,
              help="The shared-weight dev metric mapped to fine-tuned WER (cer/all where greedy decoding leaves "
                   "WER near 100 %).")
@click.option("--descriptors", default="log10_flops,conv_fraction", show_default=True,
              help="Architecture descriptors beside the shared-weight metric, comma-separated, of log10_params, "
                   "log10_flops and conv_fraction (share of blocks with a conv module); 'none' for none.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the calibration (default: RUN_DIR/finetune.json).")
@no_progress_option
def calibrate_command(verify_paths: tuple[Path, ...], run_dir: Path, supernet_path: Path | None, source: str,
                      descriptors: str, workers: int, out_path: Path | None, no_progress: bool) -> None:
    """Fit the map from shared-weight WER and architecture descriptors to the WER verify measures after
    fine-tuning, on verified models.

    `search --finetune-calibration` then optimizes that fine-tuned WER. Each verified model's dev WER
    with the supernet's weights is read from (or evaluated into) the run's store.
    """
    from ..predictor.calibrate import calibrate
    from ..rundir import RunDir

    run = RunDir(run_dir)
    names = () if descriptors.strip() == "none" else tuple(d.strip() for d in descriptors.split(",") if d.strip())
    calibration = calibrate(run, list(verify_paths), supernet_path, workers, progress=not no_progress,
                            source=source, descriptors=names)
    out_path = out_path or run.finetune
    calibration.save(out_path)
    shared = f"shared {source.split('/')[0].upper()} %"
    kept = calibration.descriptors
    click.echo(f"  {'model':<14}{'arch_id':<18}{shared:>14}" + "".join(f"{d:>15}" for d in kept)
               + f"{'fine-tuned WER %':>18}{'fitted %':>10}")
    for m in calibration.models:
        fitted = 100 * calibration.apply([[m["shared"], *(m[d] for d in kept)]])[0]
        click.echo(f"  {m['name']:<14}{m['arch_id']:<18}{100 * m['shared']:>14.2f}" + "".join(f"{m[d]:>15.3f}" for d in kept)
                   + f"{100 * m['finetuned_wer']:>18.2f}{fitted:>10.2f}")
    if dropped := [d for d in names if d not in kept]:
        click.echo(f"  left out {', '.join(dropped)}: fitted with them, a weight had a sign fine-tuning cannot have")
    recipe = calibration.recipe
    click.echo(f"{calibration.describe()} ({recipe['finetune_steps']} training steps"
               f"{' from scratch' if recipe['from_scratch'] else ''})")
    click.echo(f"wrote {out_path}")
