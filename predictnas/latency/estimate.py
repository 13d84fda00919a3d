"""Latency estimates from a table: per architecture, and for whole gene matrices at millions per second.

Both paths use the walk of :mod:`predictnas.latency.keys` and sum entries in integer nanoseconds, so
they agree exactly:

* per architecture: ``arch_keys(arch)`` -> table entries -> sum;
* per gene matrix: the same walk parts, evaluated once for every gene combination of the space, fill
  two dense tables: one indexed by the six global genes (front-end, dense skips, downsampling, heads)
  and one indexed by width, stage and the six genes of a block. Scoring a matrix is then index
  arithmetic over gene columns and one gather per block slot: no Python loop over candidates.

Weight bytes (for the calibration's knee) come from the entries' parameter counts, through the same
tables, and equal :func:`predictnas.complexity.param_counts` times four.
"""

from __future__ import annotations

import itertools

import numpy as np

from ..errors import PredictnasError
from ..space import NO_CONV, Arch, Block, SearchSpace
from .keys import (Frames, Key, arch_keys, block_keys, downsample_key, frontend_key, heads_key, skip_key,
                   skip_multiplicity, stage_frames)
from .table import LatencyTable, MissingEntry

INACTIVE = 2  # stage index of a block slot beyond the depth (its row of the block table is zero)
BYTES_PER_PARAM = 4


class LatencyEstimator:
    """Calibrated latency (ms) of architectures from one table.

    ``estimate(genes)`` scores a gene matrix (any layout; rows must be valid, canonical rows of the
    table's space); ``estimate_arch(arch)`` scores one architecture by walking its modules.
    """

    def __init__(self, table: LatencyTable, space: SearchSpace | None = None):
        if space is not None and space.config != table.space:
            raise PredictnasError(f"{table.source}: built for search space {table.space.name!r}, not the given "
                                  f"{space.config.name!r} (or the space's choices changed); rebuild it")
        self.table, self.space = table, space or SearchSpace(table.space)
        self.calibration = table.calibration
        self._missing: dict[tuple[str, int], Key] = {}
        self._build_global_table()
        self._build_block_table()
        self._pack()

    # ---- per architecture ---------------------------------------------------------------------------

    def raw_arch(self, arch: Arch) -> tuple[int, int]:
        """Sum of the entries the model of ``arch`` runs (ns), and its parameter count."""
        entries = [self.table.entry(k) for k in arch_keys(self.space.check(arch), self.table.frames)]
        return sum(e.ns for e in entries), sum(e.params for e in entries)

    def estimate_arch(self, arch: Arch) -> float:
        ns, params = self.raw_arch(arch)
        return float(self.calibration.apply(np.array([ns / 1e6]), np.array([params * BYTES_PER_PARAM]))[0])

    # ---- per gene matrix ----------------------------------------------------------------------------

    def raw(self, genes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Entry sums (int64 ns) and parameter counts (int64) of every row."""
        g = np.asarray(genes)
        if g.ndim != 2 or g.shape[1] != self.space.n_genes:
            raise PredictnasError(f"gene matrix: expected shape (n, {self.space.n_genes}), got {g.shape}")
        if not g.flags.f_contiguous:
            g = np.asfortranarray(g)  # every gene column contiguous: the column arithmetic below is 3x faster
        code = self._code(g, range(self.space.n_global), self._global_shape)
        total = self._global_packed.take(code)  # take: faster than fancy indexing
        self._check_missing("global", code)
        context = self._code(g, (3, 5, 2), self._context_shape)  # depth, downsample_after, width genes
        max_depth = int(self.space.depth_of(g).max(initial=0))
        for b in range(max_depth):
            base = self.space.n_global + b * self.space.n_block
            index = self._code(g, range(base, base + self.space.n_block), self._block_shape)
            index += self._slot_offsets[b].take(context)
            self._check_missing("block", index)
            total += self._block_packed.take(index)
        return total >> self._param_bits, total & ((1 << self._param_bits) - 1)

    def estimate(self, genes: np.ndarray) -> np.ndarray:
        """Calibrated latency (ms, float64) of every row."""
        ns, params = self.raw(genes)
        return self.calibration.apply(ns / 1e6, params * BYTES_PER_PARAM)

    # ---- dense tables -------------------------------------------------------------------------------

    @staticmethod
    def _code(g: np.ndarray, columns, shape: tuple[int, ...]) -> np.ndarray:
        """Row-major flat index of the given gene columns (int32, no per-row Python)."""
        columns = list(columns)
        code = g[:, columns[0]].astype(np.int32)
        for column, size in zip(columns[1:], shape[1:]):
            code *= size
            code += g[:, column]
        return code

    def _lookup(self, keys, where: tuple[str, int]) -> tuple[int, int]:
        ns = params = 0
        for key in keys:
            entry = self.table.entries.get(key)
            if entry is None:
                self._missing.setdefault(where, key)
                continue
            ns, params = ns + entry.ns, params + entry.params
        return ns, params

    def _build_global_table(self) -> None:
        space, frames = self.space, self.table.frames
        choices = space.global_choices
        self._global_shape = tuple(len(ch) for ch in choices)
        self._global_ns = np.zeros(self._global_shape, dtype=np.int64).ravel()
        self._global_params = np.zeros_like(self._global_ns)
        for flat, idx in enumerate(itertools.product(*(range(n) for n in self._global_shape))):
            kernel, kind, width, depth, connectivity, downsample = (ch[i] for ch, i in zip(choices, idx))
            if downsample is not None and downsample >= depth:
                continue  # not a valid row
            keys = [frontend_key(kind, kernel, width, frames)]
            for i in range(depth):
                keys += [skip_key(width, stage_frames(i, downsample, frames))] * skip_multiplicity(
                    i, downsample, depth, connectivity == "dense")
            if downsample:
                keys.append(downsample_key(width, frames))
            keys.append(heads_key(width, frames))
            self._global_ns[flat], self._global_params[flat] = self._lookup(keys, ("global", flat))

    def _build_block_table(self) -> None:
        space, frames, c = self.space, self.table.frames, self.space.config
        self._block_shape = tuple(len(ch) for ch in space.block_choices)
        per_block = int(np.prod(self._block_shape))
        n_width = len(c.widths)
        self._block_ns = np.zeros(n_width * 3 * per_block, dtype=np.int64)
        self._block_params = np.zeros_like(self._block_ns)
        for w, width in enumerate(c.widths):
            for stage, t in enumerate((frames.encoder, frames.reduced)):
                offset = (w * 3 + stage) * per_block
                for flat, idx in enumerate(itertools.product(*(range(n) for n in self._block_shape))):
                    values = [ch[i] for ch, i in zip(space.block_choices, idx)]
                    if values[2] == NO_CONV:
                        if any(idx[3:]):
                            continue  # not canonical
                        values[3:] = [None] * 3
                    where = ("block", offset + flat)
                    self._block_ns[offset + flat], self._block_params[offset + flat] = self._lookup(
                        block_keys(width, Block(*values), t), where)
        # Per slot: (depth gene, downsample gene, width gene) -> offset of the slot's (width, stage) row.
        self._context_shape = (len(c.depths), len(space.global_choices[5]), n_width)
        self._slot_offsets = np.zeros((c.max_depth, int(np.prod(self._context_shape))), dtype=np.int32)
        for flat, (d, ds, w) in enumerate(itertools.product(*(range(n) for n in self._context_shape))):
            depth, downsample = c.depths[d], space.global_choices[5][ds]
            for b in range(c.max_depth):
                stage = INACTIVE if b >= depth else int(stage_frames(b, downsample, frames) != frames.encoder)
                self._slot_offsets[b, flat] = (w * 3 + stage) * per_block
        if self._missing:
            self._missing_mask = {kind: np.zeros(len(t), dtype=bool) for kind, t in
                                  (("global", self._global_ns), ("block", self._block_ns))}
            for kind, flat in self._missing:
                self._missing_mask[kind][flat] = True

    def _pack(self) -> None:
        """Pack nanoseconds and parameters into one int64 per cell (``ns << bits | params``), so a slot costs one
        gather, not two; integer sums stay exact while the largest model's totals fit, which is checked."""
        depth = self.space.config.max_depth
        max_params = int(self._global_params.max(initial=0) + depth * self._block_params.max(initial=0))
        max_ns = int(self._global_ns.max(initial=0) + depth * self._block_ns.max(initial=0))
        self._param_bits = max(max_params.bit_length(), 1)
        if self._param_bits + max_ns.bit_length() > 62:
            raise PredictnasError(f"{self.table.source}: entries too large to sum exactly in 64 bits")
        self._global_packed = (self._global_ns << self._param_bits) | self._global_params
        self._block_packed = (self._block_ns << self._param_bits) | self._block_params

    def _check_missing(self, kind: str, index: np.ndarray) -> None:
        if not self._missing:
            return
        hit = self._missing_mask[kind][index]
        if hit.any():
            row = int(np.argmax(hit))
            self.table.entry(self._missing[(kind, int(index[row]))])  # raises MissingEntry naming the key
            raise MissingEntry(f"row {row}: a module shape is missing from {self.table.source}")  # unreachable


def reference_frames(seconds: float, sample_rate: int = 16000) -> Frames:
    """Frames of the reference input at the default feature settings (10 ms hop)."""
    from ..data.features import FeatureConfig, seconds_to_frames

    return Frames.of(seconds_to_frames(seconds, FeatureConfig(sample_rate=sample_rate)))
