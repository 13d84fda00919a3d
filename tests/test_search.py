import itertools

import numpy as np
import pytest

from predictnas.complexity import param_counts
from predictnas.errors import PredictnasError
from predictnas.latency.estimate import LatencyEstimator
from predictnas.latency.table import LatencyTable
from predictnas.pretrained import tables_dir
from predictnas.predictor import AccuracyPredictor, FeatureSpec
from predictnas.predictor.model import fit_booster
from predictnas.search import (NSGA2, CostScorer, GeneticAlgorithm, HillClimb, KeySet, MaxCandidates,
                               MaxGenerations, MaxSeconds, Problem, Scores, crowding_distance, fastest_latency,
                               minimize, non_dominated, nondominated_rank)

LUT = tables_dir() / "cpu-1t-fp32-d3ed75e4.json"  # the shipped table for speech-v1


@pytest.fixture(scope="module")
def estimator():
    return LatencyEstimator(LatencyTable.load(LUT))


def linear_wer(space, seed=7):
    """A fixed stand-in for the predictor: WER falls with capacity (log params), plus a seeded linear
    term over the gene one-hots, so the search has a real accuracy / latency trade-off."""
    weights = np.random.default_rng(seed).normal(0, 0.01, (space.n_genes, int(space.highs.max())))
    columns = np.arange(space.n_genes)

    def wer(genes):
        genes = np.asarray(genes)
        return 0.45 - 0.03 * np.log(param_counts(space, genes)) + weights[columns, genes].sum(axis=1)
    return wer


def flat_wer_scorer(estimator):
    """The same WER for every row: the reward is latency alone, and rows the table cannot tell apart tie."""
    return CostScorer(estimator, lambda genes: np.full(len(genes), 0.5))


@pytest.fixture(scope="module")
def scorer(estimator):
    return CostScorer(estimator, linear_wer(estimator.space))


@pytest.fixture(scope="module")
def sample_latency(estimator):
    return estimator.estimate(estimator.space.sample(50_000, np.random.default_rng(3)))


class Recording:
    """Wraps a scorer and keeps every row it scored (to check results against everything seen)."""

    def __init__(self, scorer):
        self.scorer, self.genes, self.scores = scorer, [], []

    def __call__(self, genes):
        scores = self.scorer(genes)
        self.genes.append(np.array(genes))
        self.scores.append(scores)
        return scores

    def all(self):
        return np.concatenate(self.genes), Scores.concat(self.scores)


def small_ga(**kw):
    return GeneticAlgorithm(**{"population_size": 1000, "offspring_size": 2000, **kw})


def keys(space, genes):
    return space.row_keys(np.asarray(genes))


# ---- the fastest latency and impossible budgets ----------------------------------------------------


def test_fastest_latency_is_never_beaten_by_a_large_sample(space, estimator, rng):
    fastest_ms, row = fastest_latency(space, estimator)
    assert space.validate(row[None])[0] and np.isclose(estimator.estimate(row[None])[0], fastest_ms)
    assert estimator.estimate(space.sample(300_000, rng)).min() >= fastest_ms
    neighbours = space.mutate(np.repeat(row[None], 50_000, axis=0), rng, rate=0.05)
    assert estimator.estimate(neighbours).min() >= fastest_ms


def test_an_impossible_budget_is_refused_naming_the_device_and_the_fastest_latency(space, scorer, estimator):
    fastest_ms, _ = fastest_latency(space, estimator)
    with pytest.raises(PredictnasError, match=r"^budget 1 ms is below the fastest latency this space reaches on "
                                              r"cpu-1t-fp32-d3ed75e4: \d+\.\d ms$"):
        Problem(space, scorer, estimator, latency_budget_ms=1)
    Problem(space, scorer, estimator, latency_budget_ms=fastest_ms)  # the fastest itself is a valid budget
    deep = Problem(space, scorer, estimator, latency_budget_ms=1e3, fixed={"depth": len(space.config.depths) - 1})
    assert deep.fastest_ms > fastest_ms  # the pinned sub-space is slower
    with pytest.raises(PredictnasError, match="fixed gene 'depht'"):
        Problem(space, scorer, estimator, latency_budget_ms=50, fixed={"depht": 1})


# ---- finding the optimum -----------------------------------------------------------------------------


def enumerable_problem(space, scorer, estimator, budget_quantile):
    """speech-v1 with most genes pinned: depth 3, the front-end, and every FFN / conv setting but the first
    block's FFN. Free: width, connectivity, downsampling, heads and conv kind of each block (207,360 archs)."""
    fixed = {"frontend_kernel": 1, "frontend_kind": 0, "depth": 1}
    for b in range(3):
        fixed.update({f"blocks[{b}].ffn_dim": 2, f"blocks[{b}].conv_kernel": 1, f"blocks[{b}].dilation": 0,
                      f"blocks[{b}].conv_placement": 1})
    del fixed["blocks[0].ffn_dim"]
    free = [space.gene_names.index(name) for name in space.gene_names[:6] + space.gene_names[6:24]
            if name not in fixed]
    grid = np.array(list(itertools.product(*(range(space.highs[j]) for j in free))), dtype=np.int8)
    genes = np.zeros((len(grid), space.n_genes), dtype=np.int8)
    genes[:, free] = grid
    unrestricted = Problem(space, scorer, estimator, latency_budget_ms=1e9, fixed=fixed)
    genes = unrestricted.pin(genes)
    genes = genes[space.validate(genes)]
    genes = genes[np.unique(keys(space, genes), return_index=True)[1]]
    scores = scorer(genes)
    budget = float(np.quantile(scores.latency_ms, budget_quantile))
    problem = Problem(space, scorer, estimator, latency_budget_ms=budget, fixed=fixed)
    return problem, genes, scores


def test_ga_finds_the_true_optimum_of_an_enumerable_subspace_in_19_of_20_seeds(space, scorer, estimator):
    problem, genes, scores = enumerable_problem(space, scorer, estimator, budget_quantile=0.3)
    assert len(genes) == 207_360
    reward = np.where(problem.feasible(scores), problem.reward(scores), -np.inf)
    best = reward.max()
    found = []
    for seed in range(20):  # each run scores 3 % of the sub-space
        result = minimize(problem, small_ga(population_size=400), MaxCandidates(len(genes) * 3 // 100), seed=seed)
        found.append(np.isclose(result.reward[0], best))
        assert result.reward[0] <= best + 1e-12
    assert sum(found) >= 19


# ---- constraints ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", [small_ga, NSGA2])
def test_every_returned_candidate_meets_the_budget_across_its_range(algorithm, space, scorer, estimator,
                                                                    sample_latency):
    fastest_ms, _ = fastest_latency(space, estimator)
    budgets = [fastest_ms * 1.02] + list(np.quantile(sample_latency, np.linspace(0.05, 0.95, 9)))
    for i, budget in enumerate(budgets):
        recording = Recording(scorer)
        problem = Problem(space, recording, estimator, latency_budget_ms=budget)
        alg = algorithm(population_size=1000, offspring_size=2000) if algorithm is NSGA2 else algorithm()
        result = minimize(problem, alg, MaxGenerations(4), seed=i)
        assert len(result.genes) and len(result.front_genes)
        for genes, scores in ((result.genes, result.scores), (result.front_genes, result.front_scores)):
            assert space.validate(genes).all()
            assert (scores.latency_ms <= budget).all() and (estimator.estimate(genes) <= budget).all()
        assert (np.diff(result.reward) <= 0).all()  # best first
        assert_front_is_exact(problem, recording, result)


def assert_front_is_exact(problem, recording, result):
    """The front is the non-dominated set of every feasible row scored, one row per distinct point."""
    _, all_scores = recording.all()
    objectives = problem.objectives(all_scores.take(problem.feasible(all_scores)))
    expected = {tuple(point) for point in objectives[non_dominated(objectives)]}
    front = problem.objectives(result.front_scores)
    assert {tuple(point) for point in front} == expected and len(front) == len(expected)
    assert non_dominated(front).all()


def test_rows_of_equal_objectives_share_one_front_point(space, estimator):
    # A flat WER and rows that differ only in genes the latency table ignores: many exact ties.
    recording = Recording(flat_wer_scorer(estimator))
    problem = Problem(space, recording, estimator, latency_budget_ms=20)
    result = minimize(problem, small_ga(), MaxGenerations(4), seed=0)
    _, all_scores = recording.all()
    assert len(np.unique(all_scores.latency_ms)) < len(all_scores.latency_ms)  # ties happened
    assert_front_is_exact(problem, recording, result)
    assert len(result.front_genes) == 1  # a flat WER: only the fastest row is on the front


def test_nsga2_front_is_non_dominated_and_spans_the_trade_off(space, scorer, estimator):
    problem = Problem(space, scorer, estimator, latency_budget_ms=40)
    result = minimize(problem, NSGA2(population_size=2000), MaxGenerations(6), seed=0)
    f = problem.objectives(result.front_scores)
    dominated = ((f[:, None, :] <= f[None, :, :]).all(-1) & (f[:, None, :] < f[None, :, :]).any(-1)).any(0)
    assert not dominated.any() and len(f) >= 10
    assert (np.diff(f[:, 1]) >= 0).all() and (np.diff(f[:, 0]) <= 0).all()  # by latency; WER falls along it
    assert f[:, 1].max() - f[:, 1].min() > 10  # spans tens of milliseconds


def test_the_screened_latency_reaches_a_scorer_that_takes_it(space, scorer, estimator, rng):
    genes = space.sample(1000, rng)
    assert np.array_equal(scorer(genes, latency_ms=np.full(1000, 7.0)).latency_ms, np.full(1000, 7.0))
    seen = []

    def scoring(genes, latency_ms=None):
        seen.append(latency_ms)
        return scorer(genes, latency_ms=latency_ms)
    problem = Problem(space, scoring, estimator, latency_budget_ms=20)
    minimize(problem, small_ga(), MaxGenerations(2), seed=0)
    assert len(seen) == 2 and all(s is not None and (s <= 20).all() for s in seen)


def test_scored_latency_over_the_budget_is_never_returned(space, scorer, estimator):
    """A scorer may measure latency its own way: rows it reports over budget are dropped, even after screening."""
    def pessimistic(genes):
        scores = scorer(genes)
        return scores._replace(latency_ms=scores.latency_ms * np.where(genes[:, 2] == 3, 10.0, 1.0))
    problem = Problem(space, pessimistic, estimator, latency_budget_ms=30)
    result = minimize(problem, small_ga(), MaxGenerations(3), seed=0)
    assert (result.genes[:, 2] != 3).all() and (result.front_genes[:, 2] != 3).all()


def test_a_tight_soft_params_budget_shrinks_the_winner(space, scorer, estimator):
    def winner(**budgets):
        problem = Problem(space, scorer, estimator, latency_budget_ms=30, **budgets)
        return minimize(problem, small_ga(), MaxGenerations(6), seed=0)
    free = winner()
    cap = 0.5 * free.scores.params[0]
    tight = winner(max_params=cap, penalty_weight=2.0)
    assert tight.scores.params[0] < free.scores.params[0] and tight.scores.params[0] <= 1.05 * cap
    memory_cap = 0.7 * free.scores.memory_bytes[0]
    assert winner(max_memory_bytes=memory_cap).scores.memory_bytes[0] < free.scores.memory_bytes[0]
    with pytest.raises(PredictnasError, match="a budget on params needs a scorer that reports params"):
        problem = Problem(space, lambda g: Scores(np.zeros(len(g)), np.ones(len(g))), estimator,
                          latency_budget_ms=30, max_params=1e6)
        minimize(problem, small_ga(), MaxGenerations(1), seed=0)


# ---- ask / tell, dedup, determinism, termination -------------------------------------------------------


def test_ask_tell_with_external_scoring_never_asks_a_row_twice_and_equals_minimize(space, scorer, estimator):
    problem = Problem(space, scorer, estimator, latency_budget_ms=20)
    alg = small_ga().setup(problem, seed=5)
    asked = []
    for _ in range(5):
        genes = alg.ask()
        assert space.validate(genes).all() and (estimator.estimate(genes) <= 20).all()
        asked.append(genes)
        alg.tell(genes, scorer(genes))  # scored "elsewhere"
    every = keys(space, np.concatenate(asked))
    assert len(np.unique(every)) == len(every)
    manual = alg.result()
    assert len(np.unique(keys(space, manual.genes))) == len(manual.genes) == 100
    assert len(np.unique(keys(space, manual.front_genes))) == len(manual.front_genes)
    assert manual.stats.candidates_scored == len(every) and manual.stats.generations == 5
    facade = minimize(problem, small_ga(), MaxGenerations(5), seed=5)
    assert np.array_equal(facade.genes, manual.genes) and np.array_equal(facade.front_genes, manual.front_genes)


def test_restarts_start_over_but_keep_the_best_and_never_rescore_a_row(space, estimator):
    # A flat WER: the reward is latency alone, which a population quickly stops improving, so it restarts.
    recording = Recording(flat_wer_scorer(estimator))
    problem = Problem(space, recording, estimator, latency_budget_ms=20)
    result = minimize(problem, small_ga(restart_after=2), MaxGenerations(60), seed=3)
    assert result.stats.restarts >= 2
    genes, scores = recording.all()
    every = keys(space, genes)
    assert len(np.unique(every)) == len(every)
    assert result.reward[0] == problem.reward(scores).max()  # the best row of every run is kept
    never = minimize(problem, small_ga(restart_after=None), MaxGenerations(20), seed=3)
    assert never.stats.restarts == 0


def test_hill_climbing_ends_each_start_on_a_row_no_neighbour_beats(space, scorer, estimator, rng):
    problem = Problem(space, scorer, estimator, latency_budget_ms=30)
    starts = problem.sample(4, rng)
    starts = starts[problem.latency(starts) <= 30]
    first = problem.reward(problem.score(starts))
    climb = HillClimb(space, starts, first)
    while not climb.done:
        genes = climb.propose(rng)
        genes = genes[problem.latency(genes) <= 30]
        climb.tell(genes, problem.reward(problem.score(genes)))
    assert climb.moves > 0 and (climb.rewards >= first).all() and (climb.rewards > first).any()
    assert np.allclose(problem.reward(problem.score(climb.incumbents)), climb.rewards)
    for row, reward in zip(climb.incumbents, climb.rewards):
        around, _ = space.neighbours(row[None], rng)
        around = around[problem.latency(around) <= 30]
        assert problem.reward(problem.score(around)).max() <= reward  # a local optimum


def rugged_predictor(space):
    """A real XGBoost predictor fit on random labels: a landscape of plateaus and steps, like a predictor
    fit on a few hundred noisy subnets, and unlike the smooth ``linear_wer``."""
    spec = FeatureSpec(("encoding", "closed_form"), space.config)
    train = space.sample(300, np.random.default_rng(1))
    labels = np.random.default_rng(2).random(300)
    # its own learning rate: the landscape stays the one this file's tests were written against
    booster = fit_booster(spec.matrix(space, train), labels, params={"eta": 0.05}, rounds=400)
    return AccuracyPredictor(spec, {"wer/all": booster})


def test_the_ga_climbs_before_each_restart_and_finds_better_rows_for_the_same_candidates(space, estimator):
    predictor = rugged_predictor(space)
    # a budget where every run stalls and restarts within the candidates given (at 25 ms on the shipped table
    # one of the three seeds kept improving and never restarted, so there was no climb to compare)
    problem = Problem(space, CostScorer(estimator, predictor.predict), estimator, latency_budget_ms=20)

    def run(seed, **kw):
        ga = GeneticAlgorithm(population_size=500, restart_after=5, **kw)
        return minimize(problem, ga, MaxCandidates(100_000), seed=seed)
    climbing, plain = [run(s) for s in range(3)], [run(s, climb_starts=0) for s in range(3)]
    assert sum(r.stats.climb_moves for r in climbing) > 0 and all(r.stats.restarts > 0 for r in climbing)
    assert all(r.stats.climb_moves == 0 for r in plain)
    assert np.mean([r.reward[0] for r in climbing]) > np.mean([r.reward[0] for r in plain])


@pytest.mark.parametrize("algorithm", [small_ga, NSGA2])
def test_same_seed_same_result(algorithm, space, scorer, estimator):
    problem = Problem(space, scorer, estimator, latency_budget_ms=25)
    make = (lambda: NSGA2(population_size=1000)) if algorithm is NSGA2 else small_ga
    runs = [minimize(problem, make(), MaxGenerations(4), seed=seed) for seed in (1, 1, 2)]
    assert np.array_equal(runs[0].genes, runs[1].genes) and np.array_equal(runs[0].reward, runs[1].reward)
    assert np.array_equal(runs[0].front_genes, runs[1].front_genes)
    assert not np.array_equal(runs[0].genes, runs[2].genes)


def test_terminations_report_progress_compose_and_stop(space, scorer, estimator):
    problem = Problem(space, scorer, estimator, latency_budget_ms=25)
    seen = []
    result = minimize(problem, small_ga(), MaxGenerations(5) | MaxCandidates(10**9), seed=0, callback=seen.append)
    assert [s.generations for s in seen] == [1, 2, 3, 4, 5]
    assert [s.progress for s in seen] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert all(s.candidates_per_second > 0 for s in seen)
    assert all(a.best_reward <= b.best_reward for a, b in zip(seen, seen[1:]))  # elitist
    assert result.stats.generations == 5 and result.stats.best_reward == result.reward[0]
    by_candidates = minimize(problem, small_ga(), MaxCandidates(5000), seed=0)
    assert 5000 <= by_candidates.stats.candidates_scored < 5000 + 2 * 2000
    by_time = minimize(problem, small_ga(), MaxSeconds(0.3), seed=0)
    assert by_time.stats.seconds >= 0.3 and not by_time.stats.exhausted  # stopped by the clock, not the space
    both = MaxGenerations(2) & MaxCandidates(9000)
    assert minimize(problem, small_ga(), both, seed=0).stats.candidates_scored >= 9000


def test_a_used_up_space_ends_the_search_with_every_feasible_row(space, scorer, estimator):
    fixed = {name: 0 for name in space.gene_names if name not in ("width", "blocks[0].heads")}
    problem = Problem(space, scorer, estimator, latency_budget_ms=1e3, fixed=fixed)
    result = minimize(problem, GeneticAlgorithm(population_size=50), MaxGenerations(100), seed=0)
    assert result.stats.exhausted and result.stats.generations < 100
    assert len(result.genes) == space.highs[2] * space.highs[6] == 16


# ---- parts ---------------------------------------------------------------------------------------------


def test_keyset_matches_a_python_set():
    rng = np.random.default_rng(0)
    keyset, reference = KeySet(capacity=64), set()
    pool = rng.integers(0, 2**64, size=5000, dtype=np.uint64)
    pool[:3] = 0  # the empty-slot value is a key too
    for _ in range(40):  # grows the table several times
        batch = rng.choice(pool, size=300)
        new = keyset.add(batch)
        expected_new = set(batch.tolist()) - reference
        assert set(batch[new].tolist()) == expected_new and new.sum() == len(expected_new)
        reference |= expected_new
        assert len(keyset) == len(reference)
    assert keyset.contains(pool).tolist() == [k in reference for k in pool.tolist()]


def _brute_rank(f):
    rank, remaining, front = np.full(len(f), -1), np.arange(len(f)), 0
    while len(remaining):
        g = f[remaining]
        dominated = ((g[:, None] <= g[None]).all(-1) & (g[:, None] < g[None]).any(-1)).any(0)
        rank[remaining[~dominated]] = front
        remaining, front = remaining[dominated], front + 1
    return rank


def test_pareto_sorting_matches_brute_force_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(20):
        f = rng.integers(0, 8, size=(200, 2)).astype(float)  # many ties and equal points
        rank = _brute_rank(f)
        assert np.array_equal(non_dominated(f), rank == 0)
        assert np.array_equal(nondominated_rank(f), rank)
        crowding = crowding_distance(f, rank)
        for front in range(rank.max() + 1):
            members = np.flatnonzero(rank == front)
            for k in range(2):
                assert np.isinf(crowding[members[np.argmin(f[members, k])]])
        assert (crowding >= 0).all()
