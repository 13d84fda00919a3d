"""An experiment's data and presets: which corpus, which space, which training recipe, in which run dir.

The stages share one run directory (``runs/<name>/``). ``train_supernet`` is the supernet stage:
corpus (or user data) -> cached features -> :class:`~predictnas.train.Trainer` -> ``supernet.pt``, whose
metadata carries what running its subnets needs (feature config, sample rate, intents, data hashes).
``load_split`` gives any stage the features of a split for a trained supernet.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from .data.corpus import SPLITS, build_corpus, default_corpus_root, get_recipe, load_corpus_info
from .data.dataset import FeatureStore, cache_key, epoch_batches
from .data.features import FeatureConfig, SpecAugment
from .data.manifest import Utterance, load_dataset
from .decoding import Decoder, LexiconDecoder, lexicon_of
from .errors import PredictnasError
from .space import SPACES
from .supernet import Supernet, load_supernet
from .train import SUPERNET, Trainer, TrainConfig, training_device


@dataclass(frozen=True)
class Preset:
    """A named experiment size: corpus preset, search space and training recipe."""

    name: str
    corpus: str
    space: str
    train: TrainConfig


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
    resample: bool = False


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise PredictnasError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    return PRESETS[name]


def split_utterances(sources: DataSources) -> tuple[dict[str, list], dict]:
    """Utterances per split and a description of the data (for the supernet's metadata)."""
    if (sources.train is None) != (sources.dev is None):
        raise PredictnasError("user data needs both --train-data and --dev-data")
    if sources.train is not None:
        splits = {"train": load_dataset(sources.train), "dev": load_dataset(sources.dev)}
        return splits, {"kind": "user", "train": str(sources.train.resolve()), "dev": str(sources.dev.resolve())}
    info = build_corpus(sources.corpus_root or default_corpus_root(),
                        get_recipe(sources.corpus_preset, sample_rate=sources.sample_rate))
    splits = {split: load_dataset(info.manifest(split)) for split in SPLITS}
    # absolute, so later stages find the data from any working directory
    return splits, {"kind": "corpus", "path": str(Path(info.path).resolve()), "recipe_hash": info.recipe_hash,
                    "intents": list(info.intents)}


def feature_cache_dir(description: dict, run_dir: Path) -> Path:
    if description["kind"] == "corpus":
        return Path(description["path"]).parent / "features"
    return run_dir / "features"


def train_supernet(run_dir: str | Path, preset: Preset, sources: DataSources, steps: int | None = None,
                   seed: int | None = None, progress: bool = True, device: str = "cpu") -> Supernet:
    """Train (or resume training) the supernet of ``preset`` in ``run_dir`` on ``device`` (cpu, cuda or
    auto); returns the trained supernet, on the CPU."""
    run_dir, device = Path(run_dir), training_device(device)  # refuse an unusable device before any work
    config = dataclasses.replace(preset.train, **{k: v for k, v in (("steps", steps), ("seed", seed)) if v is not None})
    splits, description = split_utterances(sources)
    features = FeatureConfig(sample_rate=sources.sample_rate)
    cache = feature_cache_dir(description, run_dir)
    train = FeatureStore.build(splits["train"], features, cache, resample=sources.resample, progress=progress)
    intents = description.get("intents") or sorted({u.intent for u in splits["train"] if u.intent})
    space = dataclasses.replace(SPACES[preset.space], n_mels=features.n_mels, n_intents=max(1, len(intents)))
    metadata = {"preset": preset.name, "features": features.to_dict(), "sample_rate": features.sample_rate,
                "intents": intents, "data": description, "resample": sources.resample,
                "train_features": cache_key(splits["train"], features)}
    torch.manual_seed(config.seed)  # the initial weights are part of the run's result
    supernet = Supernet(space, dropout=config.dropout, metadata=metadata)
    trainer = Trainer(
        supernet, config,
        batches=lambda epoch, generator: epoch_batches(train, intents, batch_seconds=config.batch_seconds,
                                                       shuffle=True, generator=generator),
        run_dir=run_dir, augment=SpecAugment().train(), data_fingerprint=metadata["train_features"],
        frames_per_second=features.frames_per_second, device=device)
    trainer.fit(progress=progress)
    return supernet


def load_split(supernet: Supernet, split: str = "dev", run_dir: str | Path | None = None,
               progress: bool = True) -> FeatureStore:
    """Features of a split of the data ``supernet`` was trained on (computed once, then cached)."""
    meta = supernet.metadata
    utterances = utterances_of(supernet, split)
    features = FeatureConfig.from_dict(meta["features"])
    cache = feature_cache_dir(meta["data"], Path(run_dir or "."))
    return FeatureStore.build(utterances, features, cache, resample=meta.get("resample", False), progress=progress)


def utterances_of(supernet: Supernet, split: str) -> list[Utterance]:
    """The utterances (paths and labels, no features) of a split of the data ``supernet`` was trained on."""
    meta = supernet.metadata
    if "features" not in meta:
        raise PredictnasError("this supernet carries no data description (was it trained by predictnas train?)")
    description = meta["data"]
    if description["kind"] == "corpus":
        path = Path(description["path"])
        if not path.exists():  # the cache moved: look for the same recipe in this machine's cache
            path = default_corpus_root() / path.name
        return load_dataset(load_corpus_info(path).manifest(split))
    if split in ("train", "dev"):
        return load_dataset(description[split])
    raise PredictnasError(f"split {split!r} is unknown for user data; use dev")


def decoder_for(supernet: Supernet) -> Decoder:
    """The decoder every stage scores this supernet's models with: lexicon beam search over the words of
    its training transcripts (see :mod:`predictnas.decoding`)."""
    return LexiconDecoder(lexicon_of(u.text for u in utterances_of(supernet, "train")))


def load_trained_supernet(run_dir: str | Path | None = None, path: str | Path | None = None) -> Supernet:
    """The supernet at ``path``, or the one ``predictnas train`` wrote into ``run_dir``."""
    path = Path(path) if path is not None else Path(run_dir or "runs/default") / SUPERNET
    if not path.exists():
        raise PredictnasError(f"{path}: no trained supernet (run `predictnas train` first, or pass --supernet)")
    return load_supernet(path)
