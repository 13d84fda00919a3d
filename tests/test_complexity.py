import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from predictnas.complexity import flops, param_counts, peak_activation_bytes
from predictnas.space import get_space
from predictnas.supernet import Subnet

FRAMES = 203  # odd at every stride-2 layer: exercises the ceil(n / 2) frame counts


@pytest.fixture(scope="module", params=["speech-v1", "speech-tiny"])
def any_space(request):
    return get_space(request.param)


def _measured(space, row, frames):
    """FLOPs torch counts for one forward of the extracted model, and its parameter count."""
    model = Subnet(space.decode(row), space.config).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, frames, space.config.n_mels))
    return counter.get_total_flops(), sum(p.numel() for p in model.parameters())


def test_flops_and_params_match_real_modules_for_20_random_archs(any_space):
    torch.set_num_threads(1)
    genes = any_space.sample(20, np.random.default_rng(11))
    genes[0] = any_space.encode(any_space.covering()[-1])  # deepest, every block kind
    ours_flops, ours_params = flops(any_space, genes, FRAMES), param_counts(any_space, genes)
    measured = np.array([_measured(any_space, row, FRAMES) for row in genes])
    assert np.array_equal(ours_params, measured[:, 1])
    assert np.allclose(ours_flops, measured[:, 0], rtol=0.01)
    assert np.array_equal(np.argsort(ours_flops, kind="stable"), np.argsort(measured[:, 0], kind="stable"))


def test_costs_are_vectorized_and_accept_any_layout(space, rng):
    genes = space.sample(5000, rng)
    for cost in (lambda g: param_counts(space, g), lambda g: flops(space, g, 2401),
                 lambda g: peak_activation_bytes(space, g, 2401)):
        column_major = cost(genes)
        assert column_major.dtype == np.int64 and column_major.shape == (5000,) and (column_major > 0).all()
        assert np.array_equal(cost(np.ascontiguousarray(genes)), column_major)
        assert np.array_equal(cost(genes[7]), column_major[7:8])  # one row


def _with_gene(space, genes, column, value):
    changed = genes.copy()
    changed[:, column] = value
    return changed


def test_peak_memory_grows_with_width_heads_ffn_and_input_length(space, rng):
    genes = space.sample(2000, rng)
    widths = [peak_activation_bytes(space, _with_gene(space, genes, 2, w), 1000) for w in range(space.highs[2])]
    assert all((a <= b).all() for a, b in zip(widths, widths[1:])) and (widths[-1] > widths[0]).all()
    heads_of_first_block = space.n_global  # block 0 always exists
    by_heads = [peak_activation_bytes(space, _with_gene(space, genes, heads_of_first_block, h), 1000)
                for h in range(space.highs[heads_of_first_block])]
    assert all((a <= b).all() for a, b in zip(by_heads, by_heads[1:]))
    # Attention scores are heads x T x T: one max-heads block dominates a long input.
    assert (by_heads[-1] > by_heads[0]).mean() > 0.5
    assert (peak_activation_bytes(space, genes, 500) < peak_activation_bytes(space, genes, 1000)).all()


def test_peak_memory_is_at_least_the_largest_attention_scores(space, rng):
    genes = space.sample(500, rng)
    frames = 2401
    encoder = ((frames + 1) // 2 + 1) // 2
    d = space.decode_values(genes)
    slot = np.arange(space.config.max_depth)[None, :]
    reduced = (d.downsample_after[:, None] > 0) & (slot >= d.downsample_after[:, None])
    t = np.where(reduced, (encoder + 1) // 2, encoder)
    scores_bytes = (4 * 2 * np.where(d.active, d.heads * t * t, 0)).max(axis=1)
    peak = peak_activation_bytes(space, genes, frames)
    assert (peak >= scores_bytes).all() and (peak < 4 * scores_bytes + 50e6).all()


def test_param_counts_equal_the_shipped_latency_tables_weight_counts(space, rng):
    from predictnas.latency.estimate import LatencyEstimator
    from predictnas.latency.table import LatencyTable
    from predictnas.pretrained import tables_dir

    estimator = LatencyEstimator(LatencyTable.load(tables_dir() / "cpu-1t-fp32-d3ed75e4.json"), space)
    genes = space.sample(20_000, rng)
    assert np.array_equal(estimator.raw(genes)[1], param_counts(space, genes))
