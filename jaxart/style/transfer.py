"""The math of one transfer: its targets, loss, optimiser state and steps (Adam or L-BFGS) over
the target image, the pytree being optimised. `jaxart.style.loop` runs them.

Content features and style Gram matrices are computed once per pyramid level, before its
steps (the seed recomputes them every step). A step's static argument is a `Program`; the
numbers a sweep changes (loss weights, Adam's hyperparameters, the EMA decay) are arrays.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxart import errors, images, vgg
from jaxart.errors import ConfigError
from jaxart.style import linesearch, masks, pyramid
from jaxart.style.colors import keep_colors, recolor
from jaxart.style.config import Program, StyleConfig
from jaxart.style.losses import content_loss, gram_matrix, style_loss, temporal_loss, total_variation

METRICS = ("loss", "content_loss", "style_loss")
ACCELERATOR_STEPS_PER_CALL = 20  # enough to hide the per-call dispatch behind ~2-10 ms steps


class Region(NamedTuple):
    """One region of the style loss (see `jaxart.style.masks`): its weights at each style layer
    {layer: (h, w, 1)} (`masks.layer_masks`) and its style's Gram targets {layer: (C, C)}."""

    masks: dict[str, jax.Array]
    grams: dict[str, jax.Array]


class Temporal(NamedTuple):
    """The temporal loss's targets (Ruder et al. 2016, see `jaxart.flow`): the previous frame's
    output warped into this frame's place, (H, W, 3) RGB in [0, 1], and where it is trusted,
    (H, W, 1) weights in [0, 1] (`flow.Motion.visible`)."""

    previous: jax.Array | np.ndarray
    visible: jax.Array | np.ndarray


class Targets(NamedTuple):
    """What the target is pulled towards, and how hard: content features {layer: (1, H, W, C)},
    style Gram matrices {layer: (C, C)} and the losses' weights (scalars); with masks, the
    style's `regions` instead (style_grams then {}), each its own style loss; for a video's
    frame, the `temporal` loss's targets (None: no such term in the graph).

    The weights are arrays here rather than constants of the step, so that a sweep over them is
    one batch of one compiled program; the total-variation term is compiled in only when the
    program's `tv` is on. (Its default is a Python float, not a jax array: importing jaxart must
    not create device arrays before `jax.distributed.initialize`.)
    """

    content: dict[str, jax.Array]
    style_grams: dict[str, jax.Array]
    content_weight: jax.Array
    style_weight: jax.Array
    tv_weight: jax.Array | float = 0.0
    regions: tuple[Region, ...] = ()
    temporal_weight: jax.Array | float = 0.0
    temporal: Temporal | None = None


def _features(params: Any, image: jax.Array, layers: tuple[str, ...], program: Program) -> dict[str, jax.Array]:
    model = vgg.VGG19(pooling=program.pooling, dtype=jnp.dtype(program.dtype), remat=program.remat)
    return model.apply({"params": params}, image[None], layers)  # type: ignore[return-value]


def _as_list(style: Any) -> list:
    """One (H, W, 3) image or a sequence of them -> a list of images."""
    return list(style) if isinstance(style, (list, tuple)) else [style]


def blend_weights(count: int, config: StyleConfig) -> np.ndarray:
    """Each style image's share of the Gram targets: `style_blend` normalised to sum 1 (equal
    shares when it is empty); ConfigError when it does not give one weight per style."""
    if not config.style_blend:
        return np.full(count, 1.0 / count)
    if len(config.style_blend) != count:
        raise ConfigError(
            f"{errors.option('style_blend')} has {len(config.style_blend)} weight(s) for {count} style image(s)"
        )
    weights = np.asarray(config.style_blend, np.float64)
    return weights / weights.sum()


def _positions(shape: tuple[int, ...], layer: str) -> int:
    """Spatial positions (h * w) of `layer`'s features for an image of (H, W, ...) `shape`."""
    stride = 2 ** vgg.downsampling([layer])
    return (shape[0] // stride) * (shape[1] // stride)


def content_features(params: Any, content: jax.Array, config: StyleConfig) -> dict[str, jax.Array]:
    """The content loss's targets: features {layer: (1, h, w, c)} of the normalised (H, W, 3) content."""
    return _features(params, content, config.content_layer_names, config.program)


def style_grams(params: Any, style: Any, shape: tuple[int, ...], config: StyleConfig) -> dict[str, jax.Array]:
    """The style loss's targets for a target image of (H, W, ...) `shape`: {layer: (C, C)}.

    Args:
      style: one normalised (h, w, 3) style image or a sequence of them, of any sizes.
    Each layer's Gram target is the `blend_weights`-weighted mean of the styles' Gram matrices,
    each first scaled by (the target's positions / its own positions) at that layer. A Gram
    matrix sums over positions, so this compares per-position averages: a style of any size
    weighs as one of the target's size would, and the loss keeps the seed's normalisation
    (exactly the seed's Gram for one style of the target's shape).
    """
    styles = _as_list(style)
    grams: dict[str, jax.Array] = {}
    for share, image in zip(blend_weights(len(styles), config), styles):
        features = _features(params, image, config.style_layer_names, config.program)
        for name, f in features.items():
            scale = float(share * _positions(shape, name) / _positions(image.shape, name))
            grams[name] = grams.get(name, 0.0) + scale * gram_matrix(f[0])
    return grams


def compute_targets(
    params: Any,
    content: jax.Array,
    style: Any,
    config: StyleConfig,
    regions: jax.Array | None = None,
    temporal: Temporal | None = None,
) -> Targets:
    """Features of the normalised (H, W, 3) content and the style Gram targets (`style_grams`
    at the content's shape), computed once.

    Args:
      style: one normalised (h, w, 3) style image or a sequence of them, of any sizes.
      regions: None, or (K, H, W) weights in [0, 1] (see `jaxart.style.masks`): K = 1, the
        styles (blended) in that one region, or one region per style image.
      temporal: a video frame's temporal targets at the content's shape, weighed by the config's
        `temporal_weight` (left out when it is 0).
    """
    targets = Targets(
        content_features(params, content, config),
        {},
        jnp.float32(config.content_weight),
        jnp.float32(config.style_weight),
        jnp.float32(config.tv_weight),
        temporal_weight=jnp.float32(config.temporal_weight),
        temporal=temporal if config.temporal_weight > 0 else None,
    )
    if regions is None:
        return targets._replace(style_grams=style_grams(params, style, content.shape, config))
    styles = _as_list(style)
    if len(regions) not in (1, len(styles)):
        raise ConfigError(f"{len(regions)} region(s) for {len(styles)} style image(s): give 1 or one per style")
    groups = [styles] if len(regions) == 1 else [[s] for s in styles]
    return targets._replace(
        regions=tuple(
            Region(masks.layer_masks(m, config.style_layer_names), style_grams(params, g, content.shape, config))
            for m, g in zip(regions, groups)
        )
    )


def loss_fn(image: jax.Array, params: Any, targets: Targets, program: Program) -> tuple[jax.Array, dict]:
    """The total loss of a normalised (H, W, 3) target image, and its parts.

    Total variation is measured on the denormalised RGB image, so its weight is in pixel terms.
    Returns (loss, {"loss", "content_loss", "style_loss"}), all float32 scalars.
    """
    feats = _features(params, image, program.layers, program)
    c = content_loss(feats, targets.content, dict(program.content_layers))
    layers = dict(program.style_layers)
    if targets.regions:
        s = sum(style_loss(feats, r.grams, layers, r.masks) for r in targets.regions)
    else:
        s = style_loss(feats, targets.style_grams, layers)
    loss = targets.content_weight * c + targets.style_weight * s
    if program.tv:  # else left out of the graph: the seed's numbers stay bit for bit
        loss = loss + targets.tv_weight * total_variation(vgg.denormalize(image))
    if targets.temporal is not None:  # in pixel terms, as total variation
        t = targets.temporal
        loss = loss + targets.temporal_weight * temporal_loss(vgg.denormalize(image), t.previous, t.visible)
    return loss, {"loss": loss, "content_loss": c, "style_loss": s}


# L-BFGS evaluates the loss in four or five places of one step (the first iterate, the line
# search's first trial and its loop, the accepted point's parts): as a jitted function it is
# traced once for all of them (0.3 s less at every start), and XLA inlines it as before.
_nested_loss = jax.jit(loss_fn, static_argnames="program")


def _optimizer(program: Program, lr: Any = 0.0, b1: Any = 0.0, b2: Any = 0.0) -> optax.GradientTransformationExtraArgs:
    """The program's optimiser. Adam's hyperparameters live in its state (`inject_hyperparams`),
    as arrays: they are read from there by every update, so only `init` needs their values."""
    if program.optimizer == "adam":
        return optax.inject_hyperparams(optax.adam)(learning_rate=lr, b1=b1, b2=b2)
    # Either rule's first trial is L-BFGS's full step, which after the first iteration nearly
    # always passes: one value-and-gradient per iteration, reused by the next, as in pastiche's
    # torch.optim.LBFGS(max_iter=1), but safe when the step is too long (see `linesearch`).
    if program.lbfgs_step == "backtracking":
        return optax.lbfgs(linesearch=linesearch.backtracking(METRICS, max_backtracking_steps=30))
    return optax.lbfgs(linesearch=linesearch.zoom(METRICS))


class State(NamedTuple):
    """The optimisation state: the normalised (H, W, 3) target, the optimiser's state (Adam's
    hyperparameters in it) and, with `ema`, the running average of the iterates and its decay
    (None without)."""

    image: jax.Array
    opt_state: optax.OptState
    average: jax.Array | None = None
    ema: jax.Array | None = None

    @property
    def result(self) -> jax.Array:
        """What the run hands back: the iterate average with `ema`, else the last iterate."""
        return self.image if self.average is None else self.average


def start_state(image: jax.Array, program: Program, lr: Any, b1: Any, b2: Any, ema: Any) -> State:
    """`init_state` with the hyperparameters as values (arrays or floats), for `vmap` over pairs."""
    # Fresh, strongly typed copies: the state is donated and one buffer cannot be donated twice
    # (L-BFGS's state holds the image twice); and L-BFGS's weakly typed line-search info would
    # not match the step's output, compiling the step a second time.
    opt_state = jax.tree.map(lambda x: jnp.array(x, dtype=x.dtype), _optimizer(program, lr, b1, b2).init(image))
    if not program.ema:
        return State(image, opt_state)
    return State(image, opt_state, jnp.copy(image), jnp.asarray(ema, image.dtype))


def init_state(image: jax.Array, config: StyleConfig) -> State:
    """The state at a normalised (H, W, 3) starting image (the content, as in the seed), with the
    config's learning rate, betas and EMA decay.

    The average starts at the starting image: average_t = ema * average_{t-1} + (1 - ema) * image_t.
    """
    return start_state(image, config.program, config.lr, config.b1, config.b2, config.ema)


def train_step(state: State, params: Any, targets: Targets, program: Program) -> tuple[State, dict]:
    """One Adam step or one L-BFGS iteration (its line search included); metrics are those of the
    image *before* the update."""
    optimizer = _optimizer(program)
    if program.optimizer == "lbfgs":
        # The line search's last evaluation is this iterate's value, gradient and parts: reuse them.
        used = vgg.used_params(params, program.layers)  # as an outer jit, it keeps out the rest
        value_fn: Callable[[jax.Array], Any] = lambda x: _nested_loss(x, used, targets, program)  # noqa: E731
        value, grads, metrics = linesearch.value_grad_aux_from_state(value_fn, state.image, state.opt_state)
        updates, opt_state = optimizer.update(
            grads, state.opt_state, state.image, value=value, grad=grads, value_fn=value_fn
        )
    else:
        grads, metrics = jax.grad(loss_fn, has_aux=True)(state.image, params, targets, program)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.image)
    image = optax.apply_updates(state.image, updates)
    if state.average is None or state.ema is None:
        return State(image, opt_state), metrics
    average = state.ema * state.average + (1 - state.ema) * image
    return State(image, opt_state, average, state.ema), metrics


@functools.partial(jax.jit, static_argnames=("program", "num_steps"), donate_argnums=(0,))
def train_steps(state: State, params: Any, targets: Targets, program: Program, num_steps: int) -> tuple[State, dict]:
    """`num_steps` steps in one compiled call; metrics stacked: {name: (num_steps,)}."""
    if num_steps == 1:
        state, metrics = train_step(state, params, targets, program)
        return state, jax.tree.map(lambda m: m[None], metrics)
    return jax.lax.scan(lambda s, _: train_step(s, params, targets, program), state, length=num_steps)


def initial_image(content: np.ndarray, config: StyleConfig, styles: Sequence[np.ndarray] = ()) -> np.ndarray:
    """The starting (H, W, 3) RGB image in [0, 1] that `config.init` names: the content (the
    seed), uniform noise seeded by `config.seed`, the content in the colours of `styles`
    (`colors.recolor`; ConfigError without styles), or an image file resized to the content's
    shape (InputError if it cannot be read)."""
    if config.init == "content":
        return content
    if config.init == "noise":
        return np.asarray(jax.random.uniform(jax.random.key(config.seed), content.shape, jnp.float32))
    if config.init == "recolored":
        if not styles:
            raise ConfigError(f"{errors.option('init')} recolored takes its colours from style images; none given")
        return recolor(content, styles)
    return images.load_image(config.init, shape=content.shape[:2])


def _check_size(what: str, shape: tuple[int, ...], layers: tuple[str, ...]) -> None:
    need = 2 ** vgg.downsampling(layers)
    if min(shape[:2]) < need:
        deepest = max(layers, key=lambda name: vgg.TORCH_INDEX[name])
        raise ConfigError(
            f"{what} is {shape[1]}x{shape[0]}; layers up to {deepest} need at least {need} pixels per side"
        )


def check_sizes(content_shape: tuple[int, ...], style_shapes: Sequence[tuple[int, ...]], config: StyleConfig) -> None:
    """Raises ConfigError, before any work, if the content or a style (shapes (H, W, ...)) is too
    small at any pyramid level for the layers read from it, if `style_blend` does not match the
    styles, or if there are fewer steps than pyramid levels."""
    levels = pyramid.level_shapes((content_shape[0], content_shape[1]), config)
    for level in levels:
        where = "" if level == tuple(content_shape[:2]) else " at a pyramid level"
        _check_size(f"the content image{where}", level, config.layers)
        for shape in style_shapes:
            size = pyramid.style_shape((shape[0], shape[1]), level, config)
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


def result_image(
    state: State, content: np.ndarray, config: StyleConfig, content_mask: np.ndarray | None = None
) -> np.ndarray:
    """The picture a state stands for: (h, w, 3) float32 RGB in [0, 1], the iterate average with
    `ema`; with `original_colors` or `luminance_only`, its luminance with the (RGB) content's
    chrominance (see `colors`); with an (H, W) `content_mask`, the content itself where the mask
    is 0 (`masks.keep_outside`)."""
    recolor = config.original_colors or config.luminance_only
    picture = np.asarray(_output_image(state.result, content if recolor else None))
    return picture if content_mask is None else masks.keep_outside(picture, content, content_mask)


def steps_per_call(config: StyleConfig) -> int:
    """Steps per compiled call: the config's, or when it is None ("auto") 1 on CPU, where a
    step takes ~0.4 s and more per call would buy nothing (10 per call measure the same since
    `jaxart.vgg`'s convolution VJP; 3.5x slower before it: benchmarks/RESULTS.md), and
    ACCELERATOR_STEPS_PER_CALL on GPU/TPU, where dispatching each step would cost more than it."""
    if config.steps_per_call is not None:
        return config.steps_per_call
    return 1 if jax.default_backend() == "cpu" else ACCELERATOR_STEPS_PER_CALL


def concat_history(chunks: Iterable[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """Each metric's whole history from per-call chunks {name: (..., steps in the call)}, joined
    along the step axis; chunks still on the device come over in one transfer."""
    chunks = jax.device_get(list(chunks))
    return {name: np.concatenate([np.asarray(c[name]) for c in chunks], axis=-1) for name in METRICS}
