"""Colour control (Gatys et al. 2017, "Controlling Perceptual Factors in Neural Style Transfer"):
--color-transfer histogram and --luminance-only, against NumPy float64 references written out
from the paper's formulas, from Python and from the command line.

Runs use shallow layers (relu1_1, relu2_1) on ~32 px images so that each compiles in seconds.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import tifffile
from conftest import EXAMPLES, SHALLOW, run_style

from jaxart import images, vgg
from jaxart.errors import ConfigError
from jaxart.style.colors import RIDGE, luminance, match_color, match_luminance, recolor
from jaxart.style.config import StyleConfig
from jaxart.style.loop import color_inputs, iterate, stylize
from jaxart.style.transfer import initial_image

STEPWISE = {**SHALLOW, "steps_per_call": 1}  # one compiled call per step, on any backend


# --- NumPy float64 references -------------------------------------------------------------------


def ref_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """BT.601 full-range YCbCr from its defining formulas (Cb, Cr centred on 0.5)."""
    r, g, b = np.moveaxis(np.asarray(rgb, np.float64), -1, 0)
    y = 0.299 * r + 0.587 * g + 0.114 * b
    return np.stack([y, 0.5 + (b - y) / 1.772, 0.5 + (r - y) / 1.402], axis=-1)


def ref_rgb(ycbcr: np.ndarray) -> np.ndarray:
    """The inverse of `ref_ycbcr`, from the same formulas."""
    y, cb, cr = np.moveaxis(np.asarray(ycbcr, np.float64), -1, 0)
    r, b = y + 1.402 * (cr - 0.5), y + 1.772 * (cb - 0.5)
    return np.stack([r, (y - 0.299 * r - 0.114 * b) / 0.587, b], axis=-1)


def ref_match_color(style: np.ndarray, content: np.ndarray) -> np.ndarray:
    """x' = Sigma_c^(1/2) (Sigma_s + ridge)^(-1/2) (x - mu_s) + mu_c, roots by scipy's sqrtm."""
    s, c = (np.asarray(x, np.float64).reshape(-1, 3) for x in (style, content))
    cov_s, cov_c = np.cov(s.T, bias=True), np.cov(c.T, bias=True)
    a = np.real(scipy.linalg.sqrtm(cov_c)) @ np.linalg.inv(np.real(scipy.linalg.sqrtm(cov_s + RIDGE * np.eye(3))))
    return np.clip((s - s.mean(axis=0)) @ a.T + c.mean(axis=0), 0, 1).reshape(style.shape)


def ref_match_luminance(style: np.ndarray, content: np.ndarray) -> np.ndarray:
    """The style's Y with the content's Y mean and standard deviation, as a grey RGB picture."""
    ys, yc = ref_ycbcr(style)[..., 0], ref_ycbcr(content)[..., 0]
    y = np.clip((ys - ys.mean()) * yc.std() / np.sqrt(ys.var() + RIDGE) + yc.mean(), 0, 1)
    return np.repeat(y[..., None], 3, axis=-1)


def correlated(rng: np.random.Generator, shape: tuple[int, int], mean, spread: float) -> np.ndarray:
    """Random RGB pixels with correlated channels, float32."""
    mixing = np.array([[1.0, 0.6, 0.2], [0.0, 0.8, -0.4], [0.0, 0.0, 0.5]])
    return (np.asarray(mean) + spread * rng.standard_normal((*shape, 3)) @ mixing).astype(np.float32)


# --- the pure functions -------------------------------------------------------------------------


def test_match_color_gives_the_style_the_contents_mean_and_covariance(rng):
    content = correlated(rng, (40, 30), [0.5, 0.45, 0.4], 0.04)
    style = rng.random((20, 25, 3)).astype(np.float32)  # another shape: only statistics count
    matched = match_color(style, content)
    assert matched.dtype == np.float32 and matched.shape == style.shape
    assert ((matched > 0) & (matched < 1)).all()  # nothing clipped: the statistics are the affine map's
    m, c = (x.reshape(-1, 3).astype(np.float64) for x in (matched, content))
    np.testing.assert_allclose(m.mean(axis=0), c.mean(axis=0), atol=1e-6)
    cov_c = np.cov(c.T, bias=True)
    # The ridge shrinks each variance by ~RIDGE / (the style's, ~1/12): 1.2e-4 of it.
    np.testing.assert_allclose(np.cov(m.T, bias=True), cov_c, atol=1e-3 * np.abs(cov_c).max())


@pytest.mark.parametrize("seed", range(3))
def test_match_color_equals_a_direct_numpy_implementation(seed):
    rng = np.random.default_rng(seed)
    content = np.clip(correlated(rng, (24, 32), rng.random(3), 0.3), 0, 1)  # wide: the result clips
    style = np.clip(correlated(rng, (16, 16), rng.random(3), 0.2), 0, 1)
    matched = match_color(style, content)
    assert (matched == 0).any() or (matched == 1).any()
    np.testing.assert_allclose(matched, ref_match_color(style, content), atol=2e-6)


def test_match_color_does_not_depend_on_the_channels_order(rng):
    # The symmetric square roots; a Cholesky factor would give another picture for another order.
    content = correlated(rng, (20, 20), [0.5, 0.5, 0.5], 0.05)
    style = rng.random((20, 20, 3)).astype(np.float32)
    order = [2, 0, 1]
    np.testing.assert_allclose(
        match_color(style[..., order], content[..., order]), match_color(style, content)[..., order], atol=1e-6
    )


def test_flat_pictures_give_flat_pictures_not_nan(rng):
    picture = rng.random((8, 8, 3)).astype(np.float32)
    flat = np.full((8, 8, 3), [0.2, 0.5, 0.7], np.float32)
    np.testing.assert_allclose(match_color(flat, picture), np.broadcast_to(picture.mean(axis=(0, 1)), (8, 8, 3)), 1e-6)
    np.testing.assert_allclose(match_color(picture, flat), flat, atol=1e-6)
    np.testing.assert_allclose(match_luminance(flat, picture), ref_match_luminance(flat, picture), atol=1e-6)
    assert np.isfinite(match_luminance(picture, flat)).all()


def test_recolor_gives_the_content_the_mean_and_covariance_of_all_the_styles_pixels(rng):
    content = rng.random((30, 40, 3)).astype(np.float32)
    styles = [correlated(rng, (20, 25), [0.4, 0.45, 0.55], 0.03), correlated(rng, (10, 12), [0.55, 0.5, 0.4], 0.02)]
    recolored = recolor(content, styles)
    assert recolored.dtype == np.float32 and recolored.shape == content.shape
    assert ((recolored > 0) & (recolored < 1)).all()  # nothing clipped: the statistics are the affine map's
    pooled = np.concatenate([s.reshape(-1, 1, 3) for s in styles])  # a picture of every style's pixels
    np.testing.assert_allclose(recolored, ref_match_color(content, pooled), atol=2e-6)
    r, p = (x.reshape(-1, 3).astype(np.float64) for x in (recolored, pooled))
    np.testing.assert_allclose(r.mean(axis=0), p.mean(axis=0), atol=1e-6)
    cov_p = np.cov(p.T, bias=True)
    # The ridge shrinks each variance by ~RIDGE / (the content's, ~1/12): 1.2e-4 of it.
    np.testing.assert_allclose(np.cov(r.T, bias=True), cov_p, atol=1e-3 * np.abs(cov_p).max())
    # The styles count by their pixels: the big one's colours weigh more.
    assert (
        np.abs(r.mean(axis=0) - styles[0].reshape(-1, 3).mean(axis=0)).max()
        < np.abs(r.mean(axis=0) - styles[1].reshape(-1, 3).mean(axis=0)).max()
    )


def test_a_recolored_start_needs_styles(rng):
    content = rng.random((8, 8, 3)).astype(np.float32)
    with pytest.raises(ConfigError, match="`init` recolored takes its colours from style images"):
        initial_image(content, StyleConfig(init="recolored"))
    style = rng.random((5, 6, 3)).astype(np.float32)
    np.testing.assert_array_equal(
        initial_image(content, StyleConfig(init="recolored"), [style]), recolor(content, [style])
    )


def test_luminance_and_its_matching_equal_the_formulas(rng):
    content, style = (rng.random((12, 10, 3)).astype(np.float32) for _ in range(2))
    grey = luminance(content)
    np.testing.assert_allclose(grey, np.repeat(ref_ycbcr(content)[..., :1], 3, axis=-1), atol=1e-6)
    np.testing.assert_allclose(ref_ycbcr(grey)[..., 1:], 0.5, atol=1e-6)  # grey: no chrominance
    matched = match_luminance(style, content)
    np.testing.assert_allclose(matched, ref_match_luminance(style, content), atol=2e-6)
    y, yc = ref_ycbcr(matched)[..., 0], ref_ycbcr(content)[..., 0]
    assert abs(y.mean() - yc.mean()) < 1e-5 and y.std() == pytest.approx(yc.std(), rel=1e-3)


def test_color_inputs_are_what_the_optimisation_sees(rng):
    contents = rng.random((2, 8, 8, 3)).astype(np.float32)
    styles = [[rng.random((8, 8, 3)).astype(np.float32)], [rng.random((6, 9, 3)).astype(np.float32)] * 2]
    starts = rng.random((2, 8, 8, 3)).astype(np.float32)
    same = color_inputs(contents, styles, starts, StyleConfig())
    assert same[0] is contents and same[2] is starts and same[1][1][1] is styles[1][1]
    _, matched, _ = color_inputs(contents, styles, None, StyleConfig(color_transfer="histogram"))
    for content, pair_styles, originals in zip(contents, matched, styles):  # each pair its own content's colours
        for s, original in zip(pair_styles, originals):
            np.testing.assert_allclose(s, ref_match_color(original, content), atol=2e-6)
    grey, grey_styles, grey_starts = color_inputs(contents, styles, starts, StyleConfig(luminance_only=True))
    np.testing.assert_allclose(grey, np.repeat(ref_ycbcr(contents)[..., :1], 3, axis=-1), atol=1e-6)
    np.testing.assert_allclose(grey_starts, np.repeat(ref_ycbcr(starts)[..., :1], 3, axis=-1), atol=1e-6)
    np.testing.assert_allclose(grey_styles[1][0], ref_match_luminance(styles[1][0], contents[1]), atol=2e-6)


def test_luminance_only_excludes_the_other_colour_options():
    with pytest.raises(ConfigError, match="`luminance_only` and `original_colors` exclude each other"):
        StyleConfig(luminance_only=True, original_colors=True)
    with pytest.raises(ConfigError, match="`luminance_only` and `color_transfer` histogram exclude each other"):
        StyleConfig(luminance_only=True, color_transfer="histogram")
    with pytest.raises(ConfigError, match="`color_transfer` must be one of none, histogram"):
        StyleConfig(color_transfer="lab")


# --- whole runs -----------------------------------------------------------------------------------


def test_a_histogram_run_is_a_plain_run_on_the_matched_style(params, pair):
    content, style = pair
    config = StyleConfig(**STEPWISE, steps=3, lr=0.05)
    image, _ = stylize(content, style, params, StyleConfig(**STEPWISE, steps=3, lr=0.05, color_transfer="histogram"))
    expected, _ = stylize(content, ref_match_color(style, content).astype(np.float32), params, config)
    np.testing.assert_allclose(image, expected, atol=1e-4)
    unmatched, _ = stylize(content, style, params, config)
    assert np.abs(image - unmatched).max() > 1e-2  # the style's colours did change the run


def test_luminance_only_is_a_grey_run_given_the_contents_chrominance(params, pair):
    content, style = pair
    plain = StyleConfig(**STEPWISE, steps=3, lr=0.05)
    image, history = stylize(content, style, params, StyleConfig(**STEPWISE, steps=3, lr=0.05, luminance_only=True))
    assert history["content_loss"][0] == 0  # it started from the content's luminance itself
    # The reference: a plain run on the grey pictures, whose result's Y takes the content's Cb, Cr.
    grey_content = np.repeat(ref_ycbcr(content)[..., :1], 3, axis=-1).astype(np.float32)
    grey_run, _ = stylize(grey_content, ref_match_luminance(style, content).astype(np.float32), params, plain)
    optimised_y, content_ycc = ref_ycbcr(grey_run)[..., 0], ref_ycbcr(content)
    expected = np.clip(ref_rgb(np.concatenate([optimised_y[..., None], content_ycc[..., 1:]], -1)), 0, 1)
    np.testing.assert_allclose(image, expected, atol=1e-4)
    inside = np.all((image > 0.01) & (image < 0.99), axis=-1)  # where clipping did not bend the colour
    assert inside.mean() > 0.5
    ycc = ref_ycbcr(image)
    np.testing.assert_allclose(ycc[inside][:, 1:], content_ycc[inside][:, 1:], atol=1e-4)
    np.testing.assert_allclose(ycc[inside][:, 0], optimised_y[inside], atol=1e-4)
    # Not --original-colors: there, the style's colours steer the RGB run before recolouring.
    recoloured, _ = stylize(content, style, params, StyleConfig(**STEPWISE, steps=3, lr=0.05, original_colors=True))
    assert np.abs(image - recoloured).max() > 1e-2


@pytest.mark.parametrize("init", ["noise", "file"])
def test_luminance_only_starts_from_grey(init, params, pair, tmp_path):
    content, style = pair
    if init == "file":
        init = str(images.save_image(tmp_path / "init.png", np.random.default_rng(1).random(content.shape)))
    config = StyleConfig(**STEPWISE, steps=1, luminance_only=True, init=init)
    [image] = [np.asarray(s.image[0]) for _, s, _ in iterate(content[None], [style], params, config)]
    # Colourful noise either way; one Adam step moves a pixel by at most lr = 0.003 (normalised),
    # so a start with colour would still show it.
    assert np.abs(ref_ycbcr(np.asarray(vgg.denormalize(image)))[..., 1:] - 0.5).max() < 0.01


def _start(content: np.ndarray, style: np.ndarray, params, **options) -> np.ndarray:
    """The RGB image a run starts from: its first image after one Adam step of 1e-6 (normalised)."""
    config = StyleConfig(**STEPWISE, steps=1, lr=1e-6, init="recolored", **options)
    [image] = [np.asarray(s.image[0]) for _, s, _ in iterate(content[None], [style], params, config)]
    return np.asarray(vgg.denormalize(image))


def test_a_recolored_start_takes_the_colours_of_the_styles_the_run_sees(params, pair):
    content, style = pair
    np.testing.assert_allclose(_start(content, style, params), recolor(content, [style]), atol=1e-5)
    # From the style in the content's colours, not from the style's own.
    matched = _start(content, style, params, color_transfer="histogram")
    np.testing.assert_allclose(matched, recolor(content, [match_color(style, content)]), atol=1e-5)
    assert np.abs(matched - recolor(content, [style])).max() > 0.1
    # Grey pictures: the content's luminance, its mean and deviation the matched style's (its own).
    grey = _start(content, style, params, luminance_only=True)
    expected = recolor(luminance(content), [ref_match_luminance(style, content).astype(np.float32)])
    np.testing.assert_allclose(grey, expected, atol=1e-5)
    assert np.abs(ref_ycbcr(grey)[..., 1:] - 0.5).max() < 1e-5
    _, history = stylize(content, style, params, StyleConfig(**STEPWISE, steps=1, init="recolored"))
    assert history["content_loss"][0] > 0  # it did not start from the content


# --- the command line -----------------------------------------------------------------------------


CLI_BASE = ["--weights", "random", "--max-size", 32, "--steps", 3, "--content", EXAMPLES / "content.png"]
CLI_BASE += ["--style", EXAMPLES / "style.png", "--content-layers", "relu2_1", "--style-layers", "relu1_1,relu2_1"]


@pytest.mark.parametrize("flags", [["--color-transfer", "histogram"], ["--luminance-only"]])
def test_command_line(flags, capsys, tmp_path):
    out = tmp_path / "out.tif"
    code, _, err = run_style(capsys, [*CLI_BASE, "--output", out, *flags])
    assert code == 0, err
    image = tifffile.imread(out) / 65535.0  # .tif: 16 bits, no 8-bit rounding in the way
    content = images.load_image(EXAMPLES / "content.png", max_size=32)
    assert image.shape == content.shape
    inside = np.all((image > 0.01) & (image < 0.99), axis=-1)
    chroma_error = np.abs(ref_ycbcr(image)[inside][:, 1:] - ref_ycbcr(content)[inside][:, 1:]).max()
    if flags == ["--luminance-only"]:
        assert chroma_error < 1e-4
    else:
        assert chroma_error > 1e-2  # a histogram-matched style still brings its own colour patterns


def test_command_line_recolored_start(capsys, tmp_path):
    out = tmp_path / "out.tif"
    flags = ["--init", "recolored", "--optimizer", "adam", "--lr", "1e-6", "--steps", 1, "--output", out]
    code, _, err = run_style(capsys, [*CLI_BASE, *flags])
    assert code == 0, err
    content = images.load_image(EXAMPLES / "content.png", max_size=32)
    style = images.load_image(EXAMPLES / "style.png", shape=content.shape[:2])
    np.testing.assert_allclose(tifffile.imread(out) / 65535.0, recolor(content, [style]), atol=1e-4)
