"""The embedded default corpus: synthesized voice-assistant commands in several acoustic environments.

A :class:`CorpusRecipe` fixes everything about a corpus; :func:`build_corpus` turns it into files under
``root/<preset>-<recipe_hash>/``::

    corpus.json                       recipe, its hash, manifest hashes, intents, voices, statistics
    train.jsonl dev.jsonl test.jsonl  one JSON object per line (keys sorted):
                                      audio_filepath (relative to the manifest's folder), text, duration (s),
                                      intent, speaker (voice name), environment, snr_db, sample_rate
    audio/<split>/<environment>/<split>-<index>.wav   16-bit PCM

Contract:

* every utterance is rendered in every environment of the recipe, so a split's manifest holds each
  utterance once per environment (utterance-major, environments in recipe order);
* splits are by voice *variant*: dev and test voices never occur in train, dev and test are disjoint, and
  no variant (the timbre; the dialect is the accent) is shared between splits; designed variants
  (:mod:`.voice_design`) speak in the training split only, and ``corpus.json`` records their files;
* the same recipe gives byte-identical manifests, whatever the number of workers: all randomness is drawn
  up front from ``recipe.seed`` (:func:`plan_corpus`), each utterance carries its own seed, and synthesis
  itself is deterministic (see :mod:`.synth`);
* a corpus directory exists only once complete: it is built in a hidden temporary sibling and renamed into
  place, and a complete directory is reused without rebuilding.
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import os
import shutil
import sys
import tempfile
import zlib
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import PredictnasError
from ..io import read_json, write_json
from .environments import get_environment
from .grammar import INTENTS, draw_commands, spoken_form
from .synth import DIALECTS, VARIANTS, check_voices, espeak_version, installed_data_path, synthesize, voice_name
from .voice_design import design_voices, voice_data_dirs

SPLITS = ("train", "dev", "test")
CORPUS_INFO = "corpus.json"
FORMAT = "predictnas-corpus"


@dataclass(frozen=True)
class CorpusRecipe:
    """Everything that determines a corpus. Per-split tuples are ordered as :data:`SPLITS`.

    ``utterances`` counts utterances before environments (each is rendered once per environment);
    ``voices`` counts distinct voices of the shipped variants; ``designed_voices`` adds that many voices
    with designed variants (random timbres, :mod:`.voice_design`) to the training split only;
    ``rate_wpm`` and ``pitch`` bound the per-utterance jitter of espeak-ng's speaking rate and base pitch.
    ``version`` changes whenever the generator's output does.
    """

    preset: str
    utterances: tuple[int, int, int]
    voices: tuple[int, int, int]
    seed: int = 0
    sample_rate: int = 16000
    environments: tuple[str, ...] = ("quiet_home", "industrial_warehouse")
    rate_wpm: tuple[int, int] = (140, 210)
    pitch: tuple[int, int] = (30, 70)
    designed_voices: int = 0
    version: int = 1

    def __post_init__(self) -> None:
        if not 8000 <= self.sample_rate <= 22050:
            raise PredictnasError(f"corpus sample rate {self.sample_rate} Hz: choose 8000-22050 "
                                  "(espeak-ng renders at 22050 Hz)")
        if len(self.utterances) != len(SPLITS) or len(self.voices) != len(SPLITS):
            raise PredictnasError(f"recipe {self.preset!r}: give utterances and voices for {', '.join(SPLITS)}")
        if min(self.voices) < 1 or any(u < v for u, v in zip(self.utterances, self.voices)):
            raise PredictnasError(f"recipe {self.preset!r}: every split needs at least one voice and at least "
                                  "one utterance per voice")
        if self.designed_voices < 0 or self.utterances[0] < self.voices[0] + self.designed_voices:
            raise PredictnasError(f"recipe {self.preset!r}: need 0 or more designed voices and at least one "
                                  "training utterance per voice")
        if not self.environments or len(set(self.environments)) != len(self.environments):
            raise PredictnasError(f"recipe {self.preset!r}: give distinct environments")
        for name in self.environments:
            get_environment(name)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if not d["designed_voices"]:
            del d["designed_voices"]  # so recipes from before the option keep their hash (and their corpus)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "CorpusRecipe":
        known = {f.name for f in fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in known})

    @property
    def recipe_hash(self) -> str:
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    @property
    def dirname(self) -> str:
        return f"{self.preset}-{self.recipe_hash}"


PRESETS: dict[str, CorpusRecipe] = {
    # For tests: 44 voices (8 of them designed), 360 utterances, builds in seconds.
    "tiny": CorpusRecipe("tiny", utterances=(240, 60, 60), voices=(24, 6, 6), designed_voices=8),
    # The default: a few hours of audio across the environments, builds in minutes on 2 cores. 800 training
    # voices, 640 of them designed (see voice_design for why, and for what they changed: nothing measurable
    # at this preset's training length).
    "small": CorpusRecipe("small", utterances=(4800, 300, 300), voices=(160, 24, 24), designed_voices=640),
}
DEFAULT_PRESET = "small"


def get_recipe(preset: str = DEFAULT_PRESET, *, sample_rate: int | None = None,
               seed: int | None = None) -> CorpusRecipe:
    """A preset recipe, optionally at another sample rate or seed (which gives another corpus)."""
    if preset not in PRESETS:
        raise PredictnasError(f"unknown corpus preset {preset!r}; known: {', '.join(PRESETS)}")
    changes = {k: v for k, v in (("sample_rate", sample_rate), ("seed", seed)) if v is not None}
    return replace(PRESETS[preset], **changes)


def default_corpus_root() -> Path:
    """The user cache's corpus folder (see :mod:`predictnas.cache`)."""
    from ..cache import corpus_root

    return corpus_root()


@dataclass(frozen=True)
class PlannedUtterance:
    """One planned utterance: what to say, with which voice, and the seed of everything random in it."""

    split: str
    index: int
    text: str
    intent: str
    voice: str
    rate_wpm: int
    pitch: int
    lead_s: float  # silence before the speech
    tail_s: float  # silence after it, where the reverberation decays
    seed: int

    @property
    def uid(self) -> str:
        return f"{self.split}-{self.index:05d}"


def _split_variants(recipe: CorpusRecipe, rng: np.random.Generator) -> list[list[str]]:
    """Partition the variants in proportion to the voice counts, each group big enough for its voices."""
    variants = [VARIANTS[i] for i in rng.permutation(len(VARIANTS))]
    need = [math.ceil(v / len(DIALECTS)) for v in recipe.voices]
    sizes = [max(n, round(len(VARIANTS) * v / sum(recipe.voices))) for n, v in zip(need, recipe.voices)]
    sizes[0] = len(VARIANTS) - sum(sizes[1:])
    if sizes[0] < need[0]:
        raise PredictnasError(f"recipe {recipe.preset!r}: too many voices for {len(VARIANTS)} variants")
    bounds = np.cumsum([0] + sizes)
    return [variants[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def designed_voices(recipe: CorpusRecipe) -> tuple[list[str], dict[str, str]]:
    """The recipe's designed training voices (``dialect+variant`` names) and their variant files by name.

    Drawn from their own stream of ``recipe.seed``, so the other draws do not depend on them."""
    rng = np.random.default_rng([recipe.seed, 1])
    designs = design_voices(recipe.designed_voices, rng)
    return [voice_name(DIALECTS[rng.integers(len(DIALECTS))], name) for name in designs], designs


def plan_corpus(recipe: CorpusRecipe) -> list[PlannedUtterance]:
    """Every utterance of the corpus, split by split, drawn from ``recipe.seed`` alone."""
    rng = np.random.default_rng(recipe.seed)
    plan = []
    for split, group, n_utts, n_voices in zip(SPLITS, _split_variants(recipe, rng), recipe.utterances,
                                             recipe.voices):
        candidates = [voice_name(d, v) for v in group for d in DIALECTS]
        voices = [candidates[i] for i in rng.choice(len(candidates), size=n_voices, replace=False)]
        if split == "train":
            voices += designed_voices(recipe)[0]
        # Every voice speaks about equally often, in a shuffled order.
        assigned = rng.permutation(np.arange(n_utts) % len(voices))
        commands = draw_commands(rng, n_utts)
        rates = rng.integers(recipe.rate_wpm[0], recipe.rate_wpm[1] + 1, size=n_utts)
        pitches = rng.integers(recipe.pitch[0], recipe.pitch[1] + 1, size=n_utts)
        leads = np.round(rng.uniform(0.1, 0.4, size=n_utts), 3)
        tails = np.round(rng.uniform(0.3, 0.6, size=n_utts), 3)
        seeds = rng.integers(0, 2**63, size=n_utts)
        for i, (text, intent) in enumerate(commands):
            plan.append(PlannedUtterance(split, i, text, intent, voices[assigned[i]], int(rates[i]),
                                         int(pitches[i]), float(leads[i]), float(tails[i]), int(seeds[i])))
    return plan


def clean_audio(utt: PlannedUtterance, sample_rate: int, voice_data: str | None = None) -> np.ndarray:
    """The utterance's dry speech with its leading and trailing silence, float32 at ``sample_rate``.

    ``voice_data``: an espeak-ng data folder holding the corpus's designed variants, if it has any."""
    speech = synthesize(spoken_form(utt.text), utt.voice, rate_wpm=utt.rate_wpm, pitch=utt.pitch,
                        seed=utt.seed & 0xFFFFFFFF, sample_rate=sample_rate, data_dir=voice_data)
    if not np.any(speech):
        raise PredictnasError(f"espeak-ng produced silence for {utt.text!r} with voice {utt.voice!r}")
    lead, tail = (np.zeros(round(s * sample_rate), np.float32) for s in (utt.lead_s, utt.tail_s))
    return np.concatenate([lead, speech, tail])


def environment_rng(utt: PlannedUtterance, environment: str) -> np.random.Generator:
    """The generator that renders ``utt`` in ``environment``; keyed by name, so adding an environment to a
    recipe leaves the renderings in the others unchanged."""
    return np.random.default_rng([utt.seed, zlib.crc32(environment.encode())])


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)  # the pool already uses every core


def _render_utterance(task: tuple[PlannedUtterance, int, tuple[str, ...], str, str | None]) -> list[dict[str, Any]]:
    import soundfile

    utt, sample_rate, environments, out_dir, voice_data = task
    clean = clean_audio(utt, sample_rate, voice_data)
    rows = []
    for name in environments:
        noisy, snr_db = get_environment(name).render(clean, sample_rate, environment_rng(utt, name))
        relative = f"audio/{utt.split}/{name}/{utt.uid}.wav"
        path = Path(out_dir) / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(path, noisy, sample_rate, subtype="PCM_16", format="WAV")
        rows.append({"audio_filepath": relative, "text": utt.text, "duration": round(len(noisy) / sample_rate, 4),
                     "intent": utt.intent, "speaker": utt.voice, "environment": name, "snr_db": snr_db,
                     "sample_rate": sample_rate})
    return rows


def _render_all(plan: list[PlannedUtterance], recipe: CorpusRecipe, out_dir: Path, voice_data: dict[str, str],
                workers: int, progress: bool):
    """``voice_data``: the espeak-ng data folder of each designed voice (others use the installed data)."""
    from tqdm import tqdm

    tasks = [(utt, recipe.sample_rate, recipe.environments, str(out_dir), voice_data.get(utt.voice)) for utt in plan]
    bar = tqdm(total=len(tasks), desc=f"corpus {recipe.preset}", unit="utt", file=sys.stderr,
               disable=not progress, dynamic_ncols=True)
    with bar:
        if workers <= 0:
            for task in tasks:
                yield _render_utterance(task)
                bar.update()
            return
        # spawn, not fork: the caller may hold torch threads, which do not survive a fork.
        with multiprocessing.get_context("spawn").Pool(workers, initializer=_init_worker) as pool:
            for rows in pool.imap(_render_utterance, tasks, chunksize=8):
                yield rows
                bar.update()


def _write_corpus(out_dir: Path, recipe: CorpusRecipe, workers: int, progress: bool) -> None:
    check_voices()
    plan = plan_corpus(recipe)
    designs = designed_voices(recipe)[1]
    rows: dict[str, list[dict[str, Any]]] = {split: [] for split in SPLITS}
    with tempfile.TemporaryDirectory(prefix="espeak-voices-") as scratch:
        voice_data = {voice_name(d, name): str(path) for name, path in
                      voice_data_dirs(installed_data_path(), designs, scratch).items() for d in DIALECTS}
        for utt, utt_rows in zip(plan, _render_all(plan, recipe, out_dir, voice_data, workers, progress)):
            rows[utt.split].extend(utt_rows)
    manifest_hashes = {}
    for split in SPLITS:
        data = "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows[split]).encode()
        (out_dir / f"{split}.jsonl").write_bytes(data)
        manifest_hashes[split] = hashlib.sha256(data).hexdigest()
    voices = {split: sorted({u.voice for u in plan if u.split == split}) for split in SPLITS}
    write_json(out_dir / CORPUS_INFO, {
        "format": FORMAT, "recipe": recipe.to_dict(), "recipe_hash": recipe.recipe_hash,
        "manifests": {split: {"path": f"{split}.jsonl", "sha256": manifest_hashes[split]} for split in SPLITS},
        "intents": list(INTENTS), "voices": voices, "designed_variants": designs,
        "stats": _statistics(rows, recipe, voices),
        "environments": {name: get_environment(name).description for name in recipe.environments},
        "synthesizer": {"engine": "espeak-ng", "version": espeak_version()},
    })


def _statistics(rows, recipe: CorpusRecipe, voices) -> dict[str, Any]:
    def summary(selected):
        return {"utterances": len(selected), "hours": round(sum(r["duration"] for r in selected) / 3600, 4)}

    stats: dict[str, Any] = {}
    for split in SPLITS:
        stats[split] = summary(rows[split]) | {"voices": len(voices[split]), "environments": {
            name: summary([r for r in rows[split] if r["environment"] == name]) for name in recipe.environments}}
    every = [r for split in SPLITS for r in rows[split]]
    stats["total"] = summary(every) | {"voices": sum(len(v) for v in voices.values()), "environments": {
        name: summary([r for r in every if r["environment"] == name]) for name in recipe.environments}}
    return stats


@dataclass(frozen=True)
class CorpusInfo:
    """A complete corpus on disk, as described by its ``corpus.json``."""

    path: Path
    recipe: CorpusRecipe
    recipe_hash: str
    manifest_hashes: dict[str, str]
    intents: tuple[str, ...]
    voices: dict[str, tuple[str, ...]]
    stats: dict[str, Any]

    def manifest(self, split: str) -> Path:
        if split not in SPLITS:
            raise PredictnasError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
        return self.path / f"{split}.jsonl"


def load_corpus_info(path: str | os.PathLike) -> CorpusInfo:
    """Read a corpus directory and check it is complete: ``corpus.json`` parses and every manifest is
    present with its recorded hash. Anything else is a one-line PredictnasError."""
    path = Path(path)
    info = read_json(path / CORPUS_INFO)
    try:
        if info["format"] != FORMAT:
            raise KeyError("format")
        recipe = CorpusRecipe.from_dict(info["recipe"])
        hashes = {split: info["manifests"][split]["sha256"] for split in SPLITS}
        result = CorpusInfo(path, recipe, info["recipe_hash"], hashes, tuple(info["intents"]),
                            {s: tuple(v) for s, v in info["voices"].items()}, info["stats"])
    except (KeyError, TypeError) as e:
        raise PredictnasError(f"{path / CORPUS_INFO}: not a corpus description (missing {e})") from None
    if result.recipe_hash != recipe.recipe_hash:
        raise PredictnasError(f"{path}: recipe hash {result.recipe_hash} does not match its recipe")
    for split, expected in hashes.items():
        try:
            actual = hashlib.sha256(result.manifest(split).read_bytes()).hexdigest()
        except OSError:
            raise PredictnasError(f"{path}: incomplete corpus, {split}.jsonl is missing") from None
        if actual != expected:
            raise PredictnasError(f"{path}: {split}.jsonl does not match the hash in {CORPUS_INFO}")
    return result


def _remove_stale_partials(root: Path, name: str) -> None:
    """Delete temporary build folders of ``name`` left by builders that no longer run (killed builds)."""
    for partial in root.glob(f".{name}.partial-*"):
        try:
            pid = int(partial.name.split(".partial-")[1].split("-")[0])
            os.kill(pid, 0)
        except (ValueError, IndexError, ProcessLookupError):
            shutil.rmtree(partial, ignore_errors=True)
        except PermissionError:
            pass  # alive, owned by someone else


def build_corpus(root: str | os.PathLike | None = None, recipe: CorpusRecipe | None = None, *,
                 workers: int | None = None, progress: bool = True) -> CorpusInfo:
    """Build the corpus of ``recipe`` (default: the ``small`` preset) under ``root`` (default:
    :func:`default_corpus_root`), or return it unchanged if a complete one is already there.

    ``workers`` synthesis processes (default: up to 2); 0 renders in this process. A progress bar goes
    to stderr unless ``progress`` is false.
    """
    root = Path(root) if root is not None else default_corpus_root()
    recipe = recipe if recipe is not None else get_recipe()
    final = root / recipe.dirname
    if final.exists():
        try:
            info = load_corpus_info(final)
            if info.recipe == recipe:
                return info
        except PredictnasError:
            pass  # incomplete or damaged: build it again
    root.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(root, final.name)
    workers = min(2, os.cpu_count() or 1) if workers is None else workers
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{final.name}.partial-{os.getpid()}-"))
    os.chmod(tmp, 0o755)  # mkdtemp's 0700 would make the finished corpus private
    try:
        _write_corpus(tmp, recipe, workers, progress)
        if final.exists():
            shutil.rmtree(final)
        try:
            os.rename(tmp, final)
        except OSError:
            pass  # another process finished the same corpus first; its copy is checked below
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return load_corpus_info(final)
