"""The DCGAN: its transposed convolution, shapes, batch statistics, and the shared machinery end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import FIXTURE, assert_same_bits

from jaxart import cli, data
from jaxart.files import read_json_lines
from jaxart.gan import GANConfig, evaluate, init_state, run_keys, sample, train_step
from jaxart.gan import __main__ as gan_main
from jaxart.gan.checkpoint import load_latest
from jaxart.gan.judge import load_judge, shipped_dir
from jaxart.gan.models import ConvTranspose2x, adam_b1, make_models, steps_per_call

ROOT = Path(__file__).resolve().parent.parent
# Small enough for quick tests: maps of 8 and 4 channels, batch 16.
CONFIG = GANConfig(model="dcgan", hidden_dim=16, batch_size=16)
RUN = ["--data", FIXTURE, "--model", "dcgan", "--hidden-dim", "16", "--batch-size", "16"]


@pytest.mark.cpu_only
def test_cpu_default_steps_per_call_is_the_fastest_measured():
    """XLA's CPU convolutions run ~15x slower inside a loop body (benchmarks/RESULTS.md): the
    DCGAN takes one step per call there, the MLP 50; a run's own value always wins."""
    assert steps_per_call(GANConfig(model="dcgan"), None) == 1
    assert steps_per_call(GANConfig(model="mlp"), None) == 50
    assert steps_per_call(GANConfig(model="dcgan"), 7) == 7


def test_conv_transpose_2x_is_flax_conv_transpose():
    x = jax.random.normal(jax.random.key(0), (2, 7, 7, 5))
    ours = ConvTranspose2x(3)
    params = ours.init(jax.random.key(1), x)
    reference = nn.ConvTranspose(3, (4, 4), (2, 2), "SAME")
    assert jax.tree.map(np.shape, params) == jax.tree.map(np.shape, reference.init(jax.random.key(1), x))
    params = jax.tree.map(lambda p: p + 0.1, params)  # a non-zero bias too
    y = ours.apply(params, x)
    assert y.shape == (2, 14, 14, 3)
    np.testing.assert_allclose(y, reference.apply(params, x), atol=1e-5)

    def loss(module):
        return lambda p, x: jnp.sum(jnp.sin(module.apply(p, x)))

    for ours_grad, ref_grad in zip(
        jax.tree.leaves(jax.grad(loss(ours), argnums=(0, 1))(params, x)),
        jax.tree.leaves(jax.grad(loss(reference), argnums=(0, 1))(params, x)),
    ):
        np.testing.assert_allclose(ours_grad, ref_grad, atol=1e-4)


def test_dcgan_shapes_and_range():
    generator, discriminator = make_models(CONFIG)
    state = init_state(run_keys(0).init, CONFIG)
    z = jax.random.normal(jax.random.key(0), (5, CONFIG.latent_dim))
    variables = {"params": state.g_params, **state.g_collections}
    images = generator.apply(variables, z, train=False)
    assert images.shape == (5, 28, 28) and 0 <= float(images.min()) and float(images.max()) <= 1
    logits = discriminator.apply({"params": state.d_params}, images, train=True)
    assert logits.shape == (5,)
    assert set(state.g_collections) == {"batch_stats"} and state.d_collections == {}
    assert state.g_params["Dense_0"]["kernel"].shape == (CONFIG.latent_dim, 7 * 7 * 8)
    # Sampling uses the running averages: an image does not depend on the rest of its batch.
    np.testing.assert_allclose(generator.apply(variables, z[:2], train=False), images[:2], atol=1e-6)


def test_b1_defaults_to_the_models_own():
    assert adam_b1(GANConfig()) == 0.9 and adam_b1(CONFIG) == 0.5
    assert adam_b1(GANConfig(model="dcgan", b1=0.9)) == 0.9 and adam_b1(GANConfig(b1=0.0)) == 0.0


def test_train_step_updates_batch_stats_and_sample_uses_them():
    images = data.load(str(FIXTURE)).images[:16]
    keys = run_keys(0)
    state = init_state(keys.init, CONFIG)
    before = jax.tree.map(np.array, state.g_collections)
    new, metrics = train_step(state, images, keys.train)
    assert all(np.isfinite(float(v)) for v in metrics.values())
    for layer, stats in new.g_collections["batch_stats"].items():
        for name in ("mean", "var"):
            assert not np.array_equal(stats[name], before["batch_stats"][layer][name]), (layer, name)
    a = sample(new.g_params, jax.random.key(0), 4, new.config, new.g_collections)
    b = sample(new.g_params, jax.random.key(0), 4, new.config, before)
    assert a.shape == (4, 28, 28) and not np.array_equal(a, b)


def run(argv, capsys) -> str:
    status = cli.run(gan_main.main, [str(a) for a in argv])
    out, err = capsys.readouterr()
    assert status == 0, err
    return out


def train_in_subprocess(argv) -> None:
    """`python -m jaxart.gan train argv` in a process of its own: the command sets XLA's
    deterministic flags before its backend starts, which this process's (started) cannot."""
    done = subprocess.run(
        [sys.executable, "-m", "jaxart.gan", "train", *map(str, argv)], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]


def test_cli_dcgan_trains_resumes_bit_exact_samples_and_evaluates(tmp_path, capsys, monkeypatch):
    # Bit-exact on whatever backend runs the tests (on a GPU, through the deterministic flags).
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train_in_subprocess(["--workdir", straight, *RUN, "--max-steps", "12"])
    train_in_subprocess(["--workdir", resumed, *RUN, "--max-steps", "6"])
    assert int(load_latest(resumed).step) == 6
    train_in_subprocess(["--workdir", resumed, *RUN, "--max-steps", "12"])
    a, b = load_latest(straight), load_latest(resumed)
    assert int(a.step) == int(b.step) == 12 and a.config == b.config == CONFIG.static
    assert_same_bits(a, b)  # parameters, both Adam states and G's batch statistics

    run(["sample", "--workdir", straight, "--num", "6", "--out", tmp_path / "s.npy"], capsys)
    samples = np.load(tmp_path / "s.npy")
    assert samples.shape == (6, 28, 28) and 0 <= samples.min() and samples.max() <= 1

    judge = load_judge(shipped_dir("mnist"))
    monkeypatch.setattr(evaluate, "load_or_train_judge", lambda *args, **kwargs: judge)
    out = run(["eval", "--workdir", straight, "--num", "100", "--no-precision-recall"], capsys)
    assert out.startswith("step 12: FCD ")
    (record,) = read_json_lines(straight / "eval.jsonl")
    assert record["step"] == 12 and record["num_samples"] == 100 and "precision" not in record
    assert (straight / "eval.png").stat().st_size > 0
