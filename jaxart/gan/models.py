"""Generator and discriminator architectures, by name.

Every model takes `train: bool` so architectures with batch statistics can
join the registry; collections other than 'params' travel in the train state. Each is
class-conditional with `num_classes`: G takes the label one-hot beside its noise (Mirza &
Osindero 2014), D is a projection discriminator (Miyato & Koyama 2018) that scores an image
against every class at once (`Scores`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxart.data import IMAGE_SHAPE, NUM_CLASSES
from jaxart.errors import ConfigError, option
from jaxart.gan.config import GANConfig, ModelConfig


def _torch_uniform(fan_in: int) -> Callable:
    """torch.nn.Linear's initialisation of weight and bias: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def _torch_dense(features: int, fan_in: int) -> nn.Dense:
    """nn.Dense initialised as torch.nn.Linear.

    Matching the seed's initialisation keeps its training dynamics (flax's
    default lecun-normal kernel and zero bias start the game elsewhere).
    """
    init = _torch_uniform(fan_in)
    return nn.Dense(features, kernel_init=init, bias_init=init)


def _with_labels(x: jax.Array, labels: jax.Array | None, num_classes: int) -> jax.Array:
    """A generator layer's input (B, F): for a conditional model, the labels one-hot beside it
    (Mirza & Osindero 2014); `x` itself for an unconditional one."""
    if not num_classes:
        return x
    return jnp.concatenate([x, jax.nn.one_hot(labels, num_classes, dtype=x.dtype)], axis=-1)


class Scores(NamedTuple):
    """A conditional discriminator's reading of images (B, 28, 28)."""

    # (B, classes): column c is the logit of "real, of class c", the projection discriminator's
    # logit for label c. Softmax over a row is a classifier (the columns' shared unconditional
    # term cancels), through which G's class loss reaches its fakes.
    logits: jax.Array
    # (B, classes): the same classifier on D's features held constant, which D's class loss trains:
    # only the class embeddings learn to classify, so the loss leaves D's features to the
    # adversarial game (trained through them, it let D win outright: benchmarks/RESULTS.md).
    class_logits: jax.Array


def _projection(features: jax.Array, logit: jax.Array, num_classes: int, init: Callable) -> jax.Array | Scores:
    """A projection discriminator's `Scores` (Miyato & Koyama 2018): the unconditional `logit`
    (B,) plus, per class, the inner product of the features (B, F) with the class's learned
    embedding, initialised by `init`; `logit` itself for an unconditional discriminator."""
    if not num_classes:
        return logit
    embed = nn.Embed(num_classes, features.shape[-1], embedding_init=init)
    return Scores(logit[:, None] + embed.attend(features), embed.attend(jax.lax.stop_gradient(features)))


class MLPGenerator(nn.Module):
    """The seed's G: latent -> hidden -> hidden -> 784, ReLU, sigmoid output; with `num_classes`,
    the label one-hot beside the latent and beside each hidden layer's output.

    Seen at every layer rather than at the input alone, the label has the hardest digit drawn as
    asked more often (91.5 -> 93.1%, averaged generator, 5 seeds), from a closer and more varied
    distribution (FCD 19.1 -> 15.6, recall 0.21 -> 0.29; benchmarks/RESULTS.md, "The conditional
    MLP's generator sees the label at every layer").
    """

    hidden_dim: int = 256
    num_classes: int = 0  # 0: unconditional

    @nn.compact
    def __call__(self, z: jax.Array, labels: jax.Array | None = None, train: bool = True) -> jax.Array:
        """z (B, latent_dim), labels (B,) int of a conditional model -> images (B, 28, 28) in [0, 1]."""
        x = _with_labels(z, labels, self.num_classes)
        for _ in range(2):
            x = nn.relu(_torch_dense(self.hidden_dim, x.shape[-1])(x))
            x = _with_labels(x, labels, self.num_classes)
        x = _torch_dense(math.prod(IMAGE_SHAPE), x.shape[-1])(x)
        return nn.sigmoid(x).reshape(z.shape[0], *IMAGE_SHAPE)


class MLPDiscriminator(nn.Module):
    """The seed's D without its final sigmoid: 784 -> hidden -> hidden -> 1, LeakyReLU(0.2); with
    `num_classes`, a projection discriminator on the last hidden layer.

    Its class embeddings start at zero, so D starts unconditional and learns the classes: started
    as the dense layers are, 1 of 5 seeds collapsed at 20 epochs, at zero none (benchmarks/RESULTS.md).
    """

    hidden_dim: int = 256
    num_classes: int = 0

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = True) -> jax.Array | Scores:
        """images (B, 28, 28) in [0, 1] -> logits (B,) of 'real'; a conditional model's `Scores`."""
        x = images.reshape(images.shape[0], -1)
        x = nn.leaky_relu(_torch_dense(self.hidden_dim, x.shape[-1])(x), 0.2)
        x = nn.leaky_relu(_torch_dense(self.hidden_dim, self.hidden_dim)(x), 0.2)
        logit = _torch_dense(1, self.hidden_dim)(x)[:, 0]
        return _projection(x, logit, self.num_classes, nn.initializers.zeros)


def num_classes(config: ModelConfig) -> int:
    """The classes a model is conditioned on: 0 for an unconditional one."""
    return NUM_CLASSES if config.conditional else 0


def mlp(config: ModelConfig) -> tuple[nn.Module, nn.Module]:
    classes = num_classes(config)
    width = hidden_dim(config)
    return MLPGenerator(width, classes), MLPDiscriminator(width, classes)


def _dcgan_init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
    """The DCGAN paper's initialisation (Radford et al. 2016): weights ~ N(0, 0.02) (biases zero).

    nn.initializers.normal(0.02), with a barrier: `init_state` is compiled, and XLA would fold
    the 0.02 into the normal's own constants, giving other bits than the op-by-op init
    (and the runs) of earlier versions.
    """
    return jax.lax.optimization_barrier(jax.random.normal(key, shape, dtype)) * 0.02


# Kernel tap of nn.ConvTranspose((4, 4), (2, 2), "SAME") that output phase a (row 2q + a) takes
# from input offset d (row q + d), per spatial axis: 2d + 2 - a; taps outside 0..3 are absent.
_TAPS = np.array([[2 * d + 2 - a for d in (-1, 0, 1)] for a in (0, 1)])  # (phase, offset)
_TAP_PRESENT = ((_TAPS >= 0) & (_TAPS < 4)).astype(np.float32)


class ConvTranspose2x(nn.Module):
    """nn.ConvTranspose(features, (4, 4), (2, 2), "SAME"), same parameters and output, computed
    as one 3x3 convolution at the input's resolution into the 4 output phases, then interleaved.

    CPU-tuned: XLA's CPU gradient of a transposed convolution (a window-dilated convolution)
    is slow. Measured on the 2-core CPU (jax 0.10.2, batch 32, gradient of kernel and input):
    7x7x128 -> 14x14x64 took 206 ms as nn.ConvTranspose and 33 ms in this form (6.2x);
    14x14x64 -> 28x28x1 8.0 and 2.2 ms (3.7x). On a GPU the plain form may well be as fast.
    """

    features: int
    use_bias: bool = True
    kernel_init: Callable = _dcgan_init

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """x (B, H, W, C) -> (B, 2H, 2W, features)."""
        batch, height, width, channels = x.shape
        kernel = self.param("kernel", self.kernel_init, (4, 4, channels, self.features))
        present = _TAP_PRESENT[:, :, None, None, None, None] * _TAP_PRESENT[None, None, :, :, None, None]
        phases = kernel[_TAPS.clip(0, 3)][:, :, _TAPS.clip(0, 3)] * present  # (a_y, d_y, a_x, d_x, C, F)
        phases = phases.transpose(1, 3, 4, 0, 2, 5).reshape(3, 3, channels, 4 * self.features)
        y = jax.lax.conv_general_dilated(x, phases, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        y = y.reshape(batch, height, width, 2, 2, self.features).transpose(0, 1, 3, 2, 4, 5)
        y = y.reshape(batch, 2 * height, 2 * width, self.features)
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,))
        return y


class DCGANGenerator(nn.Module):
    """latent -> dense 7x7xC -> transposed convs to 14x14xC/2 and 28x28x1; batch norm and ReLU between.

    Batch norm as torch's (momentum 0.1, eps 1e-5): batch statistics in training
    (updating the running averages in 'batch_stats'), the running averages otherwise.
    """

    channels: int = 128
    num_classes: int = 0  # with classes, the label one-hot beside the latent

    @nn.compact
    def __call__(self, z: jax.Array, labels: jax.Array | None = None, train: bool = True) -> jax.Array:
        """z (B, latent_dim), labels (B,) int of a conditional model -> images (B, 28, 28) in [0, 1]."""

        def norm(x: jax.Array) -> jax.Array:
            return nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)(x))

        # No bias before batch norm: its mean subtraction would cancel it.
        x = nn.Dense(7 * 7 * self.channels, use_bias=False, kernel_init=_dcgan_init)(
            _with_labels(z, labels, self.num_classes)
        )
        x = norm(x.reshape(z.shape[0], 7, 7, self.channels))
        x = norm(ConvTranspose2x(self.channels // 2, use_bias=False)(x))  # (B, 14, 14, C/2)
        x = ConvTranspose2x(1)(x)
        return nn.sigmoid(x[..., 0])


class DCGANDiscriminator(nn.Module):
    """28x28x1 -> strided convs to 14x14xC/2 and 7x7xC, LeakyReLU(0.2) -> logit; no batch norm.

    Without batch norm D's three passes per step (real, fake, fake after its update)
    stay independent of each other's batches, and D needs no running statistics.
    """

    channels: int = 128
    num_classes: int = 0  # with classes, a projection discriminator on the 7x7 features

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = True) -> jax.Array | Scores:
        """images (B, 28, 28) in [0, 1] -> logits (B,) of 'real'; a conditional model's `Scores`."""
        x = images[..., None]
        for features in (self.channels // 2, self.channels):
            x = nn.Conv(features, (4, 4), (2, 2), "SAME", kernel_init=_dcgan_init)(x)
            x = nn.leaky_relu(x, 0.2)
        x = x.reshape(x.shape[0], -1)
        logit = nn.Dense(1, kernel_init=_dcgan_init)(x)[:, 0]
        # Embeddings initialised as the logit's own layer: neither term outweighs the other at the start.
        return _projection(x, logit, self.num_classes, _dcgan_init)


def dcgan(config: ModelConfig) -> tuple[nn.Module, nn.Module]:
    channels, classes = hidden_dim(config) // 2, num_classes(config)
    return DCGANGenerator(channels, classes), DCGANDiscriminator(channels, classes)


class Architecture(NamedTuple):
    build: Callable[[ModelConfig], tuple[nn.Module, nn.Module]]  # config -> (generator, discriminator)
    b1: float  # Adam's b1 when the config leaves it unset: what the architecture was published with
    # Steps per compiled call when the run leaves it unset, on CPU and on a GPU or TPU (see
    # `steps_per_call`).
    cpu_steps_per_call: int
    accelerator_steps_per_call: int
    # The class loss's weight of a conditional model when the config leaves it unset: what was
    # measured to serve the model best (benchmarks/RESULTS.md, "A class loss for the conditional MLP").
    class_weight: float
    # The hidden width when the config leaves it unset, unconditional and conditional.
    hidden_dim: int
    conditional_hidden_dim: int


# `--model` chooses among the keys.
MODELS: dict[str, Architecture] = {
    # The seed: torch.optim.Adam's default betas, 256 wide. The class loss lifted the hardest
    # digit from 70-80% classified as asked to 90-93% (averaged generator, 5 seeds), with a better
    # FCD; b1 0.5 and heavier class losses were tried against it and lost. Twice as wide, the
    # conditional MLP draws every digit as asked 95-97% of the time, with half the FCD and more
    # variety (RESULTS.md, "The conditional MLP twice as wide").
    "mlp": Architecture(mlp, 0.9, 50, 50, 1.0, 256, 512),
    # Radford et al.: Adam(2e-4, b1 0.5). Without a class loss every digit is classified as
    # asked for 96-97% already; with one, FCD and recall were worse.
    "dcgan": Architecture(dcgan, 0.5, 1, 50, 0.0, 256, 256),
}


def architecture(config: ModelConfig | GANConfig) -> Architecture:
    """The registry entry named by `config.model`."""
    try:
        return MODELS[config.model]
    except KeyError as e:
        raise ConfigError(f"unknown {option('model')} {config.model!r}; known: {', '.join(MODELS)}") from e


def make_models(config: ModelConfig) -> tuple[nn.Module, nn.Module]:
    """The (generator, discriminator) pair named by `config.model`."""
    return architecture(config).build(config)


def steps_per_call(config: ModelConfig | GANConfig, asked: int | None) -> int:
    """`asked` (a run's `steps_per_call`), or when unset the model's own for this backend:
    mlp 50; dcgan 1 on CPU, 50 on GPU/TPU.

    Measured (benchmarks/RESULTS.md): on a quiet 2-core CPU the MLP ran 609 steps/s at 50 per
    call against 448 at 1 (medians), while XLA's CPU convolutions run ~15x slower inside a
    loop body (the DCGAN: 22 steps/s at 1 per call, 1.5 at 50). On an H200 (issue 11) a call's
    launch costs more than a step: the DCGAN's 2,000 steps took 3.9 s at 1 per call, 2.1 s at 50.
    The MLP's results do not depend on the steps per call (tested), so the choice changes no
    numbers; the DCGAN's can differ in the last bits.
    """
    if asked is not None:
        return asked
    model = architecture(config)
    return model.cpu_steps_per_call if jax.default_backend() == "cpu" else model.accelerator_steps_per_call


def class_weight(config: ModelConfig | GANConfig) -> float:
    """The class loss's weight: `config.class_weight`, or when unset the model's own; 0 for an
    unconditional model."""
    if not config.conditional:
        return 0.0
    return architecture(config).class_weight if config.class_weight is None else config.class_weight


def hidden_dim(config: ModelConfig | GANConfig) -> int:
    """`config.hidden_dim`, or when unset the model's own (conditional or not)."""
    if config.hidden_dim is not None:
        return config.hidden_dim
    model = architecture(config)
    return model.conditional_hidden_dim if config.conditional else model.hidden_dim


def adam_b1(config: GANConfig) -> float:
    """`config.b1`, or the model's own when unset."""
    return architecture(config).b1 if config.b1 is None else config.b1
