"""Shared fixtures: a randomly initialised torchvision VGG19 stands in for the pretrained one."""

from pathlib import Path

import numpy as np
import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def torch_vgg19():
    """torchvision's vgg19() with random weights from a fixed torch seed, in eval mode."""
    import torch
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.vgg19().eval()


@pytest.fixture(scope="session")
def torch_vgg19_file(torch_vgg19, tmp_path_factory) -> Path:
    """That model's state_dict saved as a .pth file, as torchvision ships it."""
    import torch

    path = tmp_path_factory.mktemp("torch") / "vgg19-random.pth"
    torch.save(torch_vgg19.state_dict(), path)
    return path


@pytest.fixture(scope="session")
def vgg_params(torch_vgg19):
    """The same weights converted to Flax params."""
    from jaxart import weights

    return weights.convert_state_dict(torch_vgg19.state_dict())


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
