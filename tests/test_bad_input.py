"""Bad input through the command line: one clear line, a non-zero exit, no traceback, nothing written.

Each case damages one file a user could hand over (a latency table, a predictor, a top.json, a supernet)
or passes one option no run can honour, and names the words its error line must contain. The files are
copies of the shipped artifacts, so every case starts from a valid file and changes one thing.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from predictnas import pretrained
from predictnas.latency.table import find_table
from predictnas.space import get_space
from predictnas.supernet import Supernet, save_supernet

from commandline import one_error_line as refused, run


@pytest.fixture(scope="module")
def files(env, tmp_path_factory) -> dict:
    """A top.json searched with the shipped predictor and table, and copies of both."""
    folder = tmp_path_factory.mktemp("files")
    table = folder / "table.json"
    shutil.copyfile(find_table("cpu", pretrained.DEFAULT), table)
    predictor = folder / "predictor.json"
    shutil.copyfile(pretrained.artifact("predictor"), predictor)
    top = folder / "search" / "top.json"
    result = run(env, "search", "--budget", "40ms", "--seconds", 1, "--generations", 3, "--top-k", 2,
                 "--lut", table, "--run-dir", folder, "--out", top, "--no-progress")
    assert result.returncode == 0, result.stderr
    return {"table": table, "predictor": predictor, "top": top}


def edited_json(source: Path, target: Path, edit) -> Path:
    data = json.loads(source.read_text())
    edit(data)
    target.write_text(json.dumps(data))
    return target


def set_in(path: tuple, value):
    def edit(data):
        node = data
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return edit


TABLE_CASES = {
    "reference at zero": (set_in(("reference_ms",), 0), "reference_ms"),
    "negative calibration": (set_in(("calibration", "a"), -1.0), "a must be positive"),
    "calibration not a number": (set_in(("calibration", "a"), float("nan")), "non-finite coefficient"),
    "an infinite entry": (lambda d: d["entries"][0].update(ms=float("inf")), "infinite"),
}


@pytest.mark.parametrize("case", TABLE_CASES)
def test_a_damaged_latency_table_is_refused(env, files, tmp_path, case):
    edit, message = TABLE_CASES[case]
    table = edited_json(files["table"], tmp_path / "table.json", edit)
    out = tmp_path / "top.json"
    refused(run(env, "search", "--budget", "40ms", "--seconds", 1, "--lut", table, "--run-dir", tmp_path,
                "--out", out), message)
    assert not out.exists()


OPTION_CASES = {
    "lambda nan": (["--lambda", "nan"], "not a finite number"),
    "lambda inf": (["--lambda", "inf"], "not a finite number"),
    "seconds nan": (["--seconds", "nan"], "not a finite number"),
    "seconds inf": (["--seconds", "inf"], "not a finite number"),
    "budget overflowing": (["--budget", "1e999ms"], "must be a finite number"),
    "budget without unit": (["--budget", "40"], "expected a number with a unit"),
    "negative budget": (["--budget", "-5ms"], "expected a number with a unit"),
}


@pytest.mark.parametrize("case", OPTION_CASES)
def test_options_no_search_can_honour_are_refused(env, files, tmp_path, case):
    args, message = OPTION_CASES[case]
    out = tmp_path / "top.json"
    refused(run(env, "search", *(["--budget", "40ms"] if "--budget" not in args else []), *args,
                "--lut", files["table"], "--run-dir", tmp_path, "--out", out), message)
    assert not out.exists()


def test_a_damaged_predictor_is_refused(env, files, tmp_path):
    negative = edited_json(files["predictor"], tmp_path / "negative.json",
                           lambda d: d["boosters"]["wer/all"]["learner"]["learner_model_param"].update(
                               base_score="[-5E0]"))
    refused(run(env, "search", "--budget", "40ms", "--predictor", negative, "--lut", files["table"],
                "--out", tmp_path / "top.json"), "no error rate")
    not_utf8 = tmp_path / "latin1.json"
    not_utf8.write_bytes(files["predictor"].read_bytes()[:100] + b"\xff\xfe" + files["predictor"].read_bytes()[100:])
    refused(run(env, "search", "--budget", "40ms", "--predictor", not_utf8, "--lut", files["table"],
                "--out", tmp_path / "top.json"), "not UTF-8")
    assert not (tmp_path / "top.json").exists()


def duplicate_first(data):
    data["candidates"][1] = {**data["candidates"][0], "rank": 2}


TOP_CASES = {
    "a pick listed twice": (duplicate_first, "same architecture"),
    "an edited latency": (lambda d: d["candidates"][0]["predicted"].update(latency_ms=0.001), "the file was edited"),
    "an architecture that is not its id": (lambda d: d["candidates"][0]["arch"].update(width=96), "does not match"),
    "another table": (set_in(("lut", "hash"), "0123456789abcdef"), "not the latency table"),
}


@pytest.mark.parametrize("case", TOP_CASES)
def test_an_edited_top_json_is_refused_before_any_training(env, files, tmp_path, case):
    edit, message = TOP_CASES[case]
    top = edited_json(files["top"], tmp_path / "top.json", edit)
    refused(run(env, "verify", top, "--lut", files["table"], "--allow-hardware-gap", "--no-progress"), message)
    assert not (tmp_path / "verify").exists()


def test_unreadable_or_broken_supernets_are_refused(env, tmp_path):
    arch = tmp_path / "arch.json"
    space = get_space("speech-tiny")
    arch.write_text(space.decode(space.sample(1, np.random.default_rng(0))[0]).to_json())
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    bare = tmp_path / "bare.pt"
    torch.save(torch.zeros(3), bare)
    diverged = tmp_path / "nan.pt"
    net = Supernet(space.config)
    with torch.no_grad():
        next(net.parameters()).fill_(float("nan"))
    save_supernet(net, diverged)
    for path, message in ((empty, "empty or truncated"), (bare, "not the dictionary"), (diverged, "NaN")):
        out = tmp_path / f"{path.stem}.onnx"
        refused(run(env, "export", arch, "--supernet", path, "--space", "speech-tiny", "--out", out), message)
        assert not out.exists()


def write_wav(path: Path, seconds: float = 1.0, rate: int = 16000) -> Path:
    import soundfile

    t = np.arange(int(seconds * rate)) / rate
    soundfile.write(path, (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), rate)
    return path


def manifest(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def data_case(folder: Path, case: str) -> Path:
    """A test set with one problem (``eval --test-data`` reads it)."""
    good = write_wav(folder / "good.wav")
    row = {"audio_filepath": "good.wav", "text": "turn on the lights", "duration": 1.0}
    if case == "missing audio":
        return manifest(folder / "m.jsonl", [{**row, "audio_filepath": "nowhere.wav"}])
    if case == "corrupt audio":
        (folder / "corrupt.wav").write_bytes(b"RIFF" + bytes(range(256)) * 4)
        return manifest(folder / "m.jsonl", [{**row, "audio_filepath": "corrupt.wav"}])
    if case == "empty audio":
        (folder / "empty.wav").write_bytes(b"")
        return manifest(folder / "m.jsonl", [{**row, "audio_filepath": "empty.wav"}])
    if case == "wrong sample rate":
        write_wav(folder / "narrow.wav", rate=8000)
        return manifest(folder / "m.jsonl", [{**row, "audio_filepath": "narrow.wav"}])
    if case == "empty manifest":
        return manifest(folder / "m.jsonl", [])
    if case == "a line that is not JSON":
        (folder / "m.jsonl").write_text(json.dumps(row) + "\n{\"audio_filepath\": \n")
        return folder / "m.jsonl"
    assert good.exists()
    raise AssertionError(case)


DATA_CASES = {"missing audio": "nowhere.wav", "corrupt audio": "corrupt.wav", "empty audio": "empty.wav",
              "wrong sample rate": "8000 Hz", "empty manifest": "empty manifest",
              "a line that is not JSON": "not valid JSON"}


@pytest.mark.parametrize("case", DATA_CASES)
def test_bad_evaluation_data_is_refused(env, tmp_path, case):
    arch = tmp_path / "arch.json"
    arch.write_text(json.dumps(json.loads(Path(pretrained.baselines(pretrained.DEFAULT)[0]).read_text())))
    data = data_case(tmp_path, case)
    refused(run(env, "eval", arch, "--supernet", pretrained.reference(), "--test-data", data, "--split", "test",
                "--no-progress"), DATA_CASES[case])


def test_malformed_files_and_unknown_names_are_refused(env, files, tmp_path):
    truncated = tmp_path / "truncated.json"
    truncated.write_text(files["top"].read_text()[:200])
    empty = tmp_path / "empty.json"
    empty.write_text("")
    refused(run(env, "verify", truncated, "--lut", files["table"]), "not valid JSON")
    refused(run(env, "verify", empty, "--lut", files["table"]), "not valid JSON")
    outside = tmp_path / "arch.json"
    arch = json.loads(Path(pretrained.baselines(pretrained.DEFAULT)[0]).read_text())
    outside.write_text(json.dumps({**arch, "width": 100}))
    refused(run(env, "estimate", outside), "width")
    refused(run(env, "search", "--budget", "40ms", "--device", "tpu", "--run-dir", tmp_path), "unknown device")
    refused(run(env, "search", "--budget", "40ms", "--environment", "mars", "--shared-weight-wer",
                "--lut", files["table"], "--run-dir", tmp_path), "mars")
    other_space = edited_json(files["table"], tmp_path / "table.json", lambda d: d["space"].update(widths=[96, 128]))
    refused(run(env, "search", "--budget", "40ms", "--lut", other_space, "--run-dir", tmp_path), "space")
    store = tmp_path / "store" / "evals.sqlite"
    store.parent.mkdir()
    store.write_bytes(b"SQLite format 3\x00" + b"\x00" * 50)
    refused(run(env, "fit", "--run-dir", store.parent), "evals.sqlite")
    assert not (tmp_path / "top.json").exists() and not (store.parent / "predictor.json").exists()


def test_a_budget_below_the_fastest_model_is_refused_before_the_search(env, files, tmp_path):
    out = tmp_path / "search" / "top.json"
    refused(run(env, "search", "--budget", "0.5ms", "--lut", files["table"], "--run-dir", tmp_path, "--out", out),
            "below the fastest latency")
    assert not out.parent.exists()


class _RunsCode:
    """A pickle that would create a file when loaded by an unrestricted unpickler."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_crafted_pickle_is_refused_and_never_run(env, tmp_path):
    marker = tmp_path / "ran"
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    torch.save({"config": _RunsCode(marker), "weights": {}}, run_dir / "supernet.pt")
    arch = tmp_path / "arch.json"
    arch.write_text(Path(pretrained.baselines(pretrained.DEFAULT)[0]).read_text())
    refused(run(env, "eval", arch, "--run-dir", run_dir, "--no-progress"), "not a predictnas supernet")
    torch.save({"step": _RunsCode(marker)}, run_dir / "train_checkpoint.pt")
    refused(run(env, "train", "--preset", "tiny", "--run-dir", run_dir, "--no-progress"), "unreadable checkpoint")
    assert not marker.exists()
