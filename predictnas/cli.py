"""The ``predictnas`` command line: thin click commands over the library.

Every user error is one line on stderr, ``error: ...``, and exit status 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
import numpy as np

from . import __version__
from .complexity import param_counts, param_range
from .errors import PredictnasError, one_line
from .io import read_json
from .cli_options import TRAINING_PRESETS, FiniteFloat, data_options, no_progress_option, run_dir_option
from .space import BLOCK_FIELDS, DEFAULT_SPACE, GLOBAL_FIELDS, SPACES, Arch, SearchSpace, get_space


class _Group(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except PredictnasError as e:  # one line, whatever a library's message quoted in it looked like
            click.echo(f"error: {one_line(e)}", err=True)
            ctx.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="predictnas")
def main() -> None:
    """Hardware-aware neural architecture search for on-device speech recognition."""


space_option = click.option("--space", "space_name", default=DEFAULT_SPACE.name, show_default=True,
                            type=click.Choice(sorted(SPACES)), help="Registered search space.")


@main.command("space")
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
        arch = load_arch(check_path, space)
        click.echo(f"{check_path}: valid; arch_id {arch.arch_id}, depth {arch.depth}, width {arch.width}, "
                   f"{_params_of(space, arch):,} parameters")
    elif sample:
        for genes in space.sample(sample, np.random.default_rng(seed)):
            click.echo(space.decode(genes).to_json())
    else:
        summary = describe(space)
        click.echo(json.dumps(summary, indent=2) if as_json else _format_summary(summary))


@main.command("export")
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

    from .supernet import Supernet, load_supernet
    from .supernet.export import OPSET, check_onnx, compare_with_torch, export_onnx

    if supernet_path is not None:
        supernet = load_supernet(supernet_path)
        space = SearchSpace(supernet.space)
    else:
        space = get_space(space_name)
        click.echo(f"note: no --supernet given: weights are randomly initialised (seed {seed}); "
                   "fine for latency, meaningless for accuracy", err=True)
        torch.manual_seed(seed)
        supernet = Supernet(space.config)
    arch = load_arch(arch_path, space)
    subnet = supernet.eval().extract(arch)
    export_onnx(subnet, out_path, exporter=exporter)
    check_onnx(out_path)
    parity = compare_with_torch(subnet, out_path)
    size_mb = out_path.stat().st_size / 1e6
    click.echo(f"wrote {out_path} (arch {arch.arch_id}, {_params_of(space, arch):,} parameters, {size_mb:.1f} MB, "
               f"opset {OPSET}, dynamic frames)")
    click.echo(f"onnx.checker: ok; ONNX Runtime vs PyTorch: max abs diff {parity.max_abs_diff:.2e} "
               f"at {', '.join(map(str, parity.frames))} input frames")


@main.command("corpus")
@click.option("--preset", type=click.Choice(["tiny", "small"]), default="small", show_default=True,
              help="tiny: seconds to build (tests); small: a few hours of audio (the default experiment).")
@click.option("--sample-rate", type=int, default=16000, show_default=True, help="Rate the audio is written at.")
@click.option("--seed", type=int, default=None, help="Recipe seed (default: the preset's).")
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Cache folder (default: the user cache's corpus folder, see predictnas.cache).")
@no_progress_option
def corpus_command(preset: str, sample_rate: int, seed: int | None, root: Path | None, no_progress: bool) -> None:
    """Synthesize (or reuse) the embedded voice-command corpus in its acoustic environments."""
    from .data.corpus import build_corpus, default_corpus_root, get_recipe

    info = build_corpus(root or default_corpus_root(), get_recipe(preset, sample_rate=sample_rate, seed=seed),
                        progress=not no_progress)
    click.echo(f"corpus {info.path} (recipe {info.recipe_hash}, {len(info.intents)} intents, "
               f"{info.recipe.sample_rate} Hz)")
    for split in ("train", "dev", "test"):
        st = info.stats[split]
        envs = ", ".join(f"{name} {e['hours']:.2f} h" for name, e in st["environments"].items())
        click.echo(f"  {split:<5} {st['utterances']:>6} utterances, {st['voices']:>3} voices, {st['hours']:.2f} h ({envs})")


@main.command("train")
@click.option("--preset", type=click.Choice(TRAINING_PRESETS), default="small", show_default=True,
              help="Corpus, search space and training recipe (long: the shipped supernet's, about 2 h; refine: a "
                   "second stage from --init-from).")
@run_dir_option
@click.option("--steps", type=click.IntRange(min=1), default=None, help="Override the preset's number of steps.")
@click.option("--seed", type=int, default=None, help="Override the preset's training seed.")
@click.option("--sample-rate", type=int, default=16000, show_default=True)
@data_options
@click.option("--device", default="cpu", show_default=True,
              help="Where training steps run: cpu, cuda (cuda:N) or auto (a GPU where PyTorch sees one).")
@click.option("--init-from", default=None, metavar="SUPERNET",
              help="Start from this trained supernet's weights (a file or pretrained:<name>) instead of random "
                   "ones: a second stage of training, such as --preset refine.")
@no_progress_option
def train_command(preset: str, run_dir: Path, steps: int | None, seed: int | None, sample_rate: int,
                  train_data: Path | None, dev_data: Path | None, test_data: Path | None, resample: bool, device: str,
                  init_from: str | None, no_progress: bool) -> None:
    """Train the once-for-all supernet (resumes from the run directory's checkpoint after a kill)."""
    from .experiment import DataSources, get_preset, train_supernet
    from .train import SUPERNET

    sources = DataSources(corpus_preset=get_preset(preset).corpus, sample_rate=sample_rate, train=train_data,
                          dev=dev_data, test=test_data, resample=resample)
    train_supernet(run_dir, get_preset(preset), sources, steps=steps, seed=seed, device=device,
                   progress=not no_progress, init_from=init_from)
    summary = json.loads((run_dir / "train.json").read_text())
    click.echo(f"wrote {run_dir / SUPERNET} ({summary['steps']} steps, {summary['wall_seconds'] / 60:.1f} min)")


@main.command("eval")
@click.argument("arch_path", metavar="ARCH.json", type=click.Path(dir_okay=False, path_type=Path))
@run_dir_option
@click.option("--supernet", "supernet_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Supernet to take the weights from (default: RUN_DIR/supernet.pt, else the shipped one).")
@click.option("--split", type=click.Choice(["dev", "test"]), default="dev", show_default=True)
@click.option("--environment", default=None, help="Only this acoustic environment.")
@click.option("--greedy", is_flag=True,
              help="Greedy best-path decoding instead of the stages' lexicon beam search over the training words.")
@click.option("--test-data", type=click.Path(exists=True, path_type=Path), default=None,
              help="Score on this set (JSONL manifest or LibriSpeech folder) instead of the split.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@no_progress_option
def eval_command(arch_path: Path, run_dir: Path, supernet_path: Path | None, split: str, environment: str | None,
                 greedy: bool, test_data: Path | None, as_json: bool, no_progress: bool) -> None:
    """Word and character error rates and intent accuracy of ARCH.json with the supernet's weights."""
    from .data.dataset import epoch_batches
    from .data.text import CharTokenizer
    from .decoding import GreedyDecoder, describe
    from .evaluate import bind, evaluate
    from .experiment import decoder_for, load_split, load_trained_supernet

    supernet = load_trained_supernet(run_dir, supernet_path)
    arch = load_arch(arch_path, SearchSpace(supernet.space))
    store = load_split(supernet, split, run_dir, progress=not no_progress, data=test_data)
    if environment is not None:
        store = store.filter_environment(environment)
    batches = epoch_batches(store, supernet.metadata["intents"], batch_seconds=120.0)
    decoder = GreedyDecoder() if greedy else decoder_for(supernet, not no_progress)
    result = evaluate(bind(supernet, arch), batches, CharTokenizer(), decoder)
    if as_json:
        click.echo(json.dumps({"arch_id": arch.arch_id, "split": split, "decoding": decoder.spec(), **result.to_dict()},
                              indent=2))
        return
    click.echo(f"arch {arch.arch_id} on {split}, {describe(decoder.spec())} ({result.seconds:.1f} s)")
    click.echo(f"  {'environment':<22}{'utterances':>11}{'WER %':>8}{'CER %':>8}{'intent acc %':>14}")
    for env in result.wer:
        acc = result.intent_accuracy[env]
        click.echo(f"  {env:<22}{result.utterances[env]:>11}{100 * result.wer[env]:>8.2f}{100 * result.cer[env]:>8.2f}"
                   f"{'-' if acc is None else f'{100 * acc:.2f}':>14}")


@main.command("build-lut")
@click.option("--device", "device_name", default="cpu", show_default=True,
              help="cpu, cpu:N (N intra-op threads), cpu-int8 or cpu-int8:N.")
@click.option("--input-seconds", type=FiniteFloat(min=0, min_open=True), default=None,
              help="Reference input length in seconds of audio (default 24, see predictnas/pretrained/lut/README.md).")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the table (default: the user cache, <cache>/lut/<device-id>.json).")
@space_option
@click.option("--calibration", "calibration_models", type=click.IntRange(min=3), default=30, show_default=True,
              help="Random subnets timed end to end to fit the calibration.")
@click.option("--heldout", "heldout_models", type=click.IntRange(min=2), default=30, show_default=True,
              help="Other random subnets, timed twice, to report fidelity and the noise floor.")
@click.option("--protocol", "protocols", default="standard", show_default=True,
              help="Timing protocol: standard (drift-normalized), plain (not normalized) or quick (smoke tests only).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the calibration and held-out subnets.")
@no_progress_option
def build_lut_command(device_name: str, input_seconds: float | None, out_path: Path | None, space_name: str,
                      calibration_models: int, heldout_models: int, protocols: str, seed: int, no_progress: bool) -> None:
    """Measure every module shape of the space on a device, calibrate, and write the latency table.

    Resumable: a killed build continues from OUT's .partial.json when rerun with the same options.
    """
    from .latency.build import DEFAULT_INPUT_SECONDS, BuildSettings, build_lut
    from .latency.devices import get_device
    from .latency.table import default_table_path

    device = get_device(device_name)
    settings = BuildSettings(space=space_name, input_seconds=input_seconds or DEFAULT_INPUT_SECONDS,
                             calibration_models=calibration_models, heldout_models=heldout_models,
                             protocols=protocols, seed=seed)
    out_path = out_path or default_table_path(device.device_id, space_name)
    table = build_lut(device, settings, out_path, progress=not no_progress,
                      command=" ".join(["predictnas"] + sys.argv[1:]))
    acc, cal = table.accuracy, table.calibration
    held, retest = acc["heldout"], acc["test_retest"]
    click.echo(f"wrote {out_path}: {len(table.entries)} entries on {table.device_id}, {table.input_seconds:g} s input "
               f"({table.frames.input} frames, {table.frames.encoder} encoder frames), "
               f"built in {table.build['seconds'] / 60:.1f} min")
    click.echo(f"calibration on {len(table.models['calibration'])} subnets: latency = {cal.a:.3f} x table sum "
               f"{cal.b:+.3f} ms" + (f" + {cal.c:.3f} ms per MB of weights past {cal.w0_bytes / 1e6:.1f} MB" if cal.c else ""))
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


@main.command("estimate")
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
    from .latency.devices import get_device
    from .latency.estimate import LatencyEstimator
    from .latency.table import LatencyTable, find_table

    get_device(device_name)
    table = LatencyTable.load(lut_path or find_table(device_name, space_name))
    space = SearchSpace(table.space)
    arch = load_arch(arch_path, space)
    estimator = LatencyEstimator(table, space)
    raw_ns, _ = estimator.raw_arch(arch)
    latency = estimator.estimate_arch(arch)
    warning = table.check_device(allow_mismatch=True)
    if warning:
        click.echo(f"warning: hardware gap: {warning}", err=True)
    params = _params_of(space, arch)
    predicted = _predicted_errors(predictor_path, space, arch) if predictor_path is not None else None
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


def _predicted_errors(path: Path, space: SearchSpace, arch: Arch) -> dict[str, float]:
    from .predictor import AccuracyPredictor

    predictor = AccuracyPredictor.load(path)
    if predictor.space.config != space.config:
        raise PredictnasError(f"{path}: fit on space {predictor.space.config.name!r}, the architecture is in "
                              f"{space.config.name!r}")
    genes = space.encode(arch)[None]
    return {target: float(predictor.predict(genes, target)[0]) for target in predictor.targets}


def load_arch(path: Path, space: SearchSpace) -> Arch:
    """Read and check an ARCH.json (a bare architecture or a ``top.json`` entry)."""
    return space.from_json(read_json(path), source=str(path))


def describe(space: SearchSpace) -> dict:
    c = space.config
    low, high = param_range(space)
    return {
        "space": c.name,
        "dimensions": {
            **{name: {"scope": "global", "choices": list(ch)} for name, ch in zip(GLOBAL_FIELDS, space.global_choices)},
            **{name: {"scope": "per block", "choices": list(ch)} for name, ch in zip(BLOCK_FIELDS, space.block_choices)},
        },
        "fixed": {"n_mels": c.n_mels, "vocab_size": c.vocab_size, "n_intents": c.n_intents,
                  "head_dim": c.head_dim, "group_size": c.group_size, "frontend_subsampling": 4},
        "genes": space.n_genes,
        "architectures_log10": round(space.size_log10(), 2),
        "params": {"min": low, "max": high},
    }


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


def _params_of(space: SearchSpace, arch: Arch) -> int:
    return int(param_counts(space, space.encode(arch)[None])[0])


from .cli_predictor import calibrate_command, fit_command, sample_command  # noqa: E402  (registered after the group exists)
from .cli_search import run_command, search_command, verify_command  # noqa: E402

main.add_command(sample_command)
main.add_command(fit_command)
main.add_command(calibrate_command)
main.add_command(search_command)
main.add_command(verify_command)
main.add_command(run_command)

if __name__ == "__main__":
    sys.exit(main())
