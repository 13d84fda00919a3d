"""The once-for-all supernet: one set of shared weights serving every architecture of the space.

Every parameter of every :class:`Subnet` is a slice of one shared tensor of the largest shape:

* widths, heads (whole heads of ``head_dim``), FFN dims, skip weights: the leading rows and columns;
* conv kernels: the centre of the largest kernel, passed through a learned per-layer transform for each
  smaller size (once-for-all's elastic kernel), so small kernels are not forced to equal the centre;
* dilation: the same weights, spread out; conv kinds: depthwise and grouped weights are separate tensors;
* placement, dense connections and downsampling select which layers run, not how they are shaped.

``forward(features, arch)`` runs the ``Subnet`` code itself on those slices, so a subnet extracted with
:meth:`Supernet.extract` computes exactly what the supernet computes for that architecture.
"""

from __future__ import annotations

import pickle
from collections import OrderedDict

import torch
from torch import Tensor, nn
from torch.func import functional_call

from ..errors import PredictnasError, one_line
from ..io import atomic_path
from ..space import Arch, SpaceConfig, largest_arch
from .subnet import MODEL_VERSION, Subnet, SubnetOutput


def _key(name: str) -> str:
    return name.replace(".", "/")  # parameter names may not contain dots


def _kernel_choices(name: str, space: SpaceConfig) -> tuple[int, ...]:
    """Kernel sizes a 3-D conv weight can take (the front-end and conv-module kernels are elastic)."""
    if name.startswith("frontend."):
        return space.frontend_kernels
    if ".conv.depthwise." in name or ".conv.grouped." in name:
        return space.conv_kernels
    return ()


def covering_archs(space: SpaceConfig) -> list[Arch]:
    """Largest architectures that, together, own every parameter the supernet must hold."""
    def largest(frontend_kind: str, conv_kind: str, downsample: int | None) -> Arch:
        return largest_arch(space, frontend_kind, conv_kind, "dense", downsample)

    # Dense without downsampling has the most skip weights; the second one owns the other conv kind,
    # the other front-end kind and the downsampling layer.
    others = [k for k in space.frontend_kinds if k != space.frontend_kinds[0]]
    return [largest(space.frontend_kinds[0], "dwsep", None),
            largest((others or space.frontend_kinds)[0], "grouped", 1)]


class Supernet(nn.Module):
    """Shared weights for the whole space. ``forward(features, arch, lengths=None) -> SubnetOutput``."""

    def __init__(self, space: SpaceConfig, dropout: float = 0.0, metadata: dict | None = None):
        super().__init__()
        # metadata: what running a subnet needs besides weights (features, sample rate, intents, data)
        self.space, self.dropout, self.metadata = space, dropout, dict(metadata or {})
        self.shared = nn.ParameterDict()
        for arch in covering_archs(space):
            for name, param in Subnet(arch, space).named_parameters():
                if _key(name) not in self.shared:
                    self.shared[_key(name)] = param
        # One k x k transform per elastic conv layer and smaller kernel size, identity at start.
        self.kernel_transforms = nn.ParameterDict()
        for name, param in self.shared.items():
            if param.ndim != 3:  # weights only: the convs' biases share their names but have no kernel axis
                continue
            sizes = sorted(_kernel_choices(name.replace("/", "."), space), reverse=True)
            for k in sizes[1:]:
                self.kernel_transforms[f"{name}/{k}"] = nn.Parameter(torch.eye(k))
        self._skeletons: OrderedDict[Arch, Subnet] = OrderedDict()

    def subnet_weights(self, arch: Arch) -> dict[str, Tensor]:
        """The subnet's parameters as differentiable slices of the shared weights."""
        return self._slices(self._skeleton(arch).named_parameters())

    def forward(self, features: Tensor, arch: Arch, lengths: Tensor | None = None,
                frontend_output: tuple[Tensor, Tensor | None] | None = None) -> SubnetOutput:
        """``frontend_output``: the front-end's ``(output, lengths)`` computed already (see
        :meth:`frontend`); the subnet starts from it, and no gradient reaches the front-end through it."""
        skeleton = self._skeleton(arch).train(self.training)
        return functional_call(skeleton, self.subnet_weights(arch), (features, lengths),
                               {"frontend_output": frontend_output})

    def frontend(self, features: Tensor, arch: Arch, lengths: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """The front-end of ``arch`` alone: its output ``(batch, frames/4, width)`` and lengths."""
        skeleton = self._skeleton(arch).train(self.training)
        weights = self._slices(skeleton.frontend.named_parameters(prefix="frontend"))
        return functional_call(skeleton.frontend, {name.removeprefix("frontend."): w for name, w in weights.items()},
                               (features, lengths))

    @torch.no_grad()
    def extract(self, arch: Arch) -> Subnet:
        """A standalone ``Subnet`` holding copies of this architecture's slices."""
        with torch.device("meta"):
            subnet = Subnet(arch, self.space, self.dropout)
        weights = {name: w.detach().clone() for name, w in self.subnet_weights(arch).items()}
        subnet.load_state_dict(weights, strict=True, assign=True)
        return subnet.train(self.training)

    @torch.no_grad()
    def perturb_neutral_parts(self, seed: int = 0) -> "Supernet":
        """Move the parts that start neutral (zero skip weights and downsampling correction, identity kernel
        transforms) to random values. For parity checks: at their initial values dense connections, the
        downsampling's learned part and kernel transforms compute nothing, and a mistake in them would go
        unseen."""
        generator = torch.Generator().manual_seed(seed)
        for name, p in self.shared.items():
            if name.endswith("skip_weights") or name.startswith("downsample/pointwise/"):
                p.copy_(torch.rand(p.shape, generator=generator) - 0.5)
        for p in self.kernel_transforms.values():
            p.add_(0.1 * torch.randn(p.shape, generator=generator))
        return self

    def config(self) -> dict:
        """What is needed to rebuild this supernet (saved beside its weights)."""
        return {"space": self.space.to_dict(), "dropout": self.dropout, "metadata": self.metadata}

    def _slices(self, named_parameters) -> dict[str, Tensor]:
        """Differentiable slices of the shared weights for a skeleton's (meta) parameters."""
        weights = {}
        for name, meta in named_parameters:
            shared = self.shared[_key(name)]
            leading = tuple(slice(0, n) for n in meta.shape)
            if meta.ndim == 3:  # conv weight (out, in/groups, kernel): the kernel axis is elastic
                weight = shared[leading[:2]]
                weights[name] = self._shrink_kernel(_key(name), weight, meta.shape[2], _kernel_choices(name, self.space))
            else:
                weights[name] = shared[leading]
        return weights

    def _shrink_kernel(self, key: str, weight: Tensor, kernel: int, choices: tuple[int, ...]) -> Tensor:
        for k in sorted((k for k in choices if kernel <= k < weight.shape[2]), reverse=True):
            start = (weight.shape[2] - k) // 2
            weight = weight[:, :, start:start + k] @ self.kernel_transforms[f"{key}/{k}"]
        if weight.shape[2] != kernel:
            raise ValueError(f"{key}: no elastic path from kernel {weight.shape[2]} to {kernel}")
        return weight

    def _skeleton(self, arch: Arch) -> Subnet:
        """Parameter-free (meta) module of ``arch``, cached: building modules is slow next to a step."""
        skeleton = self._skeletons.get(arch)
        if skeleton is None:
            with torch.device("meta"):
                skeleton = Subnet(arch, self.space, self.dropout)
            self._skeletons[arch] = skeleton
            if len(self._skeletons) > 256:
                self._skeletons.popitem(last=False)
        else:
            self._skeletons.move_to_end(arch)
        return skeleton


def load_supernet(path, map_location="cpu") -> Supernet:
    """Load a supernet saved with :func:`save_supernet`; an unreadable file is a one-line error."""
    try:
        state = checkpoint_dict(torch.load(path, map_location=map_location, weights_only=True))
        config = state["config"]
        space = SpaceConfig.from_dict(config["space"])
        dropout, metadata, weights = float(config["dropout"]), config.get("metadata"), state["weights"]
    except UNREADABLE as e:
        raise PredictnasError(f"{path}: not a predictnas supernet checkpoint "
                              f"({unreadable_reason(e)})") from None
    check_model_version(state, path)
    supernet = Supernet(space, dropout=dropout, metadata=metadata)
    try:
        supernet.load_state_dict(weights)
    except (RuntimeError, TypeError, AttributeError) as e:  # weights of another model version: missing or unexpected parameters
        raise PredictnasError(f"{path}: its weights do not fit this version's supernet "
                              f"({one_line(e, 160)}); train it again") from None
    check_finite(supernet, path)
    return supernet


# what torch.load and reading a checkpoint's fields raise for a file that is not one (EOFError: empty)
UNREADABLE = (OSError, EOFError, RuntimeError, KeyError, IndexError, TypeError, ValueError, AttributeError,
              pickle.UnpicklingError)


def checkpoint_dict(state) -> dict:
    if not isinstance(state, dict):
        raise TypeError(f"holds a {type(state).__name__}, not the dictionary predictnas writes")
    return state


def unreadable_reason(error: BaseException) -> str:
    return "empty or truncated file" if isinstance(error, EOFError) else f"{type(error).__name__}: {one_line(error, 120)}"


def check_finite(model: nn.Module, path) -> None:
    """Refuse weights with NaN or infinity: every output computed from them would be NaN, and compared with
    itself (export parity) or scored (WER of blanks) it would pass for a model."""
    broken = [name for name, p in model.state_dict().items() if p.is_floating_point() and not torch.isfinite(p).all()]
    if broken:
        raise PredictnasError(f"{path}: {len(broken)} weight tensors hold NaN or infinity (first: {broken[0]}); "
                              "the training that wrote it diverged")


def check_model_version(state: dict, path) -> None:
    """Refuse weights saved by a model version that computed something else with them."""
    version = state.get("model_version", 1)
    if version != MODEL_VERSION:
        raise PredictnasError(f"{path}: weights of model version {version}, but this predictnas computes version "
                              f"{MODEL_VERSION} with them; train it again (or move it away to start afresh)")


def save_supernet(supernet: Supernet, path) -> None:
    """Write atomically: weights plus the config that rebuilds the module."""
    with atomic_path(path) as tmp:
        torch.save({"config": supernet.config(), "model_version": MODEL_VERSION, "weights": supernet.state_dict()}, tmp)


def save_subnet(subnet: Subnet, path) -> None:
    """Write a standalone subnet atomically: its architecture, space and weights."""
    with atomic_path(path) as tmp:
        torch.save({"arch": subnet.arch.to_dict(), "space": subnet.space.to_dict(), "model_version": MODEL_VERSION,
                    "weights": subnet.state_dict()}, tmp)


def load_subnet(path) -> Subnet:
    from ..space import SearchSpace

    try:
        state = checkpoint_dict(torch.load(path, map_location="cpu", weights_only=True))
        space = SpaceConfig.from_dict(state["space"])
        check_model_version(state, path)
        subnet = Subnet(SearchSpace(space).from_json(state["arch"]), space)
        subnet.load_state_dict(state["weights"])
    except UNREADABLE as e:
        raise PredictnasError(f"{path}: not a predictnas subnet file "
                              f"({unreadable_reason(e)})") from None
    check_finite(subnet, path)
    return subnet
