"""The optimisation: one jit-compiled Adam step over the target image, and the loop around it.

The target image is the pytree being optimised. Content features and style Gram
matrices are computed once, before the loop (the seed recomputes them every step).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxart import vgg
from jaxart.style.config import StyleConfig
from jaxart.style.losses import content_loss, gram_matrix, style_loss

METRICS = ("loss", "content_loss", "style_loss")


class Targets(NamedTuple):
    """What the target is pulled towards, and how hard: content features {layer: (1, H, W, C)},
    style Gram matrices {layer: (C, C)} and the two losses' weights (scalars).

    The weights travel here rather than in the config so that a batch of transfers
    can `vmap` over them.
    """

    content: dict[str, jax.Array]
    style_grams: dict[str, jax.Array]
    content_weight: jax.Array
    style_weight: jax.Array


def _features(params: Any, image: jax.Array, layers: tuple[str, ...], config: StyleConfig) -> dict[str, jax.Array]:
    model = vgg.VGG19(pooling=config.pooling, dtype=jnp.dtype(config.dtype), remat=config.remat)
    return model.apply({"params": params}, image[None], layers)


def compute_targets(params: Any, content: jax.Array, style: jax.Array, config: StyleConfig) -> Targets:
    """Features of the normalised (H, W, 3) content and style images, computed once."""
    content_features = _features(params, content, config.content_layers, config)
    style_features = _features(params, style, config.style_layers, config)
    return Targets(
        content_features,
        {name: gram_matrix(f[0]) for name, f in style_features.items()},
        jnp.float32(config.content_weight),
        jnp.float32(config.style_weight),
    )


def loss_fn(image: jax.Array, params: Any, targets: Targets, config: StyleConfig) -> tuple[jax.Array, dict]:
    """The total loss of a normalised (H, W, 3) target image, and its parts.

    Returns (loss, {"loss", "content_loss", "style_loss"}), all float32 scalars.
    """
    feats = _features(params, image, config.layers, config)
    c = content_loss(feats, targets.content, dict.fromkeys(config.content_layers, 1.0))
    s = style_loss(feats, targets.style_grams, dict.fromkeys(config.style_layers, 1.0))
    loss = targets.content_weight * c + targets.style_weight * s
    return loss, {"loss": loss, "content_loss": c, "style_loss": s}


def optimizer(config: StyleConfig) -> optax.GradientTransformation:
    return optax.adam(config.lr, b1=config.b1, b2=config.b2)


class State(NamedTuple):
    """The optimisation state: the normalised (H, W, 3) target and Adam's state."""

    image: jax.Array
    opt_state: optax.OptState


def init_state(content: jax.Array, config: StyleConfig) -> State:
    """The target starts as the (normalised) content image, as in the seed."""
    return State(content, optimizer(config).init(content))


def train_step(state: State, params: Any, targets: Targets, config: StyleConfig) -> tuple[State, dict]:
    """One Adam step; metrics are those of the image *before* the update."""
    grads, metrics = jax.grad(loss_fn, has_aux=True)(state.image, params, targets, config)
    updates, opt_state = optimizer(config).update(grads, state.opt_state, state.image)
    return State(optax.apply_updates(state.image, updates), opt_state), metrics


@functools.partial(jax.jit, static_argnames=("config", "num_steps"), donate_argnums=(0,))
def train_steps(
    state: State, params: Any, targets: Targets, config: StyleConfig, num_steps: int
) -> tuple[State, dict]:
    """`num_steps` steps in one compiled call; metrics stacked: {name: (num_steps,)}."""
    if num_steps == 1:
        state, metrics = train_step(state, params, targets, config)
        return state, jax.tree.map(lambda m: m[None], metrics)
    return jax.lax.scan(lambda s, _: train_step(s, params, targets, config), state, length=num_steps)


def output_image(image: jax.Array) -> jax.Array:
    """Normalised target -> displayable RGB in [0, 1] (denormalised, then clamped)."""
    return jnp.clip(vgg.denormalize(image), 0.0, 1.0)


def iterate(
    content: np.ndarray,
    style: np.ndarray,
    params: Any,
    config: StyleConfig,
    stops: tuple[int, ...] = (),
) -> Iterator[tuple[int, State, dict[str, np.ndarray]]]:
    """Runs the optimisation, yielding after each compiled call.

    Args:
      content, style: (H, W, 3) float RGB in [0, 1], the same size.
      stops: step counts at which a call must end (e.g. to save an image there).
    Yields:
      (steps done so far, state, {metric: (steps in this call,) float32}).
    """
    if content.shape != style.shape:
        raise ValueError(f"content {content.shape} and style {style.shape} must have the same shape")
    content_n, style_n = vgg.normalize(jnp.asarray(content)), vgg.normalize(jnp.asarray(style))
    targets = compute_targets(params, content_n, style_n, config)
    state = init_state(content_n, config)
    done = 0
    boundaries = sorted({s for s in stops if 0 < s < config.steps} | {config.steps})
    while done < config.steps:
        upcoming = next(b for b in boundaries if b > done)
        n = min(config.steps_per_call, upcoming - done)
        state, metrics = train_steps(state, params, targets, config, n)
        done += n
        yield done, state, jax.device_get(metrics)


def stylize(
    content: np.ndarray, style: np.ndarray, params: Any, config: StyleConfig = StyleConfig()
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Gatys style transfer.

    Args:
      content: (H, W, 3) float RGB in [0, 1].
      style: (H, W, 3) float RGB in [0, 1], already resized to the content's size.
      params: VGG19 params (see `jaxart.weights.load`).
      config: every option; the defaults are the seed's.
    Returns:
      (image, history): the stylised (H, W, 3) float32 RGB in [0, 1], and
      {"loss", "content_loss", "style_loss"}: (steps,) float32, each step's value
      before its update.
    """
    chunks: dict[str, list[np.ndarray]] = {name: [] for name in METRICS}
    state = None
    for _, state, metrics in iterate(content, style, params, config):
        for name in METRICS:
            chunks[name].append(metrics[name])
    history = {name: np.concatenate(parts) for name, parts in chunks.items()}
    return np.asarray(output_image(state.image)), history
