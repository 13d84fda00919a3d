"""The ``sample`` stage: evaluate a covering sample of subnets with supernet weights into the store.

Each subnet gets WER and CER per environment and intent accuracy on the dev set (the supernet's decoder
and the same :func:`~predictnas.evaluate.evaluate` as every stage), params, FLOPs for the reference
input, the LUT latency estimate when a table is given, and its zero-cost proxies on one fixed dev
minibatch. Evaluations run on an :class:`~predictnas.executor.Executor`; this driver alone writes the
store, one transaction per subnet, so a killed run loses only what was in flight and a re-run skips what
is stored.

``repeat`` re-evaluates the first subnets of the sample on the test split (unseen voices, disjoint from
dev, the same size): the ``repeat`` protocol, from which ``fit`` measures the noise ceiling.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from ..complexity import flops, param_counts
from ..data.dataset import epoch_batches
from ..data.text import CharTokenizer
from ..evaluate import bind, evaluate
from ..errors import PredictnasError
from ..executor import make_executor
from ..io import atomic_path
from ..experiment import decoder_for, load_split, load_trained_supernet, supernet_file
from ..supernet import load_supernet
from ..quantization import int8_model
from ..rundir import RunDir
from ..space import SearchSpace, largest_arch, smallest_arch
from .features import REFERENCE_FRAMES
from .fit import INT8, INT8_PROTOCOL, NOISE_PROTOCOL, target_values
from .proxies import PROXIES, compute_proxies
from .sampling import coverage_sample
from .store import EvalRecord, SQLiteStore

EVAL_BATCH_SECONDS = 120.0
PROXY_BATCH_SIZE = 16
_SPLIT_OF = {"dev": "dev", NOISE_PROTOCOL: "test", INT8_PROTOCOL: "dev"}


@dataclass(frozen=True)
class SampleSummary:
    requested: int
    evaluated: int
    skipped: int
    repeats: int
    seconds: float
    store: Path


def supernet_fingerprint(path: Path) -> str:
    from ..pretrained import sha256_of

    return sha256_of(Path(path))[:16]


def supernet_info(supernet, path: Path, fingerprint: str) -> dict:
    """What the stages after the predictor need to know about the supernet (it travels into top.json);
    the shipped supernet is recorded by name, so the record holds wherever the package is installed."""
    from .. import pretrained

    meta = supernet.metadata
    shipped = pretrained.artifact("supernet")
    where = pretrained.reference() if shipped is not None and Path(path).resolve() == shipped.resolve() else \
        str(Path(path).resolve())
    return {"path": where, "hash": fingerprint, "preset": meta.get("preset"),
            "sample_rate": meta.get("sample_rate"), "features": meta.get("features"), "intents": meta.get("intents")}


def strata_estimator(run: RunDir, supernet_path: Path | None = None, lut_path: Path | None = None):
    """The latency estimator that stratifies ``sample`` for the supernet's space: the given table, or the
    shipped cpu one if any (None without either: parameters stand in for latency)."""
    from ..latency.estimate import LatencyEstimator
    from ..latency.table import LatencyTable, find_table

    space_config = load_trained_supernet(run, supernet_path).space
    if lut_path is None:
        try:
            lut_path = find_table("cpu", space_config.name)
        except PredictnasError:
            return None  # no table for this space: parameters stand in for latency in the strata
    table = LatencyTable.load(lut_path)
    if table.space.name != space_config.name:
        raise PredictnasError(f"{lut_path}: built for space {table.space.name!r}, the supernet's is {space_config.name!r}")
    return LatencyEstimator(table)


def sample_subnets(run: RunDir | str | Path, n: int, workers: int = 1, seed: int = 0, supernet_path: Path | None = None,
                   estimator=None, repeat: int = 0, with_proxies: bool = True, progress: bool = True,
                   around_largest: bool = True,
                   ray_address: str | None = None, int8: bool = False) -> SampleSummary:
    """Evaluate the first ``n`` subnets of the covering sample that the store does not hold yet
    (with ``around_largest``, the default, every second one from around the largest; see
    :func:`coverage_sample`), on ``workers`` local processes or the Ray cluster at ``ray_address``; with
    ``int8``, each also as the cpu-int8 device computes it (the ``dev_int8`` protocol), and so is every other
    subnet the store holds (the search's measured finalists), since ``fit`` needs int8 for all of them."""
    run = RunDir.of(run)
    space, store, supernet_path = _open_store(run, supernet_path, {"sample_seed": str(seed)}, progress)
    anchors = np.stack([space.encode(largest_arch(space)), space.encode(smallest_arch(space))])
    genes = coverage_sample(space, n, seed, cost=estimator.estimate if estimator is not None else None,
                            anchors=anchors, centre=anchors[0] if around_largest else None)
    latencies = estimator.estimate(genes) if estimator is not None else [None] * len(genes)
    archs = [space.decode(row) for row in genes[:n]]
    jobs = []
    for protocol, count in (("dev", n), (NOISE_PROTOCOL, min(repeat, n)), (INT8_PROTOCOL, n if int8 else 0)):
        stored = store.stored_ids(protocol)
        for arch, latency in zip(archs[:count], latencies[:count]):
            if arch.arch_id not in stored:
                jobs.append(_job(protocol, arch, latency, with_proxies))
    requested = n * (2 if int8 else 1) + min(repeat, n)
    if int8:  # fit needs int8 for every dev row, the search's measured finalists included, not only the sample's
        covered = store.stored_ids(INT8_PROTOCOL) | {arch.arch_id for arch in archs}
        others = [r for r in store.records("dev") if r.arch_id not in covered]
        jobs += [_job(INT8_PROTOCOL, space.from_json(r.arch), r.latency_ms, with_proxies) for r in others]
        requested += len(others)
    skipped = requested - len(jobs)
    start = time.perf_counter()
    try:
        evaluated = _run_jobs(jobs, store, run, supernet_path, workers, progress, ray_address)
    finally:
        store.close()
    return SampleSummary(n, evaluated, skipped, min(repeat, n), time.perf_counter() - start, store.path)


def evaluate_rows(run: RunDir | str | Path, genes: np.ndarray, workers: int = 1, supernet_path: Path | None = None,
                  estimator=None, progress: bool = True,
                  ray_address: str | None = None, protocol: str = "dev") -> list[EvalRecord]:
    """Dev-set evaluations of the rows ``genes`` with the supernet's weights, in their order (``protocol``
    ``dev_int8``: as the int8 device computes).

    The evaluations go into the run's store like ``sample``'s (with proxies), so the next ``fit`` learns
    from them too, in int8 as well where the store has int8 evaluations; rows the store holds already are
    read back, not evaluated again.
    """
    run = RunDir.of(run)
    space, store, supernet_path = _open_store(run, supernet_path, {}, progress)
    archs = [space.decode(row) for row in np.asarray(genes)]
    latencies = estimator.estimate(genes) if estimator is not None else [None] * len(archs)
    try:
        protocols = {"dev", protocol} | ({INT8_PROTOCOL} if store.stored_ids(INT8_PROTOCOL) else set())
        unique = {a.arch_id: (a, t) for a, t in zip(archs, latencies)}
        stored = {p: store.stored_ids(p) for p in protocols}
        todo = [_job(p, a, t, p == "dev") for p in sorted(protocols) for a, t in unique.values()
                if a.arch_id not in stored[p]]
        _run_jobs(todo, store, run, supernet_path, workers, progress, ray_address)
        by_id = {r.arch_id: r for r in store.records(protocol)}
    finally:
        store.close()
    return [by_id[a.arch_id] for a in archs]


def supernet_meter(target: str, supernet_path: str | Path, run: RunDir | str | Path, workers: int = 1, estimator=None,
                   progress: bool = True, ray_address: str | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """``genes -> WER`` (or CER) on ``target`` (``"wer/<environment>"``, ``"cer/<environment>"``, or either
    after ``int8/``, as a predictor names them), measured on the dev set with the weights of
    ``supernet_path`` (a file or ``pretrained:<name>``); the evaluations go into ``run``'s store."""
    int8 = target.startswith(INT8)
    metric = target.removeprefix(INT8)
    kind, _, environment = metric.partition("/")
    if kind not in ("wer", "cer") or not environment:
        raise PredictnasError(f"cannot measure target {target!r}: expected [int8/]wer/<environment> or "
                              "[int8/]cer/<environment>")
    supernet_path = supernet_file(path=supernet_path)

    def measure(genes: np.ndarray) -> np.ndarray:
        return target_values(evaluate_rows(run, genes, workers, supernet_path, estimator, progress,
                                           ray_address=ray_address, protocol=INT8_PROTOCOL if int8 else "dev"),
                             metric)

    return measure


def _open_store(run: RunDir, supernet_path, fingerprint: dict,
                progress: bool = True) -> tuple[SearchSpace, SQLiteStore, Path]:
    """The run's store, checked against (or stamped with) this supernet, the space and ``fingerprint``."""
    supernet_path = supernet_file(run, supernet_path)
    supernet = load_supernet(supernet_path)
    space = SearchSpace(supernet.space)
    weights = supernet_fingerprint(supernet_path)  # hashes the whole weights file: once
    decoding = decoder_for(supernet, progress).spec()
    _seed_from_shipped(run.store, supernet_path)
    store = SQLiteStore(run.store, {"supernet": weights,
                                     "space": json.dumps(space.config.to_dict(), sort_keys=True),
                                     "decoder": json.dumps(decoding, sort_keys=True),
                                     **fingerprint},
                        info={**supernet_info(supernet, supernet_path, weights), "decoder": decoding})
    return space, store, supernet_path


def _seed_from_shipped(store_path: Path, supernet_path: Path) -> None:
    """A new store for the shipped supernet starts as a copy of the shipped sample, so what this run
    evaluates joins it (and ``fit`` here refits on both); the package's copy is never written."""
    from .. import pretrained

    shipped, sample = pretrained.artifact("supernet"), pretrained.artifact("store")
    if store_path.exists() or shipped is None or sample is None or supernet_path.resolve() != shipped.resolve():
        return
    store_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(store_path) as tmp:
        shutil.copyfile(sample, tmp)


def _job(protocol: str, arch, latency_ms, with_proxies: bool) -> tuple:
    """What a worker needs to evaluate one subnet (see :func:`_evaluate_job`); plain data, so it pickles."""
    return protocol, arch.to_dict(), None if latency_ms is None else float(latency_ms), with_proxies


def _run_jobs(jobs: list[tuple], store: SQLiteStore, run: RunDir, supernet_path: Path, workers: int,
              progress: bool, ray_address: str | None = None) -> int:
    """Evaluate ``jobs`` on local worker processes (or Ray actors), adding each record to ``store`` as it
    arrives (one transaction each); returns how many rows were added."""
    if not jobs:
        return 0
    executor = make_executor(workers, ray_address, setup=_setup_worker,
                             setup_args=(str(run.root.resolve()), str(Path(supernet_path).resolve())))
    bar = tqdm(total=len(jobs), disable=not progress, unit="subnet", desc="evaluate", dynamic_ncols=True)
    added = 0
    try:
        for _, record in executor.map_unordered(_evaluate_job, jobs):
            added += store.add(record)
            bar.update(1)
            bar.set_postfix(wer=f"{100 * record.wer['all']:.1f}%", s=f"{record.eval_seconds:.1f}")
    finally:
        bar.close()
    return added


# ---- worker side: one supernet and the evaluation data per process ---------------------------------

_WORKER: dict = {}


def _setup_worker(run_root: str, supernet_path: str) -> None:
    supernet = load_trained_supernet(path=supernet_path)
    _WORKER.update(supernet=supernet, run=RunDir(run_root), space=SearchSpace(supernet.space), batches={},
                   decoder=decoder_for(supernet))


def _batches(split: str) -> list:
    if split not in _WORKER["batches"]:
        supernet = _WORKER["supernet"]
        store = load_split(supernet, split, _WORKER["run"], progress=False)
        _WORKER["batches"][split] = list(epoch_batches(store, supernet.metadata["intents"],
                                                       batch_seconds=EVAL_BATCH_SECONDS))
        if split == "dev":  # a fixed labelled minibatch for the proxies
            generator = torch.Generator().manual_seed(0)
            _WORKER["proxy_batch"] = next(iter(epoch_batches(store, supernet.metadata["intents"],
                                                             batch_size=PROXY_BATCH_SIZE, shuffle=True,
                                                             generator=generator)))
    return _WORKER["batches"][split]


def _evaluate_job(job: tuple) -> EvalRecord:
    protocol, arch_dict, latency_ms, with_proxies = job
    supernet, space = _WORKER["supernet"], _WORKER["space"]
    arch = space.from_json(arch_dict)
    model = bind(supernet, arch)
    if protocol == INT8_PROTOCOL:
        model = int8_model(model)
    result = evaluate(model, _batches(_SPLIT_OF[protocol]), CharTokenizer(), _WORKER["decoder"])
    row = space.encode(arch)[None]
    proxies, proxy_seconds = {}, 0.0
    if with_proxies and protocol == "dev":
        _batches("dev")
        proxies, proxy_seconds = compute_proxies(arch, supernet.space, _WORKER["proxy_batch"], PROXIES)
    return EvalRecord(arch_id=arch.arch_id, protocol=protocol, arch=arch.to_dict(), wer=result.wer, cer=result.cer,
                      intent_accuracy=result.intent_accuracy, params=int(param_counts(space, row)[0]),
                      flops=int(flops(space, row, REFERENCE_FRAMES)[0]), latency_ms=latency_ms, proxies=proxies,
                      eval_seconds=result.seconds, proxy_seconds=proxy_seconds)
