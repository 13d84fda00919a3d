"""What a latency table is keyed by, and the one network walk that says which keys a model runs.

A :class:`Key` names one module of the model at one input shape, e.g.
``attention(frames=100, heads=4, width=128)``. Keys are structured (a module name and sorted
``(field, value)`` pairs, stored in JSON as objects), never concatenated strings.

The walk is written once, in small parts that mirror :class:`predictnas.supernet.subnet.Subnet`:
:func:`frontend_key`, :func:`block_keys`, :func:`skip_key`, :func:`downsample_key`, :func:`heads_key`,
composed by :func:`arch_keys`. Everything else is built from these parts: :func:`enumerate_keys`
(what ``build-lut`` measures) calls them over every choice of the space, and the vectorized estimator
fills its dense tables by calling them over every gene combination. The parts carry the frame count,
so entries measured at one reference input are never used at another.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Iterator

from ..errors import PredictnasError
from ..frames import Frames
from ..space import NO_CONV, Arch, Block, SpaceConfig

MODULES = ("frontend", "attention", "conv", "ffn", "skip", "downsample", "heads")
# Fields of each module's key; a table entry with other fields is malformed.
KEY_FIELDS: dict[str, tuple[str, ...]] = {
    "frontend": ("frames", "kernel", "kind", "width"),
    "attention": ("frames", "heads", "width"),
    "conv": ("dilation", "frames", "kernel", "kind", "width"),
    "ffn": ("ffn_dim", "frames", "width"),
    "skip": ("frames", "width"),
    "downsample": ("frames", "width"),
    "heads": ("frames", "width"),
}


@dataclass(frozen=True, order=True)
class Key:
    """One module at one shape: ``module`` and its configuration as sorted ``(field, value)`` pairs."""

    module: str
    config: tuple[tuple[str, Any], ...]

    @classmethod
    def of(cls, module: str, **config: Any) -> "Key":
        return cls(module, tuple(sorted(config.items())))

    def __getitem__(self, field: str) -> Any:
        return dict(self.config)[field]

    def to_dict(self) -> dict[str, Any]:
        return {"module": self.module, **dict(self.config)}

    @classmethod
    def from_dict(cls, data: Any) -> "Key":
        """Parse a key object; raise a one-line error naming what is wrong."""
        if not isinstance(data, dict) or not isinstance(data.get("module"), str):
            raise PredictnasError(f"key {data!r}: expected an object with a 'module' name")
        module, config = data["module"], {k: v for k, v in data.items() if k != "module"}
        if module not in KEY_FIELDS:
            raise PredictnasError(f"key {data!r}: unknown module {module!r} (known: {', '.join(MODULES)})")
        if tuple(sorted(config)) != KEY_FIELDS[module]:
            raise PredictnasError(f"key {data!r}: {module} keys have fields {', '.join(KEY_FIELDS[module])}")
        for name, value in config.items():
            if isinstance(value, bool) or not isinstance(value, (int, str)):
                raise PredictnasError(f"key {data!r}: {name} must be an integer or a string")
        return cls.of(module, **config)

    def __str__(self) -> str:
        return f"{self.module}({', '.join(f'{k}={v}' for k, v in self.config)})"


# ---- the walk, in parts ----------------------------------------------------------------------------


def frontend_key(kind: str, kernel: int, width: int, frames: Frames) -> Key:
    return Key.of("frontend", kind=kind, kernel=kernel, width=width, frames=frames.input)


def block_keys(width: int, block: Block, frames: int) -> tuple[Key, ...]:
    """The modules of one encoder block. Placement does not change them: attention and conv entries each
    include their residual add, so "parallel" runs the same adds as "before" / "after"."""
    keys = [Key.of("attention", width=width, heads=block.heads, frames=frames)]
    if block.conv_kind != NO_CONV:
        keys.append(Key.of("conv", width=width, kind=block.conv_kind, kernel=block.conv_kernel,
                           dilation=block.dilation, frames=frames))
    keys.append(Key.of("ffn", width=width, ffn_dim=block.ffn_dim, frames=frames))
    return tuple(keys)


def skip_key(width: int, frames: int) -> Key:
    """One weighted dense-skip add (``x + w * state``)."""
    return Key.of("skip", width=width, frames=frames)


def downsample_key(width: int, frames: Frames) -> Key:
    """Mid-encoder downsampling and the upsample + add that restores the rate before the heads."""
    return Key.of("downsample", width=width, frames=frames.encoder)


def heads_key(width: int, frames: Frames) -> Key:
    return Key.of("heads", width=width, frames=frames.encoder)


def stage_frames(block_index: int, downsample_after: int | None, frames: Frames) -> int:
    """Frames seen by block ``block_index`` (0-based): reduced after the downsampling point."""
    return frames.reduced if downsample_after and block_index >= downsample_after else frames.encoder


def skip_multiplicity(block_index: int, downsample_after: int | None, depth: int, dense: bool) -> int:
    """Earlier states of its stage that a block adds besides its predecessor (the model's ``skip_counts``)."""
    if not dense:
        return 0
    split = downsample_after or depth
    return block_index if block_index < split else block_index - split


def arch_keys(arch: Arch, frames: Frames) -> list[Key]:
    """Every module the model of ``arch`` runs, in order, repeated as often as it runs."""
    keys = [frontend_key(arch.frontend_kind, arch.frontend_kernel, arch.width, frames)]
    for i, block in enumerate(arch.blocks):
        t = stage_frames(i, arch.downsample_after, frames)
        keys += [skip_key(arch.width, t)] * skip_multiplicity(i, arch.downsample_after, arch.depth,
                                                              arch.connectivity == "dense")
        keys += block_keys(arch.width, block, t)
    if arch.downsample_after:
        keys.append(downsample_key(arch.width, frames))
    keys.append(heads_key(arch.width, frames))
    return keys


# ---- the same parts over every choice of a space -----------------------------------------------------


def every_block(config: SpaceConfig) -> Iterator[Block]:
    """Every block configuration the space allows (conv fields are ``None`` without a conv)."""
    for heads, ffn_dim, kind in itertools.product(config.heads, config.ffn_dims, config.conv_kinds):
        if kind == NO_CONV:
            yield Block(heads, ffn_dim, kind)
            continue
        for kernel, dilation, placement in itertools.product(config.conv_kernels, config.dilations,
                                                             config.conv_placements):
            yield Block(heads, ffn_dim, kind, kernel, dilation, placement)


def stage_frame_counts(config: SpaceConfig, frames: Frames) -> tuple[int, ...]:
    """Frame counts blocks can see: the reduced rate exists only if some depth allows downsampling."""
    return (frames.encoder, frames.reduced) if config.max_depth > 1 else (frames.encoder,)


def enumerate_keys(config: SpaceConfig, frames: Frames) -> list[Key]:
    """Every distinct key any architecture of the space can need, sorted (the build order)."""
    keys: set[Key] = set()
    for kind, kernel, width in itertools.product(config.frontend_kinds, config.frontend_kernels, config.widths):
        keys.add(frontend_key(kind, kernel, width, frames))
    blocks = list(every_block(config))
    for width in config.widths:
        for t in stage_frame_counts(config, frames):
            for block in blocks:
                keys.update(block_keys(width, block, t))
            if "dense" in config.connectivities:
                keys.add(skip_key(width, t))
        if config.max_depth > 1:
            keys.add(downsample_key(width, frames))
        keys.add(heads_key(width, frames))
    return sorted(keys, key=_build_order)


def _build_order(key: Key) -> tuple:
    return (MODULES.index(key.module), tuple((k, str(v)) for k, v in key.config))
