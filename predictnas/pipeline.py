"""``predictnas run``: every stage of DESIGN §1 in order, in one run directory, skipping what is done.

latency table (this machine's, built once when ``lut/`` has none for its fingerprint) -> corpus +
supernet (``train`` resumes or returns at once when finished) -> ``sample`` (skips stored subnets) ->
``fit`` -> ``search`` (skipped when ``top.json`` exists) -> ``verify`` (keeps finished models). Each
stage is the same library call its own command makes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .bundle import Bundle


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


def run_pipeline(run_dir: Path, settings: PipelineSettings, log: Callable[[str], None] = print,
                 progress: bool = True) -> Bundle:
    from .experiment import DataSources, get_preset, train_supernet
    from .latency.build import BuildSettings, table_for_this_machine
    from .latency.devices import get_device
    from .latency.estimate import LatencyEstimator
    from .latency.table import LatencyTable
    from .predictor import AccuracyPredictor, FeatureSpec, SQLiteStore
    from .predictor.fitting import fit_predictor
    from .predictor.runner import STORE, sample_subnets, supernet_meter
    from .search.job import SearchSettings, parse_latency_ms, run_search
    from .space import SearchSpace
    from .verify import VerifySettings, run_verify, shipped_baselines

    budget_ms = parse_latency_ms(settings.budget)  # a bad budget fails before an hour of training
    preset = get_preset(settings.preset)
    log("[1/6] latency table of this CPU")
    table_path = settings.lut or table_for_this_machine(get_device("cpu"), BuildSettings(space=preset.space),
                                                        progress=progress, log=log)
    table = LatencyTable.load(table_path)
    log(f"[2/6] supernet ({preset.name} preset) in {run_dir}")
    train_supernet(run_dir, preset, DataSources(corpus_preset=preset.corpus), progress=progress)
    log(f"[3/6] evaluating {settings.subnets} subnets with the supernet's weights")
    sample_subnets(run_dir, settings.subnets, workers=settings.workers, estimator=LatencyEstimator(table),
                   repeat=settings.repeat, progress=progress)
    log("[4/6] fitting the accuracy predictor")
    with SQLiteStore(run_dir / STORE) as store:
        space = SearchSpace(store.space_config())
        predictor, _ = fit_predictor(store, space, FeatureSpec(("encoding", "closed_form"), space.config))
    predictor.save(run_dir / "predictor.json")
    predictor = AccuracyPredictor.load(run_dir / "predictor.json")
    top = run_dir / "top.json"
    if top.exists():
        log(f"[5/6] search: {top} exists, kept (delete it to search again)")
    else:
        log(f"[5/6] searching under {budget_ms:g} ms for {settings.search_seconds:g} s")
        measure = supernet_meter(predictor.target_for(None), run_dir / "supernet.pt", settings.workers,
                                 LatencyEstimator(table), progress) if settings.rescore else None
        # this machine's table (unless --lut named another's): its finalists can be timed here
        timing = table.check_device(allow_mismatch=True) is None
        run_search(SearchSettings(budget_ms=budget_ms, top_k=settings.top_k, seconds=settings.search_seconds,
                                  rescore=settings.rescore,
                                  time_finalists=settings.rescore if timing else 0),
                   table, predictor, top, run_dir / "predictor.json", progress=progress, command="predictnas run",
                   log=log, measure=measure)
    if settings.verify:
        log("[6/6] verifying the picks" + (" and the hand-crafted baselines" if settings.baselines else ""))
        baselines = shipped_baselines() if settings.baselines else ()
        run_verify(top, run_dir / "verify", VerifySettings(finetune_steps=settings.finetune_steps, baselines=baselines,
                                                           protocols=settings.protocol),
                   lut_path=table_path, progress=progress, log=log)
    return Bundle.load(top)
