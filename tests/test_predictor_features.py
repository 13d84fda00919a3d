"""The predictor's feature matrix against an independent computation, architecture by architecture.

The vectorized features are table gathers over gene codes (see :mod:`predictnas.predictor.features`); the
reference here reads each decoded :class:`Arch` directly. Saved predictors depend on the exact values and
column order, so the checks are exact equality of the float32 output.
"""

import numpy as np
import pytest

from predictnas.complexity import flops, param_counts
from predictnas.predictor import FeatureSpec
from predictnas.predictor.features import REFERENCE_FRAMES, closed_form, encoding
from predictnas.predictor.proxies import PROXIES
from predictnas.space import NO_CONV, get_space


@pytest.fixture(scope="module", params=["speech-v1", "speech-tiny"])
def any_space(request):
    return get_space(request.param)


@pytest.fixture(scope="module")
def genes(any_space):
    """2,000 random rows and the covering architectures, column-major as the operators make them."""
    covering = np.array([any_space.encode(a) for a in any_space.covering()])
    return np.asfortranarray(np.concatenate([any_space.sample(2000, np.random.default_rng(5)), covering]))


def _reference(space, row) -> tuple[list[float], list[float]]:
    """The encoding and the closed-form totals (all but the logs) of one row, from its decoded ``Arch``."""
    c, arch = space.config, space.decode(row)
    ds = arch.downsample_after or 0
    row_encoding = [arch.frontend_kernel, arch.frontend_kind == "dwsep", arch.width, arch.depth,
                    arch.connectivity == "dense", ds]
    heads = ffn = dwsep = grouped = receptive = 0
    for b in range(c.max_depth):
        if b >= arch.depth:
            row_encoding += [0] * 6
            continue
        block = arch.blocks[b]
        heads, ffn = heads + block.heads, ffn + block.ffn_dim
        if block.conv_kind == NO_CONV:
            row_encoding += [block.heads, block.ffn_dim, 0, 0, 0, 0]
            continue
        row_encoding += [block.heads, block.ffn_dim, c.conv_kinds.index(block.conv_kind) + 1, block.conv_kernel,
                         block.dilation, c.conv_placements.index(block.conv_placement) + 1]
        dwsep, grouped = dwsep + (block.conv_kind == "dwsep"), grouped + (block.conv_kind == "grouped")
        rate = 2 if ds and b >= ds else 1  # blocks after the downsampling run at half the frame rate
        receptive += (block.conv_kernel - 1) * block.dilation * rate
    downsampled = arch.depth - ds if ds else 0
    return row_encoding, [arch.depth, heads, ffn, dwsep, grouped, receptive, downsampled]


def test_features_equal_a_per_architecture_computation(any_space, genes):
    expected = [_reference(any_space, row) for row in genes]
    assert np.array_equal(encoding(any_space, genes), np.array([e for e, _ in expected], dtype=np.float32))
    cf = closed_form(any_space, genes)
    assert cf.dtype == np.float32 and cf.shape == (len(genes), 9)
    assert np.array_equal(cf[:, 2:], np.array([t for _, t in expected], dtype=np.float32))
    log_params = np.log(param_counts(any_space, genes).astype(np.float64)).astype(np.float32)
    log_flops = np.log(flops(any_space, genes, REFERENCE_FRAMES).astype(np.float64)).astype(np.float32)
    assert np.array_equal(cf[:, 0], log_params) and np.array_equal(cf[:, 1], log_flops)
    log_flops_1001 = np.log(flops(any_space, genes, 1001).astype(np.float64)).astype(np.float32)
    assert np.array_equal(closed_form(any_space, genes, 1001)[:, 1], log_flops_1001)


def test_matrix_is_the_groups_side_by_side_in_any_layout_and_chunking(any_space, genes):
    spec = FeatureSpec(("encoding", "closed_form"), any_space.config)
    x = spec.matrix(any_space, genes)
    assert x.shape == (len(genes), len(spec.names(any_space))) and x.dtype == np.float32
    assert np.array_equal(x, np.concatenate([encoding(any_space, genes), closed_form(any_space, genes)], axis=1))
    assert np.array_equal(spec.matrix(any_space, np.ascontiguousarray(genes)), x)
    many = np.concatenate([any_space.sample(20_000, np.random.default_rng(6)), genes])  # several chunks, a short last
    assert np.array_equal(spec.matrix(any_space, many)[-len(genes):], x)
    assert np.array_equal(closed_form(any_space, genes), x[:, any_space.n_genes:])
    assert spec.matrix(any_space, genes[:0]).shape == (0, x.shape[1])
    assert np.array_equal(spec.matrix(any_space, genes[5:6]), x[5:6])


def test_matrix_puts_proxy_scores_last(any_space, genes):
    spec = FeatureSpec(("encoding", "closed_form", "proxies"), any_space.config)
    rows = genes[:40]
    proxies = [{name: i + j / 8 for j, name in enumerate(PROXIES)} for i in range(len(rows))]
    proxies[3] = {}  # a missing score is NaN
    x = spec.matrix(any_space, rows, proxies)
    assert x.shape == (len(rows), len(spec.names(any_space)))
    scores = np.array([[p.get(name, np.nan) for name in PROXIES] for p in proxies], dtype=np.float32)
    assert np.array_equal(x[:, -len(PROXIES):], scores, equal_nan=True)
    assert np.array_equal(x[:, :-len(PROXIES)], FeatureSpec(("encoding", "closed_form"), any_space.config)
                          .matrix(any_space, rows))
    only_proxies = FeatureSpec(("proxies",), any_space.config).matrix(any_space, rows, proxies)
    assert np.array_equal(only_proxies, scores, equal_nan=True)
    no_closed_form = FeatureSpec(("encoding", "proxies"), any_space.config).matrix(any_space, rows, proxies)
    assert np.array_equal(no_closed_form, np.concatenate([encoding(any_space, rows), scores], axis=1), equal_nan=True)


def test_a_wrongly_shaped_gene_matrix_is_an_error(space):
    with pytest.raises(ValueError, match="expected shape"):
        encoding(space, np.zeros((3, space.n_genes - 1), dtype=np.int8))
