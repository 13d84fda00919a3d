"""Row gathers, scatters and concatenations that keep gene matrices column-major.

The space's operators and the latency estimator work gene column by gene column, so populations are
kept column-major (``order="F"``). numpy's fancy indexing of rows returns a row-major copy and is slow on
column-major input; the same operations on the transpose (row-major, one row per gene) are single numpy
calls that gather along contiguous gene rows and give back a column-major matrix.
"""

from __future__ import annotations

import numpy as np


def take_rows(genes: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``genes[index]`` (integer index or boolean mask) as a column-major matrix."""
    index = np.asarray(index)
    if index.dtype == bool:
        index = np.flatnonzero(index)
    return genes.T.take(index, axis=1).T


def put_rows(genes: np.ndarray, index: np.ndarray, rows: np.ndarray) -> None:
    """``genes[index] = rows`` in place."""
    genes.T[:, index] = rows.T


def concat_rows(parts: list[np.ndarray]) -> np.ndarray:
    """Rows of ``parts`` stacked, column-major."""
    return np.concatenate([p.T for p in parts], axis=1).T
