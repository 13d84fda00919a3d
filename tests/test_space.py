import itertools
import json
import math

import numpy as np
import pytest

from predictnas.errors import InvalidArchitecture
from predictnas.space import BLOCK_FIELDS, NO_CONV, Arch, SearchSpace, SpaceConfig


def test_round_trip_genes_json_dataclass_for_200_random_architectures(space, rng):
    genes = space.sample(200, rng)
    assert space.validate(genes).all()
    for row in genes:
        arch = space.decode(row)
        assert np.array_equal(space.encode(arch), row)
        text = arch.to_json()
        again = space.from_json(text)
        assert again == arch and hash(again) == hash(arch)
        assert again.to_json() == text and again.arch_id == arch.arch_id
        assert json.loads(text) == arch.to_dict()


def test_arch_id_is_stable_and_distinguishes_architectures(space, rng):
    archs = [space.decode(g) for g in space.sample(500, rng)]
    ids = {a.arch_id for a in archs}
    assert len(ids) == len({a.to_json() for a in archs})
    # The id is a hash of canonical JSON, so it survives key order and whitespace.
    a = archs[0]
    shuffled = json.dumps(dict(reversed(list(a.to_dict().items()))), indent=3)
    assert space.from_json(shuffled).arch_id == a.arch_id


def test_sampling_covers_every_choice_of_every_dimension(space, rng):
    genes = space.sample(20_000, rng)
    meaningful = space.meaningful(genes)
    for col, (name, high) in enumerate(zip(space.gene_names, space.highs)):
        if name.startswith("blocks[") and not name.startswith("blocks[0]"):
            continue
        seen = set(genes[meaningful[:, col], col].tolist())
        assert seen == set(range(high)), name


def test_operators_return_valid_rows_and_change_something(space, rng):
    a, b = space.sample(5000, rng), space.sample(5000, rng)
    mutated = space.mutate(a, rng, rate=0.2)
    child = space.crossover(a, b, rng)
    assert space.validate(mutated).all() and space.validate(child).all()
    assert (mutated != a).any(axis=1).mean() > 0.9
    # a child's genes come from its parents wherever they mean something in the parent it took them from
    from_a_or_b = (child == a) | (child == b)
    assert from_a_or_b.mean() > 0.9


def test_neighbours_change_one_meaningful_gene_to_each_of_its_other_values(space, rng):
    parents = space.sample(20, rng)
    genes, owner = space.neighbours(parents, rng)
    assert space.validate(genes).all() and (genes != parents[owner]).any(axis=1).all()
    meaningful = space.meaningful(parents)
    depth = space.depth_of(parents)
    for i, parent in enumerate(parents):
        mine = genes[owner == i]
        assert len(np.unique(space.row_keys(mine))) == len(mine)  # no row twice for one parent
        for j in np.flatnonzero(meaningful[i]):
            if j == 3:  # depth: the new slots are drawn, so only the depths reached are fixed
                assert set(space.depth_of(mine).tolist()) == set(space.config.depths)
                continue
            same_elsewhere = (np.delete(mine, j, axis=1) == np.delete(parent, j)).all(axis=1)
            high = depth[i] if j == 5 else space.highs[j]
            if j < space.n_global or (j - space.n_global) % space.n_block != 2:
                assert set(mine[same_elsewhere, j].tolist()) == set(range(high)) - {parent[j]}, space.gene_names[j]
    # a conv block's neighbours include dropping its conv module; a block without one gains one, drawn
    assert (space.meaningful(genes).sum(axis=1) != space.meaningful(parents)[owner].sum(axis=1)).any()


def test_crossover_of_a_row_with_itself_is_that_row(space, rng):
    a = space.sample(1000, rng)
    assert np.array_equal(space.crossover(a, a.copy(), rng), a)


def test_validate_rejects_non_canonical_and_out_of_range_rows(space, rng):
    genes = space.sample(300, rng)
    depth = space.depth_of(genes)
    bad = genes.copy()
    shallow = np.flatnonzero(depth < space.config.max_depth)
    last_slot = space.n_global + (space.config.max_depth - 1) * space.n_block
    bad[shallow, last_slot] = 1  # heads gene of a slot beyond the depth
    assert not space.validate(bad[shallow]).any()
    row = genes[shallow[0]].copy()
    row[last_slot] = 1
    assert "blocks[11].heads" in space.explain(row) and "no meaning" in space.explain(row)
    row = genes[0].copy()
    row[2] = 99
    assert not space.validate(row[None])[0] and space.explain(row).startswith("width: gene 99")
    row = genes[0].copy()
    row[5] = depth[0]
    assert not space.validate(row[None])[0] and "downsample_after" in space.explain(row)
    with pytest.raises(InvalidArchitecture, match="downsample_after"):
        space.decode(row)


def test_row_keys_are_equal_for_equal_rows_and_distinct_otherwise(space, rng):
    genes = space.sample(50_000, rng)
    keys = space.row_keys(genes)
    assert np.array_equal(keys, space.row_keys(genes.copy()))
    assert len(np.unique(keys)) == len(np.unique(genes, axis=0))
    # rows one gene apart (each gene of a row set to each of its values) are told apart too: the multiplier
    # hash without mixing put such rows on a few hundred keys when the gene was the last of a word
    row = genes[0]
    variants = np.repeat(row[None], int(space.highs.sum()), axis=0)
    variants[np.arange(len(variants)), np.repeat(np.arange(space.n_genes), space.highs)] = np.concatenate(
        [np.arange(h) for h in space.highs])
    assert len(np.unique(space.row_keys(variants))) == len(np.unique(variants, axis=0))


def test_size_log10_equals_exhaustive_count_on_a_tiny_space():
    tiny = SearchSpace(SpaceConfig(name="tiny", widths=(16,), depths=(1, 2, 3), heads=(1, 2), ffn_dims=(8,),
                                   conv_kernels=(3, 5), dilations=(1,), conv_placements=("after", "parallel"),
                                   frontend_kernels=(3,), frontend_kinds=("full",), connectivities=("linear",)))
    rows = np.array(list(itertools.product(*[range(h) for h in tiny.highs])), dtype=np.int8)
    valid = tiny.validate(rows)
    assert math.isclose(math.log10(valid.sum()), tiny.size_log10())
    # every valid row decodes, and distinct rows are distinct architectures
    assert len({tiny.decode(r) for r in rows[valid]}) == valid.sum()


def test_covering_set_uses_every_choice(space):
    archs = space.covering()
    c = space.config
    assert {a.depth for a in archs} == set(c.depths)
    assert {a.downsample_after for a in archs} == {None, *range(1, c.max_depth)}
    for field, choices in [("frontend_kernel", c.frontend_kernels), ("frontend_kind", c.frontend_kinds),
                           ("width", c.widths), ("connectivity", c.connectivities)]:
        assert {getattr(a, field) for a in archs} == set(choices), field
    blocks = [b for a in archs for b in a.blocks]
    for field, choices in zip(BLOCK_FIELDS, space.block_choices):
        used = {getattr(b, field) for b in blocks if field in ("heads", "ffn_dim", "conv_kind") or b.conv_kind != NO_CONV}
        assert used == set(choices), field


BASE = {"frontend_kernel": 5, "frontend_kind": "full", "width": 128, "connectivity": "linear",
        "downsample_after": None,
        "blocks": [{"heads": 4, "ffn_dim": 256, "conv_kind": "dwsep", "conv_kernel": 15, "dilation": 2,
                    "conv_placement": "after"},
                   {"heads": 2, "ffn_dim": 128, "conv_kind": "none"}]}


def _with(path, value):
    data = json.loads(json.dumps(BASE))
    target = data
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return data


@pytest.mark.parametrize("data, message", [
    (_with(["width"], 100), "width: 100 is not one of 96, 128, 160, 192"),
    (_with(["width"], "128"), 'width: expected an integer, got "128"'),
    (_with(["width"], True), "width: expected an integer, got true"),
    (_with(["blocks", 0, "heads"], 3), "blocks[0].heads: 3 is not one of 1, 2, 4, 8"),
    (_with(["blocks", 0, "conv_kind"], "separable"), "blocks[0].conv_kind: 'separable' is not one of"),
    (_with(["blocks", 1, "dilation"], 2), "blocks[1].dilation: must be null when conv_kind is 'none'"),
    (_with(["blocks", 0, "dilation"], None), "blocks[0].dilation: None is not one of 1, 2, 4"),
    (_with(["blocks", 0, "kernel"], 3), "blocks[0].kernel: unknown field"),
    (_with(["blocks", 0, "heads"], KeyError), "blocks[0].heads: missing"),
    (_with(["downsample_after"], 2), "downsample_after: 2 must be less than the depth (2)"),
    (_with(["downsample_after"], 0), "downsample_after: 0 is not one of 1, 2,"),
    (_with(["blocks"], []), "depth: 0 is not one of 2, 3,"),
    (_with(["blocks"], BASE["blocks"] * 7), "depth: 14 is not one of"),
    (_with(["blocks"], {"a": 1}), "blocks: expected a list"),
    (_with(["frontend_kind"], KeyError), "frontend_kind: missing"),
    ([1, 2], "expected a JSON object, got list"),
])
def test_invalid_architectures_name_the_offending_field(space, data, message):
    with pytest.raises(InvalidArchitecture) as err:
        space.from_json(data)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_bundle_entries_are_accepted(space):
    arch = space.from_json(BASE)
    assert space.from_json({"arch": BASE, "predicted": {"wer": 0.1}}) == arch
    assert isinstance(arch, Arch) and arch.depth == 2


def test_malformed_json_text_is_one_line(space):
    with pytest.raises(InvalidArchitecture, match=r"^arch.json: not valid JSON \(.*line 1"):
        space.from_json('{"width": 128,', source="arch.json")


def test_vectorized_validate_agrees_with_the_per_row_explanation(space, rng):
    genes = np.ascontiguousarray(space.sample(4000, rng))
    corrupt = rng.random(genes.shape) < 0.01
    genes[corrupt] = rng.integers(-2, 13, size=corrupt.sum())
    valid = space.validate(genes)
    assert 0 < valid.sum() < len(genes)
    assert [space.explain(row) is None for row in genes] == valid.tolist()
    assert np.array_equal(space.validate(np.asfortranarray(genes)), valid)
