"""User datasets: utterance records, JSONL manifests, the LibriSpeech layout, and reading audio.

Two layouts are accepted (see :func:`load_dataset`):

* NeMo-style JSONL manifests, one JSON object per line with ``audio_filepath``, ``text`` and
  ``duration`` (seconds), and optionally ``intent``, ``speaker``, ``environment``, ``snr_db`` and
  ``sample_rate``; other keys are ignored. Relative audio paths are relative to the manifest's folder.
* The LibriSpeech tree ``<root>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt`` whose lines are
  ``<speaker>-<chapter>-<utterance> TRANSCRIPT``, beside ``<speaker>-<chapter>-<utterance>.flac``.

Every loader returns :class:`Utterance` records with absolute audio paths and normalised transcripts
(:func:`predictnas.data.text.normalize`), and fails with a one-line :class:`PredictnasError` that names
the file (and line) at fault.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import soundfile as sf
import torch
import torchaudio

from ..errors import PredictnasError, one_line
from ..io import atomic_path
from .text import normalize

AUDIO_SUFFIXES = (".flac", ".wav")  # LibriSpeech ships FLAC; a WAV conversion of the tree is accepted too
_OPTIONAL_STR = ("intent", "speaker", "environment")


@dataclass(frozen=True)
class Utterance:
    """One recording and its labels. ``audio_filepath`` is absolute; ``text`` is normalised;
    ``duration`` is in seconds. ``environment`` names the acoustic condition (for per-environment
    evaluation) and ``snr_db`` the signal-to-noise ratio it was mixed at, when known."""

    audio_filepath: str
    text: str
    duration: float
    intent: str | None = None
    speaker: str | None = None
    environment: str | None = None
    snr_db: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Utterance":
        return cls(**d)


def load_dataset(path: str | os.PathLike) -> list[Utterance]:
    """Load a ``.jsonl`` manifest or a LibriSpeech-layout directory, chosen by what ``path`` is."""
    p = Path(path)
    if p.is_dir():
        return load_librispeech(p)
    if p.is_file():
        if p.suffix.lower() in (".jsonl", ".json"):
            return load_jsonl_manifest(p)
        raise PredictnasError(f"{p}: not a dataset (expected a .jsonl manifest or a LibriSpeech directory)")
    raise PredictnasError(f"{p}: no such file or directory")


def load_jsonl_manifest(path: str | os.PathLike) -> list[Utterance]:
    """Parse a JSONL manifest; relative audio paths resolve against the manifest's directory.

    Blank lines are skipped. A line that is not a JSON object, lacks a required key, has a value of the
    wrong type or names an audio file that does not exist is an error naming ``<file>:<line>``.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise PredictnasError(f"{path}: cannot read manifest ({getattr(e, 'strerror', None) or e})") from None
    base = path.resolve().parent
    utterances = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise PredictnasError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None
        utterances.append(_utterance_from_record(record, base, where))
    if not utterances:
        raise PredictnasError(f"{path}: empty manifest (no utterances)")
    return utterances


def _utterance_from_record(record: Any, base: Path, where: str) -> Utterance:
    if not isinstance(record, dict):
        raise PredictnasError(f"{where}: expected a JSON object, got {type(record).__name__}")
    missing = [k for k in ("audio_filepath", "text", "duration") if k not in record]
    if missing:
        raise PredictnasError(f"{where}: missing key {', '.join(repr(k) for k in missing)}")
    audio, text, duration = record["audio_filepath"], record["text"], record["duration"]
    if not isinstance(audio, str) or not audio:
        raise PredictnasError(f"{where}: 'audio_filepath' must be a non-empty string")
    if not isinstance(text, str):
        raise PredictnasError(f"{where}: 'text' must be a string")
    if not _is_number(duration) or not math.isfinite(duration) or duration < 0:
        raise PredictnasError(f"{where}: 'duration' must be a non-negative number of seconds, got {duration!r}")
    optional: dict[str, Any] = {}
    for key in _OPTIONAL_STR:
        value = record.get(key)
        if value is not None and not isinstance(value, (str, int)):
            raise PredictnasError(f"{where}: {key!r} must be a string, got {value!r}")
        optional[key] = None if value is None else str(value)
    snr = record.get("snr_db")
    if snr is not None and not _is_number(snr):
        raise PredictnasError(f"{where}: 'snr_db' must be a number, got {snr!r}")
    rate = record.get("sample_rate")
    if rate is not None and (not isinstance(rate, int) or isinstance(rate, bool) or rate <= 0):
        raise PredictnasError(f"{where}: 'sample_rate' must be a positive integer, got {rate!r}")
    audio_path = Path(audio).expanduser()
    audio_path = audio_path if audio_path.is_absolute() else base / audio_path
    if not audio_path.is_file():
        raise PredictnasError(f"{where}: audio file not found: {audio_path}")
    return Utterance(str(audio_path.absolute()), normalize(text), float(duration), optional["intent"],
                     optional["speaker"], optional["environment"], None if snr is None else float(snr))


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def write_jsonl_manifest(path: str | os.PathLike, utterances: Iterable[Utterance]) -> None:
    """Write utterances as a JSONL manifest (atomically) that :func:`load_jsonl_manifest` reads back.

    Audio paths under the manifest's folder are written relative to it, so the folder can be moved.
    """
    path = Path(path)
    base = path.absolute().parent
    lines = []
    for u in utterances:
        record = {k: v for k, v in u.to_dict().items() if v is not None}
        audio = Path(u.audio_filepath)
        if audio.is_relative_to(base):
            record["audio_filepath"] = audio.relative_to(base).as_posix()
        lines.append(json.dumps(record, sort_keys=True, ensure_ascii=False))
    with atomic_path(path) as tmp:
        tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def load_librispeech(root: str | os.PathLike) -> list[Utterance]:
    """Load every ``*.trans.txt`` under ``root`` (a split such as ``dev-clean``, or a folder of splits).

    Durations come from the audio headers; the speaker is the first field of the utterance id.
    Utterances are sorted by id. A missing audio file or a malformed transcript line is an error
    naming ``<trans.txt>:<line>``.
    """
    root = Path(root)
    if not root.is_dir():
        raise PredictnasError(f"{root}: not a directory")
    transcripts = sorted(root.rglob("*.trans.txt"))
    if not transcripts:
        raise PredictnasError(f"{root}: no LibriSpeech transcripts (*.trans.txt) found")
    utterances = []
    for trans in transcripts:
        try:
            lines = trans.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise PredictnasError(f"{trans}: cannot read ({getattr(e, 'strerror', None) or e})") from None
        folder = trans.absolute().parent
        for lineno, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"{trans}:{lineno}"
            utt_id, _, text = line.strip().partition(" ")
            parts = utt_id.split("-")
            if len(parts) != 3 or not all(parts):
                raise PredictnasError(f"{where}: expected '<speaker>-<chapter>-<utterance> TRANSCRIPT', "
                                      f"got {line.strip()[:60]!r}")
            audio = next((folder / (utt_id + s) for s in AUDIO_SUFFIXES if (folder / (utt_id + s)).is_file()), None)
            if audio is None:
                raise PredictnasError(f"{where}: audio file not found: {folder / (utt_id + AUDIO_SUFFIXES[0])}")
            utterances.append(Utterance(str(audio), normalize(text), _audio_duration(audio), speaker=parts[0]))
    if not utterances:
        raise PredictnasError(f"{root}: the LibriSpeech transcripts list no utterances")
    return utterances


def _audio_duration(path: Path) -> float:
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise PredictnasError(f"{path}: cannot read audio ({one_line(e)})") from None
    return info.frames / info.samplerate


def read_audio(path: str | os.PathLike, sample_rate: int, resample: bool = False) -> torch.Tensor:
    """Read a sound file as a float32 mono waveform ``(samples,)`` in [-1, 1] at ``sample_rate`` Hz.

    Channels are averaged. Audio at another rate is an error that names both rates, unless
    ``resample`` is true, in which case it is resampled (``torchaudio.functional.resample``). An
    unreadable, empty or non-finite file is a one-line PredictnasError.
    """
    if not os.path.isfile(path):
        raise PredictnasError(f"{path}: no such audio file")  # libsndfile would only say "System error"
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError) as e:
        raise PredictnasError(f"{path}: cannot read audio ({one_line(e)})") from None
    if data.size == 0:
        raise PredictnasError(f"{path}: audio file contains no samples")
    mono = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1, dtype=np.float32)
    if not np.isfinite(mono).all():
        raise PredictnasError(f"{path}: audio contains NaN or infinite samples")
    wav = torch.from_numpy(np.ascontiguousarray(mono))
    if rate != sample_rate:
        if not resample:
            raise PredictnasError(f"{path}: sample rate {rate} Hz, but the experiment runs at {sample_rate} Hz "
                                  f"(pass --resample to convert)")
        wav = torchaudio.functional.resample(wav, rate, sample_rate)
    # Float files may exceed full scale and resampling overshoots slightly; the contract is [-1, 1].
    return wav.clamp_(-1.0, 1.0)
