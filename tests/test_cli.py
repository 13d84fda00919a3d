"""The command line as a user runs it: a real process, its exit status and what it prints."""

import json

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from predictnas.supernet import save_supernet

from commandline import REPO, predictnas as run

CONFORMER_M = REPO / "predictnas" / "pretrained" / "archs" / "speech-v1" / "conformer-m.json"


def test_space_info_lists_every_dimension_size_and_params():
    text = run("space", "--info")
    assert text.returncode == 0, text.stderr
    for name in ("frontend_kernel", "frontend_kind", "width", "depth", "connectivity", "downsample_after",
                 "heads", "ffn_dim", "conv_kind", "conv_kernel", "dilation", "conv_placement"):
        assert name in text.stdout
    info = json.loads(run("space", "--info", "--json").stdout)
    assert info["architectures_log10"] > 30
    assert 0 < info["params"]["min"] < info["params"]["max"]
    assert info["dimensions"]["frontend_kernel"]["choices"] == [3, 5, 7]
    assert info["dimensions"]["conv_kind"]["choices"] == ["dwsep", "grouped", "none"]


def test_sampled_architectures_check_and_export(tmp_path):
    sampled = run("space", "--sample", "3", "--seed", "5")
    lines = sampled.stdout.splitlines()
    assert sampled.returncode == 0 and len(lines) == 3
    arch_path = tmp_path / "arch.json"
    arch_path.write_text(lines[1])
    checked = run("space", "--check", arch_path)
    assert checked.returncode == 0 and "valid; arch_id" in checked.stdout
    out = tmp_path / "model.onnx"
    exported = run("export", arch_path, "--out", out)
    assert exported.returncode == 0, exported.stderr
    assert out.exists() and "randomly initialised" in exported.stderr
    assert "onnx.checker: ok" in exported.stdout and "max abs diff" in exported.stdout


def test_export_with_a_supernet_inherits_its_weights(tmp_path, space, supernet):
    path = tmp_path / "supernet.pt"
    save_supernet(supernet, path)
    out = tmp_path / "m.onnx"
    result = run("export", CONFORMER_M, "--out", out, "--supernet", path)
    assert result.returncode == 0, result.stderr
    assert "randomly" not in result.stderr
    expected = supernet.extract(space.from_json(CONFORMER_M.read_text())).ctc_head.weight.detach().numpy()
    weights = [numpy_helper.to_array(t) for t in onnx.load(str(out)).graph.initializer]
    assert any(np.array_equal(w, expected) or np.array_equal(w.T, expected) for w in weights)  # MatMul stores W^T


@pytest.mark.parametrize("content, message", [
    ('{"width": 128,', "not valid JSON"),
    ("", "not valid JSON"),
    ("[]", "expected a JSON object"),
    (json.dumps({**json.loads(CONFORMER_M.read_text()), "width": 100}), "width: 100 is not one of"),
    (json.dumps({**json.loads(CONFORMER_M.read_text()), "downsample_after": 8}),
     "downsample_after: 8 must be less than the depth (8)"),
    (json.dumps({**json.loads(CONFORMER_M.read_text()), "colour": "red"}), "colour: unknown field"),
])
@pytest.mark.parametrize("command", ["export", "check"])
def test_bad_architecture_files_give_one_error_line_and_exit_2(tmp_path, content, message, command):
    arch_path = tmp_path / "arch.json"
    arch_path.write_text(content)
    out = tmp_path / "m.onnx"
    args = ("export", arch_path, "--out", out) if command == "export" else ("space", "--check", arch_path)
    result = run(*args)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if not line.startswith("note:")]
    assert len(errors) == 1 and errors[0].startswith("error: ") and message in errors[0], result.stderr
    assert "Traceback" not in result.stderr and not out.exists()


def test_missing_files_and_bad_supernets_are_one_line_errors(tmp_path):
    missing = run("export", tmp_path / "nope.json", "--out", tmp_path / "m.onnx")
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    bad = tmp_path / "supernet.pt"
    torch.save({"something": "else"}, bad)
    result = run("export", CONFORMER_M, "--out", tmp_path / "m.onnx", "--supernet", bad)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {bad}: not a predictnas supernet checkpoint (KeyError: 'config')"]


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    command = "pip install -e '.[test]' && python -m pytest -q"
    assert command in readme.splitlines() and command in ci.splitlines()
