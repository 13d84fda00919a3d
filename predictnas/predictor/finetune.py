"""From shared-weight numbers to fine-tuned WER: a line fitted on models that ``verify`` measured.

The predictor predicts what a subnet scores with the supernet's shared weights, but ``verify`` fine-tunes
each pick before measuring it, and on runs/small12 400 steps took 9-28 points of WER off, by different
amounts per model: the predicted WER missed the measured one by 12-27 points. Across the 9 models
verified there (6 NAS picks and 3 Conformers), fine-tuned WER was close to a line in shared-weight dev
CER: leave-one-out error median 0.87 points (max 3.97), against 6.6 (max 18.1) from shared-weight dev WER,
which saturates near 100 % on small subnets while their CER still separates them.

A :class:`FinetuneCalibration` is that line. It is fitted on the dev-set shared-weight CER of every
verified model (what the predictor's ``cer/all`` predicts and ``search --rescore`` measures; the
evaluations go through the run's store) against the test WER its ``verify`` measured, over verify runs of
one training recipe. Applied to the predictor's CER it estimates the WER a pick will measure in verify.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import PredictnasError
from ..io import read_json, write_json

FORMAT = "predictnas-finetune-calibration/1"
SOURCE = "cer/all"  # the shared-weight metric mapped: dev CER over every environment
MIN_MODELS = 3
# what changes the fine-tuned WER of a model besides the model: verify runs pooled must agree on these
RECIPE_FIELDS = ("finetune_steps", "from_scratch", "peak_lr", "batch_seconds", "split", "seed")


@dataclass(frozen=True)
class FinetuneCalibration:
    """``fine-tuned WER = slope * shared-weight CER + intercept`` (fractions), for one training recipe."""

    slope: float
    intercept: float
    recipe: dict
    supernet_hash: str
    models: tuple[dict, ...]  # each fitted row: name, arch_id, shared_cer, finetuned_wer, verify file
    leave_one_out: dict  # |error| in points when each model is predicted from the others: median, max

    def __call__(self, shared_cer: np.ndarray) -> np.ndarray:
        return np.maximum(self.slope * np.asarray(shared_cer, dtype=np.float64) + self.intercept, 0.0)

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    def to_dict(self) -> dict:
        return {"format": FORMAT, "source": SOURCE, **asdict(self), "models": list(self.models)}

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "FinetuneCalibration":
        data = read_json(path)
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise PredictnasError(f"{path}: not a predictnas fine-tuning calibration (expected format {FORMAT!r}); "
                                  f"make one with `predictnas calibrate`")
        try:
            return cls(float(data["slope"]), float(data["intercept"]), dict(data["recipe"]), str(data["supernet_hash"]),
                       tuple(data["models"]), dict(data["leave_one_out"]))
        except (KeyError, TypeError, ValueError) as e:
            raise PredictnasError(f"{path}: malformed calibration ({type(e).__name__}: {e})") from None


def verified_models(verifications: list[tuple[str, dict]]) -> tuple[dict, list[dict]]:
    """The recipe shared by the verify runs and their models (one per architecture: the latest run's).
    ``verifications`` are (file name, verify.json content)."""
    recipe, models = None, {}
    for source, verification in verifications:
        try:
            settings = verification["settings"]
            this = {k: settings[k] for k in RECIPE_FIELDS}
            rows = [{"name": m["name"], "arch_id": m["arch_id"], "arch": m["arch"],
                     "finetuned_wer": float(m["measured"]["wer"]["all"]), "verify": source}
                    for m in verification["models"]]
        except (KeyError, TypeError, ValueError) as e:
            raise PredictnasError(f"{source}: not a verify.json written by `predictnas verify` "
                                  f"({type(e).__name__}: {e})") from None
        if recipe is not None and this != recipe:
            changed = ", ".join(f"{k} {recipe[k]!r} vs {this[k]!r}" for k in RECIPE_FIELDS if recipe[k] != this[k])
            raise PredictnasError(f"{source}: trained with another recipe than the verify runs before it ({changed}); "
                                  f"calibrate each recipe on its own")
        recipe = this
        models.update({row["arch_id"]: row for row in rows})
    if recipe is None:
        raise PredictnasError("no verify results given")
    return recipe, list(models.values())


def fit_calibration(recipe: dict, models: list[dict], shared_cer: np.ndarray, supernet_hash: str) -> FinetuneCalibration:
    """The least-squares line from ``shared_cer`` (one per model, dev set) to each model's fine-tuned WER."""
    if len(models) < MIN_MODELS:
        raise PredictnasError(f"{len(models)} verified model(s); a calibration needs at least {MIN_MODELS} "
                              f"(verify more picks, or add --baselines)")
    x = np.asarray(shared_cer, dtype=np.float64)
    y = np.array([m["finetuned_wer"] for m in models])
    if np.ptp(x) == 0:
        raise PredictnasError("every verified model has the same shared-weight CER: nothing to fit a line on")
    slope, intercept = np.polyfit(x, y, 1)
    errors = []
    for i in range(len(x)):
        rest = np.arange(len(x)) != i
        if np.ptp(x[rest]) > 0:
            errors.append(abs(np.polyval(np.polyfit(x[rest], y[rest], 1), x[i]) - y[i]))
    rows = tuple({**{k: m[k] for k in ("name", "arch_id", "verify", "finetuned_wer")}, "shared_cer": float(c)}
                 for m, c in zip(models, x))
    return FinetuneCalibration(float(slope), float(intercept), recipe, supernet_hash, rows,
                               {"median_points": float(100 * np.median(errors)), "max_points": float(100 * np.max(errors)),
                                "models": len(errors)})


def calibrate(run_dir: str | Path, verify_paths: list[Path], supernet_path: Path | None = None, workers: int = 1,
              progress: bool = True) -> FinetuneCalibration:
    """Fit the calibration of ``run_dir``'s supernet on the models of ``verify_paths`` (verify.json files).
    Each model's shared-weight dev CER comes from the run's store, evaluated now where it is missing."""
    from ..experiment import load_trained_supernet
    from ..space import SearchSpace
    from .fitting import target_values
    from .runner import evaluate_rows, supernet_fingerprint

    recipe, models = verified_models([(str(p), read_json(p)) for p in verify_paths])
    run_dir = Path(run_dir)
    supernet_path = Path(supernet_path or run_dir / "supernet.pt")
    if not supernet_path.exists():
        raise PredictnasError(f"{supernet_path}: no supernet to evaluate the verified models with")
    space = SearchSpace(load_trained_supernet(run_dir, supernet_path).space)
    genes = np.stack([space.encode(space.from_json(m["arch"], source=f"{m['verify']}: {m['name']}")) for m in models])
    shared = target_values(evaluate_rows(run_dir, genes, workers, supernet_path, progress=progress), SOURCE)
    return fit_calibration(recipe, models, shared, supernet_fingerprint(supernet_path))
