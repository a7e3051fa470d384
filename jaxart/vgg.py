"""VGG19's convolutional trunk (torchvision's `features`) as a Flax module, NHWC.

Flax linen rather than nnx: a linen module is a pure function of an explicit
params pytree, which is what everything here wants: params that are plain dicts
(converted from torchvision, saved by orbax, closed over by `jit`, `vmap`ped
across a batch of style transfers) and a `features(params, images, layers)` that
other JAX code can call without owning any mutable module object.

Layer names follow the usual convention: `conv{block}_{i}`, `relu{block}_{i}`,
`pool{block}`, for blocks 1-5 (2, 2, 4, 4, 4 convolutions). Only layers up to
the deepest one requested are computed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

# Output channels of each block's 3x3 convolutions (torchvision's config "E").
BLOCKS: tuple[tuple[int, ...], ...] = ((64,) * 2, (128,) * 2, (256,) * 4, (512,) * 4, (512,) * 4)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _layer_names() -> tuple[str, ...]:
    names = []
    for b, convs in enumerate(BLOCKS, start=1):
        for i in range(1, len(convs) + 1):
            names += [f"conv{b}_{i}", f"relu{b}_{i}"]
        names.append(f"pool{b}")
    return tuple(names)


LAYERS: tuple[str, ...] = _layer_names()
CONV_LAYERS: tuple[str, ...] = tuple(n for n in LAYERS if n.startswith("conv"))
# torchvision's `features.{index}` of each layer, for weight conversion.
TORCH_INDEX: dict[str, int] = {name: i for i, name in enumerate(LAYERS)}


def check_layers(layers: Iterable[str]) -> tuple[str, ...]:
    """Validates layer names; returns them as a tuple (hashable, usable as a static arg)."""
    layers = tuple(layers)
    unknown = [name for name in layers if name not in TORCH_INDEX]
    if unknown:
        raise ValueError(f"unknown VGG19 layer(s) {unknown}; known: {', '.join(LAYERS)}")
    if not layers:
        raise ValueError("ask for at least one VGG19 layer")
    return layers


def downsampling(layers: Iterable[str]) -> int:
    """How many 2x poolings precede the deepest of `layers` (an image needs >= 2**n px)."""
    deepest = max(TORCH_INDEX[name] for name in check_layers(layers))
    return sum(1 for name in LAYERS[:deepest] if name.startswith("pool"))


class VGG19(nn.Module):
    """torchvision's VGG19 `features`, returning the named activations.

    Attributes:
      pooling: "max" (torchvision) or "avg" (Gatys et al. suggest average pooling
        gives smoother gradients for image synthesis).
      dtype: computation dtype of the convolutions (e.g. bfloat16 on accelerators);
        outputs come back in at least float32 (float64 stays float64).
      remat: rematerialise each block in the backward pass (`jax.checkpoint`),
        trading compute for memory on large images.
    """

    pooling: str = "max"
    dtype: Any = jnp.float32
    remat: bool = False

    @nn.compact
    def __call__(self, images: jax.Array, layers: tuple[str, ...]) -> dict[str, jax.Array]:
        """images: (N, H, W, 3) ImageNet-normalised. Returns {layer: (N, h, w, c) float32}."""
        if self.pooling not in ("max", "avg"):
            raise ValueError(f"pooling must be 'max' or 'avg', got {self.pooling!r}")
        layers = check_layers(layers)
        deepest = max(TORCH_INDEX[name] for name in layers)
        wanted = set(layers)
        out: dict[str, jax.Array] = {}
        out_dtype = jnp.promote_types(self.dtype, jnp.float32)
        x = images.astype(self.dtype)
        conv = nn.remat(nn.Conv) if self.remat else nn.Conv
        for name in LAYERS[: deepest + 1]:
            kind = name[:4]
            if kind == "conv":
                channels = BLOCKS[int(name[4]) - 1][0]
                x = conv(channels, (3, 3), padding=((1, 1), (1, 1)), dtype=self.dtype, name=name)(x)
            elif kind == "relu":
                x = nn.relu(x)
            elif self.pooling == "max":
                x = nn.max_pool(x, (2, 2), strides=(2, 2), padding="VALID")
            else:
                x = nn.avg_pool(x, (2, 2), strides=(2, 2), padding="VALID")
            if name in wanted:
                out[name] = x.astype(out_dtype)
        return out


def features(
    params: Any, images: jax.Array, layers: Iterable[str], pooling: str = "max", dtype: Any = jnp.float32
) -> dict[str, jax.Array]:
    """Pure form of `VGG19`: activations of `layers` for NHWC `images` (ImageNet-normalised).

    Args:
      params: the VGG19 params pytree, {"conv1_1": {"kernel": (3, 3, 3, 64), "bias": (64,)}, ...}.
      images: (N, H, W, 3) float, already `normalize`d.
      layers: names such as ("relu1_1", "relu2_1"); nothing past the deepest is computed.
    Returns:
      {name: (N, h, w, c)}, float32 (float64 when dtype is float64).
    """
    return VGG19(pooling=pooling, dtype=dtype).apply({"params": params}, images, check_layers(layers))


def normalize(images: jax.Array) -> jax.Array:
    """RGB in [0, 1] (..., 3) -> ImageNet-normalised: (x - mean) / std per channel."""
    return (images - jnp.asarray(IMAGENET_MEAN, images.dtype)) / jnp.asarray(IMAGENET_STD, images.dtype)


def denormalize(images: jax.Array) -> jax.Array:
    """Exact inverse of `normalize`: x * std + mean per channel (no clamping)."""
    return images * jnp.asarray(IMAGENET_STD, images.dtype) + jnp.asarray(IMAGENET_MEAN, images.dtype)


def init_params(key: jax.Array) -> Any:
    """Random params with torchvision's VGG init (Kaiming normal, fan_out, zero bias).

    Meaningless pictures: for smoke runs and tests only.
    """
    kernel_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
    params = {}
    for name in CONV_LAYERS:
        key, sub = jax.random.split(key)
        b, i = int(name[4]), int(name[6])
        out_ch = BLOCKS[b - 1][0]
        in_ch = 3 if name == "conv1_1" else (BLOCKS[b - 2][0] if i == 1 else out_ch)
        params[name] = {
            "kernel": kernel_init(sub, (3, 3, in_ch, out_ch), jnp.float32),
            "bias": jnp.zeros((out_ch,), jnp.float32),
        }
    return params
