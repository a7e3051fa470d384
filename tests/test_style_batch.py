"""Scale: remat (same gradients, less memory), vmapped batches (= one-by-one), bfloat16, batch I/O."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxart import images, vgg
from jaxart.errors import InputError
from jaxart.style import StyleConfig, memory, pyramid
from jaxart.style.batch import (
    batch_train_steps,
    combinations,
    contact_sheet,
    load_images,
    output_paths,
    save_results,
    stylize_batch,
)
from jaxart.style.transfer import compute_targets, init_state, loss_fn, stylize, train_steps


@pytest.fixture(scope="module")
def params():
    return vgg.init_params(jax.random.key(0))


def pictures(rng, count, size=32):
    return rng.random((count, size, size, 3)).astype(np.float32)


def temp_bytes(params, size: int, config: StyleConfig) -> int:
    """Compiled scratch memory of one `train_steps` call at size x size (compiled, never run)."""
    image = jax.ShapeDtypeStruct((size, size, 3), jnp.float32)
    targets = jax.eval_shape(functools.partial(compute_targets, config=config), params, image, image)
    state = jax.eval_shape(functools.partial(init_state, config=config), image)
    compiled = train_steps.lower(state, params, targets, config=config, num_steps=1).compile()
    return compiled.memory_analysis().temp_size_in_bytes


def planned_bytes(params, shape: tuple[int, int], config: StyleConfig, pairs: int = 0) -> int:
    """XLA's plan for one compiled step (arguments + outputs - donated aliases + scratch); with
    `pairs`, of `batch_train_steps` over that many pairs."""
    image = jax.ShapeDtypeStruct((*shape, 3), jnp.float32)
    targets = jax.eval_shape(functools.partial(compute_targets, config=config), params, image, image)
    state = jax.eval_shape(functools.partial(init_state, config=config), image)
    step = train_steps
    if pairs:
        batched = lambda x: jax.ShapeDtypeStruct((pairs, *x.shape), x.dtype)  # noqa: E731
        state, targets, step = jax.tree.map(batched, state), jax.tree.map(batched, targets), batch_train_steps
    m = step.lower(state, params, targets, config=config, num_steps=1).compile().memory_analysis()
    return m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes + m.temp_size_in_bytes


@pytest.mark.parametrize(
    "config,pairs",
    [
        (StyleConfig(), 0),
        (StyleConfig(remat=True), 0),
        (StyleConfig(content_layers=("relu2_1",), style_layers=("relu1_1", "relu2_1")), 0),
        (StyleConfig(optimizer="lbfgs"), 0),
        (StyleConfig(ema=0.5, tv_weight=1.0), 0),
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
    plan = planned_bytes(params, shape, config, pairs) + unused
    estimate = memory.step_bytes(shape, config, params, max(pairs, 1))
    assert plan <= estimate <= 1.35 * plan, (estimate / 2**20, plan / 2**20)


def test_memory_refusal_names_the_largest_size_that_fits(params, monkeypatch):
    config = StyleConfig(max_size=4000)
    budget = memory.step_bytes((400, 600), config, params)
    monkeypatch.setattr(memory, "available_bytes", lambda: budget)
    largest = memory.largest_fitting((1000, 1500), config, params, budget)
    assert memory.step_bytes(pyramid.scaled_shape((1000, 1500), largest), config, params) <= budget
    assert memory.step_bytes(pyramid.scaled_shape((1000, 1500), largest + 1), config, params) > budget
    assert largest == 600
    with pytest.raises(ValueError, match=f"the largest --max-size that fits is {largest}"):
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
        grads[remat] = jax.jit(jax.grad(lambda x: loss_fn(x, params, targets, config)[0]))(image)
    scale = np.max(np.abs(grads[False]))
    assert np.max(np.abs(grads[True] - grads[False])) <= 1e-5 * scale


def test_remat_needs_less_memory(params):
    plain, remat = (temp_bytes(params, 128, StyleConfig(remat=r)) for r in (False, True))
    assert remat < 0.9 * plain, (remat, plain)


def test_batch_equals_each_pair_alone_with_its_weights(params, rng):
    # Pairs 0 and 1 share their images and differ only in their weights.
    contents, styles = pictures(rng, 2)[[0, 0, 1]], pictures(rng, 2)[[0, 0, 1]]
    content_weights, style_weights = [1.0, 0.5, 2.0], [100.0, 1000.0, 100.0]
    config = StyleConfig(steps=4, steps_per_call=2)
    batch, history = stylize_batch(contents, styles, params, config, content_weights, style_weights)
    assert batch.shape == contents.shape and history["loss"].shape == (3, 4)
    assert not np.allclose(history["loss"][0], history["loss"][1])
    for i in (1, 2):
        alone = dataclasses.replace(config, content_weight=content_weights[i], style_weight=style_weights[i])
        image, expected = stylize(contents[i], styles[i], params, alone)
        for name, values in expected.items():
            np.testing.assert_allclose(history[name][i], values, rtol=1e-5, err_msg=f"pair {i} {name}")
        np.testing.assert_allclose(batch[i], image, atol=1e-5)


def test_batch_refuses_what_it_cannot_vmap(params, rng):
    contents = pictures(rng, 2)
    with pytest.raises(ValueError, match="alike"):
        stylize_batch(contents, pictures(rng, 2, 40), params, StyleConfig(steps=1))
    with pytest.raises(ValueError, match="pyramid"):
        stylize_batch(contents, contents, params, StyleConfig(steps=1, optimizer="lbfgs"))
    with pytest.raises(ValueError, match="one --content"):
        stylize_batch(contents, contents, params, StyleConfig(steps=1, style_blend=(1.0,)))
    with pytest.raises(ValueError, match="one per pair"):
        stylize_batch(contents, contents, params, StyleConfig(steps=1), content_weights=[1.0])


def test_bfloat16_convolutions_float32_losses(params, rng):
    content, style, image = (vgg.normalize(jnp.asarray(x)) for x in pictures(rng, 3))
    losses = {}
    for dtype in ("bfloat16", "float32"):
        config = StyleConfig(dtype=dtype)
        targets = compute_targets(params, content, style, config)
        assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(targets)), dtype
        _, metrics = jax.jit(lambda x: loss_fn(x, params, targets, config))(image)
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
