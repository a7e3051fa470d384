"""Scale: remat (same gradients, less memory), vmapped batches (= one-by-one), bfloat16, batch I/O."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxart import images, vgg
from jaxart.errors import InputError
from jaxart.style import StyleConfig, loop, memory, pyramid, sharding
from jaxart.style.batch import check_batch, combinations, contact_sheet, load_images, output_paths, save_results
from jaxart.style.loop import stylize, stylize_batch
from jaxart.style.transfer import compute_targets, loss_fn


@pytest.fixture(scope="module")
def params():
    return vgg.init_params(jax.random.key(0))


def pictures(rng, count, size=32):
    return rng.random((count, size, size, 3)).astype(np.float32)


def temp_bytes(size: int, config: StyleConfig) -> int:
    """Compiled scratch memory of one step at size x size (compiled, never run)."""
    return loop.compile_step((size, size), config).memory_analysis().temp_size_in_bytes


@pytest.mark.parametrize(
    "config,pairs",
    [
        (StyleConfig(), 1),
        (StyleConfig(remat=True), 1),
        (StyleConfig(content_layers=("relu2_1",), style_layers=("relu1_1", "relu2_1")), 1),
        (StyleConfig(optimizer="lbfgs"), 1),
        (StyleConfig(ema=0.5, tv_weight=1.0), 1),
        (StyleConfig(), 3),
    ],
    ids=["seed", "remat", "shallow", "lbfgs", "ema-tv", "batch"],
)
def test_memory_estimate_bounds_xla_plan(params, config, pairs):
    # Never below what XLA plans (a refusal must not let an impossible run through), and not
    # so far above that it refuses much that would fit.
    shape = (192, 256)
    # The step's program leaves out params it does not read; a run keeps them all on the device.
    unused = memory.params_bytes(params) - memory.params_bytes(params, config)
    plan = sharding.planned_bytes(loop.compile_step(shape, config, pairs=pairs)) + unused
    estimate = memory.estimate_bytes(shape, config, params, pairs)
    assert plan <= estimate <= 1.35 * plan, (estimate / 2**20, plan / 2**20)


def test_memory_refusal_names_the_largest_size_that_fits(params, monkeypatch):
    config = StyleConfig(max_size=4000)
    budget = memory.estimate_bytes((400, 600), config, params)
    monkeypatch.setattr(memory, "available_bytes", lambda: budget)
    largest = memory.largest_fitting((1000, 1500), config, params, budget)
    assert memory.estimate_bytes(pyramid.scaled_shape((1000, 1500), largest), config, params) <= budget
    assert memory.estimate_bytes(pyramid.scaled_shape((1000, 1500), largest + 1), config, params) > budget
    assert largest == 600
    with pytest.raises(ValueError, match=f"the largest `max_size` that fits is {largest}"):
        memory.check_fits((1000, 1500), config, params)
    memory.check_fits((1000, 1500), StyleConfig(max_size=largest), params)  # fits: no error
    with pytest.raises(ValueError, match="4 pairs"):
        memory.check_fits((1000, 1500), StyleConfig(max_size=largest), params, pairs=4)


def test_remat_gives_the_same_gradients(params, rng):
    content, style, image = (vgg.normalize(jnp.asarray(x)) for x in pictures(rng, 3, 48))
    grads = {}
    for remat in (False, True):
        config = StyleConfig(remat=remat)
        targets = compute_targets(params, content, style, config)
        grads[remat] = jax.jit(jax.grad(lambda x: loss_fn(x, params, targets, config.program)[0]))(image)
    scale = np.max(np.abs(grads[False]))
    assert np.max(np.abs(grads[True] - grads[False])) <= 1e-5 * scale


def test_remat_needs_less_memory(params):
    plain, remat = (temp_bytes(128, StyleConfig(remat=r)) for r in (False, True))
    assert remat < 0.9 * plain, (remat, plain)


SHALLOW = dict(content_layers=("relu2_1",), style_layers=("relu1_1", "relu2_1"))


@pytest.mark.parametrize(
    "config",
    [
        StyleConfig(steps=4, steps_per_call=2),
        # Under vmap the zoom line search's while_loop runs until every pair's search ends.
        StyleConfig(steps=4, optimizer="lbfgs", pyramid=16, **SHALLOW),
    ],
    ids=["adam", "lbfgs-pyramid"],
)
def test_batch_equals_each_pair_alone_with_its_weights(params, rng, config):
    # Pairs 0 and 1 share their images and differ only in their weights.
    contents, styles = pictures(rng, 2)[[0, 0, 1]], pictures(rng, 2)[[0, 0, 1]]
    content_weights, style_weights = [1.0, 0.5, 2.0], [100.0, 1000.0, 100.0]
    per_pair = {"content_weight": content_weights, "style_weight": style_weights}
    batch, history = stylize_batch(contents, styles, params, config, per_pair=per_pair)
    assert batch.shape == contents.shape and history["loss"].shape == (3, 4)
    assert not np.allclose(history["loss"][0], history["loss"][1])
    for i in (1, 2):
        alone = dataclasses.replace(config, content_weight=content_weights[i], style_weight=style_weights[i])
        image, expected = stylize(contents[i], styles[i], params, alone)
        for name, values in expected.items():
            np.testing.assert_allclose(history[name][i], values, rtol=1e-5, err_msg=f"pair {i} {name}")
        np.testing.assert_allclose(batch[i], image, atol=1e-5)


def test_batch_refuses_what_it_cannot_run(params, rng):
    contents = pictures(rng, 2)
    with pytest.raises(ValueError, match="same shape"):
        stylize_batch(contents, pictures(rng, 2, 40), params, StyleConfig(steps=1))
    with pytest.raises(ValueError, match="has 1 value"):
        stylize_batch(contents, contents, params, StyleConfig(steps=1), per_pair={"content_weight": [1.0]})
    with pytest.raises(ValueError, match="cannot vary per pair"):
        stylize_batch(contents, contents, params, StyleConfig(steps=1), per_pair={"steps": [1, 2]})
    with pytest.raises(ValueError, match="`style_weight` must be >= 0"):
        stylize_batch(contents, contents, params, StyleConfig(steps=1), per_pair={"style_weight": [1.0, -1.0]})
    with pytest.raises(ValueError, match="no `style_blend`"):
        check_batch(StyleConfig(style_blend=(1.0,)))
    with pytest.raises(ValueError, match="no `style_scale`"):
        check_batch(StyleConfig(style_scale=0.5))
    check_batch(StyleConfig(optimizer="lbfgs", pyramid=16))


def test_a_sweep_of_values_compiles_one_step(params, rng):
    """Loss weights, Adam's hyperparameters and the EMA decay are arrays, not constants of the
    step: a 3-weight sweep is one batch of one compiled program, and another sweep of other
    values, steps and seed compiles nothing new."""
    compiled: list[str] = []

    def listen(event: str, seconds: float, **kwargs) -> None:
        if event == "/jax/core/compile/backend_compile_duration" and kwargs.get("fun_name") == "jit(style_steps)":
            compiled.append(event)

    content, style = pictures(rng, 2, 24)
    contents, styles = np.stack([content] * 3), [style] * 3
    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        config = StyleConfig(steps=2, steps_per_call=1, ema=0.5, seed=1)
        stylize_batch(contents, styles, params, config, per_pair={"style_weight": [1e-5, 1e-4, 1e-3]})
        sweep = len(compiled)
        before = loop._compiled_step.cache_info().currsize
        other = StyleConfig(steps=3, steps_per_call=1, ema=0.9, seed=2, lr=0.1, b1=0.9, content_weight=2.0)
        stylize_batch(contents, styles, params, other, per_pair={"style_weight": [1.0, 2.0, 3.0], "tv_weight": [0] * 3})
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    print("compilations of the step for a 3-weight sweep:", sweep)
    assert sweep == 1 and len(compiled) == 1
    assert loop._compiled_step.cache_info().currsize == before


def test_bfloat16_convolutions_float32_losses(params, rng):
    content, style, image = (vgg.normalize(jnp.asarray(x)) for x in pictures(rng, 3))
    losses = {}
    for dtype in ("bfloat16", "float32"):
        config = StyleConfig(dtype=dtype)
        targets = compute_targets(params, content, style, config)
        assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(targets)), dtype
        _, metrics = jax.jit(lambda x: loss_fn(x, params, targets, config.program))(image)
        assert all(m.dtype == jnp.float32 for m in metrics.values()), dtype
        losses[dtype] = np.array([metrics[name] for name in ("loss", "content_loss", "style_loss")])
    # bfloat16 keeps ~3 significant digits: close to float32, but not float32's numbers.
    rel = np.abs(losses["bfloat16"] - losses["float32"]) / losses["float32"]
    assert np.max(rel) < 2e-2 and np.min(rel) > 0, rel


def write_png(path, height, width, rng):
    images.save_image(path, rng.random((height, width, 3)))
    return path


def test_batch_files_names_and_contact_sheet(tmp_path, rng):
    config = StyleConfig(max_size=32)
    a, b = write_png(tmp_path / "a.png", 48, 64, rng), write_png(tmp_path / "b.png", 24, 32, rng)
    x, y = write_png(tmp_path / "x.png", 50, 50, rng), write_png(tmp_path / "y.png", 70, 20, rng)
    contents, styles = load_images([a, b], [x, y], config)
    assert contents.shape == (2, 24, 32, 3) and styles.shape == (2, 24, 32, 3)
    with pytest.raises(InputError, match=r"a.png 32x24, c.png 24x32"):
        load_images([a, write_png(tmp_path / "c.png", 64, 48, rng)], [x], config)

    pair_contents, pair_styles = combinations(contents, styles)
    assert [(c, s) for c, s in zip(pair_contents[:, 0, 0, 0], pair_styles[:, 0, 0, 0])] == [
        (contents[i, 0, 0, 0], styles[j, 0, 0, 0]) for i in range(2) for j in range(2)
    ]
    out = tmp_path / "out.png"
    assert [p.name for p in output_paths(out, [a, b], [x, y])] == [
        "out_a_x.png",
        "out_a_y.png",
        "out_b_x.png",
        "out_b_y.png",
    ]
    with pytest.raises(InputError, match="share a name"):
        output_paths(out, [a, tmp_path / "sub" / "a.png"], [x])

    sheet = contact_sheet(contents, styles, pair_styles, pad=2)
    assert sheet.shape == (3 * 26 + 2, 3 * 34 + 2, 3)
    assert np.all(sheet[2:26, 2:34] == 1.0)  # the blank corner
    np.testing.assert_array_equal(sheet[2:26, 36:68], styles[0])  # header row
    np.testing.assert_array_equal(sheet[28:52, 2:34], contents[0])  # header column
    written = save_results(out, [a, b], [x, y], contents, styles, pair_styles)
    assert [p.name for p in written][-1] == "out_grid.png" and all(p.exists() for p in written)
    assert not list(tmp_path.glob(".*tmp"))
