"""Finalists: measured before the top-k is chosen, with a second group where the table underestimates them."""

import numpy as np
import pytest

from predictnas.complexity import param_counts
from predictnas.errors import PredictnasError
from predictnas.latency.estimate import LatencyEstimator
from predictnas.latency.table import LatencyTable
from predictnas.pretrained import tables_dir
from predictnas.search import CostScorer, GeneticAlgorithm, MaxGenerations, Problem, Scores, minimize
from predictnas.search.finalists import TIMED, Measured, confirm_picks, measure_finalists, pick_measured

LUT = tables_dir() / "cpu-1t-fp32-d3ed75e4.json"  # the shipped table for speech-v1
BUDGET_MS = 40.0


@pytest.fixture(scope="module")
def searched():
    """A real search under 40 ms on the shipped table, WER falling with log params (a stand-in predictor)."""
    estimator = LatencyEstimator(LatencyTable.load(LUT))
    space = estimator.space
    scorer = CostScorer(estimator, lambda genes: 2.5 - 0.3 * np.log10(param_counts(space, genes)))
    problem = Problem(space, scorer, estimator, latency_budget_ms=BUDGET_MS)
    result = minimize(problem, GeneticAlgorithm(population_size=500, offspring_size=1000, top_k=100),
                      MaxGenerations(10), seed=0)
    return problem, result, estimator


def timer(estimator, slower: float):
    """Times rows as the table's estimate x ``slower``: a machine on which the table is optimistic."""
    calls = []

    def measure(genes):
        calls.append(np.array(genes))
        return {TIMED: slower * estimator.estimate(genes)}
    return measure, calls


def test_a_table_that_underestimates_every_finalist_brings_a_second_group_further_under_the_budget(searched):
    problem, result, estimator = searched
    measure, calls = timer(estimator, 1.15)
    logged = []
    measured, second = measure_finalists(problem, result, 8, 2, measure, logged.append)
    first, more = calls
    assert len(first) == 8 and (1.15 * estimator.estimate(first) > BUDGET_MS).sum() > 6  # the edge: over when timed
    limit = second["second_group"]["table_limit_ms"]
    assert second["second_group"]["timed_over_table"] == pytest.approx(1.15)
    assert limit == pytest.approx(BUDGET_MS / 1.15) and (estimator.estimate(more) <= limit + 1e-9).all()
    assert len(more) == second["second_group"]["finalists"] > 0 and "measuring the" in logged[0]
    assert not {r.tobytes() for r in first} & {r.tobytes() for r in more}  # none measured twice
    assert len(measured.genes) == len(first) + len(more)
    picks = pick_measured(problem, measured, None, 2)
    assert len(picks) == 2 and (measured.values[TIMED][picks] <= BUDGET_MS).all()


def test_finalists_that_time_within_the_budget_need_no_second_group(searched):
    problem, result, estimator = searched
    measure, calls = timer(estimator, 0.95)
    measured, second = measure_finalists(problem, result, 8, 2, measure, print)
    assert second == {} and len(calls) == 1 and len(measured.genes) == 8


def test_finalists_that_all_time_over_the_budget_are_an_error_not_a_pick(searched):
    problem, *_ = searched
    genes = np.zeros((4, problem.space.n_genes), dtype=np.int8)
    predicted = Scores(wer=np.array([0.3, 0.2, 0.4, 0.5]), latency_ms=np.full(4, 39.0))
    measured = Measured(genes, predicted, {TIMED: np.array([39.0, 40.5, 38.0, 37.0]),
                                           "supernet_wer": np.array([0.3, 0.2, 0.4, 0.5])})
    assert pick_measured(problem, measured, "supernet_wer", 2).tolist() == [0, 2]  # row 1 is best but ran over
    over = Measured(genes[:2], predicted.take(np.array([1, 1])), {TIMED: np.array([40.5, 41.0])})
    with pytest.raises(PredictnasError, match="none of the 2 finalists ran within 40 ms"):
        pick_measured(problem, over, None, 2)


def test_picks_are_timed_again_and_judged_by_the_median_of_three(searched):
    """A pick whose one timing erred low gives its place once its median is over the budget."""
    problem, *_ = searched
    genes = np.arange(4, dtype=np.int8)[:, None] * np.ones((1, problem.space.n_genes), dtype=np.int8)
    wer = np.array([0.2, 0.3, 0.4, 0.5])
    measured = Measured(genes, Scores(wer=wer, latency_ms=np.full(4, 38.0)),
                        {TIMED: np.array([39.0, 39.5, 38.0, 45.0]), "supernet_wer": wer})
    again = {0: iter([41.0, 42.0]), 1: iter([39.0, 40.5]), 2: iter([38.5, 37.5])}  # row 0 erred low
    logged = []

    def time_again(rows):
        return np.array([next(again[int(row[0])]) for row in rows])

    confirmed, picks, timings = confirm_picks(problem, measured, "supernet_wer", 2, time_again, logged.append)
    assert picks.tolist() == [1, 2]  # 0 is out (median 41.0), 2 took its place
    assert timings == {0: [39.0, 41.0, 42.0], 1: [39.5, 39.0, 40.5], 2: [38.0, 38.5, 37.5]}
    assert confirmed.values[TIMED].tolist() == [41.0, 39.5, 38.0, 45.0]  # medians where timed again
    assert measured.values[TIMED][0] == 39.0 and len(logged) == 2  # the input is left as it was
