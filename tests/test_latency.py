"""Latency tables on the tiny space, built for real (ONNX Runtime sessions) with the quick protocol.

Tests assert behaviour, never timings: every number here comes from a loaded, shared machine.
"""

import json
import re
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from predictnas.complexity import param_counts
from predictnas.errors import PredictnasError
from predictnas.latency import (DEVICES, Calibration, DeviceMismatch, Entry, Frames, Key, LatencyEstimator,
                                LatencyTable, Measurement, MissingEntry, arch_keys, enumerate_keys,
                                fingerprint_mismatch, get_device)
from predictnas.latency.build import BuildSettings, table_for_this_machine
from predictnas.latency.calibration import fit
from predictnas.latency.table import default_table_path, find_table
from predictnas.ranking import kendall, spearman
from predictnas.space import get_space

import commandline
from commandline import REPO, predictnas as run

BUILD_ARGS = ("build-lut", "--space", "speech-tiny", "--input-seconds", "0.5", "--protocol", "quick",
              "--calibration", "6", "--heldout", "4", "--no-progress")


def one_error_line(result, message: str) -> None:
    commandline.one_error_line(result, message, alone=True)


@pytest.fixture(scope="module")
def tiny():
    return get_space("speech-tiny")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A real build on the tiny space, killed mid-way (SIGKILL) and resumed: (table path, partial snapshot)."""
    root = tmp_path_factory.mktemp("lut")
    out = root / "tiny.json"
    partial = root / "tiny.partial.json"
    process = subprocess.Popen([sys.executable, "-m", "predictnas", *BUILD_ARGS, "--out", str(out)], cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    snapshot = None
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and process.poll() is None:
        if partial.exists():
            data = json.loads(partial.read_text())  # written atomically: never half a file
            if data["entries"]:
                process.send_signal(signal.SIGKILL)
                snapshot = data
                break
        time.sleep(0.01)
    process.wait(timeout=30)
    assert snapshot is not None, "the build finished (or hung) before any entry was saved; cannot test resume"
    assert not out.exists() and partial.exists()
    resumed = run(*BUILD_ARGS, "--out", out)
    assert resumed.returncode == 0, resumed.stderr
    return out, snapshot, resumed


@pytest.fixture(scope="module")
def table(built):
    return LatencyTable.load(built[0])


@pytest.mark.slow
def test_a_killed_build_resumes_without_measuring_again(built, table):
    out, snapshot, resumed = built
    assert "resuming" in resumed.stderr and not out.with_name("tiny.partial.json").exists()
    assert table.build["attempts"] == 2
    saved = {Entry.from_dict(e).key: e for e in snapshot["entries"]}
    assert 0 < len(saved) < len(table.entries)
    for key, entry in table.entries.items():
        if key in saved:  # kept exactly as measured before the kill
            assert entry.attempt == 0 and entry.to_dict() == saved[key]
        else:
            assert entry.attempt == 1
    before = snapshot["models"]["heldout_first"]
    after = table.models["heldout"][:len(before)]
    assert [m["measurement"] for m in before] == [m["measurement"] for m in after]
    assert [m["attempt"] for m in after] == [0] * len(before)


def test_the_table_holds_exactly_the_enumerated_keys_and_every_arch_finds_its_own(table, tiny, rng):
    assert set(table.entries) == set(enumerate_keys(tiny.config, table.frames))
    archs = tiny.covering() + [tiny.decode(g) for g in tiny.sample(3000, rng)]
    for arch in archs:
        for key in arch_keys(arch, table.frames):
            assert key in table.entries, (arch.to_json(), str(key))
    frames = {k["frames"] for k in table.entries}
    assert frames == {table.frames.input, table.frames.encoder, table.frames.reduced} == {51, 13, 7}


def test_vectorized_estimates_equal_the_per_arch_path_exactly(table, tiny, rng):
    estimator = LatencyEstimator(table, tiny)
    genes = np.concatenate([tiny.sample(4000, rng), np.stack([tiny.encode(a) for a in tiny.covering()])])
    vectorized = estimator.estimate(genes)
    assert np.array_equal(vectorized, estimator.estimate(np.ascontiguousarray(genes)))  # any layout
    per_arch = np.array([estimator.estimate_arch(tiny.decode(row)) for row in genes])
    assert np.array_equal(vectorized, per_arch)
    assert np.all(vectorized > 0) and len(np.unique(vectorized)) > 100
    ns, params = estimator.raw(genes)
    assert np.array_equal(params, param_counts(tiny, genes))  # weight bytes agree with the closed form


def test_the_walk_runs_the_models_skip_adds(tiny, rng):
    from predictnas.supernet.subnet import skip_counts

    frames = Frames.of(51)
    for genes in tiny.sample(500, rng):
        arch = tiny.decode(genes)
        assert sum(k.module == "skip" for k in arch_keys(arch, frames)) == sum(skip_counts(arch))
        assert sum(k.module == "downsample" for k in arch_keys(arch, frames)) == int(bool(arch.downsample_after))


def test_calibration_and_fidelity_are_recorded(table, built):
    assert isinstance(table.calibration, Calibration) and table.calibration.a > 0
    for name in ("heldout", "heldout_raw_sum", "calibration_fit"):
        assert {"mape", "within_10", "spearman", "kendall", "n"} <= set(table.accuracy[name])
    assert table.accuracy["heldout"]["n"] == 4 and table.accuracy["test_retest"]["n"] == 4
    assert 0 <= table.accuracy["test_retest"]["within_10"] <= 1
    assert len(table.models["calibration"]) == 6 and len(table.models["heldout"]) == 4
    calibration_ids = {m["arch_id"] for m in table.models["calibration"]}
    assert calibration_ids.isdisjoint(m["arch_id"] for m in table.models["heldout"])
    assert all("second" in m and "predicted_ms" in m for m in table.models["heldout"])
    assert table.reference_ms > 0 and table.protocol["name"] == "quick"
    assert "held-out (4 subnets): MAPE" in built[2].stdout and "noise floor" in built[2].stdout


def test_calibration_fit_recovers_a_weight_knee():
    rng = np.random.default_rng(0)
    raw = rng.uniform(5, 100, 40)
    weights = rng.uniform(1e6, 30e6, 40)
    truth = Calibration(a=0.8, b=1.5, c=0.9, w0_bytes=float(np.sort(weights)[25]))
    fitted = fit(raw, weights, truth.apply(raw, weights))
    assert fitted.w0_bytes == truth.w0_bytes
    assert np.allclose([fitted.a, fitted.b, fitted.c], [truth.a, truth.b, truth.c], rtol=1e-6)
    plain = fit(raw, weights, 2.0 * raw + 1.0)  # no knee in the data: none is fitted
    assert plain.c == 0 and np.isclose(plain.a, 2.0)


def test_rank_correlations():
    a = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    assert spearman(a, a ** 2) == pytest.approx(1.0) and kendall(a, -a) == pytest.approx(-1.0)
    assert kendall(a, np.array([1.0, 3.0, 2.0, 4.0, 5.0])) == pytest.approx(0.8)


def test_keys_are_structured_and_round_trip_through_json():
    key = Key.of("conv", width=32, kind="dwsep", kernel=7, dilation=2, frames=13)
    assert key.to_dict() == {"module": "conv", "width": 32, "kind": "dwsep", "kernel": 7, "dilation": 2, "frames": 13}
    assert Key.from_dict(json.loads(json.dumps(key.to_dict()))) == key and key["kernel"] == 7
    with pytest.raises(PredictnasError, match="fields"):
        Key.from_dict({"module": "conv", "width": 32})


@pytest.mark.parametrize("name", sorted(DEVICES))
def test_every_registered_device_fingerprints_prepares_and_runs_a_graph(name, tiny):
    from predictnas.latency.modules import entry_graph
    from predictnas.latency.protocol import Protocol, measure

    device = get_device(name)
    assert get_device(f"{name}:2").fingerprint()["threads"] == 2
    fp = device.fingerprint()
    assert {"cpu_model", "cores", "threads", "ort_version", "provider", "dtype"} <= set(fp)
    assert re.fullmatch(r"cpu-1t-(fp32|int8)-[0-9a-f]{8}", device.device_id)
    assert device.device_id == get_device(name).device_id  # stable
    graph = entry_graph(Key.of("ffn", width=32, ffn_dim=64, frames=13), tiny.config)
    prepared = device.prepare(graph.model)
    import onnx

    ops = {n.op_type for n in onnx.load_from_string(prepared).graph.node}
    assert ("MatMulInteger" in ops or "DynamicQuantizeMatMul" in ops) == (fp["dtype"] == "int8")
    graph = replace(graph, model=prepared)
    m = measure(device, graph, Protocol(warmup=1, min_runs=3, max_runs=3, sessions=2, retries=0))
    assert m.runs == 6 and m.sessions == 2 and m.ms > 0 and m.p90_ms >= m.median_ms > 0 and m.cv >= 0
    noisy = measure(device, graph, Protocol(warmup=1, min_runs=3, max_runs=3, sessions=1, max_cv=-1.0, retries=2))
    assert noisy.sessions == 3 and noisy.runs == 9  # always "too noisy": measured again, pooled


def test_a_table_from_other_hardware_is_detected(table, tmp_path, tiny):
    device = get_device(table.device["name"])
    assert fingerprint_mismatch(table.device["fingerprint"], device.fingerprint()) is None
    other = {**table.device["fingerprint"], "cpu_model": "Imaginary CPU 9000", "ort_version": "0.1"}
    message = fingerprint_mismatch(other, device.fingerprint())
    assert "cpu_model 'Imaginary CPU 9000'" in message and "ort_version" in message and "dtype" not in message
    assert table.check_device() is None
    moved = replace(table, device={**table.device, "fingerprint": other})
    with pytest.raises(DeviceMismatch, match="ort_version"):
        moved.check_device()
    assert "cpu_model" in moved.check_device(allow_mismatch=True) and "--adapt-from" in moved.check_device(True)
    data = json.loads(Path(table.source).read_text())
    data["device"]["fingerprint"] = other
    path = tmp_path / "other.json"
    path.write_text(json.dumps(data))
    arch = tmp_path / "arch.json"
    arch.write_text(tiny.covering()[0].to_json())
    result = run("estimate", arch, "--lut", path)
    assert result.returncode == 0 and "warning: hardware gap" in result.stderr and "Imaginary" in result.stderr
    assert re.search(r"[0-9.]+ ms predicted", result.stdout) and "parameters" in result.stdout


def test_cpu_generations_are_told_apart_and_the_closest_table_stands_in(table, tmp_path):
    here = get_device("cpu").fingerprint()
    assert {"cpu_vendor", "cpu_family", "cpu_model_number", "cpu_stepping", "isa", "cache_kb"} <= set(here)
    assert "L3" not in here["cache_kb"]  # a virtual machine reports its host's slicing there
    fewer = [flag for flag in here["isa"] if not flag.startswith(("avx512", "amx"))] + ["sse9"]
    message = fingerprint_mismatch({**here, "isa": fewer}, here)
    assert message and "isa" in message and "cpu_model" not in message  # one model name, another CPU
    assert "records no isa" in fingerprint_mismatch({k: v for k, v in here.items() if k != "isa"}, here)
    data = json.loads(Path(table.source).read_text())
    for name, changes in (("a-far.json", {"isa": fewer, "cpu_model": "Far"}), ("b-near.json", {"cpu_model": "Near"})):
        data["device"]["fingerprint"] = {**here, **changes}
        (tmp_path / name).write_text(json.dumps(data))
    assert find_table("cpu", "speech-tiny", [tmp_path]).name == "b-near.json"  # same instruction set


def test_the_speed_probe_finds_another_machine_under_the_same_fingerprint(table):
    standard = replace(table, protocol={**table.protocol, "name": "standard", "speed_probe": True})
    assert standard.hardware_gap() is None or "reference graph" in standard.hardware_gap()
    slower = replace(standard, reference_ms=standard.reference_ms * 10)  # as if built on a 10x slower machine
    assert "reference graph runs in" in slower.hardware_gap()
    with pytest.raises(DeviceMismatch, match="reference graph"):
        slower.check_device()
    assert replace(slower, protocol=table.protocol).hardware_gap() is None  # quick tables are not probed


def test_a_table_of_another_machine_is_adapted_here(table, tmp_path):
    foreign = json.loads(Path(table.source).read_text())
    foreign["device"]["fingerprint"] = {**foreign["device"]["fingerprint"], "cpu_model": "Imaginary CPU 9000",
                                        "isa": ["sse9"]}
    foreign["device"]["id"] = "cpu-1t-fp32-00000000"
    source = tmp_path / "foreign.json"
    source.write_text(json.dumps(foreign))
    out = tmp_path / "adapted.json"
    result = run("build-lut", "--adapt-from", source, "--calibration", 4, "--heldout", 3, "--out", out,
                 "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "adapted to" in result.stdout and "held-out (3 subnets, timed here)" in result.stdout
    adapted, original = LatencyTable.load(out), LatencyTable.load(source)
    assert adapted.check_device() is None and adapted.device_id == get_device("cpu").device_id
    assert adapted.entries == original.entries  # the per-entry structure is kept...
    assert adapted.calibration != original.calibration  # ...the scale refitted on subnets timed here
    assert adapted.build["adapted_from"]["id"] == "cpu-1t-fp32-00000000"
    assert len(adapted.models["calibration"]) == 4 and adapted.accuracy["heldout"]["n"] == 3
    assert not list(tmp_path.glob("*.adapting.json"))


def test_the_pipeline_adapts_a_table_of_another_machine_and_builds_where_there_is_none(table, tmp_path):
    """``table_for_this_machine``: a table of another machine in the directory is adapted to this one; with
    none there, one is built; either is found the next time without measuring."""
    device, logged = get_device("cpu"), []
    settings = BuildSettings(space="speech-tiny", input_seconds=0.5, protocols="quick", calibration_models=4,
                             heldout_models=3)
    empty = tmp_path / "empty"
    empty.mkdir()
    path = table_for_this_machine(device, settings, empty, progress=False, log=logged.append)
    assert path == default_table_path(device.device_id, "speech-tiny", empty) and "building it" in logged[0]
    assert LatencyTable.load(path).check_device() is None
    foreign = json.loads(Path(table.source).read_text())
    foreign["device"]["fingerprint"]["cpu_model"] = "Imaginary CPU 9000"
    (tmp_path / "speech-tiny-cpu-1t-fp32-00000000.json").write_text(json.dumps(foreign))
    logged[:] = []
    path = table_for_this_machine(device, settings, tmp_path, progress=False, log=logged.append)
    assert path == default_table_path(device.device_id, "speech-tiny", tmp_path) and "adapting" in logged[0]
    adapted = LatencyTable.load(path)
    assert adapted.check_device() is None and adapted.build["adapted_from"]
    stamp, logged[:] = path.stat().st_mtime_ns, []
    assert table_for_this_machine(device, settings, tmp_path, progress=False, log=logged.append) == path
    assert path.stat().st_mtime_ns == stamp and not logged


def test_estimate_prints_latency_and_params(table, tmp_path, tiny):
    arch = tiny.covering()[1]
    path = tmp_path / "arch.json"
    path.write_text(arch.to_json())
    result = run("estimate", path, "--lut", table.source, "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["latency_ms"] == LatencyEstimator(table).estimate_arch(arch)
    assert out["params"] == int(param_counts(tiny, tiny.encode(arch)[None])[0]) and out["hardware_gap"] is None


def _corrupt(data: dict, how: str) -> str:
    if how == "truncated":
        return json.dumps(data)[:2000]
    if how == "old schema":
        data["schema"] = 0
    elif how == "malformed":
        data["entries"][3]["key"] = {"module": "attention", "width": 32}
    elif how == "not a table":
        data = {"hello": "world"}
    return json.dumps(data)


@pytest.mark.parametrize("how, message", [
    ("truncated", "not valid JSON"),
    ("old schema", "schema version 0 is not supported"),
    ("malformed", "malformed latency table (entries[3]"),
    ("not a table", "not a predictnas latency table"),
])
def test_bad_tables_are_one_error_line_and_exit_2(table, tmp_path, tiny, how, message):
    path = tmp_path / "bad.json"
    path.write_text(_corrupt(json.loads(Path(table.source).read_text()), how))
    arch = tmp_path / "arch.json"
    arch.write_text(tiny.covering()[0].to_json())
    one_error_line(run("estimate", arch, "--lut", path), message)


def test_a_shape_missing_from_the_table_is_one_error_line(table, tmp_path, tiny):
    arch = tiny.covering()[2]
    needed = next(k for k in arch_keys(arch, table.frames) if k.module == "ffn")
    data = json.loads(Path(table.source).read_text())
    data["entries"] = [e for e in data["entries"] if Key.from_dict(e["key"]) != needed]
    path = tmp_path / "holey.json"
    path.write_text(json.dumps(data))
    arch_path = tmp_path / "arch.json"
    arch_path.write_text(arch.to_json())
    one_error_line(run("estimate", arch_path, "--lut", path), f"no entry for {needed}")
    holey = LatencyTable.load(path)
    estimator = LatencyEstimator(holey, tiny)  # the rest of the space is still usable
    with pytest.raises(MissingEntry, match=re.escape(str(needed))):
        estimator.estimate(tiny.encode(arch)[None])
    others = [tiny.encode(a) for a in tiny.covering() if needed not in arch_keys(a, holey.frames)]
    assert np.all(estimator.estimate(np.stack(others)) > 0)


def test_unknown_device_space_or_protocol_is_one_error_line(tmp_path):
    one_error_line(run("build-lut", "--device", "tpu", "--out", tmp_path / "x.json"), "unknown device 'tpu'")
    one_error_line(run("build-lut", "--device", "cpu:0", "--out", tmp_path / "x.json"), "unknown device")
    one_error_line(run("build-lut", "--protocol", "sloppy", "--out", tmp_path / "x.json"), "unknown protocol")
    one_error_line(run("estimate", tmp_path / "arch.json", "--device", "tpu"), "unknown device")
    assert not (tmp_path / "x.json").exists()


def test_a_table_for_another_space_is_refused(table):
    with pytest.raises(PredictnasError, match="built for search space 'speech-tiny'"):
        LatencyEstimator(table, get_space())


def test_measurements_round_trip(table):
    entry = next(iter(table.entries.values()))
    assert Entry.from_dict(json.loads(json.dumps(entry.to_dict()))) == entry
    assert isinstance(entry.measurement, Measurement) and entry.ns == round(entry.measurement.ms * 1e6)


def test_measured_graphs_compute_what_the_model_computes(tiny):
    """Entry graphs and whole-subnet graphs (exported without initializer dedup) equal PyTorch."""
    import onnxruntime as ort
    import torch

    from predictnas.latency.modules import ENTRY_MODULES, arch_seed, entry_graph, subnet_graph
    from predictnas.supernet.subnet import Subnet

    arch = tiny.covering()[-1]
    graph = subnet_graph(arch, tiny.config, 51)
    torch.manual_seed(arch_seed(arch))
    expected = Subnet(arch, tiny.config).eval()(torch.from_numpy(graph.feeds["features"]))
    got = ort.InferenceSession(graph.model).run(None, graph.feeds)
    assert np.abs(got[0] - expected.ctc_logits.detach().numpy()).max() < 1e-4
    assert graph.params == sum(p.numel() for p in Subnet(arch, tiny.config).parameters())
    for key in enumerate_keys(tiny.config, Frames.of(51))[::7]:
        entry = entry_graph(key, tiny.config)
        torch.manual_seed(0)
        module = ENTRY_MODULES[key.module](key, tiny.config).eval()
        want = module(*(torch.from_numpy(a) for a in entry.feeds.values()))
        want = want if isinstance(want, tuple) else (want,)
        for w, g in zip(want, ort.InferenceSession(entry.model).run(None, entry.feeds)):
            assert np.abs(w.detach().numpy() - g).max() < 1e-4, str(key)


def test_reference_normalization_scales_by_the_pooled_reference_now(tiny):
    from predictnas.latency.modules import entry_graph
    from predictnas.latency.protocol import Protocol, measure

    class Steady:  # a reference that always takes 4 ms "now"
        def runs_ms(self, runs, warmup=2):
            return np.full(runs, 4.0)

    device = get_device("cpu")
    graph = entry_graph(Key.of("heads", width=32, frames=13), tiny.config)
    protocol = Protocol(warmup=1, min_runs=5, max_runs=5, sessions=1, retries=0)
    same = measure(device, graph, protocol, reference=Steady(), reference_ms=4.0)
    assert same.ms == pytest.approx(same.median_ms, rel=1e-9)
    slower_now = measure(device, graph, protocol, reference=Steady(), reference_ms=8.0)  # host twice as fast then
    assert slower_now.ms == pytest.approx(2 * slower_now.median_ms, rel=1e-9)

    class Jumpy:  # one slow bracket among steady ones: the pooled median ignores it
        calls = 0

        def runs_ms(self, runs, warmup=2):
            Jumpy.calls += 1
            return np.full(runs, 40.0 if Jumpy.calls == 2 else 4.0)

    three = Protocol(warmup=1, min_runs=5, max_runs=5, sessions=3, retries=0, max_cv=10.0)
    pooled = measure(device, graph, three, reference=Jumpy(), reference_ms=4.0)
    assert pooled.ms == pytest.approx(pooled.median_ms, rel=0.3) and Jumpy.calls == 6
