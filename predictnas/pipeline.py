"""``predictnas run``: every stage of DESIGN §1 in order, in one run directory, skipping what is done.

From the shipped artifacts (the default): this machine's latency table (measured once into the user
cache where none is shipped for its fingerprint) -> ``search`` for the WER after fine-tuning, through
the shipped predictor and calibration -> ``verify`` of its picks beside the hand-crafted baselines.

Training its own (``--train``, user data, or another preset): latency table -> corpus + supernet
(``train`` resumes or returns at once when finished) -> ``sample`` (skips stored subnets) -> ``fit`` ->
``search`` (skipped when ``top.json`` exists) -> ``verify`` (keeps finished models) -> ``calibrate`` on
what verify measured -> ``search --finetune-calibration`` into ``calibrated/top.json`` -> ``verify`` of
its picks. Each stage is the same library call its own command makes.

Why two rounds: the predictor learns shared-weight WER, but fine-tuning takes different amounts off
different models (more off ones with more compute and conv modules), so the first search optimizes the
wrong number. The models verify fine-tunes tell how shared-weight WER and the architecture turn into the
WER verify measures (:mod:`predictnas.predictor.calibrate`), and the second search optimizes that
estimate. The shipped calibration was made the same way, so a run from the shipped artifacts needs one
round only.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .experiment import DataSources
from .rundir import RunDir, SearchFiles


@dataclass(frozen=True)
class PipelineSettings:
    budget: str = "40ms"
    preset: str = "small"
    subnets: int = 300
    repeat: int = 30
    workers: int = 1
    search_seconds: float = 60.0
    rescore: int = 32  # finalists measured with the supernet before the top-k is chosen (search --rescore)
    top_k: int = 3
    verify: bool = True
    finetune_steps: int = 400
    baselines: bool = True
    lut: Path | None = None  # default: the cpu table of the preset's space measured on this machine
    protocol: str = "standard"  # verify's timing protocol
    calibrate: bool = True  # after verify: calibrate, search for the fine-tuned WER, verify those picks
    pretrained: bool = False  # start from the shipped supernet, predictor and calibration (no training)
    data: DataSources | None = None  # user data instead of the preset's corpus
    ray_address: str | None = None  # evaluate subnets and train verify's models on this Ray cluster


def run_pipeline(run: RunDir | Path, settings: PipelineSettings, log: Callable[[str], None] = print,
                 progress: bool = True) -> Path:
    """Run every stage into ``run``; returns the final top.json (``calibrated/top.json`` after a calibration).
    With ``settings.pretrained``, the shipped artifacts replace training, sampling, fitting and calibrating."""
    from . import pretrained
    from .bundle import Bundle
    from .errors import PredictnasError
    from .experiment import get_preset, train_supernet
    from .latency.build import BuildSettings, table_for_this_machine
    from .latency.devices import get_device
    from .latency.estimate import LatencyEstimator
    from .latency.table import LatencyTable
    from .predictor import AccuracyPredictor, FeatureSpec, SQLiteStore
    from .predictor.calibrate import FinetuneCalibration, calibrate
    from .predictor.fit import fit_predictor
    from .predictor.sample import sample_subnets, supernet_meter
    from .search.search import SearchSettings, parse_latency_ms, run_search
    from .space import SearchSpace
    from .verify import VerifySettings, run_verify, shipped_baselines

    run = RunDir.of(run)
    budget_ms = parse_latency_ms(settings.budget)  # a bad budget fails before an hour of training
    preset = get_preset(settings.preset)
    calibrating = settings.verify and settings.calibrate and not settings.pretrained
    stages = 4 if settings.pretrained else 9 if calibrating else 6
    step = lambda n, text: log(f"[{n}/{stages}] {text}")  # noqa: E731
    step(1, "latency table of this CPU")
    table_path = settings.lut or table_for_this_machine(get_device("cpu"), BuildSettings(space=preset.space),
                                                        progress=progress, log=log)
    table = LatencyTable.load(table_path)
    finetune = None
    if settings.pretrained:
        supernet_path, predictor_path = pretrained.artifact("supernet"), pretrained.artifact("predictor")
        finetune = FinetuneCalibration.load(pretrained.artifact("finetune"))
        step(2, f"the shipped supernet, predictor and fine-tuning calibration ({pretrained.DEFAULT}; --train to "
                "train your own)")
    else:
        supernet_path, predictor_path = run.supernet, run.predictor
        step(2, f"supernet ({preset.name} preset) in {run}")
        train_supernet(run, preset, settings.data or DataSources(corpus_preset=preset.corpus), progress=progress)
        step(3, f"evaluating {settings.subnets} subnets with the supernet's weights")
        sample_subnets(run, settings.subnets, workers=settings.workers, estimator=LatencyEstimator(table),
                       repeat=settings.repeat, progress=progress, ray_address=settings.ray_address)
        step(4, "fitting the accuracy predictor")
        with SQLiteStore(run.store) as store:
            space = SearchSpace(store.space_config())
            fitted, _ = fit_predictor(store, space, FeatureSpec(("encoding", "closed_form"), space.config))
        fitted.save(predictor_path)
    predictor = AccuracyPredictor.load(predictor_path)
    # this machine's table (unless --lut named another's): its finalists can be timed here
    timing = table.check_device(allow_mismatch=True) is None
    search_settings = SearchSettings(budget_ms=budget_ms, top_k=settings.top_k, seconds=settings.search_seconds,
                                     rescore=settings.rescore, time_finalists=settings.rescore if timing else 0)
    baselines = shipped_baselines(predictor.space.config.name) if settings.baselines else ()
    if settings.baselines and not baselines:
        log(f"note: no hand-crafted baselines are shipped for space {predictor.space.config.name}: verifying the "
            "picks alone")
    verify_settings = VerifySettings(finetune_steps=settings.finetune_steps, protocols=settings.protocol,
                                     baselines=baselines, ray_address=settings.ray_address)

    def search(files: SearchFiles, n: int, what: str, finetune=None) -> None:
        top = files.top
        if top.exists():
            searched = Bundle.load(top).model["supernet"].get("hash")
            if searched != (predictor.supernet or {}).get("hash"):
                raise PredictnasError(f"{top} was searched with another supernet than this run's; use another "
                                      "--run-dir, or delete it to search again")
            step(n, f"search: {top} exists, kept (delete it to search again)")
            return
        step(n, f"searching under {budget_ms:g} ms for {settings.search_seconds:g} s{what}")
        def meter(target: str):
            return supernet_meter(target, supernet_path, run, settings.workers, LatencyEstimator(table),
                                  progress, settings.ray_address)
        run_search(search_settings, table, predictor, files, predictor_path, progress=progress,
                   command="predictnas run", log=log, meter=meter, finetune=finetune)

    def verify(files: SearchFiles, n: int) -> None:
        step(n, "verifying the picks" + (" and the hand-crafted baselines" if settings.baselines else ""))
        run_verify(files.top, verify_settings, files.verify, run, lut_path=table_path, progress=progress, log=log)

    first = run.search
    if settings.pretrained:
        search(first, 3, ", for the WER after fine-tuning", finetune)
        if settings.verify:
            verify(first, 4)
        return first.top
    search(first, 5, "")
    if not settings.verify:
        return first.top
    verify(first, 6)
    if not calibrating:
        return first.top
    step(7, "calibrating shared-weight WER (and architecture descriptors) to the WER verify measured")
    try:
        # architecture descriptors only beside the baselines: the top-k alone are too few and too alike to
        # fit their coefficients
        finetune = calibrate(run, [first.verify.report_json], supernet_path,
                             settings.workers, progress=progress,
                             **({} if verify_settings.baselines else {"descriptors": ()}))
    except PredictnasError as e:  # too few or too alike models to fit a line: the first round stands
        log(f"not calibrated: {e}")
        return first.top
    finetune.save(run.finetune)
    log(f"  {finetune.describe()}")
    second = run.calibrated
    search(second, 8, ", for the fine-tuned WER", finetune)
    for baseline in map(Path, verify_settings.baselines):  # measured in the first round: not trained again
        done, there = first.verify.model(baseline.stem).folder, second.verify.model(baseline.stem).folder
        if done.is_dir() and not there.exists():
            shutil.copytree(done, there)
    verify(second, 9)
    return second.top
