"""Running ``predictnas`` as a user does, in a subprocess, for the command-line tests."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def cli_env(cache: Path) -> dict:
    """The environment of a test module's commands: one private corpus and feature cache."""
    return {**os.environ, "PREDICTNAS_CACHE": str(cache)}


def start(env: dict | None, *args, cwd: Path = REPO, **kwargs) -> subprocess.Popen:
    """``predictnas ARGS`` in a process of its own (``env`` None: this process's environment)."""
    return subprocess.Popen([sys.executable, "-m", "predictnas", *map(str, args)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def predictnas(*args, env: dict | None = None, cwd: Path = REPO, timeout: float = 900) -> subprocess.CompletedProcess:
    """``predictnas ARGS`` run to its end: exit status, stdout and stderr."""
    proc = start(env, *args, cwd=cwd)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        proc.kill()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def run(env: dict, *args) -> subprocess.CompletedProcess:
    """``predictnas ARGS`` in the environment of a test module (see ``cli_env``)."""
    return predictnas(*args, env=env)


def record_refusal(result: subprocess.CompletedProcess) -> None:
    """With ``PREDICTNAS_REFUSALS`` set to a file, append the refused command and the line it printed
    (``tools/bad_input_report.py`` lists them)."""
    path = os.environ.get("PREDICTNAS_REFUSALS")
    if path:
        lines = result.stderr.strip().splitlines()
        command = ["predictnas", *(Path(a).name if "/" in a else a for a in map(str, result.args[3:]))]
        printed = re.sub(r"(?:/[^\s/:'\"]+)+/([^\s/:'\"]+)", r"\1", lines[-1]) if lines else ""  # paths as names
        with open(path, "a") as f:
            f.write(json.dumps({"test": os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" ", 1)[0],
                                "command": " ".join(command), "exit": result.returncode,
                                "printed": printed}) + "\n")


def one_error_line(result: subprocess.CompletedProcess, message: str, alone: bool = False) -> None:
    """Exit status 2 and a last stderr line ``error: ...`` (or click's ``Error: ...`` for an option)
    containing ``message``, no traceback; with ``alone``, nothing else on stderr."""
    record_refusal(result)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert lines[-1].lower().startswith("error: ") and message in lines[-1], result.stderr
    assert "Traceback" not in result.stderr
    assert not alone or len(lines) == 1, result.stderr


def tiny_experiment(env: dict, run_dir: Path, *sample_args) -> dict:
    """The tiny preset trained briefly, sampled (``sample_args``), a predictor fit on it and a quick latency
    table: what the search and verify tests start from."""
    for args in (("train", "--preset", "tiny", "--steps", 12), ("sample", *sample_args, "--no-progress"),
                 ("fit", "--folds", 3)):
        result = run(env, *args, "--run-dir", run_dir)
        assert result.returncode == 0, result.stderr
    lut = run_dir / "tiny-lut.json"
    result = run(env, "build-lut", "--space", "speech-tiny", "--input-seconds", "0.5", "--protocol", "quick",
                 "--calibration", "4", "--heldout", "3", "--no-progress", "--out", lut)
    assert result.returncode == 0, result.stderr
    return {"run_dir": run_dir, "lut": lut}
