"""The verify stage: retrain the picks of ``top.json``, measure them for real, compare with predictions.

For every candidate (and, with ``baselines``, every hand-crafted Conformer shipped for the space):

1. rebuild it from the bundle and fine-tune it from the supernet's weights (or train it from scratch),
   in its own resumable run directory;
2. export ONNX fp32 and dynamic int8, and time the device's format with the latency table's protocol
   (reference-normalised like the table) on the table's reference input;
3. score WER per environment and intent accuracy on the test split (unseen voices) through ONNX Runtime,
   and the supernet-inherited WER on the same split with PyTorch, both decoded with the supernet's
   decoder (:func:`~predictnas.experiment.decoder_for`); a top.json predicted for another decoding, or
   calibrated for other training than verify gives the picks, is verified with a warning;
4. with a production sample rate other than the model's, score it again on audio captured at that rate.

Each model's result is written atomically as soon as it is complete, so a killed run resumes with the
models still missing. The report is :mod:`predictnas.report`'s business.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .bundle import Bundle
from .data.dataset import FeatureStore, epoch_batches
from .data.features import FeatureConfig
from .data.text import CharTokenizer
from .decoding import Decoder, GreedyDecoder, describe, same_decoding
from .errors import PredictnasError
from .evaluate import bind, evaluate
from .experiment import decoder_for, load_split, supernet_file
from .io import check_writable, read_json, write_json
from .latency.devices import get_device
from .latency.estimate import LatencyEstimator
from .latency.protocol import PROTOCOLS, Graph, ModelTimer
from .latency.table import LatencyTable
from .space import Arch, SearchSpace
from .supernet import SubnetOutput, load_supernet
from .supernet.export import INPUT_NAME, export_onnx
from .retrain import trained_model, train_on_ray, training_seconds
from .rundir import ModelFiles, RunDir, SearchFiles, VerifyFiles
from .train import TrainConfig
from .verification import MEASUREMENT_RECIPE, RECIPE_BEFORE, TRAINING_RECIPE


@dataclass(frozen=True)
class VerifySettings:
    finetune_steps: int = 400
    from_scratch: bool = False
    # the baselines from random weights, as a user would train a hand-crafted model, while the picks are
    # fine-tuned from the shared weights (or trained from scratch too, with from_scratch): the same steps
    baselines_from_scratch: bool = False
    peak_lr: float = 1e-3  # fine-tuning; from scratch uses the supernet recipe's
    batch_seconds: float = 40.0
    precision: str = "auto"  # bfloat16 matrix work where the CPU has it (about 1.8x faster), as train's presets
    device: str = "cpu"
    production_sample_rate: int | None = None
    baselines: tuple[str, ...] = ()  # ARCH.json files of hand-crafted models
    allow_hardware_gap: bool = False
    split: str = "test"
    test_data: str | None = None  # a manifest or LibriSpeech folder scored instead of the split
    protocols: str = "standard"
    seed: int = 0
    # whole-protocol timings of each model, each with a fresh reference, the median kept: one timing's
    # reference normalization moved a 20-ms model by up to 8 %
    latency_repeats: int = 3
    picks: int | None = None  # verify only the first N candidates of top.json (None: all)
    ray_address: str | None = None  # train the models on this Ray cluster (results are the same)

    def recipe(self) -> dict:
        """The settings that change a model's weights or measurements: a folder's work is resumed only
        under the same ones."""
        return {k: getattr(self, k) for k in MEASUREMENT_RECIPE}

    def trains_from_scratch(self, model: "Model") -> bool:
        return self.from_scratch or (self.baselines_from_scratch and model.kind == "baseline")

    def train_config(self, from_scratch: bool) -> TrainConfig:
        if from_scratch:
            return TrainConfig(steps=self.finetune_steps, batch_seconds=self.batch_seconds, peak_lr=1e-3,
                               warmup_steps=min(150, self.finetune_steps // 10 + 1), seed=self.seed,
                               precision=self.precision)
        return TrainConfig(steps=self.finetune_steps, batch_seconds=self.batch_seconds, peak_lr=self.peak_lr,
                           warmup_steps=min(50, self.finetune_steps // 10 + 1), seed=self.seed,
                           precision=self.precision)


@dataclass(frozen=True)
class Model:
    """One model to verify: a NAS pick (with its predictions) or a hand-crafted baseline."""

    name: str
    kind: str  # "nas" or "baseline"
    arch: Arch
    predicted: dict


def shipped_baselines(space_name: str) -> tuple[str, ...]:
    """The uniformly scaled Conformers shipped for ``space_name`` (see ``predictnas/pretrained/archs``)."""
    from . import pretrained

    return pretrained.baselines(space_name)


def models_to_verify(bundle: Bundle, baselines: tuple[str, ...], picks: int | None = None) -> list[Model]:
    space = SearchSpace(bundle.space)
    models = [Model(f"nas-{c.rank}", "nas", c.arch, dict(c.predicted)) for c in bundle.candidates[:picks]]
    for path in baselines:
        arch = space.from_json(read_json(path), source=f"baseline {path} (in space {space.config.name})")
        models.append(Model(Path(path).stem, "baseline", arch, {}))
    return models


def check_hardware(bundle: Bundle, table: LatencyTable, settings: VerifySettings) -> list[str]:
    """The hardware-gap guard: refuse to verify on another machine than the table's, unless allowed."""
    warnings = []
    problem = table.hardware_gap()
    if problem:
        message = f"hardware gap: the latency table: {problem}"
        if not settings.allow_hardware_gap:
            raise PredictnasError(message + "; verify measures on this machine, so its latencies would not be "
                                            "comparable (rebuild the table here, or pass --allow-hardware-gap)")
        warnings.append(message)
    if bundle.device.get("id") != table.device_id:
        raise PredictnasError(f"top.json was searched with the {bundle.device.get('id')} table, but --device "
                              f"{settings.device} uses {table.device_id}; verify on the device it was searched for")
    return warnings


def training_mismatch(bundle: Bundle, settings: VerifySettings) -> str | None:
    """A calibrated search predicts the WER after the training its calibration was fitted on; picks trained
    otherwise (more steps, from scratch) are measured against a prediction for other training, and the
    report should not pass the difference off as the predictor's error."""
    fitted = ((bundle.predictor or {}).get("finetune") or {}).get("recipe")
    if not fitted:
        return None
    changed = [f"{k} {fitted.get(k)!r} -> {getattr(settings, k)!r}" for k in TRAINING_RECIPE
               if k in fitted and fitted[k] != getattr(settings, k)]
    if not changed:
        return None
    return (f"training mismatch: top.json's WERs were predicted for the training its calibration was fitted on; "
            f"verify trains the picks otherwise ({', '.join(changed)}), so predicted minus measured WER includes "
            f"what the other training changes")


def check_predictions(bundle: Bundle, table: LatencyTable) -> None:
    """The latency table is the one top.json was searched with, and each pick's predicted latency is what
    that table estimates: the report sets measurements against these predictions, so they must be the
    search's, not a later table's or an edited file's."""
    recorded = bundle.lut.get("hash")
    if recorded and recorded != table.content_hash:
        raise PredictnasError(f"{table.source}: not the latency table top.json was searched with (hash "
                              f"{table.content_hash}, top.json records {recorded}); search again with this table")
    estimator = LatencyEstimator(table, SearchSpace(table.space))
    for c in bundle.candidates:
        estimate = estimator.estimate_arch(c.arch)
        if not math.isclose(c.predicted.get("latency_ms", estimate), estimate, rel_tol=1e-4):
            raise PredictnasError(f"top.json: candidate {c.rank} predicts {c.predicted['latency_ms']:g} ms, but the "
                                  f"table it was searched with estimates {estimate:g} ms; the file was edited")


def check_recipes(models: list[Model], out: VerifyFiles, settings: VerifySettings) -> None:
    """Refuse an output folder whose models were (or are being) verified with other settings: resuming
    would mix their weights and measurements into this run's report."""
    for model in models:
        files = out.model(model.name)
        claim = read_json(files.claim) if files.claim.exists() else {}
        if claim.get("arch_id") != model.arch.arch_id:
            continue  # nothing of this model to resume: the folder is new, or another model's (replaced)
        before = {**RECIPE_BEFORE, **claim.get("recipe", {})}
        changed = [f"{k} {before.get(k)!r} -> {v!r}" for k, v in settings.recipe().items() if before.get(k) != v]
        if changed:
            raise PredictnasError(f"{files.folder} was verified with other settings ({', '.join(changed)}); "
                                  f"verify into another --out, or delete it")


def claim_folder(work: ModelFiles, model: Model, settings: VerifySettings) -> None:
    """Make the folder of ``work`` this model's: work left there for another architecture (the bundle was searched
    again) is removed, since resuming it would measure the wrong model under this one's name."""
    if work.claim.exists():
        owner = read_json(work.claim).get("arch_id")
    else:  # a folder from before claims were recorded: its result says whose it is
        owner = read_json(work.result).get("arch_id") if work.result.exists() else None
    if owner not in (None, model.arch.arch_id):
        shutil.rmtree(work.folder)
    work.folder.mkdir(parents=True, exist_ok=True)
    if not work.claim.exists():
        write_json(work.claim, {"arch_id": model.arch.arch_id, "recipe": settings.recipe()})


def verify_model(model: Model, supernet, table: LatencyTable, estimator: LatencyEstimator, test: FeatureStore,
                 settings: VerifySettings, out: VerifyFiles, progress: bool = True, decoder: Decoder | None = None,
                 run: RunDir | None = None) -> dict:
    """Train, export, time and score one model in its folder of ``out``; resumes where it stopped. A result
    decoded otherwise than with ``decoder`` is measured again from the trained model (decoding does not
    change the training)."""
    decoder = decoder or GreedyDecoder()
    work = out.model(model.name)
    done = work.result
    claim_folder(work, model, settings)
    earlier = read_json(done) if done.exists() else None
    if earlier is not None and same_decoding(earlier.get("decoding"), decoder.spec()):
        return earlier
    space = supernet.space
    from_scratch = settings.trains_from_scratch(model)
    subnet = trained_model(model.arch, supernet, settings.train_config(from_scratch), from_scratch, settings.seed,
                           work.training, progress, run)
    train_seconds = training_seconds(work.training)

    fp32 = export_onnx(subnet.eval(), work.onnx)
    int8_device = get_device("cpu-int8")
    int8 = work.onnx_int8
    int8.write_bytes(int8_device.prepare(fp32.read_bytes()))
    device = get_device(settings.device)
    onnx_bytes = (int8 if device.fingerprint()["dtype"] == "int8" else fp32).read_bytes()
    latency = _measure_latency(device, onnx_bytes, table, space.n_mels, settings.protocols, settings.latency_repeats)

    session = device.session(onnx_bytes)
    intents = supernet.metadata["intents"]
    batches = epoch_batches(test, intents, batch_seconds=120.0)
    measured = evaluate(_onnx_model(session), batches, CharTokenizer(), decoder)
    inherited = evaluate(bind(supernet, model.arch), batches, CharTokenizer(), decoder)
    result = {
        "name": model.name, "kind": model.kind, "arch_id": model.arch.arch_id, "arch": model.arch.to_dict(),
        "params": sum(p.numel() for p in subnet.parameters()), "predicted": model.predicted,
        "lut_latency_ms": estimator.estimate_arch(model.arch),
        "measured": {"latency": latency, "format": "int8" if device.fingerprint()["dtype"] == "int8" else "fp32",
                     "device": device.device_id, **measured.to_dict()},
        "inherited": inherited.to_dict(),
        "training": earlier["training"] if earlier is not None else {  # scored again: it trained then
            "steps": settings.finetune_steps, "from_scratch": from_scratch, "seconds": train_seconds},
        "onnx": {"fp32": str(fp32), "int8": str(int8)},
        "decoding": decoder.spec(),
    }
    if settings.production_sample_rate and settings.production_sample_rate != supernet.metadata["sample_rate"]:
        production = _production_store(supernet, settings, test)
        result["production"] = {"sample_rate": settings.production_sample_rate, **evaluate(
            _onnx_model(session), epoch_batches(production, intents, batch_seconds=120.0), CharTokenizer(),
            decoder).to_dict()}
    write_json(done, result)
    return result


def _measure_latency(device, onnx_bytes: bytes, table: LatencyTable, n_mels: int, protocols: str,
                     repeats: int = 1) -> dict:
    """The table's whole-model protocol on the table's reference input (ms, normalised like the table),
    ``repeats`` times with fresh references: ``ms`` is the median timing, ``repeats_ms`` every timing, and
    the other fields those of the median one."""
    features = np.random.default_rng(0).standard_normal((1, table.frames.input, n_mels), dtype=np.float32)
    graph = Graph(onnx_bytes, {INPUT_NAME: features})
    timings = sorted((ModelTimer(device, PROTOCOLS[protocols], table.reference_ms).time(graph, prepared=True)
                      for _ in range(max(repeats, 1))), key=lambda m: m.ms)
    m = timings[(len(timings) - 1) // 2]
    return {"ms": float(np.median([t.ms for t in timings])), "median_ms": m.median_ms, "p90_ms": m.p90_ms, "cv": m.cv,
            "runs": m.runs, "sessions": m.sessions, "protocol": protocols, "repeats_ms": [t.ms for t in timings]}


def _onnx_model(session):
    """An ONNX Runtime session as an evaluate() model: one utterance at a time (batch-1 export)."""
    def run(features: torch.Tensor, lengths: torch.Tensor) -> SubnetOutput:
        ctc, intents, out_lengths = [], [], []
        for x, n in zip(features, lengths):
            logits, intent = session.run(None, {INPUT_NAME: x[None, :int(n)].numpy()})
            ctc.append(torch.from_numpy(logits[0]))
            intents.append(torch.from_numpy(intent[0]))
            out_lengths.append(logits.shape[1])
        padded = torch.nn.utils.rnn.pad_sequence(ctc, batch_first=True)
        return SubnetOutput(padded, torch.stack(intents), torch.tensor(out_lengths))
    return run


def _production_store(supernet, settings: VerifySettings, test: FeatureStore) -> FeatureStore:
    """The test split as audio captured at the production rate and brought to the model's rate."""
    config = dataclasses.replace(FeatureConfig.from_dict(supernet.metadata["features"]),
                                 capture_rate=settings.production_sample_rate)
    cache = test.path.parent if test.path is not None else None
    return FeatureStore.build(list(test.utterances), config, cache, resample=supernet.metadata.get("resample", False))


def run_verify(bundle_path: str | Path, settings: VerifySettings, out: VerifyFiles | str | Path | None = None,
               run: RunDir | str | Path | None = None, supernet_path: Path | None = None,
               lut_path: Path | None = None, progress: bool = True, log=print) -> dict:
    """Verify every model of the bundle into ``out`` (default: ``verify/`` beside it); a user data set's
    features are cached in ``run`` (default: the bundle's folder). Returns the verify.json content (also
    written)."""
    from .latency.table import find_table
    from .predictor.sample import supernet_fingerprint
    from .report import write_report

    bundle = Bundle.load(bundle_path)
    if out is None:
        out = SearchFiles(Path(bundle_path)).verify
    elif not isinstance(out, VerifyFiles):
        out = VerifyFiles(Path(out))
    run = RunDir.of(Path(bundle_path).parent if run is None else run)
    supernet_path = supernet_file(path=supernet_path or bundle.model["supernet"]["path"])
    supernet = load_supernet(supernet_path)
    if supernet.space != bundle.space:
        raise PredictnasError(f"{supernet_path}: its search space differs from the one top.json was searched in")
    recorded = bundle.model["supernet"].get("hash")
    if recorded and (weights := supernet_fingerprint(supernet_path)) != recorded:
        raise PredictnasError(f"{supernet_path}: not the supernet top.json was searched with (hash {weights}, "
                              f"top.json records {recorded})")
    table = LatencyTable.load(lut_path or find_table(settings.device, bundle.space.name))
    warnings = check_hardware(bundle, table, settings)
    check_predictions(bundle, table)
    decoder = decoder_for(supernet, progress)
    if not same_decoding(bundle.model.get("decoder"), decoder.spec()):
        warnings.append(f"decoding mismatch: top.json's WERs were predicted for {describe(bundle.model.get('decoder'))}; "
                        f"verify measures with the supernet's, {describe(decoder.spec())}")
    if mismatch := training_mismatch(bundle, settings):
        warnings.append(mismatch)
    model_rate = supernet.metadata["sample_rate"]
    if settings.production_sample_rate and settings.production_sample_rate != model_rate:
        warnings.append(f"feature mismatch: the models were searched and trained at {model_rate} Hz, production "
                        f"audio is {settings.production_sample_rate} Hz; WER is also reported on test audio "
                        f"captured at {settings.production_sample_rate} Hz")
    for w in warnings:
        log(f"warning: {w}")
    check_writable(out.folder)  # now, not after the trainings
    results = []
    models = models_to_verify(bundle, settings.baselines, settings.picks)
    check_recipes(models, out, settings)
    # shared by every model: the LUT's dense tables and the test split's features
    estimator = LatencyEstimator(table, SearchSpace(table.space))
    test = load_split(supernet, settings.split, run, progress=progress,
                      data=Path(settings.test_data) if settings.test_data else None)
    if settings.ray_address:  # the trainings on the cluster, side by side; the driver times and scores below
        jobs = [(model, settings.trains_from_scratch(model)) for model in models]
        for model, _ in jobs:
            claim_folder(out.model(model.name), model, settings)
        train_on_ray(settings.ray_address, supernet_path, [(out.model(m.name).training, m.arch,
                                                            settings.train_config(s), s) for m, s in jobs],
                     settings.seed, run, log)
    for i, model in enumerate(models, 1):
        log(f"[{i}/{len(models)}] {model.name} ({model.arch.arch_id})")
        results.append(verify_model(model, supernet, table, estimator, test, settings, out, progress, decoder, run))
    verification = {"bundle": str(Path(bundle_path).resolve()), "settings": dataclasses.asdict(settings),
                    "device": table.device, "lut": table.source, "decoding": decoder.spec(), "warnings": warnings,
                    "budget_ms": bundle.objective.get("budget_ms"), "predictor": bundle.predictor, "search": bundle.search,
                    "models": results}
    write_report(verification, out)
    return verification
