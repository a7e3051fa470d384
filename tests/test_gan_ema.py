"""The generator's moving average: its update, its debiasing, and what draws from it."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest
from conftest import FIXTURE, assert_same_bits
from test_gan_cli import RUN, run_cli

from jaxart import data
from jaxart.gan import GANConfig, generator_params, init_state, run_keys, sample, sample_state, train_step
from jaxart.gan.checkpoint import load_latest
from jaxart.gan.evaluate import sample_images

# A short average, so that a dozen steps move it away from every single iterate.
CONFIG = GANConfig(ema_decay=0.7)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return data.load(str(FIXTURE)).images


def _trained(config: GANConfig, images: np.ndarray, steps: int):
    """The state after `steps` single steps, and the generator's parameters after each (float64)."""
    keys = run_keys(config.seed)
    state = init_state(keys.init, config)
    iterates = []
    for j in range(steps):
        state, _ = train_step(state, images[j * 32 : (j + 1) * 32], keys.train)
        iterates.append(jax.tree.map(lambda x: np.asarray(x, np.float64), state.g_params))
    return state, iterates


def test_moving_average_is_the_debiased_numpy_average_of_the_iterates(images):
    state, iterates = _trained(CONFIG, images, 12)
    decay = CONFIG.ema_decay
    # The float64 reference: w_i = decay^(t - i) over the iterates g_1..g_t, normalised.
    weights = decay ** np.arange(len(iterates) - 1, -1, -1)
    expected = jax.tree.map(lambda *g: np.tensordot(weights, np.stack(g), 1) / weights.sum(), *iterates)
    actual = jax.tree.map(np.asarray, generator_params(state))
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
        # float32 accumulation over 12 steps: a few units in the last place of values ~0.1
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-7)
    last = jax.tree.leaves(iterates[-1])[0]
    assert np.abs(jax.tree.leaves(actual)[0] - last).max() > 1e-5  # the average is not the last iterate
    assert_same_bits(generator_params(state, raw=True), state.g_params)


@pytest.mark.parametrize(
    "config", [CONFIG, GANConfig(model="dcgan", hidden_dim=16, ema_decay=0.7)], ids=["mlp", "dcgan"]
)
def test_the_average_changes_no_training_step(config, images):
    """The moving average only watches: parameters and optimiser states are the bits of a run
    that keeps none."""
    with_ema, _ = _trained(config, images, 6)
    without, _ = _trained(dataclasses.replace(config, ema_decay=0.0), images, 6)
    assert without.g_ema is None and with_ema.g_ema is not None
    watched = dataclasses.replace(with_ema, g_ema=None, config=without.config)
    assert_same_bits(jax.tree.map(np.asarray, watched), jax.tree.map(np.asarray, without))


def test_at_step_zero_the_average_is_the_initial_generator():
    state = init_state(run_keys(0).init, CONFIG)
    assert_same_bits(jax.tree.map(np.asarray, generator_params(state)), jax.tree.map(np.asarray, state.g_params))


def test_sample_state_draws_from_the_average_unless_raw(images):
    state, _ = _trained(CONFIG, images, 4)
    key = jax.random.key(5)
    averaged = sample_state(state, key, 6)
    assert averaged.shape == (6, 28, 28)
    assert_same_bits(averaged, sample(generator_params(state), key, 6, state.config))
    assert_same_bits(sample_state(state, key, 6, raw=True), sample(state.g_params, key, 6, state.config))
    assert not np.array_equal(averaged, sample_state(state, key, 6, raw=True))


def _drawn(state, seed: int, num: int, raw: bool) -> np.ndarray:
    """What `sample --seed seed --num num` writes, as evaluation draws it."""
    return sample_images(lambda key, n: sample_state(state, key, n, raw), jax.random.key(seed), num, num)


@pytest.mark.parametrize("value", ["1", "-0.1", "nan", "0.9.9"])
def test_a_decay_outside_zero_to_one_is_refused_in_one_line(value, tmp_path, capsys):
    status, err = run_cli(["train", "--workdir", tmp_path / "w", *RUN, "--ema-decay", value], capsys)
    assert status == 2 and "--ema-decay" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "w").exists()


def test_commands_draw_from_the_average_and_raw_from_the_trained_generator(tmp_path, capsys):
    workdir = tmp_path / "run"
    status, err = run_cli(["train", "--workdir", workdir, *RUN, "--max-steps", "40"], capsys)
    assert status == 0, err
    state = load_latest(workdir)
    assert state.g_ema is not None and int(state.step) == 40
    for flags, raw in (([], False), (["--raw"], True)):
        out = tmp_path / f"{raw}.npy"
        status, err = run_cli(
            ["sample", "--workdir", workdir, "--num", "7", "--out", out, "--seed", "3", *flags], capsys
        )
        assert status == 0, err
        np.testing.assert_array_equal(np.load(out), _drawn(state, 3, 7, raw))
    assert not np.array_equal(np.load(tmp_path / "True.npy"), np.load(tmp_path / "False.npy"))


def test_a_run_without_an_average_draws_from_its_generator(tmp_path, capsys):
    workdir = tmp_path / "run"
    status, err = run_cli(["train", "--workdir", workdir, *RUN, "--max-steps", "10", "--ema-decay", "0"], capsys)
    assert status == 0, err
    state = load_latest(workdir)
    assert state.g_ema is None
    out = tmp_path / "s.npy"
    status, err = run_cli(["sample", "--workdir", workdir, "--num", "3", "--out", out], capsys)
    assert status == 0, err
    np.testing.assert_array_equal(np.load(out), _drawn(state, 0, 3, raw=True))


def test_checkpoints_from_before_the_average_sample_and_resume_without_one(tmp_path, capsys):
    """Checkpoints of earlier versions have no `g_ema` entry and no `ema_decay` in their config:
    they load as runs without an average, resume bit for bit with --ema-decay 0, and a resume
    with an average is refused in one line."""
    import orbax.checkpoint as ocp

    from jaxart.checkpoint import Checkpoints
    from jaxart.gan.checkpoint import _StateWithoutAverage, load_latest_run

    no_average = ["--ema-decay", "0", "--checkpoint-every", "10"]
    straight, old = tmp_path / "straight", tmp_path / "old"
    for workdir, steps in ((straight, "30"), (old, "20")):
        status, err = run_cli(["train", "--workdir", workdir, *RUN, "--max-steps", steps, *no_average], capsys)
        assert status == 0, err
    state, meta = load_latest_run(old)
    fields = {f.name: getattr(state, f.name) for f in dataclasses.fields(_StateWithoutAverage)}
    config = {k: v for k, v in meta["config"].items() if k != "ema_decay"}
    with Checkpoints(old) as checkpoints:
        checkpoints.manager.delete(20)
        checkpoints.manager.save(
            20,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(_StateWithoutAverage(**fields)),
                meta=ocp.args.JsonSave({**meta, "config": config}),
            ),
        )
    status, err = run_cli(["sample", "--workdir", old, "--num", "3", "--out", tmp_path / "s.npy"], capsys)
    assert status == 0, err
    status, err = run_cli(["train", "--workdir", old, *RUN, "--max-steps", "30"], capsys)
    assert status == 2 and "holds a run with --ema-decay 0.0, not 0.999" in err and len(err.splitlines()) == 1
    status, err = run_cli(["train", "--workdir", old, *RUN, "--max-steps", "30", *no_average], capsys)
    assert status == 0, err
    assert_same_bits(jax.tree.map(np.asarray, load_latest(old)), jax.tree.map(np.asarray, load_latest(straight)))
