"""The fine-tuning calibration: least squares from shared-weight WER and architecture descriptors to the WER
verify measures."""

import json

import numpy as np
import pytest

from predictnas.errors import PredictnasError
from predictnas.complexity import flops, param_counts
from predictnas.predictor.calibrate import (DEFAULT_DESCRIPTORS, FLOPS_FRAMES, FinetuneCalibration, descriptor_columns,
                                           fit_calibration, fit_monotone_calibration, verified_models)
from predictnas.space import get_space

RECIPE = {"finetune_steps": 400, "from_scratch": False, "peak_lr": 1e-3, "batch_seconds": 40.0, "precision": "auto",
          "split": "test", "seed": 0}
# shared-weight dev WER, parameters and fine-tuned WER of six models verified on a small-preset run (lexicon decoding)
SHARED = np.array([0.923, 0.857, 0.707, 0.481, 0.838, 0.372])
PARAMS = np.array([361_093, 1_208_277, 3_767_197, 3_770_293, 758_989, 6_886_517])
FINETUNED = [0.753, 0.583, 0.411, 0.284, 0.634, 0.243]


def verification(models: list[tuple[str, float]], **recipe) -> dict:
    return {"settings": {**RECIPE, **recipe},
            "models": [{"name": name, "arch_id": name, "arch": {}, "measured": {"wer": {"all": wer}}}
                       for name, wer in models]}


def rows(finetuned) -> list[dict]:
    return [{"name": f"m{i}", "arch_id": f"m{i}", "verify": "v.json", "finetuned_wer": w} for i, w in enumerate(finetuned)]


def least_squares(x: np.ndarray, y) -> np.ndarray:
    return np.linalg.lstsq(np.column_stack([x, np.ones(len(x))]), np.asarray(y), rcond=None)[0]


def test_wer_and_descriptors_are_fitted_by_least_squares_with_leave_one_out_errors():
    described = np.log10(PARAMS)[:, None]
    calibration = fit_calibration(RECIPE, rows(FINETUNED), SHARED, "abc", descriptors=("log10_params",),
                                  described=described)
    assert calibration.inputs == ("wer/all", "log10_params")
    x = np.column_stack([SHARED, described])
    *coefficients, intercept = least_squares(x, FINETUNED)
    assert calibration.coefficients == pytest.approx(coefficients) and calibration.intercept == pytest.approx(intercept)
    errors = []
    for i in range(len(x)):
        rest = np.arange(len(x)) != i
        *c, b = least_squares(x[rest], np.array(FINETUNED)[rest])
        errors.append(100 * abs(x[i] @ c + b - FINETUNED[i]))
    assert calibration.leave_one_out["median_points"] == pytest.approx(np.median(errors))
    assert calibration.leave_one_out["max_points"] == pytest.approx(max(errors))
    assert calibration.apply([[0.5, 6.0]])[0] == pytest.approx(0.5 * coefficients[0] + 6.0 * coefficients[1] + intercept)
    assert calibration.apply([[-10.0, 6.0]])[0] == 0.0  # a WER is never negative
    assert [m["log10_params"] for m in calibration.models] == pytest.approx(list(np.log10(PARAMS)))
    with pytest.raises(PredictnasError, match="needs each model's architecture"):
        calibration([0.5])


def test_descriptors_are_computed_from_the_genes():
    space = get_space("speech-tiny")
    genes = space.sample(64, np.random.default_rng(0))
    columns = descriptor_columns(("log10_params", "log10_flops", "conv_fraction"), space, genes)
    assert columns[:, 0] == pytest.approx(np.log10(param_counts(space, genes)))
    assert columns[:, 1] == pytest.approx(np.log10(flops(space, genes, FLOPS_FRAMES)))
    for row, share in zip(genes, columns[:, 2]):  # blocks with a conv module, of all blocks
        blocks = space.decode(row).blocks
        assert share == pytest.approx(sum(b.conv_kind != "none" for b in blocks) / len(blocks))
    assert {0.0, 1.0} <= set(columns[:, 2]) and 0 < columns[:, 2].mean() < 1
    # the estimate of gene rows is the estimate of their columns
    calibration = fit_calibration(RECIPE, rows(FINETUNED), SHARED, "abc", descriptors=DEFAULT_DESCRIPTORS,
                                  described=descriptor_columns(DEFAULT_DESCRIPTORS, space, genes[:6]))
    shared = np.linspace(0.3, 0.9, 8)
    assert calibration(shared, space, genes[:8]) == pytest.approx(
        calibration.apply(np.column_stack([shared, descriptor_columns(DEFAULT_DESCRIPTORS, space, genes[:8])])))


def test_a_line_in_cer_alone_round_trips_through_its_file(tmp_path):
    cer = np.array([0.1, 0.3, 0.5])
    calibration = fit_calibration(RECIPE, rows(0.2 + 1.5 * cer), cer, "abc", source="cer/all")
    assert (calibration.inputs, calibration.coefficients[0], calibration.intercept) == (
        ("cer/all",), pytest.approx(1.5), pytest.approx(0.2))
    assert calibration.leave_one_out["max_points"] == pytest.approx(0.0, abs=1e-9)
    calibration.save(tmp_path / "finetune.json")
    again = FinetuneCalibration.load(tmp_path / "finetune.json")
    assert again == calibration and again.content_hash == calibration.content_hash
    (tmp_path / "other.json").write_text('{"format": "predictnas-predictor/1"}')
    with pytest.raises(PredictnasError, match="not a predictnas fine-tuning calibration"):
        FinetuneCalibration.load(tmp_path / "other.json")
    data = again.to_dict() | {"descriptors": ["flops"], "coefficients": [1.5, 0.1]}
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(PredictnasError, match="bad.json: malformed fine-tuning calibration"):
        FinetuneCalibration.load(tmp_path / "bad.json")


def test_a_first_format_file_reads_as_its_line_in_cer():
    """Calibrations written before WER and parameters were inputs (runs/lex13/finetune.json's layout)."""
    v1 = {"format": "predictnas-finetune-calibration/1", "source": "cer/all", "slope": 0.867, "intercept": 0.031,
          "recipe": RECIPE, "supernet_hash": "abc", "leave_one_out": {"median_points": 4.69},
          "models": [{"name": "a", "arch_id": "a", "verify": "v", "finetuned_wer": 0.5, "shared_cer": 0.4}]}
    calibration = FinetuneCalibration.parse(v1, "v1.json")
    assert (calibration.source, calibration.descriptors, calibration.coefficients) == ("cer/all", (), (0.867,))
    assert calibration([0.4])[0] == pytest.approx(0.867 * 0.4 + 0.031) and calibration.models[0]["shared"] == 0.4


def test_verify_runs_pool_one_row_per_model_and_only_of_one_recipe():
    recipe, models = verified_models([("a.json", verification([("x", 0.7), ("y", 0.8)])),
                                      ("b.json", verification([("y", 0.75), ("z", 0.9)]))])
    assert recipe == RECIPE
    assert {m["arch_id"]: (m["finetuned_wer"], m["verify"]) for m in models} == {
        "x": (0.7, "a.json"), "y": (0.75, "b.json"), "z": (0.9, "b.json")}  # the later run's y
    with pytest.raises(PredictnasError, match="another recipe.*finetune_steps 400 vs 100"):
        verified_models([("a.json", verification([("x", 0.7)])), ("b.json", verification([("y", 0.8)], finetune_steps=100))])
    # baselines trained from scratch beside fine-tuned picks follow another recipe: left out
    mixed = verification([("x", 0.7), ("y", 0.8)])
    mixed["models"][1]["training"] = {"from_scratch": True}
    assert [m["arch_id"] for m in verified_models([("m.json", mixed)])[1]] == ["x"]
    # verify runs from before the precision was recorded trained in float32
    before = verification([("x", 0.7)])
    del before["settings"]["precision"]
    assert verified_models([("old.json", before)])[0]["precision"] == "fp32"
    with pytest.raises(PredictnasError, match="c.json: malformed verify.json"):
        verified_models([("c.json", {"settings": RECIPE, "models": [{"name": "x"}]})])


def test_too_few_or_too_alike_models_are_refused():
    described = np.log10(PARAMS)[:, None]
    params = {"descriptors": ("log10_params",)}
    with pytest.raises(PredictnasError, match="3 verified model.*at least 4"):
        fit_calibration(RECIPE, rows(FINETUNED[:3]), SHARED[:3], "abc", described=described[:3], **params)
    with pytest.raises(PredictnasError, match="at least 3"):
        fit_calibration(RECIPE, rows(FINETUNED[:2]), SHARED[:2], "abc")
    with pytest.raises(PredictnasError, match="same shared-weight wer/all"):
        fit_calibration(RECIPE, rows(FINETUNED), np.ones(6), "abc")
    with pytest.raises(PredictnasError, match="unknown shared-weight source"):
        fit_calibration(RECIPE, rows(FINETUNED), SHARED, "abc", source="intent_error/all")
    with pytest.raises(PredictnasError, match="descriptors depth: each at most once"):
        fit_calibration(RECIPE, rows(FINETUNED), SHARED, "abc", descriptors=("depth",), described=described)


def test_descriptors_that_turn_the_weight_of_shared_weight_wer_negative_are_dropped():
    """The 6 models verified for the shipped calibration: with log10 FLOPs and conv share, the least-squares
    weight of shared-weight WER comes out negative; the calibration then stands on shared-weight WER alone."""
    shared = np.array([0.6136, 0.6142, 0.6175, 0.3819, 0.6916, 0.8352])
    described = np.array([[8.5925, 0.714], [8.5967, 1.0], [8.6263, 1.0], [9.0349, 1.0], [8.4941, 1.0], [8.1041, 1.0]])
    finetuned = [0.3831, 0.3620, 0.3640, 0.2305, 0.3873, 0.5403]
    free = fit_calibration(RECIPE, rows(finetuned), shared, "abc", descriptors=DEFAULT_DESCRIPTORS, described=described)
    assert free.coefficients[0] < 0
    monotone = fit_monotone_calibration(RECIPE, rows(finetuned), shared, "abc", descriptors=DEFAULT_DESCRIPTORS,
                                        described=described)
    assert monotone.inputs == ("wer/all",) and monotone.coefficients[0] > 0
    kept = fit_monotone_calibration(RECIPE, rows(FINETUNED), SHARED, "abc", descriptors=("log10_params",),
                                    described=np.log10(PARAMS)[:, None])
    assert kept.inputs == ("wer/all", "log10_params")


def test_descriptors_whose_weight_says_fine_tuning_helps_larger_models_less_are_dropped():
    """The 6 models verified for the shipped calibration (long + refine supernet): least squares puts a
    positive weight on log10 FLOPs, so the smallest subnet of the space was predicted at 0 % WER. The
    calibration drops that descriptor and keeps what has the sign fine-tuning can have."""
    shared = np.array([0.4066, 0.4096, 0.4117, 0.1928, 0.4521, 0.6467])
    described = np.array([[8.5614, 0.7], [8.5636, 0.778], [8.5627, 0.778], [9.0349, 1.0], [8.4941, 1.0],
                          [8.1041, 1.0]])
    finetuned = [0.2326, 0.2430, 0.2412, 0.1058, 0.2451, 0.3882]
    free = fit_calibration(RECIPE, rows(finetuned), shared, "abc", descriptors=DEFAULT_DESCRIPTORS, described=described)
    assert free.coefficients[0] > 0 and free.coefficients[1] > 0
    signed = fit_monotone_calibration(RECIPE, rows(finetuned), shared, "abc", descriptors=DEFAULT_DESCRIPTORS,
                                      described=described)
    assert "log10_flops" not in signed.inputs and signed.coefficients[0] > 0
    assert all(c <= 0 for c in signed.coefficients[1:])
    tiny = signed.apply([[0.80] + [0.0] * len(signed.descriptors)])[0]
    assert tiny > max(finetuned)  # the worst shared-weight WER is not predicted to fine-tune best
