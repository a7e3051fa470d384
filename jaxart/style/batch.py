"""Many style transfers in one compiled call: the whole optimisation `vmap`ped over (content,
style, weights) tuples of one shape, and what a command line needs around it (every content x
style combination of lists of files, output names, a contact sheet).

    contents, styles = load_images(content_files, style_files, config)
    image_batch, history = stylize_batch(*combinations(contents, styles), params, config)
    save_results("out.png", content_files, style_files, contents, styles, image_batch)
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxart import images, schedule, vgg
from jaxart.errors import InputError
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


def check_batch(config: StyleConfig) -> None:
    """Raises ValueError for options a batch cannot honour: it runs one style per pair (no
    `style_blend`), Adam at one scale, each style at its content's shape (no `style_scale`,
    L-BFGS or pyramid). The one place these rules live, for `iterate_batch` and the CLI."""
    if config.style_blend:
        raise ValueError("--style-blend blends several styles for one content; give one --content")
    if config.style_scale is not None or config.optimizer != "adam" or config.pyramid:
        raise ValueError(
            "several contents or styles run as one batch: Adam at one scale, styles at the "
            "content's shape (no --style-scale, --optimizer lbfgs or --pyramid)"
        )


@functools.partial(jax.jit, static_argnames="config")
def batch_targets(
    params: Any,
    contents: jax.Array,
    styles: jax.Array,
    content_weights: jax.Array,
    style_weights: jax.Array,
    config: StyleConfig,
) -> Targets:
    """`compute_targets` of normalised (B, H, W, 3) contents and styles, with per-pair (B,) weights."""
    targets = jax.vmap(lambda c, s: compute_targets(params, c, s, config))(contents, styles)
    return targets._replace(content_weight=content_weights, style_weight=style_weights)


@functools.partial(jax.jit, static_argnames="config")
def _start_batch(
    params: Any,
    contents: jax.Array,
    styles: jax.Array,
    starts: jax.Array,
    content_weights: jax.Array,
    style_weights: jax.Array,
    config: StyleConfig,
) -> tuple[Targets, State]:
    """Targets and initial states of (B, H, W, 3) RGB pairs in [0, 1], in one compiled call."""
    targets = batch_targets(
        params, vgg.normalize(contents), vgg.normalize(styles), content_weights, style_weights, config
    )
    return targets, jax.vmap(lambda image: init_state(image, config))(vgg.normalize(starts))


@functools.partial(jax.jit, static_argnames=("config", "num_steps"), donate_argnums=(0,))
def batch_train_steps(
    states: State, params: Any, targets: Targets, config: StyleConfig, num_steps: int
) -> tuple[State, dict[str, jax.Array]]:
    """`train_steps` of a batch of states and targets (leading axis B); metrics {name: (B, num_steps)}."""
    return jax.vmap(lambda s, t: train_steps(s, params, t, config, num_steps))(states, targets)


def pair_weights(values: Sequence[float] | np.ndarray | None, default: float, count: int, name: str) -> np.ndarray:
    """(count,) float32 per-pair loss weights: `values` checked, or `default` for every pair."""
    if values is None:
        return np.full((count,), default, np.float32)
    values = np.asarray(values, np.float32)
    if values.shape != (count,) or not np.all(values >= 0):
        raise ValueError(f"{name} must be {count} numbers >= 0, one per pair, got {values.tolist()}")
    return values


def check_pairs(
    contents: np.ndarray,
    styles: np.ndarray,
    config: StyleConfig,
    content_weights: Sequence[float] | np.ndarray | None,
    style_weights: Sequence[float] | np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(contents, styles, content weights, style weights) of B pairs, float32 and checked: what
    `iterate_batch` and `sharding.iterate_pairs` start from."""
    contents, styles = np.asarray(contents, np.float32), np.asarray(styles, np.float32)
    if contents.ndim != 4 or contents.shape != styles.shape:
        raise ValueError(f"contents {contents.shape} and styles {styles.shape} must both be (B, H, W, 3), alike")
    check_batch(config)
    check_sizes(contents.shape[1:], [styles.shape[1:]], config)
    count = len(contents)
    return (
        contents,
        styles,
        pair_weights(content_weights, config.content_weight, count, "content_weights"),
        pair_weights(style_weights, config.style_weight, count, "style_weights"),
    )


def iterate_batch(
    contents: np.ndarray,
    styles: np.ndarray,
    params: Any,
    config: StyleConfig = StyleConfig(),
    content_weights: Sequence[float] | np.ndarray | None = None,
    style_weights: Sequence[float] | np.ndarray | None = None,
    stops: tuple[int, ...] = (),
) -> Iterator[tuple[int, State, dict[str, np.ndarray]]]:
    """`iterate` over B pairs at once: yields (steps done, states with leading axis B,
    {metric: (B, steps in this call)}, still on the device) after each compiled call. Arguments
    as `stylize_batch`; `stops` are step counts at which a call must end."""
    contents, styles, content_weights, style_weights = check_pairs(
        contents, styles, config, content_weights, style_weights
    )
    params = jax.device_put(params)
    starts = np.stack([initial_image(content, config) for content in contents])
    targets, states = _start_batch(params, contents, styles, starts, content_weights, style_weights, config)
    for done, num_steps in schedule.calls(0, config.steps, steps_per_call(config), stops):
        states, metrics = batch_train_steps(states, params, targets, config, num_steps)
        yield done + num_steps, states, metrics


def batch_results(states: State, contents: np.ndarray, config: StyleConfig) -> np.ndarray:
    """Each pair's output image (see `result_image`): (B, H, W, 3) float32 RGB in [0, 1]."""
    return np.stack(
        [result_image(jax.tree.map(lambda x: x[i], states), content, config) for i, content in enumerate(contents)]
    )


def stylize_batch(
    contents: np.ndarray,
    styles: np.ndarray,
    params: Any,
    config: StyleConfig = StyleConfig(),
    content_weights: Sequence[float] | np.ndarray | None = None,
    style_weights: Sequence[float] | np.ndarray | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """`stylize` of B (content, style) pairs at once: each result is that of `stylize` on its pair
    alone (with its weights), computed by one compiled, vmapped optimisation.

    Args:
      contents, styles: (B, H, W, 3) float RGB in [0, 1], all of one shape (see `load_images`).
      content_weights, style_weights: (B,) per-pair loss weights; default: the config's.
      config: Adam, one pyramid level, one style per pair (the default path of `stylize`).
    Returns:
      (images, history): (B, H, W, 3) float32 RGB in [0, 1], and {"loss", "content_loss",
      "style_loss"}: (B, steps) float32, each step's value before its update.
    """
    chunks, states = [], None
    for _, states, metrics in iterate_batch(contents, styles, params, config, content_weights, style_weights):
        chunks.append(metrics)  # fetched once, at the end: the calls run back to back
    return batch_results(states, np.asarray(contents, np.float32), config), concat_history(chunks)


def load_images(
    content_files: Sequence[str | os.PathLike], style_files: Sequence[str | os.PathLike], config: StyleConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Reads contents and styles for a batch, each as `stylize`'s command line reads one pair.

    Rule: each content is resized so its longest side is `config.max_size` (as the seed does), and
    all contents must then have one shape: InputError naming the files otherwise (nothing is
    cropped or squashed behind the user's back). Each style is resized to that shape (as the seed).
    Returns (contents (C, H, W, 3), styles (S, H, W, 3)), float32 RGB in [0, 1].
    """
    contents = [images.load_image(path, max_size=config.max_size) for path in content_files]
    shapes = {image.shape for image in contents}
    if len(shapes) > 1:
        sizes = ", ".join(f"{Path(p).name} {c.shape[1]}x{c.shape[0]}" for p, c in zip(content_files, contents))
        raise InputError(
            f"content images must have one aspect ratio to run as a batch; at --max-size {config.max_size} "
            f"they are {sizes} (crop them alike, or run them separately)"
        )
    shape = contents[0].shape[:2]
    styles = [images.load_image(path, shape=shape) for path in style_files]
    try:
        check_sizes(contents[0].shape, [styles[0].shape], config)
    except ValueError as e:
        raise InputError(f"{e} (after resizing to --max-size {config.max_size})") from e
    return np.stack(contents), np.stack(styles)


def combinations(contents: np.ndarray, styles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every (content, style) pair, content-major: pair i * S + j is (contents[i], styles[j]).

    (C, H, W, 3) and (S, H, W, 3) -> two (C * S, H, W, 3) arrays.
    """
    return np.repeat(contents, len(styles), axis=0), np.tile(styles, (len(contents), 1, 1, 1))


def output_paths(
    output: str | os.PathLike, content_files: Sequence[str | os.PathLike], style_files: Sequence[str | os.PathLike]
) -> list[Path]:
    """`<out_stem>_<content stem>_<style stem><out suffix>` beside `output`, in `combinations` order.

    Raises InputError if two pairs would get one name (inputs sharing a stem).
    """
    output = Path(output)
    paths = [
        output.with_name(f"{output.stem}_{Path(c).stem}_{Path(s).stem}{output.suffix}")
        for c in content_files
        for s in style_files
    ]
    if len(set(paths)) < len(paths):
        raise InputError("content or style files share a name (stem), so their outputs would overwrite each other")
    return paths


def contact_sheet_path(output: str | os.PathLike) -> Path:
    output = Path(output)
    return output.with_name(f"{output.stem}_grid{output.suffix}")


def contact_sheet(contents: np.ndarray, styles: np.ndarray, results: np.ndarray, pad: int = 2) -> np.ndarray:
    """One picture of a batch: rows = contents, columns = styles, with the style images as the header
    row and the contents as the header column (top-left corner blank, white).

    (C, H, W, 3), (S, H, W, 3) and (C * S, H, W, 3) in `combinations` order -> (H', W', 3).
    """
    blank = np.ones_like(contents[:1])
    rows = [np.concatenate([blank, styles])]
    rows += [
        np.concatenate([content[None], results[i * len(styles) : (i + 1) * len(styles)]])
        for i, content in enumerate(contents)
    ]
    return images.make_grid(np.concatenate(rows), ncols=len(styles) + 1, pad=pad)


def save_results(
    output: str | os.PathLike,
    content_files: Sequence[str | os.PathLike],
    style_files: Sequence[str | os.PathLike],
    contents: np.ndarray,
    styles: np.ndarray,
    results: np.ndarray,
) -> list[Path]:
    """Writes each result (see `output_paths`) and the contact sheet (`contact_sheet_path`),
    each atomically; returns their paths, the sheet last."""
    paths = output_paths(output, content_files, style_files)
    paths = [images.save_image(path, image) for path, image in zip(paths, results)]
    return [*paths, images.save_image(contact_sheet_path(output), contact_sheet(contents, styles, results))]
