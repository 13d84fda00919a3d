"""Finalists: the few candidates of a search that are measured before the top-k is chosen.

A search that scores millions of rows with a predictor and a latency table finds where both err low (the
winner's curse): at the budget's edge the table's estimate is a little optimistic for some models, and
the predictor's WER for others. Measuring a few dozen finalists with the supernet's weights, and timing
them on this machine, is cheap next to the search, and the top-k is chosen by those measurements.

When the table underestimates the finalists as a group (models of one kind, e.g. many parameters at
short input, measure slower than the table's sum), fewer than k of them time within the budget. Then a
second group is measured: the best candidates whose table latency is under the budget divided by the
first group's median timed / table ratio. The picks are then timed twice more and judged by the median of
their three timings (:func:`confirm_picks`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import PredictnasError
from .problem import Problem, Scores

TIMED = "measured_latency_ms"  # the key of a finalist's timing among its measurements
CONFIRM_TIMINGS = 3


def first_occurrences(rows: np.ndarray) -> np.ndarray:
    """Index of the first of each distinct row of ``rows``, in order."""
    if not len(rows):
        return np.zeros(0, dtype=np.int64)
    _, first = np.unique(rows, axis=0, return_index=True)
    return np.sort(first)


def finalists(problem: Problem, result, n: int, max_latency_ms: float | None = None,
              exclude: np.ndarray | None = None) -> tuple[np.ndarray, Scores]:
    """The ``n`` candidates worth measuring, best predicted reward first: the Pareto front's rows (one per
    distinct predicted WER and latency), then the search's top rows if the front is short. Only rows
    whose predicted latency is at most ``max_latency_ms``, and none of the rows of ``exclude``.

    Why the front and not the top rows: a tree ensemble's prediction is piecewise constant, so the top
    rows by reward are mostly variants on one plateau of predicted WER that measure alike (in one 40-ms
    search, 32 of them had the same predicted WER and measured 100.4-102.8 %); the front has one row
    per level of predicted WER, the fastest one."""
    front_order = np.argsort(-problem.reward(result.front_scores), kind="stable")
    genes = np.concatenate([result.front_genes[front_order], result.genes])
    scores = Scores.concat([result.front_scores.take(front_order), result.scores])
    keep = first_occurrences(genes)
    if max_latency_ms is not None:
        keep = keep[np.asarray(scores.latency_ms)[keep] <= max_latency_ms]
    if exclude is not None and len(exclude):
        seen = {row.tobytes() for row in exclude}
        keep = np.array([i for i in keep if genes[i].tobytes() not in seen], dtype=np.int64)
    keep = keep[:n]
    return genes[keep], scores.take(keep)


@dataclass(frozen=True)
class Measured:
    """Finalists in the order they were chosen, with what was measured of each, by the key it gets in
    top.json (``wer_key`` names the WER the picks are chosen by; ``measured_latency_ms`` their timing)."""

    genes: np.ndarray
    scores: Scores  # predicted
    values: dict[str, np.ndarray]

    def measured_scores(self, wer_key: str | None) -> Scores:
        return self.scores._replace(wer=self.values.get(wer_key, self.scores.wer),
                                    latency_ms=self.values.get(TIMED, self.scores.latency_ms))

    def within(self, budget_ms: float) -> np.ndarray:
        return np.flatnonzero(np.asarray(self.measured_scores(None).latency_ms) <= budget_ms)

    def extended(self, other: "Measured") -> "Measured":
        return Measured(np.concatenate([self.genes, other.genes]), Scores.concat([self.scores, other.scores]),
                        {k: np.concatenate([v, other.values[k]]) for k, v in self.values.items()})


def measure_finalists(problem: Problem, result, n: int, top_k: int,
                      measure: Callable[[np.ndarray], dict[str, np.ndarray]],
                      log: Callable[[str], None]) -> tuple[Measured, dict]:
    """Measure ``n`` :func:`finalists` with ``measure`` (gene rows -> measurements by key), and a second
    group where fewer than ``top_k`` of them time within the budget (see the module docstring). Returns
    them and what the second group was (empty when there was none)."""
    genes, scores = finalists(problem, result, n)
    measured = Measured(genes, scores, measure(genes))
    budget = problem.latency_budget_ms
    if TIMED not in measured.values or len(measured.within(budget)) >= top_k:
        return measured, {}
    ratio = float(np.median(measured.values[TIMED] / np.asarray(scores.latency_ms)))
    limit = budget / max(ratio, 1.0)
    more_genes, more_scores = finalists(problem, result, n, max_latency_ms=limit, exclude=genes)
    log(f"{len(measured.within(budget))} of {len(genes)} finalists timed within {budget:g} ms (timed / table latency: "
        f"median {ratio:.2f}); measuring the {len(more_genes)} best whose table latency is under {limit:.1f} ms")
    if len(more_genes):
        measured = measured.extended(Measured(more_genes, more_scores, measure(more_genes)))
    return measured, {"second_group": {"timed_over_table": ratio, "table_limit_ms": limit, "finalists": len(more_genes)}}


def pick_measured(problem: Problem, measured: Measured, wer_key: str | None, top_k: int) -> np.ndarray:
    """Indices of the top-k finalists by the reward on their measured WER and latency (where measured),
    among those whose latency still meets the budget."""
    within = measured.within(problem.latency_budget_ms)
    if not len(within):
        timed = measured.measured_scores(wer_key).latency_ms
        raise PredictnasError(f"none of the {len(timed)} finalists ran within {problem.latency_budget_ms:g} ms when "
                              f"timed on this machine (fastest {np.min(timed):.1f} ms); the table underestimates "
                              f"them: search again with a lower budget, or without --time-finalists")
    reward = problem.reward(measured.measured_scores(wer_key).take(within))
    return within[np.argsort(-reward, kind="stable")[:top_k]]


def confirm_picks(problem: Problem, measured: Measured, wer_key: str | None, top_k: int,
                  time_again: Callable[[np.ndarray], np.ndarray],
                  log: Callable[[str], None]) -> tuple[Measured, np.ndarray, dict[int, list[float]]]:
    """The top-k of :func:`pick_measured`, each timed again with ``time_again`` (gene rows -> one more
    timing each) until it has :data:`CONFIRM_TIMINGS` timings, and judged by their median: one timing is
    noisy enough (a 20-ms pick timed 19.3 ms in the search and 20.6-22.4 ms in verify) that the pick at
    the budget's edge is often the one whose timing erred low. A pick whose median goes over the budget
    gives its place to the next finalist, which is timed again in turn. Returns the measurements with
    the medians in place, the picks' indices, and every timing of each row timed again."""
    timed = {i: [float(t)] for i, t in enumerate(measured.values[TIMED])}
    values = dict(measured.values)
    while True:
        order = pick_measured(problem, Measured(measured.genes, measured.scores, values), wer_key, top_k)
        todo = np.array([i for i in order if len(timed[i]) < CONFIRM_TIMINGS], dtype=np.int64)
        if not len(todo):
            break
        log(f"timing {len(todo)} pick(s) again, {CONFIRM_TIMINGS - 1} more times each")
        for _ in range(CONFIRM_TIMINGS - 1):
            for i, t in zip(todo, time_again(measured.genes[todo])):
                timed[i].append(float(t))
        values[TIMED] = np.array([np.median(timed[i]) for i in range(len(measured.genes))])
    return (Measured(measured.genes, measured.scores, values), order,
            {i: times for i, times in timed.items() if len(times) > 1})
