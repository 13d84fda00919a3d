import numpy as np
import pytest
import torch

from predictnas.space import SearchSpace, get_space
from predictnas.supernet import Supernet

from commandline import cli_env


@pytest.fixture(scope="session")
def space() -> SearchSpace:
    return get_space()


@pytest.fixture(scope="session")
def supernet(space) -> Supernet:
    torch.manual_seed(0)
    return Supernet(space.config).eval().perturb_neutral_parts()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict:
    """Environment for the ``predictnas`` subprocesses of one test module (its own corpus cache)."""
    return cli_env(tmp_path_factory.mktemp("cache"))
