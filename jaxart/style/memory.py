"""How much memory a style transfer needs, estimated before anything is allocated, and how much
the machine has: so that a size that cannot fit is refused in one line instead of swapping.

The estimate (`estimate_bytes`) is a formula, not a compilation (which would cost seconds before
every run): the VGG19 activations each pixel carries through the layers a step computes, times a
factor for what the backward pass keeps beside them, plus the params and the style images; or,
where it is larger (a large `style_scale`), the style targets' forward pass. Every option that
changes a shape counts: `max_size`, `style_scale`, `pyramid`, `style_blend` (styles per pair)
and the pairs run at once (a batch's contents x styles, a sweep's values, a folder's batch;
a video runs one frame at a time). `tests/test_style_batch.py`
checks it against XLA's own plan of the compiled step (`sharding.planned_bytes`): never below it,
and at most a third above it, for the configurations the CLI offers.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh

from jaxart import errors, vgg
from jaxart.errors import ConfigError
from jaxart.style import pyramid, sharding
from jaxart.style.config import StyleConfig

# Bytes XLA's buffer plan keeps per activation value of the forward pass, fitted to XLA CPU's
# `memory_analysis()` (128-400 px, jax 0.10): 1.33-1.52 without remat, 0.79 with it (each
# block recomputed in the backward pass); L-BFGS's line search evaluates the loss again.
ACTIVATION_FACTOR = 1.6
REMAT_FACTOR = 0.95
LBFGS_FACTOR = 1.2
LBFGS_HISTORY = 10  # optax.lbfgs's default memory_size: pairs of image-sized vectors
SLACK = 16 * 2**20  # small buffers the formula does not itemise (Gram targets, metrics)


def _layer_channels(name: str) -> tuple[int, int]:
    """(channels, 2**poolings before it) of a VGG19 layer's output; a pool's output is at the
    next resolution."""
    block = int(name[4])
    stride = 2 ** (block - 1 + (name.startswith("pool")))
    return vgg.BLOCKS[block - 1][0], stride


def _values_per_pixel(layers: tuple[str, ...]) -> float:
    """Activation values per input pixel of every layer VGG19 computes up to the deepest of `layers`."""
    deepest = max(vgg.TORCH_INDEX[name] for name in layers)
    total = 0.0
    for name in vgg.LAYERS[: deepest + 1]:
        channels, stride = _layer_channels(name)
        total += channels / stride**2
    return total


def _itemsize(config: StyleConfig) -> int:
    return 8 if config.dtype == "float64" else 4  # bfloat16 convolutions keep float32 outputs


def _held_per_pixel(config: StyleConfig) -> float:
    """Values one content pixel keeps through a pyramid level: content features, the image's state."""
    content = sum(channels / stride**2 for channels, stride in map(_layer_channels, config.content_layer_names))
    images = 3 * (3 + (1 if config.ema else 0) + (2 * LBFGS_HISTORY if config.optimizer == "lbfgs" else 0))
    return content + images


def _bytes_per_pixel(config: StyleConfig) -> float:
    """Bytes one content pixel costs a step: activations, content features, the image's state."""
    factor = REMAT_FACTOR if config.remat else ACTIVATION_FACTOR
    if config.optimizer == "lbfgs":
        factor *= LBFGS_FACTOR
    return _itemsize(config) * (factor * _values_per_pixel(config.layers) + _held_per_pixel(config))


def _eager_values_per_pixel(layers: tuple[str, ...]) -> float:
    """Activation values per input pixel at the peak of an uncompiled forward pass up to the
    deepest of `layers` (the style targets'): each layer's output is freed once the next one is
    made, so two at a time, besides the outputs of `layers`, kept for their Gram matrices.
    (XLA CPU measured 0.8-0.9x this at 1024-2048 px.)"""
    deepest = max(vgg.TORCH_INDEX[name] for name in layers)
    values = [3.0] + [channels / stride**2 for channels, stride in map(_layer_channels, vgg.LAYERS[: deepest + 1])]
    kept = sum(channels / stride**2 for channels, stride in map(_layer_channels, layers))
    return max(a + b for a, b in zip(values, values[1:])) + kept


def _style_pixels(shape: tuple[int, int], config: StyleConfig) -> int:
    """Pixels of one style image beside a content (level) of `shape`: the content's own, or with
    `style_scale` a square of the longest side it gives (the style's aspect is not known here:
    an upper bound)."""
    longest = pyramid.style_longest(shape, config)
    return shape[0] * shape[1] if longest is None else longest**2


def params_bytes(params: Any, config: StyleConfig | None = None) -> int:
    """Bytes of the params; with `config`, of those its step reads (layers up to its deepest)."""
    if config is not None:
        params = vgg.used_params(params, config.layers)
    return int(sum(np.prod(x.shape) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(params)))


def _peak_bytes(
    shape: tuple[int, int], config: StyleConfig, params: Any, pairs: int, step_pairs: int, rows: int
) -> int:
    """Estimated peak bytes on the default device of `pairs` transfers whose content is (height,
    width) `shape`, the compiled step running `step_pairs` of them split into `rows` shards.

    The finest pyramid level's peak is the run's (a coarser level has fewer pixels and a
    smaller style): its step, or its targets before it, made on the default device while the
    level before still holds its states; and all along, every pair's styles at this level.
    """
    # All params stay on the device; the step keeps a working copy of those it reads (and,
    # in another dtype, their cast copy too).
    fixed = params_bytes(params) + params_bytes(params, config) * (1 if config.dtype == "float32" else 2)
    pixels = shape[0] * shape[1]
    levels = pyramid.level_shapes(shape, config)
    before = levels[-2][0] * levels[-2][1] if len(levels) > 1 else 0
    itemsize = _itemsize(config)
    styles = pairs * max(len(config.style_blend), 1) * _style_pixels(shape, config) * 3 * itemsize
    step = step_pairs * pixels * _bytes_per_pixel(config) / rows
    targets = itemsize * (
        pairs * (pixels + before) * _held_per_pixel(config)
        + _eager_values_per_pixel(config.style_layer_names) * _style_pixels(shape, config)
    )
    return int(fixed + SLACK + styles + max(step, targets))


def estimate_bytes(shape: tuple[int, int], config: StyleConfig, params: Any, pairs: int = 1) -> int:
    """Estimated peak bytes of a run whose content is (height, width) `shape`, `pairs` transfers
    at once for a batch (a sweep, a folder's): its finest pyramid level's step, or its style
    targets (larger with a large `style_scale`), besides the styles (every one a blend takes)."""
    return _peak_bytes(shape, config, params, pairs, pairs, 1)


def available_bytes() -> int | None:
    """Memory a run may use now: the default device's free memory on an accelerator, else the
    host's MemAvailable (None where neither can be read)."""
    device = jax.local_devices()[0]
    if device.platform != "cpu":
        stats = device.memory_stats() or {}
        if "bytes_limit" in stats:
            return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _device_bytes(
    shape: tuple[int, int], config: StyleConfig, params: Any, pairs: int = 1, mesh: Mesh | None = None
) -> int:
    """`estimate_bytes` per device of `mesh`: each holds the params and its share of the pairs and
    of the rows. Forced host devices share one memory: judged as a whole."""
    if mesh is None or mesh.devices.flat[0].platform == "cpu":
        return estimate_bytes(shape, config, params, pairs)
    # The targets are made, and the styles kept, on the default device, for every pair.
    share = -(-pairs // mesh.shape[sharding.PAIRS])
    return _peak_bytes(shape, config, params, pairs, share, mesh.shape[sharding.ROWS])


def _largest(fits: Callable[[int], bool], start: int) -> int:
    """The largest n >= 0 for which `fits` (true up to some n, false beyond) holds: doubling
    from `start`, then halving the gap."""
    lo, hi = 0, start
    while fits(hi):
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def largest_fitting(
    image_shape: tuple[int, int],
    config: StyleConfig,
    params: Any,
    budget: int,
    pairs: int = 1,
    mesh: Mesh | None = None,
) -> int:
    """The largest `max_size` (longest side) at which a content of `image_shape`'s aspect fits
    in `budget` bytes per device (0 if none does)."""

    def fits(longest: int) -> bool:
        return _device_bytes(pyramid.scaled_shape(image_shape, longest), config, params, pairs, mesh) <= budget

    return _largest(fits, max(image_shape) * 2 + 1)


def largest_style_scale(
    shape: tuple[int, int], config: StyleConfig, params: Any, budget: int, pairs: int = 1, mesh: Mesh | None = None
) -> float:
    """The largest `style_scale`, to two decimals, at which a run whose content is `shape` (after
    `max_size`) fits in `budget` bytes per device (0 if none does)."""

    def fits(style_longest: int) -> bool:
        scaled = dataclasses.replace(config, style_scale=style_longest / max(shape))
        return _device_bytes(shape, scaled, params, pairs, mesh) <= budget

    return math.floor(100 * _largest(fits, max(shape)) / max(shape)) / 100


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{math.ceil(n / 2**20)} MiB"


def check_fits(
    image_shape: tuple[int, int], config: StyleConfig, params: Any, pairs: int = 1, mesh: Mesh | None = None
) -> None:
    """Raises ConfigError, naming the largest `max_size` (and `style_scale`) that fits, if a run
    at `config.max_size` on a content of `image_shape` (its file's (height, width)) needs more
    memory per device of `mesh` than is available now."""
    budget = available_bytes()
    if budget is None:
        return
    shape = pyramid.scaled_shape(image_shape, config.max_size)
    need = _device_bytes(shape, config, params, pairs, mesh)
    if need <= budget:
        return
    what = f"{pairs} pairs at {shape[1]}x{shape[0]}" if pairs > 1 else f"a {shape[1]}x{shape[0]} image"
    longest = pyramid.style_longest(shape, config)
    if longest is not None:
        what += f" with styles up to {longest} px long"
    largest = largest_fitting(image_shape, config, params, budget, pairs, mesh)
    fits = f"the largest {errors.option('max_size')} that fits is {largest}" if largest else "no size fits"
    scale = largest_style_scale(shape, config, params, budget, pairs, mesh) if longest is not None else 0
    if scale:
        fits += f", or at this size the largest {errors.option('style_scale')} is {scale:g}"
    hint = "" if config.remat else f" ({errors.option('remat')} needs less)"
    raise ConfigError(f"{what} needs about {_gib(need)} but {_gib(budget)} is available: {fits}{hint}")
