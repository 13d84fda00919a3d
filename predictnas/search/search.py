"""A whole search as the ``search`` command runs it: LUT + predictor -> minimize -> top.json, pareto.json/png.

The unit parsers give one-line errors (``40ms``, ``0.04s``; ``5M`` parameters; ``64MB``), the guards run
before any work (hardware gap of the table, a predictor for another space, an impossible budget), and
every artifact is written atomically.
"""

from __future__ import annotations

import math
import re
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..bundle import Bundle, Candidate
from ..errors import PredictnasError
from ..io import atomic_path, check_writable, write_json
from ..latency.estimate import LatencyEstimator
from ..latency.table import LatencyTable
from ..latency.timing import time_architectures
from ..predictor.fit import INT8
from ..rundir import RunDir, SearchFiles
from .finalists import TIMED, confirm_picks, first_occurrences, measure_finalists, pick_measured
from .ga import GeneticAlgorithm
from .minimize import minimize
from .nsga2 import NSGA2
from .problem import Problem, Scores
from .scoring import CostScorer
from .termination import MaxGenerations, MaxSeconds

_UNITS_MS = {"ms": 1.0, "s": 1000.0, "us": 1e-3, "µs": 1e-3}
_UNITS_COUNT = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9}
_UNITS_BYTES = {"b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "kib": 1024, "mib": 1024 ** 2, "gib": 1024 ** 3}


def _parse(text: str, units: dict, what: str, example: str) -> float:
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([a-zµ]*)\s*", str(text).lower())
    if not match or match.group(2) not in units:
        raise PredictnasError(f"{what} {text!r}: expected a number with a unit, e.g. {example}")
    value = float(match.group(1)) * units[match.group(2)]
    if not value > 0:
        raise PredictnasError(f"{what} {text!r}: must be positive")
    if not math.isfinite(value):
        raise PredictnasError(f"{what} {text!r}: must be a finite number")
    return value


def parse_latency_ms(text: str) -> float:
    return _parse(text, _UNITS_MS, "latency budget", "40ms or 0.04s")


def parse_count(text: str) -> float:
    return _parse(text, _UNITS_COUNT, "parameter budget", "5M or 500k")


def parse_bytes(text: str) -> float:
    return _parse(text, _UNITS_BYTES, "memory budget", "64MB or 512MiB")


@dataclass(frozen=True)
class SearchSettings:
    budget_ms: float
    lam: float = 0.02
    max_params: float | None = None
    max_memory_bytes: float | None = None
    top_k: int = 5
    pareto: bool = False
    environment: str | None = None
    generations: int | None = None
    seconds: float = 60.0
    seed: int = 0
    population: int | None = None
    rescore: int = 0  # finalists measured with the supernet's weights before the top-k is chosen
    time_finalists: int = 0  # finalists timed on this machine; the budget then holds for their timings


class ScannedSample:
    """Wraps a scorer and keeps a uniform random sample of what it scored, for the Pareto plot."""

    def __init__(self, scorer: CostScorer, keep: int = 20_000, seed: int = 0):
        self.scorer, self.keep = scorer, keep
        self.rng = np.random.default_rng(seed)
        self.wer, self.latency, self.seen = np.zeros(0), np.zeros(0), 0

    def __call__(self, genes: np.ndarray, latency_ms: np.ndarray | None = None) -> Scores:
        scores = self.scorer(genes, latency_ms=latency_ms)
        self.seen += len(genes)
        take = self.rng.random(len(genes)) < self.keep / max(self.seen, self.keep)  # about keep rows in all
        self.wer = np.concatenate([self.wer, scores.wer[take]])
        self.latency = np.concatenate([self.latency, scores.latency_ms[take]])
        if len(self.wer) > 2 * self.keep:
            thin = self.rng.random(len(self.wer)) < 0.5
            self.wer, self.latency = self.wer[thin], self.latency[thin]
        return scores


def int8_target(predictor, table, finetune, log: Callable[[str], None]) -> tuple[bool, object]:
    """Whether WER means the WER as the int8 device computes it: on an int8 device's table, with a predictor
    fitted on int8 evaluations (``sample --int8``). A fine-tuning calibration fitted on float WER does not
    map int8 WER, so it is left aside then. Returns ``(int8, the calibration to use)``."""
    if table.device.get("fingerprint", {}).get("dtype") != "int8":
        return False, finetune
    if not any(t.startswith(INT8) for t in predictor.targets):
        log("note: ranking by float WER: the predictor has no int8 model (predictnas sample --int8, then fit)")
        return False, finetune
    if finetune is not None and not finetune.source.startswith(INT8):
        log("note: optimizing the int8 WER with the supernet's weights (the fine-tuning calibration maps float WER)")
        finetune = None
    return True, finetune


def wer_model(predictor, environment: str | None, finetune=None,
              int8: bool = False) -> tuple[str, Callable[[np.ndarray], np.ndarray], str]:
    """What the search calls WER, its prediction from gene rows, and the predictor target the supernet
    measures for it: the predictor's WER for the environment (``int8``: as the int8 device computes it),
    or with a fine-tuning calibration the predictor's shared-weight ``finetune.source`` (and the
    architecture's descriptors) through it."""
    if finetune is None:
        target = predictor.target_for(environment, int8)
        return target, lambda genes: predictor.predict(genes, target), target
    if environment:
        raise PredictnasError("the fine-tuning calibration estimates WER over every environment; search without "
                              "--environment, or without the calibration")
    supernet_hash = (predictor.supernet or {}).get("hash")
    if finetune.supernet_hash != supernet_hash:
        raise PredictnasError(f"the fine-tuning calibration was fitted on supernet {finetune.supernet_hash}, the "
                              f"predictor on {supernet_hash}; run `predictnas calibrate` for this run")
    if finetune.source not in predictor.boosters:
        raise PredictnasError(f"the predictor has no {finetune.source} model for the fine-tuning calibration; fit it again")
    return (f"finetuned wer/all from {' and '.join(finetune.inputs)}",
            lambda genes: finetune(predictor.predict(genes, finetune.source), predictor.space, genes), finetune.source)


def distinct_picks(scores: Scores, k: int) -> np.ndarray:
    """Indices of the ``k`` best rows (``scores`` is best first), skipping rows whose predicted WER and
    latency equal a better pick's: the predictor and the table cannot tell such rows apart (they differ
    in genes neither uses, e.g. a conv module's placement), so a second one adds nothing to verify. Rows
    skipped fill the picks only when fewer than ``k`` outcomes are distinct."""
    outcome = np.stack([np.asarray(scores.wer, dtype=np.float64), np.asarray(scores.latency_ms, dtype=np.float64)], 1)
    distinct = first_occurrences(outcome)
    twins = np.setdiff1d(np.arange(len(outcome)), distinct)
    return np.concatenate([distinct, twins])[:k]


def search_inputs(run: RunDir, predictor_path: Path | None, calibration_path: Path | None,
                  shared_weight_wer: bool) -> tuple[Path, Path | None]:
    """The predictor and fine-tuning calibration a search uses: the given ones; else the run directory's
    predictor; else the shipped predictor with the shipped calibration fitted beside it."""
    from .. import pretrained

    if predictor_path is None:
        own = run.predictor
        predictor_path = own if own.exists() else pretrained.artifact("predictor")
        if predictor_path is None:
            raise PredictnasError(f"no predictor: none in {run} and none shipped; run `predictnas fit` or pass "
                                  "--predictor")
        if predictor_path != own and calibration_path is None and not shared_weight_wer:
            calibration_path = pretrained.artifact("finetune")
    if shared_weight_wer and calibration_path is not None:
        raise PredictnasError("--shared-weight-wer and --finetune-calibration exclude each other")
    return predictor_path, calibration_path



def supernet_of(predictor, run: RunDir) -> str | Path:
    """The supernet whose measurements the predictor learned (``search --rescore`` measures with it):
    the one it records, else the run's."""
    return (predictor.supernet or {}).get("path") or run.supernet


def run_search(settings: SearchSettings, table: LatencyTable, predictor, out: SearchFiles | Path, predictor_path: Path,
               progress: bool = True, command: str = "",
               log: Callable[[str], None] = lambda m: print(m, file=sys.stderr),
               meter: Callable[[str], Callable[[np.ndarray], np.ndarray]] | None = None, finetune=None) -> Bundle:
    """Search, then write ``out`` (top.json, and pareto.json and pareto.png beside it).

    With ``settings.rescore`` = N and ``meter`` (a predictor target -> a function from gene rows to their
    value of that target, as fractions, measured with the supernet's weights), N finalists are measured and the top-k is the best
    of them by the reward on the measured WER (:mod:`predictnas.search.finalists`). With
    ``settings.time_finalists`` = M, max(N, M) finalists are measured and also timed on this machine (it
    must be the table's, see :mod:`predictnas.latency.timing`); only those within the budget can be
    picked, and where fewer than k are, a second group further under the budget is measured.

    With ``finetune`` (a :class:`~predictnas.predictor.calibrate.FinetuneCalibration`), WER means the WER
    ``verify`` will measure after fine-tuning: the predictor's shared-weight ``finetune.source`` through the
    calibration, and the supernet's measurement of that metric is mapped the same way. On an int8 device,
    WER is the int8 WER where the predictor has it (:func:`int8_target`).
    """
    if settings.rescore and meter is None:
        raise PredictnasError("rescoring finalists needs the supernet that the predictor was fit on")
    if predictor.space.config != table.space:
        raise PredictnasError(f"the predictor was fit on space {predictor.space.config.name!r} and the latency "
                              f"table is for {table.space.name!r} (or their sizes differ); use matching ones")
    warning = table.check_device(allow_mismatch=True)  # estimates still rank; verify refuses such a table
    if warning and settings.time_finalists:  # before minutes of search, not after
        raise PredictnasError(f"cannot time finalists here for this table: {warning}")
    if warning:
        log(f"warning: hardware gap: {warning}; predicted latencies may not hold on this machine")
    int8, finetune = int8_target(predictor, table, finetune, log)
    target, predict_wer, measured_target = wer_model(predictor, settings.environment, finetune, int8)
    measure = meter(measured_target) if settings.rescore else None
    estimator = LatencyEstimator(table, predictor.space)
    # Parameters and memory are scored for every candidate only when a budget needs them; the rows the
    # search returns get them afterwards either way.
    cost_scorer = CostScorer(estimator, predict_wer,
                             costs=settings.max_params is not None or settings.max_memory_bytes is not None)
    scorer = ScannedSample(cost_scorer, seed=settings.seed)
    problem = Problem(predictor.space, scorer, estimator, settings.budget_ms, lam=settings.lam,
                      max_params=settings.max_params, max_memory_bytes=settings.max_memory_bytes)
    out = out if isinstance(out, SearchFiles) else SearchFiles(Path(out))
    check_writable(out.top.parent)  # after the checks of the input, before the minutes of search
    if settings.pareto:
        algorithm = NSGA2(population_size=settings.population or 10_000, top_k=max(settings.top_k, 100))
    else:
        algorithm = GeneticAlgorithm(population_size=settings.population or 20_000, top_k=max(settings.top_k, 100))
    termination = (MaxGenerations(settings.generations) if settings.generations else MaxSeconds(settings.seconds))

    from tqdm import tqdm

    bar = tqdm(total=1000, disable=not progress, desc="search", unit="‰", dynamic_ncols=True, file=sys.stderr,
               bar_format="{l_bar}{bar}| {elapsed} {postfix}")

    def on_generation(stats) -> None:
        bar.n = int(1000 * stats.progress)
        bar.set_postfix_str(f"gen {stats.generations}, {stats.candidates_scored:,} scored, "
                            f"{stats.candidates_per_second:,.0f}/s, best reward {stats.best_reward:.4f}")

    started = time.perf_counter()
    result = minimize(problem, algorithm, termination, seed=settings.seed, callback=on_generation)
    bar.close()
    wall = time.perf_counter() - started
    if not len(result.genes):
        raise PredictnasError(f"no candidate met the budget of {settings.budget_ms:g} ms")

    space = predictor.space
    picks = distinct_picks(result.scores, settings.top_k)
    top_genes, top_scores, top_reward = result.genes[picks], result.scores.take(picks), result.reward[picks]
    measured, rescoring = {}, {}
    if settings.rescore or settings.time_finalists:
        wer_key = None if not settings.rescore else "finetuned_wer" if finetune else "supernet_wer"
        if settings.rescore:
            rescoring.update(rescored=0, rescore_seconds=0.0)
        if settings.time_finalists:
            rescoring.update(timed=0, timing_seconds=0.0)

        def time_rows(genes: np.ndarray, count: str) -> np.ndarray:
            """Each row timed once on this machine, counted in ``rescoring[count]``."""
            started = time.perf_counter()
            ms = np.array([m.ms for m in time_architectures(table, [space.decode(g) for g in genes], progress)])
            rescoring[count] = rescoring.get(count, 0) + len(genes)
            rescoring["timing_seconds"] = round(rescoring["timing_seconds"] + time.perf_counter() - started, 3)
            return ms

        def measure_rows(genes: np.ndarray) -> dict[str, np.ndarray]:
            values = {}  # by the key each gets in top.json
            if settings.rescore:
                log(f"measuring {len(genes)} finalists with the supernet's weights")
                started = time.perf_counter()
                supernet_values = np.asarray(measure(genes), dtype=np.float64)
                if finetune is None:
                    values["supernet_wer"] = supernet_values
                else:
                    values[f"supernet_{finetune.source.split('/')[0]}"] = supernet_values
                    values["finetuned_wer"] = finetune(supernet_values, space, genes)
                rescoring["rescored"] += len(genes)
                rescoring["rescore_seconds"] = round(rescoring["rescore_seconds"] + time.perf_counter() - started, 3)
            if settings.time_finalists:
                log(f"timing {len(genes)} finalists on this machine")
                values[TIMED] = time_rows(genes, "timed")
            return values

        chosen, second_group = measure_finalists(problem, result, max(settings.rescore, settings.time_finalists,
                                                                      settings.top_k), settings.top_k, measure_rows, log)
        rescoring.update(second_group)
        timings = {}
        if settings.time_finalists:
            chosen, order, timings = confirm_picks(problem, chosen, wer_key, settings.top_k,
                                                   lambda genes: time_rows(genes, "timed_again"), log)
        else:
            order = pick_measured(problem, chosen, wer_key, settings.top_k)
        top_genes, top_scores = chosen.genes[order], chosen.scores.take(order)
        top_reward = problem.reward(chosen.measured_scores(wer_key).take(order))
        measured = {key: values[order] for key, values in chosen.values.items()}
        # in the predictor's order: the first is what the search picks without measuring
        rescoring["finalists"] = [{"arch_id": space.decode(row).arch_id, "wer": float(chosen.scores.wer[i]),
                                   "latency_ms": float(chosen.scores.latency_ms[i]),
                                   **{key: float(values[i]) for key, values in chosen.values.items()},
                                   **({"latency_timings_ms": timings[i]} if i in timings else {})}
                                  for i, row in enumerate(chosen.genes)]
    top_scores = cost_scorer.with_costs(top_genes, top_scores)
    front_scores = cost_scorer.with_costs(result.front_genes, result.front_scores)
    candidates = tuple(Candidate(rank + 1, space.decode(row), {
        **top_scores.row(rank), "reward": float(top_reward[rank]),
        **{key: float(values[rank]) for key, values in measured.items()}})
        for rank, row in enumerate(top_genes))
    supernet = predictor.supernet or {}
    bundle = Bundle(
        space=space.config, candidates=candidates,
        model={"sample_rate": supernet.get("sample_rate"), "features": supernet.get("features"),
               "intents": supernet.get("intents"), "supernet": {"path": supernet.get("path"), "hash": supernet.get("hash")},
               "decoder": supernet.get("decoder")},
        reference_input={"seconds": table.input_seconds, "frames": table.frames.input},
        device=table.device, lut={"path": table.source, "hash": table.content_hash},
        predictor={"path": str(predictor_path), "hash": predictor.content_hash, "target": target,
                   "data_hash": predictor.data_hash,
                   "cv": predictor.metrics.get(finetune.source if finetune else target, {}).get("cv"),
                   **({} if finetune is None else {"finetune": {
                       "hash": finetune.content_hash, "source": finetune.source, "inputs": list(finetune.inputs),
                       "coefficients": list(finetune.coefficients), "intercept": finetune.intercept,
                       "models": len(finetune.models), "leave_one_out": finetune.leave_one_out,
                       "recipe": finetune.recipe}})},
        objective={"mode": "pareto" if settings.pareto else "reward", "reward": "-wer - lambda * log(latency_ms)",
                   "lambda": settings.lam, "budget_ms": settings.budget_ms, "max_params": settings.max_params,
                   "max_memory_bytes": settings.max_memory_bytes, "environment": settings.environment},
        search={**result.stats.to_dict(), "wall_seconds": round(wall, 3), "algorithm": result.algorithm,
                "seed": settings.seed, "settings": asdict(settings), "command": command,
                "fastest_ms": problem.fastest_ms, "candidates": result.stats.candidates_scored, **rescoring})
    bundle.save(out.top)
    front = [{"arch_id": space.decode(row).arch_id, "arch": space.decode(row).to_dict(), **front_scores.row(i)}
             for i, row in enumerate(result.front_genes)]
    write_json(out.pareto_json, {"budget_ms": settings.budget_ms, "target": target, "front": front,
                                            "search": bundle.search})
    plot_pareto(scorer, result, candidates, settings, out.pareto_png, target)
    return bundle


def plot_pareto(scanned: ScannedSample, result, candidates, settings: SearchSettings, path: Path, target: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    ax.scatter(scanned.latency, 100 * scanned.wer, s=2, c="lightgray", alpha=0.5,
               label=f"scanned (sample of {len(scanned.wer):,} of {scanned.seen:,})")
    if len(result.front_genes):
        ax.plot(result.front_scores.latency_ms, 100 * result.front_scores.wer, "-o", ms=3, c="tab:blue",
                label="Pareto front (feasible)")
    ax.scatter([c.predicted["latency_ms"] for c in candidates], [100 * c.predicted["wer"] for c in candidates],
               marker="*", s=160, c="tab:red", zorder=5, label=f"top-{len(candidates)}")
    ax.axvline(settings.budget_ms, color="red", ls=":", label=f"budget {settings.budget_ms:g} ms")
    ax.set(xscale="log", xlabel="predicted latency (ms, LUT)", ylabel=f"predicted {target} (%)",
           title="predictnas search")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
