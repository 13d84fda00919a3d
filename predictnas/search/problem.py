"""What a search optimizes: a space, an injected scoring function, budgets and the objective."""

from __future__ import annotations

import inspect
from typing import Any, Callable, Mapping, NamedTuple

import numpy as np

from ..errors import PredictnasError
from ..space import DOWNSAMPLE_GENE, SearchSpace
from .budget import fastest_latency

LatencyFn = Callable[[np.ndarray], np.ndarray]


class Scores(NamedTuple):
    """Scores of the rows of a gene matrix, one array per quantity (row ``i`` of each is row ``i``'s).

    ``params`` and ``memory_bytes`` may be ``None`` when the scorer does not report them; a problem with
    a budget on a quantity needs a scorer that reports it.
    """

    wer: np.ndarray
    latency_ms: np.ndarray
    params: np.ndarray | None = None
    memory_bytes: np.ndarray | None = None

    def take(self, index: np.ndarray) -> "Scores":
        """The scores of the rows ``index`` (an integer index array or a boolean mask)."""
        return Scores(*(None if a is None else np.asarray(a)[index] for a in self))

    @classmethod
    def concat(cls, parts: list["Scores"]) -> "Scores":
        return cls(*(None if any(p[i] is None for p in parts) else np.concatenate([p[i] for p in parts])
                     for i in range(len(cls._fields))))

    def row(self, i: int) -> dict[str, float | int]:
        """One row as plain Python numbers (for JSON), omitting quantities the scorer did not report."""
        return {name: value[i].item() for name, value in zip(self._fields, self) if value is not None}


class Problem:
    """A search problem over gene matrices: what algorithms may ask of it, and what they must respect.

    Contract (everything is vectorized over the rows of a gene matrix; subclasses may override
    :meth:`score` and :meth:`latency` instead of injecting functions):

    * ``latency(genes) -> float64 ms`` is the cheap estimate the hard budget is checked with. Algorithms
      screen every candidate with it *before* scoring, so rows over ``latency_budget_ms`` are never scored.
    * ``score(genes, latency_ms=None) -> Scores`` scores valid, canonical rows; it must be deterministic.
      ``latency_ms``, when given, is the rows' ``latency`` (already computed by the screening); an
      injected scoring function receives it if it takes a ``latency_ms`` keyword.
    * A row is *feasible* when its scored ``latency_ms <= latency_budget_ms``. Infeasible rows never
      enter a population or a result, whatever the scorer reports.
    * ``reward = -wer - lam * log(latency_ms) - penalty``, higher is better. The soft budgets cost
      ``penalty = penalty_weight * (excess(params, max_params) + excess(memory_bytes, max_memory_bytes))``
      where ``excess(x, b) = max(0, x / b - 1)`` is the relative excess (10 % over costs 0.1 x weight).
    * Pareto objectives, both minimized: ``wer + penalty`` and ``latency_ms``.
    * ``fixed`` pins genes (gene name -> choice index, as in ``space.gene_names``) in every candidate;
      a pinned gene that means nothing in a row is 0 there like any other (rows stay canonical).

    The constructor refuses a budget below the fastest latency the (pinned) space reaches, naming
    ``device``; it is read from the estimator when ``latency`` is a ``LatencyEstimator``.
    """

    def __init__(self, space: SearchSpace, score: Callable[[np.ndarray], Scores], latency: LatencyFn | Any,
                 latency_budget_ms: float, lam: float = 0.02, max_params: float | None = None,
                 max_memory_bytes: float | None = None, penalty_weight: float = 1.0,
                 fixed: Mapping[str, int] | None = None, device: str | None = None):
        self.space = space
        self._score = score
        self._score_takes_latency = _takes_keyword(score, "latency_ms")
        if hasattr(latency, "estimate"):  # a LatencyEstimator: use its table's device in messages
            device = device or latency.table.device_id
            latency = latency.estimate
        self._latency = latency
        self.latency_budget_ms = float(latency_budget_ms)
        self.lam, self.penalty_weight = float(lam), float(penalty_weight)
        self.max_params, self.max_memory_bytes = max_params, max_memory_bytes
        for name, budget in (("latency budget", latency_budget_ms), ("max_params", max_params),
                             ("max_memory_bytes", max_memory_bytes)):
            if budget is not None and not budget > 0:
                raise PredictnasError(f"{name} must be positive, got {budget}")
        self.fixed = dict(fixed or {})
        self._pin_columns, self._pin_values = self._parse_fixed(self.fixed)
        self.device = device or "this device"
        self.fastest_ms, self.fastest_genes = fastest_latency(space, self.latency, pin=self.pin)
        if self.latency_budget_ms < self.fastest_ms:
            raise PredictnasError(
                f"budget {self.latency_budget_ms:g} ms is below the fastest latency this space reaches on "
                f"{self.device}: {self.fastest_ms:.1f} ms")

    # ---- scoring -----------------------------------------------------------------------------------

    def latency(self, genes: np.ndarray) -> np.ndarray:
        return np.asarray(self._latency(genes), dtype=np.float64)

    def score(self, genes: np.ndarray, latency_ms: np.ndarray | None = None) -> Scores:
        """Scores of the rows; ``latency_ms`` (their :meth:`latency`, when the caller has it) is passed on to
        a scoring function that takes a ``latency_ms`` keyword, so it need not compute it again."""
        if latency_ms is not None and self._score_takes_latency:
            return self._score(genes, latency_ms=latency_ms)
        return self._score(genes)

    def feasible(self, scores: Scores) -> np.ndarray:
        return np.asarray(scores.latency_ms) <= self.latency_budget_ms

    def penalty(self, scores: Scores) -> np.ndarray:
        penalty = np.zeros(len(scores.wer))
        for name, value, budget in (("params", scores.params, self.max_params),
                                    ("memory_bytes", scores.memory_bytes, self.max_memory_bytes)):
            if budget is None:
                continue
            if value is None:
                raise PredictnasError(f"a budget on {name} needs a scorer that reports {name}")
            penalty += np.maximum(np.asarray(value, dtype=np.float64) / budget - 1.0, 0.0)
        return self.penalty_weight * penalty

    def reward(self, scores: Scores) -> np.ndarray:
        latency = np.maximum(np.asarray(scores.latency_ms, dtype=np.float64), 1e-9)  # log of a positive number
        return -np.asarray(scores.wer, dtype=np.float64) - self.lam * np.log(latency) - self.penalty(scores)

    def objectives(self, scores: Scores) -> np.ndarray:
        """``(n, 2)`` minimized objectives: penalized WER and latency."""
        wer = np.asarray(scores.wer, dtype=np.float64) + self.penalty(scores)
        return np.stack([wer, np.asarray(scores.latency_ms, dtype=np.float64)], axis=1)

    # ---- candidates --------------------------------------------------------------------------------

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` random canonical rows of the (pinned) space."""
        return self.pin(self.space.sample(n, rng), rng)

    def pin(self, genes: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """Apply the pinned genes in place (and return ``genes``), keeping rows valid and canonical.

        A downsampling point the pinned depth puts out of range is redrawn below the depth (cleared when
        no ``rng`` is given, or when the downsampling point itself is pinned).
        """
        if not len(self._pin_columns):
            return genes
        genes[:, self._pin_columns] = self._pin_values
        genes *= self.space.meaningful(genes)
        depth = self.space.depth_of(genes)
        too_deep = np.flatnonzero(genes[:, DOWNSAMPLE_GENE] >= depth)
        if len(too_deep):
            redraw = rng is not None and DOWNSAMPLE_GENE not in self._pin_columns
            genes[too_deep, DOWNSAMPLE_GENE] = (rng.random(len(too_deep)) * depth[too_deep]).astype(np.int8) if redraw else 0
        return genes

    def _parse_fixed(self, fixed: Mapping[str, int]) -> tuple[np.ndarray, np.ndarray]:
        names = self.space.gene_names
        columns, values = [], []
        for name, value in fixed.items():
            if name not in names:
                raise PredictnasError(f"fixed gene {name!r}: not a gene of space {self.space.config.name!r}")
            column = names.index(name)
            if not (isinstance(value, (int, np.integer)) and 0 <= value < self.space.highs[column]):
                raise PredictnasError(f"fixed gene {name!r}: {value!r} is not a choice index in "
                                      f"0..{int(self.space.highs[column]) - 1}")
            columns.append(column)
            values.append(int(value))
        return np.array(columns, dtype=np.intp), np.array(values, dtype=np.int8)


def _takes_keyword(fn: Callable, name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):  # builtins and some C callables have no signature
        return False
