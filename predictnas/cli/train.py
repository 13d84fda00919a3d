"""Commands of the supernet stage: ``corpus`` (the embedded data), ``train`` and ``eval`` (one subnet's
errors with the supernet's weights)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..space import SearchSpace
from .options import TRAINING_PRESETS, data_options, no_progress_option, run_dir_option


@click.command("corpus")
@click.option("--preset", type=click.Choice(["tiny", "small"]), default="small", show_default=True,
              help="tiny: seconds to build (tests); small: a few hours of audio (the default experiment).")
@click.option("--sample-rate", type=int, default=16000, show_default=True, help="Rate the audio is written at.")
@click.option("--seed", type=int, default=None, help="Recipe seed (default: the preset's).")
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Cache folder (default: the user cache's corpus folder, see predictnas.cache).")
@no_progress_option
def corpus_command(preset: str, sample_rate: int, seed: int | None, root: Path | None, no_progress: bool) -> None:
    """Synthesize (or reuse) the embedded voice-command corpus in its acoustic environments."""
    from ..data.corpus import build_corpus, default_corpus_root, get_recipe

    info = build_corpus(root or default_corpus_root(), get_recipe(preset, sample_rate=sample_rate, seed=seed),
                        progress=not no_progress)
    click.echo(f"corpus {info.path} (recipe {info.recipe_hash}, {len(info.intents)} intents, "
               f"{info.recipe.sample_rate} Hz)")
    for split in ("train", "dev", "test"):
        st = info.stats[split]
        envs = ", ".join(f"{name} {e['hours']:.2f} h" for name, e in st["environments"].items())
        click.echo(f"  {split:<5} {st['utterances']:>6} utterances, {st['voices']:>3} voices, {st['hours']:.2f} h ({envs})")


@click.command("train")
@click.option("--preset", type=click.Choice(TRAINING_PRESETS), default="small", show_default=True,
              help="Corpus, search space and training recipe (long, about 2 h, then refine --init-from it, about 1 h: "
                   "the shipped supernet's two stages; spread --init-from a refined one: a third stage for the "
                   "whole space).")
@run_dir_option()
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
    from ..experiment import DataSources, get_preset, train_supernet
    from ..io import read_json
    from ..rundir import RunDir

    sources = DataSources(corpus_preset=get_preset(preset).corpus, sample_rate=sample_rate, train=train_data,
                          dev=dev_data, test=test_data, resample=resample)
    run = RunDir(run_dir)
    train_supernet(run, get_preset(preset), sources, steps=steps, seed=seed, device=device,
                   progress=not no_progress, init_from=init_from)
    summary = read_json(run.training.summary)
    click.echo(f"wrote {run.supernet} ({summary['steps']} steps, {summary['wall_seconds'] / 60:.1f} min)")


@click.command("eval")
@click.argument("arch_path", metavar="ARCH.json", type=click.Path(dir_okay=False, path_type=Path))
@run_dir_option()
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
    from ..data.dataset import epoch_batches
    from ..data.text import CharTokenizer
    from ..decoding import GreedyDecoder, describe
    from ..evaluate import bind, evaluate
    from ..experiment import decoder_for, load_split, load_trained_supernet

    supernet = load_trained_supernet(run_dir, supernet_path)
    arch = SearchSpace(supernet.space).load_arch(arch_path)
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
