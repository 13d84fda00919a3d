"""The ask/tell skeleton every search algorithm shares: offspring, the hard budget, dedup, archive, stats.

Subclasses say only how parents are selected and which rows survive (:mod:`.ga`, :mod:`.nsga2`).
"""

from __future__ import annotations

import math
import time

import numpy as np

from .archive import Archive
from .keyset import KeySet
from .problem import Problem, Scores
from .result import SearchResult, SearchStats
from .rows import concat_rows, put_rows, take_rows

INITIAL_KEYS = 1 << 20  # the seen-keys table starts at 2**21 slots (16 MB): fewer regrowths
INITIAL_REPAIR_TRIES = 3
MAX_OVERSAMPLING = 8  # a round asks for at most this many times the rows still missing
# Adaptive mutation: keep the share of feasible offspring that are new rows within [NOVEL_LOW, NOVEL_HIGH].
NOVEL_LOW, NOVEL_HIGH, MUTATION_STEP, MAX_MUTATION_RATE = 0.6, 0.9, 1.25, 0.3


class Algorithm:
    """Ask/tell search over gene matrices.

    Lifecycle: ``setup(problem, seed)`` once; then alternately ``ask() -> genes`` and
    ``tell(genes, scores)`` with the scores of exactly those rows, computed anywhere (this process, a
    device, a cluster); ``result()`` at any time.

    Invariants:

    * every row ``ask`` returns is valid and canonical; it meets the latency budget by ``problem.latency``
      (rows over it are repaired by crossing them with feasible rows, a few tries, else dropped: see
      :meth:`_screen`); and it was never returned before: rows are deduplicated by
      :meth:`SearchSpace.row_keys` within the batch and against every row asked so far, so no candidate
      is scored twice;
    * the population, ``result().genes`` and the front hold only rows whose *scored* latency meets the
      budget;
    * the same seed and the same scores give the same rows (no wall-clock dependence).

    ``ask`` returns an empty matrix once no unseen feasible row can be generated (``stats.exhausted``).
    """

    name = "algorithm"

    def __init__(self, population_size: int, offspring_size: int | None = None, mutation_rate: float | None = None,
                 repair_tries: int = 1, top_k: int = 100, max_rounds: int = 4):
        if population_size < 2:
            raise ValueError("population_size must be at least 2")
        self.population_size = population_size
        self.offspring_size = offspring_size or population_size
        self.fixed_mutation_rate = mutation_rate  # None: adapted to keep offspring novel (see _adapt_mutation)
        self.repair_tries, self.top_k, self.max_rounds = repair_tries, top_k, max_rounds

    # ---- lifecycle ---------------------------------------------------------------------------------

    def setup(self, problem: Problem, seed: int | None = None) -> "Algorithm":
        self.problem, self.space = problem, problem.space
        self.seed, self.rng = seed, np.random.default_rng(seed)
        self.mutation_rate = self.fixed_mutation_rate or self._min_mutation_rate()
        self.seen = KeySet(max(INITIAL_KEYS, 4 * (self.population_size + self.offspring_size)))
        self.archive = Archive(self.top_k)
        self.stats = SearchStats()
        self.population: np.ndarray | None = None
        self.population_scores: Scores | None = None
        self.population_reward = np.zeros(0)
        self._yield = 1.0  # offspring kept per offspring generated, in the last round
        self.asked_latency_ms = np.zeros(0)  # problem.latency of the rows the last ask returned
        self._started = time.perf_counter()
        return self

    def ask(self) -> np.ndarray:
        """The next batch of candidates to score (column-major int8 gene matrix).

        ``asked_latency_ms`` then holds their ``problem.latency``, which ``problem.score`` can reuse.
        """
        first = self.population is None
        target = self.population_size if first else self.offspring_size
        parts, latencies, total = [], [], 0
        kept_share = 1.0 if first else self._yield
        for _ in range(self.max_rounds):
            # Generate enough for the rows screening and dedup will drop, judging by the last round's yield.
            request = min(math.ceil((target - total) / kept_share), MAX_OVERSAMPLING * target)
            generated = self._initial(request) if first else self._offspring(request)
            keep, latency = self._screen(generated, repair=first)
            keys = self.space.row_keys(generated)  # for every row: cheaper than gathering the feasible ones
            feasible = int(keep.sum())
            keep[keep] = self.seen.add(keys[keep])
            fresh = take_rows(generated, keep)
            if not first:
                self._adapt_mutation(novel=len(fresh) / max(feasible, 1))
            parts.append(fresh)
            latencies.append(latency[keep])
            total += len(fresh)
            kept_share = max(len(fresh) / len(generated), 1.0 / MAX_OVERSAMPLING)
            if total >= 0.95 * target:  # close enough: another round costs more than the rows it adds
                break
        if not first:
            self._yield = kept_share
        genes = concat_rows(parts)
        self.asked_latency_ms = np.concatenate(latencies)
        self.stats.exhausted = len(genes) == 0
        self._tick()
        return genes

    def tell(self, genes: np.ndarray, scores: Scores) -> None:
        """Scores of the rows ``ask`` returned: update the archive, the population and the statistics."""
        if len(scores.wer) != len(genes):
            raise ValueError(f"tell: {len(genes)} rows but {len(scores.wer)} scores")
        self.stats.generations += 1
        self.stats.candidates_scored += len(genes)
        feasible = self.problem.feasible(scores)
        if not feasible.all():
            genes, scores = take_rows(genes, feasible), scores.take(feasible)
        reward = self.problem.reward(scores)
        self.archive.update(genes, scores, reward, self.problem.objectives(scores))
        if len(genes):
            self._survive(genes, scores, reward)
        if len(self.archive.reward):
            self.stats.best_reward = float(self.archive.reward[0])
        self._tick()

    def result(self) -> SearchResult:
        a = self.archive
        empty = np.zeros((0, self.space.n_genes), dtype=np.int8)
        no_scores = Scores(np.zeros(0), np.zeros(0))
        return SearchResult(
            genes=a.genes if a.genes is not None else empty, scores=a.scores or no_scores, reward=a.reward,
            front_genes=a.front_genes if a.front_genes is not None else empty,
            front_scores=a.front_scores or no_scores, stats=SearchStats(**vars(self.stats)),
            algorithm=self.name, seed=self.seed)

    # ---- what subclasses decide ------------------------------------------------------------------

    def _select_parents(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Two arrays of ``n`` population indices: the parents of each child."""
        raise NotImplementedError

    def _survive(self, genes: np.ndarray, scores: Scores, reward: np.ndarray) -> None:
        """Merge feasible, scored, distinct new rows into the population."""
        raise NotImplementedError

    # ---- shared machinery ------------------------------------------------------------------------

    def _initial(self, n: int) -> np.ndarray:
        genes = self.problem.sample(n, self.rng)
        if not len(self.seen):  # the fastest row meets any accepted budget: the population is never empty
            genes = concat_rows([self.problem.fastest_genes[None], genes])
        return genes

    def _offspring(self, n: int) -> np.ndarray:
        first, second = self._select_parents(n)
        child = self.space.crossover(take_rows(self.population, first), take_rows(self.population, second),
                                     self.rng)
        child = self.space.mutate(child, self.rng, self.mutation_rate)
        return self.problem.pin(child, self.rng)

    def _screen(self, genes: np.ndarray, repair: bool) -> tuple[np.ndarray, np.ndarray]:
        """Mask of the rows within the latency budget, and every row's latency.

        Rows over it are first repaired in place: crossed with a feasible row, which takes about half
        their genes from it. Rows of the initial sample are crossed with the fastest row, up to
        ``INITIAL_REPAIR_TRIES`` times (a random sample under a tight budget is mostly over it);
        offspring with a random population member, ``repair_tries`` times. Crossing toward feasible
        rows explores along the budget's boundary, where the best rows of a tight budget lie.
        """
        budget = self.problem.latency_budget_ms
        latency = self.problem.latency(genes)
        over = np.flatnonzero(latency > budget)
        for _ in range(INITIAL_REPAIR_TRIES if repair else self.repair_tries):
            if not len(over):
                break
            if repair:
                donors = np.repeat(self.problem.fastest_genes[None], len(over), axis=0)
            else:
                donors = take_rows(self.population, self.rng.integers(0, len(self.population), size=len(over)))
            repaired = self.problem.pin(self.space.crossover(take_rows(genes, over), donors, self.rng), self.rng)
            put_rows(genes, over, repaired)
            latency[over] = self.problem.latency(repaired)
            over = over[latency[over] > budget]
        return latency <= budget, latency

    def _min_mutation_rate(self) -> float:
        return 1.0 / self.space.n_genes

    def _adapt_mutation(self, novel: float) -> None:
        """Raise the mutation rate while most offspring repeat rows already seen, and lower it back once
        most are new. A converged population's children repeat it; a fixed low rate then spends most of
        the generation on rows the dedup throws away (a gene change in a block beyond the depth, or an
        unused conv gene, changes nothing, so the effective rate is much lower than the nominal one)."""
        if self.fixed_mutation_rate is not None:
            return
        if novel < NOVEL_LOW:
            self.mutation_rate = min(self.mutation_rate * MUTATION_STEP, MAX_MUTATION_RATE)
        elif novel > NOVEL_HIGH:
            self.mutation_rate = max(self.mutation_rate / MUTATION_STEP, self._min_mutation_rate())

    def _restart(self) -> None:
        """Start over from a fresh initial sample at the next ``ask`` (archive and seen keys persist)."""
        self._set_population(None, None, np.zeros(0))
        self._yield = 1.0
        if self.fixed_mutation_rate is None:
            self.mutation_rate = self._min_mutation_rate()
        self.stats.restarts += 1

    def _set_population(self, genes: np.ndarray, scores: Scores, reward: np.ndarray) -> None:
        self.population, self.population_scores, self.population_reward = genes, scores, reward

    def _keep(self, genes: np.ndarray, scores: Scores, reward: np.ndarray, index: np.ndarray) -> None:
        """Make the population the rows ``index`` of the population followed by the new rows (which are
        distinct from it: both were deduplicated), gathering only the rows kept."""
        old = 0 if self.population is None else len(self.population)
        from_old, from_new = index[index < old], index[index >= old] - old
        parts = [take_rows(genes, from_new)]
        part_scores = [scores.take(from_new)]
        part_reward = [reward[from_new]]
        if old:
            parts.insert(0, take_rows(self.population, from_old))
            part_scores.insert(0, self.population_scores.take(from_old))
            part_reward.insert(0, self.population_reward[from_old])
        self._set_population(concat_rows(parts), Scores.concat(part_scores), np.concatenate(part_reward))

    def _union_of(self, values: np.ndarray, population_values: np.ndarray | None) -> np.ndarray:
        """Per-row values of the population followed by the new rows (the index space of :meth:`_keep`)."""
        return values if self.population is None else np.concatenate([population_values, values])

    def _tick(self) -> None:
        self.stats.seconds = time.perf_counter() - self._started
