import numpy as np
import pytest
import torch

from predictnas.complexity import param_counts, param_range
from predictnas.errors import PredictnasError
from predictnas.space import Arch, Block
from predictnas.supernet import Subnet, Supernet, covering_archs, load_subnet, load_supernet, save_subnet, save_supernet
from predictnas.supernet.subnet import Downsample, restore_rate, rotate_positions


def test_extracted_subnets_equal_the_supernet_and_the_closed_form_params_for_200_archs(space, supernet):
    genes = space.sample(200, np.random.default_rng(7))
    expected_params = param_counts(space, genes)
    features = torch.randn(2, 67, space.config.n_mels, generator=torch.Generator().manual_seed(0))
    lengths = torch.tensor([67, 41])
    worst = 0.0
    with torch.no_grad():
        for row, n_params in zip(genes, expected_params):
            arch = space.decode(row)
            sliced = supernet(features, arch, lengths)
            subnet = supernet.extract(arch)
            assert isinstance(subnet, Subnet) and not any(isinstance(m, Supernet) for m in subnet.modules())
            alone = subnet(features, lengths)
            worst = max(worst, (sliced.ctc_logits - alone.ctc_logits).abs().max().item(),
                        (sliced.intent_logits - alone.intent_logits).abs().max().item())
            assert torch.equal(sliced.lengths, alone.lengths)
            assert sum(p.numel() for p in subnet.parameters()) == n_params
    assert worst <= 1e-5


def test_extracted_weights_are_copies_not_views(space, supernet):
    arch = space.covering()[3]
    subnet = supernet.extract(arch)
    name, param = next(iter(subnet.named_parameters()))
    with torch.no_grad():
        param.add_(1.0)
    assert not torch.equal(param, supernet.subnet_weights(arch)[name])


def test_small_kernels_use_the_learned_transform_of_the_centre(space, supernet):
    arch = next(a for a in space.covering() if any(b.conv_kind == "dwsep" and b.conv_kernel == 7 for b in a.blocks))
    i = next(i for i, b in enumerate(arch.blocks) if b.conv_kind == "dwsep" and b.conv_kernel == 7)
    weight = supernet.extract(arch).blocks[i].conv.depthwise.weight
    full = supernet.shared[f"blocks/{i}/conv/depthwise/weight"][: arch.width]
    t15, t7 = (supernet.kernel_transforms[f"blocks/{i}/conv/depthwise/weight/{k}"] for k in (15, 7))
    expected = (full[:, :, 8:23] @ t15)[:, :, 4:11] @ t7
    assert torch.allclose(weight, expected)
    assert not torch.allclose(weight, full[:, :, 12:19])  # not a plain centre crop


def test_padding_does_not_change_any_sequence_of_a_batch(space, supernet):
    """A padded batch gives each sequence exactly what it gets alone, whatever the padding holds."""
    generator = torch.Generator().manual_seed(3)
    lengths = torch.tensor([90, 77, 45])
    batch = torch.randn(3, 90, space.config.n_mels, generator=generator) * 5  # junk beyond each length
    with torch.no_grad():
        for arch in space.covering():
            out = supernet(batch, arch, lengths)
            for b, n in enumerate(lengths.tolist()):
                alone = supernet(batch[b:b + 1, :n], arch)
                frames = alone.ctc_logits.shape[1]
                assert out.lengths[b] == frames
                assert torch.allclose(out.ctc_logits[b, :frames], alone.ctc_logits[0], atol=1e-4)
                assert torch.allclose(out.intent_logits[b], alone.intent_logits[0], atol=1e-4)


def test_gradients_reach_the_shared_weights_and_kernel_transforms(space):
    torch.manual_seed(0)
    net = Supernet(space.config).perturb_neutral_parts().train()  # a zero downsampling correction passes no gradient
    arch = next(a for a in space.covering() if a.connectivity == "dense" and a.downsample_after)
    out = net(torch.randn(2, 64, space.config.n_mels), arch)
    (out.ctc_logits.square().mean() + out.intent_logits.square().mean()).backward()
    used = supernet_names_used(arch, space)
    for name, p in net.shared.items():
        assert (p.grad is not None and p.grad.abs().sum() > 0) == (name in used), name
    assert any(t.grad is not None and t.grad.abs().sum() > 0 for t in net.kernel_transforms.values())


def supernet_names_used(arch: Arch, space) -> set[str]:
    with torch.device("meta"):
        return {name.replace(".", "/") for name, _ in Subnet(arch, space.config).named_parameters()}


def test_rotary_positions_make_attention_scores_depend_on_relative_position_only():
    generator = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 24, generator=generator), torch.randn(2, 24, generator=generator)

    def score(i: int, j: int) -> float:
        frames = torch.zeros(2, 1, 40, 24)
        frames[0, 0, i], frames[1, 0, j] = q[0], k[0]
        rotated = rotate_positions(frames)
        return float(rotated[0, 0, i] @ rotated[1, 0, j])

    assert score(3, 7) == pytest.approx(score(20, 24), abs=1e-5)
    assert score(3, 7) == pytest.approx(score(11, 7 + 8), abs=1e-5)
    assert score(3, 7) != pytest.approx(score(3, 9), abs=1e-3)  # the offset itself matters
    assert score(5, 5) == pytest.approx(float(q[0] @ k[0]), abs=1e-5)


def test_a_fresh_downsampling_averages_valid_frame_pairs_and_the_restore_adds_only_changes():
    torch.manual_seed(0)
    x = torch.randn(2, 8, 32)
    x[1, 5:] = 0  # the second sequence has 5 valid frames; padding is zero in the trunk
    low, lengths = Downsample(32)(x, torch.tensor([8, 5]))
    assert lengths.tolist() == [4, 3]
    assert torch.allclose(low[0], (x[0, 0::2] + x[0, 1::2]) / 2, atol=1e-6)
    assert torch.allclose(low[1, :2], (x[1, 0:4:2] + x[1, 1:4:2]) / 2, atol=1e-6)
    assert torch.allclose(low[1, 2], x[1, 4], atol=1e-6)  # a last odd frame is its own mean
    assert torch.equal(restore_rate(low, low, x), x)  # blocks that change nothing leave the state as it was
    change = torch.randn(2, 4, 32)
    assert torch.allclose(restore_rate(low + change, low, x), x + change.repeat_interleave(2, dim=1), atol=1e-6)


def test_supernet_holds_the_largest_shape_of_every_parameter(space):
    with torch.device("meta"):
        net = Supernet(space.config)
    for arch in covering_archs(space.config):
        with torch.device("meta"):
            for name, p in Subnet(arch, space.config).named_parameters():
                shared = net.shared[name.replace(".", "/")]
                assert shared.ndim == p.ndim and all(s >= n for s, n in zip(shared.shape, p.shape)), name


def test_param_range_is_reached_and_bounds_random_architectures(space, rng):
    c = space.config
    block = Block(max(c.heads), max(c.ffn_dims), "grouped", max(c.conv_kernels), 1, "after")
    largest = Arch(max(c.frontend_kernels), "full", max(c.widths), "dense", 1, (block,) * c.max_depth)
    smallest = Arch(min(c.frontend_kernels), "dwsep", min(c.widths), "linear", None,
                    (Block(min(c.heads), min(c.ffn_dims), "none"),) * min(c.depths))
    low, high = param_range(space)
    assert param_counts(space, np.stack([space.encode(smallest), space.encode(largest)])).tolist() == [low, high]
    counts = param_counts(space, space.sample(100_000, rng))
    assert low <= counts.min() and counts.max() <= high


def test_save_and_load_round_trip(tmp_path, space, supernet):
    path = tmp_path / "supernet.pt"
    save_supernet(supernet, path)
    loaded = load_supernet(path).eval()
    arch = space.covering()[5]
    x = torch.randn(1, 50, space.config.n_mels)
    with torch.no_grad():
        assert torch.equal(loaded(x, arch).ctc_logits, supernet(x, arch).ctc_logits)
    assert [p.name for p in tmp_path.iterdir()] == ["supernet.pt"]  # no temp files left


def test_loading_something_else_is_a_one_line_error(tmp_path):
    bad = tmp_path / "supernet.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(PredictnasError, match="not a predictnas supernet checkpoint"):
        load_supernet(bad)


def test_weights_of_another_model_version_are_a_one_line_error(tmp_path, supernet):
    path = tmp_path / "supernet.pt"
    save_supernet(supernet, path)
    state = torch.load(path, weights_only=True)
    del state["weights"]["shared.frontend/conv_norm/weight"]  # as saved before the front-end had its norm
    torch.save(state, path)
    with pytest.raises(PredictnasError, match="do not fit this version's supernet"):
        load_supernet(path)


def test_weights_saved_by_a_model_version_that_computed_otherwise_are_refused(tmp_path, supernet):
    # the same parameter names, but saved before the attention had rotary positions: loading them would
    # run the old weights through another function without a word
    path = tmp_path / "supernet.pt"
    save_supernet(supernet, path)
    state = torch.load(path, weights_only=True)
    del state["model_version"]
    torch.save(state, path)
    with pytest.raises(PredictnasError, match="weights of model version 1, but this predictnas computes version 2"):
        load_supernet(path)
    subnet_path = tmp_path / "model.pt"
    save_subnet(supernet.extract(next(iter(covering_archs(supernet.space)))), subnet_path)
    assert load_subnet(subnet_path).arch == covering_archs(supernet.space)[0]
    state = torch.load(subnet_path, weights_only=True)
    state["model_version"] = 1
    torch.save(state, subnet_path)
    with pytest.raises(PredictnasError, match="model version 1"):
        load_subnet(subnet_path)
