"""Scale-out on a real local Ray cluster: subnet evaluation and verify's trainings as Ray tasks.

The cluster is started with ``ray start --head`` as a user would; the commands reach it with
``--ray-address``. The driver alone writes the store and the verify folder, so the results must equal a
local run's, also when a Ray worker is killed mid-way.
"""

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from predictnas.predictor import SQLiteStore
from predictnas.space import SearchSpace
from predictnas.supernet import load_supernet

from commandline import run, start, tiny_experiment

pytest.importorskip("ray")
pytestmark = pytest.mark.slow

RAY = str(Path(sys.executable).parent / "ray")
WORKER = "_RayWorker"  # the actor class: its processes are named after it


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(env):
    port = free_port()
    started = subprocess.run([RAY, "start", "--head", "--num-cpus", "2", "--port", str(port),
                              "--include-dashboard=false", "--disable-usage-stats"], env=env, capture_output=True,
                             text=True, timeout=300)
    assert started.returncode == 0, started.stderr
    yield f"127.0.0.1:{port}"
    subprocess.run([RAY, "stop", "--force"], env=env, capture_output=True, timeout=300)


@pytest.fixture(scope="module")
def experiment(env, tmp_path_factory) -> dict:
    """A tiny supernet, its store evaluated by local processes (the reference), a predictor, a table."""
    return tiny_experiment(env, tmp_path_factory.mktemp("run"), "--n", 12, "--repeat", 2)


def records(path: Path) -> dict:
    with SQLiteStore(path) as store:
        return {(r.protocol, r.arch_id): (r.wer, r.cer, r.intent_accuracy, r.params, r.flops)
                for protocol in ("dev", "repeat") for r in store.records(protocol)}


def row_count(path: Path) -> int:
    try:
        with sqlite3.connect(path) as db:
            return db.execute("SELECT COUNT(*) FROM evals").fetchone()[0]
    except sqlite3.Error:
        return 0


def copy_supernet(experiment, folder: Path) -> None:
    (folder / "supernet.pt").write_bytes((experiment["run_dir"] / "supernet.pt").read_bytes())


def test_sample_on_ray_stores_what_local_workers_store(env, cluster, experiment, tmp_path):
    copy_supernet(experiment, tmp_path)
    result = run(env, "sample", "--n", 12, "--repeat", 2, "--run-dir", tmp_path, "--ray-address", cluster,
                 "--no-progress")
    assert result.returncode == 0, result.stderr
    assert records(tmp_path / "evals.sqlite") == records(experiment["run_dir"] / "evals.sqlite")


def test_a_killed_ray_worker_is_replaced_and_nothing_is_lost_or_stored_twice(env, cluster, experiment, tmp_path):
    copy_supernet(experiment, tmp_path)
    store = tmp_path / "evals.sqlite"
    proc = start(env, "sample", "--n", 12, "--repeat", 2, "--run-dir", tmp_path, "--ray-address", cluster,
                 "--no-progress")
    deadline = time.monotonic() + 600
    while proc.poll() is None and row_count(store) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    workers = subprocess.run(["pgrep", "-f", WORKER], capture_output=True, text=True).stdout.split()
    assert workers and proc.poll() is None, "the sample ended before a worker could be killed"
    os.kill(int(workers[0]), signal.SIGKILL)
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err
    assert records(store) == records(experiment["run_dir"] / "evals.sqlite")
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT COUNT(*) FROM evals").fetchone()[0] == 14


def test_verify_trains_on_ray_and_ends_like_a_local_verify(env, cluster, experiment, tmp_path):
    top = tmp_path / "top.json"
    low, high = json.loads(experiment["lut"].read_text())["accuracy"]["measured_range_ms"]
    result = run(env, "search", "--run-dir", experiment["run_dir"], "--lut", experiment["lut"], "--budget",
                 f"{(low + high) / 2}ms", "--generations", 3, "--population", 100, "--top-k", 2, "--out", top,
                 "--no-progress")
    assert result.returncode == 0, result.stderr
    verified = {}
    for where, extra in (("local", ()), ("ray", ("--ray-address", cluster))):
        result = run(env, "verify", top, "--lut", experiment["lut"], "--finetune-steps", 3, "--protocol", "quick",
                     "--out", tmp_path / where, "--no-progress", *extra)
        assert result.returncode == 0, result.stderr
        verified[where] = json.loads((tmp_path / where / "verify.json").read_text())["models"]
    assert "on the Ray cluster" in result.stderr
    supernet = load_supernet(experiment["run_dir"] / "supernet.pt")
    space = SearchSpace(supernet.space)
    for local, on_ray in zip(verified["local"], verified["ray"]):
        assert local["name"] == on_ray["name"] and on_ray["training"]["seconds"] > 0
        a, b = (torch.load(tmp_path / where / local["name"] / "train" / "model.pt", weights_only=True)["weights"]
                for where in ("local", "ray"))
        start = supernet.extract(space.from_json(local["arch"])).state_dict()
        # the same training: 1 thread on an actor and 2 here sum in other orders (in bfloat16 where the CPU
        # has it), so the weights differ by far less than the training moved them
        moved = sum(float((a[k] - start[k]).norm() ** 2) for k in a) ** 0.5
        apart = sum(float((a[k] - b[k]).norm() ** 2) for k in a) ** 0.5
        assert moved > 0 and apart < 0.2 * moved, (local["name"], apart, moved)
