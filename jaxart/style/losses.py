"""Style-transfer losses: the Gram matrix, content and style losses (Gatys et al.), total variation.

Features are NHWC arrays as `jaxart.vgg.features` returns them; batch size 1 in
the seed's setting, and every function also works under `vmap`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

import jax
import jax.numpy as jnp


@jax.custom_vjp
def gram_matrix(features: jax.Array) -> jax.Array:
    """G = F F^T of (..., H, W, C) features, F being the (C, H*W) matrix: (..., C, C).

    Unnormalised, as in the seed; `style_loss` divides by C*H*W.

    The features' gradient is F (dG + dG^T) with F as the (H*W, C) rows it is stored as: JAX's
    own transpose rule computes it as a (C, H*W) product, which XLA CPU ran at a quarter of its
    matmul peak or less and then transposed back (`python -m benchmarks.style_evaluation
    --profile 400`).
    """
    f = _pixel_rows(features)
    return jnp.einsum("...pc,...pd->...cd", f, f)


def _gram_forward(features: jax.Array) -> tuple[jax.Array, jax.Array]:
    return gram_matrix(features), features


def _gram_backward(features: jax.Array, g: jax.Array) -> tuple[jax.Array]:
    f = _pixel_rows(features)
    return (jnp.einsum("...pc,...cd->...pd", f, g + jnp.swapaxes(g, -1, -2)).reshape(features.shape),)


def _pixel_rows(features: jax.Array) -> jax.Array:
    """(..., H, W, C) features as their (..., H*W, C) matrix of one row per pixel."""
    *lead, h, w, c = features.shape
    return features.reshape(*lead, h * w, c)


gram_matrix.defvjp(_gram_forward, _gram_backward)


def content_loss(
    target: Mapping[str, jax.Array],
    content: Mapping[str, jax.Array],
    layer_weights: Mapping[str, float],
) -> jax.Array:
    """sum over layers of weight * mean((F_target - F_content)^2); a scalar."""
    # sum() starts at 0, which adds nothing (exactly): the seed's numbers stay.
    return cast(
        jax.Array, sum(w * jnp.mean(jnp.square(target[name] - content[name])) for name, w in layer_weights.items())
    )


# The least divisor of a region's loss: a region empty at a deep layer (a small mask, pooled
# away) gives a zero Gram against a zero target there, a loss of 0 rather than 0 / 0.
MIN_POSITIONS = 1e-12


def style_loss(
    target: Mapping[str, jax.Array],
    style_grams: Mapping[str, jax.Array],
    layer_weights: Mapping[str, float],
    masks: Mapping[str, jax.Array] | None = None,
) -> jax.Array:
    """sum over layers of weight * mean((G_target - G_style)^2) / (C*H*W); a scalar.

    Args:
      target: the target's features, {layer: (1, H, W, C)}.
      style_grams: the style's Gram matrices, {layer: (C, C)} (or (1, C, C)), scaled to the
        target's H*W positions (see `jaxart.style.transfer.style_grams`).
      masks: one region's weights, {layer: (H, W, 1)} in [0, 1] (see `jaxart.style.masks`):
        then G_target is the Gram matrix of the masked features F * m, and the region's
        effective positions S = sum(m^2) stand for H*W: G_style is scaled by S / (H*W) (a Gram
        matrix sums over positions) and the mean divided by C*S. An all-white mask gives the
        unmasked loss; and a region's loss is S / (H*W) times a whole picture's of the same
        per-position statistics, so a pixel is pulled as hard whatever its region's size.
    """

    def layer_loss(name: str) -> jax.Array:
        f = target[name]
        h, w, c = f.shape[-3:]
        if masks is None:
            g = gram_matrix(f).reshape(style_grams[name].shape)
            return jnp.mean(jnp.square(g - style_grams[name])) / (c * h * w)
        m = masks[name]
        positions = jnp.sum(jnp.square(m))
        g = gram_matrix(f * m).reshape(style_grams[name].shape)
        loss = jnp.mean(jnp.square(g - style_grams[name] * (positions / (h * w))))
        return loss / (c * jnp.maximum(positions, MIN_POSITIONS))

    return cast(jax.Array, sum(w * layer_loss(name) for name, w in layer_weights.items()))


def total_variation(images: jax.Array) -> jax.Array:
    """Total variation of (..., H, W, C) images: the mean squared difference between vertically
    neighbouring pixels plus that between horizontally neighbouring ones; a scalar.

    Means rather than sums, so the weight that suits one image size suits another.
    """
    dy = images[..., 1:, :, :] - images[..., :-1, :, :]
    dx = images[..., :, 1:, :] - images[..., :, :-1, :]
    return jnp.mean(jnp.square(dy)) + jnp.mean(jnp.square(dx))


def temporal_loss(images: jax.Array, previous: jax.typing.ArrayLike, visible: jax.typing.ArrayLike) -> jax.Array:
    """Ruder et al. 2016's short-term temporal loss: mean over pixels and channels of visible *
    (image - previous)^2, for (..., H, W, C) images, the previous frame's output warped into this
    one's place, and (..., H, W, 1) weights (1 where the warp is trusted); a scalar."""
    return jnp.mean(visible * jnp.square(images - previous))
