"""When a search stops: by generations, candidates scored or seconds, and any or all of those.

A termination reads the running :class:`~predictnas.search.result.SearchStats` and reports progress in
``[0, 1]``; the search is done at 1. Progress doubles as the progress bar of the CLI.
"""

from __future__ import annotations

from .result import SearchStats


class Termination:
    """Contract: ``progress(stats)`` is in ``[0, 1]``, non-decreasing as the search runs; done at 1."""

    def progress(self, stats: SearchStats) -> float:
        raise NotImplementedError

    def done(self, stats: SearchStats) -> bool:
        return self.progress(stats) >= 1.0

    def __or__(self, other: "Termination") -> "Termination":
        return AnyOf(self, other)

    def __and__(self, other: "Termination") -> "Termination":
        return AllOf(self, other)


class MaxGenerations(Termination):
    def __init__(self, generations: int):
        self.generations = generations

    def progress(self, stats: SearchStats) -> float:
        return min(stats.generations / max(self.generations, 1), 1.0)


class MaxCandidates(Termination):
    """Stops once this many candidates have been scored (the last generation may overshoot)."""

    def __init__(self, candidates: int):
        self.candidates = candidates

    def progress(self, stats: SearchStats) -> float:
        return min(stats.candidates_scored / max(self.candidates, 1), 1.0)


class MaxSeconds(Termination):
    """Stops once the search has run this long (checked between generations)."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def progress(self, stats: SearchStats) -> float:
        return min(stats.seconds / self.seconds, 1.0) if self.seconds > 0 else 1.0


class AnyOf(Termination):
    """Done when any part is done; progress is the furthest part's."""

    def __init__(self, *parts: Termination):
        self.parts = parts

    def progress(self, stats: SearchStats) -> float:
        return max(p.progress(stats) for p in self.parts)


class AllOf(Termination):
    """Done when every part is done; progress is the least advanced part's."""

    def __init__(self, *parts: Termination):
        self.parts = parts

    def progress(self, stats: SearchStats) -> float:
        return min(p.progress(stats) for p in self.parts)
