"""Shared fixtures and helpers: a randomly initialised torchvision VGG19 stands in for the
pretrained one; the MNIST fixture; bit-exact comparison of pytrees. The cache folder is a
temporary one, so tests neither read nor fill the user's."""

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

FIXTURES = Path(__file__).parent / "fixtures"
# Set at import, before any test or subprocess starts, so both see it.
os.environ["JAXART_CACHE"] = tempfile.mkdtemp(prefix="jaxart-test-cache-")


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


FIXTURE = FIXTURES / "mnist-small"  # 2,048 MNIST training and 512 test images


def assert_same_bits(a, b) -> None:
    """Two pytrees of arrays have the same structure and bit-identical leaves."""
    import jax

    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
