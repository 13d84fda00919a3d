"""From shared-weight numbers to fine-tuned WER: a linear model fitted on models that ``verify`` measured.

The predictor predicts what a subnet scores with the supernet's shared weights, but ``verify`` fine-tunes
each pick before measuring it, and fine-tuning takes different amounts off different models: on
a small-preset run 400 steps took 9-28 points of WER off, and the predicted WER missed the measured one by 12-27
points. A :class:`FinetuneCalibration` maps the shared-weight number to the WER ``verify`` will measure.

Its inputs are one shared-weight metric of the dev set (``source``: what the predictor predicts and
``search --rescore`` measures; the evaluations go through the run's store) and architecture descriptors
computed from the genes (:data:`DESCRIPTORS`): fine-tuning helps models with more compute and with conv
modules more, which the shared weights do not show. Measured on the 25 models verified with lexicon
decoding on a small-preset run (leave-one-out |error| median, max, in points): dev CER alone 6.9, 19.8; dev WER
alone 3.8, 11.8; WER and log10 params 1.9, 9.6; WER and log10 FLOPs 2.0, 7.3; **WER, log10 FLOPs and the
share of blocks with a conv module 1.2, 7.3** (the default). A search exploits whatever the inputs reward:
with log10 params, the 40-ms search picked models of 7 and 8 blocks whose parameters sat in feed-forward
layers, with few conv modules, and they measured 9 points above the estimate. With greedy decoding WER sat near
100 % for small subnets and CER alone was the better input (the ``/1`` files, which still load).

It is fitted by least squares on the verified models against the test WER their ``verify`` measured, over
verify runs of one training recipe.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, ClassVar

import numpy as np

from ..artifact import Artifact
from ..complexity import flops, param_counts
from ..errors import PredictnasError
from ..io import read_json
from ..rundir import RunDir
from ..space import NO_CONV
from ..verification import Verification

FORMAT = "predictnas-finetune-calibration/3"
FORMAT_V1 = "predictnas-finetune-calibration/1"  # a line in shared-weight CER alone
SOURCES = ("wer/all", "cer/all")  # shared-weight dev metrics over every environment
DEFAULT_SOURCE = "wer/all"
FLOPS_FRAMES = 300  # FLOPs of 3 s of input: the order of a spoken command (only the log's differences matter)


def _log10_params(space, genes: np.ndarray) -> np.ndarray:
    return np.log10(param_counts(space, genes).astype(np.float64))


def _log10_flops(space, genes: np.ndarray) -> np.ndarray:
    return np.log10(flops(space, genes, FLOPS_FRAMES).astype(np.float64))


def _conv_fraction(space, genes: np.ndarray) -> np.ndarray:
    values = space.decode_values(genes)
    with_conv = (values.conv_kind != space.config.conv_kinds.index(NO_CONV)) & values.active
    return with_conv.sum(axis=1) / values.active.sum(axis=1)


# architecture descriptors a calibration may use, vectorized over gene rows; each may only lower fine-tuned
# WER at equal shared-weight WER (fine-tuning takes more off models with more compute and conv modules,
# never less), so a fitted weight above zero is dropped
DESCRIPTORS: dict[str, Callable[[object, np.ndarray], np.ndarray]] = {
    "log10_params": _log10_params, "log10_flops": _log10_flops, "conv_fraction": _conv_fraction}
DEFAULT_DESCRIPTORS = ("log10_flops", "conv_fraction")


@dataclass(frozen=True)
class FinetuneCalibration(Artifact):
    """``fine-tuned WER = intercept + coefficients . (shared, *descriptors)`` (fractions), for one recipe.

    ``shared`` is the model's shared-weight dev ``source`` metric; the descriptors are computed from its
    genes. Call it with the shared-weight values, the space and the gene rows."""

    source: str
    descriptors: tuple[str, ...]
    coefficients: tuple[float, ...]  # the source's, then one per descriptor
    intercept: float
    recipe: dict
    supernet_hash: str
    models: tuple[dict, ...]  # each fitted row: name, arch_id, verify file, finetuned_wer, shared, descriptors
    leave_one_out: dict  # |error| in points when each model is predicted from the others: median, max
    FORMAT: ClassVar[str] = FORMAT
    KIND: ClassVar[str] = "fine-tuning calibration"
    READS: ClassVar[tuple[str, ...]] = (FORMAT_V1,)
    HINT: ClassVar[str] = "; make one with `predictnas calibrate`"

    def __call__(self, shared: np.ndarray, space=None, genes: np.ndarray | None = None) -> np.ndarray:
        shared = np.asarray(shared, dtype=np.float64).reshape(-1, 1)
        if not self.descriptors:
            return self.apply(shared)
        return self.apply(np.column_stack([shared, descriptor_columns(self.descriptors, space, genes)]))

    def apply(self, columns: np.ndarray) -> np.ndarray:
        """The estimate from input columns (shared, then the descriptors); a WER is never negative."""
        return np.maximum(np.asarray(columns, dtype=np.float64) @ np.array(self.coefficients) + self.intercept, 0.0)

    @property
    def inputs(self) -> tuple[str, ...]:
        return (self.source, *self.descriptors)

    def describe(self) -> str:
        names = [f"shared-weight dev {self.source}", *self.descriptors]
        terms = " ".join(f"{'+' if c >= 0 else '-'} {abs(c):.3f} x {name}" for c, name in zip(self.coefficients, names))
        loo = self.leave_one_out
        held_out = ("no model can be left out and the rest still fitted" if loo.get("median_points") is None else
                    f"leave-one-out |error| median {loo['median_points']:.2f}, max {loo['max_points']:.2f} points")
        return f"fine-tuned WER = {self.intercept:.3f} {terms} over {len(self.models)} models; {held_out}"

    def to_dict(self) -> dict:
        return {"format": FORMAT, **asdict(self), "descriptors": list(self.descriptors),
                "coefficients": list(self.coefficients), "models": list(self.models)}

    @classmethod
    def from_dict(cls, data: dict, source: str) -> "FinetuneCalibration":
        if data["format"] == FORMAT_V1:
            models = tuple({**m, "shared": m["shared_cer"]} for m in data["models"])
            return cls("cer/all", (), (float(data["slope"]),), float(data["intercept"]),
                       dict(data["recipe"]), str(data["supernet_hash"]), models, dict(data["leave_one_out"]))
        calibration = cls(str(data["source"]), tuple(data["descriptors"]),
                          tuple(float(c) for c in data["coefficients"]), float(data["intercept"]),
                          dict(data["recipe"]), str(data["supernet_hash"]), tuple(data["models"]),
                          dict(data["leave_one_out"]))
        try:
            check_inputs(calibration.source, calibration.descriptors)
        except PredictnasError as e:
            raise ValueError(str(e)) from None
        if len(calibration.coefficients) != len(calibration.inputs):
            raise ValueError(f"{len(calibration.coefficients)} coefficients for {len(calibration.inputs)} inputs")
        return calibration


def check_inputs(source: str, descriptors: tuple[str, ...]) -> None:
    if source not in SOURCES:
        raise PredictnasError(f"unknown shared-weight source {source!r}: expected one of {', '.join(SOURCES)}")
    unknown = [d for d in descriptors if d not in DESCRIPTORS]
    if unknown or len(set(descriptors)) != len(descriptors):
        raise PredictnasError(f"descriptors {', '.join(descriptors)}: each at most once, of "
                              f"{', '.join(DESCRIPTORS)}")


def descriptor_columns(descriptors: tuple[str, ...], space, genes: np.ndarray | None) -> np.ndarray:
    """``(n, len(descriptors))``: each descriptor of each gene row."""
    if space is None or genes is None:
        raise PredictnasError(f"this calibration needs each model's architecture ({', '.join(descriptors)})")
    genes = np.asarray(genes).reshape(-1, space.n_genes)
    return np.column_stack([DESCRIPTORS[name](space, genes) for name in descriptors])


def verified_models(verifications: list[tuple[str, dict]]) -> tuple[dict, list[dict]]:
    """The recipe shared by the verify runs and their models (one per architecture: the latest run's).
    ``verifications`` are (file name, verify.json content)."""
    recipe, models = None, {}
    for source, document in verifications:
        verification = Verification.parse(document, source)
        this = verification.training_recipe()
        rows = [{"name": m["name"], "arch_id": m["arch_id"], "arch": m["arch"],
                 "finetuned_wer": float(m["measured"]["wer"]["all"]), "verify": source}
                for m in verification.models
                # baselines trained from scratch beside fine-tuned picks follow another recipe
                if m.get("training", {}).get("from_scratch", this["from_scratch"]) == this["from_scratch"]]
        if recipe is not None and this != recipe:
            changed = ", ".join(f"{k} {recipe[k]!r} vs {this[k]!r}" for k in recipe if recipe[k] != this[k])
            raise PredictnasError(f"{source}: trained with another recipe than the verify runs before it ({changed}); "
                                  f"calibrate each recipe on its own")
        recipe = this
        models.update({row["arch_id"]: row for row in rows})
    if recipe is None:
        raise PredictnasError("no verify results given")
    return recipe, list(models.values())


def _least_squares(x: np.ndarray, y: np.ndarray) -> np.ndarray | None:
    """Coefficients then intercept, or None where the columns (with the constant) do not separate the rows."""
    with_constant = np.column_stack([x, np.ones(len(x))])
    if np.linalg.matrix_rank(with_constant) < with_constant.shape[1]:
        return None
    return np.linalg.lstsq(with_constant, y, rcond=None)[0]


def fit_calibration(recipe: dict, models: list[dict], shared: np.ndarray, supernet_hash: str,
                    source: str = DEFAULT_SOURCE, descriptors: tuple[str, ...] = (),
                    described: np.ndarray | None = None) -> FinetuneCalibration:
    """Least squares from ``shared`` (the ``source`` metric of each model with the supernet's weights, dev
    set) and ``described`` (each model's ``descriptors``, one column each) to its fine-tuned WER."""
    check_inputs(source, descriptors)
    x = np.asarray(shared, dtype=np.float64).reshape(-1, 1)
    if described is not None:
        x = np.column_stack([x, np.asarray(described, dtype=np.float64)])
    if x.shape[1] != 1 + len(descriptors):
        raise PredictnasError(f"{x.shape[1] - 1} descriptor columns for {len(descriptors)} descriptors")
    least = x.shape[1] + 2  # so that each leave-one-out fit still has a row more than it has unknowns
    if len(models) < least:
        raise PredictnasError(f"{len(models)} verified model(s); a calibration on {' and '.join((source, *descriptors))} "
                              f"needs at least {least} (verify more picks, or add --baselines)")
    y = np.array([m["finetuned_wer"] for m in models])
    fitted = _least_squares(x, y)
    if fitted is None:
        raise PredictnasError(f"every verified model has the same shared-weight {source}"
                              f"{' (or descriptors in line with it)' if descriptors else ''}: nothing to fit on")
    errors = []
    for i in range(len(y)):
        rest = np.arange(len(y)) != i
        if (held_out := _least_squares(x[rest], y[rest])) is not None:
            errors.append(abs(x[i] @ held_out[:-1] + held_out[-1] - y[i]))
    rows = tuple({**{k: m[k] for k in ("name", "arch_id", "verify", "finetuned_wer")}, "shared": float(x[i, 0]),
                  **{name: float(x[i, 1 + j]) for j, name in enumerate(descriptors)}} for i, m in enumerate(models))
    return FinetuneCalibration(source, tuple(descriptors), tuple(float(c) for c in fitted[:-1]), float(fitted[-1]),
                               recipe, supernet_hash, rows,
                               {"median_points": float(100 * np.median(errors)) if errors else None,
                                "max_points": float(100 * np.max(errors)) if errors else None, "models": len(errors)})


def calibrate(run: RunDir | str | Path, verify_paths: list[Path], supernet_path: Path | None = None, workers: int = 1,
              progress: bool = True, source: str = DEFAULT_SOURCE,
              descriptors: tuple[str, ...] = DEFAULT_DESCRIPTORS) -> FinetuneCalibration:
    """Fit the calibration of ``run``'s supernet on the models of ``verify_paths`` (verify.json files).
    Each model's shared-weight dev ``source`` comes from the run's store, evaluated now where it is missing
    (see :func:`fit_monotone_calibration`)."""
    from ..experiment import supernet_file
    from ..space import SearchSpace
    from ..supernet import load_supernet
    from .fit import target_values
    from .sample import evaluate_rows, supernet_fingerprint

    check_inputs(source, tuple(descriptors))
    recipe, models = verified_models([(str(p), read_json(p)) for p in verify_paths])
    supernet_path = supernet_file(run, supernet_path)
    space = SearchSpace(load_supernet(supernet_path).space)
    genes = np.stack([space.encode(space.from_json(m["arch"], source=f"{m['verify']}: {m['name']}")) for m in models])
    shared = target_values(evaluate_rows(run, genes, workers, supernet_path, progress=progress), source)
    return fit_monotone_calibration(recipe, models, shared, supernet_fingerprint(supernet_path), source,
                                    tuple(descriptors),
                                    descriptor_columns(tuple(descriptors), space, genes) if descriptors else None)


def fit_monotone_calibration(recipe: dict, models: list[dict], shared: np.ndarray, supernet_hash: str,
                             source: str = DEFAULT_SOURCE, descriptors: tuple[str, ...] = (),
                             described: np.ndarray | None = None) -> FinetuneCalibration:
    """:func:`fit_calibration` with the signs fine-tuning can have: refitted on the shared-weight metric
    alone where the descriptors make fine-tuned WER fall as shared-weight WER rises, and without each
    descriptor whose weight says fine-tuning helps a model *less* the more compute or conv modules it has.

    Why: with a few models the descriptors can take over the fit, and a search chases them far outside the
    verified models. With the `small` supernet's 6 verified models the WER weight came out negative, and
    the search took the largest FLOPs under the budget at the worst shared-weight WER (predicted 25 % at
    40 ms where every model verified there measured 36-54 %); with the shipped supernet's 6, the FLOPs
    weight came out positive, and the search predicted 0 % WER for the smallest subnet of the space."""
    described = None if described is None else np.asarray(described, dtype=np.float64).reshape(len(shared), -1)
    kept = list(range(len(descriptors)))
    while True:
        names = tuple(descriptors[j] for j in kept)
        fitted = fit_calibration(recipe, models, shared, supernet_hash, source, names,
                                 described[:, kept] if kept else None)
        if names and fitted.coefficients[0] <= 0:
            return fit_calibration(recipe, models, shared, supernet_hash, source, ())
        wrong = [j for j, c in zip(kept, fitted.coefficients[1:]) if c > 0]
        if not wrong:
            return fitted
        kept = [j for j in kept if j not in wrong]
