"""The optimisation: jit-compiled Adam (or L-BFGS) steps over the target image, and the loop
around it (optionally coarse to fine, see `jaxart.style.pyramid`).

The target image is the pytree being optimised. Content features and style Gram
matrices are computed once per pyramid level, before its loop (the seed recomputes
them every step).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxart import images, schedule, vgg
from jaxart.style import linesearch, pyramid
from jaxart.style.colors import keep_colors
from jaxart.style.config import StyleConfig
from jaxart.style.losses import content_loss, gram_matrix, style_loss, total_variation

METRICS = ("loss", "content_loss", "style_loss")
ACCELERATOR_STEPS_PER_CALL = 20  # enough to hide the per-call dispatch behind ~2-10 ms steps


class Targets(NamedTuple):
    """What the target is pulled towards, and how hard: content features {layer: (1, H, W, C)},
    style Gram matrices {layer: (C, C)} and the three losses' weights (scalars).

    The weights travel here rather than in the config so that a batch of transfers
    can `vmap` over them; the total-variation term is compiled in only when the config's
    tv_weight is > 0. (Its default is a Python float, not a jax array: importing jaxart must not
    create device arrays before `jax.distributed.initialize`.)
    """

    content: dict[str, jax.Array]
    style_grams: dict[str, jax.Array]
    content_weight: jax.Array
    style_weight: jax.Array
    tv_weight: jax.Array | float = 0.0


def _features(params: Any, image: jax.Array, layers: tuple[str, ...], config: StyleConfig) -> dict[str, jax.Array]:
    model = vgg.VGG19(pooling=config.pooling, dtype=jnp.dtype(config.dtype), remat=config.remat)
    return model.apply({"params": params}, image[None], layers)


def _as_list(style: Any) -> list:
    """One (H, W, 3) image or a sequence of them -> a list of images."""
    return list(style) if isinstance(style, (list, tuple)) else [style]


def blend_weights(count: int, config: StyleConfig) -> np.ndarray:
    """Each style image's share of the Gram targets: `style_blend` normalised to sum 1 (equal
    shares when it is empty)."""
    if not config.style_blend:
        return np.full(count, 1.0 / count)
    if len(config.style_blend) != count:
        raise ValueError(f"style_blend has {len(config.style_blend)} weight(s) for {count} style image(s)")
    weights = np.asarray(config.style_blend, np.float64)
    return weights / weights.sum()


def _positions(shape: tuple[int, ...], layer: str) -> int:
    """Spatial positions (h * w) of `layer`'s features for an image of (H, W, ...) `shape`."""
    stride = 2 ** vgg.downsampling([layer])
    return (shape[0] // stride) * (shape[1] // stride)


def compute_targets(params: Any, content: jax.Array, style: Any, config: StyleConfig) -> Targets:
    """Features of the normalised (H, W, 3) content and the style Gram targets, computed once.

    Args:
      style: one normalised (h, w, 3) style image or a sequence of them, of any sizes.
    Each layer's Gram target is the `blend_weights`-weighted mean of the styles' Gram matrices,
    each first scaled by (the target's positions / its own positions) at that layer. A Gram
    matrix sums over positions, so this compares per-position averages: a style of any size
    weighs as one of the content's size would, and the loss keeps the seed's normalisation
    (exactly the seed's Gram for one style of the content's shape).
    """
    styles = _as_list(style)
    content_features = _features(params, content, config.content_layer_names, config)
    grams: dict[str, jax.Array] = {}
    for share, image in zip(blend_weights(len(styles), config), styles):
        features = _features(params, image, config.style_layer_names, config)
        for name, f in features.items():
            scale = float(share * _positions(content.shape, name) / _positions(image.shape, name))
            grams[name] = grams.get(name, 0.0) + scale * gram_matrix(f[0])
    return Targets(
        content_features,
        grams,
        jnp.float32(config.content_weight),
        jnp.float32(config.style_weight),
        jnp.float32(config.tv_weight),
    )


def loss_fn(image: jax.Array, params: Any, targets: Targets, config: StyleConfig) -> tuple[jax.Array, dict]:
    """The total loss of a normalised (H, W, 3) target image, and its parts.

    Total variation is measured on the denormalised RGB image, so its weight is in pixel terms.
    Returns (loss, {"loss", "content_loss", "style_loss"}), all float32 scalars.
    """
    feats = _features(params, image, config.layers, config)
    c = content_loss(feats, targets.content, config.content_layer_weights)
    s = style_loss(feats, targets.style_grams, config.style_layer_weights)
    loss = targets.content_weight * c + targets.style_weight * s
    if config.tv_weight:  # else left out of the graph: the seed's numbers stay bit for bit
        loss = loss + targets.tv_weight * total_variation(vgg.denormalize(image))
    return loss, {"loss": loss, "content_loss": c, "style_loss": s}


def optimizer(config: StyleConfig) -> optax.GradientTransformation:
    if config.optimizer == "lbfgs":
        if config.lbfgs_step == "backtracking":
            # The L-BFGS direction is well scaled after the first iteration (optax caps that one
            # to unit norm), so the full step mostly passes Armijo's test at the first try: one
            # value-and-gradient per iteration, reused by the next, as in pastiche's
            # torch.optim.LBFGS(max_iter=1), but safe when the step is too long.
            return optax.lbfgs(linesearch=linesearch.backtracking(METRICS, max_backtracking_steps=30))
        if config.lbfgs_step != "zoom":
            raise ValueError(f"lbfgs_step must be zoom or backtracking, got {config.lbfgs_step!r}")
        return optax.lbfgs()
    return optax.adam(config.lr, b1=config.b1, b2=config.b2)


class State(NamedTuple):
    """The optimisation state: the normalised (H, W, 3) target, the optimiser's state and, with
    `ema`, the running average of the iterates (None without)."""

    image: jax.Array
    opt_state: optax.OptState
    average: jax.Array | None = None

    @property
    def result(self) -> jax.Array:
        """What the run hands back: the iterate average with `ema`, else the last iterate."""
        return self.image if self.average is None else self.average


def init_state(content: jax.Array, config: StyleConfig) -> State:
    """The state at a normalised (H, W, 3) starting image (the content, as in the seed).

    The average starts at the starting image: average_t = ema * average_{t-1} + (1 - ema) * image_t.
    """
    # Fresh, strongly typed copies: the state is donated and one buffer cannot be donated twice
    # (L-BFGS's state holds the image twice); and L-BFGS's weakly typed line-search info would
    # not match the step's output, compiling the step a second time.
    opt_state = jax.tree.map(lambda x: jnp.array(x, dtype=x.dtype), optimizer(config).init(content))
    return State(content, opt_state, jnp.copy(content) if config.ema else None)


def train_step(state: State, params: Any, targets: Targets, config: StyleConfig) -> tuple[State, dict]:
    """One Adam step or one L-BFGS iteration (its line search included); metrics are those of the
    image *before* the update."""
    if config.optimizer == "lbfgs":
        # The line search's last evaluation is this iterate's value and gradient: reuse them.
        if config.lbfgs_step == "backtracking":  # it keeps the parts too
            value_fn = lambda x: loss_fn(x, params, targets, config)  # noqa: E731
            value, grads, metrics = linesearch.value_grad_aux_from_state(value_fn, state.image, state.opt_state)
        else:
            value_fn = lambda x: loss_fn(x, params, targets, config)[0]  # noqa: E731
            value, grads = optax.value_and_grad_from_state(value_fn)(state.image, state=state.opt_state)
            _, metrics = loss_fn(state.image, params, targets, config)  # the parts: a forward pass only
        updates, opt_state = optimizer(config).update(
            grads, state.opt_state, state.image, value=value, grad=grads, value_fn=value_fn
        )
    else:
        grads, metrics = jax.grad(loss_fn, has_aux=True)(state.image, params, targets, config)
        updates, opt_state = optimizer(config).update(grads, state.opt_state, state.image)
    image = optax.apply_updates(state.image, updates)
    average = None if state.average is None else config.ema * state.average + (1 - config.ema) * image
    return State(image, opt_state, average), metrics


@functools.partial(jax.jit, static_argnames=("config", "num_steps"), donate_argnums=(0,))
def train_steps(state: State, params: Any, targets: Targets, config: StyleConfig, num_steps: int) -> tuple[State, dict]:
    """`num_steps` steps in one compiled call; metrics stacked: {name: (num_steps,)}."""
    if num_steps == 1:
        state, metrics = train_step(state, params, targets, config)
        return state, jax.tree.map(lambda m: m[None], metrics)
    return jax.lax.scan(lambda s, _: train_step(s, params, targets, config), state, length=num_steps)


def initial_image(content: np.ndarray, config: StyleConfig) -> np.ndarray:
    """The starting (H, W, 3) RGB image in [0, 1] that `config.init` names: the content (the
    seed), uniform noise seeded by `config.seed`, or an image file resized to the content's
    shape (InputError if it cannot be read)."""
    if config.init == "content":
        return content
    if config.init == "noise":
        return np.asarray(jax.random.uniform(jax.random.key(config.seed), content.shape, jnp.float32))
    return images.load_image(config.init, shape=content.shape[:2])


def _check_size(what: str, shape: tuple[int, ...], layers: tuple[str, ...]) -> None:
    need = 2 ** vgg.downsampling(layers)
    if min(shape[:2]) < need:
        deepest = max(layers, key=vgg.TORCH_INDEX.get)
        raise ValueError(
            f"{what} is {shape[1]}x{shape[0]}; layers up to {deepest} need at least {need} pixels per side"
        )


def check_sizes(content_shape: tuple[int, ...], style_shapes: Sequence[tuple[int, ...]], config: StyleConfig) -> None:
    """Raises ValueError, before any work, if the content or a style (shapes (H, W, ...)) is too
    small at any pyramid level for the layers read from it, if `style_blend` does not match the
    styles, or if there are fewer steps than pyramid levels."""
    levels = pyramid.level_shapes(content_shape[:2], config)
    for level in levels:
        where = "" if level == tuple(content_shape[:2]) else " at a pyramid level"
        _check_size(f"the content image{where}", level, config.layers)
        for shape in style_shapes:
            size = pyramid.style_shape(shape[:2], level, config)
            _check_size(f"a style image{where}", size, config.style_layer_names)
    blend_weights(len(style_shapes), config)
    pyramid.level_steps(config.steps, len(levels))


def output_image(image: jax.Array, colors: jax.Array | None = None) -> jax.Array:
    """Normalised target -> displayable RGB in [0, 1] (denormalised, then clamped).

    With `colors` ((h, w, 3) RGB in [0, 1]), its chrominance replaces the target's (see `colors`).
    """
    rgb = jnp.clip(vgg.denormalize(image), 0.0, 1.0)
    return rgb if colors is None else keep_colors(rgb, jnp.asarray(colors))


@jax.jit
def _output_image(image: jax.Array, colors: jax.Array | None) -> jax.Array:
    # One compiled call: eagerly, each of its dozen operations would compile on its own.
    return output_image(image, colors)


def result_image(state: State, content: np.ndarray, config: StyleConfig) -> np.ndarray:
    """The picture a state stands for: (h, w, 3) float32 RGB in [0, 1], the iterate average with
    `ema`, in the content's colours with `original_colors`."""
    return np.asarray(_output_image(state.result, content if config.original_colors else None))


def steps_per_call(config: StyleConfig) -> int:
    """Steps per compiled call: the config's, or when it is None ("auto") 1 on CPU, where XLA
    runs convolutions inside a loop body 2-3x slower (benchmarks/RESULTS.md), and
    ACCELERATOR_STEPS_PER_CALL on GPU/TPU, where dispatching each step would cost more than it."""
    if config.steps_per_call is not None:
        return config.steps_per_call
    return 1 if jax.default_backend() == "cpu" else ACCELERATOR_STEPS_PER_CALL


def concat_history(chunks: Iterable[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """Each metric's whole history from per-call chunks {name: (..., steps in the call)}, joined
    along the step axis; chunks still on the device come over in one transfer."""
    chunks = jax.device_get(list(chunks))
    return {name: np.concatenate([np.asarray(c[name]) for c in chunks], axis=-1) for name in METRICS}


@functools.partial(jax.jit, static_argnames=("shape", "config", "fresh"))
def start_level(
    content: jax.Array,
    styles: Sequence[jax.Array],
    image: jax.Array | None,
    shape: tuple[int, int],
    config: StyleConfig,
    fresh: bool = True,
) -> tuple[jax.Array, list[jax.Array], State]:
    """A pyramid level's normalised content and styles and its starting state, in one compiled
    call (eagerly, each resize and normalisation would compile on its own).

    Args:
      content, styles: RGB in [0, 1] at their own shapes; resized here to the level's.
      image: the starting image: None for the content itself (the very array the content
        features are computed from, so the first content loss is exactly 0, as in the seed);
        RGB in [0, 1] when `fresh`, else a previous level's normalised result.
      shape: the level's (height, width).
    """
    level_styles = [vgg.normalize(pyramid.resize(s, pyramid.style_shape(s.shape[:2], shape, config))) for s in styles]
    level_content = vgg.normalize(pyramid.resize(content, shape))
    # Normalisation is affine per channel, so resizing commutes with it.
    start = level_content if image is None else pyramid.resize(vgg.normalize(image) if fresh else image, shape)
    return level_content, level_styles, init_state(start, config)


def iterate(
    content: np.ndarray,
    style: np.ndarray | Sequence[np.ndarray],
    params: Any,
    config: StyleConfig,
    stops: tuple[int, ...] = (),
    init: np.ndarray | None = None,
) -> Iterator[tuple[int, State, dict[str, jax.Array]]]:
    """Runs the optimisation, level by level of the pyramid, yielding after each compiled call.

    Args:
      content: (H, W, 3) float RGB in [0, 1].
      style: one (h, w, 3) float RGB image in [0, 1] or several (blended by `style_blend`): of
        the content's shape, or with `style_scale` of any shape (resized per level, see `pyramid`).
      params: VGG19 params; put on the device once here, not copied there by every call.
      stops: step counts at which a call must end (e.g. to save an image there).
      init: the (H, W, 3) RGB starting image in [0, 1]; default: `initial_image(content, config)`.
    Yields:
      (steps done so far, state, {metric: (steps in this call,) float32}); the state's image
      has the current pyramid level's shape. The metrics stay on the device: a caller that
      reads them only after asking for the next call (see `jaxart.style.driver`) never makes
      the device wait for the host. The state is donated to the next call: read it before.
    """
    styles = [np.asarray(s) for s in _as_list(style)]
    if config.style_scale is None and any(s.shape != content.shape for s in styles):
        shapes = ", ".join(str(s.shape) for s in styles)
        raise ValueError(f"content {content.shape} and style {shapes} must have the same shape")
    check_sizes(content.shape, [s.shape for s in styles], config)
    params = jax.device_put(params)
    image = initial_image(content, config) if init is None else init
    image = None if image is content else image
    shapes = pyramid.level_shapes(content.shape[:2], config)
    ends = np.cumsum(pyramid.level_steps(config.steps, len(shapes))).tolist()
    per_call, done = steps_per_call(config), 0
    for level, (shape, end) in enumerate(zip(shapes, ends)):
        level_content, level_styles, state = start_level(content, styles, image, tuple(shape), config, level == 0)
        # Not compiled: XLA rounds a compiled forward pass differently from the step's (by ~1e-8),
        # and the first content loss would no longer be exactly 0, as it is in the seed.
        targets = compute_targets(params, level_content, level_styles, config)
        for before, n in schedule.calls(done, end, per_call, stops):
            state, metrics = train_steps(state, params, targets, config, n)
            yield before + n, state, metrics
        done = end
        image = state.result


def stylize(
    content: np.ndarray,
    style: np.ndarray | Sequence[np.ndarray],
    params: Any,
    config: StyleConfig = StyleConfig(),
    init: np.ndarray | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Gatys style transfer.

    Args:
      content: (H, W, 3) float RGB in [0, 1].
      style: (H, W, 3) float RGB in [0, 1], already resized to the content's size; or several
        style images, or any sizes with `style_scale` (see `iterate`).
      params: VGG19 params (see `jaxart.weights.load`).
      config: every option; the defaults are the seed's.
      init: the starting image (see `iterate`).
    Returns:
      (image, history): the stylised (H, W, 3) float32 RGB in [0, 1] (see `result_image`), and
      {"loss", "content_loss", "style_loss"}: (steps,) float32, each step's value
      before its update (L-BFGS: each iteration's).
    """
    chunks, state = [], None
    for _, state, metrics in iterate(content, style, params, config, init=init):
        chunks.append(metrics)  # fetched once, at the end: the calls run back to back
    return result_image(state, content, config), concat_history(chunks)
