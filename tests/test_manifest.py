"""User datasets and transcripts: the loaders on small trees the tests write, audio reading, the tokenizer."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from predictnas.data.manifest import (Utterance, load_dataset, load_jsonl_manifest, load_librispeech, read_audio,
                                      write_jsonl_manifest)
from predictnas.data.text import CharTokenizer, normalize
from predictnas.errors import PredictnasError
from predictnas.space import SpaceConfig


def write_sweep(path: Path, seconds: float, sample_rate: int = 16000, channels: int = 1) -> Path:
    """A quiet rising sine sweep (plus a little noise): real audio content, written with soundfile."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    x = 0.3 * np.sin(2 * np.pi * (200 + 400 * t) * t) + 0.01 * np.random.default_rng(0).standard_normal(t.size)
    data = np.stack([x * (c + 1) / channels for c in range(channels)], axis=1) if channels > 1 else x
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, data.astype(np.float32), sample_rate, subtype="PCM_16")
    return path


def assert_one_line(err: pytest.ExceptionInfo, *fragments: str) -> None:
    message = str(err.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


@pytest.fixture
def librispeech(tmp_path) -> Path:
    """``dev-tiny/<speaker>/<chapter>/`` with FLAC files and transcripts, LibriSpeech style."""
    root = tmp_path / "LibriSpeech" / "dev-tiny"
    layout = {("84", "121123"): ["GO DO YOU HEAR", "BUT IN LESS THAN FIVE MINUTES"],
              ("174", "50561"): ["FORGOTTEN TOO THE NAME OF GILLIAN THE LOVELY CAPTIVE'S"]}
    for (speaker, chapter), texts in layout.items():
        folder = root / speaker / chapter
        lines = []
        for i, text in enumerate(texts):
            utt_id = f"{speaker}-{chapter}-{i:04d}"
            write_sweep(folder / f"{utt_id}.flac", 0.5 + 0.25 * i)
            lines.append(f"{utt_id} {text}\n")
        (folder / f"{speaker}-{chapter}.trans.txt").write_text("".join(lines))
    return root


def test_librispeech_tree_is_parsed(librispeech):
    utts = load_librispeech(librispeech.parent)  # a folder of splits works as well as one split
    assert [Path(u.audio_filepath).name for u in utts] == [
        "174-50561-0000.flac", "84-121123-0000.flac", "84-121123-0001.flac"]
    assert all(Path(u.audio_filepath).is_absolute() and Path(u.audio_filepath).is_file() for u in utts)
    assert [u.speaker for u in utts] == ["174", "84", "84"]
    assert utts[0].text == "forgotten too the name of gillian the lovely captive's"
    assert utts[2].text == "but in less than five minutes"
    assert utts[1].duration == pytest.approx(0.5) and utts[2].duration == pytest.approx(0.75)
    assert load_dataset(librispeech) == utts


def test_librispeech_errors_name_the_problem(tmp_path, librispeech):
    (tmp_path / "empty").mkdir()
    with pytest.raises(PredictnasError) as err:
        load_dataset(tmp_path / "empty")
    assert_one_line(err, "empty", "trans.txt")
    (librispeech / "84" / "121123" / "84-121123-0001.flac").unlink()
    with pytest.raises(PredictnasError) as err:
        load_librispeech(librispeech)
    assert_one_line(err, "84-121123.trans.txt:2", "84-121123-0001.flac")
    (librispeech / "84" / "121123" / "84-121123.trans.txt").write_text("garbage line\n")
    with pytest.raises(PredictnasError) as err:
        load_librispeech(librispeech)
    assert_one_line(err, "84-121123.trans.txt:1", "<speaker>-<chapter>-<utterance>")


def test_jsonl_manifest_resolves_relative_paths_and_reads_optional_keys(tmp_path):
    data = tmp_path / "set"
    write_sweep(data / "audio" / "a.wav", 0.3)
    write_sweep(tmp_path / "elsewhere.wav", 0.2)
    manifest = data / "train.jsonl"
    records = [
        {"audio_filepath": "audio/a.wav", "text": "Turn ON the lights!", "duration": 0.3, "intent": "lights_on",
         "speaker": "v1", "environment": "quiet_home", "snr_db": 30, "sample_rate": 16000, "extra": [1, 2]},
        {"audio_filepath": str(tmp_path / "elsewhere.wav"), "text": "stop", "duration": 0.2},
    ]
    manifest.write_text("\n".join(json.dumps(r) for r in records) + "\n\n")
    utts = load_dataset(manifest)
    assert utts == [
        Utterance(str(data / "audio" / "a.wav"), "turn on the lights", 0.3, "lights_on", "v1", "quiet_home", 30.0),
        Utterance(str(tmp_path / "elsewhere.wav"), "stop", 0.2),
    ]
    # Written back relative to the manifest, so the folder can move; read back identically.
    write_jsonl_manifest(data / "copy.jsonl", utts)
    assert json.loads((data / "copy.jsonl").read_text().splitlines()[0])["audio_filepath"] == "audio/a.wav"
    assert load_jsonl_manifest(data / "copy.jsonl") == utts


@pytest.mark.parametrize("line, fragments", [
    ('{"audio_filepath": "a.wav", "text": "hi"', ["not valid JSON"]),
    ('{"audio_filepath": "a.wav", "text": "hi"}', ["missing key", "duration"]),
    ('["a.wav", "hi", 1.0]', ["JSON object"]),
    ('{"audio_filepath": "a.wav", "text": "hi", "duration": "long"}', ["duration"]),
    ('{"audio_filepath": "missing.wav", "text": "hi", "duration": 1.0}', ["not found", "missing.wav"]),
])
def test_malformed_jsonl_line_is_named(tmp_path, line, fragments):
    write_sweep(tmp_path / "a.wav", 0.1)
    manifest = tmp_path / "m.jsonl"
    good = json.dumps({"audio_filepath": "a.wav", "text": "hi", "duration": 0.1})
    manifest.write_text(f"{good}\n{good}\n{line}\n")
    with pytest.raises(PredictnasError) as err:
        load_jsonl_manifest(manifest)
    assert_one_line(err, f"{manifest}:3", *fragments)


def test_empty_or_unknown_dataset_is_an_error(tmp_path):
    (tmp_path / "m.jsonl").write_text("\n")
    with pytest.raises(PredictnasError) as err:
        load_dataset(tmp_path / "m.jsonl")
    assert_one_line(err, "m.jsonl", "empty")
    with pytest.raises(PredictnasError) as err:
        load_dataset(tmp_path / "nothing-here")
    assert_one_line(err, "nothing-here")


def test_read_audio_mixes_channels_to_mono_float32(tmp_path):
    path = write_sweep(tmp_path / "stereo.wav", 0.25, channels=2)
    wav = read_audio(path, 16000)
    both = sf.read(path, dtype="float32")[0]
    assert wav.dtype == torch.float32 and wav.shape == (4000,)
    assert np.allclose(wav.numpy(), both.mean(axis=1), atol=1e-6)
    assert float(wav.abs().max()) <= 1.0


def test_sample_rate_mismatch_names_both_rates_unless_resampling(tmp_path):
    path = write_sweep(tmp_path / "clip.wav", 0.5, sample_rate=8000)
    with pytest.raises(PredictnasError) as err:
        read_audio(path, 16000)
    assert_one_line(err, "clip.wav", "8000 Hz", "16000 Hz", "--resample")
    wav = read_audio(path, 16000, resample=True)
    assert wav.shape == (8000,)  # 0.5 s at the experiment's rate
    assert read_audio(write_sweep(tmp_path / "hi.flac", 0.5, 16000), 8000, resample=True).shape == (4000,)


def test_corrupt_or_empty_audio_is_a_one_line_error(tmp_path):
    bad = tmp_path / "bad.flac"
    bad.write_bytes(b"fLaC" + bytes(range(256)) * 4)
    with pytest.raises(PredictnasError) as err:
        read_audio(bad, 16000)
    assert_one_line(err, "bad.flac", "cannot read audio")
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(PredictnasError) as err:
        read_audio(empty, 16000)
    assert_one_line(err, "empty.wav", "no samples")
    with pytest.raises(PredictnasError) as err:
        read_audio(tmp_path / "absent.wav", 16000)
    assert_one_line(err, "absent.wav", "no such audio file")


# ---- text ---------------------------------------------------------------------------------------


def test_vocabulary_matches_the_search_space():
    tok = CharTokenizer()
    assert tok.vocab_size == SpaceConfig().vocab_size == 29
    assert tok.symbols[1:3] == (" ", "'") and "".join(tok.symbols[3:]) == "abcdefghijklmnopqrstuvwxyz"


@pytest.mark.parametrize("raw, expected", [
    ("Turn ON the  lights!", "turn on the lights"),
    ("  Don’t stop\tthe MUSIC. ", "don't stop the music"),
    ("Set a timer: 10 minutes", "set a timer minutes"),
    ("Café au-lait", "cafe au lait"),
    ("?!", ""),
])
def test_normalize_and_round_trip(raw, expected):
    tok = CharTokenizer()
    assert normalize(raw) == expected and normalize(expected) == expected
    ids = tok.encode(raw)
    assert 0 not in ids and all(0 < i < 29 for i in ids)
    assert tok.decode(ids) == expected


def test_greedy_ctc_decode_merges_repeats_and_drops_blanks():
    tok = CharTokenizer()
    c = {s: i for i, s in enumerate(tok.symbols)}
    # "hello": the double l needs a blank between its letters; repeats of one letter merge.
    path = [["h", "h", "<blank>", "e", "l", "l", "<blank>", "l", "o", "o", "<blank>"],
            ["n", "<blank>", "o", "o", " ", " ", "o", "n", "<blank>", "e", "e"]]
    logits = torch.full((2, 11, 29), -5.0)
    for b, row in enumerate(path):
        for t, s in enumerate(row):
            logits[b, t, c[s]] = 3.0
    assert tok.greedy_ctc_decode(logits) == ["hello", "no one"]
    assert tok.greedy_ctc_decode(logits, torch.tensor([11, 4])) == ["hello", "no"]  # frames past the length ignored
    ids = logits.argmax(-1)
    assert tok.greedy_ctc_decode(ids.numpy(), [9, 11]) == ["hello", "no one"]
    assert tok.greedy_ctc_decode(torch.zeros(1, 5, 29)) == [""]  # all blank (argmax ties go to index 0)
