"""Dense gene tables: a cost of every architecture of a gene matrix, with no Python loop over rows.

Every cost this package scores (latency from a table's entries, parameters, FLOPs, peak activations,
the predictor's closed-form features) splits into one part that depends only on the six global genes
(front-end, downsampling, heads, dense skips) and one part per block slot that depends on the width, the
stage the slot runs at (encoder rate, reduced rate, or beyond the depth) and the slot's own six genes.

So a cost is two small dense tables, filled once per space over every combination of those genes:

* the global table, by the row-major flat code of the six global genes;
* the block table, by ``(width, stage, block genes)`` row-major: ``3 * prod(block highs)`` cells per width.

A slot's ``(width, stage)`` section follows from its "context", the flat code of :data:`CONTEXT_GENES`
(depth, downsampling point, width, connectivity): ``slot_base[slot, context]`` is the section's first
cell. Scoring a gene matrix is then index arithmetic over gene columns and one gather per block slot
(:meth:`GeneTables.evaluate`). :mod:`predictnas.complexity`, :class:`~predictnas.latency.estimate.
LatencyEstimator` and :mod:`predictnas.predictor.features` all build their tables in this layout.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from .space import CONNECTIVITY_GENE, DEPTH_GENE, DOWNSAMPLE_GENE, WIDTH_GENE, SearchSpace

ENCODER, REDUCED, INACTIVE = 0, 1, 2  # stage of a block slot: the frame rate it runs at, or beyond the depth
STAGES = 3
# what a slot's stage (and what it carries) depends on; a slot's context is their row-major flat code
CONTEXT_GENES = (DEPTH_GENE, DOWNSAMPLE_GENE, WIDTH_GENE, CONNECTIVITY_GENE)


def index_grid(*sizes: int) -> list[np.ndarray]:
    """Index arrays of every combination, row-major (the last index varies fastest)."""
    return [a.ravel() for a in np.indices(sizes)]


def flat_code(g: np.ndarray, columns, highs) -> np.ndarray:
    """Row-major flat index of the given gene columns (int32, no per-row Python)."""
    columns = list(columns)
    code = g[:, columns[0]].astype(np.int32)
    for column in columns[1:]:
        code *= int(highs[column])
        code += g[:, column]
    return code


def global_grid(space: SearchSpace) -> list[np.ndarray]:
    """The six global gene indices of every cell of a global table."""
    return index_grid(*(int(h) for h in space.highs[:space.n_global]))


def block_shape(space: SearchSpace) -> tuple[int, ...]:
    return tuple(int(h) for h in space.highs[space.n_global:space.n_global + space.n_block])


def block_grid(space: SearchSpace) -> list[np.ndarray]:
    """Width index, stage and the six block gene indices of every cell of a block table."""
    return index_grid(len(space.config.widths), STAGES, *block_shape(space))


def context_shape(space: SearchSpace) -> tuple[int, ...]:
    return tuple(int(space.highs[j]) for j in CONTEXT_GENES)


def slot_stages(space: SearchSpace) -> tuple[np.ndarray, np.ndarray]:
    """Per block slot and context: the slot's stage, and how many earlier states of its stage stay live
    (dense connectivity gathers every state since the stage began)."""
    c = space.config
    shape = context_shape(space)
    stage = np.full((c.max_depth, int(np.prod(shape))), INACTIVE, dtype=np.int64)
    states = np.zeros_like(stage)
    for flat, (d, downsample, _w, conn) in enumerate(itertools.product(*(range(n) for n in shape))):
        depth = c.depths[d]  # downsample gene j means "after block j" (0 = none)
        dense = c.connectivities[conn] == "dense"
        for b in range(depth):
            reduced = bool(downsample) and b >= downsample
            stage[b, flat] = REDUCED if reduced else ENCODER
            if dense:
                states[b, flat] = b - downsample if reduced else b
    return stage, states


def slot_base(space: SearchSpace, stage: np.ndarray | None = None) -> np.ndarray:
    """``(max_depth, n_context)`` int32: the first block-table cell of each slot's (width, stage) section."""
    stage = slot_stages(space)[0] if stage is None else stage
    width = index_grid(*context_shape(space))[CONTEXT_GENES.index(WIDTH_GENE)]
    return ((width[None, :] * STAGES + stage) * int(np.prod(block_shape(space)))).astype(np.int32)


@dataclass(frozen=True)
class GeneTables:
    """One cost over every gene combination of a space, and its evaluation on gene matrices."""

    global_cost: np.ndarray  # by the flat code of the six global genes
    block_cost: np.ndarray  # by slot_base + the flat code of the block genes
    slot_base: np.ndarray  # (max_depth, n_context)
    slot_extra: np.ndarray | None = None  # (max_depth, n_context): a slot's cost besides its block's own
    combine: np.ufunc = np.add  # how slot costs join the global cost: np.add (totals) or np.maximum (peaks)

    def evaluate(self, space: SearchSpace, genes: np.ndarray) -> np.ndarray:
        """The cost of every row of ``genes`` (valid, canonical rows of ``space``)."""
        g = np.atleast_2d(np.asarray(genes))
        if g.ndim != 2 or g.shape[1] != space.n_genes:
            raise ValueError(f"gene matrix: expected shape (n, {space.n_genes}), got {g.shape}")
        if not g.flags.f_contiguous:
            g = np.asfortranarray(g)  # every gene column contiguous: the column arithmetic is 3x faster
        total = self.global_cost.take(flat_code(g, range(space.n_global), space.highs))  # take: faster than []
        context = flat_code(g, CONTEXT_GENES, space.highs)
        for b in range(int(space.depth_of(g).max(initial=0))):
            base = space.n_global + b * space.n_block
            index = flat_code(g, range(base, base + space.n_block), space.highs)
            index += self.slot_base[b].take(context)
            slot = self.block_cost.take(index)
            if self.slot_extra is not None:
                slot += self.slot_extra[b].take(context)
            self.combine(total, slot, out=total)
        return total
