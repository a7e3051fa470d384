"""Style-transfer math against float64 numpy references, and the compiled loop's invariants."""

import dataclasses
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxart import vgg
from jaxart.style import StyleConfig, content_loss, gram_matrix, style_loss, stylize
from jaxart.style.config import SEED_LAYERS
from jaxart.style.transfer import compute_targets, init_state, loss_fn, output_image, train_steps


def test_gram_matrix_against_float64(rng):
    f = rng.standard_normal((1, 5, 7, 4)).astype(np.float32)
    flat = f[0].reshape(35, 4).astype(np.float64).T  # (C, H*W), as the seed views it
    np.testing.assert_allclose(np.asarray(gram_matrix(jnp.asarray(f)))[0], flat @ flat.T, rtol=1e-5, atol=1e-5)
    # Batched inputs keep their leading axes.
    assert gram_matrix(jnp.zeros((2, 3, 3, 6))).shape == (2, 6, 6)


def test_gram_matrix_gradient_is_jax_own(rng):
    # float64: the custom rule must be the transpose JAX derives, not an approximation of it.
    with jax.enable_x64(True):
        f, g = rng.standard_normal((2, 6, 7, 5)), rng.standard_normal((2, 5, 5))
        (ours,) = jax.vjp(gram_matrix, f)[1](g)
        (theirs,) = jax.vjp(gram_matrix.fun, f)[1](g)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)


def test_gram_matrix_gradient_is_a_product_in_the_features_layout():
    # JAX's own rule computes the gradient as a (C, H*W) product, which XLA CPU ran at a sixth of
    # its matmul speed before transposing it back (benchmarks.style_evaluation --profile).
    def hlo(gram):
        loss = lambda f: jnp.sum(gram(f) ** 2)  # noqa: E731
        return jax.jit(jax.grad(loss)).lower(jnp.ones((1, 30, 40, 8))).compile().as_text()

    assert "f32[8,1200]" in hlo(gram_matrix.fun)  # the test would see the old rule
    assert "f32[8,1200]" not in hlo(gram_matrix)


def test_losses_against_float64(rng):
    layers = {"a": (1, 6, 5, 3), "b": (1, 3, 2, 8)}
    t = {k: rng.standard_normal(s).astype(np.float32) for k, s in layers.items()}
    c = {k: rng.standard_normal(s).astype(np.float32) for k, s in layers.items()}
    s = {k: rng.standard_normal(s).astype(np.float32) for k, s in layers.items()}
    grams = {k: np.asarray(gram_matrix(jnp.asarray(v[0]))) for k, v in s.items()}
    weights = {"a": 1.0, "b": 0.5}

    ref_content = sum(w * np.mean((t[k].astype(np.float64) - c[k]) ** 2) for k, w in weights.items())
    ref_style = 0.0
    for k, w in weights.items():
        _, h, w_, ch = layers[k]
        ft = t[k][0].reshape(h * w_, ch).astype(np.float64).T
        fs = s[k][0].reshape(h * w_, ch).astype(np.float64).T
        ref_style += w * np.mean((ft @ ft.T - fs @ fs.T) ** 2) / (ch * h * w_)

    got_content = content_loss({k: jnp.asarray(v) for k, v in t.items()}, c, weights)
    got_style = style_loss({k: jnp.asarray(v) for k, v in t.items()}, grams, weights)
    np.testing.assert_allclose(float(got_content), ref_content, rtol=1e-5)
    np.testing.assert_allclose(float(got_style), ref_style, rtol=1e-5)


def test_output_image_denormalises_and_clamps(rng):
    x = rng.standard_normal((4, 5, 3)).astype(np.float32) * 3
    ref = np.clip(x.astype(np.float64) * np.array(vgg.IMAGENET_STD) + np.array(vgg.IMAGENET_MEAN), 0, 1)
    np.testing.assert_allclose(np.asarray(output_image(jnp.asarray(x))), ref, atol=1e-6)


@pytest.fixture(scope="module")
def tiny():
    params = vgg.init_params(jax.random.key(0))
    rng = np.random.default_rng(1)
    content = rng.random((24, 20, 3)).astype(np.float32)
    style = rng.random((24, 20, 3)).astype(np.float32)
    return params, content, style


def test_defaults_are_the_seeds():
    c = StyleConfig()
    assert (c.steps, c.max_size, c.lr, c.b1, c.b2) == (2000, 400, 0.003, 0.5, 0.999)
    assert (c.content_weight, c.style_weight) == (1.0, 100.0)
    assert c.content_layers == c.style_layers == tuple((name, 1.0) for name in SEED_LAYERS)
    assert c.pooling == "max"


@pytest.mark.parametrize(
    "bad",
    [
        dict(steps=0),
        dict(max_size=-1),
        dict(lr=0.0),
        dict(style_weight=-1.0),
        dict(style_layers=("relu9_9",)),
        dict(pooling="min"),
    ],
)
def test_config_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        StyleConfig(**bad)


def test_stylize_history_and_image(tiny):
    params, content, style = tiny
    image, history = stylize(content, style, params, StyleConfig(steps=6))
    assert image.shape == content.shape and image.dtype == np.float32
    assert image.min() >= 0 and image.max() <= 1
    assert set(history) == {"loss", "content_loss", "style_loss"}
    assert all(v.shape == (6,) for v in history.values())
    # The target starts as the content: zero content loss before the first update, then not.
    assert history["content_loss"][0] == 0 and history["content_loss"][-1] > 0
    assert history["loss"][-1] < history["loss"][0]
    np.testing.assert_allclose(history["loss"], history["content_loss"] + 100 * history["style_loss"], rtol=1e-6)


def test_metrics_are_before_the_update(tiny):
    params, content, style = tiny
    config = StyleConfig(steps=1)
    content_n, style_n = vgg.normalize(jnp.asarray(content)), vgg.normalize(jnp.asarray(style))
    targets = compute_targets(params, content_n, style_n, config)
    expected, _ = loss_fn(content_n, params, targets, config.program)
    _, history = stylize(content, style, params, config)
    assert history["loss"][0] == pytest.approx(float(expected), rel=1e-6)


def test_scan_gives_the_same_result_as_single_steps(tiny):
    params, content, style = tiny
    one, h1 = stylize(content, style, params, StyleConfig(steps=8))
    scanned, h4 = stylize(content, style, params, StyleConfig(steps=8, steps_per_call=4))
    np.testing.assert_allclose(scanned, one, atol=1e-6)
    for name in h1:
        np.testing.assert_allclose(h4[name], h1[name], rtol=1e-5)


def test_steps_not_divisible_by_steps_per_call(tiny):
    params, content, style = tiny
    _, history = stylize(content, style, params, StyleConfig(steps=7, steps_per_call=3))
    assert history["loss"].shape == (7,)


def test_targets_are_computed_once_not_per_step(tiny):
    params, content, style = tiny
    config = StyleConfig()
    content_n, style_n = vgg.normalize(jnp.asarray(content)), vgg.normalize(jnp.asarray(style))
    targets = compute_targets(params, content_n, style_n, config)
    state = init_state(content_n, config)
    lowered = jax.jit(lambda s: train_steps(s, params, targets, config.program, 1)).lower(state)
    # One forward pass (13 convolutions up to relu5_1) and its input gradient (13 more), no more:
    # the seed's loop would also run the content and the style through VGG19 each step. (Counted
    # in the lowered program: the jaxpr also holds the kernels' gradients, which nothing reads.)
    assert lowered.as_text().count("stablehlo.convolution") == 26


def test_an_lbfgs_step_traces_vgg19_once_and_computes_as_before(tiny, monkeypatch):
    from jaxart.style import transfer

    params, content, style = tiny
    config = StyleConfig(optimizer="lbfgs", lbfgs_step="zoom")
    content_n, style_n = vgg.normalize(jnp.asarray(content)), vgg.normalize(jnp.asarray(style))
    targets = compute_targets(params, content_n, style_n, config)

    def two_steps() -> np.ndarray:
        jax.clear_caches()  # trace anew
        state = init_state(0.9 * content_n, config)
        return np.asarray(train_steps(state, params, targets, config.program, 2)[0].image)

    traced = []
    features = transfer._features
    monkeypatch.setattr(transfer, "_features", lambda *args: traced.append(1) or features(*args))
    nested = two_steps()
    # L-BFGS evaluates the loss in five places of a step (backtracking: four); one trace serves all.
    assert len(traced) == 1
    monkeypatch.setattr(transfer, "_nested_loss", loss_fn)
    assert np.array_equal(two_steps(), nested)  # and XLA compiles it into the same program
    assert len(traced) > 2  # the comparison above traced the loss in each place


def test_importing_creates_no_device_arrays_and_defers_heavy_imports():
    # jax.distributed.initialize must be able to run after `import jaxart.style`, and a command
    # pays for torch, matplotlib, tqdm and orbax only on the paths that use them.
    code = (
        "import sys; import jaxart.style, jaxart.style.__main__, jaxart.style.batch, jaxart.style.memory\n"
        "from jax._src import xla_bridge\n"
        "assert not xla_bridge.backends_are_initialized(), 'a backend started at import'\n"
        "heavy = [m for m in ('torch', 'matplotlib', 'tqdm', 'orbax.checkpoint') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_the_static_argument_is_the_program_not_the_values():
    a, b = StyleConfig(steps=5), dataclasses.replace(StyleConfig(), steps=5)
    assert hash(a) == hash(b) and a == b
    # Steps, sizes, seeds, weights and Adam's hyperparameters are values: one program for all.
    other = StyleConfig(steps=7, max_size=64, seed=3, style_weight=1.0, content_weight=2.0, lr=0.1, b2=0.9)
    assert hash(other.program) == hash(a.program) and other.program == a.program
    assert StyleConfig(tv_weight=1.0).program != a.program  # a term in the graph or not
