"""Masks and regions (Gatys et al. 2017, "Controlling Perceptual Factors in Neural Style Transfer",
spatial control): `style_masks` give each style image its own region of one picture; a
`content_mask` is where the style applies at all, the rest keeping the photo.

A mask is a float (H, W) array of weights in [0, 1] at the content's shape (white 1: the style
applies there). Rules:
  * style masks and a content mask combine by product: region k = style_masks[k] * content_mask
    (a content mask alone is one region, of all the styles blended);
  * at a pyramid level a region is resized as the content is (`pyramid.resize`);
  * at a VGG layer after k 2x2 poolings, a region is its mean over each 2**k x 2**k block, the
    pixels that one feature position stands for (`layer_masks`): the network's own grid, floored
    at the edges as its 'VALID' poolings floor (a resize to the layer's shape would drift from
    it where a pooling drops an odd row), and an all-white mask stays exactly 1;
  * a region's Gram matrix is that of the masked features, (F m)^T (F m), and its effective
    positions sum(m^2) replace h * w in the style loss (`losses.style_loss`);
  * with a content mask the picture is mask * result + (1 - mask) * content (`keep_outside`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxart import errors, images, vgg
from jaxart.errors import ConfigError, InputError


def layer_masks(mask: jax.Array, layers: Iterable[str]) -> dict[str, jax.Array]:
    """An (H, W) mask at each of `layers`' feature grids: {layer: (h, w, 1)} block means (see
    the module's rules); the trailing 1 broadcasts over the features' channels."""
    out = {}
    for name in layers:
        size = 2 ** vgg.downsampling([name])
        h, w = mask.shape[0] // size, mask.shape[1] // size
        blocks = mask[: h * size, : w * size].reshape(h, size, w, size)
        out[name] = jnp.mean(blocks, axis=(1, 3))[..., None]
    return out


def check(mask: np.ndarray, shape: tuple[int, ...], field: str) -> np.ndarray:
    """`mask` as a float array of `shape`, ConfigError naming `field` unless it is one, finite,
    in [0, 1] and not empty (all 0: a region of no pixel)."""
    mask = np.asarray(mask)
    if mask.shape != tuple(shape) or not np.issubdtype(mask.dtype, np.floating):
        raise ConfigError(f"{errors.option(field)} must be float {tuple(shape)}, got {mask.dtype} {mask.shape}")
    if not np.all((mask >= 0) & (mask <= 1)):
        raise ConfigError(f"{errors.option(field)} must hold weights in [0, 1]")
    empty = [i for i, m in enumerate(mask.reshape(-1, *shape[-2:])) if not m.any()]
    if empty:
        where = f" at index {empty}" if mask.ndim == 3 else ""
        raise ConfigError(f"{errors.option(field)} is empty (all 0){where}: a region of no pixel")
    return mask


def check_styles(masks: int, styles: int, blended: bool) -> None:
    """ConfigError unless `masks` style masks can place `styles` style images: one mask per
    style, and no blend (a blend mixes the styles everywhere)."""
    if blended:
        raise ConfigError(
            f"{errors.option('style_masks')} give each style its own region and {errors.option('style_blend')} "
            "mixes the styles everywhere: give one or the other"
        )
    if masks != styles:
        raise ConfigError(
            f"{errors.option('style_masks')} has {masks} mask(s) for {styles} style image(s): give one per style"
        )


def regions(
    style_masks: np.ndarray | Sequence[np.ndarray] | None,
    content_mask: np.ndarray | None,
    style_counts: Sequence[int],
    blended: bool,
    shape: tuple[int, int],
) -> np.ndarray | None:
    """The style loss's (K, H, W) regions at (H, W) contents whose pairs have `style_counts`
    style images (`blended`: mixed by a blend): each style mask times the content mask (K style
    masks, one per style of every pair), the content mask alone (K = 1: the styles blended), or
    None without masks. ConfigError for masks that do not fit (see `check`, `check_styles`)."""
    if content_mask is not None:
        content_mask = check(content_mask, shape, "content_mask")
    if style_masks is None:
        return None if content_mask is None else content_mask[None]
    for count in sorted(set(style_counts)):
        check_styles(len(style_masks), count, blended)
    style_masks = check(np.asarray(style_masks), (len(style_masks), *shape), "style_masks")
    return style_masks if content_mask is None else style_masks * content_mask


def keep_outside(picture: np.ndarray, content: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """mask * picture + (1 - mask) * content, (h, w, 3) float32: exactly the content where the
    (H, W) mask is 0. The content and the mask are resized to a smaller picture's shape (a
    coarse pyramid level's snapshot)."""
    if content.shape != picture.shape:
        content = np.asarray(jax.image.resize(content, picture.shape, "linear"))
        mask = np.asarray(jax.image.resize(mask, picture.shape[:2], "linear"))
    weight = np.asarray(mask, np.float32)[..., None]
    return (weight * picture + (1 - weight) * content).astype(np.float32)


def read(paths: Sequence[str | os.PathLike], content: str | os.PathLike, flag: str) -> list[np.ndarray]:
    """The mask files given as `flag`, each (H, W) float32 at its own size (`images.load_mask`);
    InputError for one whose size as stored is not the content file's, or that is all black."""
    height, width = images.image_size(content)
    masks = []
    for path in paths:
        h, w = images.image_size(path)
        if (h, w) != (height, width):
            raise InputError(
                f"{flag} {str(path)!r} is {w}x{h}; a mask must have the content's size, "
                f"{width}x{height} ({str(Path(content).name)!r})"
            )
        mask = images.load_mask(path)
        # Below half an 8-bit level: black, whatever the file's depth was.
        if mask.max() < 0.5 / 255:
            raise InputError(f"{flag} {str(path)!r} is all black: the style would apply nowhere")
        masks.append(mask)
    return masks
