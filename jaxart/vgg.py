"""VGG19's convolutional trunk (torchvision's `features`) as a Flax module, NHWC.

Flax linen rather than nnx: a linen module is a pure function of an explicit
params pytree, which is what everything here wants: params that are plain dicts
(converted from torchvision, saved by orbax, closed over by `jit`, `vmap`ped
across a batch of style transfers) and a `features(params, images, layers)` that
other JAX code can call without owning any mutable module object.

Layer names follow the usual convention: `conv{block}_{i}`, `relu{block}_{i}`,
`pool{block}`, for blocks 1-5 (2, 2, 4, 4, 4 convolutions). Only layers up to
the deepest one requested are computed.

Images have one meaning for every set of weights: RGB normalised as torchvision's
models expect (`normalize`). Weights trained with another preprocessing (the original
Caffe VGG19: BGR, 0..255, minus the mean pixel) carry it as `params["input"]`, a per-pixel
affine map applied before conv1_1, so weights and their preprocessing cannot be parted.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any, cast

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["VGG19", "denormalize", "features", "init_params", "normalize"]

# Output channels of each block's 3x3 convolutions (torchvision's config "E").
BLOCKS: tuple[tuple[int, ...], ...] = ((64,) * 2, (128,) * 2, (256,) * 4, (512,) * 4, (512,) * 4)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The original VGG19's mean pixel, BGR, on a 0..255 scale (Simonyan & Zisserman's Caffe model).
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
INPUT = "input"


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


def used_params(params: Any, layers: Iterable[str]) -> Any:
    """The entries of `params` that a forward pass to the deepest of `layers` reads."""
    deepest = max(TORCH_INDEX[name] for name in check_layers(layers))
    used = set(LAYERS[: deepest + 1]) | {INPUT}
    return {name: p for name, p in params.items() if name in used}


def downsampling(layers: Iterable[str]) -> int:
    """How many 2x poolings precede the deepest of `layers` (an image needs >= 2**n px)."""
    deepest = max(TORCH_INDEX[name] for name in check_layers(layers))
    return sum(1 for name in LAYERS[:deepest] if name.startswith("pool"))


# Layer names of each block, conv{b}_1 .. pool{b}: the unit of rematerialisation.
BLOCK_LAYERS: tuple[tuple[str, ...], ...] = tuple(
    tuple(name for name in LAYERS if name[4] == str(b)) for b in range(1, len(BLOCKS) + 1)
)


def _out_channels(name: str) -> int:
    return BLOCKS[int(name[4]) - 1][0]


def _in_channels(name: str) -> int:
    b, i = int(name[4]), int(name[6])
    return 3 if name == "conv1_1" else _out_channels(f"conv{b - 1}_1") if i == 1 else _out_channels(name)


def _conv_init(key: jax.Array, in_ch: int, out_ch: int) -> dict[str, jax.Array]:
    """`nn.Conv`'s default init (LeCun normal kernel, zero bias); real weights come from torchvision."""
    return {
        "kernel": nn.initializers.lecun_normal()(key, (3, 3, in_ch, out_ch), jnp.float32),
        "bias": jnp.zeros((out_ch,), jnp.float32),
    }


def _same(x: jax.Array, kernel: jax.Array) -> jax.Array:
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC"))


@jax.custom_vjp
def _conv_same(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """A 3x3 'same' convolution whose input gradient is a convolution by an HWIO kernel made
    beforehand: the flipped kernel, its in and out channels swapped, held apart by an
    optimisation barrier.

    JAX's own transpose rule convolves by the kernel as it is, its layout in the convolution's
    dimension labels ("01oi"). At a program's top level XLA CPU lays that kernel out afresh and
    calls its convolution library; inside a `while_loop` or `cond` it did not, and ran that
    convolution in its generic emitter: a 256 px VGG19 value and gradient took 1.6 s inside a
    loop or branch against 0.35 s outside, and L-BFGS's line searches evaluate inside loops
    (benchmarks/RESULTS.md, "L-BFGS at the speed of one evaluation"). The kernel's gradient
    stays JAX's own.
    """
    return _same(x, kernel)


def _conv_forward(x: jax.Array, kernel: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    return _same(x, kernel), (x, kernel)


def _conv_backward(residuals: tuple[jax.Array, jax.Array], g: jax.Array) -> tuple[jax.Array, jax.Array]:
    x, kernel = residuals
    flipped = jax.lax.optimization_barrier(jnp.flip(kernel, (0, 1)).swapaxes(2, 3))
    (kernel_grad,) = jax.vjp(lambda k: _same(x, k), kernel)[1](g)
    return _same(g, flipped), kernel_grad


_conv_same.defvjp(_conv_forward, _conv_backward)


def _conv(p: dict[str, jax.Array], x: jax.Array, dtype: Any) -> jax.Array:
    """3x3 'same' convolution + bias in `dtype`, exactly as `nn.Conv` computes it."""
    x, kernel, bias = nn.dtypes.promote_dtype(x, p["kernel"], p["bias"], dtype=dtype)
    return _conv_same(x, kernel) + bias


def torchvision_input() -> dict[str, jax.Array]:
    """`params["input"]` of weights that take `normalize`d images as they are (torchvision's)."""
    return {"kernel": jnp.eye(3, dtype=jnp.float32), "bias": jnp.zeros((3,), jnp.float32)}


def caffe_input() -> dict[str, jax.Array]:
    """`params["input"]` of the original Caffe VGG19: a `normalize`d RGB image -> BGR, 0..255,
    minus the mean pixel. Output channel c reads RGB channel 2 - c, scaled by 255 * std."""
    kernel = np.zeros((3, 3), np.float64)
    bias = np.zeros(3, np.float64)
    for c in range(3):
        rgb = 2 - c
        kernel[rgb, c] = 255.0 * IMAGENET_STD[rgb]
        bias[c] = 255.0 * IMAGENET_MEAN[rgb] - CAFFE_MEAN_BGR[c]
    return {"kernel": jnp.asarray(kernel, jnp.float32), "bias": jnp.asarray(bias, jnp.float32)}


def _scaled_sums(images: jax.Array, kernel: jax.Array) -> jax.Array:
    """images @ kernel over the last axis (3 channels) as three scaled sums."""
    return images[..., 0:1] * kernel[0] + images[..., 1:2] * kernel[1] + images[..., 2:3] * kernel[2]


@jax.custom_vjp
def preprocess(p: dict[str, jax.Array], images: jax.Array) -> jax.Array:
    """`normalize`d (..., 3) images -> the network's input: x @ p["kernel"] + p["bias"] per pixel.

    Written as three scaled sums rather than a matmul: exact for the identity (torchvision's
    weights keep their bits) and free of reduced-precision matmul modes on accelerators.
    Kept apart from conv1_1 rather than folded into it, since zero padding at the borders
    would then pad with another value than the network was trained with.

    The images' gradient is three scaled sums as well, by the transposed kernel: JAX's own
    transpose rule reduces over the broadcast channel three times, which XLA CPU ran as three
    reductions of ~8 ms each at 400x300 (`python -m benchmarks.style_evaluation --profile 400`)
    for 0.7 MFLOP.
    """
    kernel, bias = (p[k].astype(images.dtype) for k in ("kernel", "bias"))
    return _scaled_sums(images, kernel) + bias


def _preprocess_forward(p: dict[str, jax.Array], images: jax.Array) -> tuple[jax.Array, tuple]:
    return preprocess(p, images), (p, images)


def _preprocess_backward(residuals: tuple, g: jax.Array) -> tuple[dict[str, jax.Array], jax.Array]:
    p, images = residuals
    (p_grad,) = jax.vjp(lambda p: preprocess.fun(p, images), p)[1](g)  # JAX's own; dropped where unread
    return p_grad, _scaled_sums(g, p["kernel"].astype(g.dtype).T)


preprocess.defvjp(_preprocess_forward, _preprocess_backward)


def _max_pool(x: jax.Array) -> jax.Array:
    """2x2, stride 2, 'VALID' max pooling of (N, H, W, C), as a reshape and a max. CPU-tuned.

    Same values as `nn.max_pool`, but its gradient is a compare and a select where
    reduce_window's is a select-and-scatter, which XLA CPU lowers to a scatter with four
    int32 index arrays of the input's size, hoisted to the start of the step and live
    throughout: more memory than the activations themselves. (Exact ties within a window,
    measure-zero after a convolution, share the gradient rather than one taking it all.)
    Measured on XLA CPU (benchmarks/RESULTS.md, "Style transfer at scale"): a 512 px step's
    scratch memory fell from 1082 to 859 MiB (remat: 1134 to 610 MiB). Not measured on
    accelerators, whose select-and-scatter lowering differs; kept there because the values agree.
    """
    n, h, w, c = x.shape
    x = x[:, : h // 2 * 2, : w // 2 * 2]
    return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def _block(
    params: dict[str, dict[str, jax.Array]],
    x: jax.Array,
    names: tuple[str, ...],
    wanted: frozenset[str],
    pooling: str,
    dtype: Any,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Runs the layers `names` (a prefix of one block) on x: (last output, {wanted name: output})."""
    out = {}
    out_dtype = jnp.promote_types(dtype, jnp.float32)
    for name in names:
        kind = name[:4]
        if kind == "conv":
            x = _conv(params[name], x, dtype)
        elif kind == "relu":
            x = nn.relu(x)
        elif pooling == "max":
            x = _max_pool(x)
        else:
            x = nn.avg_pool(x, (2, 2), strides=(2, 2), padding="VALID")
        if name in wanted:
            out[name] = x.astype(out_dtype)
    return x, out


def _remat(fn: Callable[[Any, jax.Array], Any]) -> Callable[[Any, jax.Array], Any]:
    """`jax.checkpoint` of `fn(params, x)`: keeps only (params, x) and recomputes fn in the backward pass.

    A custom VJP rather than `jax.checkpoint`: XLA CPU removes checkpoint's optimisation
    barriers early, then merges the recomputation into the forward pass (CSE, scheduling),
    so a checkpointed VGG19 compiled to exactly the memory of a plain one. Making the
    recomputation read the incoming cotangent (x + 0 * g) is a data dependence no pass can
    remove: the block is recomputed only once its output's gradient exists. (Costs: reverse
    mode only, as any custom VJP; an infinite cotangent element would make that block's
    gradient NaN rather than infinite.) CPU-tuned: with XLA CPU, `jax.checkpoint` per block
    compiled to exactly the plain step's memory, this saves 18% at 256 px and 26% at 1024 px
    for 1.32x the seconds per step (benchmarks/RESULTS.md, "Style transfer at scale");
    accelerator backends, which may keep checkpoint's barriers, are not measured.
    """

    @jax.custom_vjp
    def remat_fn(params, x):
        return fn(params, x)

    def forward(params, x):
        return fn(params, x), (params, x)

    def backward(residuals, cotangent):
        params, x = residuals
        anchor = jax.tree.leaves(cotangent)[0].reshape(-1)[0]
        x = x + (0 * anchor).astype(x.dtype)
        return jax.vjp(fn, params, x)[1](cotangent)

    remat_fn.defvjp(forward, backward)
    return remat_fn


class VGG19(nn.Module):
    """torchvision's VGG19 `features`, returning the named activations.

    Params: {"input": {"kernel": (3, 3), "bias": (3,)}, "conv1_1": {"kernel": (3, 3, 3, 64),
    "bias": (64,)}, ...}, the convolutions as `nn.Conv` names them, "input" the weights' own
    preprocessing (see `preprocess`; identity for torchvision's).

    Attributes:
      pooling: "max" (torchvision) or "avg" (Gatys et al. suggest average pooling
        gives smoother gradients for image synthesis).
      dtype: computation dtype of the convolutions (e.g. bfloat16 on accelerators);
        outputs come back in at least float32 (float64 stays float64).
      remat: rematerialise each block (conv{b}_1 .. pool{b}) in the backward pass: the
        forward pass keeps only each block's input (and the requested outputs), and the
        backward pass recomputes one block at a time from it, for about one extra forward
        pass of compute and much less memory on large images.
    """

    pooling: str = "max"
    dtype: Any = jnp.float32
    remat: bool = False

    @nn.compact
    def __call__(self, images: jax.Array, layers: tuple[str, ...]) -> dict[str, jax.Array]:
        """images: (N, H, W, 3) `normalize`d RGB. Returns {layer: (N, h, w, c) float32}."""
        if self.pooling not in ("max", "avg"):
            raise ValueError(f"pooling must be 'max' or 'avg', got {self.pooling!r}")
        layers = check_layers(layers)
        deepest = max(TORCH_INDEX[name] for name in layers)
        wanted = frozenset(layers)
        out: dict[str, jax.Array] = {}
        # The preprocessing runs in the images' precision; only the convolutions take `dtype`.
        x = preprocess(self.param(INPUT, lambda _: torchvision_input()), images).astype(self.dtype)
        for names in BLOCK_LAYERS:
            names = tuple(name for name in names if TORCH_INDEX[name] <= deepest)
            if not names:
                break
            params = {
                name: self.param(name, _conv_init, _in_channels(name), _out_channels(name))
                for name in names
                if name.startswith("conv")
            }
            block = functools.partial(
                _block, names=names, wanted=wanted & set(names), pooling=self.pooling, dtype=self.dtype
            )
            x, found = (_remat(block) if self.remat else block)(params, x)
            out.update(found)
        return out


def features(
    params: Any, images: jax.Array, layers: Iterable[str], pooling: str = "max", dtype: Any = jnp.float32
) -> dict[str, jax.Array]:
    """Pure form of `VGG19`: activations of `layers` for NHWC `images` (`normalize`d RGB).

    Args:
      params: the VGG19 params pytree (see `VGG19`), as `jaxart.weights.load` returns it: its
        "input" entry maps the images to what these weights were trained on.
      images: (N, H, W, 3) float, already `normalize`d, whatever the weights.
      layers: names such as ("relu1_1", "relu2_1"); nothing past the deepest is computed.
    Returns:
      {name: (N, h, w, c)}, float32 (float64 when dtype is float64).
    """
    # Without `mutable`, flax's apply returns the output alone (its annotation allows a pair).
    return cast(
        dict[str, jax.Array],
        VGG19(pooling=pooling, dtype=dtype).apply({"params": params}, images, check_layers(layers)),
    )


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
    params = {INPUT: torchvision_input()}
    for name in CONV_LAYERS:
        key, sub = jax.random.split(key)
        out_ch = _out_channels(name)
        params[name] = {
            "kernel": kernel_init(sub, (3, 3, _in_channels(name), out_ch), jnp.float32),
            "bias": jnp.zeros((out_ch,), jnp.float32),
        }
    return params
