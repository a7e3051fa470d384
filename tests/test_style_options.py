"""Issue 6, quality and control: style blends and scale, original colours, total variation, layer
weights and presets, initialisation, L-BFGS, iterate averaging, the coarse-to-fine pyramid, and
their command-line flags.

Runs use shallow layers (relu1_1, relu2_1) on ~32 px images so that each compiles in seconds.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import EXAMPLES, SHALLOW, run_style
from PIL import Image

from jaxart import images, vgg
from jaxart.errors import InputError
from jaxart.style import __main__ as style_main
from jaxart.style import driver, pyramid
from jaxart.style.colors import keep_colors, rgb_to_ycbcr, ycbcr_to_rgb
from jaxart.style.config import SEED_LAYERS, StyleConfig, layer_list, preset
from jaxart.style.loop import iterate, stylize
from jaxart.style.losses import total_variation
from jaxart.style.transfer import blend_weights, compute_targets, initial_image, loss_fn, result_image


def run(params, pair, **options) -> list[tuple[int, np.ndarray, np.ndarray | None, dict]]:
    """Every compiled call of a one-step-per-call run: (steps done, image, average, metrics),
    copied out before the next call donates them."""
    config = StyleConfig(**{**SHALLOW, "steps_per_call": 1, **options})
    return [
        (
            done,
            np.asarray(s.image[0]),
            None if s.average is None else np.asarray(s.average[0]),
            {k: v[0] for k, v in m.items()},
        )
        for done, s, m in iterate(pair[0][None], [pair[1]], params, config)
    ]


# --- layers, weights, presets -------------------------------------------------------------------


def test_layer_list_parses_names_and_weights():
    assert layer_list("relu1_1:0.2, relu2_1:1.0") == (("relu1_1", 0.2), ("relu2_1", 1.0))
    assert StyleConfig(style_layers=layer_list("relu1_1:0.2,relu2_1")).style_layers == (
        ("relu1_1", 0.2),
        ("relu2_1", 1.0),
    )
    for bad in ("relu9_9", "relu1_1:-1", "relu1_1:x", "relu1_1,relu1_1", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            layer_list(bad)
    with pytest.raises(ValueError, match="`content_layers`: unknown VGG19 layer"):
        StyleConfig(content_layers=("relu9_9",))


def test_bare_names_weigh_one_and_the_default_is_the_seeds():
    config = StyleConfig(content_layers=("relu4_2:1",))
    assert config.content_layers == (("relu4_2", 1.0),)
    assert StyleConfig().style_layers == tuple((name, 1.0) for name in SEED_LAYERS)
    assert config.layers == SEED_LAYERS[:4] + ("relu4_2", "relu5_1")
    hash(config.program)  # the static jit argument


def losses_at_noise(params, pair, **options) -> tuple[jax.Array, dict]:
    """`loss_fn` of a noise image under StyleConfig(**SHALLOW, **options)."""
    config = StyleConfig(**{**SHALLOW, **options})
    content, style = (vgg.normalize(jnp.asarray(x)) for x in pair)
    image = vgg.normalize(jnp.asarray(initial_image(pair[0], StyleConfig(init="noise"))))
    return loss_fn(image, params, compute_targets(params, content, style, config), config.program)


def test_a_zero_layer_weight_equals_dropping_the_layer(params, pair):
    zero = losses_at_noise(params, pair, style_layers=("relu1_1", "relu2_1:0"))[0]
    dropped = losses_at_noise(params, pair, style_layers=("relu1_1",))[1]
    np.testing.assert_allclose(zero, dropped["loss"], rtol=1e-6)
    half = losses_at_noise(params, pair, style_layers=("relu1_1:0.5",))[1]
    np.testing.assert_allclose(half["style_loss"], 0.5 * dropped["style_loss"], rtol=1e-6)


def test_presets_and_explicit_options_win():
    gatys = preset("gatys")
    assert gatys.content_layers == (("relu4_2", 1.0),) and gatys.style_layers == StyleConfig().style_layers
    assert gatys.pooling == "avg"
    assert preset("seed") == StyleConfig()
    assert preset("gatys", pooling="max").pooling == "max"
    args = style_main.parse_args(["--preset", "gatys", "--content-layers", "relu3_1"])
    config, sweep = driver.config_from_args(args)
    assert config.content_layers == (("relu3_1", 1.0),) and config.pooling == "avg" and sweep == {}
    assert driver.config_from_args(style_main.parse_args(["--preset", "seed"])) == (StyleConfig(), {})
    # The preset's values < the weights' own < the flags given: one rule, argv parsed once.
    args = style_main.parse_args(["--preset", "fast", "--style-weight", "3", "--content-weight", "1,2"])
    config, sweep = driver.config_from_args(args, {"style_weight": 1e-5, "content_weight": 5.0, "tv_weight": 1.0})
    assert (config.optimizer, config.steps, config.style_weight) == ("lbfgs", 100, 3.0)
    assert (config.content_weight, config.tv_weight, sweep) == (1.0, 1.0, {"content_weight": (1.0, 2.0)})


# --- total variation, colours -------------------------------------------------------------------


def test_total_variation_matches_a_float64_reference(rng):
    x = rng.random((2, 7, 5, 3))
    reference = np.mean((x[:, 1:] - x[:, :-1]) ** 2) + np.mean((x[:, :, 1:] - x[:, :, :-1]) ** 2)
    np.testing.assert_allclose(total_variation(jnp.asarray(x, jnp.float32)), reference, rtol=1e-6)


def test_tv_weight_adds_its_term_and_smooths_the_result(params, pair):
    image = vgg.normalize(jnp.asarray(initial_image(pair[0], StyleConfig(init="noise"))))
    difference = losses_at_noise(params, pair, tv_weight=3.0)[0] - losses_at_noise(params, pair)[0]
    np.testing.assert_allclose(difference, 3.0 * total_variation(vgg.denormalize(image)), rtol=1e-4)
    ends = [run(params, pair, init="noise", steps=3, lr=0.3, tv_weight=w)[-1][1] for w in (0.0, 1000.0)]
    tv = [float(total_variation(vgg.denormalize(jnp.asarray(e)))) for e in ends]
    assert tv[1] < 0.8 * tv[0]


def test_ycbcr_round_trip_and_known_values(rng):
    x = jnp.asarray(rng.random((4, 4, 3)), jnp.float32)
    np.testing.assert_allclose(ycbcr_to_rgb(rgb_to_ycbcr(x)), x, atol=1e-6)
    np.testing.assert_allclose(rgb_to_ycbcr(jnp.ones(3)), [1.0, 0.5, 0.5], atol=1e-6)
    np.testing.assert_allclose(rgb_to_ycbcr(jnp.asarray([1.0, 0.0, 0.0])), [0.299, 0.331264, 1.0], atol=1e-6)


def test_original_colors_keep_the_contents_chrominance(params, pair):
    content = pair[0]
    config = StyleConfig(**SHALLOW, steps=2, lr=0.3)
    (state,) = [
        jax.tree.map(lambda x: x[0], s) for done, s, _ in iterate(pair[0][None], [pair[1]], params, config) if done == 2
    ]
    plain = result_image(state, content, StyleConfig())
    kept = result_image(state, content, StyleConfig(original_colors=True))
    ycc_kept, ycc_plain, ycc_content = (np.asarray(rgb_to_ycbcr(jnp.asarray(x))) for x in (kept, plain, content))
    inside = np.all((kept > 0.02) & (kept < 0.98), axis=-1)  # where clamping did not bend the colour
    assert inside.mean() > 0.5
    np.testing.assert_allclose(ycc_kept[inside][:, 1:], ycc_content[inside][:, 1:], atol=2e-5)
    np.testing.assert_allclose(ycc_kept[inside][:, 0], ycc_plain[inside][:, 0], atol=2e-5)
    assert np.abs(ycc_kept[..., 0] - ycc_content[..., 0]).max() > 0.05
    # A coarse pyramid level's snapshot borrows the content's colours resized to its shape.
    assert keep_colors(jnp.asarray(kept[::2, ::2]), jnp.asarray(content)).shape == kept[::2, ::2].shape


# --- several styles, style scale ---------------------------------------------------------------


def test_blend_weights_are_normalised_and_must_match():
    np.testing.assert_allclose(blend_weights(2, StyleConfig(style_blend=(3.0, 1.0))), [0.75, 0.25])
    np.testing.assert_allclose(blend_weights(3, StyleConfig()), [1 / 3] * 3)
    with pytest.raises(ValueError, match="style_blend"):
        blend_weights(3, StyleConfig(style_blend=(1.0, 1.0)))
    with pytest.raises(ValueError):
        StyleConfig(style_blend=(0.0, 0.0))


def test_blended_targets_are_the_weighted_mean_of_the_grams(params, pair):
    content, style = (vgg.normalize(jnp.asarray(x)) for x in pair)
    config = StyleConfig(**SHALLOW, style_blend=(0.7, 0.3))
    blended = compute_targets(params, content, [style, content], config).style_grams
    one = compute_targets(params, content, style, StyleConfig(**SHALLOW)).style_grams
    other = compute_targets(params, content, content, StyleConfig(**SHALLOW)).style_grams
    for name in blended:
        np.testing.assert_allclose(blended[name], 0.7 * one[name] + 0.3 * other[name], rtol=1e-5)


def test_a_larger_style_keeps_the_gram_scale(params, rng):
    """Grams sum over positions: a style with 4x the positions must be compared per position.

    The same texture (a tiled random 8x8 patch) at 32 and 64 px gives nearly the same target
    (the zero-padded borders differ); without the rescaling the larger would be 4x larger.
    """
    content = vgg.normalize(jnp.full((32, 32, 3), 0.5))
    config = StyleConfig(max_size=32, content_layers=("relu1_1",), style_layers=("relu1_1",), style_scale=2.0)
    patch = rng.random((8, 8, 3), np.float32)
    small, large = (
        compute_targets(params, content, vgg.normalize(jnp.asarray(np.tile(patch, (n, n, 1)))), config).style_grams[
            "relu1_1"
        ]
        for n in (4, 8)
    )
    assert np.linalg.norm(large - small) < 0.1 * np.linalg.norm(small)


def test_style_scale_rule():
    content = (300, 400)
    assert pyramid.style_shape((50, 100), content, StyleConfig()) == content  # the seed: squash
    assert pyramid.style_shape((50, 100), content, StyleConfig(style_scale=1.0)) == (200, 400)
    assert pyramid.style_shape((100, 50), content, StyleConfig(style_scale=0.5)) == (200, 100)


# --- initialisation, L-BFGS, averaging, pyramid ---------------------------------------------------


def test_initialisation_from_noise_or_a_file(tmp_path, pair):
    content = pair[0]
    noise = initial_image(content, StyleConfig(init="noise", seed=1))
    assert noise.shape == content.shape and 0 <= noise.min() and noise.max() <= 1
    np.testing.assert_array_equal(noise, initial_image(content, StyleConfig(init="noise", seed=1)))
    assert not np.array_equal(noise, initial_image(content, StyleConfig(init="noise", seed=2)))
    assert initial_image(content, StyleConfig()) is content
    path = tmp_path / "start.png"
    Image.new("RGB", (50, 10), (255, 0, 0)).save(path)
    start = initial_image(content, StyleConfig(init=str(path)))
    assert start.shape == content.shape
    np.testing.assert_allclose(start[..., 0], 1.0)
    with pytest.raises(InputError):
        initial_image(content, StyleConfig(init=str(tmp_path / "missing.png")))


def test_lbfgs_descends_and_beats_adam(params, pair):
    lbfgs = [m["loss"][0] for *_, m in run(params, pair, optimizer="lbfgs", steps=6)]
    adam = [m["loss"][0] for *_, m in run(params, pair, steps=6, lr=0.05)]
    assert np.all(np.diff(lbfgs) < 0)
    assert lbfgs[-1] < 0.5 * adam[-1]


@pytest.mark.parametrize("rule", ["zoom", "backtracking"])
def test_lbfgs_reports_the_parts_of_each_iterate(params, pair, rule):
    # backtracking hands on the parts its line search computed at the point it accepted (first
    # trial or loop); zoom evaluates them afresh. Either way they are those of the iterate.
    options = dict(optimizer="lbfgs", lbfgs_step=rule, steps=5)
    content, style = (vgg.normalize(jnp.asarray(x)) for x in pair)
    config = StyleConfig(**{**SHALLOW, **options})
    targets = compute_targets(params, content, style, config)
    before = content  # the starting image
    for _, image, _, metrics in run(params, pair, **options):
        _, parts = loss_fn(before, params, targets, config.program)
        for name, value in parts.items():
            np.testing.assert_allclose(metrics[name][0], value, rtol=1e-5, err_msg=name)
        before = jnp.asarray(image)


def test_ema_output_is_the_average_of_the_iterates(params, pair):
    decay = 0.6
    calls = run(params, pair, steps=3, lr=0.1, ema=decay)
    average = vgg.normalize(jnp.asarray(pair[0]))  # the starting image
    for _, image, running, _ in calls:
        average = decay * average + (1 - decay) * image
        np.testing.assert_allclose(running, average, atol=1e-6)
    assert not np.allclose(calls[-1][2], calls[-1][1], atol=1e-3)
    output, _ = stylize(*pair, params, StyleConfig(**SHALLOW, steps=3, lr=0.1, ema=decay))
    np.testing.assert_allclose(output, np.clip(vgg.denormalize(average), 0, 1), atol=1e-6)


def test_pyramid_levels_and_steps():
    config = StyleConfig(max_size=400, pyramid=128)
    assert pyramid.level_shapes((300, 400), config) == [(96, 128), (135, 181), (192, 256), (271, 362), (300, 400)]
    assert pyramid.level_shapes((300, 400), StyleConfig()) == [(300, 400)]
    assert pyramid.level_shapes((300, 400), StyleConfig(pyramid=500)) == [(300, 400)]
    assert pyramid.level_steps(11, 3) == [3, 3, 5]
    with pytest.raises(ValueError):
        pyramid.level_steps(2, 3)


def test_pyramid_run_ends_at_the_contents_size(params, pair):
    calls = run(params, pair, pyramid=16, steps=3, lr=0.1)
    assert [c[1].shape[:2] for c in calls] == [(10, 16), (15, 23), (21, 32)]
    assert [c[0] for c in calls] == [1, 2, 3]
    image, history = stylize(*pair, params, StyleConfig(**SHALLOW, pyramid=16, steps=3, lr=0.1))
    assert image.shape == pair[0].shape and len(history["loss"]) == 3


# --- command line -----------------------------------------------------------------------------


def test_cli_runs_every_option_together(tmp_path, capsys):
    out = tmp_path / "out.png"
    status, _, err = run_style(
        capsys,
        [
            "--weights",
            "random",
            "--max-size",
            32,
            "--steps",
            4,
            "--output",
            out,
            "--save-every",
            2,
            "--style",
            EXAMPLES / "style.png",
            EXAMPLES / "content.png",
            "--style-blend",
            "0.7,0.3",
            "--style-scale",
            0.8,
            "--original-colors",
            "--tv-weight",
            1,
            "--ema",
            0.5,
            "--pyramid",
            16,
            "--preset",
            "gatys",
            "--content-layers",
            "relu2_1",
            "--style-layers",
            "relu1_1:0.5,relu2_1",
            "--init",
            "noise",
        ],
    )
    assert status == 0, err
    assert images.load_image(out).shape == (21, 32, 3)
    assert images.load_image(tmp_path / "out.step00002.png").shape == (15, 23, 3)  # a coarse level


@pytest.mark.parametrize("extra", [["--pooling", "avg"], ["--optimizer", "lbfgs"]])
def test_cli_pooling_and_optimizer(extra, tmp_path, capsys):
    out = tmp_path / "out.png"
    status, _, err = run_style(
        capsys,
        [
            "--weights",
            "random",
            "--steps",
            2,
            "--output",
            out,
            "--content-layers",
            "relu2_1",
            "--style-layers",
            "relu1_1,relu2_1",
            "--max-size",
            32,
            *extra,
        ],
    )
    assert status == 0, err
    assert out.exists()
