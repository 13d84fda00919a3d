"""Each table key as a small ONNX graph built from the model's own layers, and whole subnets as graphs.

The graphs are exported the way :func:`predictnas.supernet.export.export_onnx` exports a subnet
(torchscript tracer, the same opset, a dynamic frame axis), so a measured entry runs the op pattern and
the fusions of the real model. Weights are random (seeded): latency does not depend on their values.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor, nn

from ..space import Arch, SpaceConfig
from ..supernet.export import INPUT_NAME, OPSET, _quiet_exporter, export_onnx
from ..supernet.subnet import (Attention, ConvModule, Downsample, EncoderBlock, FeedForward, FrontEnd, Subnet,
                               restore_rate)
from .keys import Key
from .protocol import Graph


# ---- one wrapper per module kind: the model's layers, with the residual adds they run in the model ----


class _FrontEndEntry(nn.Module):
    def __init__(self, key: Key, space: SpaceConfig):
        super().__init__()
        self.frontend = FrontEnd(space.n_mels, key["width"], key["kernel"], key["kind"])

    def forward(self, features: Tensor) -> Tensor:
        x, _ = self.frontend(features, None)
        return x


class _AttentionEntry(nn.Module):
    def __init__(self, key: Key, space: SpaceConfig):
        super().__init__()
        self.attn = Attention(key["width"], key["heads"], space.head_dim, 0.0)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.attn(x, None)


class _ConvEntry(nn.Module):
    def __init__(self, key: Key, space: SpaceConfig):
        super().__init__()
        self.conv = ConvModule(key["width"], key["kind"], key["kernel"], key["dilation"], space.group_size, 0.0)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(x, None)


class _FeedForwardEntry(nn.Module):
    def __init__(self, key: Key, space: SpaceConfig):
        super().__init__()
        self.ffn = FeedForward(key["width"], key["ffn_dim"], 0.0)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.ffn(x)


class _SkipEntry(nn.Module):
    def __init__(self, key: Key, space: SpaceConfig):
        super().__init__()
        self.skip_weights = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor, state: Tensor) -> Tensor:
        return EncoderBlock.gather(self, [state, x])  # type: ignore[arg-type]  # the model's own dense add


class _DownsampleEntry(nn.Module):
    def __init__(self, key: Key, space: SpaceConfig):
        super().__init__()
        self.downsample = Downsample(key["width"])

    def forward(self, x: Tensor) -> Tensor:
        low_start, _ = self.downsample(x, None)
        return restore_rate(low_start + 1.0, low_start, x)  # + 1: stands for the blocks in between


class _HeadsEntry(nn.Module):
    def __init__(self, key: Key, space: SpaceConfig):
        super().__init__()
        self.final_norm = nn.LayerNorm(key["width"])
        self.ctc_head = nn.Linear(key["width"], space.vocab_size)
        self.intent_head = nn.Linear(key["width"], space.n_intents)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        trunk = self.final_norm(x)
        return self.ctc_head(trunk), self.intent_head(trunk.mean(dim=1))


ENTRY_MODULES: dict[str, Callable[[Key, SpaceConfig], nn.Module]] = {
    "frontend": _FrontEndEntry, "attention": _AttentionEntry, "conv": _ConvEntry, "ffn": _FeedForwardEntry,
    "skip": _SkipEntry, "downsample": _DownsampleEntry, "heads": _HeadsEntry,
}


def entry_inputs(key: Key, space: SpaceConfig) -> dict[str, np.ndarray]:
    """Batch-1 inputs of a key's graph, at the key's frame count."""
    rng = np.random.default_rng(0)
    if key.module == "frontend":
        return {INPUT_NAME: rng.standard_normal((1, key["frames"], space.n_mels), dtype=np.float32)}
    x = rng.standard_normal((1, key["frames"], key["width"]), dtype=np.float32)
    return {"x": x, "state": x.copy()} if key.module == "skip" else {"x": x}


@torch.no_grad()
def entry_graph(key: Key, space: SpaceConfig, seed: int = 0) -> Graph:
    """Export the module of ``key`` as ONNX bytes (dynamic frame axis, like the whole model)."""
    torch.manual_seed(seed)
    module = ENTRY_MODULES[key.module](key, space).eval()
    feeds = entry_inputs(key, space)
    names = list(feeds)
    outputs = ["ctc_logits", "intent_logits"] if key.module == "heads" else ["y"]
    axes = {name: {1: "frames"} for name in names}
    axes.update({outputs[0]: {1: "out_frames"}})
    buffer = io.BytesIO()
    with _quiet_exporter():
        torch.onnx.export(module, tuple(torch.from_numpy(feeds[n]) for n in names), buffer, dynamo=False,
                          opset_version=OPSET, input_names=names, output_names=outputs, dynamic_axes=axes)
    return Graph(buffer.getvalue(), feeds, sum(p.numel() for p in module.parameters()))


def null_graph(feeds: dict[str, np.ndarray]) -> Graph:
    """A graph that takes the same inputs and does (almost) nothing: the fixed per-run overhead of a session.

    It returns only the inputs' shapes, so no tensor is copied: an entry net of this overhead still pays
    for writing its own output, as the module does inside the model (copying the inputs instead made
    a dense skip add, itself little more than a copy, look free).
    """
    import onnx
    from onnx import TensorProto, helper

    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(a.shape)) for n, a in feeds.items()]
    outputs = [helper.make_tensor_value_info(f"{n}_shape", TensorProto.INT64, [a.ndim]) for n, a in feeds.items()]
    nodes = [helper.make_node("Shape", [n], [f"{n}_shape"]) for n in feeds]
    model = helper.make_model(helper.make_graph(nodes, "null", inputs, outputs),
                              opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = min(model.ir_version, 10)
    onnx.checker.check_model(model)
    return Graph(model.SerializeToString(), feeds)


def arch_seed(arch: Arch) -> int:
    return int(arch.arch_id[:8], 16)


@contextlib.contextmanager
def _no_initializer_dedup():
    """Skip the torchscript exporter's pass that merges identical initializers.

    The pass compares every pair of initializers: 20+ s for a 12-block model here, more than timing it.
    A trained model has no identical weights to merge, so without the pass a randomly initialised
    subnet (whose LayerNorm weights are all ones) exports the graph a trained one exports.
    """
    original = torch._C._jit_pass_onnx_deduplicate_initializers
    torch._C._jit_pass_onnx_deduplicate_initializers = lambda graph, params, training: params
    try:
        yield
    finally:
        torch._C._jit_pass_onnx_deduplicate_initializers = original


@torch.no_grad()
def subnet_graph(arch: Arch, space: SpaceConfig, input_frames: int) -> Graph:
    """The whole model of ``arch`` exported as ``predictnas export`` does, with random weights."""
    torch.manual_seed(arch_seed(arch))
    subnet = Subnet(arch, space).eval()
    with tempfile.TemporaryDirectory() as tmp, _no_initializer_dedup():
        path = export_onnx(subnet, Path(tmp) / "model.onnx", example_frames=input_frames)
        model = path.read_bytes()
    features = np.random.default_rng(0).standard_normal((1, input_frames, space.n_mels), dtype=np.float32)
    return Graph(model, {INPUT_NAME: features}, sum(p.numel() for p in subnet.parameters()))
