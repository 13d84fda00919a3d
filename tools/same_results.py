"""Whether two versions of predictnas compute the same numbers: for refactors that must change nothing.

    PYTHONPATH=OLD_TREE python tools/same_results.py write before.npz
    PYTHONPATH=NEW_TREE python tools/same_results.py compare before.npz

Computes, on 20,000 random architectures of each registered space (seed 7): parameters, FLOPs (300
frames), peak activation bytes (2,400 frames) and the predictor's feature matrix; on the default space
the latency estimator's nanoseconds, parameters and milliseconds for every shipped table and the shipped
predictor's every target; and the content hashes of the shipped tables, predictor and fine-tuning
calibration (which every top.json records). ``compare`` prints which arrays differ (bit for bit) and
whether the hashes are equal, and exits 1 when anything differs.
"""

from __future__ import annotations

import json
import sys

import numpy as np

from predictnas import pretrained
from predictnas.complexity import flops, param_counts, peak_activation_bytes
from predictnas.latency.estimate import LatencyEstimator
from predictnas.latency.table import LatencyTable
from predictnas.predictor import AccuracyPredictor
from predictnas.predictor.features import FeatureSpec
from predictnas.space import SPACES, get_space


def _calibration_class():
    try:
        from predictnas.predictor.calibrate import FinetuneCalibration
    except ImportError:  # before the module was named after its command
        from predictnas.predictor.finetune import FinetuneCalibration
    return FinetuneCalibration


def _hash(artifact) -> str:
    value = artifact.content_hash
    return value() if callable(value) else value  # a method in older versions


def results() -> tuple[dict[str, np.ndarray], dict[str, str]]:
    arrays, hashes = {}, {}
    for name in sorted(SPACES):
        space = get_space(name)
        genes = space.sample(20_000, np.random.default_rng(7))
        arrays[f"{name}/params"] = param_counts(space, genes)
        arrays[f"{name}/flops"] = flops(space, genes, 300)
        arrays[f"{name}/peak"] = peak_activation_bytes(space, genes, 2400)
        arrays[f"{name}/features"] = FeatureSpec(("encoding", "closed_form"), space.config).matrix(space, genes)
    space = get_space()
    genes = space.sample(20_000, np.random.default_rng(7))
    for path in sorted(pretrained.tables_dir().glob("*.json")):
        table = LatencyTable.load(path)
        estimator = LatencyEstimator(table)
        (arrays[f"{path.name}/ns"], arrays[f"{path.name}/params"]), arrays[f"{path.name}/ms"] = (
            estimator.raw(genes), estimator.estimate(genes))
        hashes[path.name] = _hash(table)
    predictor = AccuracyPredictor.load(pretrained.artifact("predictor"))
    for target in predictor.targets:
        arrays[f"predictor/{target}"] = predictor.predict(genes, target)
    hashes["predictor"] = _hash(predictor)
    hashes["finetune"] = _hash(_calibration_class().load(pretrained.artifact("finetune")))
    return arrays, hashes


def main() -> None:
    if len(sys.argv) != 3 or sys.argv[1] not in ("write", "compare"):
        raise SystemExit(__doc__)
    mode, path = sys.argv[1:]
    arrays, hashes = results()
    if mode == "write":
        np.savez(path, **arrays)
        with open(path + ".json", "w") as f:
            json.dump(hashes, f, indent=2)
        print(f"wrote {len(arrays)} arrays and {len(hashes)} hashes to {path}")
        return
    before = np.load(path)
    with open(path + ".json") as f:
        before_hashes = json.load(f)
    differ = sorted(k for k in arrays.keys() | set(before.files)
                    if k not in arrays or k not in before.files or not np.array_equal(arrays[k], before[k]))
    print(f"{len(arrays)} arrays compared; differ: {differ or 'none'}")
    print(f"{len(hashes)} content hashes equal: {hashes == before_hashes} {hashes}")
    sys.exit(1 if differ or hashes != before_hashes else 0)


if __name__ == "__main__":
    main()
