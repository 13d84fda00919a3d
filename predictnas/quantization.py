"""Int8 inference as the ``cpu-int8`` device runs it, simulated in PyTorch so subnets can be scored in bulk.

The device quantizes an exported model with ONNX Runtime's dynamic quantization of MatMul and Gemm nodes
with constant weights (:mod:`predictnas.latency.devices`): weights to int8, symmetric, one scale per
tensor; activations to uint8 at run time, asymmetric, one scale per tensor over the values of that call,
with zero inside the range (``DynamicQuantizeLinear``); products summed exactly in int32. Convolutions and
the attention's activation-by-activation products stay in float.

:class:`DynamicInt8` computes every ``torch.nn.functional.linear`` (the ``nn.Linear`` layers, which export
to those MatMul/Gemm nodes) on operands rounded to exactly those integer grids, so the result equals the
integer arithmetic up to float32 summation. Activation ranges are per utterance over its valid frames, as
on the device, which runs one utterance at a time: a padded batch gives each utterance what it alone gives.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.overrides import TorchFunctionMode

from .frames import halve


def quantize_activations(x: Tensor, valid: Tensor | None = None) -> Tensor:
    """``x`` rounded to uint8 with one scale and zero point per utterance (the first axis), then back to
    float; the range covers the utterance's valid frames (``valid``: ``(batch, frames)``, default all) and
    zero, as ``DynamicQuantizeLinear`` over one utterance's tensor."""
    rows = x.reshape(x.shape[0], -1, x.shape[-1])
    if valid is not None:
        keep = valid[:, :, None]
        low = torch.where(keep, rows, torch.inf).amin(dim=(1, 2))
        high = torch.where(keep, rows, -torch.inf).amax(dim=(1, 2))
    else:
        low, high = rows.amin(dim=(1, 2)), rows.amax(dim=(1, 2))
    low, high = torch.clamp(low, max=0.0), torch.clamp(high, min=0.0)
    scale = ((high - low) / 255.0).clamp_min(torch.finfo(torch.float32).tiny)
    # values by the reciprocal, the zero point by division, as ONNX Runtime's kernels compute them: the
    # other way rounds some values to the other neighbour
    inverse = 1.0 / scale
    zero_point = torch.clamp(torch.round(-low / scale), 0, 255)
    shape = (-1,) + (1,) * (x.dim() - 1)
    scale, inverse, zero_point = scale.reshape(shape), inverse.reshape(shape), zero_point.reshape(shape)
    return (torch.clamp(torch.round(x * inverse) + zero_point, 0, 255) - zero_point) * scale


def quantize_weights(w: Tensor) -> Tensor:
    """``w`` rounded to int8 symmetrically ([-127, 127]) with one scale for the tensor, then back to float."""
    scale = w.abs().max() / 127.0
    if scale == 0:
        return w
    return torch.clamp(torch.round(w / scale), -127, 127) * scale


class DynamicInt8(TorchFunctionMode):
    """Within ``with DynamicInt8(valid):``, linear layers compute on int8 weights and uint8 activations.

    ``valid`` maps a frame count to the ``(batch, frames)`` mask of valid frames at that rate (the model
    halves the rate a few times), so a padded batch is quantized as its utterances would be one by one.
    """

    def __init__(self, valid: dict[int, Tensor] | None = None):
        super().__init__()
        self.valid = valid or {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.linear:
            x, weight, *rest = args
            bias = rest[0] if rest else kwargs.get("bias")
            valid = self.valid.get(x.shape[1]) if x.dim() == 3 else None
            return F.linear(quantize_activations(x.float(), valid), quantize_weights(weight.float()),
                            None if bias is None else bias.float())
        return func(*args, **kwargs)


def frame_masks(lengths: Tensor, frames: int, halvings: int = 4) -> dict[int, Tensor]:
    """Valid-frame masks at the input rate and at each halving (stride-2 layers keep ``ceil(n / 2)``)."""
    masks = {}
    for _ in range(halvings + 1):
        masks.setdefault(frames, torch.arange(frames)[None, :] < lengths[:, None])
        frames, lengths = halve(frames), halve(lengths)
    return masks


def int8_model(model):
    """``model`` (features, lengths -> SubnetOutput) computed as :class:`DynamicInt8` does."""
    def run(features: Tensor, lengths: Tensor):
        with DynamicInt8(frame_masks(lengths, features.shape[1])):
            return model(features, lengths)
    return run
