"""Colour transfer for `--original-colors`: ITU-R BT.601 YCbCr, full range (as JPEG/JFIF uses).

The stylised image keeps its luminance Y; its chrominance (Cb, Cr) is replaced by the
content's, so the result has the style's strokes and the content's colours.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

# Rows: Y, Cb, Cr from R, G, B in [0, 1]; Cb and Cr are centred on 0.5 below.
_RGB_TO_YCBCR = np.array(
    [
        [0.299, 0.587, 0.114],
        [-0.168736, -0.331264, 0.5],
        [0.5, -0.418688, -0.081312],
    ]
)
_YCBCR_TO_RGB = np.linalg.inv(_RGB_TO_YCBCR)
_CHROMA_OFFSET = np.array([0.0, 0.5, 0.5])


def rgb_to_ycbcr(images: jax.Array) -> jax.Array:
    """(..., 3) RGB in [0, 1] -> (..., 3) Y, Cb, Cr, each in [0, 1]."""
    matrix = jnp.asarray(_RGB_TO_YCBCR, images.dtype)
    return images @ matrix.T + jnp.asarray(_CHROMA_OFFSET, images.dtype)


def ycbcr_to_rgb(images: jax.Array) -> jax.Array:
    """Exact inverse of `rgb_to_ycbcr` (no clamping)."""
    matrix = jnp.asarray(_YCBCR_TO_RGB, images.dtype)
    return (images - jnp.asarray(_CHROMA_OFFSET, images.dtype)) @ matrix.T


def keep_colors(stylised: jax.Array, colors: jax.Array) -> jax.Array:
    """(H, W, 3) RGB: the luminance of `stylised`, the chrominance of `colors` (resized to match
    if needed, e.g. for a coarse pyramid level), clamped to [0, 1]."""
    if colors.shape != stylised.shape:
        colors = jax.image.resize(colors, stylised.shape, "linear")
    y = rgb_to_ycbcr(stylised)[..., :1]
    cbcr = rgb_to_ycbcr(colors.astype(stylised.dtype))[..., 1:]
    return jnp.clip(ycbcr_to_rgb(jnp.concatenate([y, cbcr], axis=-1)), 0.0, 1.0)
