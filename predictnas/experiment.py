"""An experiment's data and presets: which corpus, which space, which training recipe, in which run dir.

The stages share one run directory (``runs/<name>/``). ``train_supernet`` is the supernet stage:
corpus (or user data) -> cached features -> :class:`~predictnas.train.Trainer` -> ``supernet.pt``, whose
metadata carries what running its subnets needs (feature config, sample rate, intents, data hashes).
``load_split`` gives any stage the features of a split for a trained supernet.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from .data.corpus import CORPUS_INFO, SPLITS, CorpusRecipe, build_corpus, default_corpus_root, get_recipe, load_corpus_info
from .data.dataset import FeatureStore, cache_key, epoch_batches
from .data.features import FeatureConfig, SpecAugment
from .data.manifest import Utterance, load_dataset
from .decoding import Decoder, LexiconDecoder, lexicon_of
from .errors import PredictnasError
from . import pretrained
from .space import SPACES
from .supernet import Supernet, load_supernet
from .supernet.subnet import output_lengths
from .rundir import RunDir
from .train import Trainer, TrainConfig, ctc_infeasible, training_device


@dataclass(frozen=True)
class Preset:
    """A named experiment size: corpus preset, search space and training recipe."""

    name: str
    corpus: str
    space: str
    train: TrainConfig
    continues: bool = False  # a later stage: starts from a trained supernet's weights (--init-from)


# the recipe of the later stages, which start from a trained supernet's weights (see "refine" below)
_REFINE = TrainConfig(steps=3000, batch_seconds=40.0, peak_lr=5e-4, warmup_steps=100, distill_ramp_steps=1,
                      frontend_match_weight=1.0, random_subnets=2, subnet_draw="mixed", precision="auto",
                      dropout=0.0, snapshot_every_steps=1000)

PRESETS = {
    # seconds on 2 cores; for tests and smoke runs
    "tiny": Preset("tiny", corpus="tiny", space="speech-tiny",
                   train=TrainConfig(steps=24, batch_seconds=24.0, peak_lr=3e-3, warmup_steps=4, random_subnets=1,
                                     largest_only_steps=4, full_size_steps=8, distill_ramp_steps=4,
                                     spec_augment_from=8, frontend_match_weight=1.0,
                                     checkpoint_every_steps=8)),
    # the default: trains within an hour on 2 CPU cores (the largest alone, full-size variants, then the sandwich).
    # Peak LR 1e-3: the largest trained alone (GPU probe of the first phase, one seed each) reached, after
    # 1,500 steps, 41 % dev WER (quiet home) at 1e-3, 47 % at 5e-4; 77 % at the former 3e-3 without the
    # front-end norm and 96 % with it. SpecAugment from the first step cost 12 points at that length.
    # 2,800 steps, not 2,900: the sandwich's others drawn near the largest cost 2.5x a uniform draw's
    # estimated latency (75 against 31 ms), so a sandwich step about 25 % more; 100 steps fewer keep the
    # hour on the machine class the earlier runs timed (AVX512-BF16).
    # No dropout: the supernet underfits (the largest of a 2,800-step run with dropout 0.1 was at 32.6 %
    # WER on 600 quiet training utterances, 40.6 % on dev), and drawing the masks took 25-35 % of a
    # training step on a 2-core AMD EPYC (0.90 against 0.67 s for the largest, 0.56 against 0.37 s for
    # subnets near it). Without it the run took 42.6 instead of 72.3 minutes there, and its largest
    # reached 37.3 % dev WER on quiet_home.
    "small": Preset("small", corpus="small", space="speech-v1",
                    train=TrainConfig(steps=2800, batch_seconds=40.0, peak_lr=1e-3, warmup_steps=150,
                                      largest_only_steps=700, full_size_steps=1700, distill_ramp_steps=300,
                                      spec_augment_from=1700, frontend_match_weight=1.0,
                                      random_subnets=1, precision="auto", dropout=0.0)),
    # The shipped supernet's recipe: the small recipe for about 2 hours on 2 CPU cores (AVX512-BF16), most
    # of it in the sandwich. The largest leaves the blank-only plateau within 500 steps alone, so the first
    # phases stay short; the long third phase is where the smallest and the random subnets learn (in the
    # small recipe their losses were still falling when its cosine schedule ran out). Snapshots every
    # 1,000 steps give the WER-against-compute curve (tools/train_curve.py).
    "long": Preset("long", corpus="small", space="speech-v1",
                   train=TrainConfig(steps=8000, batch_seconds=40.0, peak_lr=1e-3, warmup_steps=150,
                                     largest_only_steps=800, full_size_steps=2000, distill_ramp_steps=500,
                                     spec_augment_from=2000, frontend_match_weight=1.0,
                                     random_subnets=1, precision="auto", dropout=0.0,
                                     snapshot_every_steps=1000)),
    # A second stage from a trained supernet's weights (train --preset refine --init-from SUPERNET.pt):
    # sandwich steps only, at half the peak learning rate, each with one subnet near the largest and one
    # uniformly scaled like a hand-designed Conformer (train.uniformly_scaled), which the first stage
    # almost never drew.
    "refine": Preset("refine", corpus="small", space="speech-v1", train=_REFINE, continues=True),
    # A third stage (train --preset spread --init-from REFINED.pt): as refine, but the subnet that refine drew
    # near the largest is drawn uniformly from the whole space. After refine the median of 50 uniform draws
    # was still at 49 % dev WER on quiet_home while subnets near the largest were within a few points of it:
    # the search explores the whole space, so the weights must serve all of it.
    "spread": Preset("spread", corpus="small", space="speech-v1",
                     train=dataclasses.replace(_REFINE, subnet_draw="spread"), continues=True),
}
DEFAULT_PRESET = "small"


@dataclass(frozen=True)
class DataSources:
    """Where the utterances come from: the embedded corpus, or user manifests / LibriSpeech dirs."""

    corpus_preset: str = DEFAULT_PRESET
    sample_rate: int = 16000
    corpus_root: Path | None = None
    train: Path | None = None
    dev: Path | None = None
    test: Path | None = None  # optional: held-out speakers for verify and eval --split test
    resample: bool = False


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise PredictnasError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    return PRESETS[name]


def split_utterances(sources: DataSources, progress: bool = True) -> tuple[dict[str, list], dict]:
    """Utterances per split and a description of the data (for the supernet's metadata)."""
    if (sources.train is None) != (sources.dev is None):
        raise PredictnasError("user data needs both --train-data and --dev-data")
    if sources.train is None and sources.test is not None:
        raise PredictnasError("--test-data goes with --train-data and --dev-data (the corpus has its own test split)")
    if sources.train is not None:
        given = {"train": sources.train, "dev": sources.dev, "test": sources.test}
        splits = {split: load_dataset(path) for split, path in given.items() if path is not None}
        # absolute, so later stages find the data from any working directory
        return splits, {"kind": "user", **{split: str(path.resolve()) for split, path in given.items() if path}}
    info = build_corpus(sources.corpus_root or default_corpus_root(),
                        get_recipe(sources.corpus_preset, sample_rate=sources.sample_rate), progress=progress)
    splits = {split: load_dataset(info.manifest(split)) for split in SPLITS}
    return splits, {"kind": "corpus", "path": str(Path(info.path).resolve()), "recipe_hash": info.recipe_hash,
                    "recipe": info.recipe.to_dict(), "intents": list(info.intents)}


def feature_cache_dir(description: dict, run: RunDir) -> Path:
    """Corpus features live in the user cache beside the corpus; a user data set's in its run directory."""
    if description["kind"] == "corpus":
        return default_corpus_root() / "features"
    return run.features


def train_supernet(run: RunDir | str | Path, preset: Preset, sources: DataSources, steps: int | None = None,
                   seed: int | None = None, progress: bool = True, device: str = "cpu",
                   log: Callable[[str], None] = lambda m: print(m, file=sys.stderr),
                   init_from: str | Path | None = None) -> Supernet:
    """Train (or resume training) the supernet of ``preset`` into ``run`` on ``device`` (cpu, cuda or
    auto), from random weights or, with ``init_from``, from those of a trained supernet of the same space;
    returns the trained supernet, on the CPU."""
    run, device = RunDir.of(run), training_device(device)  # refuse an unusable device before any work
    config = dataclasses.replace(preset.train, **{k: v for k, v in (("steps", steps), ("seed", seed)) if v is not None})
    if init_from is not None:  # absolute, so the checkpoint's configuration names it from anywhere
        where = str(init_from)
        config = dataclasses.replace(config, init_from=where if where.startswith("pretrained:") else
                                     str(Path(where).resolve()))
    if preset.continues and not config.init_from:
        raise PredictnasError(f"the {preset.name} preset continues a trained supernet: pass --init-from SUPERNET.pt")
    splits, description = split_utterances(sources, progress)
    features = FeatureConfig(sample_rate=sources.sample_rate)
    cache = feature_cache_dir(description, run)
    train = FeatureStore.build(splits["train"], features, cache, resample=sources.resample, progress=progress)
    if not any(t.numel() for t in train.targets):
        raise PredictnasError("no words to learn: every training transcript is empty once normalised "
                              "(lower-case letters, space and apostrophe)")
    infeasible = ctc_infeasible(torch.tensor([f.shape[0] for f in train.features]), train.targets)
    if infeasible.any():
        rate = int(output_lengths(torch.tensor(round(features.frames_per_second))))
        log(f"warning: {int(infeasible.sum())} of {len(train)} training utterances are too short for their "
            f"transcripts at the model's {rate} output frames per second (CTC needs a frame per character, and "
            "a blank between doubled ones); they teach nothing")
    intents = description.get("intents") or sorted({u.intent for u in splits["train"] if u.intent})
    space = dataclasses.replace(SPACES[preset.space], n_mels=features.n_mels, n_intents=max(1, len(intents)))
    metadata = {"preset": preset.name, "features": features.to_dict(), "sample_rate": features.sample_rate,
                "intents": intents, "data": description, "resample": sources.resample,
                "train_features": cache_key(splits["train"], features)}
    torch.manual_seed(config.seed)  # the initial weights are part of the run's result
    supernet = Supernet(space, dropout=config.dropout, metadata=metadata)
    if config.init_from:
        start = load_supernet(pretrained.resolve_supernet(config.init_from))
        if start.space != space:
            raise PredictnasError(f"--init-from {config.init_from}: a supernet of another space or data "
                                  f"({start.space.name}, {start.space.n_intents} intents)")
        supernet.load_state_dict({k: v.float() for k, v in start.state_dict().items()})
    trainer = Trainer(
        supernet, config,
        batches=lambda epoch, generator: epoch_batches(train, intents, batch_seconds=config.batch_seconds,
                                                       shuffle=True, generator=generator),
        files=run.training, augment=SpecAugment().train(), data_fingerprint=metadata["train_features"],
        frames_per_second=features.frames_per_second, device=device)
    trainer.fit(progress=progress)
    return supernet


def load_split(supernet: Supernet, split: str = "dev", run: RunDir | str | Path | None = None,
               progress: bool = True, data: Path | None = None) -> FeatureStore:
    """Features of a split of the data ``supernet`` was trained on (computed once, then cached: a user data
    set's in ``run``); ``data`` (a JSONL manifest or LibriSpeech folder) replaces the split's utterances,
    e.g. a user's test set."""
    meta = supernet.metadata
    utterances = load_dataset(data) if data is not None else utterances_of(supernet, split, progress)
    features = FeatureConfig.from_dict(meta["features"])
    cache = feature_cache_dir(meta["data"], RunDir.of(run))
    return FeatureStore.build(utterances, features, cache, resample=meta.get("resample", False), progress=progress)


def utterances_of(supernet: Supernet, split: str, progress: bool = True) -> list[Utterance]:
    """The utterances (paths and labels, no features) of a split of the data ``supernet`` was trained on.
    The embedded corpus is synthesized into the user cache first where this machine lacks it (a supernet
    trained elsewhere, such as the shipped one)."""
    meta = supernet.metadata
    if "features" not in meta:
        raise PredictnasError("this supernet carries no data description (was it trained by predictnas train?)")
    description = meta["data"]
    if description["kind"] == "corpus":
        return load_dataset(corpus_of(description, meta.get("sample_rate"), progress).manifest(split))
    if description.get(split):
        return load_dataset(description[split])
    raise PredictnasError(f"this supernet was trained on user data without a {split} set; pass --test-data "
                          f"(a JSONL manifest or LibriSpeech folder of held-out speakers), or use --split dev")


def corpus_of(description: dict, sample_rate: int | None, progress: bool = True):
    """The corpus a supernet was trained on: where it was built, else in this machine's cache, else
    synthesized there again from its recipe (deterministic from the recipe's seed)."""
    where = Path(description["path"])
    for path in (where, default_corpus_root() / where.name):
        if (path / CORPUS_INFO).exists():
            return load_corpus_info(path)
    if "recipe" in description:
        recipe = CorpusRecipe.from_dict(description["recipe"])
    else:  # supernets from before the recipe was recorded: the preset is the folder's prefix
        recipe = get_recipe(where.name.rsplit("-", 1)[0], sample_rate=sample_rate)
    if recipe.recipe_hash != description["recipe_hash"]:
        raise PredictnasError(f"the corpus this supernet was trained on ({where.name}) is not in "
                              f"{default_corpus_root()}, and its recipe is unknown to this predictnas")
    return build_corpus(default_corpus_root(), recipe, progress=progress)


def decoder_for(supernet: Supernet, progress: bool = True) -> Decoder:
    """The decoder every stage scores this supernet's models with: lexicon beam search over the words of
    its training transcripts (see :mod:`predictnas.decoding`)."""
    return LexiconDecoder(lexicon_of(u.text for u in utterances_of(supernet, "train", progress)))


def supernet_file(run: RunDir | str | Path | None = None, path: str | Path | None = None) -> Path:
    """``path`` (a file or ``pretrained:<name>``), else the one ``predictnas train`` wrote into ``run``,
    else the shipped supernet of the default space."""
    if path is not None:
        path = pretrained.resolve_supernet(path)
    else:
        path = RunDir.of(run).supernet
        if not path.exists() and pretrained.artifact("supernet") is not None:
            path = pretrained.artifact("supernet")
    if not path.exists():
        raise PredictnasError(f"{path}: no trained supernet (run `predictnas train` first, or pass --supernet)")
    return path


def load_trained_supernet(run: RunDir | str | Path | None = None, path: str | Path | None = None) -> Supernet:
    """The supernet of :func:`supernet_file`."""
    return load_supernet(supernet_file(run, path))
