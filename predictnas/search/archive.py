"""What a search keeps of everything it scored: the best rows by reward and the running Pareto front."""

from __future__ import annotations

import numpy as np

from .pareto import merge_front, non_dominated
from .problem import Scores
from .rows import concat_rows, take_rows


class Archive:
    """The ``top_k`` feasible rows, the best row of each distinct predicted WER first (by reward), then the
    others; and the Pareto front of every feasible row scored, with one row per distinct point of it (the
    first scored): rows of equal objectives add nothing to a front, nor slower rows of equal WER to a
    choice of models, unless distinct ones run out.

    Fed only feasible, distinct rows (the algorithms dedup before scoring), so both are distinct. The
    front is exact: the front of a union is the front of (old front + new rows), and rows the old front
    dominates are dropped first, with one binary search each.
    """

    def __init__(self, top_k: int):
        self.top_k = top_k
        self.genes: np.ndarray | None = None  # best first
        self.scores: Scores | None = None
        self.reward = np.zeros(0)
        self.front_genes: np.ndarray | None = None  # sorted by latency
        self.front_scores: Scores | None = None
        self.front_objectives = np.zeros((0, 2))

    def update(self, genes: np.ndarray, scores: Scores, reward: np.ndarray, objectives: np.ndarray) -> None:
        if len(genes) == 0:
            return
        self._update_top(genes, scores, reward)
        self._update_front(genes, scores, objectives)

    def _update_top(self, genes: np.ndarray, scores: Scores, reward: np.ndarray) -> None:
        if len(reward) > self.top_k:  # only the batch's own top k can enter
            best = np.argpartition(-reward, self.top_k - 1)[:self.top_k]
            genes, scores, reward = take_rows(genes, best), scores.take(best), reward[best]
        if self.genes is not None:
            genes = concat_rows([self.genes, genes])
            scores = Scores.concat([self.scores, scores])
            reward = np.concatenate([self.reward, reward])
        order = np.argsort(-reward, kind="stable")
        # the best row of each predicted WER first: the others are slower at the same predicted WER, mostly
        # twins that differ in genes the predictor does not read (a conv module's placement moves the
        # table's latency by microseconds), and would fill the top with variants of one model
        _, first = np.unique(np.asarray(scores.wer, dtype=np.float64)[order], return_index=True)
        first = np.sort(first)
        slower = np.setdiff1d(np.arange(len(order)), first)  # kept behind, for when distinct WERs run out
        order = order[np.concatenate([first, slower])][:self.top_k]
        self.genes, self.scores, self.reward = take_rows(genes, order), scores.take(order), reward[order]

    def _update_front(self, genes: np.ndarray, scores: Scores, objectives: np.ndarray) -> None:
        keep = np.flatnonzero(merge_front(self.front_objectives, objectives))
        if len(keep) == 0:
            return
        genes, scores, objectives = take_rows(genes, keep), scores.take(keep), objectives[keep]
        if self.front_genes is not None:
            genes = concat_rows([self.front_genes, genes])
            scores = Scores.concat([self.front_scores, scores])
            objectives = np.concatenate([self.front_objectives, objectives])
        on_front = np.flatnonzero(non_dominated(objectives))
        order = on_front[np.lexsort((objectives[on_front, 0], objectives[on_front, 1]))]  # stable: old rows first
        repeated = np.zeros(len(order), dtype=bool)
        repeated[1:] = (objectives[order[1:]] == objectives[order[:-1]]).all(axis=1)
        order = order[~repeated]  # one row per outcome: the first scored
        self.front_genes, self.front_scores = take_rows(genes, order), scores.take(order)
        self.front_objectives = objectives[order]
