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
WER verify measures (:mod:`predictnas.predictor.finetune`), and the second search optimizes that
estimate. The shipped calibration was made the same way, so a run from the shipped artifacts needs one
round only.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .experiment import DataSources


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


def run_pipeline(run_dir: Path, settings: PipelineSettings, log: Callable[[str], None] = print,
                 progress: bool = True) -> Path:
    """Run every stage into ``run_dir``; returns the final top.json (``calibrated/top.json`` after a calibration).
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
    from .predictor.finetune import FinetuneCalibration, calibrate
    from .predictor.fitting import fit_predictor
    from .predictor.runner import STORE, sample_subnets, supernet_meter
    from .search.job import SearchSettings, parse_latency_ms, run_search
    from .space import SearchSpace
    from .verify import VerifySettings, run_verify, shipped_baselines

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
        supernet_path, predictor_path = run_dir / "supernet.pt", run_dir / "predictor.json"
        step(2, f"supernet ({preset.name} preset) in {run_dir}")
        train_supernet(run_dir, preset, settings.data or DataSources(corpus_preset=preset.corpus), progress=progress)
        step(3, f"evaluating {settings.subnets} subnets with the supernet's weights")
        sample_subnets(run_dir, settings.subnets, workers=settings.workers, estimator=LatencyEstimator(table),
                       repeat=settings.repeat, progress=progress, ray_address=settings.ray_address)
        step(4, "fitting the accuracy predictor")
        with SQLiteStore(run_dir / STORE) as store:
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

    def search(top: Path, n: int, what: str, finetune=None) -> None:
        if top.exists():
            searched = Bundle.load(top).model["supernet"].get("hash")
            if searched != (predictor.supernet or {}).get("hash"):
                raise PredictnasError(f"{top} was searched with another supernet than this run's; use another "
                                      "--run-dir, or delete it to search again")
            step(n, f"search: {top} exists, kept (delete it to search again)")
            return
        step(n, f"searching under {budget_ms:g} ms for {settings.search_seconds:g} s{what}")
        def meter(target: str):
            return supernet_meter(target, supernet_path, run_dir, settings.workers, LatencyEstimator(table),
                                  progress, settings.ray_address)
        run_search(search_settings, table, predictor, top, predictor_path, progress=progress,
                   command="predictnas run", log=log, meter=meter, finetune=finetune)

    def verify(top: Path, n: int) -> None:
        step(n, "verifying the picks" + (" and the hand-crafted baselines" if settings.baselines else ""))
        run_verify(top, top.parent / "verify", verify_settings, lut_path=table_path, progress=progress, log=log)

    top = run_dir / "top.json"
    if settings.pretrained:
        search(top, 3, ", for the WER after fine-tuning", finetune)
        if settings.verify:
            verify(top, 4)
        return top
    search(top, 5, "")
    if not settings.verify:
        return top
    verify(top, 6)
    if not calibrating:
        return top
    step(7, "calibrating shared-weight WER (and architecture descriptors) to the WER verify measured")
    try:
        # architecture descriptors only beside the baselines: the top-k alone are too few and too alike to
        # fit their coefficients
        finetune = calibrate(run_dir, [top.parent / "verify" / "verify.json"], supernet_path,
                             settings.workers, progress=progress,
                             **({} if verify_settings.baselines else {"descriptors": ()}))
    except PredictnasError as e:  # too few or too alike models to fit a line: the first round stands
        log(f"not calibrated: {e}")
        return top
    finetune.save(run_dir / "finetune.json")
    log(f"  {finetune.describe()}")
    calibrated = run_dir / "calibrated" / "top.json"
    search(calibrated, 8, ", for the fine-tuned WER", finetune)
    for baseline in map(Path, verify_settings.baselines):  # measured in the first round: not trained again
        done, there = top.parent / "verify" / baseline.stem, calibrated.parent / "verify" / baseline.stem
        if done.is_dir() and not there.exists():
            shutil.copytree(done, there)
    verify(calibrated, 9)
    return calibrated
