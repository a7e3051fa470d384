"""Image sizes: the coarse-to-fine pyramid's levels and the style images' shapes.

Rules (shapes are (height, width); "longest side L" keeps the aspect ratio and floors the
other side, as the seed's `load_image` does with `max_size`):
  * pyramid p > 0: levels at longest sides round(p * sqrt(2)**k) while below the content's,
    then the content's own shape; p = 0 (or p >= the content's longest side): one level.
  * steps: split equally across levels, the last level taking the remainder.
  * style_scale None: each style is squashed to the level's content shape (the seed);
    style_scale s: each style gets longest side round(s * the level content's longest side).
"""

from __future__ import annotations

import math

import jax
import numpy as np

from jaxart import errors
from jaxart.errors import ConfigError
from jaxart.style.config import StyleConfig

Shape = tuple[int, int]


def scaled_shape(shape: Shape, longest: int) -> Shape:
    """`shape` resized so its longest side is `longest`, aspect kept (as the seed's max_size)."""
    h, w = (np.array(shape) * (longest / max(shape))).astype(int)
    return max(int(h), 1), max(int(w), 1)


def level_shapes(content_shape: Shape, config: StyleConfig) -> list[Shape]:
    """The (height, width) of each pyramid level, coarse to fine; the last is `content_shape`."""
    longest = max(content_shape)
    sides = []
    if config.pyramid:
        k = 0
        while (side := round(config.pyramid * math.sqrt(2) ** k)) < longest:
            sides.append(side)
            k += 1
    return [scaled_shape(content_shape, side) for side in sides] + [(content_shape[0], content_shape[1])]


def level_steps(steps: int, levels: int) -> list[int]:
    """Steps per level: equal shares, the remainder going to the last (finest) level."""
    share = steps // levels
    if share == 0:
        raise ConfigError(f"{errors.option('steps')} {steps} cannot cover {levels} {errors.option('pyramid')} levels")
    return [share] * (levels - 1) + [steps - share * (levels - 1)]


def style_longest(content_shape: Shape, config: StyleConfig) -> int | None:
    """The longest side of the styles beside a content (level) of `content_shape`; None
    without --style-scale (styles take the content's exact shape)."""
    if config.style_scale is None:
        return None
    return max(1, round(config.style_scale * max(content_shape)))


def style_shape(shape: Shape, content_shape: Shape, config: StyleConfig) -> Shape:
    """The shape a style image of `shape` takes beside a content (level) of `content_shape`."""
    longest = style_longest(content_shape, config)
    return (content_shape[0], content_shape[1]) if longest is None else scaled_shape(shape, longest)


def resize(image: jax.Array, shape: Shape) -> jax.Array:
    """(H, W, C) -> (*shape, C), antialiased linear; the very same array when already that shape
    (so a one-level run sees exactly the seed's inputs)."""
    if image.shape[:2] == tuple(shape):
        return image
    return jax.image.resize(image, (*shape, image.shape[-1]), "linear")
