"""The front door: ``minimize(problem, algorithm, termination, seed)`` runs ask / score / tell to the end."""

from __future__ import annotations

from typing import Callable

from .algorithm import Algorithm
from .problem import Problem
from .result import SearchResult, SearchStats
from .termination import Termination


def minimize(problem: Problem, algorithm: Algorithm, termination: Termination, seed: int | None = None,
             callback: Callable[[SearchStats], None] | None = None) -> SearchResult:
    """Search ``problem`` with ``algorithm`` until ``termination`` is done or the space is used up.

    Scores each generation with ``problem.score``. ``callback`` gets a snapshot of the statistics after
    every generation (generation count, candidates scored, seconds, candidates per second, best reward,
    progress in [0, 1]), e.g. to draw a progress bar. The result holds the ``top_k`` best distinct
    feasible rows by reward, the Pareto front of every feasible row scored, and the statistics.

    "Minimize" as in pymoo: the genetic algorithm maximizes the reward, i.e. minimizes its negative.
    """
    algorithm.setup(problem, seed)
    stats = algorithm.stats
    while not termination.done(stats):
        genes = algorithm.ask()
        if stats.exhausted:
            break
        algorithm.tell(genes, problem.score(genes, latency_ms=algorithm.asked_latency_ms))
        stats.progress = termination.progress(stats)
        if callback is not None:
            callback(SearchStats(**vars(stats)))
    stats.progress = 1.0 if stats.exhausted else termination.progress(stats)
    return algorithm.result()
