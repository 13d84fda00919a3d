"""Speech synthesis with espeak-ng, loaded from the ``espeakng-loader`` wheel through ctypes.

A *voice* is an English dialect combined with a voice variant, named as espeak-ng spells it:
``"en-us+Annie"``. :data:`DIALECTS` and :data:`VARIANTS` are fixed here rather than listed from the data
folder, so the voice pool (and with it every corpus) does not change when a wheel adds voices.

Contract of :func:`synthesize`: the same arguments give the same samples, in any process and whatever was
synthesized before. espeak-ng keeps state between utterances in static variables (pitch flutter phase,
gain control, echo buffer) and seeds its breath noise from the clock, so the library is loaded afresh
for every utterance (``dlopen``/``dlclose``, about 3 ms) and both its generator and libc's ``rand()``
(used by the Klatt voices) are seeded from the utterance's seed.

espeak-ng is not thread-safe and holds process-global state: synthesize from one thread per process and
use worker processes, not threads, for parallel synthesis.
"""

from __future__ import annotations

import ctypes
import os
import threading
from functools import lru_cache

import numpy as np

from ..errors import PredictnasError

NATIVE_RATE = 22050  # espeak-ng's output rate (what espeak_Initialize returns)

# English dialects of espeak-ng, by voice file name ("en" is British English).
DIALECTS = ("en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-us-nyc",
            "en-029")
# Variants of voices/!v/, in the data folder's order. Left out: "Demonic" (distorted beyond speech),
# "fast" (marked unstable in its file), "whisper"/"whisperf" (unvoiced), "Mr serious" (space in name).
VARIANTS = (
    "Alex", "Alicia", "Andrea", "Andy", "Annie", "AnxiousAndy", "Denis", "Diogo", "Gene", "Gene2", "Henrique",
    "Hugo", "Jacky", "Lee", "Marco", "Mario", "Michael", "Mike", "Nguyen", "Reed", "RicishayMax",
    "RicishayMax2", "RicishayMax3", "Storm", "Tweaky", "UniRobot", "adam", "anika", "anikaRobot", "announcer",
    "antonio", "aunty", "belinda", "benjamin", "boris", "caleb", "croak", "david", "ed", "edward", "edward2",
    "f1", "f2", "f3", "f4", "f5", "grandma", "grandpa", "gustave", "ian", "iven", "iven2", "iven3", "iven4",
    "john", "kaukovalta", "klatt", "klatt2", "klatt3", "klatt4", "klatt5", "klatt6", "linda", "m1", "m2", "m3",
    "m4", "m5", "m6", "m7", "m8", "marcelo", "max", "michel", "miguel", "mike2", "norbert", "pablo", "paul",
    "pedro", "quincy", "rob", "robert", "robosoft", "robosoft2", "robosoft3", "robosoft4", "robosoft5",
    "robosoft6", "robosoft7", "robosoft8", "sandro", "shelby", "steph", "steph2", "steph3", "travis", "victor",
    "zac",
)

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_PARAM_RATE, _PARAM_PITCH = 1, 3
_CHARS_UTF8 = 1
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

_lock = threading.Lock()
_chunks: list[bytes] = []


@_CALLBACK
def _collect(wav, n, events):  # called by espeak_Synth with each chunk of int16 samples
    if n > 0:
        _chunks.append(ctypes.string_at(wav, 2 * n))
    return 0


def voice_name(dialect: str, variant: str) -> str:
    return f"{dialect}+{variant}"


@lru_cache(maxsize=1)
def _paths() -> tuple[str, str]:
    try:
        import espeakng_loader
    except ImportError:
        raise PredictnasError("espeak-ng is unavailable: install the 'espeakng-loader' package") from None
    return espeakng_loader.get_library_path(), espeakng_loader.get_data_path()


def check_voices() -> None:
    """Raise a one-line error if the installed espeak-ng data lacks a dialect or variant of the pool."""
    _, data = _paths()
    missing = [d for d in DIALECTS if not os.path.exists(os.path.join(data, "lang", "gmw", _dialect_file(d)))]
    missing += [v for v in VARIANTS if not os.path.exists(os.path.join(data, "voices", "!v", v))]
    if missing:
        raise PredictnasError(f"espeak-ng data at {data} lacks voices: {', '.join(missing[:5])}")


def _dialect_file(dialect: str) -> str:
    # Voice files are named with uppercase region codes ("en-GB-x-rp"); lookups are case-insensitive.
    parts = dialect.split("-")
    if len(parts) > 1 and len(parts[1]) == 2:
        parts[1] = parts[1].upper()
    return "-".join(parts)


def installed_data_path() -> str:
    """The espeak-ng data folder of the ``espeakng-loader`` package."""
    return _paths()[1]


def synthesize_native(text: str, voice: str, rate_wpm: int = 175, pitch: int = 50, seed: int = 0,
                      data_dir: str | None = None) -> np.ndarray:
    """Render ``text`` with ``voice`` at ``NATIVE_RATE``: int16 samples, untrimmed.

    ``rate_wpm`` is espeak-ng's speaking rate (80-450 words per minute), ``pitch`` its base pitch (0-99,
    50 is the voice's own), ``seed`` seeds the breath noise. ``data_dir`` replaces the installed data
    folder (one holding designed variants, see :mod:`.voice_design`).
    """
    library, data = _paths()
    data = data_dir or data
    # espeak-ng falls back to the plain dialect, silently, when a variant file is missing
    if "+" in voice and not os.path.exists(os.path.join(data, "voices", "!v", voice.split("+", 1)[1])):
        raise PredictnasError(f"espeak-ng data at {data} has no voice variant {voice.split('+', 1)[1]!r}")
    with _lock:
        lib = ctypes.CDLL(library)
        try:
            if lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data.encode(), 0) != NATIVE_RATE:
                raise PredictnasError(f"espeak-ng at {library} did not initialise at {NATIVE_RATE} Hz")
            lib.espeak_SetSynthCallback(_collect)
            if lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise PredictnasError(f"espeak-ng has no voice {voice!r}")
            lib.espeak_SetParameter(_PARAM_RATE, int(rate_wpm), 0)
            lib.espeak_SetParameter(_PARAM_PITCH, int(pitch), 0)
            # Breath noise comes from espeak-ng's own generator (1.52 on), seeded from the clock at
            # initialisation; older releases and the Klatt voices draw from libc's rand().
            if hasattr(lib, "espeak_ng_SetRandSeed"):
                lib.espeak_ng_SetRandSeed(ctypes.c_long(seed & 0x7FFFFFFF))
            ctypes.CDLL(None).srand(ctypes.c_uint(seed & 0xFFFFFFFF))
            encoded = text.encode()
            _chunks.clear()
            status = lib.espeak_Synth(encoded, len(encoded) + 1, 0, 0, 0, _CHARS_UTF8, None, None)
            if status != 0:
                raise PredictnasError(f"espeak-ng failed ({status}) on {text!r} with voice {voice!r}")
            samples = np.frombuffer(b"".join(_chunks), dtype=np.int16).copy()
        finally:
            _chunks.clear()
            lib.espeak_Terminate()
            _unload(lib)
    return samples


def _unload(lib: ctypes.CDLL) -> None:
    # Unloading drops espeak-ng's static state, so the next utterance starts from the same state.
    import _ctypes

    _ctypes.dlclose(lib._handle)


def trim_silence(audio: np.ndarray, sample_rate: int, threshold_db: float = -40.0,
                 margin_s: float = 0.02) -> np.ndarray:
    """Cut leading and trailing frames quieter than ``threshold_db`` below the loudest 10 ms frame,
    keeping ``margin_s`` around the speech so soft onsets and releases survive."""
    frame = max(1, sample_rate // 100)
    n_frames = len(audio) // frame
    if n_frames == 0:
        return audio
    power = np.mean(np.square(audio[: n_frames * frame].reshape(n_frames, frame), dtype=np.float64), axis=1)
    active = np.flatnonzero(power > power.max() * 10.0 ** (threshold_db / 10.0))
    if active.size == 0:
        return audio[:0]
    margin = int(margin_s * sample_rate)
    return audio[max(0, active[0] * frame - margin): min(len(audio), (active[-1] + 1) * frame + margin)]


def synthesize(text: str, voice: str, *, rate_wpm: int = 175, pitch: int = 50, seed: int = 0,
               sample_rate: int = 16000, data_dir: str | None = None) -> np.ndarray:
    """Render ``text`` as float32 samples in [-1, 1] at ``sample_rate``, silence trimmed at both ends."""
    import torch

    native = synthesize_native(text, voice, rate_wpm, pitch, seed, data_dir)
    audio = trim_silence(native.astype(np.float32) / 32768.0, NATIVE_RATE)
    if sample_rate != NATIVE_RATE and len(audio):
        with torch.no_grad():
            audio = _resampler(sample_rate)(torch.from_numpy(audio)).numpy()
    return np.clip(audio, -1.0, 1.0).astype(np.float32, copy=False)


@lru_cache(maxsize=4)
def _resampler(sample_rate: int):
    # torchaudio.functional.resample with its windowed-sinc kernel computed once per rate, not per call.
    import torchaudio.transforms

    return torchaudio.transforms.Resample(NATIVE_RATE, sample_rate)


def espeak_version() -> str:
    """The version string of the loaded espeak-ng library, for provenance."""
    library, data = _paths()
    with _lock:
        lib = ctypes.CDLL(library)
        try:
            lib.espeak_Info.restype = ctypes.c_char_p
            return lib.espeak_Info(None).decode()
        finally:
            _unload(lib)
