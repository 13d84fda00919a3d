"""The last stages end to end on the tiny space, as a user runs them: search -> top.json -> verify.

Real parts throughout: a tiny supernet trained on the tiny corpus, a latency table measured here with
ONNX Runtime (quick protocol), an XGBoost predictor fit on evaluated subnets, ONNX fp32/int8 exports.
"""

import json
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from predictnas.bundle import Bundle
from predictnas.complexity import param_counts
from predictnas.space import SearchSpace, get_space
from predictnas.search import Scores
from predictnas.search.search import distinct_picks, parse_bytes, parse_count, parse_latency_ms
from predictnas.errors import PredictnasError
from predictnas.predictor import AccuracyPredictor, SQLiteStore
from predictnas.predictor.calibrate import FinetuneCalibration, descriptor_columns
from predictnas.report import predicted_wer_of

from commandline import REPO, one_error_line, run, start, tiny_experiment


@pytest.fixture(scope="module")
def experiment(env, tmp_path_factory) -> dict:
    return tiny_experiment(env, tmp_path_factory.mktemp("run"), "--n", 16, "--repeat", 0, "--no-proxies")


def budget_ms(experiment) -> float:
    """A budget inside the tiny space's range: the middle of the measured whole-model latencies."""
    low, high = json.loads(experiment["lut"].read_text())["accuracy"]["measured_range_ms"]
    return (low + high) / 2


def search(env, experiment, *args):
    return run(env, "search", "--run-dir", experiment["run_dir"], "--lut", experiment["lut"], "--no-progress", *args)


def test_units_parse_and_bad_budgets_are_one_line_errors():
    assert parse_latency_ms("40ms") == 40 and parse_latency_ms("0.04s") == 40 and parse_latency_ms("1500us") == 1.5
    assert parse_count("5M") == 5e6 and parse_count("500k") == 5e5 and parse_bytes("64MB") == 64e6
    assert parse_bytes("1MiB") == 1024 ** 2
    for bad in ("40", "fast", "-3ms", "0ms", "40 parsecs"):
        with pytest.raises(PredictnasError, match="latency budget"):
            parse_latency_ms(bad)


def test_top_k_skips_rows_the_predictor_and_the_table_cannot_tell_apart():
    best_first = Scores(wer=np.array([0.5, 0.5, 0.6, 0.6, 0.7]), latency_ms=np.array([10.0, 10.0, 9.0, 8.0, 7.0]))
    assert distinct_picks(best_first, 3).tolist() == [0, 2, 3]
    assert distinct_picks(best_first, 5).tolist() == [0, 2, 3, 4, 1]  # twins only when outcomes run out


def test_search_writes_the_bundle_the_front_and_the_plot(env, experiment):
    table = json.loads(experiment["lut"].read_text())
    budget = budget_ms(experiment)
    result = search(env, experiment, "--budget", f"{budget}ms", "--generations", 5, "--population", 200, "--top-k", 3)
    assert result.returncode == 0, result.stderr
    out = experiment["run_dir"]
    bundle = Bundle.load(out / "top.json")
    assert len(bundle.candidates) == 3
    assert all(c.predicted["latency_ms"] <= budget for c in bundle.candidates)
    assert [c.rank for c in bundle.candidates] == [1, 2, 3]
    assert bundle.model["sample_rate"] == 16000 and bundle.model["supernet"]["hash"]
    assert bundle.device["id"] == table["device"]["id"] and bundle.lut["hash"] and bundle.predictor["hash"]
    assert bundle.reference_input["frames"] == table["reference_input"]["frames"]
    assert bundle.search["candidates"] > 0 and bundle.search["seed"] == 0
    space = SearchSpace(bundle.space)
    for c in bundle.candidates:  # scored without budgets on them, filled in for the rows returned
        genes = space.encode(c.arch)[None]
        assert c.predicted["params"] == int(param_counts(space, genes)[0]) and c.predicted["memory_bytes"] > 0
    front = json.loads((out / "pareto.json").read_text())["front"]
    assert front and all(p["latency_ms"] <= budget and p["params"] > 0 and p["memory_bytes"] > 0 for p in front)
    latencies = [p["latency_ms"] for p in front]
    wers = [p["wer"] for p in front]
    assert latencies == sorted(latencies) and all(a >= b for a, b in zip(wers, wers[1:]))
    assert (out / "pareto.png").read_bytes()[:4] == b"\x89PNG"


def test_rescoring_measures_the_finalists_with_the_supernet_and_picks_by_the_measurement(env, experiment, tmp_path):
    budget = budget_ms(experiment)
    common = ("--budget", f"{budget}ms", "--generations", 3, "--population", 100, "--top-k", 2)
    plain, rescored = tmp_path / "plain" / "top.json", tmp_path / "rescored" / "top.json"
    assert search(env, experiment, *common, "--out", plain).returncode == 0
    result = search(env, experiment, *common, "--rescore", 6, "--out", rescored)
    assert result.returncode == 0, result.stderr
    assert "measured 6 finalists with the supernet" in result.stdout
    bundle = Bundle.load(rescored)
    assert bundle.search["rescored"] == 6
    with SQLiteStore(experiment["run_dir"] / "evals.sqlite") as store:  # the measurements joined the store
        measured = {r.arch_id: r.wer["all"] for r in store.records("dev")}
    lam = bundle.objective["lambda"]

    def reward(arch_id, latency_ms):
        return -measured[arch_id] - lam * np.log(latency_ms)

    picks = [(c.arch.arch_id, c.predicted["latency_ms"]) for c in bundle.candidates]
    assert [c.predicted["supernet_wer"] for c in bundle.candidates] == [measured[a] for a, _ in picks]
    assert reward(*picks[0]) >= reward(*picks[1])
    # the first finalist is the predictor's favourite (or a twin to it: equal predicted WER and latency),
    # the others come from the front, one per level of predicted WER; the pick is the best measured
    favourite, first = Bundle.load(plain).candidates[0].predicted, bundle.search["finalists"][0]
    assert (first["wer"], first["latency_ms"]) == pytest.approx((favourite["wer"], favourite["latency_ms"]))
    finalists = bundle.search["finalists"]
    from_front = min(6, len(json.loads((rescored.parent / "pareto.json").read_text())["front"]))
    assert len(finalists) == 6 and len({(f["wer"], f["latency_ms"]) for f in finalists[:from_front]}) == from_front
    assert reward(*picks[0]) == max(reward(f["arch_id"], f["latency_ms"]) for f in finalists)


def test_timing_the_finalists_picks_by_measured_latency_within_the_budget(env, experiment, tmp_path):
    budget = budget_ms(experiment)
    out = tmp_path / "top.json"
    result = search(env, experiment, "--budget", f"{budget}ms", "--generations", 3, "--population", 100, "--top-k", 2,
                    "--time-finalists", 5, "--out", out)
    assert result.returncode == 0, result.stderr
    assert "timed 5 finalists on this machine" in result.stdout
    bundle = Bundle.load(out)
    finalists = bundle.search["finalists"]
    assert bundle.search["timed"] == 5 and len(finalists) == 5 and "rescored" not in bundle.search
    assert all(f["measured_latency_ms"] > 0 for f in finalists)
    lam = bundle.objective["lambda"]
    within = {f["arch_id"]: -f["wer"] - lam * np.log(f["measured_latency_ms"])
              for f in finalists if f["measured_latency_ms"] <= budget}
    picks = [c.arch.arch_id for c in bundle.candidates]
    assert picks == sorted(within, key=within.get, reverse=True)[:2]
    for c in bundle.candidates:  # the table's estimate stays beside the timing, and the reward is the timing's
        timed = next(f for f in finalists if f["arch_id"] == c.arch.arch_id)
        # each pick timed 3 times, judged by the median
        assert timed["measured_latency_ms"] == pytest.approx(sorted(timed["latency_timings_ms"])[1])
        assert c.predicted["latency_ms"] == pytest.approx(timed["latency_ms"])
        assert c.predicted["measured_latency_ms"] == pytest.approx(timed["measured_latency_ms"])
        assert c.predicted["reward"] == pytest.approx(within[c.arch.arch_id])


def test_timing_on_another_machine_than_the_tables_is_refused(env, experiment, tmp_path):
    table = json.loads(experiment["lut"].read_text())
    table["device"]["fingerprint"]["cpu_model"] = "Some Other CPU"
    other = tmp_path / "other-lut.json"
    other.write_text(json.dumps(table))
    one_error_line(run(env, "search", "--run-dir", experiment["run_dir"], "--lut", other,
                       "--budget", f"{budget_ms(experiment)}ms", "--generations", 2, "--population", 50,
                       "--time-finalists", 3, "--out", tmp_path / "top.json"), "measured on other hardware")
    assert not (tmp_path / "top.json").exists()


def test_search_refuses_impossible_budgets_and_other_spaces(env, experiment, tmp_path):
    one_error_line(search(env, experiment, "--budget", "0.0005ms", "--generations", 1),
                   "below the fastest latency this space reaches")
    one_error_line(search(env, experiment, "--budget", "40"), "expected a number with a unit")
    shipped_table = next((REPO / "predictnas" / "pretrained" / "lut").glob("cpu-1t-fp32-*.json"))
    one_error_line(run(env, "search", "--run-dir", experiment["run_dir"], "--budget", "40ms", "--lut", shipped_table),
                   "the predictor was fit on space 'speech-tiny'")
    (tmp_path / "bad.json").write_text("{")
    one_error_line(search(env, experiment, "--budget", "40ms", "--predictor", tmp_path / "bad.json"), "not valid JSON")


def test_pareto_mode_returns_a_feasible_front(env, experiment, tmp_path):
    budget = budget_ms(experiment)
    out = tmp_path / "top.json"
    result = search(env, experiment, "--budget", f"{budget}ms", "--pareto", "--generations", 4, "--population", 100,
                    "--out", out)
    assert result.returncode == 0, result.stderr
    assert Bundle.load(out).objective["mode"] == "pareto"
    assert all(p["latency_ms"] <= budget for p in json.loads((tmp_path / "pareto.json").read_text())["front"])


@pytest.fixture(scope="module")
def bundle_path(env, experiment, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("search") / "top.json"
    budget = budget_ms(experiment)
    result = search(env, experiment, "--budget", f"{budget}ms", "--generations", 3, "--population", 100,
                    "--top-k", 2, "--out", out)
    assert result.returncode == 0, result.stderr
    return out


def verify(env, experiment, bundle_path, out, *args):
    return run(env, "verify", bundle_path, "--lut", experiment["lut"], "--finetune-steps", 2, "--protocol", "quick",
               "--no-progress", "--out", out, *args)


def test_verify_measures_compares_and_reports(env, experiment, bundle_path, tmp_path):
    baseline = tmp_path / "hand-made.json"
    baseline.write_text(Bundle.load(bundle_path).candidates[0].arch.to_json())  # any valid arch of the space
    out = tmp_path / "verify"
    result = verify(env, experiment, bundle_path, out, "--baseline", baseline, "--production-sample-rate", 8000)
    assert result.returncode == 0, result.stderr
    assert "feature mismatch" in result.stderr and "8000 Hz" in result.stderr
    assert "decoding mismatch" not in result.stderr and "training mismatch" not in result.stderr
    report = json.loads((out / "verify.json").read_text())
    # predicted and measured WERs are decoded alike: lexicon beam search over the training words
    assert report["decoding"] == Bundle.load(bundle_path).model["decoder"] and report["decoding"]["kind"] == "lexicon"
    names = [m["name"] for m in report["models"]]
    assert names == ["nas-1", "nas-2", "hand-made"]
    for m in report["models"]:
        latency = m["measured"]["latency"]  # timed 3 times (the default), the median reported
        assert latency["ms"] > 0 and m["measured"]["format"] == "fp32"
        assert len(latency["repeats_ms"]) == 3 and latency["ms"] == sorted(latency["repeats_ms"])[1]
        assert {"quiet_home", "industrial_warehouse", "all"} <= set(m["measured"]["wer"])
        assert set(m["inherited"]["wer"]) == set(m["measured"]["wer"])
        assert m["production"]["sample_rate"] == 8000
        assert Path(m["onnx"]["fp32"]).exists() and Path(m["onnx"]["int8"]).exists()
    nas = report["models"][0]
    assert nas["predicted"]["latency_ms"] > 0 and nas["budget_met"] in (True, False)
    assert "kendall_inherited_vs_finetuned" in report["summary"] and "best_baseline" in report["summary"]
    assert "| nas-1 |" in (out / "report.md").read_text() and "ms (median of 3: " in (out / "report.md").read_text()
    assert (out / "verify.png").read_bytes()[:4] == b"\x89PNG"


def test_baselines_from_scratch_beside_picks_fine_tuned_for_the_same_steps(env, experiment, bundle_path, tmp_path):
    baseline = tmp_path / "hand-made.json"
    baseline.write_text(Bundle.load(bundle_path).candidates[0].arch.to_json())  # the pick's architecture itself
    out = tmp_path / "verify"
    result = verify(env, experiment, bundle_path, out, "--baseline", baseline, "--baselines-from-scratch",
                    "--picks", 1)
    assert result.returncode == 0, result.stderr
    pick, hand_made = json.loads((out / "verify.json").read_text())["models"]
    assert (pick["name"], hand_made["name"]) == ("nas-1", "hand-made") and pick["arch_id"] == hand_made["arch_id"]
    assert pick["training"]["from_scratch"] is False and hand_made["training"]["from_scratch"] is True
    assert pick["training"]["steps"] == hand_made["training"]["steps"] == 2
    # the same architecture, trained from other starting weights
    weights = [torch.load(out / name / "train" / "model.pt", weights_only=True)["weights"]
               for name in ("nas-1", "hand-made")]
    assert any(not torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert "NAS picks fine-tuned from supernet weights, baselines from scratch" in (out / "report.md").read_text()


def test_calibrate_on_verified_models_then_search_for_their_finetuned_wer(env, experiment, bundle_path, tmp_path):
    space = get_space("speech-tiny")
    picks = {c.arch.arch_id for c in Bundle.load(bundle_path).candidates}
    with SQLiteStore(experiment["run_dir"] / "evals.sqlite") as store:  # other tests may have stored the picks
        stored = sorted((r for r in store.records("dev") if r.arch_id not in picks), key=lambda r: r.wer["all"])
    # the tiny supernet spells words for few subnets, so most score 100 % WER: as hand-made models beside the
    # picks, the stored subnets of lowest, middle and highest WER, so that there are two WERs at least to fit on
    assert stored[0].wer["all"] < stored[-1].wer["all"]
    baselines = []
    for i, record in enumerate((stored[0], stored[len(stored) // 2], stored[-1])):
        baselines += ["--baseline", tmp_path / f"hand-{i}.json"]
        (tmp_path / f"hand-{i}.json").write_text(space.from_json(record.arch).to_json())
    out = tmp_path / "verify"
    assert verify(env, experiment, bundle_path, out, *baselines).returncode == 0
    verified = {m["arch_id"]: (m["measured"]["wer"]["all"], space.encode(space.from_json(m["arch"])))
                for m in json.loads((out / "verify.json").read_text())["models"]}
    calibration_path = tmp_path / "finetune.json"
    result = run(env, "calibrate", out / "verify.json", "--run-dir", experiment["run_dir"], "--out", calibration_path,
                 "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "fine-tuned WER = " in result.stdout and "over 5 models" in result.stdout
    calibration = FinetuneCalibration.load(calibration_path)
    with SQLiteStore(experiment["run_dir"] / "evals.sqlite") as store:  # the shared-weight dev WER of each model
        shared = {r.arch_id: r.wer["all"] for r in store.records("dev")}
    genes = np.stack([g for _, g in verified.values()])
    every = ("log10_flops", "conv_fraction")
    wer = [w for w, _ in verified.values()]
    unconstrained = np.linalg.lstsq(np.column_stack([[shared[a] for a in verified], descriptor_columns(every, space, genes),
                                                     np.ones(len(verified))]), wer, rcond=None)[0]
    if unconstrained[0] > 0 and all(c <= 0 for c in unconstrained[1:-1]):  # signs fine-tuning can have: all kept
        assert calibration.inputs == ("wer/all", *every)
    assert calibration.source == "wer/all" and set(calibration.descriptors) <= set(every)
    if calibration.descriptors:  # kept only with the signs fine-tuning can have
        assert calibration.coefficients[0] > 0 and all(c <= 0 for c in calibration.coefficients[1:])
    described = descriptor_columns(calibration.descriptors, space, genes) if calibration.descriptors else np.zeros((5, 0))
    rows = {m["arch_id"]: (m["shared"], *(m[d] for d in calibration.descriptors), m["finetuned_wer"])
            for m in calibration.models}
    assert rows.keys() == verified.keys()
    for (arch_id, (measured, _)), d in zip(verified.items(), described):
        assert rows[arch_id] == pytest.approx((shared[arch_id], *d, measured))
    x = np.column_stack([[shared[a] for a in verified], described, np.ones(len(verified))])
    assert [*calibration.coefficients, calibration.intercept] == pytest.approx(np.linalg.lstsq(x, wer, rcond=None)[0])

    top = tmp_path / "search" / "top.json"
    result = search(env, experiment, "--budget", f"{budget_ms(experiment)}ms", "--generations", 3, "--population", 100,
                    "--top-k", 2, "--rescore", 4, "--finetune-calibration", calibration_path, "--out", top)
    assert result.returncode == 0, result.stderr
    bundle = Bundle.load(top)
    assert bundle.predictor["target"].startswith("finetuned") and bundle.predictor["finetune"]["models"] == len(rows)
    predictor = AccuracyPredictor.load(experiment["run_dir"] / "predictor.json")
    with SQLiteStore(experiment["run_dir"] / "evals.sqlite") as store:  # now with the finalists' evaluations
        shared = {r.arch_id: r.wer["all"] for r in store.records("dev")}
    for c in bundle.candidates:  # predicted: the predictor's WER and the genes through it; rescored: measured WER
        genes = space.encode(c.arch)[None]
        predicted = calibration(predictor.predict(genes, "wer/all"), space, genes)[0]
        assert c.predicted["wer"] == pytest.approx(predicted, rel=1e-5)
        assert c.predicted["supernet_wer"] == shared[c.arch.arch_id]
        assert c.predicted["finetuned_wer"] == pytest.approx(calibration([c.predicted["supernet_wer"]], space, genes)[0])
    # the calibration predicts the WER after verify's 2 steps; picks trained 3 are measured against it with a warning
    longer = verify(env, experiment, top, tmp_path / "longer", "--picks", 1, "--finetune-steps", 3)
    assert longer.returncode == 0, longer.stderr
    assert "training mismatch" in longer.stderr and "finetune_steps 2 -> 3" in longer.stderr
    assert any("finetune_steps 2 -> 3" in w for w in json.loads((tmp_path / "longer" / "verify.json").read_text())["warnings"])
    one_error_line(search(env, experiment, "--budget", f"{budget_ms(experiment)}ms", "--generations", 2,
                          "--finetune-calibration", calibration_path, "--environment", "quiet_home",
                          "--out", tmp_path / "env" / "top.json"), "estimates WER over every environment")


@pytest.mark.slow
def test_verify_resumes_after_a_kill_and_keeps_finished_models(env, experiment, bundle_path, tmp_path):
    out = tmp_path / "verify"
    proc = start(env, "verify", bundle_path, "--lut", experiment["lut"], "--finetune-steps", 2, "--protocol",
                      "quick", "--no-progress", "--out", out)
    first = out / "nas-1" / "result.json"
    deadline = time.monotonic() + 600
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert first.exists() and not (out / "verify.json").exists()
    stamp = first.stat().st_mtime_ns
    resumed = verify(env, experiment, bundle_path, out)
    assert resumed.returncode == 0, resumed.stderr
    assert first.stat().st_mtime_ns == stamp  # not redone
    assert [m["name"] for m in json.loads((out / "verify.json").read_text())["models"]] == ["nas-1", "nas-2"]
    # other settings would mix two recipes in one report: refused before any work
    one_error_line(verify(env, experiment, bundle_path, out, "--finetune-steps", 3), "verified with other settings")
    assert first.stat().st_mtime_ns == stamp


def test_verify_replaces_a_folder_left_by_another_model(env, experiment, bundle_path, tmp_path):
    """A bundle searched again into the same place: its nas-1 is another model, so nas-1's old weights and
    result must not be taken for the new one's."""
    out = tmp_path / "verify"
    assert verify(env, experiment, bundle_path, out).returncode == 0
    before = {m["name"]: m for m in json.loads((out / "verify.json").read_text())["models"]}
    bundle = json.loads(bundle_path.read_text())
    first, second = bundle["candidates"]
    for key in ("arch", "arch_id", "predicted"):  # nas-1 is now the former nas-2, and the other way round
        first[key], second[key] = second[key], first[key]
    swapped = tmp_path / "top.json"
    swapped.write_text(json.dumps(bundle))
    again = verify(env, experiment, swapped, out)
    assert again.returncode == 0, again.stderr
    after = {m["name"]: m for m in json.loads((out / "verify.json").read_text())["models"]}
    for name, other in (("nas-1", "nas-2"), ("nas-2", "nas-1")):
        assert after[name]["arch_id"] == before[other]["arch_id"]
        assert after[name]["params"] == before[other]["params"]  # the weights trained for this architecture


def test_verify_measures_again_what_was_decoded_otherwise_without_training_again(env, experiment, bundle_path,
                                                                               tmp_path):
    """A top.json and a verify folder from before decoders were recorded (greedy decoding): verify warns
    that the predictions were for another decoding, and scores the trained models again with the lexicon."""
    out = tmp_path / "verify"
    assert verify(env, experiment, bundle_path, out).returncode == 0
    result_path, weights = out / "nas-1" / "result.json", out / "nas-1" / "train" / "model.pt"
    result = json.loads(result_path.read_text())
    del result["decoding"]
    result_path.write_text(json.dumps(result))
    trained = weights.stat().st_mtime_ns
    bundle = json.loads(bundle_path.read_text())
    del bundle["model"]["decoder"]
    legacy = tmp_path / "top.json"
    legacy.write_text(json.dumps(bundle))
    again = verify(env, experiment, legacy, out)
    assert again.returncode == 0, again.stderr
    assert "decoding mismatch" in again.stderr and "greedy" in again.stderr
    measured = json.loads(result_path.read_text())
    assert measured["decoding"]["kind"] == "lexicon" and weights.stat().st_mtime_ns == trained
    assert measured["params"] == result["params"] and measured["training"] == result["training"]


def test_verify_refuses_a_table_from_other_hardware(env, experiment, bundle_path, tmp_path):
    table = json.loads(experiment["lut"].read_text())
    table["device"]["fingerprint"]["cpu_model"] = "Imaginary CPU 9000"
    other = tmp_path / "other.json"
    other.write_text(json.dumps(table))
    refused = run(env, "verify", bundle_path, "--lut", other, "--out", tmp_path / "v", "--no-progress")
    one_error_line(refused, "hardware gap")
    broken = tmp_path / "top.json"
    broken.write_text(bundle_path.read_text().replace('"format": "predictnas-top/1"', '"format": "zip"'))
    one_error_line(run(env, "verify", broken, "--out", tmp_path / "w"), "not a predictnas top.json")


def test_estimate_adds_the_predicted_errors(env, experiment, tmp_path):
    arch = tmp_path / "arch.json"
    from predictnas.space import get_space

    arch.write_text(get_space("speech-tiny").covering()[1].to_json())
    result = run(env, "estimate", arch, "--lut", experiment["lut"], "--predictor",
                 experiment["run_dir"] / "predictor.json", "--json")
    assert result.returncode == 0, result.stderr
    predicted = json.loads(result.stdout)["predicted"]
    assert {"wer/all", "wer/quiet_home", "cer/all"} <= set(predicted)
    assert all(0 <= v <= 2 for v in predicted.values())


def test_run_does_every_stage_and_a_second_run_skips_them(env, experiment, tmp_path):
    # the tiny space's own hand-crafted baselines are verified beside the picks, as with the defaults
    args = ("run", "--preset", "tiny", "--run-dir", tmp_path, "--lut", experiment["lut"], "--n", 10,
            "--search-seconds", 1, "--finetune-steps", 1, "--protocol", "quick", "--no-progress",
            "--budget", f"{budget_ms(experiment)}ms")
    first = run(env, *args)
    assert first.returncode == 0, first.stderr
    for name in ("supernet.pt", "evals.sqlite", "predictor.json", "top.json", "pareto.png", "verify/verify.json",
                 "verify/conformer-s/result.json", "verify/conformer-l/result.json"):
        assert (tmp_path / name).exists(), name
    # After its 24 steps the tiny supernet mostly outputs blanks. When every model scores 100 % WER (or too few
    # distinct ones were verified) there is nothing to fit: run says so in one line and the first round
    # stands. Otherwise the calibrated round runs.
    if "not calibrated: " in first.stderr:
        assert not (tmp_path / "finetune.json").exists() and not (tmp_path / "calibrated").exists()
        tops = ["top.json"]
    else:
        for name in ("finetune.json", "calibrated/top.json", "calibrated/pareto.png", "calibrated/verify/verify.json"):
            assert (tmp_path / name).exists(), f"{name}: {first.stderr[-1500:]}"
        # the second search optimized the WER verify measures: the calibration's estimate from the predictor's WER
        calibrated = Bundle.load(tmp_path / "calibrated" / "top.json")
        assert calibrated.predictor["target"].startswith("finetuned wer/all")
        calibration = FinetuneCalibration.load(tmp_path / "finetune.json")
        assert calibrated.predictor["finetune"]["hash"] == calibration.content_hash
        tops = ["top.json", "calibrated/top.json"]
    final = tmp_path / tops[-1]
    best = json.loads((final.parent / "verify" / "verify.json").read_text())["models"][0]
    assert best["arch_id"] == Bundle.load(final).candidates[0].arch.arch_id
    # the last line compares the same prediction and measurement as the verify report
    assert f"predicted WER {100 * predicted_wer_of(best):.2f} %" in first.stdout
    assert f"verify measured {100 * best['measured']['wer']['all']:.2f} %" in first.stdout
    stamps = {name: (tmp_path / name).stat().st_mtime_ns for name in tops}
    again = run(env, *args)
    assert again.returncode == 0 and again.stderr.count("top.json exists, kept") == len(tops)
    assert stamps == {name: (tmp_path / name).stat().st_mtime_ns for name in stamps}
