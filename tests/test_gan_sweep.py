"""Hyperparameters as values: `train --runs 4 --lr a,b,c,d` trains four rates through one
compiled step, and run r is the single run of seed + r and the r-th rate."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from conftest import FIXTURE, assert_same_bits

from jaxart import cli
from jaxart.files import read_json_lines
from jaxart.gan import GANConfig, parallel
from jaxart.gan import __main__ as gan_main
from jaxart.gan.checkpoint import load_latest_run

RATES = (1e-4, 2e-4, 4e-4, 8e-4)
# Two calls of 4 steps: one call length, so one program per runs count.
FLAGS = ["--data", FIXTURE, "--max-steps", "8", "--steps-per-call", "4"]
TOLERANCE = 1e-4  # relative, per-step losses: vmapped runs sum in another order (as in test_gan_scale)
METRICS = ("d_loss", "g_loss", "d_x", "d_g_z")


def run_cli(argv, capsys) -> tuple[int, str]:
    try:
        status = cli.run(gan_main.main, [str(a) for a in argv])
    except SystemExit as e:
        status = e.code
    return status, capsys.readouterr().err


def losses(folder) -> np.ndarray:
    return np.array([[row[k] for k in METRICS] for row in read_json_lines(folder / "metrics.jsonl")])


@pytest.fixture
def step_programs():
    """The names of the job's step programs (`parallel.compiled_steps`) lowered while the test
    runs, one per compilation, whether or not XLA's persistent cache then holds it."""
    parallel.compiled_steps.cache_clear()  # programs of earlier tests would be traced already
    lowered: list[str] = []

    def listen(event: str, _: float, fun_name: str = "", **kwargs) -> None:
        if event == "/jax/core/compile/jaxpr_to_mlir_module_duration" and fun_name == "jit(gathered)":
            lowered.append(fun_name)

    jax.monitoring.register_event_duration_secs_listener(listen)
    return lowered


def test_rate_sweep_compiles_the_step_once_and_each_run_is_its_single_run(step_programs, tmp_path, capsys):
    sweep = tmp_path / "sweep"
    argv = ["train", "--workdir", sweep, "--runs", "4", "--lr", ",".join(map(str, RATES)), *FLAGS]
    status, err = run_cli(argv, capsys)
    assert status == 0, err
    assert len(step_programs) == 1  # the 4-rate sweep: one step program
    for r, rate in enumerate(RATES):
        state, meta = load_latest_run(sweep / f"run-00{r}")
        assert meta["config"]["lr"] == rate and meta["config"]["seed"] == r
        assert state.g_opt_state.hyperparams["learning_rate"] == np.float32(rate)

    # Single runs of other seeds and rates share one program: neither is a compile-time constant.
    for r in (1, 3):
        single = tmp_path / f"single{r}"
        status, err = run_cli(["train", "--workdir", single, "--seed", r, "--lr", RATES[r], *FLAGS], capsys)
        assert status == 0, err
        ours, theirs = losses(sweep / f"run-00{r}"), losses(single)
        assert ours.shape == (8, 4) and np.max(np.abs(ours - theirs) / np.abs(theirs)) <= TOLERANCE
    assert len(step_programs) == 2  # and one for the single runs


@pytest.mark.parametrize("rates", ["1e-4,2e-4", "1e-4,2e-4,3e-4,4e-4,5e-4"])
def test_a_sweep_of_another_length_than_runs_is_refused_in_one_line(rates, tmp_path, capsys):
    status, err = run_cli(["train", "--workdir", tmp_path / "w", "--runs", "3", "--lr", rates, *FLAGS], capsys)
    assert status == 2 and len(err.strip().splitlines()) == 1
    assert "--lr gives" in err and "for --runs 3" in err
    assert not (tmp_path / "w").exists()


def test_one_rate_is_every_runs_and_a_list_of_one_is_that_rate():
    config = GANConfig(lr=(3e-4,))
    assert config == GANConfig(lr=3e-4)
    assert [config.run(r, 2).lr for r in range(2)] == [3e-4, 3e-4]
    assert [config.run(r, 2).seed for r in range(2)] == [0, 1]


def test_a_plain_run_takes_the_bits_of_train_steps(tmp_path, capsys):
    """The job's one loop (runs axis 1, mesh of one device, batches gathered on the device) is
    `train_steps` bit for bit."""
    from jaxart import data
    from jaxart.gan import epoch_order, init_state, run_keys, train_steps
    from jaxart.gan.checkpoint import load_latest

    status, err = run_cli(["train", "--workdir", tmp_path / "w", "--lr", "3e-4", "--seed", "2", *FLAGS], capsys)
    assert status == 0, err
    images = jax.device_put(data.load(str(FIXTURE)).images)
    config, keys = GANConfig(lr=3e-4, seed=2), run_keys(2)
    order = epoch_order(keys.data, 0, len(images), len(images) // 32, 32)
    state = init_state(keys.init, config)
    for start in (0, 4):
        state, _ = train_steps(state, images, order, start, keys.train, length=4)
    assert_same_bits(load_latest(tmp_path / "w"), state)
