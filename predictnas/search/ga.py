"""Elitist genetic algorithm on the scalar reward: tournament selection, (mu + lambda) survival."""

from __future__ import annotations

import numpy as np

from .algorithm import Algorithm
from .problem import Scores

RESTART_AFTER = 40  # generations without a better population best; a 60-s search runs about 800


class GeneticAlgorithm(Algorithm):
    """Maximizes ``problem.reward``.

    Parents are drawn by ``tournament_size``-way tournaments on reward; children are uniform crossovers
    of two parents, then mutated (see :class:`Algorithm` for screening and dedup). Survival is elitist:
    the ``population_size`` best distinct rows of population and offspring together. ``offspring_size``
    defaults to twice the population.

    Restarts: once the population's best reward has not improved for ``restart_after`` generations, the
    population is replaced by a fresh initial sample (``None``: never). An elitist population converges
    on one basin of the predictor's landscape and then only re-samples it; a fresh start explores another,
    and the archive and the seen keys persist, so nothing found is lost and nothing is scored twice.

    Defaults suit vectorized scorers: generations of tens of thousands of rows keep the per-generation
    cost of the Python around the numpy calls negligible.
    """

    name = "ga"

    def __init__(self, population_size: int = 20_000, offspring_size: int | None = None,
                 tournament_size: int = 2, mutation_rate: float | None = None, repair_tries: int = 1,
                 top_k: int = 100, restart_after: int | None = RESTART_AFTER):
        super().__init__(population_size, offspring_size or 2 * population_size, mutation_rate, repair_tries,
                         top_k)
        self.tournament_size = tournament_size
        self.restart_after = restart_after

    def setup(self, problem, seed=None) -> "GeneticAlgorithm":
        super().setup(problem, seed)
        self._stalled = 0  # generations since the population's best last improved
        return self

    def _select_parents(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        return self._tournament(n), self._tournament(n)

    def _tournament(self, n: int) -> np.ndarray:
        reward = self.population_reward
        winner = self.rng.integers(0, len(reward), size=n)
        for _ in range(self.tournament_size - 1):
            contender = self.rng.integers(0, len(reward), size=n)
            winner = np.where(reward[contender] > reward[winner], contender, winner)
        return winner

    def _survive(self, genes: np.ndarray, scores: Scores, reward: np.ndarray) -> None:
        best_before = self.population_reward.max(initial=float("-inf"))  # elitist: the best since the (re)start
        union_reward = self._union_of(reward, self.population_reward)
        keep = np.arange(len(union_reward))
        if len(union_reward) > self.population_size:
            keep = np.sort(np.argpartition(-union_reward, self.population_size - 1)[:self.population_size])
        self._keep(genes, scores, reward, keep)
        self._stalled = 0 if self.population_reward.max() > best_before else self._stalled + 1
        if self.restart_after is not None and self._stalled >= self.restart_after:
            self._restart()
            self._stalled = 0
