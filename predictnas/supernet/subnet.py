"""The standalone speech model that one architecture defines: ``Subnet(arch, space)``.

Plain ``nn.Linear`` / ``nn.Conv1d`` / ``nn.LayerNorm`` layers of exactly the architecture's sizes, read
top-down from the small parts to the whole. The supernet runs this same code with sliced shared weights
(``torch.func.functional_call``), so the network walk exists once; an extracted subnet is this module
holding copies of those slices, with no supernet code path.

Input: log-mel features ``(batch, frames, n_mels)`` and optional valid lengths ``(batch,)``.
Output: :class:`SubnetOutput` with CTC logits ``(batch, frames/4, vocab)``, intent logits
``(batch, n_intents)`` and the output lengths.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..space import NO_CONV, Arch, Block, SpaceConfig


# What a set of weights computes: raised whenever a layer computes something else from the same weights,
# so weights saved before are refused instead of silently run differently. 2: rotary positions in the
# attention, downsampling by pair means plus a correction, restoring only the low-rate changes.
MODEL_VERSION = 2


class SubnetOutput(NamedTuple):
    ctc_logits: Tensor
    intent_logits: Tensor
    lengths: Tensor | None


def halve_lengths(lengths: Tensor | None) -> Tensor | None:
    """Frames after a stride-2 layer with same-length padding: ceil(n / 2)."""
    return None if lengths is None else torch.div(lengths + 1, 2, rounding_mode="floor")


def output_lengths(feature_lengths: Tensor) -> Tensor:
    """Frames of the CTC head for ``feature_lengths`` input frames: the front-end's two stride-2 layers
    (downsampling mid-encoder is restored before the heads, so it changes nothing here)."""
    return halve_lengths(halve_lengths(feature_lengths))


def frame_mask(lengths: Tensor | None, frames: int) -> Tensor | None:
    if lengths is None:
        return None
    return torch.arange(frames, device=lengths.device)[None, :] < lengths[:, None]


def zero_padding(x: Tensor, mask: Tensor | None) -> Tensor:
    return x if mask is None else x * mask[..., None].to(x.dtype)


class TimeConv(nn.Conv1d):
    """A 1-D convolution over ``(batch, frames, channels)`` with same-length padding."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, dilation: int = 1, groups: int = 1):
        super().__init__(c_in, c_out, kernel, stride=stride, dilation=dilation, groups=groups,
                         padding=dilation * (kernel - 1) // 2)

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class FrontEnd(nn.Module):
    """Two stride-2 convolutions (4x fewer frames), full or depthwise-separable, then a layer norm.

    Why the norm: without it a trained full front-end grew its output to std 56, so the residual stream
    was mostly front-end and each block's update a small part of it. With it, the largest subnet trained
    alone reached 41 % instead of 48 % dev WER (quiet home) after 1,500 steps at a peak learning rate of
    1e-3 (GPU probe, one seed each). Each kind has its own norm, so matching one front-end to the other
    never moves the teacher's.
    """

    def __init__(self, n_mels: int, width: int, kernel: int, kind: str):
        super().__init__()
        self.kind = kind
        if kind == "full":
            self.conv1 = TimeConv(n_mels, width, kernel, stride=2)
            self.conv2 = TimeConv(width, width, kernel, stride=2)
            self.conv_norm = nn.LayerNorm(width)
        else:
            self.dw1 = TimeConv(n_mels, n_mels, kernel, stride=2, groups=n_mels)
            self.pw1 = nn.Linear(n_mels, width)
            self.dw2 = TimeConv(width, width, kernel, stride=2, groups=width)
            self.pw2 = nn.Linear(width, width)
            self.pw_norm = nn.LayerNorm(width)

    def forward(self, x: Tensor, lengths: Tensor | None) -> tuple[Tensor, Tensor | None]:
        x = zero_padding(x, frame_mask(lengths, x.shape[1]))  # padding must look like the conv's own zeros
        if self.kind == "full":
            x = F.silu(self.conv1(x))
            lengths = halve_lengths(lengths)
            x = self.conv_norm(F.silu(self.conv2(zero_padding(x, frame_mask(lengths, x.shape[1])))))
        else:
            x = F.silu(self.pw1(self.dw1(x)))
            lengths = halve_lengths(lengths)
            x = self.pw_norm(F.silu(self.pw2(self.dw2(zero_padding(x, frame_mask(lengths, x.shape[1]))))))
        return x, halve_lengths(lengths)


ROPE_BASE = 10_000.0


def rotate_positions(x: Tensor) -> Tensor:
    """Rotary position embedding of ``(batch, heads, frames, head_dim)`` queries or keys (RoFormer).

    Why: without it, attention sees no order and every subnet leaned on its conv modules for position;
    the largest's kernel-31 weights then served nothing else (the largest with no conv modules at 101.6 %
    dev WER, with kernel 3 at 96.6 %, with dilation 2 at 96.0 %, against 53.9 %). Rotations give each
    attention layer relative positions, with no parameters and nothing added to the residual stream
    (added sinusoids had drowned a front-end's output, see :meth:`Subnet.encode`).
    """
    frames, half = x.shape[2], x.shape[3] // 2
    inverse_frequency = ROPE_BASE ** (-torch.arange(half, device=x.device, dtype=torch.float32) / half)
    angles = torch.arange(frames, device=x.device, dtype=torch.float32)[:, None] * inverse_frequency[None, :]
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    first, second = x[..., :half], x[..., half:2 * half]
    return torch.cat((first * cos - second * sin, second * cos + first * sin, x[..., 2 * half:]), dim=-1)


class Attention(nn.Module):
    """Multi-head self-attention with a fixed head size and rotary positions; the number of heads sets
    the inner width."""

    def __init__(self, width: int, heads: int, head_dim: int, dropout: float):
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        self.norm = nn.LayerNorm(width)
        self.q = nn.Linear(width, heads * head_dim)
        self.k = nn.Linear(width, heads * head_dim)
        self.v = nn.Linear(width, heads * head_dim)
        self.out = nn.Linear(heads * head_dim, width)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        batch = x.shape[0]
        y = self.norm(x)
        q, k, v = (proj(y).reshape(batch, -1, self.heads, self.head_dim).transpose(1, 2)
                   for proj in (self.q, self.k, self.v))
        q, k = rotate_positions(q), rotate_positions(k)
        scores = (q @ k.transpose(-1, -2)) * self.head_dim ** -0.5
        if mask is not None:
            scores = scores.masked_fill(~mask[:, None, None, :], torch.finfo(scores.dtype).min)
        context = self.dropout(scores.softmax(dim=-1)) @ v
        return self.dropout(self.out(context.transpose(1, 2).reshape(batch, -1, self.heads * self.head_dim)))


class ConvModule(nn.Module):
    """Conformer convolution module: GLU pointwise, depthwise or grouped conv, norm, SiLU, pointwise."""

    def __init__(self, width: int, kind: str, kernel: int, dilation: int, group_size: int, dropout: float):
        super().__init__()
        self.kind = kind
        self.norm = nn.LayerNorm(width)
        self.value = nn.Linear(width, width)
        self.gate = nn.Linear(width, width)
        if kind == "dwsep":
            self.depthwise = TimeConv(width, width, kernel, dilation=dilation, groups=width)
        else:
            self.grouped = TimeConv(width, width, kernel, dilation=dilation, groups=width // group_size)
        self.conv_norm = nn.LayerNorm(width)
        self.pointwise = nn.Linear(width, width)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        y = self.norm(x)
        y = zero_padding(self.value(y) * torch.sigmoid(self.gate(y)), mask)
        y = self.depthwise(y) if self.kind == "dwsep" else self.grouped(y)
        return self.dropout(self.pointwise(F.silu(self.conv_norm(y))))


class FeedForward(nn.Module):
    def __init__(self, width: int, ffn_dim: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.up = nn.Linear(width, ffn_dim)
        self.down = nn.Linear(ffn_dim, width)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.down(self.dropout(F.silu(self.up(self.norm(x))))))


class EncoderBlock(nn.Module):
    """Attention and feed-forward, with the conv module before, after or parallel to the attention.

    Pre-norm only: every module normalizes its own input and the residual stream is never normalized
    between blocks (the trunk's ``final_norm`` does it once, at whatever depth the subnet ends). With a
    norm on each block's output as well, a 12-block linear stack sat on the blank-only CTC plateau
    several times longer than the same stack with dense skips, so linear and dense subnets could not
    share a teacher.
    """

    def __init__(self, block: Block, width: int, head_dim: int, group_size: int, n_skips: int, dropout: float):
        super().__init__()
        self.placement = block.conv_placement if block.conv_kind != NO_CONV else NO_CONV
        if n_skips:  # dense connectivity: weights of the earlier states of this stage (zero = linear)
            self.skip_weights = nn.Parameter(torch.zeros(n_skips))
        self.attn = Attention(width, block.heads, head_dim, dropout)
        if block.conv_kind != NO_CONV:
            self.conv = ConvModule(width, block.conv_kind, block.conv_kernel, block.dilation, group_size, dropout)
        self.ffn = FeedForward(width, block.ffn_dim, dropout)

    def gather(self, states: list[Tensor]) -> Tensor:
        """The block's input: the previous state, plus weighted earlier states when connected densely."""
        x = states[-1]
        if hasattr(self, "skip_weights"):
            for weight, state in zip(self.skip_weights, states[:-1]):
                x = x + weight * state
        return x

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        if self.placement == "before":
            x = x + self.conv(x, mask)
        if self.placement == "parallel":
            x = x + self.attn(x, mask) + self.conv(x, mask)
        else:
            x = x + self.attn(x, mask)
        if self.placement == "after":
            x = x + self.conv(x, mask)
        return x + self.ffn(x)


class Downsample(nn.Module):
    """Halves the frame rate mid-encoder: the mean of each pair of valid frames plus a learned correction
    (stride-2 depthwise conv + pointwise, zero at the start).

    Why the mean, and :func:`restore_rate` adding back only what the blocks at the low rate changed: a
    subnet that downsamples after block ``k`` then computes what the undownsampled one computes, at half
    the time resolution, so it inherits the largest's function. With the state replaced by a learned
    conv's output and added to the skip whole, it did not: the largest downsampled after block 11, 6 or 1
    was at 66 / 88 / 96 % dev WER against 54 %.
    """

    def __init__(self, width: int):
        super().__init__()
        self.depthwise = TimeConv(width, width, 3, stride=2, groups=width)
        self.pointwise = nn.Linear(width, width)
        nn.init.zeros_(self.pointwise.weight)
        nn.init.zeros_(self.pointwise.bias)

    def forward(self, x: Tensor, lengths: Tensor | None) -> tuple[Tensor, Tensor | None]:
        valid = torch.ones_like(x[..., :1]) if lengths is None else frame_mask(lengths, x.shape[1])[..., None].to(x.dtype)
        pair_mean = pairwise_mean(x) / pairwise_mean(valid).clamp_min(1e-6)  # padding is zero; count valid frames
        return pair_mean + self.pointwise(self.depthwise(x)), halve_lengths(lengths)


def pairwise_mean(x: Tensor) -> Tensor:
    """Mean of frames ``2i`` and ``2i + 1`` of ``(batch, frames, channels)``; a last odd frame alone."""
    return F.avg_pool1d(x.transpose(1, 2), 2, 2, ceil_mode=True).transpose(1, 2)


def upsample(x: Tensor, frames: int) -> Tensor:
    """Repeat each frame twice and trim to ``frames``, restoring the pre-downsampling rate."""
    batch, n, width = x.shape
    return x[:, :, None, :].expand(batch, n, 2, width).reshape(batch, 2 * n, width)[:, :frames]


def restore_rate(low_end: Tensor, low_start: Tensor, skip: Tensor) -> Tensor:
    """The full-rate state after the reduced stage: the state at the downsampling point plus what the
    blocks at the low rate added, upsampled."""
    return skip + upsample(low_end - low_start, skip.shape[1])


def skip_counts(arch: Arch) -> list[int]:
    """Per block, how many earlier states of its stage feed it besides its predecessor (dense only)."""
    if arch.connectivity != "dense":
        return [0] * arch.depth
    split = arch.downsample_after or arch.depth
    return [i if i < split else i - split for i in range(arch.depth)]


class Subnet(nn.Module):
    """The speech model of one architecture: front-end, encoder blocks, CTC and intent heads."""

    def __init__(self, arch: Arch, space: SpaceConfig, dropout: float = 0.0):
        super().__init__()
        self.arch, self.space = arch, space
        width = arch.width
        self.frontend = FrontEnd(space.n_mels, width, arch.frontend_kernel, arch.frontend_kind)
        self.frontend_dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            EncoderBlock(block, width, space.head_dim, space.group_size, n_skips, dropout)
            for block, n_skips in zip(arch.blocks, skip_counts(arch)))
        if arch.downsample_after:
            self.downsample = Downsample(width)
        self.final_norm = nn.LayerNorm(width)
        self.ctc_head = nn.Linear(width, space.vocab_size)
        self.intent_head = nn.Linear(width, space.n_intents)

    def encode(self, features: Tensor, lengths: Tensor | None = None,
               frontend_output: tuple[Tensor, Tensor | None] | None = None) -> tuple[Tensor, Tensor | None]:
        """The shared trunk: ``(batch, frames/4, width)`` and its lengths. ``frontend_output``: the
        front-end's ``(output, lengths)`` for these features, when the caller has computed it already."""
        x, lengths = self.frontend(features, lengths) if frontend_output is None else frontend_output
        # No absolute positions: the front-end and conv modules see order locally, and added sinusoids
        # made subnets that switch front-end kind collapse to blanks (a trained full front-end grew its
        # output to std 56 to drown them; the depthwise one, at std 0.4, was left seeing positions only).
        x = self.frontend_dropout(x)
        mask = frame_mask(lengths, x.shape[1])
        states, skip = [x], None
        for i, block in enumerate(self.blocks, start=1):
            x = zero_padding(block(block.gather(states), mask), mask)
            states.append(x)
            if i == self.arch.downsample_after:
                skip, skip_lengths = x, lengths
                x, lengths = self.downsample(x, lengths)
                mask = frame_mask(lengths, x.shape[1])
                low_start = x = zero_padding(x, mask)
                states = [x]  # dense connections start afresh at the new frame rate
        if skip is not None:
            x, lengths = restore_rate(x, low_start, skip), skip_lengths
        return self.final_norm(x), lengths

    def forward(self, features: Tensor, lengths: Tensor | None = None,
                frontend_output: tuple[Tensor, Tensor | None] | None = None) -> SubnetOutput:
        trunk, lengths = self.encode(features, lengths, frontend_output)
        mask = frame_mask(lengths, trunk.shape[1])
        if mask is None:
            pooled = trunk.mean(dim=1)
        else:
            pooled = zero_padding(trunk, mask).sum(dim=1) / lengths[:, None].to(trunk.dtype)
        return SubnetOutput(self.ctc_head(trunk), self.intent_head(pooled), lengths)
