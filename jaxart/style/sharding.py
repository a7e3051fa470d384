"""Style transfer over several devices, by XLA's SPMD partitioner: the same pure steps
(`transfer.train_steps`, `batch.batch_train_steps`) jitted with shardings on their arguments.

Two layouts, each a 1-D `jax.sharding.Mesh`:
  * pairs: a batch of (content, style) pairs split along its leading axis over a ("pairs",)
    mesh; params replicated. The batch is padded to a multiple of the device count with copies
    of its last pair, whose results are dropped.
  * rows: one image's rows split over a ("rows",) mesh: the image, the optimiser's moments
    (or L-BFGS's memory), the content features and the style images are row-sharded; params
    and Gram matrices replicated. The partitioner exchanges the convolutions' halo rows between
    neighbours and sums the Gram matrices' per-block parts; no collective is written here.
    Arrays of a height the mesh does not divide are carried padded with zero rows to the next
    multiple and cropped inside the compiled call, so the padding never reaches the loss.

Every leaf of rank >= 3 is taken to hold rows on its third axis from the end ((H, W, 3)
images, (1, h, w, c) features, L-BFGS's (m, H, W, 3) memory); lower ranks are replicated.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxart import schedule, vgg
from jaxart.errors import InputError
from jaxart.style import batch, memory, pyramid
from jaxart.style.config import StyleConfig
from jaxart.style.transfer import (
    State,
    Targets,
    check_sizes,
    compute_targets,
    concat_history,
    init_state,
    initial_image,
    result_image,
    steps_per_call,
    train_steps,
)

PAIRS, ROWS = "pairs", "rows"


def make_mesh(devices: int | None = None, axis: str = PAIRS) -> Mesh:
    """A 1-D mesh named `axis` over the first `devices` local devices (default: all of them).

    Auto axes: the partitioner, not the array types, decides how intermediate values are laid out.
    """
    available = jax.local_devices()
    count = len(available) if devices is None else devices
    if not 1 <= count <= len(available):
        raise ValueError(f"asked for {count} device(s); this process has {len(available)}")
    return jax.make_mesh((count,), (axis,), (AxisType.Auto,), devices=available[:count])


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def _row_spec(ndim: int) -> P:
    return P(*[None] * (ndim - 3), ROWS, None, None) if ndim >= 3 else P()


def row_shardings(tree: Any, mesh: Mesh) -> Any:
    """A NamedSharding per leaf of `tree` (arrays or shape structs): rows (axis -3) split over
    `mesh` for leaves of rank >= 3, replicated otherwise."""
    return jax.tree.map(lambda x: NamedSharding(mesh, _row_spec(np.ndim(x))), tree)


def _constrain_rows(tree: Any, mesh: Mesh) -> Any:
    return jax.lax.with_sharding_constraint(tree, row_shardings(tree, mesh))


def padded_rows(rows: int, devices: int) -> int:
    """`rows` rounded up to a multiple of `devices`."""
    return -(-rows // devices) * devices


def pad_rows(tree: Any, devices: int) -> Any:
    """Zero rows appended (axis -3) to each rank >= 3 leaf, to a multiple of `devices`."""

    def pad(x):
        if x.ndim < 3 or x.shape[-3] % devices == 0:
            return x
        widths = [(0, 0)] * x.ndim
        widths[-3] = (0, padded_rows(x.shape[-3], devices) - x.shape[-3])
        return jnp.pad(x, widths)

    return jax.tree.map(pad, tree)


def crop_rows(tree: Any, rows: int) -> Any:
    """The first `rows` rows (axis -3) of each rank >= 3 leaf: `pad_rows` undone."""
    return jax.tree.map(lambda x: x[..., :rows, :, :] if x.ndim >= 3 else x, tree)


def _crop_targets(targets: Targets, rows: int) -> Targets:
    # Each pooling floors the height: a layer after k poolings has rows // 2**k rows.
    content = {name: f[:, : rows >> vgg.downsampling([name])] for name, f in targets.content.items()}
    return targets._replace(content=content)


@functools.partial(jax.jit, static_argnames=("config", "shapes", "mesh"))
def rows_targets(
    params: Any, content: jax.Array, styles: tuple[jax.Array, ...], config: StyleConfig, shapes: tuple, mesh: Mesh
) -> Targets:
    """`compute_targets` of a row-padded normalised content and styles whose true (H, W) are
    `shapes` (content first); the content features come back row-padded and row-sharded."""
    content = _constrain_rows(content[: shapes[0][0]], mesh)
    styles = [_constrain_rows(s[: shape[0]], mesh) for s, shape in zip(styles, shapes[1:])]
    targets = compute_targets(params, content, list(styles), config)
    return _constrain_rows(pad_rows(targets, mesh.size), mesh)


@functools.partial(jax.jit, static_argnames=("config", "mesh"))
def rows_init_state(image: jax.Array, config: StyleConfig, mesh: Mesh) -> State:
    """`init_state` of a row-padded image, laid out by rows (zero rows stay zero in Adam's moments)."""
    return _constrain_rows(init_state(image, config), mesh)


@functools.partial(jax.jit, static_argnames=("config", "num_steps", "rows", "mesh"), donate_argnums=(0,))
def rows_train_steps(
    state: State, params: Any, targets: Targets, config: StyleConfig, num_steps: int, rows: int, mesh: Mesh
) -> tuple[State, dict[str, jax.Array]]:
    """`train_steps` of a row-padded, row-sharded state whose image has `rows` true rows.

    The crop to `rows` happens inside the call, so the steps see exactly the unsharded problem;
    the result is padded again (its padding rows zero) for the next call to take as it is.
    """
    state = _constrain_rows(crop_rows(state, rows), mesh)
    targets = _constrain_rows(_crop_targets(targets, rows), mesh)
    state, metrics = train_steps(state, params, targets, config, num_steps)
    return _constrain_rows(pad_rows(state, mesh.size), mesh), metrics


def place_rows(tree: Any, mesh: Mesh) -> Any:
    """Pads `tree` (see `pad_rows`) and puts it on `mesh`, rows split."""
    tree = pad_rows(jax.tree.map(jnp.asarray, tree), mesh.size)
    return jax.device_put(tree, row_shardings(tree, mesh))


def iterate_rows(
    content: np.ndarray,
    style: np.ndarray | Sequence[np.ndarray],
    params: Any,
    config: StyleConfig,
    mesh: Mesh,
    stops: tuple[int, ...] = (),
    init: np.ndarray | None = None,
) -> Iterator[tuple[int, State, dict[str, jax.Array]]]:
    """`transfer.iterate` with every image's rows split over `mesh` (a ("rows",) mesh): the same
    arguments, the same yields (metrics still on the device; the state cropped to the level's
    true shape, a gathered copy when the devices do not divide its height), the same numbers up
    to float summation order. Each pyramid level is laid out afresh."""
    styles = [np.asarray(s, np.float32) for s in (style if isinstance(style, (list, tuple)) else [style])]
    if config.style_scale is None and any(s.shape != content.shape for s in styles):
        shapes = ", ".join(str(s.shape) for s in styles)
        raise ValueError(f"content {content.shape} and style {shapes} must have the same shape")
    check_sizes(content.shape, [s.shape for s in styles], config)
    params = jax.device_put(params, replicated(mesh))
    content = jnp.asarray(content)
    image = vgg.normalize(jnp.asarray(initial_image(content, config) if init is None else init))
    shapes = pyramid.level_shapes(content.shape[:2], config)
    ends = np.cumsum(pyramid.level_steps(config.steps, len(shapes))).tolist()
    done = 0
    for shape, end in zip(shapes, ends):
        level_styles = [
            vgg.normalize(pyramid.resize(jnp.asarray(s), pyramid.style_shape(s.shape[:2], shape, config)))
            for s in styles
        ]
        targets = rows_targets(
            params,
            place_rows(vgg.normalize(pyramid.resize(content, shape)), mesh),
            tuple(place_rows(s, mesh) for s in level_styles),
            config,
            (tuple(shape), *(tuple(s.shape[:2]) for s in level_styles)),
            mesh,
        )
        state = rows_init_state(place_rows(pyramid.resize(image, shape), mesh), config, mesh)
        for before, n in schedule.calls(done, end, steps_per_call(config), stops):
            state, metrics = rows_train_steps(state, params, targets, config, n, shape[0], mesh)
            view = state if padded_rows(shape[0], mesh.size) == shape[0] else crop_rows(state, shape[0])
            yield before + n, view, metrics
        done = end
        image = crop_rows(state.result, shape[0])


def stylize_rows(
    content: np.ndarray,
    style: np.ndarray | Sequence[np.ndarray],
    params: Any,
    config: StyleConfig,
    mesh: Mesh,
    init: np.ndarray | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """`transfer.stylize` with the image's rows split over `mesh` (see `iterate_rows`)."""
    chunks, state = [], None
    for _, state, metrics in iterate_rows(content, style, params, config, mesh, init=init):
        chunks.append(metrics)
    return result_image(state, content, config), concat_history(chunks)


# Pairs ---------------------------------------------------------------------------------------


def pad_pairs(array: np.ndarray, devices: int) -> np.ndarray:
    """(B, ...) -> (B', ...), B' the next multiple of `devices`, padded with copies of the last pair."""
    extra = padded_rows(len(array), devices) - len(array)
    return np.concatenate([array, np.repeat(array[-1:], extra, axis=0)]) if extra else array


@functools.cache
def _pairs_programs(mesh: Mesh, config: StyleConfig, num_steps: int):
    """(targets, init, steps) of a batch split over `mesh`, each jitted with its shardings."""
    pairs, params = NamedSharding(mesh, P(PAIRS)), replicated(mesh)
    targets = jax.jit(
        functools.partial(batch.batch_targets, config=config),
        in_shardings=(params, pairs, pairs, pairs, pairs),
        out_shardings=pairs,
    )
    init = jax.jit(jax.vmap(functools.partial(init_state, config=config)), in_shardings=pairs, out_shardings=pairs)
    steps = jax.jit(
        functools.partial(batch.batch_train_steps, config=config, num_steps=num_steps),
        in_shardings=(pairs, params, pairs),
        out_shardings=(pairs, pairs),
        donate_argnums=(0,),
    )
    return targets, init, steps


def iterate_pairs(
    contents: np.ndarray,
    styles: np.ndarray,
    params: Any,
    config: StyleConfig,
    mesh: Mesh,
    content_weights: Sequence[float] | np.ndarray | None = None,
    style_weights: Sequence[float] | np.ndarray | None = None,
    stops: tuple[int, ...] = (),
) -> Iterator[tuple[int, State, dict[str, jax.Array]]]:
    """`batch.iterate_batch` with the pairs split over `mesh` (a ("pairs",) mesh): the same
    arguments and yields (states and metrics of the B real pairs, padding dropped; metrics still on the device)."""
    contents, styles, *weights = batch.check_pairs(contents, styles, config, content_weights, style_weights)
    count, n = len(contents), mesh.size
    weights = [pad_pairs(w, n) for w in weights]
    starts = np.stack([initial_image(content, config) for content in contents])
    make_targets, make_states, _ = _pairs_programs(mesh, config, 1)
    targets = make_targets(params, vgg.normalize(pad_pairs(contents, n)), vgg.normalize(pad_pairs(styles, n)), *weights)
    states = make_states(vgg.normalize(pad_pairs(starts, n)))
    for done, num_steps in schedule.calls(0, config.steps, steps_per_call(config), stops):
        states, metrics = _pairs_programs(mesh, config, num_steps)[2](states, params, targets)
        # The padded states go on to the next call; the caller sees the real pairs only.
        real = jax.tree.map(lambda x: x[:count], (states, metrics)) if count % n else (states, metrics)
        yield done + num_steps, *real


def stylize_pairs(
    contents: np.ndarray,
    styles: np.ndarray,
    params: Any,
    config: StyleConfig,
    mesh: Mesh,
    content_weights: Sequence[float] | np.ndarray | None = None,
    style_weights: Sequence[float] | np.ndarray | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """`batch.stylize_batch` with the pairs split over `mesh` (see `iterate_pairs`)."""
    chunks, states = [], None
    for _, states, metrics in iterate_pairs(contents, styles, params, config, mesh, content_weights, style_weights):
        chunks.append(metrics)
    return batch.batch_results(states, np.asarray(contents, np.float32), config), concat_history(chunks)


# Memory --------------------------------------------------------------------------------------


def compile_rows_step(shape: tuple[int, int], config: StyleConfig, mesh: Mesh) -> jax.stages.Compiled:
    """One `rows_train_steps` step on an (H, W) image split over `mesh`, compiled for abstract
    arguments (nothing allocated): for its memory plan and its HLO."""
    params = jax.eval_shape(vgg.init_params, jax.random.key(0))
    image = jax.ShapeDtypeStruct((*shape, 3), jnp.float32)
    targets = jax.eval_shape(functools.partial(compute_targets, config=config), params, image, image)
    state = jax.eval_shape(functools.partial(init_state, config=config), image)
    state, targets = (jax.eval_shape(functools.partial(pad_rows, devices=mesh.size), t) for t in (state, targets))

    def abstract(tree, shardings):
        return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)

    return rows_train_steps.lower(
        abstract(state, row_shardings(state, mesh)),
        abstract(params, jax.tree.map(lambda _: replicated(mesh), params)),
        abstract(targets, row_shardings(targets, mesh)),
        config=config,
        num_steps=1,
        rows=shape[0],
        mesh=mesh,
    ).compile()


def step_bytes(compiled: jax.stages.Compiled) -> int:
    """Bytes per device XLA plans for a compiled step: arguments + outputs - donated aliases +
    scratch (`memory_analysis()` of the per-device program the partitioner made)."""
    m = compiled.memory_analysis()
    return m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes + m.temp_size_in_bytes


def rows_step_memory(shape: tuple[int, int], config: StyleConfig, mesh: Mesh) -> int:
    """Bytes per device of one step on an (H, W) image split over `mesh` (see `step_bytes`)."""
    return step_bytes(compile_rows_step(shape, config, mesh))


# The command line --------------------------------------------------------------------------


def command_line_mesh(devices: int | None, spatial: bool, pairs: int) -> Mesh | None:
    """The mesh `--devices`/`--shard-spatial` ask for: several pairs split over `devices` (default:
    all local devices); one pair's rows split when `spatial`, or when `devices` > 1 is given for
    one pair; None (the plain one-device path) when that leaves one device. InputError otherwise."""
    available = len(jax.local_devices())
    count = available if devices is None else devices
    if count > available:
        raise InputError(f"--devices {count}: this process has {available} device(s)")
    if spatial and pairs > 1:
        raise InputError("--shard-spatial splits one picture over the devices; give one --content and one --style")
    if count == 1:
        return None
    if pairs > 1:
        return make_mesh(count, PAIRS)
    return make_mesh(count, ROWS) if spatial or devices is not None else None


def check_fits(image_shape: tuple[int, int], config: StyleConfig, params: Any, mesh: Mesh | None, pairs: int) -> None:
    """`memory.check_fits` per device of `mesh` (ValueError): a device holds the params and its
    share of the pairs, or of the rows. Forced host devices share one memory: judged as a whole."""
    if mesh is None or mesh.devices.flat[0].platform == "cpu":
        memory.check_fits(image_shape, config, params, pairs)
        return
    budget = memory.available_bytes()
    shape = pyramid.scaled_shape(image_shape, config.max_size)
    if mesh.axis_names == (PAIRS,):
        need = memory.step_bytes(shape, config, params, -(-pairs // mesh.size))
    else:
        fixed = memory.step_bytes((0, 0), config, params)
        need = fixed + (memory.step_bytes(shape, config, params) - fixed) // mesh.size
    if budget is not None and need > budget:
        raise ValueError(
            f"a {shape[1]}x{shape[0]} run needs about {memory.gib(need)} per device but {memory.gib(budget)} "
            f"is available (use more --devices, --remat or a smaller --max-size)"
        )
