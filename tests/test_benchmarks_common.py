"""The benchmarks' own tools, where a wrong reading would give a wrong number."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
from conftest import FIXTURE

from benchmarks.common import compiled_dots


def _loss(x, a, b, unused):
    _ = x @ unused  # read by nothing: XLA drops it, and so must the reading
    return jnp.sum(jnp.tanh(x @ a) @ b.T)


def test_compiled_dots_reads_the_products_the_compiled_program_runs():
    x, a, b, unused = (jnp.ones(s) for s in [(32, 784), (784, 256), (10, 256), (784, 5)])
    dots = compiled_dots(jax.jit(jax.value_and_grad(_loss, argnums=1)), x, a, b, unused)
    # Forward: x @ a (k 784) and h @ b.T (k 256). Backward to a: g @ b (k 10), then x.T @ g (k 32).
    # XLA may compute a product transposed (m and n swapped): compare k with the pair {m, n}.
    read = sorted((k, *sorted((m, n))) for m, k, n in dots)
    assert read == sorted([(784, 32, 256), (256, 10, 32), (10, 32, 256), (32, 256, 784)])


def test_a_starts_phases_add_up_to_its_wall_clock(tmp_path):
    """`benchmarks.starts` splits a command's run into phases: each one measured, and together
    the whole run as timed from outside."""
    from benchmarks.starts import PHASES, ROOT, one_run

    argv = ["jaxart.gan", "train", "--max-steps", "1", "--data", str(FIXTURE), "--workdir", str(tmp_path / "w")]
    phases = one_run(argv, {**os.environ, "PYTHONPATH": str(ROOT)})
    assert set(phases) == {"wall", *PHASES}
    assert all(phases[p] > 0 for p in PHASES)  # every jit stage ran, the plot was drawn
    assert abs(sum(phases[p] for p in PHASES) - phases["wall"]) < 1e-6
    assert (tmp_path / "w" / "loss_curves.png").is_file()
