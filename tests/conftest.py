import numpy as np
import pytest
import torch

from predictnas.space import SearchSpace, get_space
from predictnas.supernet import Supernet


@pytest.fixture(scope="session")
def space() -> SearchSpace:
    return get_space()


@pytest.fixture(scope="session")
def supernet(space) -> Supernet:
    """A supernet whose zero/identity-initialised parts are perturbed, so every path is exercised:
    dense skip weights start at zero and kernel transforms at identity, which would hide mistakes."""
    torch.manual_seed(0)
    net = Supernet(space.config).eval()
    with torch.no_grad():
        for name, p in net.shared.items():
            if name.endswith("skip_weights"):
                p.uniform_(-0.5, 0.5)
        for p in net.kernel_transforms.values():
            p.add_(0.1 * torch.randn_like(p))
    return net


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
