"""The embedded default corpus: grammar, synthesis and the built corpus on disk (tiny preset, built once)."""

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
import torchaudio

from predictnas.data import corpus as corpus_module
from predictnas.data.corpus import (SPLITS, CorpusRecipe, build_corpus, clean_audio, environment_rng, get_recipe,
                                    load_corpus_info, plan_corpus)
from predictnas.data.environments import get_environment
from predictnas.data.grammar import INTENTS, draw_commands, number_words, spoken_form
from predictnas.data.manifest import load_dataset
from predictnas.data.synth import installed_data_path, synthesize, synthesize_native
from predictnas.data.text import SYMBOLS
from predictnas.data.voice_design import design_voices, is_designed, voice_data_dir
from predictnas.errors import PredictnasError

TINY = get_recipe("tiny")
# Small enough to build several times per session.
MICRO = CorpusRecipe("micro", utterances=(6, 3, 3), voices=(3, 2, 2), designed_voices=2, seed=7)
VOCABULARY = set(SYMBOLS[1:])
FIELDS = {"audio_filepath", "text", "duration", "intent", "speaker", "environment", "snr_db", "sample_rate"}


def read_manifest(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    return build_corpus(tmp_path_factory.mktemp("corpus"), TINY, progress=False)


@pytest.fixture(scope="session")
def rows(tiny) -> dict[str, list[dict]]:
    return {split: read_manifest(tiny.manifest(split)) for split in SPLITS}


# ---- grammar and synthesis ---------------------------------------------------------------------------


def test_grammar_has_24_intents_spelled_out_in_the_ctc_vocabulary():
    assert len(INTENTS) == len(set(INTENTS)) == 24
    commands = draw_commands(np.random.default_rng(0), 3000)
    assert commands == draw_commands(np.random.default_rng(0), 3000)
    assert {intent for _, intent in commands} == set(INTENTS)
    for text, _ in commands:
        assert re.fullmatch(r"[a-z']+( [a-z']+)*", text), text
    assert len({text for text, _ in commands}) > 1000  # slots and phrasings give variety
    assert number_words(0) == "zero" and number_words(45) == "forty five"
    assert number_words(2005) == "two thousand and five" and number_words(310) == "three hundred and ten"
    assert spoken_form("what's the time") == "what's the time?" and spoken_form("call mom") == "call mom."


def test_synthesis_is_deterministic_whatever_ran_before():
    # espeak-ng keeps state between utterances and seeds breath noise from the clock; "sandro" breathes.
    args = ("what's the temperature inside?", "en+sandro", 190, 44, 5)
    first = synthesize_native(*args)
    synthesize_native("open the garage door.", "en-us+klatt6", 150, 60, 1)
    synthesize_native("set a timer for five minutes.", "en-029+Annie", 210, 30, 2)
    assert np.array_equal(first, synthesize_native(*args))
    assert not np.array_equal(first, synthesize_native(*args[:-1], 6))  # the seed drives the noise
    assert len(first) > 0.8 * 22050


# ---- the built corpus --------------------------------------------------------------------------------


def test_layout_and_manifests(tiny, rows):
    assert tiny.path.name == f"tiny-{TINY.recipe_hash}" and tiny.recipe == TINY
    assert list(tiny.intents) == list(INTENTS)
    for split, n_utts in zip(SPLITS, TINY.utterances):
        lines = rows[split]
        assert len(lines) == n_utts * len(TINY.environments)
        assert all(set(r) == FIELDS and r["sample_rate"] == TINY.sample_rate for r in lines)
        # Every utterance once per environment, environments in recipe order.
        for i in range(0, len(lines), len(TINY.environments)):
            group = lines[i:i + len(TINY.environments)]
            assert [r["environment"] for r in group] == list(TINY.environments)
            assert len({(r["text"], r["speaker"], r["duration"]) for r in group}) == 1
        assert tiny.stats[split]["utterances"] == len(lines)
        hours = sum(r["duration"] for r in lines) / 3600
        assert tiny.stats[split]["hours"] == pytest.approx(hours, abs=1e-3)
    loaded = load_dataset(tiny.manifest("dev"))  # the user-data loader reads the corpus as it is
    assert [(u.text, u.intent, u.speaker, u.environment, u.snr_db) for u in loaded] == [
        (r["text"], r["intent"], r["speaker"], r["environment"], r["snr_db"]) for r in rows["dev"]]
    for r in rows["dev"][:6]:
        info = soundfile.info(tiny.path / r["audio_filepath"])
        assert info.samplerate == TINY.sample_rate and info.subtype == "PCM_16"
        assert info.frames / info.samplerate == pytest.approx(r["duration"], abs=1e-4)


def test_splits_are_speaker_disjoint_with_many_voices_and_intents(tiny, rows):
    voices = {split: {r["speaker"] for r in rows[split]} for split in SPLITS}
    assert voices == {split: set(tiny.voices[split]) for split in SPLITS}
    designed = {v for v in voices["train"] if is_designed(v.split("+")[1])}
    assert len(designed) == TINY.designed_voices > 0
    assert [len(voices[s]) for s in SPLITS] == [TINY.voices[0] + TINY.designed_voices, *TINY.voices[1:]]
    assert sum(map(len, voices.values())) >= 30
    variants = {split: {v.split("+")[1] for v in voices[split]} for split in SPLITS}
    for a, b in (("train", "dev"), ("train", "test"), ("dev", "test")):
        assert not voices[a] & voices[b] and not variants[a] & variants[b]
    every = [r for split in SPLITS for r in rows[split]]
    assert len({r["intent"] for r in every}) >= 20 and {r["intent"] for r in every} <= set(INTENTS)
    assert all(set(r["text"]) <= VOCABULARY and r["text"] == r["text"].strip() for r in every)


def test_recorded_snr_is_exact_and_the_audio_matches_a_replay(tiny, rows):
    plan = {(u.split, u.index): u for u in plan_corpus(TINY)}
    for r in rows["test"][:8]:
        utt = plan[("test", int(Path(r["audio_filepath"]).stem.split("-")[1]))]
        assert (utt.text, utt.voice) == (r["text"], r["speaker"])
        env = get_environment(r["environment"])
        speech, noise, snr_db = env.render_components(clean_audio(utt, TINY.sample_rate), TINY.sample_rate,
                                                      environment_rng(utt, env.name))
        assert snr_db == r["snr_db"] and env.snr_db[0] <= snr_db <= env.snr_db[1]
        measured = 10 * np.log10(np.mean(speech.astype(float) ** 2) / np.mean(noise.astype(float) ** 2))
        assert measured == pytest.approx(snr_db, abs=1e-3)
        audio, _ = soundfile.read(tiny.path / r["audio_filepath"], dtype="float32")
        assert np.max(np.abs(audio - (speech + noise))) < 2.0 / 32768  # 16-bit rounding only


def test_environments_differ_audibly(tiny, rows):
    """Measured from the files alone: noise power from the silent lead-in, and the mains-hum band."""
    lead = {(u.split, u.index): u.lead_s for u in plan_corpus(TINY)}
    estimates, hum = {}, {}
    for r in rows["train"][:120]:
        audio, sr = soundfile.read(tiny.path / r["audio_filepath"], dtype="float64")
        index = int(Path(r["audio_filepath"]).stem.split("-")[1])
        noise_power = np.mean(audio[: int(lead[("train", index)] * sr) - 10] ** 2)
        speech_power = max(np.mean(audio ** 2) - noise_power, 1e-12)
        estimates.setdefault(r["environment"], []).append(10 * np.log10(speech_power / noise_power) - r["snr_db"])
        power = np.abs(np.fft.rfft(audio)) ** 2
        freqs = np.fft.rfftfreq(len(audio), 1 / sr)
        hum.setdefault(r["environment"], []).append(power[(freqs > 45) & (freqs < 65)].sum() / power.sum())
    for name, errors in estimates.items():
        assert abs(np.median(errors)) < 2.0, (name, np.median(errors))  # the recorded SNR is what one hears
    assert np.median(hum["industrial_warehouse"]) > 30 * np.median(hum["quiet_home"])
    snr = {name: [r["snr_db"] for r in rows["train"] if r["environment"] == name] for name in TINY.environments}
    assert min(snr["quiet_home"]) >= 25 and max(snr["industrial_warehouse"]) <= 10


def test_designed_voices_speak_with_their_own_pitch_and_are_recorded(tiny, tmp_path):
    designs = design_voices(2, np.random.default_rng(3))
    assert designs == design_voices(2, np.random.default_rng(3)) and len(set(designs.values())) == 2
    low, high = (re.sub(r"(?m)^pitch .*$", f"pitch {hz} {hz}", text) for hz, text in zip((80, 200), designs.values()))
    data = voice_data_dir(installed_data_path(), {"low": low, "high": high}, tmp_path / "espeak")

    def median_pitch(variant):
        audio = synthesize("turn on the lights in the kitchen", f"en-us+{variant}", data_dir=str(data))
        f0 = torchaudio.functional.detect_pitch_frequency(torch.from_numpy(audio), 16000, freq_low=60)
        return float(f0.median())

    assert median_pitch("low") < 120 < 160 < median_pitch("high")  # the variant file decides the voice
    with pytest.raises(PredictnasError, match="no voice variant 'low'"):  # not in the installed data
        synthesize("hello", "en-us+low")
    recorded = json.loads((tiny.path / "corpus.json").read_text())["designed_variants"]
    assert {v.split("+")[1] for v in tiny.voices["train"] if is_designed(v.split("+")[1])} == set(recorded)
    assert all(text.startswith("language variant") for text in recorded.values())


# ---- determinism, caching and interrupted builds -----------------------------------------------------


def test_same_recipe_same_bytes_whatever_the_workers(tmp_path):
    a = build_corpus(tmp_path / "a", MICRO, workers=0, progress=False)
    b = build_corpus(tmp_path / "b", MICRO, workers=1, progress=False)
    assert a.manifest_hashes == b.manifest_hashes
    for split in SPLITS:
        assert a.manifest(split).read_bytes() == b.manifest(split).read_bytes()
    wavs = sorted(p.relative_to(a.path) for p in a.path.rglob("*.wav"))
    assert len(wavs) == sum(MICRO.utterances) * len(MICRO.environments)
    assert all((a.path / w).read_bytes() == (b.path / w).read_bytes() for w in wavs)
    assert plan_corpus(MICRO) == plan_corpus(MICRO) != plan_corpus(CorpusRecipe.from_dict(
        {**MICRO.to_dict(), "seed": 8}))


def test_a_complete_corpus_is_reused(tiny):
    stamp = (tiny.path / "corpus.json").stat().st_mtime_ns
    again = build_corpus(tiny.path.parent, TINY, progress=False)
    assert again == tiny and (tiny.path / "corpus.json").stat().st_mtime_ns == stamp
    assert not list(tiny.path.parent.glob(".*partial*"))


def test_incomplete_corpora_are_not_complete(tmp_path):
    root = tmp_path / "root"
    final = root / MICRO.dirname
    final.mkdir(parents=True)
    (final / "train.jsonl").write_text("{}\n")  # a half-copied corpus
    with pytest.raises(PredictnasError, match="corpus.json"):
        load_corpus_info(final)
    info = build_corpus(root, MICRO, workers=0, progress=False)  # rebuilt in place
    assert info.path == final and len(read_manifest(info.manifest("train"))) == 12
    with open(info.manifest("dev"), "a") as f:
        f.write("\n")
    with pytest.raises(PredictnasError, match="dev.jsonl"):
        load_corpus_info(final)


# Long enough (seconds) to be stopped mid-build: the builds below are interrupted at their first audio file.
STOPPED = CorpusRecipe("stopped", utterances=(400, 3, 3), voices=(3, 2, 2), designed_voices=2, seed=7)


def _stop_mid_build(root: Path, recipe: CorpusRecipe, signal_number: int) -> int:
    """Start ``predictnas``'s corpus build of ``recipe`` in a process of its own, send it ``signal_number``
    once it has written its first audio file, and return the process id."""
    # Ctrl-C raises KeyboardInterrupt even where this process was started with SIGINT ignored (a background
    # job of a non-interactive shell), which the child would inherit
    code = (f"import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
            f"from predictnas.data.corpus import CorpusRecipe, build_corpus; build_corpus({str(root)!r}, "
            f"CorpusRecipe.from_dict({recipe.to_dict()!r}), workers=0, progress=False)")
    proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not list(root.glob(".*partial*/audio/train/*/*.wav")) and time.time() < deadline:
            assert proc.poll() is None, "the build ended before it could be stopped"
            time.sleep(0.05)
        proc.send_signal(signal_number)
        assert proc.wait(timeout=60) != 0, "the build finished before the signal"
    finally:
        proc.kill()
        proc.wait()
    return proc.pid


def test_an_interrupted_build_leaves_neither_corpus_nor_temporary_folder(tmp_path):
    root = tmp_path / "root"
    _stop_mid_build(root, STOPPED, signal.SIGINT)  # Ctrl-C: KeyboardInterrupt mid-build
    assert not (root / STOPPED.dirname).exists() and not list(root.glob(".*partial*"))


@pytest.mark.slow
def test_a_killed_build_leaves_no_corpus_and_is_cleaned_up(tmp_path):
    root = tmp_path / "root"
    pid = _stop_mid_build(root, STOPPED, signal.SIGKILL)
    partials = list(root.glob(f".{STOPPED.dirname}.partial-{pid}-*"))
    assert len(partials) == 1 and not (root / STOPPED.dirname).exists()
    with pytest.raises(PredictnasError):
        load_corpus_info(partials[0])
    other = build_corpus(root, CorpusRecipe.from_dict({**MICRO.to_dict(), "seed": 12}), workers=0, progress=False)
    assert other.path.exists() and partials[0].exists()  # another corpus's build leaves it alone
    build_corpus(root, STOPPED, workers=0, progress=False)
    assert not partials[0].exists()  # its own next build removes the dead builder's folder


def test_recipes_and_presets(monkeypatch):
    assert get_recipe("tiny").sample_rate == 16000 and get_recipe("tiny", sample_rate=8000).sample_rate == 8000
    assert get_recipe("tiny", sample_rate=8000).recipe_hash != TINY.recipe_hash
    assert CorpusRecipe.from_dict(json.loads(json.dumps(TINY.to_dict()))) == TINY
    assert sum(get_recipe("small").voices) > sum(TINY.voices) >= 30
    with pytest.raises(PredictnasError, match="unknown corpus preset"):
        get_recipe("huge")
    with pytest.raises(PredictnasError, match="sample rate"):
        get_recipe("tiny", sample_rate=44100)
    with pytest.raises(PredictnasError, match="unknown environment"):
        CorpusRecipe("x", (4, 2, 2), (2, 1, 1), environments=("moon_base",))
    # the user cache: $PREDICTNAS_CACHE, else $XDG_CACHE_HOME/predictnas, else ~/.cache/predictnas
    monkeypatch.delenv("PREDICTNAS_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", "/home/someone")
    assert corpus_module.default_corpus_root() == Path("/home/someone/.cache/predictnas/corpus")
    monkeypatch.setenv("XDG_CACHE_HOME", "/xdg")
    assert corpus_module.default_corpus_root() == Path("/xdg/predictnas/corpus")
    monkeypatch.setenv("PREDICTNAS_CACHE", "/tmp/cache")
    assert corpus_module.default_corpus_root() == Path("/tmp/cache/corpus")
