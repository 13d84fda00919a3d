"""Closed-form costs of architectures, vectorized over gene matrices.

The formulas mirror the layers of :mod:`predictnas.supernet.subnet`; a test checks them against the
parameter count of real extracted modules for hundreds of random architectures.
"""

from __future__ import annotations

import numpy as np

from .space import SearchSpace


def _linear(n_in, n_out):
    return n_in * n_out + n_out


def _norm(width):
    return 2 * width


def param_counts(space: SearchSpace, genes: np.ndarray) -> np.ndarray:
    """Number of parameters of each row's model (int64), with no Python loop over rows."""
    c = space.config
    d = space.decode_values(np.atleast_2d(genes))
    w, m = d.width.astype(np.int64), c.n_mels
    k = d.frontend_kernel
    full_frontend = (w * m * k + w) + (w * w * k + w)
    dwsep_frontend = (m * k + m) + _linear(m, w) + (w * k + w) + _linear(w, w)
    total = np.where(d.frontend_dwsep, dwsep_frontend, full_frontend)

    wb = w[:, None]
    inner = d.heads.astype(np.int64) * c.head_dim
    attention = _norm(wb) + 3 * _linear(wb, inner) + _linear(inner, wb)
    ffn = _norm(wb) + _linear(wb, d.ffn_dim) + _linear(d.ffn_dim, wb)
    kind = np.asarray(c.conv_kinds)[d.conv_kind]
    conv_weights = np.where(kind == "grouped", c.group_size, 1) * wb * d.conv_kernel + wb
    conv = np.where(kind == "none", 0, 2 * _norm(wb) + 3 * _linear(wb, wb) + conv_weights)
    block = attention + ffn + conv + _norm(wb)
    total += (block * d.active).sum(axis=1)

    has_downsample = d.downsample_after > 0
    first_stage = np.where(has_downsample, d.downsample_after, d.depth).astype(np.int64)
    second_stage = d.depth - first_stage
    skips = (first_stage * (first_stage - 1) + second_stage * (second_stage - 1)) // 2
    total += np.where(d.dense, skips, 0)
    total += np.where(has_downsample, (3 * w + w) + _linear(w, w), 0)
    total += _norm(w) + _linear(w, c.vocab_size) + _linear(w, c.n_intents)
    return total


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
