"""Generator and discriminator architectures, by name.

Every model takes `train: bool` so architectures with batch statistics can
join the registry; collections other than 'params' travel in the train state.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxart.gan.config import GANConfig

IMAGE_SHAPE = (28, 28)


def torch_dense(features: int, fan_in: int) -> nn.Dense:
    """nn.Dense initialised as torch.nn.Linear: weight and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)).

    Matching the seed's initialisation keeps its training dynamics (flax's
    default lecun-normal kernel and zero bias start the game elsewhere).
    """
    bound = 1.0 / math.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return nn.Dense(features, kernel_init=init, bias_init=init)


class MLPGenerator(nn.Module):
    """The seed's G: latent -> hidden -> hidden -> 784, ReLU, sigmoid output."""

    hidden_dim: int = 256

    @nn.compact
    def __call__(self, z: jax.Array, train: bool = True) -> jax.Array:
        """z (B, latent_dim) -> images (B, 28, 28) in [0, 1]."""
        x = nn.relu(torch_dense(self.hidden_dim, z.shape[-1])(z))
        x = nn.relu(torch_dense(self.hidden_dim, self.hidden_dim)(x))
        x = torch_dense(math.prod(IMAGE_SHAPE), self.hidden_dim)(x)
        return nn.sigmoid(x).reshape(z.shape[0], *IMAGE_SHAPE)


class MLPDiscriminator(nn.Module):
    """The seed's D without its final sigmoid: 784 -> hidden -> hidden -> 1, LeakyReLU(0.2)."""

    hidden_dim: int = 256

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = True) -> jax.Array:
        """images (B, 28, 28) in [0, 1] -> logits (B,) of 'real'."""
        x = images.reshape(images.shape[0], -1)
        x = nn.leaky_relu(torch_dense(self.hidden_dim, x.shape[-1])(x), 0.2)
        x = nn.leaky_relu(torch_dense(self.hidden_dim, self.hidden_dim)(x), 0.2)
        return torch_dense(1, self.hidden_dim)(x)[:, 0]


def mlp(config: GANConfig) -> tuple[nn.Module, nn.Module]:
    return MLPGenerator(config.hidden_dim), MLPDiscriminator(config.hidden_dim)


# Name -> (config -> (generator, discriminator)); `--model` chooses among the keys.
MODELS: dict[str, Callable[[GANConfig], tuple[nn.Module, nn.Module]]] = {"mlp": mlp}


def make_models(config: GANConfig) -> tuple[nn.Module, nn.Module]:
    """The (generator, discriminator) pair named by `config.model`."""
    try:
        build = MODELS[config.model]
    except KeyError:
        raise ValueError(f"unknown model {config.model!r}; known: {', '.join(MODELS)}") from None
    return build(config)
