"""Regenerate the pretrained defaults shipped in ``predictnas/pretrained/speech-v1`` from scratch.

    python tools/make_defaults.py [--work runs/long] [--preset long] [--n 300] [--device cpu|cuda]

The shipped set came from three training stages: ``predictnas train --preset long --run-dir runs/long/train``,
then ``python tools/make_defaults.py --preset refine --init-from runs/long/train/supernet.pt --work runs/refine``,
then ``python tools/make_defaults.py --preset spread --steps 2000 --init-from pretrained:speech-v1 --work runs/spread
--int8`` (the refine stage's float16 weights, as they had shipped).

Stages, each resumable (kill it and run it again) and skipped when its output exists in ``--work``:

1. ``train``      the preset's supernet, into ``WORK/train`` (``predictnas train``);
2. ``half``       its weights rounded to float16 into ``WORK/supernet.pt``, metadata made portable (the
                  corpus by recipe, not by this machine's path). Every later stage uses the rounded
                  weights, so every number shipped beside them was measured with exactly what ships;
3. ``sample``     ``--n`` subnets evaluated with those weights (``predictnas sample``, 30 repeats);
4. ``fit``        the XGBoost predictor (``predictnas fit``);
5. ``search``     ``--budget`` with 32 finalists measured and timed (``predictnas search``);
6. ``verify``     the picks and the shipped Conformer baselines, fine-tuned (``predictnas verify``);
7. ``calibrate``  shared-weight WER + descriptors -> WER after fine-tuning (``predictnas calibrate``);
8. ``install``    the four artifacts copied into the package, supernet references rewritten to
                  ``pretrained:speech-v1``, and ``manifest.json`` rewritten: SHA-256, command, seed and
                  package versions of every shipped file (the latency tables and baselines included).

The latency table is this machine's: the shipped one with its fingerprint (``--rebuild-table`` measures
it again in place first), else one measured into the user cache. Tables of other machine classes are
measured there with ``predictnas build-lut --device cpu --out predictnas/pretrained/lut/<id>.json``, then
``--manifest-only`` records them. Run it with ``PREDICTNAS_CACHE`` pointing at a folder with room for the
corpus (about 1 GB).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sqlite3
import sys
import time
from importlib import metadata
from pathlib import Path

import torch

from predictnas import pretrained
from predictnas.data.corpus import get_recipe
from predictnas.errors import PredictnasError
from predictnas.experiment import DataSources, get_preset, train_supernet
from predictnas.io import atomic_path, read_json, write_json
from predictnas.latency.build import BuildSettings, build_lut, table_for_this_machine
from predictnas.latency.devices import get_device
from predictnas.latency.estimate import LatencyEstimator
from predictnas.latency.table import LatencyTable, default_table_path
from predictnas.predictor import AccuracyPredictor, FeatureSpec, SQLiteStore
from predictnas.predictor.calibrate import calibrate
from predictnas.predictor.fit import fit_predictor
from predictnas.predictor.sample import sample_subnets, supernet_meter
from predictnas.pretrained import resolve_supernet
from predictnas.rundir import RunDir
from predictnas.search.search import SearchSettings, parse_latency_ms, run_search
from predictnas.space import SearchSpace
from predictnas.supernet import load_supernet, save_supernet
from predictnas.verify import VerifySettings, run_verify, shipped_baselines

PACKAGES = ("torch", "torchaudio", "onnxruntime", "xgboost", "numpy", "scikit-learn", "flashlight-text",
            "espeakng-loader", "predictnas")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def half_precision(trained: Path, out: Path) -> None:
    """``trained`` with float16 weights (loaded back as float32) and metadata that holds on any machine."""
    supernet = load_supernet(trained)
    data = dict(supernet.metadata["data"])
    if data["kind"] != "corpus":
        raise PredictnasError("the shipped supernet must be trained on the embedded corpus")
    recipe = get_recipe(get_preset(supernet.metadata["preset"]).corpus, sample_rate=supernet.metadata["sample_rate"])
    if recipe.recipe_hash != data["recipe_hash"]:
        raise PredictnasError(f"{trained}: trained on corpus {data['recipe_hash']}, the preset's is "
                              f"{recipe.recipe_hash}")
    data.update(path=recipe.dirname, recipe=recipe.to_dict())  # found in (or synthesized into) the user cache
    supernet.metadata = {**supernet.metadata, "data": data}
    with torch.no_grad():
        for p in supernet.parameters():
            p.copy_(p.half().float())
    save_supernet(supernet, out)
    state = torch.load(out, weights_only=True)
    state["weights"] = {k: v.half() if v.is_floating_point() else v for k, v in state["weights"].items()}
    with atomic_path(out) as tmp:
        torch.save(state, tmp)


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def portable_store(src: Path, dst: Path) -> None:
    """A copy of the store (SQLite's backup, so rows still in the write-ahead log come along) in
    rollback-journal mode, readable without -wal/-shm files beside it, the supernet recorded by name."""
    with atomic_path(dst) as tmp:
        source, copy = sqlite3.connect(src), sqlite3.connect(tmp)
        source.backup(copy)
        source.close()
        copy.execute("PRAGMA journal_mode=DELETE")
        copy.execute("UPDATE meta SET value = ? WHERE key = 'info.path'", (json.dumps(pretrained.reference()),))
        copy.commit()
        copy.execute("VACUUM")
        copy.close()


def install(work: RunDir, commands: dict[str, str], seed: int) -> None:
    """The four artifacts of ``work`` into the package, then the manifest."""
    target = RunDir(pretrained.root() / pretrained.DEFAULT)  # laid out as a run directory
    target.root.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(work.supernet, target.supernet)
    portable_store(work.store, target.store)
    predictor = read_json(work.predictor)
    predictor["supernet"]["path"] = pretrained.reference()
    write_json(target.predictor, predictor)
    shutil.copyfile(work.finetune, target.finetune)
    stack = versions()
    files = {kind: getattr(target, kind) for kind in pretrained.ARTIFACTS}
    write_manifest({f"{pretrained.DEFAULT}/{path.name}": {"command": commands[kind], "seed": seed, "versions": stack}
                    for kind, path in files.items()})
    log(f"installed into {target}: " + ", ".join(f"{path.name} {path.stat().st_size / 1e6:.1f} MB"
                                                for path in files.values()))


def write_manifest(made: dict[str, dict]) -> None:
    """Rewrite ``manifest.json`` over every shipped file: ``made`` gives the provenance of files made now;
    a file unchanged since the last manifest keeps its entry; tables take theirs from their build record."""
    root = pretrained.root()
    earlier = pretrained.manifest()["artifacts"]
    entries = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in (".json", ".pt", ".sqlite")
                       and p.name != pretrained.MANIFEST):
        relative, digest = str(path.relative_to(root)), pretrained.sha256_of(path)
        if relative in made:
            provenance = made[relative]
        elif earlier.get(relative, {}).get("sha256") == digest:
            provenance = {k: v for k, v in earlier[relative].items() if k not in ("sha256", "bytes")}
        elif relative.startswith("lut/"):
            table = read_json(path)
            provenance = {"command": table.get("build", {}).get("command", "predictnas build-lut"),
                          "seed": table.get("build", {}).get("seed", 0),
                          "versions": {"onnxruntime": table["device"]["fingerprint"].get("ort_version")}}
        elif relative.startswith("archs/"):
            provenance = {"command": "written by hand (archs/README.md)", "seed": None, "versions": {}}
        else:
            raise PredictnasError(f"{relative}: shipped without provenance; regenerate it with this tool")
        entries[relative] = {"sha256": digest, "bytes": path.stat().st_size, **provenance}
    write_json(root / pretrained.MANIFEST, {"format": "predictnas-pretrained-manifest", "name": pretrained.DEFAULT,
                                            "artifacts": entries})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("runs/long"))
    parser.add_argument("--preset", default="long")
    parser.add_argument("--steps", type=int, default=None, help="Override the preset's training steps.")
    parser.add_argument("--init-from", default=None,
                        help="Train from this supernet's weights (train --init-from), e.g. with --preset refine.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="Training device: cpu, cuda or auto.")
    parser.add_argument("--n", type=int, default=300, help="Subnets to evaluate.")
    parser.add_argument("--int8", action="store_true",
                        help="Also score the subnets as the cpu-int8 device computes them (int8 targets).")
    parser.add_argument("--strata-table", type=Path, default=None,
                        help="Latency table whose estimates set the sample's latency strata (default: this "
                             "machine's). Another table draws other subnets, so a store sampled before its table "
                             "was rebuilt is completed (--int8) with the table it was sampled with.")
    parser.add_argument("--budget", default="40ms")
    parser.add_argument("--finetune-steps", type=int, default=400)
    parser.add_argument("--until", choices=("train", "half", "sample", "fit", "search", "verify", "calibrate"),
                        default=None, help="Stop after this stage (run again without it to go on).")
    parser.add_argument("--no-install", action="store_true", help="Stop before copying into the package.")
    parser.add_argument("--rebuild-table", action="store_true",
                        help="Measure this machine's shipped latency table again first (7-18 min on 2 cores).")
    parser.add_argument("--manifest-only", action="store_true",
                        help="Only rewrite manifest.json over the files shipped now (after adding a table or "
                             "baseline).")
    args = parser.parse_args()
    if args.manifest_only:
        write_manifest({})
        return
    work = RunDir(args.work)
    trained = RunDir(work.root / "train")
    preset = get_preset(args.preset)
    if preset.space != pretrained.DEFAULT:
        raise SystemExit(f"error: the shipped defaults are for space {pretrained.DEFAULT}; preset {args.preset} is "
                         f"{preset.space}")
    if args.rebuild_table:  # this machine's shipped table measured again, in place
        device = get_device("cpu")
        out = default_table_path(device.device_id, preset.space, pretrained.tables_dir())
        build_lut(device, BuildSettings(space=preset.space), out, log=log,
                  command=f"predictnas build-lut --device cpu --space {preset.space}")
    table_path = table_for_this_machine(get_device("cpu"), BuildSettings(space=preset.space), log=log)
    table = LatencyTable.load(table_path)
    estimator = LatencyEstimator(table)

    log("1/8 train")
    train_supernet(trained, preset, DataSources(corpus_preset=preset.corpus), steps=args.steps,
                   seed=args.seed, device=args.device, init_from=args.init_from)
    if args.until == "train":
        return
    if not work.supernet.exists():
        log("2/8 half precision")
        half_precision(trained.supernet, work.supernet)
    if args.until == "half":
        return
    log("3/8 sample")
    strata = LatencyEstimator(LatencyTable.load(args.strata_table)) if args.strata_table else estimator
    sample_subnets(work, args.n, estimator=strata, repeat=30, seed=args.seed, int8=args.int8)
    if args.until == "sample":
        return
    log("4/8 fit")
    if not work.predictor.exists():
        with SQLiteStore(work.store) as store:
            space = SearchSpace(store.space_config())
            predictor, report = fit_predictor(store, space, FeatureSpec(("encoding", "closed_form"), space.config))
        predictor.save(work.predictor)
        write_json(work.root / "fit.json", report)
    predictor = AccuracyPredictor.load(work.predictor)
    if args.until == "fit":
        return
    top = work.search.top
    if not top.exists():
        log("5/8 search")
        timing = table.check_device(allow_mismatch=True) is None
        settings = SearchSettings(budget_ms=parse_latency_ms(args.budget), top_k=3, seconds=60.0, rescore=32,
                                  time_finalists=32 if timing else 0, seed=args.seed)
        run_search(settings, table, predictor, work.search, work.predictor, command="tools/make_defaults.py",
                   log=log, meter=lambda target: supernet_meter(target, work.supernet, work, 1, estimator))
    if args.until == "search":
        return
    if not work.search.verify.report_json.exists():  # done: its table may have been rebuilt since
        log("6/8 verify")
        verify_settings = VerifySettings(finetune_steps=args.finetune_steps,
                                         baselines=shipped_baselines(preset.space), seed=args.seed)
        run_verify(top, verify_settings, work.search.verify, work, lut_path=table_path, log=log)
    if args.until == "verify":
        return
    if not work.finetune.exists():
        log("7/8 calibrate")
        calibration = calibrate(work, [work.search.verify.report_json], work.supernet)
        calibration.save(work.finetune)
        log(f"  {calibration.describe()}")
    if args.no_install or args.until == "calibrate":
        return
    log("8/8 install")
    train_cmd = (f"predictnas train --preset {args.preset} --seed {args.seed} --device {args.device}"
                 + (f" --steps {args.steps}" if args.steps else "") + " (then float16 weights: tools/make_defaults.py)")
    if args.init_from:  # a later stage: the earlier stages' commands before it
        if str(args.init_from).startswith("pretrained:"):  # the shipped supernet, float16 weights and all
            name = str(args.init_from).split(":", 1)[1]
            earlier = pretrained.manifest()["artifacts"][f"{name}/supernet.pt"]["command"].split(" (then")[0]
            earlier += " (float16 weights, shipped as pretrained:" + name + ")"
        else:
            first = load_supernet(resolve_supernet(args.init_from)).metadata.get("preset")
            earlier = f"predictnas train --preset {first} --seed {args.seed}"
        train_cmd = earlier + "; then " + train_cmd.replace(" (then", " --init-from <that supernet> (then")
    install(work, {"supernet": train_cmd,
                   "store": f"predictnas sample --n {args.n} --repeat 30 --seed {args.seed}"
                            + (" --int8" if args.int8 else "")
                            + (f" --lut {args.strata_table.name}" if args.strata_table else ""),
                   "predictor": "predictnas fit --features encoding,closed_form",
                   "finetune": f"predictnas search --budget {args.budget} --rescore 32 --time-finalists 32; "
                               f"predictnas verify top.json --baselines --finetune-steps {args.finetune_steps}; "
                               "predictnas calibrate"}, args.seed)


if __name__ == "__main__":
    try:
        main()
    except PredictnasError as e:
        raise SystemExit(f"error: {e}")
