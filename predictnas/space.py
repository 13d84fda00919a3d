"""The search space: architectures as frozen dataclasses, canonical JSON and fixed-length gene vectors.

An :class:`Arch` fully defines one speech model of the space (with the :class:`SpaceConfig` that fixes
the input features and task heads). The same architecture has three equal forms:

* the frozen dataclass ``Arch`` (hashable, used by the model code),
* its canonical JSON (sorted keys, ``arch_id`` is a hash of it),
* a fixed-length ``int8`` gene vector of choice indices, used by the vectorized operators.

Gene layout: six global genes, then six genes for each of ``max_depth`` block slots::

    frontend_kernel frontend_kind width depth connectivity downsample_after | heads ffn_dim conv_kind
    conv_kernel dilation conv_placement | ... (one group per block slot)

Gene matrices are ``(n, n_genes)`` arrays, one row per architecture. The operators create them
column-major (``order="F"``), so the per-gene work of the vectorized operators reads contiguous memory;
any layout is accepted.

A gene row is *canonical* when every gene that has no meaning is 0: block slots at or beyond the
depth, and the kernel, dilation and placement of a block whose conv kind is ``none``. Only canonical
rows are valid, so one architecture has exactly one gene row and duplicates can be found by row.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

import numpy as np

from .errors import InvalidArchitecture

GLOBAL_FIELDS = ("frontend_kernel", "frontend_kind", "width", "depth", "connectivity", "downsample_after")
BLOCK_FIELDS = ("heads", "ffn_dim", "conv_kind", "conv_kernel", "dilation", "conv_placement")
CONV_FIELDS = ("conv_kernel", "dilation", "conv_placement")  # meaningless when conv_kind is "none"
NO_CONV = "none"
# gene columns of the global choices a vectorized operation reads (the blocks follow, len(BLOCK_FIELDS) each)
WIDTH_GENE, DEPTH_GENE, CONNECTIVITY_GENE, DOWNSAMPLE_GENE = (
    GLOBAL_FIELDS.index(f) for f in ("width", "depth", "connectivity", "downsample_after"))


@dataclass(frozen=True)
class Block:
    """One encoder block: attention, an optional convolution module and a feed-forward module."""

    heads: int
    ffn_dim: int
    conv_kind: str  # "dwsep" (depthwise-separable), "grouped" or "none"
    conv_kernel: int | None = None
    dilation: int | None = None
    conv_placement: str | None = None  # "before" / "after" attention, or "parallel" to it


@dataclass(frozen=True)
class Arch:
    """One architecture of the space. Depth is ``len(blocks)``.

    ``downsample_after=j`` halves the frame rate after block ``j`` (1-based) and restores it before the
    heads; ``None`` keeps the front-end's rate throughout.
    """

    frontend_kernel: int
    frontend_kind: str  # "full" or "dwsep"
    width: int
    connectivity: str  # "linear" or "dense"
    downsample_after: int | None
    blocks: tuple[Block, ...]

    @property
    def depth(self) -> int:
        return len(self.blocks)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["blocks"] = [asdict(b) for b in self.blocks]
        return d

    def to_json(self) -> str:
        """Canonical JSON: sorted keys, no whitespace. Equal architectures give equal strings."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @property
    def arch_id(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]


@dataclass(frozen=True)
class SpaceConfig:
    """The choices of every searchable dimension, and the fixed input and output sizes of the models."""

    name: str = "speech-v1"
    n_mels: int = 80
    vocab_size: int = 29  # CTC blank + space + apostrophe + a-z
    n_intents: int = 24
    head_dim: int = 24  # attention heads are sliced whole: inner dim = heads * head_dim
    group_size: int = 16  # channels per group of the grouped conv
    frontend_kernels: tuple[int, ...] = (3, 5, 7)
    frontend_kinds: tuple[str, ...] = ("full", "dwsep")
    widths: tuple[int, ...] = (96, 128, 160, 192)
    depths: tuple[int, ...] = tuple(range(2, 13))
    connectivities: tuple[str, ...] = ("linear", "dense")
    heads: tuple[int, ...] = (1, 2, 4, 8)
    ffn_dims: tuple[int, ...] = (128, 256, 384, 512, 768)
    conv_kinds: tuple[str, ...] = ("dwsep", "grouped", NO_CONV)
    conv_kernels: tuple[int, ...] = (3, 7, 15, 31)
    dilations: tuple[int, ...] = (1, 2, 4)
    conv_placements: tuple[str, ...] = ("before", "after", "parallel")

    def __post_init__(self) -> None:
        if any(w % self.group_size for w in self.widths):
            raise ValueError(f"every width must be a multiple of group_size={self.group_size}")
        if any(k % 2 == 0 for k in self.frontend_kernels + self.conv_kernels):
            raise ValueError("kernel sizes must be odd (same-length padding)")
        if NO_CONV not in self.conv_kinds or min(self.depths) < 1:
            raise ValueError(f"conv_kinds must include {NO_CONV!r} and depths must be >= 1")

    @property
    def max_depth(self) -> int:
        return max(self.depths)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SpaceConfig":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


SPACES: dict[str, SpaceConfig] = {}


def register_space(config: SpaceConfig) -> SpaceConfig:
    SPACES[config.name] = config
    return config


DEFAULT_SPACE = register_space(SpaceConfig())
# The same dimensions at toy sizes: for tests and smoke runs that must train a supernet in seconds.
TINY_SPACE = register_space(SpaceConfig(
    name="speech-tiny", head_dim=8, frontend_kernels=(3, 5), widths=(32, 48), depths=(1, 2, 3), heads=(1, 2),
    ffn_dims=(32, 64), conv_kernels=(3, 7), dilations=(1, 2)))


def get_space(name: str = DEFAULT_SPACE.name) -> "SearchSpace":
    if name not in SPACES:
        raise InvalidArchitecture(f"unknown search space {name!r}; known: {', '.join(sorted(SPACES))}")
    return SearchSpace(SPACES[name])


def largest_arch(space: "SearchSpace | SpaceConfig", frontend_kind: str = "full", conv_kind: str = "dwsep",
                 connectivity: str = "linear", downsample_after: int | None = None) -> Arch:
    """Every size at its maximum: the supernet's teacher with the defaults. Linear, because dense
    connectivity with its skip weights at zero (their initial value) is linear: a teacher trained linear
    leaves dense subnets a small step away, while a dense teacher made linear subnets collapse to blanks."""
    c = getattr(space, "config", space)
    block = Block(max(c.heads), max(c.ffn_dims), conv_kind, max(c.conv_kernels), 1, "after")
    return Arch(max(c.frontend_kernels), frontend_kind, max(c.widths), connectivity, downsample_after,
                (block,) * c.max_depth)


def smallest_arch(space: "SearchSpace | SpaceConfig") -> Arch:
    """Every size at its minimum, no conv modules."""
    c = getattr(space, "config", space)
    block = Block(min(c.heads), min(c.ffn_dims), NO_CONV)
    return Arch(min(c.frontend_kernels), "dwsep", min(c.widths), "linear", None, (block,) * min(c.depths))


@dataclass(frozen=True)
class Decoded:
    """Choice *values* of a gene matrix, one array per dimension (block arrays are ``(n, max_depth)``).

    Inactive block slots hold the values of choice 0; ``active`` says which slots are real blocks.
    """

    frontend_kernel: np.ndarray
    frontend_dwsep: np.ndarray
    width: np.ndarray
    depth: np.ndarray
    dense: np.ndarray
    downsample_after: np.ndarray  # 0 = none
    heads: np.ndarray
    ffn_dim: np.ndarray
    conv_kind: np.ndarray  # index into SpaceConfig.conv_kinds
    conv_kernel: np.ndarray
    dilation: np.ndarray
    conv_placement: np.ndarray  # index into SpaceConfig.conv_placements
    active: np.ndarray = field(repr=False)


class SearchSpace:
    """Converts between the three forms of an architecture and runs vectorized operators on gene matrices.

    Contract: every method that returns genes returns canonical rows (see the module docstring);
    ``validate`` accepts exactly those rows; ``decode(encode(a)) == a`` for every valid ``a``.
    """

    def __init__(self, config: SpaceConfig = DEFAULT_SPACE):
        self.config = c = config
        self.global_choices: tuple[tuple, ...] = (
            c.frontend_kernels, c.frontend_kinds, c.widths, c.depths, c.connectivities,
            (None,) + tuple(range(1, c.max_depth)),
        )
        self.block_choices: tuple[tuple, ...] = (
            c.heads, c.ffn_dims, c.conv_kinds, c.conv_kernels, c.dilations, c.conv_placements,
        )
        self.n_global, self.n_block = len(GLOBAL_FIELDS), len(BLOCK_FIELDS)
        self.n_genes = self.n_global + self.n_block * c.max_depth
        self.gene_names = list(GLOBAL_FIELDS) + [
            f"blocks[{b}].{f}" for b in range(c.max_depth) for f in BLOCK_FIELDS
        ]
        highs = [len(ch) for ch in self.global_choices] + [len(ch) for ch in self.block_choices] * c.max_depth
        self.highs = np.array(highs, dtype=np.int16)
        self._depth_values = np.array(c.depths, dtype=np.int16)
        self._none_index = c.conv_kinds.index(NO_CONV)
        self._slots = np.arange(c.max_depth, dtype=np.int16)
        self._block_bases = [self.n_global + b * self.n_block for b in range(c.max_depth)]
        self._highs_u8 = self.highs.astype(np.uint8)
        self._key_multipliers = np.random.default_rng(0x5EED).integers(
            1, 2**63, size=-(-self.n_genes // 8), dtype=np.uint64) | np.uint64(1)

    # ---- single architectures: dataclass <-> genes <-> JSON -------------------------------------

    def check(self, arch: Arch) -> Arch:
        """Return ``arch`` if it belongs to the space, else raise naming the offending field."""
        c = self.config
        _check_choice("frontend_kernel", arch.frontend_kernel, c.frontend_kernels)
        _check_choice("frontend_kind", arch.frontend_kind, c.frontend_kinds)
        _check_choice("width", arch.width, c.widths)
        _check_choice("connectivity", arch.connectivity, c.connectivities)
        _check_choice("depth", arch.depth, c.depths)
        if arch.downsample_after is not None:
            _check_choice("downsample_after", arch.downsample_after, self.global_choices[5][1:])
            if arch.downsample_after >= arch.depth:
                raise InvalidArchitecture(
                    f"downsample_after: {arch.downsample_after} must be less than the depth "
                    f"({arch.depth}); use null for no downsampling")
        for i, b in enumerate(arch.blocks):
            for name, choices in zip(BLOCK_FIELDS[:3], self.block_choices[:3]):
                _check_choice(f"blocks[{i}].{name}", getattr(b, name), choices)
            for name, choices in zip(CONV_FIELDS, self.block_choices[3:]):
                value = getattr(b, name)
                if b.conv_kind == NO_CONV:
                    if value is not None:
                        raise InvalidArchitecture(
                            f"blocks[{i}].{name}: must be null when conv_kind is 'none' (got {value!r})")
                else:
                    _check_choice(f"blocks[{i}].{name}", value, choices)
        return arch

    def encode(self, arch: Arch) -> np.ndarray:
        """The canonical gene vector of a valid architecture."""
        self.check(arch)
        genes = np.zeros(self.n_genes, dtype=np.int8)
        values = (arch.frontend_kernel, arch.frontend_kind, arch.width, arch.depth, arch.connectivity,
                  arch.downsample_after)
        for i, (value, choices) in enumerate(zip(values, self.global_choices)):
            genes[i] = choices.index(value)
        for b, block in enumerate(arch.blocks):
            base = self.n_global + b * self.n_block
            for j, (name, choices) in enumerate(zip(BLOCK_FIELDS, self.block_choices)):
                value = getattr(block, name)
                genes[base + j] = 0 if value is None else choices.index(value)
        return genes

    def decode(self, genes: np.ndarray) -> Arch:
        """The architecture of one gene row; a non-canonical or out-of-range row raises."""
        genes = np.asarray(genes)
        problem = self.explain(genes)
        if problem:
            raise InvalidArchitecture(problem)
        g = [int(x) for x in genes]
        fk, fkind, width, depth, conn, ds = (ch[i] for ch, i in zip(self.global_choices, g))
        blocks = []
        for b in range(depth):
            values = dict(zip(BLOCK_FIELDS, (ch[i] for ch, i in zip(
                self.block_choices, g[self.n_global + b * self.n_block:][: self.n_block]))))
            if values["conv_kind"] == NO_CONV:
                values.update(dict.fromkeys(CONV_FIELDS))
            blocks.append(Block(**values))
        return Arch(fk, fkind, width, conn, ds, tuple(blocks))

    def explain(self, genes: np.ndarray) -> str | None:
        """Why one gene row is invalid (naming the gene), or ``None`` if it is valid."""
        genes = np.asarray(genes)
        if genes.shape != (self.n_genes,):
            return f"gene vector: expected {self.n_genes} genes, got shape {tuple(genes.shape)}"
        for name, value, high in zip(self.gene_names, genes, self.highs):
            if not 0 <= value < high:
                return f"{name}: gene {int(value)} is outside 0..{int(high) - 1}"
        depth = int(self._depth_values[genes[3]])
        if genes[5] >= depth:
            return f"downsample_after: {int(genes[5])} must be less than the depth ({depth})"
        meaningful = self.meaningful(genes[None])[0]
        for name, value, used in zip(self.gene_names, genes, meaningful):
            if value and not used:
                return f"{name}: gene {int(value)} has no meaning here (block beyond the depth, or no conv) and must be 0"
        return None

    def load_arch(self, path) -> Arch:
        """Read and check an ARCH.json file (a bare architecture or a ``top.json`` entry)."""
        from .io import read_json

        return self.from_json(read_json(path), source=str(path))

    def from_json(self, text: str | dict, source: str = "architecture") -> Arch:
        """Parse and check an architecture from JSON text (or an already-parsed dict).

        Also accepts a bundle entry ``{"arch": {...}, ...}`` such as the entries of ``top.json``.
        """
        if isinstance(text, str):
            try:
                text = json.loads(text)
            except json.JSONDecodeError as e:
                raise InvalidArchitecture(f"{source}: not valid JSON ({e})") from None
        data = text
        if isinstance(data, dict) and isinstance(data.get("arch"), dict):
            data = data["arch"]
        if not isinstance(data, dict):
            raise InvalidArchitecture(f"{source}: expected a JSON object, got {type(data).__name__}")
        arch_fields = ("frontend_kernel", "frontend_kind", "width", "connectivity", "downsample_after", "blocks")
        _check_keys("", data, required=arch_fields, optional=())
        blocks_data = data["blocks"]
        if not isinstance(blocks_data, list):
            raise InvalidArchitecture(f"blocks: expected a list, got {type(blocks_data).__name__}")
        blocks = []
        for i, bd in enumerate(blocks_data):
            if not isinstance(bd, dict):
                raise InvalidArchitecture(f"blocks[{i}]: expected an object, got {type(bd).__name__}")
            _check_keys(f"blocks[{i}].", bd, required=BLOCK_FIELDS[:3], optional=CONV_FIELDS)
            values = {k: _typed(f"blocks[{i}].{k}", bd.get(k), str if k in ("conv_kind", "conv_placement") else int,
                                nullable=k in CONV_FIELDS) for k in BLOCK_FIELDS}
            blocks.append(Block(**values))
        arch = Arch(
            frontend_kernel=_typed("frontend_kernel", data["frontend_kernel"], int),
            frontend_kind=_typed("frontend_kind", data["frontend_kind"], str),
            width=_typed("width", data["width"], int),
            connectivity=_typed("connectivity", data["connectivity"], str),
            downsample_after=_typed("downsample_after", data["downsample_after"], int, nullable=True),
            blocks=tuple(blocks),
        )
        return self.check(arch)

    # ---- gene matrices: vectorized operators -----------------------------------------------------

    def depth_of(self, genes: np.ndarray) -> np.ndarray:
        return self._depth_values.take(genes[:, DEPTH_GENE], mode="clip")

    def meaningful(self, genes: np.ndarray) -> np.ndarray:
        """Boolean ``(n, n_genes)``: which genes carry meaning (active slots; conv genes of conv blocks)."""
        depth = self.depth_of(genes)
        mask = np.ones(genes.shape, dtype=bool, order="F")
        for b, base in enumerate(self._block_bases):
            active = depth > b
            mask[:, base:base + 3] = active[:, None]
            mask[:, base + 3:base + 6] = (active & (genes[:, base + 2] != self._none_index))[:, None]
        return mask

    def validate(self, genes: np.ndarray) -> np.ndarray:
        """Boolean mask of the rows that are valid, canonical architectures."""
        genes = np.asarray(genes, dtype=np.int8)
        unsigned = genes.view(np.uint8)  # negative genes wrap to >= 128, so one comparison checks the range
        ok = np.ones(len(genes), dtype=bool)
        for j, high in enumerate(self._highs_u8):
            ok &= unsigned[:, j] < high
        depth = self.depth_of(genes)
        ok &= genes[:, DOWNSAMPLE_GENE] < depth
        for b, base in enumerate(self._block_bases):
            attention_ffn = genes[:, base] | genes[:, base + 1] | genes[:, base + 2]
            conv = genes[:, base + 3] | genes[:, base + 4] | genes[:, base + 5]
            no_conv = genes[:, base + 2] == self._none_index
            ok &= ((depth > b) | ((attention_ffn | conv) == 0)) & ~(no_conv & (conv != 0))
        return ok

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` random canonical rows: every gene uniform over its choices, downsampling uniform below depth."""
        u = rng.random((self.n_genes, n), dtype=np.float32)  # gene-major: each gene's column is contiguous
        downsample_u = u[5].copy()
        u *= self.highs.astype(np.float32)[:, None]
        genes = u.astype(np.int8).T
        genes[:, DOWNSAMPLE_GENE] = (downsample_u * self.depth_of(genes)).astype(np.int8)
        return self._canonical(genes)

    def mutate(self, genes: np.ndarray, rng: np.random.Generator, rate: float = 0.1) -> np.ndarray:
        """Resample each gene with probability ``rate``; genes that gain meaning are drawn fresh.

        Every gene is redrawn (uniformly over its choices) independently with probability ``rate``. A block
        slot that becomes active (the depth grew) is drawn whole, and conv genes that gain meaning (a conv
        kind replaced ``none``) are drawn; a downsampling point at or beyond the new depth is redrawn
        uniformly below it. Returns a new column-major matrix; ``genes`` is not modified.
        """
        parent = np.asarray(genes, dtype=np.int8)
        child = np.array(parent, order="F")
        n, cells = len(child), child.size
        if 0 < rate < 0.5:
            # A Poisson number of uniform cells, with mean -cells*log(1 - rate), hits each cell at least once
            # with probability exactly ``rate``, independently: the same draw as a Bernoulli per cell, but its
            # cost scales with the number of hits, not the number of cells.
            hits = rng.integers(0, cells, size=rng.poisson(-cells * math.log1p(-rate)))
        else:
            hits = np.flatnonzero(rng.random(cells, dtype=np.float32) < rate)
        flat = child.reshape(-1, order="F")  # a view: F-order cell i is gene i // n of row i % n
        flat[hits] = _uniform_below(rng, self.highs.take(hits // n))
        self._redraw_gained_and_canonicalize(parent, child, rng)
        return child

    def crossover(self, a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Uniform crossover of global genes and of whole blocks (a block is inherited intact).

        Each global gene and each block slot comes from either parent with probability 1/2. A block slot
        the chosen parent does not have (beyond its depth) is taken from the other parent, and a downsampling
        point at or beyond the child's depth is redrawn uniformly below it. Returns a column-major matrix.
        """
        a, b = np.asarray(a, dtype=np.int8), np.asarray(b, dtype=np.int8)
        n, c = len(a), self.config
        child = np.empty((n, self.n_genes), dtype=np.int8, order="F")
        from_a = rng.integers(0, 2, size=(self.n_global + c.max_depth, n), dtype=np.uint8).astype(bool)
        _blend(a[:, :self.n_global], b[:, :self.n_global], from_a[:self.n_global].T, out=child[:, :self.n_global])
        depth_a, depth_b, depth = self.depth_of(a), self.depth_of(b), self.depth_of(child)
        for slot, base in enumerate(self._block_bases):
            columns = slice(base, base + self.n_block)
            has_a, has_b = depth_a > slot, depth_b > slot
            take_a = has_a & (from_a[self.n_global + slot] | ~has_b)
            _blend(a[:, columns], b[:, columns], take_a[:, None], out=child[:, columns])
            child[:, columns] &= _all_bits(depth > slot)[:, None]  # zero slots beyond the child's depth
        self._redraw_downsampling(child, depth, rng)
        return child

    def neighbours(self, genes: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Every row one gene away from a row of ``genes``, and the index of that parent row.

        Each meaningful gene of a parent takes each of its other values (a downsampling point, each point
        below the depth); genes that gain meaning are drawn as in :meth:`mutate`, so a deeper neighbour has
        random new blocks. Rows are canonical and differ from their parent; a row that neighbours two
        parents appears once for each. Returns a column-major matrix.
        """
        parents = np.asarray(genes, dtype=np.int8)
        meaning, depth = self.meaningful(parents), self.depth_of(parents)
        rows, owner = [], []
        for i, row in enumerate(parents):
            for j in np.flatnonzero(meaning[i]):
                values = np.arange(depth[i] if j == DOWNSAMPLE_GENE else self.highs[j], dtype=np.int8)
                values = values[values != row[j]]
                block = np.repeat(row[None], len(values), axis=0)
                block[:, j] = values
                rows.append(block)
                owner.append(np.full(len(values), i))
        if not rows:
            return np.zeros((0, self.n_genes), dtype=np.int8, order="F"), np.zeros(0, dtype=np.int64)
        child, owner = np.asfortranarray(np.concatenate(rows)), np.concatenate(owner)
        origin = parents[owner]
        self._redraw_gained_and_canonicalize(origin, child, rng)
        differs = (child != origin).any(axis=1)
        return np.asfortranarray(child[differs]), owner[differs]

    def row_keys(self, genes: np.ndarray) -> np.ndarray:
        """A 64-bit hash per row (equal rows, equal keys), for dedup and lookups.

        Rows are read as 64-bit words (8 genes each); each word is mixed by a bijection (a random odd
        multiplier per word position, then MurmurHash3's 64-bit finalizer) and the mixed words are summed.
        Rows that differ in one word never share a key; others do with probability about 2**-64. Why the
        finalizer: with the multipliers alone, a change to the last gene of a word moved only the key's top
        8 bits, so the rows one such gene away from a parent fell on a few hundred keys and the dedup
        dropped new rows as seen.
        """
        n, words = len(genes), -(-self.n_genes // 8)
        padded = np.zeros((n, words * 8), dtype=np.int8)
        padded[:, :self.n_genes] = np.ascontiguousarray(genes)  # column-major rows are slow to copy strided
        mixed = padded.view(np.uint64) * self._key_multipliers
        for multiplier in (0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53, None):
            mixed ^= mixed >> np.uint64(33)
            if multiplier is not None:
                mixed *= np.uint64(multiplier)
        return mixed.sum(axis=1, dtype=np.uint64)

    def decode_values(self, genes: np.ndarray) -> Decoded:
        """Choice values of every gene, as arrays, for closed-form costs and estimators."""
        c, g = self.config, np.asarray(genes)
        blocks = g[:, self.n_global:].reshape(len(g), c.max_depth, self.n_block)
        lut = lambda choices: np.asarray(choices, dtype=np.int32)  # noqa: E731
        depth = self.depth_of(g).astype(np.int32)
        return Decoded(
            frontend_kernel=lut(c.frontend_kernels)[g[:, 0]],
            frontend_dwsep=g[:, 1] == c.frontend_kinds.index("dwsep"),
            width=lut(c.widths)[g[:, 2]],
            depth=depth,
            dense=g[:, 4] == c.connectivities.index("dense"),
            downsample_after=g[:, 5].astype(np.int32),
            heads=lut(c.heads)[blocks[..., 0]],
            ffn_dim=lut(c.ffn_dims)[blocks[..., 1]],
            conv_kind=blocks[..., 2].astype(np.int32),
            conv_kernel=lut(c.conv_kernels)[blocks[..., 3]],
            dilation=lut(c.dilations)[blocks[..., 4]],
            conv_placement=blocks[..., 5].astype(np.int32),
            active=self._slots[None, :] < depth[:, None],
        )

    def size_log10(self) -> float:
        """log10 of the number of distinct valid architectures."""
        c = self.config
        conv_variants = (len(c.conv_kinds) - 1) * len(c.conv_kernels) * len(c.dilations) * len(c.conv_placements)
        per_block = len(c.heads) * len(c.ffn_dims) * (conv_variants + 1)
        prefix = len(c.frontend_kernels) * len(c.frontend_kinds) * len(c.widths) * len(c.connectivities)
        # depth d allows d downsampling choices: none, or after blocks 1..d-1
        total = sum(d * per_block ** d for d in c.depths) * prefix
        return math.log10(total)

    def covering(self) -> list[Arch]:
        """A few architectures that together use every choice of every dimension (for parity tests)."""
        c = self.config
        n = max(len(c.depths), c.max_depth)  # every depth, and every downsampling position
        archs = []
        for i in range(n):
            depth = c.depths[i] if i < len(c.depths) else c.max_depth
            ds = (i + 1) if i + 1 < depth else None
            if i == n - 1:
                depth, ds = c.max_depth, None
            genes = np.zeros(self.n_genes, dtype=np.int8)
            for j, choices in enumerate(self.global_choices[:5]):
                genes[j] = i % len(choices)
            genes[3], genes[5] = c.depths.index(depth), ds or 0
            for b in range(depth):
                t = i * c.max_depth + b  # counts blocks over all archs, so each field cycles its choices
                for j, (name, choices) in enumerate(zip(BLOCK_FIELDS, self.block_choices)):
                    # conv fields advance once per conv-kind cycle, so they also cycle over conv blocks
                    step = t // len(c.conv_kinds) if name in CONV_FIELDS else t
                    genes[self.n_global + b * self.n_block + j] = step % len(choices)
            archs.append(self.decode(self._canonical(genes[None])[0]))
        return archs

    # ---- internals --------------------------------------------------------------------------------

    def _canonical(self, genes: np.ndarray) -> np.ndarray:
        np.multiply(genes, self.meaningful(genes), out=genes)
        return genes

    def _redraw_gained_and_canonicalize(self, parent: np.ndarray, child: np.ndarray,
                                        rng: np.random.Generator) -> None:
        """In place: draw the genes of ``child`` that mean something now but meant nothing in ``parent``,
        fix its downsampling point, and zero the genes that mean nothing (canonical rows)."""
        depth_parent, depth = self.depth_of(parent), self.depth_of(child)
        for slot, base in enumerate(self._block_bases):
            had, has = depth_parent > slot, depth > slot
            new_slot = np.flatnonzero(has & ~had)
            if len(new_slot):  # a slot gained by a deeper child is drawn whole (conv genes just below)
                draws = _uniform_below(rng, np.tile(self.highs[base:base + 3], len(new_slot)))
                child[new_slot, base:base + 3] = draws.reshape(len(new_slot), 3)
            had_conv = had & (parent[:, base + 2] != self._none_index)
            has_conv = has & (child[:, base + 2] != self._none_index)
            gained_conv = np.flatnonzero(has_conv & ~had_conv)
            if len(gained_conv):
                draws = _uniform_below(rng, np.tile(self.highs[base + 3:base + 6], len(gained_conv)))
                child[gained_conv, base + 3:base + 6] = draws.reshape(len(gained_conv), 3)
            child[:, base:base + 3] &= _all_bits(has)[:, None]
            child[:, base + 3:base + 6] &= _all_bits(has_conv)[:, None]
        self._redraw_downsampling(child, depth, rng)

    @staticmethod
    def _redraw_downsampling(child: np.ndarray, depth: np.ndarray, rng: np.random.Generator) -> None:
        """In place: a downsampling point at or beyond the depth is drawn uniformly below the depth."""
        too_deep = np.flatnonzero(child[:, DOWNSAMPLE_GENE] >= depth)
        if len(too_deep):
            child[too_deep, DOWNSAMPLE_GENE] = _uniform_below(rng, depth[too_deep])


def _uniform_below(rng: np.random.Generator, highs: np.ndarray) -> np.ndarray:
    """One uniform draw from ``0..high-1`` per element of ``highs`` (int8)."""
    return (rng.random(len(highs), dtype=np.float32) * highs).astype(np.int8)


def _all_bits(mask: np.ndarray) -> np.ndarray:
    """A boolean mask as int8 0 / -1 (all bits set), for masking int8 genes with ``&``."""
    return -mask.view(np.int8)


def _blend(a: np.ndarray, b: np.ndarray, take_a: np.ndarray, out: np.ndarray) -> None:
    """``out = where(take_a, a, b)`` for int8 genes, by bit masking (several times faster than np.where)."""
    np.bitwise_xor(a, b, out=out)
    out &= _all_bits(take_a)
    out ^= b


def _check_choice(name: str, value: Any, choices: Iterable) -> None:
    choices = tuple(choices)
    if value not in choices or isinstance(value, bool):
        shown = ", ".join(repr(c) if isinstance(c, str) else str(c) for c in choices)
        raise InvalidArchitecture(f"{name}: {value!r} is not one of {shown}")


def _check_keys(prefix: str, data: dict, required: Iterable[str], optional: Iterable[str]) -> None:
    required, allowed = tuple(required), set(required) | set(optional)
    for key in data:
        if key not in allowed:
            raise InvalidArchitecture(f"{prefix}{key}: unknown field (expected {', '.join(sorted(allowed))})")
    for key in required:
        if key not in data:
            raise InvalidArchitecture(f"{prefix}{key}: missing")


def _typed(name: str, value: Any, kind: type, nullable: bool = False) -> Any:
    if value is None and nullable:
        return None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise InvalidArchitecture(f"{name}: expected {'an integer' if kind is int else 'a string'}"
                                  f"{' or null' if nullable else ''}, got {json.dumps(value)}")
    return value
