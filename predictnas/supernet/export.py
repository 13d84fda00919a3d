"""ONNX export of a standalone subnet, and the checks that the exported graph is the same model.

The graph takes ``features`` ``(1, frames, n_mels)`` with a dynamic frame axis and returns
``ctc_logits`` ``(1, frames/4, vocab)`` and ``intent_logits`` ``(1, n_intents)``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import PredictnasError
from ..io import atomic_path
from .subnet import Subnet

OPSET = 18
INPUT_NAME = "features"
OUTPUT_NAMES = ("ctc_logits", "intent_logits")
MIN_FRAMES = 8  # at least one encoder frame after every stride-2 layer


class _Inference(nn.Module):
    """Batch-1 inference signature: features in, both heads' logits out."""

    def __init__(self, subnet: Subnet):
        super().__init__()
        self.subnet = subnet

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        out = self.subnet(features)
        return out.ctc_logits, out.intent_logits


EXPORTERS = ("torchscript", "dynamo")


def export_onnx(subnet: Subnet, path: str | Path, example_frames: int = 200, exporter: str = "torchscript") -> Path:
    """Export ``subnet`` (in eval mode) to ``path`` atomically, opset ``OPSET``, dynamic frame axis.

    ``torchscript`` (the default) traces the module: the architecture's control flow is static, so a
    trace is exact, and it is about 20x faster than ``dynamo`` (0.4 s against 5-12 s per subnet here),
    which matters when a latency table exports hundreds of graphs. Both give the same outputs.
    """
    if exporter not in EXPORTERS:
        raise PredictnasError(f"unknown exporter {exporter!r}; choose from {', '.join(EXPORTERS)}")
    model = _Inference(subnet).eval()
    example = torch.randn(1, example_frames, subnet.space.n_mels)
    path = Path(path)
    with atomic_path(path) as tmp, _quiet_exporter():
        if exporter == "dynamo":
            frames = torch.export.Dim("frames", min=MIN_FRAMES, max=1 << 20)
            program = torch.onnx.export(
                model, (example,), dynamo=True, opset_version=OPSET, input_names=[INPUT_NAME],
                output_names=list(OUTPUT_NAMES), dynamic_shapes={"features": {1: frames}}, verbose=False)
            program.save(str(tmp))
        else:
            torch.onnx.export(
                model, (example,), str(tmp), dynamo=False, opset_version=OPSET, input_names=[INPUT_NAME],
                output_names=list(OUTPUT_NAMES),
                dynamic_axes={INPUT_NAME: {1: "frames"}, OUTPUT_NAMES[0]: {1: "encoder_frames"}})
    return path


def check_onnx(path: str | Path) -> None:
    """Run the full ONNX checker (graph structure and shape inference)."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise PredictnasError(f"{path}: ONNX checker failed ({str(e).splitlines()[0]})") from None


def ort_session(path: str | Path, threads: int = 1):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@dataclass(frozen=True)
class Parity:
    """Largest absolute difference between ONNX Runtime and PyTorch outputs over several lengths."""

    max_abs_diff: float
    frames: tuple[int, ...]


@torch.no_grad()
def compare_with_torch(subnet: Subnet, path: str | Path, frames=(37, 200, 611), seed: int = 0) -> Parity:
    """Run the same random features through PyTorch and ONNX Runtime; report the worst difference."""
    session = ort_session(path)
    generator = torch.Generator().manual_seed(seed)
    subnet = subnet.eval()
    worst = 0.0
    for n in frames:
        features = torch.randn(1, n, subnet.space.n_mels, generator=generator)
        expected = subnet(features)
        got = session.run(list(OUTPUT_NAMES), {INPUT_NAME: features.numpy()})
        for ref, out in zip((expected.ctc_logits, expected.intent_logits), got):
            if ref.shape != out.shape:
                raise PredictnasError(f"{path}: ONNX output shape {out.shape} != PyTorch {tuple(ref.shape)}")
            if not (np.isfinite(out).all() and torch.isfinite(ref).all()):
                raise PredictnasError(f"{path}: NaN or infinite outputs at {n} input frames "
                                      "(max(worst, nan) would have reported no difference)")
            worst = max(worst, float(np.abs(ref.numpy() - out).max()))
    return Parity(worst, tuple(frames))


@contextlib.contextmanager
def _quiet_exporter():
    """The dynamo exporter prints progress and warnings meant for its developers; keep them off the CLI."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
