"""Cached features of a dataset, and length-bucketed padded batches for training and evaluation.

A :class:`FeatureStore` holds the log-mel features of a fixed list of utterances. They are computed
once (in worker processes, with a progress bar on stderr) and cached in one file whose name carries a
hash of the utterance list, the audio files' sizes and modification times, and the
:class:`FeatureConfig`; a second build with the same inputs loads the file instead. Features are kept
as float16 (half the memory and disk; the normalised values lie within a few units of 0, where
float16 is exact to about 1e-3) and batches are float32.

Batches group utterances of similar length (:func:`make_batches`) so little compute goes to padding.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import sys
from pathlib import Path
from collections.abc import Sequence as SequenceABC
from typing import Iterator, NamedTuple, Sequence

import numpy as np
import torch
import torchaudio
from tqdm import tqdm

from ..errors import PredictnasError
from ..io import atomic_path
from .features import FeatureConfig, log_mel
from .manifest import Utterance, read_audio
from .text import CharTokenizer, normalize

FORMAT_VERSION = 1
STORAGE_DTYPE = torch.float16
BUCKET_FRAMES = 10  # length buckets of batching: 0.1 s at the default hop
_PARALLEL_MIN = 64  # below this many utterances, starting worker processes costs more than it saves


class Example(NamedTuple):
    """One utterance of a store: features ``(frames, n_mels)`` (float16), CTC targets ``(S,)`` int64."""

    features: torch.Tensor
    targets: torch.Tensor
    utterance: Utterance
    index: int


class Batch(NamedTuple):
    """A padded batch. Padding is zero everywhere; lengths say what is real.

    ``intents`` index the caller's intent list (-1: no intent or one not in the list); ``indices`` are
    the examples' positions in their store; ``texts`` are the normalised reference transcripts.
    """

    features: torch.Tensor  # (B, T, n_mels) float32
    feature_lengths: torch.Tensor  # (B,) int64
    targets: torch.Tensor  # (B, S) int64, padded with the blank id 0
    target_lengths: torch.Tensor  # (B,) int64
    intents: torch.Tensor  # (B,) int64
    environments: list[str | None]
    texts: list[str]
    indices: torch.Tensor  # (B,) int64


class FeatureStore:
    """Features and labels of a list of utterances, in the utterances' order.

    Build with :meth:`build` (computes or loads the cache) or :meth:`load` (a cache file). Subsets
    made by :meth:`select` and :meth:`filter_environment` share the parent's feature memory.
    """

    def __init__(self, utterances: Sequence[Utterance], features: Sequence[torch.Tensor], config: FeatureConfig,
                 path: Path | None = None, computed: bool = False):
        if len(utterances) != len(features):
            raise ValueError(f"{len(utterances)} utterances but {len(features)} feature matrices")
        self.utterances: tuple[Utterance, ...] = tuple(utterances)
        self.features: list[torch.Tensor] = list(features)
        self.config = config
        self.path = path  # the cache file, when there is one
        self.computed = computed  # True when this build computed the features, False when it loaded them
        self.texts: list[str] = [normalize(u.text) for u in self.utterances]
        tokenizer = CharTokenizer()
        self.targets: list[torch.Tensor] = [torch.tensor(tokenizer.encode(t), dtype=torch.int64) for t in self.texts]
        self.num_frames = torch.tensor([f.shape[0] for f in self.features], dtype=torch.int64)

    # ---- building, saving, loading --------------------------------------------------------------

    @classmethod
    def build(cls, utterances: Sequence[Utterance], config: FeatureConfig, cache_dir: str | os.PathLike | None,
              *, resample: bool = False, workers: int = 2, progress: bool = True) -> "FeatureStore":
        """Features of ``utterances``, loaded from ``cache_dir`` when cached, else computed and cached there.

        ``cache_dir=None`` computes without caching. Audio at another sample rate than
        ``config.sample_rate`` is an error unless ``resample`` (see :func:`read_audio`).
        """
        if not utterances:
            raise PredictnasError("no utterances to compute features for")
        path = None
        if cache_dir is not None:
            path = Path(cache_dir) / f"features-{cache_key(utterances, config)}.pt"
            if path.is_file():
                try:
                    store = cls.load(path)
                    if store.utterances == tuple(utterances) and store.config == config:
                        return store
                except PredictnasError:
                    pass
                print(f"note: {path} does not match its inputs; recomputing", file=sys.stderr)
        features = _compute_features(utterances, config, resample, workers, progress)
        store = cls(utterances, features, config, path=path, computed=True)
        if path is not None:
            store.save(path)
        return store

    def save(self, path: str | os.PathLike) -> None:
        """Write the store as one file (atomically): features concatenated along time, plus metadata."""
        data = torch.cat(self.features) if self.features else torch.zeros(0, self.config.n_mels)
        payload = {
            "format": FORMAT_VERSION,
            "config": self.config.to_dict(),
            "utterances": [u.to_dict() for u in self.utterances],
            "num_frames": self.num_frames.clone(),
            "data": data.to(STORAGE_DTYPE),
        }
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FeatureStore":
        """Read a file written by :meth:`save`; an unreadable or foreign file is a one-line error."""
        path = Path(path)
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise PredictnasError(f"{path}: no such feature cache") from None
        except Exception as e:  # torch.load raises many types for a damaged file
            raise PredictnasError(f"{path}: not a readable feature cache ({' '.join(str(e).split())[:200]})") from None
        if not isinstance(payload, dict) or payload.get("format") != FORMAT_VERSION:
            raise PredictnasError(f"{path}: not a feature cache of format {FORMAT_VERSION}")
        try:
            config = FeatureConfig.from_dict(payload["config"])
            utterances = [Utterance.from_dict(d) for d in payload["utterances"]]
            num_frames = payload["num_frames"].tolist()
            features = list(torch.split(payload["data"], num_frames)) if num_frames else []
        except (KeyError, TypeError, RuntimeError, AttributeError) as e:
            raise PredictnasError(f"{path}: damaged feature cache ({' '.join(str(e).split())[:200]})") from None
        return cls(utterances, features, config, path=path, computed=False)

    # ---- access ---------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.utterances)

    def __getitem__(self, i: int) -> Example:
        return Example(self.features[i], self.targets[i], self.utterances[i], i)

    @property
    def total_seconds(self) -> float:
        return float(sum(u.duration for u in self.utterances))

    @property
    def environments(self) -> list[str]:
        """The distinct environment names, sorted (utterances without one are not listed)."""
        return sorted({u.environment for u in self.utterances if u.environment is not None})

    @property
    def intents(self) -> list[str]:
        """The distinct intent labels, sorted: a default intent list for :func:`collate`."""
        return sorted({u.intent for u in self.utterances if u.intent is not None})

    def select(self, indices: Sequence[int]) -> "FeatureStore":
        """A store of the given utterances, in the given order (features shared, not copied)."""
        indices = list(indices)
        sub = FeatureStore.__new__(FeatureStore)
        sub.utterances = tuple(self.utterances[i] for i in indices)
        sub.features = [self.features[i] for i in indices]
        sub.config, sub.path, sub.computed = self.config, None, False
        sub.texts = [self.texts[i] for i in indices]
        sub.targets = [self.targets[i] for i in indices]
        sub.num_frames = self.num_frames[torch.as_tensor(indices, dtype=torch.int64)]
        return sub

    def filter_environment(self, environment: str) -> "FeatureStore":
        """The utterances recorded in ``environment``; an environment the store lacks is an error."""
        indices = [i for i, u in enumerate(self.utterances) if u.environment == environment]
        if not indices:
            known = ", ".join(self.environments) or "none"
            raise PredictnasError(f"no utterances in environment {environment!r} (environments: {known})")
        return self.select(indices)

    def by_environment(self) -> dict[str, "FeatureStore"]:
        """One sub-store per environment, keyed by name (utterances without an environment are left out)."""
        return {env: self.filter_environment(env) for env in self.environments}


def cache_key(utterances: Sequence[Utterance], config: FeatureConfig) -> str:
    """16 hex digits identifying the features of ``utterances`` under ``config``.

    The audio files' sizes and modification times are part of it, so replacing a file at the same
    path invalidates the cache.
    """
    h = hashlib.sha256()
    h.update(json.dumps({"format": FORMAT_VERSION, "config": config.to_dict()}, sort_keys=True).encode())
    for u in utterances:
        try:
            st = os.stat(u.audio_filepath)
            stamp = [st.st_size, st.st_mtime_ns]
        except OSError:
            stamp = None  # read_audio reports the missing file when the features are computed
        h.update(json.dumps([u.to_dict(), stamp], sort_keys=True).encode())
    return h.hexdigest()[:16]


def _compute_features(utterances: Sequence[Utterance], config: FeatureConfig, resample: bool, workers: int,
                      progress: bool) -> list[torch.Tensor]:
    jobs = [(u.audio_filepath, config, resample) for u in utterances]
    bar = tqdm(total=len(jobs), desc="features", unit="utt", file=sys.stderr, disable=not progress, leave=False)
    out: list[torch.Tensor] = []
    with bar:
        if workers <= 1 or len(jobs) < _PARALLEL_MIN:
            for job in jobs:
                out.append(_features_of(job))
                bar.update()
        else:
            # fork starts workers in milliseconds; each worker runs single-threaded torch, so there is
            # no oversubscription of the cores and no OpenMP pool carried across the fork.
            ctx = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
            with ctx.Pool(workers, initializer=_init_worker) as pool:
                # numpy, not tensors, cross the process boundary: torch pickles tensors through shared
                # memory file handles, which costs more than the features of a short clip.
                for feats in pool.imap(_numpy_features_of, jobs, chunksize=8):
                    out.append(torch.from_numpy(feats))
                    bar.update()
    return out


def _init_worker() -> None:
    torch.set_num_threads(1)


def _features_of(job: tuple[str, FeatureConfig, bool]) -> torch.Tensor:
    path, config, resample = job
    wav = read_audio(path, config.sample_rate, resample)
    if config.capture_rate and config.capture_rate != config.sample_rate:
        wav = torchaudio.functional.resample(torchaudio.functional.resample(wav, config.sample_rate, config.capture_rate),
                                             config.capture_rate, config.sample_rate)
    return log_mel(wav, config).to(STORAGE_DTYPE)


def _numpy_features_of(job: tuple[str, FeatureConfig, bool]) -> np.ndarray:
    return _features_of(job).numpy()


# ---- batching -----------------------------------------------------------------------------------


def make_batches(store: FeatureStore, *, batch_seconds: float | None = None, batch_size: int | None = None,
                 shuffle: bool = False, generator: torch.Generator | None = None,
                 bucket_frames: int = BUCKET_FRAMES) -> list[list[int]]:
    """Split the store's indices into batches of similar length; every index appears exactly once.

    ``batch_seconds`` bounds the *padded* audio of a batch (batch size times its longest utterance),
    which is what a step costs; ``batch_size`` bounds the number of utterances; give either or both.
    An utterance longer than the budget forms a batch of its own.

    Lengths are rounded up to buckets of ``bucket_frames`` frames and the budget applies to the rounded
    lengths, so the number and sizes of the batches depend only on the store, never on ``shuffle`` or
    ``generator``: every epoch has the same number of steps. Without ``shuffle`` batches go from short
    to long, exactly sorted within buckets; with it, utterances of one bucket are ordered at random (so
    batch membership changes between epochs) and the batch order is shuffled, all drawn from
    ``generator``. Padding costs at most ``bucket_frames`` frames per utterance beyond exact sorting.
    """
    if batch_seconds is None and batch_size is None:
        raise ValueError("give batch_seconds or batch_size")
    if (batch_size is not None and batch_size < 1) or (batch_seconds is not None and batch_seconds <= 0):
        raise ValueError(f"batch_size and batch_seconds must be positive (got {batch_size}, {batch_seconds})")
    lengths = store.num_frames
    n = len(lengths)
    bucketed = -(-lengths // bucket_frames) * bucket_frames
    tiebreak = torch.rand(n, generator=generator, dtype=torch.float64) if shuffle else lengths.to(torch.float64)
    # Two stable sorts: by the tie-break, then by bucket, give bucket-major order.
    order = torch.argsort(tiebreak, stable=True)
    order = order[torch.argsort(bucketed[order], stable=True)].tolist()
    budget = float("inf") if batch_seconds is None else batch_seconds * store.config.frames_per_second
    max_count = batch_size or n
    rounded = bucketed.tolist()
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        # rounded[i] is the batch's longest (rounded) length: the order is non-decreasing in it.
        if current and (len(current) >= max_count or rounded[i] * (len(current) + 1) > budget):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    if shuffle:
        batches = [batches[j] for j in torch.randperm(len(batches), generator=generator).tolist()]
    return batches


class BatchSequence(SequenceABC):
    """The padded batches of one epoch, collated lazily on access (only one batch is in float32 at a time)."""

    def __init__(self, store: FeatureStore, batches: list[list[int]], intents: Sequence[str] = ()):
        self.store, self.batches, self.intents = store, batches, list(intents)

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> Batch:  # type: ignore[override]
        return collate([self.store[j] for j in self.batches[i]], self.intents)


def epoch_batches(store: FeatureStore, intents: Sequence[str] = (), *, batch_seconds: float | None = None,
                  batch_size: int | None = None, shuffle: bool = False,
                  generator: torch.Generator | None = None) -> BatchSequence:
    """The batches of one epoch (see :func:`make_batches`) as a lazy sequence of :class:`Batch`."""
    plan = make_batches(store, batch_seconds=batch_seconds, batch_size=batch_size, shuffle=shuffle,
                        generator=generator)
    return BatchSequence(store, plan, intents)


def collate(examples: Sequence[Example], intents: Sequence[str] = ()) -> Batch:
    """Pad examples into a :class:`Batch`; ``intents`` is the list that intent indices refer to."""
    if not examples:
        raise ValueError("cannot collate an empty batch")
    intent_index = {name: i for i, name in enumerate(intents)}
    b = len(examples)
    feature_lengths = torch.tensor([e.features.shape[0] for e in examples], dtype=torch.int64)
    target_lengths = torch.tensor([e.targets.numel() for e in examples], dtype=torch.int64)
    features = torch.zeros(b, int(feature_lengths.max()), examples[0].features.shape[1], dtype=torch.float32)
    targets = torch.zeros(b, max(int(target_lengths.max()), 1), dtype=torch.int64)
    for row, e in enumerate(examples):
        features[row, : e.features.shape[0]] = e.features
        targets[row, : e.targets.numel()] = e.targets
    return Batch(
        features=features,
        feature_lengths=feature_lengths,
        targets=targets,
        target_lengths=target_lengths,
        intents=torch.tensor([intent_index.get(e.utterance.intent, -1) for e in examples], dtype=torch.int64),
        environments=[e.utterance.environment for e in examples],
        texts=[normalize(e.utterance.text) for e in examples],
        indices=torch.tensor([e.index for e in examples], dtype=torch.int64),
    )


class SpeechBatches:
    """An iterable of padded batches over a store, one epoch per iteration.

    Epoch ``e`` draws its batches from a generator seeded with ``seed + e``, so a run is reproducible
    and can resume at any epoch (:meth:`set_epoch`). ``len()`` is the number of batches per epoch, the
    same for every epoch (see :func:`make_batches`).
    """

    def __init__(self, store: FeatureStore, *, intents: Sequence[str] = (), batch_seconds: float | None = None,
                 batch_size: int | None = None, shuffle: bool = False, seed: int = 0):
        self.store, self.intents = store, list(intents)
        self.batch_seconds, self.batch_size, self.shuffle, self.seed = batch_seconds, batch_size, shuffle, seed
        self.epoch = 0
        self._length = len(self.batches_of(0))  # also validates the batch options now

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches_of(self, epoch: int) -> BatchSequence:
        return epoch_batches(self.store, self.intents, batch_seconds=self.batch_seconds, batch_size=self.batch_size,
                             shuffle=self.shuffle, generator=torch.Generator().manual_seed(self.seed + epoch))

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[Batch]:
        batches = self.batches_of(self.epoch)
        self.epoch += 1
        return iter(batches)
