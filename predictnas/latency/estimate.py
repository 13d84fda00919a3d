"""Latency estimates from a table: per architecture, and for whole gene matrices at millions per second.

Both paths use the walk of :mod:`predictnas.latency.keys` and sum entries in integer nanoseconds, so
they agree exactly:

* per architecture: ``arch_keys(arch)`` -> table entries -> sum;
* per gene matrix: the same walk parts, evaluated once for every gene combination of the space, fill
  the two dense tables of :mod:`predictnas.gene_tables`: one indexed by the six global genes (front-end,
  dense skips, downsampling, heads) and one by width, stage and the six genes of a block. Scoring a
  matrix is then index arithmetic over gene columns and one gather per block slot: no Python loop over
  candidates.

Weight bytes (for the calibration's knee) come from the entries' parameter counts, through the same
tables, and equal :func:`predictnas.complexity.param_counts` times four.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import PredictnasError
from ..gene_tables import INACTIVE, REDUCED, GeneTables, block_grid, global_grid, slot_base
from ..space import NO_CONV, Arch, Block, SearchSpace
from .keys import (Frames, Key, arch_keys, block_keys, downsample_key, frontend_key, heads_key, skip_key,
                   skip_multiplicity, stage_frames)
from .table import LatencyTable, MissingEntry

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
        (global_ns, global_params), (block_ns, block_params) = self._global_table(), self._block_table()
        base = slot_base(self.space)
        self._tables = GeneTables(*self._pack(global_ns, global_params, block_ns, block_params), base)
        self._missing_tables = None
        if self._missing:  # a 1 in every cell whose modules the table lacks
            missing = {"global": np.zeros_like(global_ns), "block": np.zeros_like(block_ns)}
            for kind, flat in self._missing:
                missing[kind][flat] = 1
            self._missing_tables = GeneTables(missing["global"], missing["block"], base)

    # ---- per architecture ---------------------------------------------------------------------------

    def raw_arch(self, arch: Arch) -> tuple[int, int]:
        """Sum of the entries the model of ``arch`` runs (ns), and its parameter count."""
        entries = [self.table.entry(k) for k in arch_keys(self.space.check(arch), self.table.frames)]
        return sum(e.ns for e in entries), sum(e.params for e in entries)

    def calibration_inputs(self, archs: Sequence[Arch]) -> tuple[np.ndarray, np.ndarray]:
        """What a :class:`Calibration` maps to milliseconds, per architecture: the sum of its entries (ms)
        and its weight bytes (the inputs ``calibration.fit`` takes beside measured latencies)."""
        sums = [self.raw_arch(arch) for arch in archs]
        return (np.array([ns / 1e6 for ns, _ in sums], dtype=np.float64),
                np.array([params * BYTES_PER_PARAM for _, params in sums], dtype=np.float64))

    def estimate_arch(self, arch: Arch) -> float:
        return float(self.calibration.apply(*self.calibration_inputs([arch]))[0])

    # ---- per gene matrix ----------------------------------------------------------------------------

    def raw(self, genes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Entry sums (int64 ns) and parameter counts (int64) of every row."""
        g = np.asarray(genes)
        if g.ndim != 2 or g.shape[1] != self.space.n_genes:
            raise PredictnasError(f"gene matrix: expected shape (n, {self.space.n_genes}), got {g.shape}")
        if not g.flags.f_contiguous:
            g = np.asfortranarray(g)  # once for both evaluations
        if self._missing_tables is not None:
            missing = self._missing_tables.evaluate(self.space, g)
            if missing.any():  # the walk of the first such row names the module
                row = int(np.argmax(missing > 0))
                self.raw_arch(self.space.decode(g[row]))
                raise MissingEntry(f"row {row}: a module shape is missing from {self.table.source}")  # unreachable
        total = self._tables.evaluate(self.space, g)
        return total >> self._param_bits, total & ((1 << self._param_bits) - 1)

    def estimate(self, genes: np.ndarray) -> np.ndarray:
        """Calibrated latency (ms, float64) of every row."""
        ns, params = self.raw(genes)
        return self.calibration.apply(ns / 1e6, params * BYTES_PER_PARAM)

    # ---- dense tables -------------------------------------------------------------------------------

    def _lookup(self, keys, where: tuple[str, int]) -> tuple[int, int]:
        ns = params = 0
        for key in keys:
            entry = self.table.entries.get(key)
            if entry is None:
                self._missing.setdefault(where, key)
                continue
            ns, params = ns + entry.ns, params + entry.params
        return ns, params

    def _global_table(self) -> tuple[np.ndarray, np.ndarray]:
        """Nanoseconds and parameters of the global modules, by the flat code of the global genes."""
        space, frames = self.space, self.table.frames
        grid = global_grid(space)
        ns, params = np.zeros(len(grid[0]), dtype=np.int64), np.zeros(len(grid[0]), dtype=np.int64)
        for flat, idx in enumerate(zip(*grid)):
            kernel, kind, width, depth, connectivity, downsample = (ch[i] for ch, i in zip(space.global_choices, idx))
            if downsample is not None and downsample >= depth:
                continue  # not a valid row
            keys = [frontend_key(kind, kernel, width, frames)]
            for i in range(depth):
                keys += [skip_key(width, stage_frames(i, downsample, frames))] * skip_multiplicity(
                    i, downsample, depth, connectivity == "dense")
            if downsample:
                keys.append(downsample_key(width, frames))
            keys.append(heads_key(width, frames))
            ns[flat], params[flat] = self._lookup(keys, ("global", flat))
        return ns, params

    def _block_table(self) -> tuple[np.ndarray, np.ndarray]:
        """Nanoseconds and parameters of one block, by (width, stage, block genes); beyond the depth, zero."""
        space, frames, c = self.space, self.table.frames, self.space.config
        grid = block_grid(space)
        ns, params = np.zeros(len(grid[0]), dtype=np.int64), np.zeros(len(grid[0]), dtype=np.int64)
        for flat, (w, stage, *idx) in enumerate(zip(*grid)):
            if stage == INACTIVE:
                continue
            values = [ch[i] for ch, i in zip(space.block_choices, idx)]
            if values[2] == NO_CONV:
                if any(idx[3:]):
                    continue  # not canonical
                values[3:] = [None] * 3
            t = frames.reduced if stage == REDUCED else frames.encoder
            ns[flat], params[flat] = self._lookup(block_keys(c.widths[w], Block(*values), t), ("block", flat))
        return ns, params

    def _pack(self, global_ns, global_params, block_ns, block_params) -> tuple[np.ndarray, np.ndarray]:
        """Nanoseconds and parameters in one int64 per cell (``ns << bits | params``), so a slot costs one
        gather, not two; integer sums stay exact while the largest model's totals fit, which is checked."""
        depth = self.space.config.max_depth
        max_params = int(global_params.max(initial=0) + depth * block_params.max(initial=0))
        max_ns = int(global_ns.max(initial=0) + depth * block_ns.max(initial=0))
        self._param_bits = max(max_params.bit_length(), 1)
        if self._param_bits + max_ns.bit_length() > 62:
            raise PredictnasError(f"{self.table.source}: entries too large to sum exactly in 64 bits")
        return (global_ns << self._param_bits) | global_params, (block_ns << self._param_bits) | block_params


def reference_frames(seconds: float, sample_rate: int = 16000) -> Frames:
    """Frames of the reference input at the default feature settings (10 ms hop)."""
    from ..data.features import FeatureConfig, seconds_to_frames

    return Frames.of(seconds_to_frames(seconds, FeatureConfig(sample_rate=sample_rate)))
