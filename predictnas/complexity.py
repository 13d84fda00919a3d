"""Closed-form costs of architectures, vectorized over gene matrices: parameters, FLOPs, peak activations.

The formulas mirror the layers of :mod:`predictnas.supernet.subnet`; tests check parameters and FLOPs
against real extracted modules (parameter counts exactly, FLOPs against torch's ``FlopCounterMode``).

How a cost is computed. Every cost here splits into a part that depends only on the six global genes
(front-end, downsampling, heads, dense skips) and one part per block slot that depends on the width, the
frame rate the slot runs at ("stage") and the slot's own genes. The formulas are evaluated once per
space (and input length) over every combination of those genes, filling two small dense tables; scoring a
gene matrix is then index arithmetic over gene columns and one gather per block slot, with no Python loop
over rows (:mod:`predictnas.gene_tables`, the engine the latency estimator uses too).
"""

from __future__ import annotations

import functools
from typing import Callable

import numpy as np

from .frames import Frames
from .gene_tables import (CONTEXT_GENES, INACTIVE, REDUCED, GeneTables, block_grid, context_shape, global_grid,
                          index_grid, slot_base, slot_stages)
from .space import BLOCK_FIELDS, GLOBAL_FIELDS, WIDTH_GENE, Arch, SearchSpace, SpaceConfig

BYTES_PER_FLOAT = 4


# ---- the formulas, over arrays of choice values --------------------------------------------------------
# Arguments are broadcastable int64 arrays of choice *values* (width 128, kernel 7, ...); ``kind`` is an
# index into ``SpaceConfig.conv_kinds``; ``t`` is the frame count the block runs at.


def _linear(n_in, n_out):
    return n_in * n_out + n_out


def _norm(width):
    return 2 * width


def _block_params(c: SpaceConfig, w, t, heads, ffn, kind, kernel, placement):
    inner = heads * c.head_dim
    attention = _norm(w) + 3 * _linear(w, inner) + _linear(inner, w)
    feed_forward = _norm(w) + _linear(w, ffn) + _linear(ffn, w)
    grouped = kind == c.conv_kinds.index("grouped") if "grouped" in c.conv_kinds else False
    conv_weights = np.where(grouped, c.group_size, 1) * w * kernel + w
    conv = np.where(kind == c.conv_kinds.index("none"), 0, 2 * _norm(w) + 3 * _linear(w, w) + conv_weights)
    return attention + feed_forward + conv


def _global_params(c: SpaceConfig, f: Frames, kernel, dwsep, w, depth, dense, downsample_after):
    m = c.n_mels
    full_frontend = (w * m * kernel + w) + (w * w * kernel + w) + _norm(w)
    dwsep_frontend = (m * kernel + m) + _linear(m, w) + (w * kernel + w) + _linear(w, w) + _norm(w)
    total = np.where(dwsep, dwsep_frontend, full_frontend)
    has_downsample = downsample_after > 0
    first_stage = np.where(has_downsample, downsample_after, depth)
    second_stage = depth - first_stage
    skip_weights = (first_stage * (first_stage - 1) + second_stage * (second_stage - 1)) // 2
    total += np.where(dense, skip_weights, 0)
    total += np.where(has_downsample, (3 * w + w) + _linear(w, w), 0)
    return total + _norm(w) + _linear(w, c.vocab_size) + _linear(w, c.n_intents)


# FLOPs are 2 x the multiply-accumulates of the linear, convolution and attention-matmul layers (biases,
# norms, activations, softmax and residual adds are not counted), as torch's FlopCounterMode counts them.


def _block_flops(c: SpaceConfig, w, t, heads, ffn, kind, kernel, placement):
    inner = heads * c.head_dim
    attention = 2 * t * (3 * w * inner + inner * w) + 2 * 2 * t * t * inner  # projections; scores and context
    feed_forward = 2 * t * 2 * w * ffn
    grouped = kind == c.conv_kinds.index("grouped") if "grouped" in c.conv_kinds else False
    taps = np.where(grouped, c.group_size, 1) * kernel  # inputs per output channel of the conv
    conv = np.where(kind == c.conv_kinds.index("none"), 0, 2 * t * (3 * w * w + w * taps))
    return attention + feed_forward + conv


def _global_flops(c: SpaceConfig, f: Frames, kernel, dwsep, w, depth, dense, downsample_after):
    m = c.n_mels
    full_frontend = 2 * (f.first * w * m * kernel + f.encoder * w * w * kernel)
    dwsep_frontend = 2 * (f.first * m * (kernel + w) + f.encoder * w * (kernel + w))
    total = np.where(dwsep, dwsep_frontend, full_frontend)
    total += np.where(downsample_after > 0, 2 * f.reduced * w * (3 + w), 0)  # depthwise k=3 + pointwise
    return total + 2 * f.encoder * w * c.vocab_size + 2 * w * c.n_intents  # CTC head per frame, intent pooled


# Peak activations: floats live at once, see :func:`peak_activation_bytes` for the model.


def _block_working_floats(c: SpaceConfig, w, t, heads, ffn, kind, kernel, placement):
    inner = heads * c.head_dim
    attention = t * w + 6 * t * inner + 2 * heads * t * t  # norm; q, k, v, rotated q and k, context; scores, softmax
    has_conv = kind != c.conv_kinds.index("none")
    parallel = has_conv & (placement == c.conv_placements.index("parallel"))
    conv = np.where(has_conv, 4 * t * w, 0) + np.where(parallel, t * w, 0)  # norm, value, gate, sigmoid
    feed_forward = t * w + 2 * t * ffn  # norm, up, activation
    return t * w + np.maximum(np.maximum(attention, conv), feed_forward)  # + the residual sum being formed


def _global_peak_floats(c: SpaceConfig, f: Frames, kernel, dwsep, w, depth, dense, downsample_after):
    frontend = f.input * c.n_mels + np.where(dwsep, f.first * c.n_mels, 0) + 2 * f.first * w
    has_downsample = downsample_after > 0
    downsample = np.where(has_downsample, f.encoder * w + 2 * f.reduced * w, 0)  # skip kept for the upsample
    heads = 2 * f.encoder * w + f.encoder * c.vocab_size  # trunk, its norm, CTC logits
    # low-rate end and start, their difference; upsampled + skip + their sum
    restore = np.where(has_downsample, 3 * f.encoder * w + 3 * f.reduced * w, 0)
    return np.maximum(np.maximum(frontend, downsample), np.maximum(heads, restore))


def _slot_carried_floats(f: Frames, w, stage, states):
    """Tensors a block slot cannot free: its input, with dense connectivity the earlier states of its stage
    (``states`` of them), and in the reduced stage the full-rate skip and the low-rate start kept for the
    restore."""
    t = np.where(stage == REDUCED, f.reduced, f.encoder)
    carried = (1 + states) * t * w + np.where(stage == REDUCED, f.encoder * w + f.reduced * w, 0)
    return np.where(stage == INACTIVE, 0, carried)


# ---- tables: the formulas over every gene combination --------------------------------------------------


BlockFormula = Callable[..., np.ndarray]
GlobalFormula = Callable[..., np.ndarray]


def _build_tables(space: SearchSpace, frames: int, block_formula: BlockFormula, global_formula: GlobalFormula,
                  combine: np.ufunc, carried: bool = False) -> GeneTables:
    c = space.config
    f = Frames.of(frames)
    value = lambda choices, index: np.asarray(choices, dtype=np.int64)[index]  # noqa: E731

    g = global_grid(space)
    global_cost = global_formula(
        c, f, value(c.frontend_kernels, g[0]), g[1] == c.frontend_kinds.index("dwsep"), value(c.widths, g[2]),
        value(c.depths, g[3]), g[4] == c.connectivities.index("dense") if "dense" in c.connectivities else False,
        g[5])

    w, stage, heads, ffn, kind, kernel, _dilation, placement = block_grid(space)
    t = np.where(stage == REDUCED, f.reduced, f.encoder)
    block_cost = block_formula(c, value(c.widths, w), t, value(c.heads, heads), value(c.ffn_dims, ffn), kind,
                               value(c.conv_kernels, kernel), placement)
    block_cost = np.where(stage == INACTIVE, 0, block_cost).astype(np.int64)

    slot_stage, slot_states = slot_stages(space)
    extra = None
    if carried:
        width_of_context = index_grid(*context_shape(space))[CONTEXT_GENES.index(WIDTH_GENE)]
        extra = _slot_carried_floats(f, value(c.widths, width_of_context)[None, :], slot_stage, slot_states)
    return GeneTables(global_cost.astype(np.int64), block_cost, slot_base(space, slot_stage), extra, combine)


@functools.lru_cache(maxsize=16)
def cost_tables(config: SpaceConfig, frames: int, cost: str) -> GeneTables:
    """The tables of ``cost`` ("params", "flops" or "peak" floats) for inputs of ``frames`` frames, cached
    (the predictor's feature builder gathers from the same tables)."""
    space = SearchSpace(config)
    if cost == "params":
        return _build_tables(space, 1, _block_params, _global_params, np.add)
    if cost == "flops":
        return _build_tables(space, frames, _block_flops, _global_flops, np.add)
    return _build_tables(space, frames, _block_working_floats, _global_peak_floats, np.maximum, carried=True)


# ---- public costs --------------------------------------------------------------------------------------


def param_counts(space: SearchSpace, genes: np.ndarray) -> np.ndarray:
    """Number of parameters of each row's model (int64), with no Python loop over rows."""
    return cost_tables(space.config, 1, "params").evaluate(space, genes)


def flops(space: SearchSpace, genes: np.ndarray, frames: int) -> np.ndarray:
    """FLOPs (int64) of one batch-1 forward pass of each row's model on ``frames`` feature frames (100 fps).

    FLOPs are 2 x the multiply-accumulates of every linear, convolution and attention matmul (the
    ``T x T`` scores and the context), layer by layer as :class:`~predictnas.supernet.subnet.Subnet` runs
    them: the front-end's two stride-2 convs, each block's attention, conv module and feed-forward, the
    mid-encoder downsampling, and the CTC (per frame) and intent (pooled) heads. Elementwise work (biases,
    norms, activations, softmax, residual and dense-skip adds) is not counted, as in torch's
    ``FlopCounterMode``.
    """
    return cost_tables(space.config, int(frames), "flops").evaluate(space, genes)


def peak_activation_bytes(space: SearchSpace, genes: np.ndarray, frames: int) -> np.ndarray:
    """Approximate peak float32 activation memory (bytes, int64) of a batch-1 forward on ``frames`` frames.

    A closed-form approximation, not a trace of an allocator: the peak is the largest, over the stages of
    the forward pass, of the tensors that are live together, where ``T`` is the stage's frame count, ``W``
    the width, ``I = heads * head_dim`` and ``F`` the FFN dim:

    * front-end: the input features, the first conv's output and its activation (dwsep: + the depthwise
      output);
    * each block: the tensors it cannot free -- its input, with dense connectivity every earlier state of
      its stage (later blocks read them), in the reduced stage the full-rate skip and the low-rate start
      kept for the restore --
      plus the residual sum being formed, plus the largest working set of its modules: attention
      ``T*W + 6*T*I + 2*heads*T*T`` (norm; q, k, v, rotated q and k, context; scores, softmax), conv module
      ``4*T*W`` (+ ``T*W`` when parallel to attention, whose output waits), feed-forward ``T*W + 2*T*F``;
    * downsampling (skip + two reduced-rate tensors), the restore (low-rate end, start and their
      difference; upsampled + skip + sum) and the heads
      (trunk, its norm, the CTC logits).

    Weights are not included. It grows with width, heads, FFN dim and input length: an estimate to rank
    architectures and to enforce soft memory budgets, not an allocator trace.
    """
    return cost_tables(space.config, int(frames), "peak").evaluate(space, genes) * BYTES_PER_FLOAT


def param_range(space: SearchSpace) -> tuple[int, int]:
    """The smallest and largest parameter counts in the space.

    Parameters add up over parts, so the extremes are reached by architectures whose blocks all share
    one configuration; enumerating those (every global choice x every block configuration) is exact.
    Dilation and placement do not change the count and stay at choice 0.
    """
    c = space.config
    global_grid = np.array(list(np.ndindex(*(len(ch) for ch in space.global_choices[:5]), 2)), dtype=np.int8)
    block_grid = np.array(list(np.ndindex(len(c.heads), len(c.ffn_dims), len(c.conv_kinds), len(c.conv_kernels))),
                          dtype=np.int8)
    n_g, n_b = len(global_grid), len(block_grid)
    genes = np.zeros((n_g * n_b, space.n_genes), dtype=np.int8)
    genes[:, :6] = np.repeat(global_grid, n_b, axis=0)  # last column: downsample after block 1, or not
    blocks = genes[:, space.n_global:].reshape(len(genes), c.max_depth, space.n_block)
    blocks[:, :, :4] = np.tile(block_grid, (n_g, 1))[:, None, :]
    genes = genes[space.depth_of(genes) > genes[:, 5]]
    genes[~space.meaningful(genes)] = 0
    counts = param_counts(space, genes)
    return int(counts.min()), int(counts.max())


def param_count(space: SearchSpace, arch: Arch) -> int:
    """The parameters of one architecture."""
    return int(param_counts(space, space.encode(arch)[None])[0])


def describe_space(space: SearchSpace) -> dict:
    """Every dimension with its choices, what is fixed, the number of architectures and the parameter range
    (``predictnas space --json``)."""
    c = space.config
    low, high = param_range(space)
    return {
        "space": c.name,
        "dimensions": {
            **{name: {"scope": "global", "choices": list(ch)} for name, ch in zip(GLOBAL_FIELDS, space.global_choices)},
            **{name: {"scope": "per block", "choices": list(ch)} for name, ch in zip(BLOCK_FIELDS, space.block_choices)},
        },
        "fixed": {"n_mels": c.n_mels, "vocab_size": c.vocab_size, "n_intents": c.n_intents,
                  "head_dim": c.head_dim, "group_size": c.group_size, "frontend_subsampling": 4},
        "genes": space.n_genes,
        "architectures_log10": round(space.size_log10(), 2),
        "params": {"min": low, "max": high},
    }
