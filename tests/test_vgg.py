import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxart import vgg

CHECKED = ("conv3_2", "relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


def torch_features(model, images_nhwc: np.ndarray, layers) -> dict[str, np.ndarray]:
    """Runs torchvision's features layer by layer, copying outputs (its ReLUs are in place)."""
    wanted = {vgg.TORCH_INDEX[name]: name for name in layers}
    x = torch.from_numpy(images_nhwc.transpose(0, 3, 1, 2).copy())
    out = {}
    with torch.no_grad():
        for index, layer in enumerate(model.features):
            x = layer(x)
            if index in wanted:
                out[wanted[index]] = x.clone().numpy().transpose(0, 2, 3, 1)
            if len(out) == len(wanted):
                break
    return out


@pytest.mark.parametrize("height,width", [(64, 64), (67, 45)])
def test_features_match_torchvision(torch_vgg19, vgg_params, rng, height, width):
    images = rng.standard_normal((2, height, width, 3)).astype(np.float32)
    expected = torch_features(torch_vgg19, images, CHECKED)
    got = vgg.features(vgg_params, jnp.asarray(images), CHECKED)
    for name in CHECKED:
        assert got[name].shape == expected[name].shape, name
        # Relative to the layer's largest magnitude: ReLU zeros make per-element ratios meaningless.
        err = np.max(np.abs(np.asarray(got[name]) - expected[name])) / np.max(np.abs(expected[name]))
        assert err <= 1e-5, f"{name}: max relative error {err:.2e}"


def test_nothing_past_the_deepest_layer_is_computed(vgg_params):
    images = jnp.zeros((1, 32, 32, 3))
    jaxpr = str(jax.make_jaxpr(lambda x: vgg.features(vgg_params, x, ("relu5_1",)))(images))
    # Up to relu5_1 there are 13 convolutions; conv5_2..conv5_4 must not appear.
    assert jaxpr.count("conv_general_dilated") == 13
    jaxpr = str(jax.make_jaxpr(lambda x: vgg.features(vgg_params, x, ("relu1_1",)))(images))
    assert jaxpr.count("conv_general_dilated") == 1


def test_layer_names_and_torch_indices():
    assert vgg.LAYERS[:5] == ("conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1")
    # The seed's selected indices '0','5','10','19','28' are conv1_1..conv5_1.
    assert [vgg.TORCH_INDEX[f"conv{b}_1"] for b in range(1, 6)] == [0, 5, 10, 19, 28]
    assert vgg.TORCH_INDEX["pool5"] == 36
    assert vgg.downsampling(["relu5_1"]) == 4 and vgg.downsampling(["relu1_1"]) == 0
    with pytest.raises(ValueError, match="unknown VGG19 layer"):
        vgg.check_layers(["relu6_1"])


def test_average_pooling_matches_torch_avgpool(torch_vgg19, vgg_params, rng):
    images = rng.standard_normal((1, 35, 33, 3)).astype(np.float32)
    model = torch.nn.Sequential(*list(torch_vgg19.features)[:10])
    for i, layer in enumerate(model):
        if isinstance(layer, torch.nn.MaxPool2d):
            model[i] = torch.nn.AvgPool2d(2, 2)
    with torch.no_grad():
        expected = model(torch.from_numpy(images.transpose(0, 3, 1, 2).copy())).numpy().transpose(0, 2, 3, 1)
    got = vgg.features(vgg_params, jnp.asarray(images), ("pool2",), pooling="avg")["pool2"]
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


def test_normalize_denormalize_round_trip(rng):
    images = jnp.asarray(rng.random((2, 5, 7, 3)), jnp.float32)
    normed = vgg.normalize(images)
    np.testing.assert_allclose(np.asarray(vgg.denormalize(normed)), np.asarray(images), atol=1e-6)
    # Against the definition in float64.
    x = np.asarray(images, np.float64)
    ref = (x - np.array(vgg.IMAGENET_MEAN)) / np.array(vgg.IMAGENET_STD)
    np.testing.assert_allclose(np.asarray(normed), ref, rtol=1e-6, atol=1e-6)


def test_init_params_match_torchvision_shapes(vgg_params):
    random = vgg.init_params(jax.random.key(1))
    assert jax.tree.map(np.shape, random) == jax.tree.map(np.shape, vgg_params)


def test_torchvision_input_is_exactly_the_identity(rng):
    x = jnp.asarray(rng.standard_normal((2, 5, 7, 3)), jnp.float32)
    np.testing.assert_array_equal(np.asarray(vgg.preprocess(vgg.torchvision_input(), x)), np.asarray(x))


def test_caffe_input_is_bgr_0_255_minus_the_mean_pixel(rng):
    rgb = rng.random((2, 5, 7, 3))
    got = vgg.preprocess(vgg.caffe_input(), vgg.normalize(jnp.asarray(rgb, jnp.float32)))
    expected = rgb[..., ::-1] * 255.0 - np.array(vgg.CAFFE_MEAN_BGR)
    np.testing.assert_allclose(np.asarray(got), expected, rtol=0, atol=1e-4)  # values up to ~150


def test_preprocessing_survives_jit_vmap_remat_and_bfloat16(vgg_params, rng):
    params = {**vgg_params, vgg.INPUT: vgg.caffe_input()}
    images = jnp.asarray(rng.standard_normal((3, 16, 16, 3)), jnp.float32)
    direct = vgg.features(params, images, ("relu2_1",))["relu2_1"]
    one = jax.jit(jax.vmap(lambda x: vgg.features(params, x[None], ("relu2_1",))["relu2_1"][0]))(images)
    np.testing.assert_allclose(np.asarray(one), np.asarray(direct), rtol=1e-5, atol=1e-5 * np.abs(direct).max())

    def loss(x, remat, dtype=jnp.float32):
        return jnp.sum(vgg.VGG19(remat=remat, dtype=dtype).apply({"params": params}, x, ("relu2_1",))["relu2_1"])

    plain, rematted = jax.grad(loss)(images, False), jax.grad(loss)(images, True)
    np.testing.assert_allclose(np.asarray(rematted), np.asarray(plain), rtol=1e-5, atol=1e-5 * np.abs(plain).max())
    half = jax.grad(loss)(images, False, jnp.bfloat16)
    assert half.dtype == jnp.float32 and np.corrcoef(np.ravel(half), np.ravel(plain))[0, 1] > 0.99


def test_convolution_gradients_are_jax_own(rng):
    # float64: the custom rule must be the transpose JAX derives, not an approximation of it.
    with jax.enable_x64(True):
        x, kernel, g = (rng.standard_normal(shape) for shape in ((2, 9, 11, 5), (3, 3, 5, 7), (2, 9, 11, 7)))
        ours = jax.vjp(vgg._conv_same, x, kernel)[1](g)
        theirs = jax.vjp(vgg._same, x, kernel)[1](g)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_preprocess_gradients_are_jax_own(rng):
    # float64: the custom rule must be the transpose JAX derives, for the images and the layer.
    with jax.enable_x64(True):
        p = {"kernel": rng.standard_normal((3, 3)), "bias": rng.standard_normal(3)}
        images, g = rng.standard_normal((2, 5, 7, 3)), rng.standard_normal((2, 5, 7, 3))
        ours = jax.vjp(vgg.preprocess, p, images)[1](g)
        theirs = jax.vjp(vgg.preprocess.fun, p, images)[1](g)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_the_images_gradient_of_preprocess_is_elementwise():
    # JAX's own rule reduces over the broadcast channel three times; XLA CPU ran each of those
    # reductions for ~8 ms at 400x300 (benchmarks.style_evaluation --profile).
    p = vgg.caffe_input()

    def hlo(fn):
        return jax.jit(jax.grad(lambda x: jnp.sum(fn(p, x) ** 2))).lower(jnp.ones((1, 30, 40, 3))).compile().as_text()

    assert " reduce(" in hlo(vgg.preprocess.fun)  # the test would see the old rule
    assert " reduce(" not in hlo(vgg.preprocess)


def test_input_gradient_inside_a_loop_convolves_by_an_hwio_kernel(vgg_params):
    # JAX's own rule left a kernel laid out as "01oi" inside loops, which XLA CPU ran in its
    # generic emitter at ~4.5x the time; the line searches evaluate inside loops.
    layers = ("relu2_1",)

    def loss(image):
        return sum(jnp.sum(f) for f in vgg.features(vgg_params, image, layers).values())

    def looped(image):
        return jax.lax.while_loop(lambda c: c[0] < 1, lambda c: (c[0] + 1, jax.grad(loss)(c[1])), (0, image))[1]

    hlo = jax.jit(looped).lower(jnp.zeros((1, 16, 16, 3))).compile().as_text()
    assert "convolution(" in hlo or "__ynn" in hlo
    assert "01oi" not in hlo
