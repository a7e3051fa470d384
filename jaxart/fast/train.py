"""Training a feed-forward style network (Johnson et al., with Dumoulin et al.'s conditional
instance norm) as pure functions of (state, batch, key, objective).

The loss is the optimisation's own (`jaxart.style.transfer.loss_fn`), taken per image with that
image's content features and its style's Gram targets, then averaged over the batch: the same
layers, weights and Gram normalisation as `python -m jaxart.style`, not a second derivation.

Step i draws the styles of its crops from `fold_in(key, i)`: a random first style, then the next
ones in turn, so a batch of at least N crops holds every one of the N styles. The state alone
says where a run is, so a resume continues with exactly the draws an uninterrupted run makes.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any, NamedTuple, cast

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from jaxart import vgg, weights
from jaxart.fast.config import TrainConfig
from jaxart.images import to_float
from jaxart.style.config import StyleConfig, size_scaled_style_weight
from jaxart.style.transfer import Targets, content_features, loss_fn, style_grams

__all__ = [
    "FastState",
    "Objective",
    "init_state",
    "make_objective",
    "perceptual_loss",
    "resolve",
    "run_keys",
    "stylize",
    "train_step",
    "train_steps",
]

Params = Any
Metrics = dict[str, jax.Array]
METRICS = ("loss", "content_loss", "style_loss")


@struct.dataclass
class FastState:
    """Everything a run carries from step to step (a pytree, saved whole by a checkpoint)."""

    step: jax.Array  # int32 (): steps taken so far
    params: Params  # the network's
    opt_state: optax.OptState


@struct.dataclass
class Objective:
    """What the network is trained towards, fixed for a run: the VGG19 params, each style's Gram
    targets at the crop size {layer: (N, C, C)}, and the config (static: the step compiles for it)."""

    vgg: Params
    style_grams: dict[str, jax.Array]
    config: TrainConfig = struct.field(pytree_node=False)


class RunKeys(NamedTuple):
    """Independent PRNG keys of one run, all from its seed."""

    init: jax.Array  # the network's parameters
    data: jax.Array  # crops, their photos and the held-out photos (`jaxart.fast.photos`)
    train: jax.Array  # step i's styles: fold_in(train, i)


@jax.jit
def run_keys(seed: int | jax.Array) -> RunKeys:
    """The run's keys, all from its seed."""
    return RunKeys(*jax.random.split(jax.random.key(seed), 3))


# The optimisation starts from the photo and settles in a minimum near it, so it bears a style
# weight whose global minimum is texture; a network finds that global trade-off. Measured at
# 128 px on the bundled style: the style job's weight (9.8e-5) and a fifth of it trained
# networks that drew texture only (300 and 200 steps); 3e-6, about 1/32, kept the photos.
NETWORK_STYLE_SCALE = 1 / 32


def resolve(config: TrainConfig, vgg_params: Params) -> TrainConfig:
    """`config` with its style weight set: as given, or else the VGG19's own default
    (`jaxart.weights.style_defaults`, the style job's, stated for 400 px) scaled to the crops'
    size, as the style command does, times NETWORK_STYLE_SCALE."""
    if config.style_weight is not None:
        return config
    weight = weights.style_defaults(vgg_params).get("style_weight", StyleConfig.style_weight)
    scaled = size_scaled_style_weight(weight, config.size) * NETWORK_STYLE_SCALE
    return dataclasses.replace(config, style_weight=scaled)


def _optimizer(config: TrainConfig) -> optax.GradientTransformation:
    return optax.adam(config.lr)


def init(key: jax.Array, config: TrainConfig) -> FastState:
    """Fresh network parameters and Adam state at step 0 (unjitted: `init_state` compiles it)."""
    size = 4 * 4  # any size the network takes: its parameters do not depend on it
    images = jnp.zeros((1, size, size, 3), jnp.float32)
    params = config.network.init(key, images, jnp.ones((1, len(config.style)), jnp.float32))["params"]
    return FastState(jnp.zeros((), jnp.int32), params, _optimizer(config).init(params))


@functools.partial(jax.jit, static_argnums=1)
def init_state(key: jax.Array, config: TrainConfig) -> FastState:
    """The state at step 0 of a run configured as `config`, its parameters from `key`."""
    return init(key, config)


def state_shapes(config: TrainConfig) -> FastState:
    """Shapes and dtypes of the states of `config`'s network (what a checkpoint restores into)."""
    return jax.eval_shape(functools.partial(init, config=config), jax.random.key(0))


def make_objective(vgg_params: Params, styles: Sequence[np.ndarray], config: TrainConfig) -> Objective:
    """The objective of a resolved `config` (`resolve`): each style's Gram targets at the crop
    size, computed as the optimisation computes them (`jaxart.style.transfer.style_grams`).

    styles: (h, w, 3) RGB in [0, 1], one per `config.style`, of any sizes."""
    shape = (config.size, config.size, 3)
    grams = [_style_grams(vgg_params, jnp.asarray(style), shape, config.loss) for style in styles]
    stacked = {name: jnp.stack([g[name] for g in grams]) for name in grams[0]}
    return Objective(vgg_params, stacked, config)


@functools.partial(jax.jit, static_argnums=(2, 3))
def _style_grams(vgg_params: Params, style: jax.Array, shape: tuple[int, ...], loss: Any) -> dict[str, jax.Array]:
    return style_grams(vgg_params, vgg.normalize(style), shape, loss)


def perceptual_loss(
    vgg_params: Params,
    stylized: jax.Array,
    content: jax.Array,
    style_grams: dict[str, jax.Array],
    config: TrainConfig,
) -> tuple[jax.Array, Metrics]:
    """The optimisation's loss (`jaxart.style.transfer.loss_fn`) of each stylised image against its
    content and its style, averaged over the batch.

    Args:
      stylized, content: (B, H, W, 3) RGB in [0, 1].
      style_grams: each image's style Gram targets, {layer: (B, C, C)}.
      config: a resolved config (`resolve`): its layers and loss weights.
    Returns:
      (loss, {"loss", "content_loss", "style_loss"}), each the batch mean of the images' values.
    """
    loss = config.loss
    program = loss.program
    weights = jnp.float32(loss.content_weight), jnp.float32(loss.style_weight), jnp.float32(loss.tv_weight)

    def one(image: jax.Array, content_image: jax.Array, grams: dict[str, jax.Array]) -> tuple[jax.Array, Metrics]:
        targets = Targets(content_features(vgg_params, vgg.normalize(content_image), loss), grams, *weights)
        return loss_fn(vgg.normalize(image), vgg_params, targets, program)

    losses, parts = jax.vmap(one)(stylized, content, style_grams)
    return jnp.mean(losses), {name: jnp.mean(value) for name, value in parts.items()}


def styles_of(key: jax.Array, step: jax.Array, batch_size: int, styles: int) -> jax.Array:
    """The style index (B,) of each crop of `step`: a random first one, then the next in turn."""
    first = jax.random.randint(jax.random.fold_in(key, step), (), 0, styles)
    return (first + jnp.arange(batch_size)) % styles


def step(state: FastState, batch: jax.Array, key: jax.Array, objective: Objective) -> tuple[FastState, Metrics]:
    """One Adam step on a batch of crops, unjitted: the unit `train_step` and `train_steps` compile."""
    config = objective.config
    content = to_float(batch) if batch.dtype == jnp.uint8 else batch.astype(jnp.float32)
    count = len(config.style)
    chosen = styles_of(key, state.step, content.shape[0], count)
    mix = jax.nn.one_hot(chosen, count, dtype=jnp.float32)
    grams = {name: g[chosen] for name, g in objective.style_grams.items()}

    def loss(params: Params) -> tuple[jax.Array, Metrics]:
        # Without `mutable`, flax's apply returns the output alone (its annotation allows a pair).
        stylized = cast(jax.Array, config.network.apply({"params": params}, content, mix))
        return perceptual_loss(objective.vgg, stylized, content, grams, config)

    (_, metrics), grads = jax.value_and_grad(loss, has_aux=True)(state.params)
    updates, opt_state = _optimizer(config).update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return FastState(state.step + 1, params, opt_state), metrics


@functools.partial(jax.jit, donate_argnums=0)
def train_step(state: FastState, batch: jax.Array, key: jax.Array, objective: Objective) -> tuple[FastState, Metrics]:
    """One step, jit-compiled, donating `state`.

    Args:
      state: the run's state at step i.
      batch: crops (B, size, size, 3), uint8 or float in [0, 1].
      key: the run's training key (`run_keys(seed).train`); step i uses fold_in(key, i).
      objective: `make_objective`'s.
    Returns:
      (state at step i + 1, metrics): loss, content_loss and style_loss of the batch before the update.
    """
    return step(state, batch, key, objective)


def scan_steps(state: FastState, batches: jax.Array, key: jax.Array, objective: Objective) -> tuple[FastState, Metrics]:
    """`step` on each of `batches` (L, B, ...) in one program; metrics stacked to (L,)."""
    if batches.shape[0] == 1:  # XLA's CPU convolutions run slower inside a loop body
        state, metrics = step(state, batches[0], key, objective)
        return state, jax.tree.map(lambda m: m[None], metrics)
    return jax.lax.scan(lambda s, b: step(s, b, key, objective), state, batches)


@functools.partial(jax.jit, donate_argnums=0)
def train_steps(
    state: FastState, batches: jax.Array, key: jax.Array, objective: Objective
) -> tuple[FastState, Metrics]:
    """len(batches) steps in one compiled call (batches (L, B, size, size, 3)); metrics stacked to (L,)."""
    return scan_steps(state, batches, key, objective)


@functools.partial(jax.jit, static_argnums=3)
def stylize(params: Params, images: jax.Array, mix: jax.Array, config: TrainConfig) -> jax.Array:
    """The network of `config` with `params` on (B, H, W, 3) RGB images in [0, 1] (uint8 or
    float), each in its mix of styles (B, N) (a one-hot row: one style); returns float32 in [0, 1]."""
    images = to_float(images) if images.dtype == jnp.uint8 else images.astype(jnp.float32)
    return cast(jax.Array, config.network.apply({"params": params}, images, mix))
