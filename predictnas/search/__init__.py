"""Hardware-aware search over gene matrices: ask/tell algorithms, constraints, objectives, Pareto fronts.

``minimize(problem, algorithm, termination, seed)`` is the front door; every part is swappable::

    problem = Problem(space, score=CostScorer(estimator, predictor), latency=estimator, latency_budget_ms=40)
    result = minimize(problem, GeneticAlgorithm(), MaxSeconds(60) | MaxCandidates(30_000_000), seed=0)
"""

from .algorithm import Algorithm
from .budget import fastest_latency
from .climb import HillClimb
from .ga import GeneticAlgorithm
from .keyset import KeySet
from .minimize import minimize
from .nsga2 import NSGA2
from .pareto import crowding_distance, non_dominated, nondominated_rank
from .problem import Problem, Scores
from .result import SearchResult, SearchStats
from .scoring import CostScorer
from .termination import AllOf, AnyOf, MaxCandidates, MaxGenerations, MaxSeconds, Termination

__all__ = [
    "Algorithm", "AllOf", "AnyOf", "CostScorer", "GeneticAlgorithm", "HillClimb", "KeySet", "MaxCandidates",
    "MaxGenerations", "MaxSeconds", "NSGA2", "Problem", "Scores", "SearchResult", "SearchStats", "Termination",
    "crowding_distance", "fastest_latency", "minimize", "non_dominated", "nondominated_rank",
]
