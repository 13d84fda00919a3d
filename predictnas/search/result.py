"""What a search reports: running statistics, and the result (best rows, Pareto front, statistics)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..space import Arch, SearchSpace
from .problem import Scores


@dataclass
class SearchStats:
    """Running statistics of one search; a snapshot of it is passed to the per-generation callback."""

    generations: int = 0
    candidates_scored: int = 0
    seconds: float = 0.0
    best_reward: float = float("-inf")
    exhausted: bool = False  # no unseen feasible candidate could be generated: the space is used up
    restarts: int = 0  # times the population started over from a fresh sample
    climb_moves: int = 0  # hill-climbing moves that improved a row (finished climbs)
    progress: float = 0.0  # the termination's, in [0, 1]

    @property
    def candidates_per_second(self) -> float:
        return self.candidates_scored / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        return {"generations": self.generations, "candidates_scored": self.candidates_scored,
                "seconds": round(self.seconds, 3), "candidates_per_second": round(self.candidates_per_second, 1),
                "best_reward": self.best_reward, "exhausted": self.exhausted, "restarts": self.restarts,
                "climb_moves": self.climb_moves}


@dataclass
class SearchResult:
    """The best distinct feasible rows by reward (best first), the Pareto front of every feasible row
    scored (by latency), and the statistics. Every row meets the latency budget by its scored latency."""

    genes: np.ndarray
    scores: Scores
    reward: np.ndarray
    front_genes: np.ndarray
    front_scores: Scores
    stats: SearchStats
    algorithm: str
    seed: int | None = None
    extra: dict = field(default_factory=dict)

    def archs(self, space: SearchSpace) -> list[Arch]:
        return [space.decode(row) for row in self.genes]

    def front_archs(self, space: SearchSpace) -> list[Arch]:
        return [space.decode(row) for row in self.front_genes]
