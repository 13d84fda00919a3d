"""The predictor's input: named feature groups computed from gene matrices, vectorized.

A :class:`FeatureSpec` lists groups and fixes the column order, and it is saved in ``predictor.json``
so a loaded predictor builds exactly the columns it was fit on:

* ``encoding``: the choice *value* of every gene (kernel 15, not index 2), inactive slots as 0, conv
  kind and placement as their index + 1 (0 = no conv module). Trees split on values, so order matters
  where the values are ordered (sizes) and is harmless where they are not (kinds).
* ``closed_form``: parameters, FLOPs for the reference input, depth, and totals over the active blocks
  (attention heads, FFN dims, conv modules per kind, the conv modules' receptive field in frames).
* ``proxies``: zero-cost proxies (:mod:`.proxies`). They need a forward/backward pass per architecture,
  so a predictor that uses them can rank stored subnets but cannot score a search's gene matrices.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from .. import complexity
from ..errors import PredictnasError
from ..gene_tables import CONTEXT_GENES, INACTIVE, REDUCED, block_grid, flat_code, global_grid
from ..space import SearchSpace, SpaceConfig
from .proxies import PROXIES

GROUPS = ("encoding", "closed_form", "proxies")
DEFAULT_GROUPS = ("encoding", "closed_form")
REFERENCE_FRAMES = 2400  # 24 s at 100 frames/s: the latency tables' reference input


@dataclass(frozen=True)
class FeatureSpec:
    """Which feature groups, for which search space (its full config: sizes change parameter counts)."""

    groups: tuple[str, ...]
    space: SpaceConfig
    reference_frames: int = REFERENCE_FRAMES

    def __post_init__(self) -> None:
        unknown = [g for g in self.groups if g not in GROUPS]
        if unknown or not self.groups:
            raise PredictnasError(f"unknown feature group(s) {', '.join(unknown) or '(none given)'}; "
                                  f"choose from {', '.join(GROUPS)}")

    @classmethod
    def parse(cls, text: str, space: SpaceConfig) -> "FeatureSpec":
        groups = tuple(g.strip() for g in text.split(",") if g.strip())
        return cls(tuple(g for g in GROUPS if g in groups) + tuple(g for g in groups if g not in GROUPS), space)

    @property
    def needs_proxies(self) -> bool:
        return "proxies" in self.groups

    def to_dict(self) -> dict:
        return {"groups": list(self.groups), "space": self.space.to_dict(), "reference_frames": self.reference_frames}

    @classmethod
    def from_dict(cls, d: dict) -> "FeatureSpec":
        return cls(tuple(d["groups"]), SpaceConfig.from_dict(d["space"]), int(d.get("reference_frames", REFERENCE_FRAMES)))

    def names(self, space: SearchSpace) -> list[str]:
        names: list[str] = []
        if "encoding" in self.groups:
            names += list(space.gene_names)
        if "closed_form" in self.groups:
            names += _CLOSED_FORM
        if "proxies" in self.groups:
            names += [f"proxy.{p}" for p in PROXIES]
        return names

    def matrix(self, space: SearchSpace, genes: np.ndarray, proxies: list[dict] | None = None) -> np.ndarray:
        """``(n, n_features)`` float32 features of ``genes`` (and their proxy scores, if used).

        The result may be a view of wider rows (not C-contiguous, see ``_features``); XGBoost reads it as is.
        """
        genes = np.asarray(genes)
        n_proxies = len(PROXIES) if "proxies" in self.groups else 0
        if n_proxies and (proxies is None or len(proxies) != len(genes)):
            raise PredictnasError("this predictor uses zero-cost proxies: it scores stored subnets only, "
                                  "not gene matrices; fit one with --features encoding,closed_form")
        out = _features(space, genes, self.reference_frames, "encoding" in self.groups,
                        "closed_form" in self.groups, extra_columns=n_proxies)
        if n_proxies:
            scores = np.array([[p.get(name, np.nan) for name in PROXIES] for p in proxies], dtype=np.float32)
            out[:, out.shape[1] - n_proxies:] = scores.reshape(len(genes), n_proxies)
        return out


_CLOSED_FORM = ["log_params", "log_flops", "depth", "total_heads", "total_ffn", "dwsep_convs", "grouped_convs",
                "receptive_frames", "downsampled_blocks"]


def encoding(space: SearchSpace, genes: np.ndarray) -> np.ndarray:
    """Choice values of every gene, in the space's gene order (see the module docstring)."""
    return _features(space, genes, REFERENCE_FRAMES, with_encoding=True, with_closed_form=False)


def closed_form(space: SearchSpace, genes: np.ndarray, reference_frames: int = REFERENCE_FRAMES) -> np.ndarray:
    """The closed-form group of every row, in ``_CLOSED_FORM`` order (FLOPs for ``reference_frames``)."""
    return _features(space, genes, reference_frames, with_encoding=False, with_closed_form=True)


# ---- how the features are computed ------------------------------------------------------------------
# Every feature is a sum over parts, as the costs of :mod:`predictnas.complexity` are: one part from the six
# global genes and one from each block slot, where a slot's part depends on its six genes, the width and the
# slot's stage (encoder rate, reduced rate, or beyond the depth). So each part is a row of a small table over
# every combination of those genes, in the layout of :mod:`predictnas.gene_tables` (complexity's cost tables
# are reused as they are). A gene matrix then costs index arithmetic over gene columns and two gathers per part: its
# six encoding values, which land side by side in the output row, and its closed-form totals, summed.
#
# Every closed-form total is a sum of non-negative integers, so a part's totals are packed as bit fields into
# int64 words, each field as wide as the largest sum it can hold: one integer add sums them all, exactly, and
# a part's totals take 16 bytes (a size numpy's take copies fast).
#
# Memory traffic, not arithmetic, is the cost. So rows go in chunks whose temporaries are allocated once per
# call and reused (``out=``): fresh arrays this size are fresh pages from the kernel. And one gather writes
# each output row whole, in place: rows are padded to whole 6-float parts, and the parts past the genes read
# the chunk's closed-form values (then zeros), which sit after the encoding table in the gather's source.
# The result is a view of the padded rows.

_CHUNK = 8192
_WORD_BITS = 63  # a non-negative int64


@dataclass(frozen=True)
class _Tables:
    """Per-part tables, slot rows first (complexity's block-table order), then the global rows."""

    encoding: np.ndarray  # (rows, n_block) float32: the part's encoding columns (n_block == n_global)
    totals: np.ndarray  # (rows, words) int64: the part's share of each _CLOSED_FORM total (before the logs)
    fields: tuple[tuple[int, int, int], ...]  # (word, bit offset, mask) of each _CLOSED_FORM total
    global_offset: int  # global genes with flat code k read row global_offset + k
    slot_base: np.ndarray  # complexity's (max_depth, n_context): first row of each slot's (width, stage) section


@functools.lru_cache(maxsize=16)
def _tables(config: SpaceConfig, frames: int) -> _Tables:
    """The part tables of a space, FLOPs for ``frames`` input frames."""
    space, c = SearchSpace(config), config
    params, flops = complexity.cost_tables(config, 1, "params"), complexity.cost_tables(config, frames, "flops")
    value = lambda choices, index: np.asarray(choices, dtype=np.int64)[index]  # noqa: E731
    none, dwsep, grouped = (c.conv_kinds.index(k) for k in ("none", "dwsep", "grouped"))

    _width, stage, heads, ffn, kind, kernel, dilation, placement = block_grid(space)
    active = stage != INACTIVE
    conv = active & (kind != none)
    heads, ffn = value(c.heads, heads) * active, value(c.ffn_dims, ffn) * active
    kernel, dilation = value(c.conv_kernels, kernel) * conv, value(c.dilations, dilation) * conv
    reduced = stage == REDUCED  # after the downsampling point a kernel sees twice the time
    slot_encoding = [heads, ffn, (kind + 1) * conv, kernel, dilation, (placement + 1) * conv]
    slot_totals = [params.block_cost, flops.block_cost, 0, heads, ffn, conv & (kind == dwsep),
                   conv & (kind == grouped), (kernel - 1) * dilation * np.where(reduced, 2, 1) * conv, reduced]

    frontend_kernel, frontend_kind, width, depth, connectivity, downsample = global_grid(space)
    depth = value(c.depths, depth)
    global_encoding = [value(c.frontend_kernels, frontend_kernel), frontend_kind == c.frontend_kinds.index("dwsep"),
                       value(c.widths, width), depth, connectivity == c.connectivities.index("dense"), downsample]
    global_totals = [params.global_cost, flops.global_cost, depth] + [0] * (len(_CLOSED_FORM) - 3)

    def table(slot_columns, global_columns):
        return np.concatenate([np.stack(np.broadcast_arrays(*columns), axis=1).astype(np.int64)
                               for columns in (slot_columns, global_columns)])

    totals, n_slot_rows = table(slot_totals, global_totals), len(stage)
    # each field is as wide as its largest sum: the largest global part plus max_depth of the largest slot part
    largest = totals[n_slot_rows:].max(axis=0) + c.max_depth * totals[:n_slot_rows].max(axis=0)
    fields, word, used = [], 0, 0
    for bits in (int(x).bit_length() for x in largest):
        if bits > _WORD_BITS:
            raise PredictnasError(f"space {c.name!r}: a closed-form total needs {bits} bits, more than int64 holds")
        if used + bits > _WORD_BITS:
            word, used = word + 1, 0
        fields.append((word, used, (1 << bits) - 1))
        used += bits
    packed = np.zeros((len(totals), 1 << word.bit_length()), dtype=np.int64)  # 1, 2, 4... words: fast takes
    for (w, shift, _mask), column in zip(fields, totals.T):
        packed[:, w] += column << shift
    tables = _Tables(table(slot_encoding, global_encoding).astype(np.float32), packed, tuple(fields), n_slot_rows,
                     params.slot_base)
    tables.encoding.flags.writeable = tables.totals.flags.writeable = False  # cached: shared by every call
    return tables


def _int8_runs(highs: list[int]) -> list[list[int]]:
    """Runs of consecutive genes (indices into ``highs``) whose combined code stays below 128."""
    runs, size = [[0]], highs[0]
    for j in range(1, len(highs)):
        if size * highs[j] < 128:
            runs[-1].append(j)
            size *= highs[j]
        else:
            runs.append([j])
            size = highs[j]
    return runs


def _chunk_parts(space: SearchSpace, tables: _Tables, g: np.ndarray, m: int):
    """Yield ``(rows, parts)`` for each chunk of ``m`` rows of the column-major gene matrix ``g``.

    ``parts`` is ``(1 + max_depth, k)`` intp: the table row of every part of the chunk's ``k`` rows, the
    global part first, then each block slot. Its buffer is reused: use it before asking for the next chunk.
    """
    n, depth, n_block = len(g), space.config.max_depth, space.n_block
    global_rows = flat_code(g, range(space.n_global), space.highs) + tables.global_offset
    context = flat_code(g, CONTEXT_GENES, space.highs).astype(np.intp)
    blocks = g.T[space.n_global:].reshape(depth, n_block, n)  # gene j of slot b: blocks[b, j], a contiguous row
    highs = [int(h) for h in space.highs[space.n_global:space.n_global + n_block]]
    runs = _int8_runs(highs)
    code_type = np.int16 if len(tables.totals) < 2 ** 15 else np.int32  # smaller codes: cheaper arithmetic
    slot_base = tables.slot_base.astype(code_type)
    code, base, run = np.empty((depth, m), code_type), np.empty((depth, m), code_type), np.empty((depth, m), np.int8)
    parts = np.empty((1 + depth, m), dtype=np.intp)
    for start in range(0, n, m):
        k, rows = min(m, n - start), slice(start, start + m)
        # A slot's row is its (width, stage) section's first row plus the row-major code of its six genes,
        # built from runs of genes whose code fits int8 (the cheapest arithmetic), then joined in code_type.
        for i, genes_of_run in enumerate(runs):
            np.copyto(run[:, :k], blocks[:, genes_of_run[0], rows])
            for j in genes_of_run[1:]:
                run[:, :k] *= highs[j]
                run[:, :k] += blocks[:, j, rows]
            if i == 0:
                np.copyto(code[:, :k], run[:, :k])
            else:
                code[:, :k] *= math.prod(highs[j] for j in genes_of_run)
                code[:, :k] += run[:, :k]
        np.add(code[:, :k], slot_base.take(context[rows], axis=1, out=base[:, :k], mode="clip"), out=parts[1:, :k])
        parts[0, :k] = global_rows[rows]
        yield rows, parts[:, :k]


class _ClosedForm:
    """Writes the closed-form columns of chunks of at most ``m`` rows (buffers allocated once, reused)."""

    def __init__(self, tables: _Tables, n_parts: int, m: int):
        self.tables = tables
        self.part_totals = np.empty((n_parts, m, tables.totals.shape[1]), dtype=np.int64)
        self.sums = np.empty((m, tables.totals.shape[1]), dtype=np.int64)
        self.field = np.empty(m, dtype=np.int64)

    def write(self, parts: np.ndarray, out: np.ndarray) -> None:
        """``out[i]``: the ``_CLOSED_FORM`` row of the architecture whose parts are ``parts[:, i]``."""
        k = parts.shape[1]
        totals = self.tables.totals.take(parts, axis=0, out=self.part_totals[:, :k], mode="clip")
        sums, field = totals.sum(axis=0, out=self.sums[:k]), self.field[:k]
        for j, (word, shift, mask) in enumerate(self.tables.fields):
            np.right_shift(sums[:, word], shift, out=field)
            np.bitwise_and(field, mask, out=field)
            if j < 2:  # parameters and FLOPs: their logs, computed in float64 as np.log(int64) does
                np.log(field, out=out[:, j])
            else:
                out[:, j] = field


def _features(space: SearchSpace, genes: np.ndarray, frames: int, with_encoding: bool, with_closed_form: bool,
              extra_columns: int = 0) -> np.ndarray:
    """``(n, n_genes * with_encoding + len(_CLOSED_FORM) * with_closed_form + extra_columns)`` float32: the
    encoding, the closed-form group, then ``extra_columns`` zeros for the caller to fill. With the encoding
    and other columns, the result is a view of wider rows (padded to whole 6-float parts, see above).

    ``genes`` must hold choice indices of the space (as every operator of :class:`SearchSpace` makes);
    an out-of-range gene gives meaningless features, not an error.
    """
    g = np.asarray(genes)
    if g.ndim != 2 or g.shape[1] != space.n_genes:
        raise ValueError(f"gene matrix: expected shape (n, {space.n_genes}), got {g.shape}")
    g = np.asfortranarray(g)  # every gene column contiguous for the column arithmetic
    n, depth, n_block = len(g), space.config.max_depth, space.n_block
    n_encoding, n_closed = (space.n_genes if with_encoding else 0), (len(_CLOSED_FORM) if with_closed_form else 0)
    width, m = n_encoding + n_closed + extra_columns, min(n, _CHUNK)
    if n == 0 or not (with_encoding or with_closed_form):
        return np.zeros((n, width), dtype=np.float32)
    tables = _tables(space.config, int(frames))
    closed_form_writer = _ClosedForm(tables, 1 + depth, m) if with_closed_form else None
    if not with_encoding:
        out = np.zeros((n, width), dtype=np.float32)
        for rows, parts in _chunk_parts(space, tables, g, m):
            closed_form_writer.write(parts, out[rows, :n_closed])
        return out

    # The gather's source: the encoding table, then the tail parts of each chunk row (closed form, zeros).
    n_parts = -(-width // n_block)  # 6-float parts of an output row: the genes' 1 + depth, then the tail's
    n_tail, n_table = n_parts - (1 + depth), len(tables.encoding)
    source = np.zeros((n_table + m * n_tail, n_block), dtype=np.float32)
    source[:n_table] = tables.encoding
    tail = source[n_table:].reshape(m, n_tail * n_block)
    by_row = np.empty((m, n_parts), dtype=np.intp)  # the source row of each part of each output row
    by_row[:, 1 + depth:] = n_table + np.arange(m * n_tail).reshape(m, n_tail)
    padded = np.empty((n, n_parts * n_block), dtype=np.float32)
    for rows, parts in _chunk_parts(space, tables, g, m):
        k = parts.shape[1]
        if with_closed_form:
            closed_form_writer.write(parts, tail[:k, :n_closed])
        np.copyto(by_row[:k, :1 + depth], parts.T)
        source.take(by_row[:k], axis=0, out=padded[rows].reshape(k, n_parts, n_block), mode="clip")
    return padded[:, :width]
