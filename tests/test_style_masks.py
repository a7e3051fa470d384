"""Masks and regions (Gatys et al. 2017's spatial control): `style_masks` place several styles in
one picture, a `content_mask` keeps the photo outside a region. The masked Gram matrices and
losses are checked against a per-region NumPy float64 reference on the module's own features.

Runs use shallow layers on ~32 px images so that each compiles in seconds.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import EXAMPLES, run_style
from PIL import Image

from jaxart import images, vgg
from jaxart.distributed import host_devices_env
from jaxart.errors import ConfigError
from jaxart.style import masks
from jaxart.style.config import StyleConfig
from jaxart.style.loop import stylize, stylize_batch
from jaxart.style.losses import style_loss
from jaxart.style.transfer import compute_targets, loss_fn

# relu3_1 comes after two poolings: the 21-row content's layers floor to 10, then 5 rows.
LAYERS = dict(max_size=32, content_layers=("relu2_1",), style_layers=("relu1_1:0.5", "relu2_1", "relu3_1:2"), lr=0.05)


@pytest.fixture(scope="module")
def images3() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The content at 32 px (21x32) and two styles at its shape."""
    content = images.load_image(EXAMPLES / "content.png", max_size=32)
    shape = content.shape[:2]
    return content, *(images.load_image(EXAMPLES / name, shape=shape) for name in ("style.png", "mosaic.png"))


def halves(shape: tuple[int, int]) -> np.ndarray:
    """(2, H, W): the left half white, then the right half."""
    left = np.zeros(shape, np.float32)
    left[:, : shape[1] // 2] = 1
    return np.stack([left, 1 - left])


def soft_mask(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random(shape).astype(np.float32)


def features(params, image: np.ndarray, layers: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The module's features of a normalised image, {layer: (h, w, c)} float64."""
    out = vgg.VGG19().apply({"params": params}, jnp.asarray(image)[None], layers)
    return {name: np.asarray(f[0], np.float64) for name, f in out.items()}


def pooled(mask: np.ndarray, layer: str) -> np.ndarray:
    """The rule in NumPy float64: the mean over each 2**k x 2**k block, k the poolings before `layer`."""
    size = 2 ** vgg.downsampling([layer])
    h, w = mask.shape[0] // size, mask.shape[1] // size
    return np.asarray(mask, np.float64)[: h * size, : w * size].reshape(h, size, w, size).mean(axis=(1, 3))


def region_loss(f: dict, mask: np.ndarray, style: dict, weights: dict) -> float:
    """One region's style loss in float64: the masked Gram against the style's Gram, each over
    the region's effective positions sum(m^2) (see `losses.style_loss`)."""
    total = 0.0
    for name, weight in weights.items():
        h, w, c = f[name].shape
        m = pooled(mask, name)[..., None]
        fm = (f[name] * m).reshape(-1, c)
        positions = np.sum(m**2)
        s = style[name].reshape(-1, c)
        target = s.T @ s * (h * w / len(s)) * (positions / (h * w))
        total += weight * np.mean((fm.T @ fm - target) ** 2) / (c * positions)
    return total


# --- the rule: masks at each layer, masked Gram matrices and losses ------------------------------


def test_layer_masks_are_block_means_over_vggs_pooling_windows(params):
    mask = soft_mask((21, 32))
    layers = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")
    at = masks.layer_masks(jnp.asarray(mask), layers)
    f = features(params, np.zeros((21, 32, 3), np.float32), layers)
    for name in layers:
        assert at[name].shape == (*f[name].shape[:2], 1)  # the features' own grid
        np.testing.assert_allclose(at[name][..., 0], pooled(mask, name), rtol=1e-6)
    white = masks.layer_masks(jnp.ones((21, 32)), layers)
    assert all(np.all(np.asarray(m) == 1) for m in white.values())


def test_masked_loss_equals_a_per_region_numpy_gram(params, images3):
    content, style, _ = images3
    config = StyleConfig(**LAYERS)
    weights = dict(config.style_layers)
    x, s = vgg.normalize(jnp.asarray(content)), vgg.normalize(jnp.asarray(style))
    mask = soft_mask(content.shape[:2])
    targets = compute_targets(params, x, s, config, jnp.asarray(mask)[None])
    got = style_loss(
        vgg.VGG19().apply({"params": params}, x[None], config.style_layer_names),
        targets.regions[0].grams,
        weights,
        targets.regions[0].masks,
    )
    names = config.style_layer_names
    expected = region_loss(features(params, x, names), mask, features(params, s, names), weights)
    np.testing.assert_allclose(float(got), expected, rtol=1e-5)


def test_two_styles_in_complementary_halves_add_their_regions_losses(params, images3):
    content, style_a, style_b = images3
    config = StyleConfig(**LAYERS)
    weights, names = dict(config.style_layers), config.style_layer_names
    regions = halves(content.shape[:2])
    x = vgg.normalize(jnp.asarray(content + 0.1 * soft_mask(content.shape[:2])[..., None]))
    styles = [vgg.normalize(jnp.asarray(s)) for s in (style_a, style_b)]
    targets = compute_targets(params, vgg.normalize(jnp.asarray(content)), styles, config, jnp.asarray(regions))
    _, parts = loss_fn(x, params, targets, config.program)
    f = features(params, x, names)
    expected = sum(region_loss(f, m, features(params, s, names), weights) for m, s in zip(regions, styles))
    np.testing.assert_allclose(float(parts["style_loss"]), expected, rtol=1e-5)


def test_a_region_empty_at_a_deep_layer_adds_nothing_there(params, images3):
    """The last of 21 rows is dropped by the first pooling: a mask white only there is empty at
    relu2_1 and relu3_1, whose terms are then exactly 0 (not 0 / 0): relu1_1's alone remains."""
    content, style, _ = images3
    config = StyleConfig(**LAYERS)
    mask = np.zeros(content.shape[:2], np.float32)
    mask[-1] = 1
    x, s = vgg.normalize(jnp.asarray(content)), vgg.normalize(jnp.asarray(style))
    targets = compute_targets(params, x, s, config, jnp.asarray(mask)[None])
    grads, parts = jax.grad(loss_fn, has_aux=True)(x + 0.1, params, targets, config.program)
    assert np.all(np.isfinite(grads)) and float(parts["style_loss"]) > 0
    expected = region_loss(
        features(params, x + 0.1, ("relu1_1",)), mask, features(params, s, ("relu1_1",)), {"relu1_1": 0.5}
    )
    np.testing.assert_allclose(float(parts["style_loss"]), expected, rtol=1e-5)
    deep = {name: targets.regions[0].masks[name] for name in ("relu2_1", "relu3_1")}
    f = vgg.VGG19().apply({"params": params}, (x + 0.1)[None], tuple(deep))
    assert float(style_loss(f, targets.regions[0].grams, dict.fromkeys(deep, 1.0), deep)) == 0


@pytest.mark.parametrize("which", ["style_masks", "content_mask"])
def test_an_all_white_mask_is_the_unmasked_run(which, params, images3):
    content, style, _ = images3
    config = StyleConfig(**LAYERS, steps=3)
    white = np.ones(content.shape[:2], np.float32)
    given = {"style_masks": white[None], "content_mask": white}[which]
    image, history = stylize(content, style, params, config)
    masked, masked_history = stylize(content, style, params, config, **{which: given})
    np.testing.assert_allclose(masked, image, atol=1e-6)
    for name, values in history.items():
        np.testing.assert_allclose(masked_history[name], values, rtol=1e-6, atol=1e-12)


# --- runs ---------------------------------------------------------------------------------------


def test_content_mask_keeps_the_photo_outside(params, images3):
    content, style, _ = images3
    mask = halves(content.shape[:2])[0]
    image, _ = stylize(content, style, params, StyleConfig(**LAYERS, steps=3), content_mask=mask)
    outside = mask == 0
    np.testing.assert_array_equal(image[outside], content[outside])
    assert np.abs(image[~outside] - content[~outside]).max() > 1e-3


def test_masks_through_a_pyramid_and_a_sweep(params, images3):
    content, style_a, style_b = images3
    regions, config = halves(content.shape[:2]), StyleConfig(**LAYERS, steps=4, pyramid=16)
    image, history = stylize(content, [style_a, style_b], params, config, style_masks=regions)
    assert image.shape == content.shape and np.all(np.isfinite(history["loss"]))
    # A sweep of the style weight: the same masks for every pair, each pair as it would run alone.
    config = StyleConfig(**LAYERS, steps=2)
    weights = [config.style_weight, 10 * config.style_weight]
    batch, batch_history = stylize_batch(
        np.stack([content] * 2),
        [[style_a, style_b]] * 2,
        params,
        config,
        per_pair={"style_weight": weights},
        style_masks=regions,
        content_mask=regions[0] + 0.5 * regions[1],
    )
    alone, alone_history = stylize(
        content,
        [style_a, style_b],
        params,
        StyleConfig(**{**LAYERS, "style_weight": weights[1]}, steps=2),
        style_masks=regions,
        content_mask=regions[0] + 0.5 * regions[1],
    )
    np.testing.assert_allclose(batch[1], alone, atol=1e-5)
    np.testing.assert_allclose(batch_history["loss"][1], alone_history["loss"], rtol=1e-5)


@pytest.mark.parametrize(
    "options,message",
    [
        (dict(style_masks=np.ones((1, 21, 32), np.float32)), "`style_masks` has 1 mask(s) for 2 style image(s)"),
        (dict(style_masks=np.ones((2, 20, 32), np.float32)), "`style_masks` must be float (2, 21, 32)"),
        (dict(content_mask=np.ones((21, 32), np.uint8)), "`content_mask` must be float"),
        (dict(content_mask=np.full((21, 32), 2.0, np.float32)), "weights in [0, 1]"),
        (dict(content_mask=np.full((21, 32), np.nan, np.float32)), "weights in [0, 1]"),
        (dict(style_masks=halves((21, 32)) * [[[1]], [[0]]]), "`style_masks` is empty (all 0) at index [1]"),
        (dict(content_mask=np.zeros((21, 32), np.float32)), "`content_mask` is empty"),
        (dict(style_masks=halves((21, 32)), blend=(1.0, 2.0)), "give one or the other"),
    ],
)
def test_masks_that_do_not_fit_are_refused(options, message, params, images3):
    content, style_a, style_b = images3
    config = StyleConfig(**LAYERS, steps=1, style_blend=options.pop("blend", ()))
    with pytest.raises(ConfigError) as refused:
        stylize(content, [style_a, style_b], params, config, **options)
    assert message in str(refused.value)


def test_load_mask_follows_the_colour_rule(tmp_path):
    rgb = np.zeros((30, 40, 3), np.uint8)
    rgb[:, :20] = (255, 255, 255)
    rgb[:, 20:30] = (255, 0, 0)  # red: its luminance, 0.299
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    mask = images.load_mask(tmp_path / "rgb.png")
    assert mask.shape == (30, 40) and mask.dtype == np.float32
    assert np.all(mask[:, :20] == 1) and np.all(mask[:, 30:] == 0)
    np.testing.assert_allclose(mask[:, 20:30], 76 / 255)  # Pillow's L: round(0.299 * 255)
    rgba = np.zeros((30, 40, 4), np.uint8)  # transparent: on white, as every image is read
    Image.fromarray(rgba).save(tmp_path / "clear.png")
    assert np.all(images.load_mask(tmp_path / "clear.png") == 1)
    small = images.load_mask(tmp_path / "rgb.png", (15, 20))
    assert small.shape == (15, 20) and 0 <= small.min() and small.max() <= 1
    assert np.all(small[:, :9] == 1) and np.all(small[:, 16:] == 0)  # no ringing away from the edges


# --- command line --------------------------------------------------------------------------------


@pytest.fixture
def files(tmp_path) -> dict[str, Path]:
    """A 40x30 content, two styles and left/right mask files of the content's size."""
    rng = np.random.default_rng(0)
    paths = {name: tmp_path / f"{name}.png" for name in ("content", "a", "b", "left", "right")}
    for name in ("content", "a", "b"):
        Image.fromarray(rng.integers(0, 255, (30, 40, 3), np.uint8)).save(paths[name])
    for name, mask in zip(("left", "right"), halves((30, 40))):
        Image.fromarray((mask * 255).astype(np.uint8)).save(paths[name])
    return paths


CLI = ["--weights", "random", "--max-size", 32, "--content-layers", "relu2_1", "--style-layers", "relu1_1,relu2_1"]


def test_cli_style_masks_through_a_pyramid(files, tmp_path, capsys):
    out = tmp_path / "out.png"
    argv = [*CLI, "--content", files["content"], "--style", files["a"], files["b"], "--output", out]
    argv += ["--style-masks", files["left"], files["right"], "--pyramid", 16, "--steps", 4, "--save-every", 1]
    status, stdout, err = run_style(capsys, argv)
    assert status == 0, err
    assert "stylised 32x24" in stdout  # one picture, not a batch of two
    assert images.load_image(out).shape == (24, 32, 3)
    assert images.load_image(tmp_path / "out.step00001.png").shape == (12, 16, 3)  # a coarse level


@pytest.mark.parametrize(
    "extra,pictures",
    [
        (["--style", "{a}", "--style-weight", "100,1000"], ["out_sw100", "out_sw1000"]),  # a sweep
        (["--style", "{a}", "{b}"], ["out_content_a", "out_content_b"]),  # a batch of styles
    ],
    ids=["sweep", "batch"],
)
def test_cli_content_mask_keeps_the_photo(extra, pictures, files, tmp_path, capsys):
    out = tmp_path / "out.png"
    argv = [*CLI, "--content", files["content"], "--output", out, "--steps", 4, "--content-mask", files["right"]]
    argv += [a.format(**files) for a in extra] + ["--pyramid", 16, "--save-every", 1]
    status, _, err = run_style(capsys, argv)
    assert status == 0, err
    content = images.load_image(files["content"], max_size=32)
    outside = images.load_mask(files["right"], content.shape[:2]) == 0
    for name in pictures:
        picture = images.load_image(tmp_path / f"{name}.png")
        np.testing.assert_array_equal(picture[outside], content[outside])
        assert np.abs(picture[~outside] - content[~outside]).max() > 1e-2
        assert images.load_image(tmp_path / f"{name}.step00001.png").shape == (12, 16, 3)  # a coarse level


# --- rows over devices ----------------------------------------------------------------------------

SHARDED = textwrap.dedent(
    """
    import json
    import jax, numpy as np
    from jaxart import vgg
    from jaxart.style import StyleConfig, make_mesh, stylize

    assert len(jax.devices()) == 4
    params = vgg.init_params(jax.random.key(0))
    rng = np.random.default_rng(0)
    # 70 rows: 4 does not divide them, nor the layers' 35 and 17; two pyramid levels.
    c, a, b = (rng.random((70, 52, 3), np.float32) for _ in range(3))
    left = np.zeros((70, 52), np.float32)
    left[:, :26] = 1
    config = StyleConfig(
        steps=4, pyramid=50, pooling="avg", content_layers=("relu2_1",), style_layers=("relu1_1", "relu2_1", "relu3_1")
    )
    kwargs = dict(style_masks=[left, 1 - left], content_mask=rng.random((70, 52)).astype(np.float32))
    ref_image, ref_history = stylize(c, [a, b], params, config, **kwargs)
    image, history = stylize(c, [a, b], params, config, mesh=make_mesh(rows=4), **kwargs)
    loss = max(float(np.max(np.abs(history[k] - ref_history[k]) / np.abs(ref_history[k]).clip(1e-30)))
               for k in ("loss", "style_loss"))
    print(json.dumps({"image": float(np.abs(image - ref_image).max()), "loss": loss}))
    """
)


def test_masked_rows_over_devices_equal_the_unsharded_run():
    """As `test_style_scale`'s rows checks (average pooling: no max-pooling ties): within 1e-4."""
    env = {**host_devices_env(4), "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", SHARDED], env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    print("sharded figures:", json.dumps(figures))  # shown with pytest -s
    assert figures["loss"] <= 1e-4 and figures["image"] <= 1e-4, figures
