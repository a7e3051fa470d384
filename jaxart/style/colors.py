"""Colour control (Gatys et al. 2017, "Controlling Perceptual Factors in Neural Style Transfer"),
in ITU-R BT.601 YCbCr, full range (as JPEG/JFIF uses):

  * `keep_colors` (`original_colors`): after an RGB run, the result keeps its luminance Y and
    takes the content's chrominance (Cb, Cr): the style's strokes, the content's colours.
  * `match_color` (`color_transfer` histogram): before the run, the style's RGB mean and
    covariance become the content's.
  * `luminance`, `match_luminance` (`luminance_only`): the run sees grey pictures, the content's
    luminance and the style's (its mean and deviation the content's); `keep_colors` then puts
    the content's chrominance back.
  * `recolor` (`init` recolored): the other way round, a starting image, the content in the
    styles' colours. The optimisation then need not move the colours there itself.

The statistics are matched in NumPy float64: once per run, on the host, where float32's
eigendecomposition of a near-singular covariance would lose digits.
"""

from __future__ import annotations

from collections.abc import Sequence

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
# Added to the variances of the picture whose covariance is inverted: a flat-colour picture
# (zero covariance) maps to the reference's mean instead of NaN. Below one 8-bit level's
# variance (1/255^2 = 1.5e-5), so it changes no real picture's statistics perceptibly.
RIDGE = 1e-5


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


def luminance(images: np.ndarray) -> np.ndarray:
    """(..., 3) RGB -> (..., 3) grey: the BT.601 luminance Y (`rgb_to_ycbcr`'s) in every
    channel, a picture VGG takes as RGB whose own Y is that Y again."""
    images = np.asarray(images)
    y = images @ _RGB_TO_YCBCR[0].astype(images.dtype)
    return np.repeat(y[..., None], 3, axis=-1)


def _psd_power(matrix: np.ndarray, power: float) -> np.ndarray:
    """The symmetric `power` of a symmetric positive semi-definite matrix, by eigendecomposition
    (eigenvalues that rounding made slightly negative taken as 0)."""
    values, vectors = np.linalg.eigh(matrix)
    return (vectors * np.maximum(values, 0.0) ** power) @ vectors.T


def match_statistics(source: np.ndarray, reference: np.ndarray, ridge: float = RIDGE) -> np.ndarray:
    """`source` (..., C) moved affinely so that its channels' mean and covariance are those of
    `reference` (..., C; any number of pixels): x' = A (x - mu_s) + mu_r, with
    A = Sigma_r^(1/2) (Sigma_s + ridge I)^(-1/2), float64, not clipped.

    Of Gatys et al.'s two choices of A (a Cholesky factor or the symmetric square roots of
    "image analogies"), the symmetric one: Cholesky's triangular factor depends on the order of
    the channels, the symmetric roots do not. For C = 1 it matches mean and standard deviation.
    """
    channels = source.shape[-1]
    x = np.asarray(source, np.float64).reshape(-1, channels)
    r = np.asarray(reference, np.float64).reshape(-1, channels)
    mu_x, mu_r = x.mean(axis=0), r.mean(axis=0)
    cov_x = (x - mu_x).T @ (x - mu_x) / len(x)
    cov_r = (r - mu_r).T @ (r - mu_r) / len(r)
    a = _psd_power(cov_r, 0.5) @ _psd_power(cov_x + ridge * np.eye(channels), -0.5)
    return ((x - mu_x) @ a.T + mu_r).reshape(source.shape)


def match_color(style: np.ndarray, content: np.ndarray) -> np.ndarray:
    """(h, w, 3) RGB style in [0, 1] with the RGB mean and covariance of the (H, W, 3) content
    (`match_statistics`: Gatys et al. 2017's colour histogram matching), clipped to [0, 1], in
    the style's dtype."""
    return np.clip(match_statistics(style, content), 0.0, 1.0).astype(style.dtype)


def recolor(content: np.ndarray, styles: Sequence[np.ndarray]) -> np.ndarray:
    """The (H, W, 3) RGB content in [0, 1] with the RGB mean and covariance of the styles' pixels
    taken together (`match_statistics`), clipped to [0, 1], in the content's dtype."""
    pixels = np.concatenate([np.asarray(s).reshape(-1, 3) for s in styles])
    return np.clip(match_statistics(content, pixels), 0.0, 1.0).astype(content.dtype)


def match_luminance(style: np.ndarray, content: np.ndarray) -> np.ndarray:
    """The (h, w, 3) style's `luminance` with the mean and standard deviation of the (H, W, 3)
    content's (as Gatys et al. 2017 do before a luminance-only transfer), clipped to [0, 1]."""
    y = match_statistics(luminance(style)[..., :1], luminance(content)[..., :1])
    return np.repeat(np.clip(y, 0.0, 1.0), 3, axis=-1).astype(style.dtype)
