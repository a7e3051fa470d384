"""The style loop: one compiled step over a batch of (content, style) pairs, laid out on a mesh.

    mesh = make_mesh()  # one device; make_mesh(pairs=4) splits pairs, make_mesh(rows=4) rows
    for done, state, metrics in iterate(contents, styles, params, config, mesh=mesh):
        ...

A run is always a batch: P pairs (1 for one picture) along the leading axis of the state, the
targets and the metrics. As in big_vision's train.py, the mesh gives the shardings
(`jaxart.style.sharding`) and the step is one `jax.jit(step, in_shardings, out_shardings,
donate_argnums)`: whether a run splits its pairs, its rows or nothing over devices is the
mesh's shape. Its static argument is the config's `Program`; loss weights, Adam's
hyperparameters and the EMA decay are arrays, one value per pair, so a sweep over them is one
batch of one compiled program.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxart import errors, schedule, vgg
from jaxart.errors import ConfigError
from jaxart.style import colors, masks, pyramid, resume, sharding
from jaxart.style.config import CONTENT_STARTS, Program, StyleConfig
from jaxart.style.transfer import (
    State,
    Targets,
    Temporal,
    check_sizes,
    compute_targets,
    concat_history,
    init_state,
    initial_image,
    result_image,
    start_state,
    steps_per_call,
    train_steps,
)

# The config fields that may take one value per pair (see `iterate`'s `per_pair`).
PER_PAIR = ("content_weight", "style_weight", "tv_weight", "lr", "b1", "b2", "ema")
_WEIGHTS = ("content_weight", "style_weight", "tv_weight")
_OPTIMISER = ("lr", "b1", "b2", "ema")


def _over_pairs(fn: Callable, *trees: Any) -> Any:
    """`fn` over the leading pairs axis of `trees`: `vmap`, except for one pair, where `fn` runs
    unbatched. Then one picture is exactly the unbatched program (the seed's numbers), and the
    backtracking line search's `lax.cond` stays a branch (`vmap` makes it a select that runs both)."""
    if jax.tree.leaves(trees)[0].shape[0] == 1:
        return jax.tree.map(lambda x: x[None], fn(*jax.tree.map(lambda x: x[0], trees)))
    return jax.vmap(fn)(*trees)


def _pair_configs(config: StyleConfig, count: int, per_pair: Mapping[str, Sequence[float]] | None) -> list[StyleConfig]:
    """Each pair's config: `config` with its own value of each field in `per_pair` (each field
    one of PER_PAIR, `count` values), checked as any config is (ConfigError)."""
    per_pair = dict(per_pair or {})
    for name, values in per_pair.items():
        if name not in PER_PAIR:
            raise ConfigError(f"{name!r} cannot vary per pair; these can: {', '.join(PER_PAIR)}")
        if len(values) != count:
            raise ConfigError(f"{errors.option(name)} has {len(values)} value(s) for {count} pair(s)")

    def pair(i: int) -> StyleConfig:
        values: dict[str, Any] = {name: float(v[i]) for name, v in per_pair.items()}
        return dataclasses.replace(config, **values)

    return [pair(i) for i in range(count)]


def color_inputs(
    contents: np.ndarray, pair_styles: Sequence[Sequence[np.ndarray]], starts: np.ndarray | None, config: StyleConfig
) -> tuple[np.ndarray, list[list[np.ndarray]], np.ndarray | None]:
    """The contents, each pair's styles and the starting images (None: the contents) that the
    optimisation sees, by the config's colour control (Gatys et al. 2017, see `colors`): with
    `color_transfer` histogram, each pair's styles in its content's colours (`match_color`);
    with `luminance_only`, all of them grey: the contents' and the starting images' luminance,
    the styles' matched to their content's (`match_luminance`). Else the images as they are.

    Every transfer (one picture, a batch, a sweep, blended styles, the pyramid's levels, a
    folder, a video's frames) goes through `iterate`, and so through this, before its targets."""
    if config.color_transfer == "histogram":
        pair_styles = [[colors.match_color(s, c) for s in pair] for c, pair in zip(contents, pair_styles)]
    if config.luminance_only:
        pair_styles = [[colors.match_luminance(s, c) for s in pair] for c, pair in zip(contents, pair_styles)]
        contents = colors.luminance(contents)
        starts = None if starts is None else colors.luminance(starts)
    return contents, [list(pair) for pair in pair_styles], starts


def _program(configs: Sequence[StyleConfig]) -> Program:
    # A term or an average one pair needs is compiled in for all; its weight or decay may be 0.
    return dataclasses.replace(
        configs[0].program, tv=any(c.tv_weight > 0 for c in configs), ema=any(c.ema > 0 for c in configs)
    )


@functools.partial(jax.jit, static_argnames=("shape", "style_shapes", "program", "fresh"))
def _start_level(
    contents: jax.Array,
    styles: Sequence[Sequence[jax.Array]],
    starts: jax.Array | None,
    values: tuple[jax.Array, ...],
    regions: jax.Array | None,
    temporal: Temporal | None,
    shape: tuple[int, int],
    style_shapes: tuple[tuple[tuple[int, int], ...], ...],
    program: Program,
    fresh: bool,
) -> tuple[jax.Array, list[list[jax.Array]], jax.Array | None, Temporal | None, State]:
    """A pyramid level's normalised contents and styles, its regions, its temporal targets and
    its starting states, in one compiled call (eagerly, each resize and normalisation would
    compile on its own).

    Args:
      contents, styles: RGB in [0, 1] at their own shapes, resized here: contents (P, H, W, 3)
        to `shape`, each pair's styles to theirs in `style_shapes`.
      starts: None to start from the contents themselves (the very arrays the content features
        are computed from, so the first content loss is exactly 0, as in the seed); (P, H, W, 3)
        RGB in [0, 1] when `fresh`, else a previous level's normalised results.
      values: (P,) lr, b1, b2 and ema of each pair.
      regions: None, or the style loss's (K, H, W) regions (see `masks`), resized as the contents.
      temporal: None, or each pair's temporal targets ((P, H, W, 3), (P, H, W, 1)), resized too.
    """
    level_contents = _over_pairs(lambda c: vgg.normalize(pyramid.resize(c, shape)), contents)
    level_styles = [
        [vgg.normalize(pyramid.resize(s, size)) for s, size in zip(pair, sizes)]
        for pair, sizes in zip(styles, style_shapes)
    ]
    # Normalisation is affine per channel, so resizing commutes with it.
    if starts is None:
        images = level_contents
    else:
        images = _over_pairs(lambda x: pyramid.resize(vgg.normalize(x) if fresh else x, shape), starts)
    states = _over_pairs(lambda image, *v: start_state(image, program, *v), images, *values)
    if regions is not None:
        regions = jnp.moveaxis(pyramid.resize(jnp.moveaxis(regions, 0, -1), shape), -1, 0)
    if temporal is not None:
        temporal = jax.tree.map(lambda x: _over_pairs(lambda y: pyramid.resize(y, shape), x), temporal)
    return level_contents, level_styles, regions, temporal, states


def _targets(
    params: Any,
    contents: jax.Array,
    styles: Sequence[Sequence[jax.Array]],
    values: Mapping[str, np.ndarray],
    config: StyleConfig,
    regions: jax.Array | None = None,
    temporal: Temporal | None = None,
) -> Targets:
    """Each pair's `compute_targets` (the same `regions` for all, each pair its own `temporal`
    targets), stacked along a pairs axis, with each pair's loss weights."""
    # Not compiled: XLA rounds a compiled forward pass differently from the step's (by ~1e-8),
    # and the first content loss would no longer be exactly 0, as it is in the seed.
    pair_temporal = [None if temporal is None else Temporal(*(x[i] for x in temporal)) for i in range(len(contents))]
    targets = [compute_targets(params, c, s, config, regions, t) for c, s, t in zip(contents, styles, pair_temporal)]
    stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves), *targets)
    return stacked._replace(**{name: jnp.asarray(values[name]) for name in _WEIGHTS})


def _layout(tree: Any) -> tuple[Any, tuple[int, ...]]:
    """What a tree's shardings depend on: its structure and its leaves' ranks (hashable)."""
    leaves, treedef = jax.tree.flatten(tree)
    return treedef, tuple(np.ndim(x) for x in leaves)


@functools.cache
def _compiled_step(program: Program, mesh: Mesh, num_steps: int, rows: int, layout: tuple) -> jax.stages.Wrapped:
    """`num_steps` steps of every pair, jitted with the shardings `mesh` gives (state donated).

    States and targets come padded (see `sharding.pad`): the crop to the `rows` true rows
    happens inside, so the steps see exactly the unpadded problem; the states go back padded
    again (their padding rows zero), for the next call to take as they are.
    """

    def style_steps(states: State, params: Any, targets: Targets) -> tuple[State, dict[str, jax.Array]]:
        states = sharding.constrain(sharding.crop(states, rows), mesh)
        targets = targets._replace(
            content=sharding.crop_features(targets.content, rows),
            regions=tuple(r._replace(masks=sharding.crop_features(r.masks, rows)) for r in targets.regions),
            temporal=sharding.crop(targets.temporal, rows),
        )
        targets = sharding.constrain(targets, mesh)
        states, metrics = _over_pairs(lambda s, t: train_steps(s, params, t, program, num_steps), states, targets)
        return sharding.constrain(sharding.pad_rows(states, mesh.shape[sharding.ROWS]), mesh), metrics

    treedef, ranks = layout
    states, targets = treedef.unflatten([NamedSharding(mesh, sharding.spec(r)) for r in ranks])
    return jax.jit(
        style_steps,
        in_shardings=(states, sharding.replicated(mesh), targets),
        out_shardings=(states, NamedSharding(mesh, P(sharding.PAIRS))),
        donate_argnums=(0,),
    )


def iterate(
    contents: np.ndarray,
    styles: Sequence[np.ndarray | Sequence[np.ndarray]],
    params: Any,
    config: StyleConfig = StyleConfig(),
    *,
    per_pair: Mapping[str, Sequence[float]] | None = None,
    mesh: Mesh | None = None,
    stops: Sequence[int] = (),
    init: np.ndarray | None = None,
    resume: tuple[int, Sequence[np.ndarray]] | None = None,
    style_masks: np.ndarray | Sequence[np.ndarray] | None = None,
    content_mask: np.ndarray | None = None,
    temporal: Temporal | None = None,
) -> Iterator[tuple[int, State, dict[str, jax.Array]]]:
    """Optimises P pairs at once, level by level of the pyramid, yielding after each compiled call.

    Args:
      contents: (P, H, W, 3) float RGB in [0, 1].
      styles: per pair, one (h, w, 3) float RGB image in [0, 1] or several (blended by
        `style_blend`): of the content's shape, or with `style_scale` of any shape (resized per
        level, see `pyramid`).
      params: VGG19 params.
      per_pair: {field of PER_PAIR: P values}: each pair's own loss weights, Adam
        hyperparameters or EMA decay (a sweep); the others take the config's.
      mesh: where the pairs and rows go (see `sharding`); default: one device.
      stops: step counts at which a call must end (e.g. to save an image there).
      init: (P, H, W, 3) RGB starting images in [0, 1]; default: `initial_image` of each content
        (recolored: in the colours of its styles after `color_inputs`).
      resume: (step, the states' leaves) saved by an interrupted run of these arguments (see
        `jaxart.style.resume`): go on from there, to the bits the run would have given.
      style_masks: K (H, W) float weights in [0, 1], one per style image of each pair (not
        blended: each style applies where its mask is white; see `masks`); the same for every pair.
      content_mask: (H, W) float weights in [0, 1]: the style applies only there (the picture
        keeps the content elsewhere: give it to `result_images` too); the same for every pair.
      temporal: for video frames, each pair's temporal targets (see `Temporal`, with a leading
        pairs axis: (P, H, W, 3) and (P, H, W)), weighed by `temporal_weight`; see
        `jaxart.style.folders.run_frames`.
    Yields:
      (steps done so far, states, {metric: (P, steps in this call) float32}); the states have a
      leading pairs axis and the current level's shape. The metrics stay on the device: a caller
      that reads them only after asking for the next call (see `jaxart.style.driver`) never makes
      the device wait for the host. The states are donated to the next call: read them before.
    """
    contents = np.asarray(contents)
    pair_styles = [[np.asarray(s) for s in (pair if isinstance(pair, (list, tuple)) else [pair])] for pair in styles]
    if contents.ndim != 4 or len(pair_styles) != len(contents):
        raise ConfigError(f"contents {contents.shape} must be (P, H, W, 3), with one entry of styles per content")
    if config.style_scale is None and any(s.shape != contents.shape[1:] for pair in pair_styles for s in pair):
        sizes = ", ".join(str(s.shape) for pair in pair_styles for s in pair)
        raise ConfigError(
            f"contents {contents.shape[1:]} and styles {sizes} must have the same shape "
            f"(or give {errors.option('style_scale')})"
        )
    for pair in pair_styles:
        check_sizes(contents.shape[1:], [s.shape for s in pair], config)
    counts = [len(pair) for pair in pair_styles]
    regions = masks.regions(style_masks, content_mask, counts, bool(config.style_blend), contents.shape[1:3])
    if regions is not None:
        regions = regions.astype(contents.dtype)
    temporal = _checked_temporal(temporal, contents, config)
    configs = _pair_configs(config, len(contents), per_pair)
    program = _program(configs)
    values = {name: np.asarray([getattr(c, name) for c in configs], np.float32) for name in _WEIGHTS}
    # In the image's dtype: Adam's 1 - b2 of a float32 b2 is not float64's, and the seed's is.
    values |= {name: np.asarray([getattr(c, name) for c in configs], contents.dtype) for name in _OPTIMISER}
    mesh = sharding.make_mesh() if mesh is None else mesh
    if init is not None:
        starts = np.asarray(init)
    elif config.init not in CONTENT_STARTS:
        starts = np.stack([initial_image(content, config) for content in contents])
    else:
        starts = None
    contents, pair_styles, starts = color_inputs(contents, pair_styles, starts, config)
    if init is None and config.init == "recolored":  # in the colours of the styles the run sees
        starts = np.stack([initial_image(c, config, pair) for c, pair in zip(contents, pair_styles)])
    if temporal is not None and config.luminance_only:  # the run's iterate is grey: so is its target
        temporal = temporal._replace(previous=colors.luminance(np.asarray(temporal.previous)))
    placed_params = jax.device_put(params, sharding.replicated(mesh))
    shapes = pyramid.level_shapes(contents.shape[1:3], config)
    ends = np.cumsum(pyramid.level_steps(config.steps, len(shapes))).tolist()
    per_call, done = steps_per_call(config), 0
    saved: Sequence[np.ndarray] | None = None
    if resume is not None:
        done, saved = resume
    for level, (shape, end) in enumerate(zip(shapes, ends)):
        if end <= done:  # a level an interrupted run finished
            continue
        style_shapes = tuple(
            tuple(pyramid.style_shape(s.shape[:2], shape, config) for s in pair) for pair in pair_styles
        )
        start = functools.partial(
            _start_level,
            contents,
            pair_styles,
            values=tuple(values[k] for k in _OPTIMISER),
            regions=regions,
            temporal=temporal,
            shape=tuple(shape),
            style_shapes=style_shapes,
            program=program,
        )
        level_contents, level_styles, level_regions, level_temporal, states = start(starts, fresh=level == 0)
        if saved is not None:
            states = _resumed(states, saved, at_level_end=level > 0 and done == ends[level - 1])
            saved = None
            if isinstance(states, jax.Array):  # the previous level's result: this level starts from it
                level_contents, level_styles, level_regions, level_temporal, states = start(states, fresh=False)
        targets = _targets(params, level_contents, level_styles, values, config, level_regions, level_temporal)
        states, targets = sharding.place(states, mesh), sharding.place(targets, mesh)
        for before, n in schedule.calls(done, end, per_call, stops):
            step = _compiled_step(program, mesh, n, shape[0], _layout((states, targets)))
            states, metrics = step(states, placed_params, targets)
            yield (
                before + n,
                sharding.crop(states, shape[0], len(contents)),
                sharding.crop(metrics, pairs=len(contents)),
            )
        done = end
        starts = sharding.crop(states.result, shape[0], len(contents))


def _checked_temporal(temporal: Temporal | None, contents: np.ndarray, config: StyleConfig) -> Temporal | None:
    """`iterate`'s temporal targets in the contents' dtype, the weights with a trailing channel
    axis; None when `temporal_weight` is 0. ConfigError unless they are (P, H, W, 3) and
    (P, H, W) arrays of the contents' (P, H, W), with weights in [0, 1]."""
    if temporal is None or config.temporal_weight == 0:
        return None
    previous, visible = (np.asarray(x) for x in temporal)
    if previous.shape != contents.shape or visible.shape != contents.shape[:3]:
        raise ConfigError(
            f"temporal targets {previous.shape} and {visible.shape} must be {contents.shape} and {contents.shape[:3]}"
        )
    if not np.all((visible >= 0) & (visible <= 1)):
        raise ConfigError("the temporal loss's visibility weights must lie in [0, 1]")
    return Temporal(previous.astype(contents.dtype), visible[..., None].astype(contents.dtype))


def _resumed(template: State, saved: Sequence[np.ndarray], at_level_end: bool) -> State | jax.Array:
    """A saved state in a level's place: the state itself (`template` gives its structure), or,
    saved at the end of the level before (a smaller shape), that level's (P, h, w, 3) result for
    this level to start from."""
    if not at_level_end:
        return resume.restore(template, saved)
    return resume.restore(template, saved, same_shapes=False).result


def compile_step(
    shape: tuple[int, int], config: StyleConfig, mesh: Mesh | None = None, pairs: int = 1
) -> jax.stages.Compiled:
    """One step of `pairs` pairs with (H, W) contents on `mesh` (default: one device), compiled
    for abstract arguments (nothing allocated): for XLA's memory plan and its HLO."""
    mesh = sharding.make_mesh() if mesh is None else mesh
    params = jax.eval_shape(vgg.init_params, jax.random.key(0))
    image = jax.ShapeDtypeStruct((*shape, 3), jnp.float32)
    one = (
        jax.eval_shape(functools.partial(init_state, config=config), image),
        jax.eval_shape(functools.partial(compute_targets, config=config), params, image, image),
    )
    batched = jax.tree.map(lambda x: jax.ShapeDtypeStruct((pairs, *x.shape), x.dtype), one)
    states, targets = jax.eval_shape(functools.partial(sharding.pad, mesh=mesh), batched)
    step = _compiled_step(config.program, mesh, 1, shape[0], _layout((states, targets)))
    return step.lower(states, params, targets).compile()


def result_images(
    states: State, contents: np.ndarray, config: StyleConfig, content_mask: np.ndarray | None = None
) -> np.ndarray:
    """Each pair's picture (see `result_image`, and its `content_mask`, the same for every
    pair): (P, H, W, 3) float32 RGB in [0, 1]."""
    return np.stack(
        [
            result_image(jax.tree.map(lambda x: x[i], states), content, config, content_mask)
            for i, content in enumerate(contents)
        ]
    )


def stylize_batch(
    contents: np.ndarray,
    styles: Sequence[np.ndarray | Sequence[np.ndarray]],
    params: Any,
    config: StyleConfig = StyleConfig(),
    *,
    per_pair: Mapping[str, Sequence[float]] | None = None,
    mesh: Mesh | None = None,
    init: np.ndarray | None = None,
    style_masks: np.ndarray | Sequence[np.ndarray] | None = None,
    content_mask: np.ndarray | None = None,
    temporal: Temporal | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """`stylize` of P (content, style) pairs at once, in one compiled program (see `iterate`
    for the arguments): each result is that of `stylize` on its pair alone, with its values
    (and the same masks).

    Returns:
      (images, history): (P, H, W, 3) float32 RGB in [0, 1], and {"loss", "content_loss",
      "style_loss"}: (P, steps) float32, each step's value before its update.
    """
    chunks = []
    calls = iterate(
        contents,
        styles,
        params,
        config,
        per_pair=per_pair,
        mesh=mesh,
        init=init,
        style_masks=style_masks,
        content_mask=content_mask,
        temporal=temporal,
    )
    for _, states, metrics in calls:
        chunks.append(metrics)  # fetched once, at the end: the calls run back to back
    return result_images(states, np.asarray(contents), config, content_mask), concat_history(chunks)


def stylize(
    content: np.ndarray,
    style: np.ndarray | Sequence[np.ndarray],
    params: Any,
    config: StyleConfig = StyleConfig(),
    *,
    mesh: Mesh | None = None,
    init: np.ndarray | None = None,
    style_masks: np.ndarray | Sequence[np.ndarray] | None = None,
    content_mask: np.ndarray | None = None,
    temporal: Temporal | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Gatys style transfer of one picture.

    Args:
      content: (H, W, 3) float RGB in [0, 1].
      style: (H, W, 3) float RGB in [0, 1], already resized to the content's size; or several
        style images, or any sizes with `style_scale` (see `iterate`).
      params: VGG19 params (see `jaxart.weights.load`).
      config: every option; the defaults are the seed's.
      mesh: e.g. `make_mesh(rows=4)` to split the picture's rows over 4 devices; default: one.
      init: the (H, W, 3) starting image (see `iterate`).
      style_masks: one (H, W) mask per style image, float weights in [0, 1] at the content's
        shape: each style applies where its mask is white, all in one picture (Gatys et al.
        2017; see `jaxart.style.masks`).
      content_mask: an (H, W) mask of float weights in [0, 1]: the style applies where it is
        white, and the picture keeps the content where it is black.
      temporal: a video frame's temporal targets, (H, W, 3) and (H, W) (see `Temporal` and
        `jaxart.style.folders.stylize_video`).
    Returns:
      (image, history): the stylised (H, W, 3) float32 RGB in [0, 1] (see `result_image`), and
      {"loss", "content_loss", "style_loss"}: (steps,) float32, each step's value before its
      update (L-BFGS: each iteration's).
    """
    images, history = stylize_batch(
        content[None],
        [style],
        params,
        config,
        mesh=mesh,
        init=None if init is None else init[None],
        style_masks=style_masks,
        content_mask=content_mask,
        temporal=None if temporal is None else Temporal(*(np.asarray(x)[None] for x in temporal)),
    )
    return images[0], {name: values[0] for name, values in history.items()}
