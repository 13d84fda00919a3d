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

from dataclasses import dataclass

import numpy as np

from ..complexity import flops, param_counts
from ..errors import PredictnasError
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
        """``(n, n_features)`` float32 features of ``genes`` (and their proxy scores, if used)."""
        genes = np.asarray(genes)
        parts = []
        if "encoding" in self.groups:
            parts.append(encoding(space, genes))
        if "closed_form" in self.groups:
            parts.append(closed_form(space, genes, self.reference_frames))
        if "proxies" in self.groups:
            if proxies is None or len(proxies) != len(genes):
                raise PredictnasError("this predictor uses zero-cost proxies: it scores stored subnets only, "
                                      "not gene matrices; fit one with --features encoding,closed_form")
            parts.append(np.array([[p.get(name, np.nan) for name in PROXIES] for p in proxies], dtype=np.float32))
        return np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]


_CLOSED_FORM = ["log_params", "log_flops", "depth", "total_heads", "total_ffn", "dwsep_convs", "grouped_convs",
                "receptive_frames", "downsampled_blocks"]


def encoding(space: SearchSpace, genes: np.ndarray) -> np.ndarray:
    """Choice values of every gene, in the space's gene order (see the module docstring)."""
    c, d = space.config, space.decode_values(genes)
    conv = d.conv_kind + 1
    conv_active = d.active & (d.conv_kind != c.conv_kinds.index("none"))
    out = np.empty((len(genes), space.n_genes), dtype=np.float32)
    out[:, 0], out[:, 1], out[:, 2] = d.frontend_kernel, d.frontend_dwsep, d.width
    out[:, 3], out[:, 4], out[:, 5] = d.depth, d.dense, d.downsample_after
    per_block = (d.heads * d.active, d.ffn_dim * d.active, conv * conv_active, d.conv_kernel * conv_active,
                 d.dilation * conv_active, (d.conv_placement + 1) * conv_active)
    for j, values in enumerate(per_block):
        out[:, space.n_global + j::space.n_block] = values
    return out


def closed_form(space: SearchSpace, genes: np.ndarray, reference_frames: int = REFERENCE_FRAMES) -> np.ndarray:
    c, d = space.config, space.decode_values(genes)
    conv_active = d.active & (d.conv_kind != c.conv_kinds.index("none"))
    # after block j the encoder runs at half rate: those blocks' kernels see twice the time
    slot = np.arange(c.max_depth)[None, :]
    downsampled = (d.downsample_after[:, None] > 0) & (slot >= d.downsample_after[:, None])
    span = (d.conv_kernel - 1) * d.dilation * np.where(downsampled, 2, 1)
    columns = [
        np.log(param_counts(space, genes).astype(np.float64)),
        np.log(flops(space, genes, reference_frames).astype(np.float64)),
        d.depth,
        (d.heads * d.active).sum(1),
        (d.ffn_dim * d.active).sum(1),
        (conv_active & (d.conv_kind == c.conv_kinds.index("dwsep"))).sum(1),
        (conv_active & (d.conv_kind == c.conv_kinds.index("grouped"))).sum(1),
        (span * conv_active).sum(1),
        (downsampled & d.active).sum(1),
    ]
    return np.stack(columns, axis=1).astype(np.float32)
