"""NSGA-II on (penalized WER, latency): non-dominated sorting and crowding distance, vectorized."""

from __future__ import annotations

import numpy as np

from .algorithm import Algorithm
from .pareto import crowding_distance, nondominated_rank
from .problem import Scores


class NSGA2(Algorithm):
    """Minimizes ``problem.objectives`` (``wer + penalty`` and ``latency_ms``) for a Pareto front.

    Parents are drawn by binary tournaments (lower front first, then larger crowding distance); survival
    keeps whole fronts of population and offspring together, in order, and cuts the last one by crowding
    distance. ``result()`` holds the front of every feasible row scored, and the best rows by reward.
    """

    name = "nsga2"

    def __init__(self, population_size: int = 10_000, offspring_size: int | None = None,
                 mutation_rate: float | None = None, repair_tries: int = 1, top_k: int = 100):
        super().__init__(population_size, offspring_size, mutation_rate, repair_tries, top_k)

    def setup(self, problem, seed=None) -> "NSGA2":
        super().setup(problem, seed)
        # Front index, crowding distance and objectives of each population row, from the last survival.
        self._rank, self._crowding, self._objectives = np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros((0, 2))
        return self

    def _select_parents(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        return self._tournament(n), self._tournament(n)

    def _tournament(self, n: int) -> np.ndarray:
        a, b = self.rng.integers(0, len(self._rank), size=(2, n))
        a_wins = (self._rank[a] < self._rank[b]) | (
            (self._rank[a] == self._rank[b]) & (self._crowding[a] >= self._crowding[b]))
        return np.where(a_wins, a, b)

    def _survive(self, genes: np.ndarray, scores: Scores, reward: np.ndarray) -> None:
        objectives = self._union_of(self.problem.objectives(scores), self._objectives)
        rank = nondominated_rank(objectives, at_least=self.population_size)
        ranked = np.flatnonzero(rank < np.iinfo(np.int64).max)
        crowding = np.zeros(len(rank))
        crowding[ranked] = crowding_distance(objectives[ranked], rank[ranked])
        keep = np.sort(ranked[np.lexsort((-crowding[ranked], rank[ranked]))][:self.population_size])
        self._rank, self._crowding, self._objectives = rank[keep], crowding[keep], objectives[keep]
        self._keep(genes, scores, reward, keep)
