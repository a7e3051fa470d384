"""The seed's GAN training step as pure functions of (state, batch, key).

Step i draws its noise from `fold_in(key, i)` with `key` the run's training
key (a conditional model, the classes its generator is asked for from that key's
`fold_in(., 1)`), so the state alone says where a run is: resuming from a checkpoint
continues with exactly the noise and batches the uninterrupted run would use.

The learning rate and Adam's b1 are values in the optimiser states
(`optax.inject_hyperparams`), and the seed only makes keys, so one compiled step
serves every rate and seed of a model (and vmaps over a sweep of them).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from jaxart.data import IMAGE_SHAPE, NUM_CLASSES
from jaxart.gan.config import GANConfig, ModelConfig
from jaxart.gan.models import Scores, adam_b1, class_weight, make_models
from jaxart.images import to_float

Params = Any
Collections = dict[str, Any]
Metrics = dict[str, jax.Array]
# Real images (B, 28, 28), uint8 or float in [0, 1]; of a conditional model, (images, labels (B,) int).
Batch = jax.Array | tuple[jax.Array, jax.Array]


@struct.dataclass
class GANState:
    """Everything a run carries from step to step (a pytree; `config` is static, so runs of one
    model share their compiled steps whatever their rates and seeds)."""

    step: jax.Array  # int32 (): steps taken so far
    g_params: Params
    d_params: Params
    g_opt_state: optax.OptState
    d_opt_state: optax.OptState
    # Collections besides 'params' (e.g. batch_stats); empty for the MLP.
    g_collections: Collections
    d_collections: Collections
    # The generator's moving average, not debiased (see `generator_params`); None with ema_decay 0.
    g_ema: Params | None
    config: ModelConfig = struct.field(pytree_node=False)


class RunKeys(NamedTuple):
    """Independent PRNG keys of one run, all from its seed."""

    init: jax.Array  # parameters
    data: jax.Array  # epoch e's order: fold_in(data, e)
    train: jax.Array  # step i's noise: fold_in(train, i)
    preview: jax.Array  # the fixed latent batch of the per-epoch sample grids


class Hyperparams(NamedTuple):
    """The optimiser's values of one run (float32 scalars), or of R runs ((R,) arrays)."""

    lr: Any
    b1: Any


@jax.jit
def run_keys(seed: int | jax.Array) -> RunKeys:
    """The run's keys, all from its seed."""
    return RunKeys(*jax.random.split(jax.random.key(seed), 4))


def hyperparams(config: GANConfig) -> Hyperparams:
    """The optimiser's values of a single run's config (ConfigError for a sweep of rates)."""
    config = config.run(0, 1)
    # Arrays, not NumPy scalars: inject_hyperparams keeps only numbers and arrays in the state.
    return Hyperparams(np.asarray(config.lr, np.float32), np.asarray(adam_b1(config), np.float32))


# torch.optim.Adam(lr, betas=(b1, 0.999)): the same update, eps added outside the square root.
# b2 and eps stay Python constants, as in a plain optax.adam. (b1 as a float32 value makes Adam's
# 1 - b1 a float32 subtraction: runs differ in the last bits from versions that folded it.)
_adam = optax.inject_hyperparams(optax.adam, static_args=("b2", "eps", "eps_root"))


def init(key: jax.Array, config: ModelConfig, hyper: Hyperparams) -> GANState:
    """Fresh parameters and optimiser states at step 0 (unjitted: `init_state` compiles it)."""
    generator, discriminator = make_models(config)
    g_key, d_key = jax.random.split(key)
    labels = (jnp.zeros((1,), jnp.int32),) if config.conditional else ()
    g_vars = generator.init(g_key, jnp.zeros((1, config.latent_dim)), *labels, train=False)
    d_vars = discriminator.init(d_key, jnp.zeros((1, *IMAGE_SHAPE)), train=False)
    g_params, g_collections = _split(g_vars)
    d_params, d_collections = _split(d_vars)
    tx = _adam(learning_rate=hyper.lr, b1=hyper.b1)
    return GANState(
        step=jnp.zeros((), jnp.int32),
        g_params=g_params,
        d_params=d_params,
        g_opt_state=tx.init(g_params),
        d_opt_state=tx.init(d_params),
        g_collections=g_collections,
        d_collections=d_collections,
        g_ema=jax.tree.map(jnp.zeros_like, g_params) if config.ema_decay else None,
        config=config,
    )


# Compiled as one program: run eagerly, each initialiser and zeros_like is a program of its own.
_init = jax.jit(init, static_argnums=1)


def init_state(key: jax.Array, config: GANConfig) -> GANState:
    """The state at step 0 of a run configured as `config`, its parameters from `key`."""
    return _init(key, config.static, hyperparams(config))


def state_shapes(config: ModelConfig) -> GANState:
    """Shapes and dtypes of the states of `config`'s model (what a checkpoint restores into)."""
    hyper = Hyperparams(np.zeros((), np.float32), np.zeros((), np.float32))
    return jax.eval_shape(functools.partial(init, config=config, hyper=hyper), jax.random.key(0))


def _split(variables: Mapping[str, Any]) -> tuple[Params, Collections]:
    variables = dict(variables)
    return variables.pop("params"), variables


def _apply(
    module: nn.Module,
    params: Params,
    collections: Collections,
    *inputs: jax.Array | np.ndarray | None,
    train: bool = True,
) -> tuple[Any, Collections]:
    """module(*inputs) -> (output, updated collections); only a training pass mutates them.
    inputs: the data, and the labels (None for an unconditional model, which takes none)."""
    variables = {"params": params, **collections}
    inputs = tuple(x for x in inputs if x is not None)
    if train and collections:
        y, updates = module.apply(variables, *inputs, train=True, mutable=list(collections))
        return y, {**collections, **updates}
    return module.apply(variables, *inputs, train=train), collections


def ema_update(ema: Params, params: Params, decay: float) -> Params:
    """One step of the moving average from zero: decay * ema + (1 - decay) * params."""
    return jax.tree.map(lambda e, p: decay * e + (1 - decay) * p, ema, params)


def generator_params(state: GANState, raw: bool = False) -> Params:
    """The generator that samples are drawn from: the moving average of its parameters over the
    steps taken, debiased (ema / (1 - decay^step), as Adam's moments, so no weight stays on the
    zeros it starts from), or with `raw`, or without an average, the trained parameters.

    At step t it is sum_i w_i g_i / sum_i w_i over the parameters g_1..g_t after each step,
    w_i = decay^(t - i). The generator's batch statistics (DCGAN) stay the trained ones'.
    """
    if raw or state.g_ema is None:
        return state.g_params
    return _debiased(state.g_ema, state.g_params, state.step, state.config.ema_decay)


@functools.partial(jax.jit, static_argnums=3)
def _debiased(ema: Params, params: Params, step: jax.Array, decay: float) -> Params:
    correction = 1 - jnp.asarray(decay, jnp.float32) ** step
    # At step 0 no step has been averaged: the average of nothing is the initial generator.
    return jax.tree.map(lambda e, p: jnp.where(step > 0, e / correction, p), ema, params)


def to_unit(images: jax.Array) -> jax.Array:
    """uint8 [0, 255] -> float32 [0, 1] as ToTensor does; float images pass through."""
    return to_float(images) if images.dtype == jnp.uint8 else images.astype(jnp.float32)


def sample_latent(key: jax.Array, n: int, latent_dim: int) -> jax.Array:
    """Standard normal noise (n, latent_dim), as the seed's torch.randn."""
    return jax.random.normal(key, (n, latent_dim))


def _asked(scores: jax.Array | Scores, labels: jax.Array | None) -> jax.Array:
    """The logit of each image's class (B,) from a conditional D's `Scores`; an unconditional
    D's logits (B,) as they are."""
    if not isinstance(scores, Scores):
        return scores
    if labels is None:
        raise ValueError("a conditional discriminator's logits are read at the images' labels; pass them")
    return jnp.take_along_axis(scores.logits, labels[:, None], axis=1)[:, 0]


def class_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Cross-entropy of class logits (B, classes) against `labels` (B,), averaged."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def discriminator_loss(
    d_params: Params,
    d_collections: Collections,
    real: jax.Array,
    fake: jax.Array,
    config: ModelConfig,
    real_labels: jax.Array | None = None,
    fake_labels: jax.Array | None = None,
) -> tuple[jax.Array, tuple[jax.Array, jax.Array, Collections]]:
    """BCE(D(real), 1) + BCE(D(fake), 0) -> (loss, (mean D(real), mean D(fake), collections)).

    real, fake: (B, 28, 28) in [0, 1]; their labels (B,) int for a conditional model, whose D is
    read at each image's label, + `class_weight(config)` x the class loss of the real images on
    D's features held constant (`Scores.class_logits`).
    """
    _, discriminator = make_models(config)
    real_scores, d_collections = _apply(discriminator, d_params, d_collections, real)
    fake_scores, d_collections = _apply(discriminator, d_params, d_collections, fake)
    real_logit, fake_logit = _asked(real_scores, real_labels), _asked(fake_scores, fake_labels)
    loss = (
        optax.sigmoid_binary_cross_entropy(real_logit, jnp.ones_like(real_logit)).mean()
        + optax.sigmoid_binary_cross_entropy(fake_logit, jnp.zeros_like(fake_logit)).mean()
    )
    weight = class_weight(config)
    if real_labels is not None and weight:
        loss += weight * class_loss(real_scores.class_logits, real_labels)
    return loss, (nn.sigmoid(real_logit).mean(), nn.sigmoid(fake_logit).mean(), d_collections)


def generator_loss(
    fake: jax.Array,
    d_params: Params,
    d_collections: Collections,
    config: ModelConfig,
    labels: jax.Array | None = None,
) -> tuple[jax.Array, Collections]:
    """BCE(D(fake), 1): how far D is from calling the fakes (B, 28, 28) real (as of `labels`),
    + `class_weight(config)` x their class loss as the classes asked (`Scores.logits`)."""
    _, discriminator = make_models(config)
    scores, d_collections = _apply(discriminator, d_params, d_collections, fake)
    logit = _asked(scores, labels)
    loss = optax.sigmoid_binary_cross_entropy(logit, jnp.ones_like(logit)).mean()
    weight = class_weight(config)
    if labels is not None and weight:
        loss += weight * class_loss(scores.logits, labels)
    return loss, d_collections


def sample_labels(key: jax.Array, n: int) -> jax.Array:
    """The classes a conditional generator is asked for in a training step: uniform, (n,) int32."""
    return jax.random.randint(key, (n,), 0, NUM_CLASSES)


def step(state: GANState, batch: Batch, key: jax.Array) -> tuple[GANState, Metrics]:
    """One step of the seed, unjitted: the unit `train_step` and `train_steps` compile."""
    config = state.config
    generator, _ = make_models(config)
    # Adam's update reads the rate and b1 from the optimiser state; both networks share them.
    tx = _adam(**state.d_opt_state.hyperparams)
    if isinstance(batch, tuple) != config.conditional:
        raise ValueError("a conditional model trains on (images, labels) batches, an unconditional one on images alone")
    images, real_labels = batch if isinstance(batch, tuple) else (batch, None)
    real = to_unit(images)
    step_key = jax.random.fold_in(key, state.step)
    z = sample_latent(step_key, real.shape[0], config.latent_dim)
    # Of their own key, so the noise is the unconditional model's.
    labels = sample_labels(jax.random.fold_in(step_key, 1), real.shape[0]) if config.conditional else None

    # One generator pass serves both updates, as in the seed: D sees the fakes
    # as constants, and G's gradient is pulled back through this same pass.
    fake, pullback, g_collections = jax.vjp(
        lambda p: _apply(generator, p, state.g_collections, z, labels), state.g_params, has_aux=True
    )

    (d_loss, (d_real, d_fake, d_collections)), d_grads = jax.value_and_grad(discriminator_loss, has_aux=True)(
        state.d_params, state.d_collections, real, fake, config, real_labels, labels
    )
    d_updates, d_opt_state = tx.update(d_grads, state.d_opt_state, state.d_params)
    d_params = optax.apply_updates(state.d_params, d_updates)

    # G is judged by the D just updated, on the same fakes.
    (g_loss, d_collections), fake_grad = jax.value_and_grad(generator_loss, has_aux=True)(
        fake, d_params, d_collections, config, labels
    )
    (g_grads,) = pullback(fake_grad)
    g_updates, g_opt_state = tx.update(g_grads, state.g_opt_state, state.g_params)
    g_params = optax.apply_updates(state.g_params, g_updates)

    g_ema = None if state.g_ema is None else ema_update(state.g_ema, g_params, config.ema_decay)
    new_state = dataclasses.replace(
        state,
        step=state.step + 1,
        g_params=g_params,
        g_ema=g_ema,
        d_params=d_params,
        g_opt_state=g_opt_state,
        d_opt_state=d_opt_state,
        g_collections=g_collections,
        d_collections=d_collections,
    )
    return new_state, {"d_loss": d_loss, "g_loss": g_loss, "d_x": d_real, "d_g_z": d_fake}


@functools.partial(jax.jit, donate_argnums=0)
def train_step(state: GANState, batch: Batch, key: jax.Array) -> tuple[GANState, Metrics]:
    """One seed step, jit-compiled, donating `state`.

    Args:
      state: the run's state at step i.
      batch: real images (B, 28, 28), uint8 in [0, 255] or float in [0, 1]; of a conditional
        model the pair (images, labels (B,) int in 0..9).
      key: the run's training key; step i uses fold_in(key, i).
    Returns:
      (state at step i + 1, metrics): d_loss, g_loss, d_x = mean D(x) and
      d_g_z = mean D(G(z)) (before D's update, as the seed prints them).
    """
    return step(state, batch, key)


def scan_steps(unit: Callable, state: Any, batches: Any, key: jax.Array) -> tuple[Any, Metrics]:
    """`unit(state, batches[j], key)` for each j in one program (batches: arrays, or a pytree of
    them, with a leading steps axis); metrics stacked to (steps, ...)."""
    if jax.tree.leaves(batches)[0].shape[0] == 1:
        # XLA's CPU convolutions measured ~10x slower inside a loop body (the DCGAN's step).
        state, metrics = unit(state, jax.tree.map(lambda b: b[0], batches), key)
        return state, jax.tree.map(lambda m: m[None], metrics)
    return jax.lax.scan(lambda s, b: unit(s, b, key), state, batches)


def epoch_batches(data: Any, order: jax.Array, start: jax.Array, length: int, batch_size: int) -> Any:
    """The batches of steps start..start+length-1 of an epoch: (length, B, ...) of each array of
    `data` (the images, or images and labels), step j's rows order[(start + j) * B : (start + j + 1) * B]."""
    indices = jax.lax.dynamic_slice_in_dim(order, start * batch_size, length * batch_size)
    return jax.tree.map(lambda a: a[indices.reshape(length, batch_size)], data)


@functools.partial(jax.jit, static_argnames="length", donate_argnums=0)
def train_steps(
    state: GANState, images: Batch, order: jax.Array, start: jax.Array, key: jax.Array, length: int
) -> tuple[GANState, Metrics]:
    """`length` steps in one compiled call, gathering batches on the device.

    Args:
      images: the whole data set (N, 28, 28), uint8, on the device; of a conditional model the
        pair (images, labels (N,)).
      order: (M,) int32 image indices of one epoch (`epoch_order`), M a multiple of B.
      start: index of the first batch within `order`; step j uses its batch start + j.
    Returns:
      (state, metrics), each metric stacked to shape (length,).
    """
    batches = epoch_batches(images, order, start, length, state.config.batch_size)
    return scan_steps(step, state, batches, key)


@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def epoch_order(
    key: jax.Array, epoch: int | jax.Array, num_images: int, num_batches: int, batch_size: int
) -> jax.Array:
    """The (num_batches * batch_size,) int32 image indices of one epoch; the partial batch is dropped.

    key: the run's data key (`run_keys(seed).data`)."""
    order = jax.random.permutation(jax.random.fold_in(key, epoch), num_images)
    return order[: num_batches * batch_size].astype(jnp.int32)


def class_cycle(n: int) -> np.ndarray:
    """The classes a conditional model draws when none is asked for: 0, 1, ..., 9, 0, 1, ... (n,)."""
    return np.arange(n, dtype=np.int32) % NUM_CLASSES


@functools.partial(jax.jit, static_argnames=("n", "config"))
def sample(
    g_params: Params,
    key: jax.Array,
    n: int,
    config: ModelConfig = ModelConfig(),
    g_collections: Collections | None = None,
    labels: jax.Array | np.ndarray | None = None,
) -> jax.Array:
    """n generated images (n, 28, 28), float32 in [0, 1].

    config: the run's model (`state.config`; a GANConfig serves as well).
    g_collections: the generator's non-parameter collections, if it has any.
    labels: of a conditional model, the class of each image (n,) int in 0..9 (default:
      `class_cycle(n)`); an unconditional model takes none.
    """
    generator, _ = make_models(config)
    z = sample_latent(key, n, config.latent_dim)
    if config.conditional and labels is None:
        labels = class_cycle(n)
    elif not config.conditional and labels is not None:
        raise ValueError("an unconditional model draws no asked classes; pass labels=None")
    return _apply(generator, g_params, g_collections or {}, z, labels, train=False)[0]


@functools.partial(jax.jit, static_argnames=("n", "raw"))
def sample_state(
    state: GANState, key: jax.Array, n: int, raw: bool = False, labels: jax.Array | np.ndarray | None = None
) -> jax.Array:
    """n images (n, 28, 28) in [0, 1] from a run's state: its moving-average generator, or with
    `raw` the trained one (see `generator_params`); `labels` as `sample`'s."""
    return sample(generator_params(state, raw), key, n, state.config, state.g_collections, labels)
