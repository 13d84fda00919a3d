"""The fine-tuning calibration: a line from shared-weight CER to the WER verify measures."""

import numpy as np
import pytest

from predictnas.errors import PredictnasError
from predictnas.predictor.finetune import FinetuneCalibration, fit_calibration, verified_models

RECIPE = {"finetune_steps": 400, "from_scratch": False, "peak_lr": 1e-3, "batch_seconds": 40.0, "split": "test",
          "seed": 0}


def verification(models: list[tuple[str, float]], **recipe) -> dict:
    return {"settings": {**RECIPE, **recipe},
            "models": [{"name": name, "arch_id": name, "arch": {}, "measured": {"wer": {"all": wer}}}
                       for name, wer in models]}


def test_the_line_is_least_squares_with_leave_one_out_errors():
    models = [{"name": f"m{i}", "arch_id": f"m{i}", "verify": "v.json", "finetuned_wer": w}
              for i, w in enumerate([0.44, 0.63, 0.64, 0.75, 0.79])]
    cer = np.array([0.22, 0.395, 0.407, 0.517, 0.525])
    calibration = fit_calibration(RECIPE, models, cer, "abc")
    slope, intercept = np.polyfit(cer, [m["finetuned_wer"] for m in models], 1)
    assert (calibration.slope, calibration.intercept) == pytest.approx((slope, intercept))
    errors = []
    for i in range(5):
        rest = np.arange(5) != i
        line = np.polyfit(cer[rest], np.array([m["finetuned_wer"] for m in models])[rest], 1)
        errors.append(100 * abs(np.polyval(line, cer[i]) - models[i]["finetuned_wer"]))
    assert calibration.leave_one_out["median_points"] == pytest.approx(np.median(errors))
    assert calibration.leave_one_out["max_points"] == pytest.approx(max(errors))
    assert calibration(np.array([0.3]))[0] == pytest.approx(slope * 0.3 + intercept)
    assert calibration(np.array([-10.0]))[0] == 0.0  # a WER is never negative


def test_exact_line_round_trips_through_its_file(tmp_path):
    models = [{"name": n, "arch_id": n, "verify": "v", "finetuned_wer": 0.2 + 1.5 * c}
              for n, c in (("a", 0.1), ("b", 0.3), ("c", 0.5))]
    calibration = fit_calibration(RECIPE, models, np.array([0.1, 0.3, 0.5]), "abc")
    assert calibration.leave_one_out["max_points"] == pytest.approx(0.0, abs=1e-9)
    calibration.save(tmp_path / "finetune.json")
    again = FinetuneCalibration.load(tmp_path / "finetune.json")
    assert again == calibration and again.content_hash == calibration.content_hash
    (tmp_path / "other.json").write_text('{"format": "predictnas-predictor/1"}')
    with pytest.raises(PredictnasError, match="not a predictnas fine-tuning calibration"):
        FinetuneCalibration.load(tmp_path / "other.json")


def test_verify_runs_pool_one_row_per_model_and_only_of_one_recipe():
    recipe, models = verified_models([("a.json", verification([("x", 0.7), ("y", 0.8)])),
                                      ("b.json", verification([("y", 0.75), ("z", 0.9)]))])
    assert recipe == RECIPE
    assert {m["arch_id"]: (m["finetuned_wer"], m["verify"]) for m in models} == {
        "x": (0.7, "a.json"), "y": (0.75, "b.json"), "z": (0.9, "b.json")}  # the later run's y
    with pytest.raises(PredictnasError, match="another recipe.*finetune_steps 400 vs 100"):
        verified_models([("a.json", verification([("x", 0.7)])), ("b.json", verification([("y", 0.8)], finetune_steps=100))])
    with pytest.raises(PredictnasError, match="at least 3"):
        fit_calibration(RECIPE, models[:2], np.array([0.1, 0.2]), "abc")
    with pytest.raises(PredictnasError, match="c.json: not a verify.json"):
        verified_models([("c.json", {"settings": RECIPE, "models": [{"name": "x"}]})])
