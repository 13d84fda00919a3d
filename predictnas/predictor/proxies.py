"""Zero-cost proxies: scores of an untrained network that may rank architectures without training.

Each proxy takes a freshly initialised :class:`~predictnas.supernet.Subnet` (fixed seed, so a score is
a function of the architecture alone) and one fixed labelled minibatch, and uses the CTC loss where it
needs one (definitions as in NASLib / NAS-Bench-Suite-Zero, adapted to sequences):

* ``grad_norm``: sum over weight tensors of the L2 norm of dLoss/dW;
* ``snip``: sum of |W * dLoss/dW| (connection sensitivity);
* ``synflow``: with every weight replaced by its absolute value and an all-ones input, sum of
  W * dR/dW where R is the sum of the outputs (data-free; computed in float64, LayerNorm included as is,
  which is known to blunt it);
* ``nwot``: log-determinant of the Hamming-similarity kernel of the binary activation codes (sign of
  every SiLU input) of a fixed set of frames;
* ``jacob_cov``: score of the correlation of input Jacobians across the utterances of the batch,
  ``-sum(log(eig + k) + 1 / (eig + k))`` with ``k = 1e-5``.

Scores are stored as computed; ``log`` transforms, where useful, are the predictor's business.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..space import Arch, SpaceConfig
from ..supernet import Subnet

PROXIES = ("grad_norm", "snip", "synflow", "nwot", "jacob_cov")
INIT_SEED = 0
NWOT_FRAMES = 64


def compute_proxies(arch: Arch, space: SpaceConfig, batch, names=PROXIES) -> tuple[dict[str, float], float]:
    """Every proxy in ``names`` for ``arch`` on ``batch``; returns the scores and the seconds taken."""
    start = time.perf_counter()
    scores = {name: float(_PROXY_FUNCTIONS[name](_fresh(arch, space), batch)) for name in names}
    return scores, time.perf_counter() - start


def _fresh(arch: Arch, space: SpaceConfig) -> Subnet:
    torch.manual_seed(INIT_SEED)
    return Subnet(arch, space).train()  # train mode without dropout (p = 0): no randomness


def _ctc(model: Subnet, batch) -> Tensor:
    out = model(batch.features, batch.feature_lengths)
    log_probs = out.ctc_logits.log_softmax(-1).transpose(0, 1)
    return F.ctc_loss(log_probs, batch.targets, out.lengths, batch.target_lengths, blank=0, zero_infinity=True)


def _weights(model: nn.Module) -> list[Tensor]:
    """Weight matrices and kernels (not biases or norm gains), as the published proxies use."""
    return [p for name, p in model.named_parameters() if name.endswith("weight") and p.dim() > 1]


def _sum_over_weights(model: nn.Module, term) -> float:
    with torch.no_grad():
        return sum(float(term(w)) for w in _weights(model) if w.grad is not None)


def grad_norm(model: Subnet, batch) -> float:
    _ctc(model, batch).backward()
    return _sum_over_weights(model, lambda w: w.grad.norm())


def snip(model: Subnet, batch) -> float:
    _ctc(model, batch).backward()
    return _sum_over_weights(model, lambda w: (w * w.grad).abs().sum())


def synflow(model: Subnet, batch) -> float:
    model = model.double()
    with torch.no_grad():
        for p in model.parameters():
            p.abs_()
    ones = torch.ones(1, int(batch.feature_lengths.max()), batch.features.shape[-1], dtype=torch.float64)
    out = model(ones)
    (out.ctc_logits.sum() + out.intent_logits.sum()).backward()
    return _sum_over_weights(model, lambda w: (w * w.grad).sum())


def nwot(model: Subnet, batch) -> float:
    codes: list[Tensor] = []
    hooks = [m.register_forward_pre_hook(lambda _m, args: codes.append(args[0].detach() > 0))
             for m in _silu_inputs(model)]
    try:
        with torch.no_grad():
            _, lengths = model.encode(batch.features, batch.feature_lengths)
    finally:
        for h in hooks:
            h.remove()
    # Frames of the trunk's rate; codes of layers at other rates are matched by relative position.
    frames = _fixed_frames(lengths)
    rows = []
    for code in codes:
        positions = (frames[:, 1].double() * code.shape[1] / lengths.max()).long().clamp(max=code.shape[1] - 1)
        rows.append(code[frames[:, 0], positions].reshape(len(frames), -1))
    c = torch.cat(rows, dim=1).double()
    kernel = c @ c.T + (1 - c) @ (1 - c).T
    return float(torch.linalg.slogdet(kernel)[1])


def jacob_cov(model: Subnet, batch) -> float:
    features = batch.features.clone().requires_grad_(True)
    out = model(features, batch.feature_lengths)
    out.ctc_logits.sum().backward()
    jacobians = features.grad.reshape(len(features), -1).double()
    corr = torch.corrcoef(jacobians)
    eigenvalues = torch.linalg.eigvalsh(torch.nan_to_num(corr))
    k = 1e-5
    return float(-(torch.log(eigenvalues.clamp(min=0) + k) + 1.0 / (eigenvalues.clamp(min=0) + k)).sum())


def _silu_inputs(model: Subnet) -> list[nn.Module]:
    """Modules whose output feeds a SiLU: the front-end convs, FFN up-projections, conv-module norms."""
    found = []
    for name, module in model.named_modules():
        if name.endswith(("ffn.up", "conv.conv_norm")) or name in ("frontend.conv1", "frontend.conv2",
                                                                      "frontend.pw1", "frontend.pw2"):
            found.append(module)
    return found


def _fixed_frames(lengths: Tensor) -> Tensor:
    """``NWOT_FRAMES`` (utterance, frame) pairs spread over the valid frames, the same for every arch."""
    valid = torch.cat([torch.stack([torch.full((int(n),), i), torch.arange(int(n))], dim=1)
                       for i, n in enumerate(lengths)])
    pick = np.random.default_rng(0).choice(len(valid), size=min(NWOT_FRAMES, len(valid)), replace=False)
    return valid[torch.as_tensor(np.sort(pick))]


_PROXY_FUNCTIONS = {"grad_norm": grad_norm, "snip": snip, "synflow": synflow, "nwot": nwot, "jacob_cov": jacob_cov}
