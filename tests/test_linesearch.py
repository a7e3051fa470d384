"""jaxart's step rules against optax's, which they must reproduce step for step."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxart.style import linesearch


def rosenbrock(x):
    return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)


def with_parts(x):
    return rosenbrock(x), {"valley": jnp.sum((x[1:] - x[:-1] ** 2) ** 2)}


OURS = {"backtracking": lambda: linesearch.backtracking(("valley",), 30), "zoom": lambda: linesearch.zoom(("valley",))}
THEIRS = {
    "backtracking": lambda: optax.scale_by_backtracking_linesearch(30, store_grad=True),
    "zoom": lambda: optax.scale_by_zoom_linesearch(20, initial_guess_strategy="one"),  # optax.lbfgs's own
}


def lbfgs_path(rule: str, ours: bool, iterations: int) -> tuple[np.ndarray, list[int], list[float]]:
    """The L-BFGS iterates on the 5-d Rosenbrock function from a standard hard start, each
    iteration's count of trial steps, and (ours) the aux reported for each iterate."""
    if ours:
        opt = optax.lbfgs(linesearch=OURS[rule]())
        fn, value_and_grad = with_parts, lambda x, s: linesearch.value_grad_aux_from_state(with_parts, x, s)
    else:
        opt = optax.lbfgs(linesearch=THEIRS[rule]())
        fn = rosenbrock
        value_and_grad = lambda x, s: (*optax.value_and_grad_from_state(rosenbrock)(x, state=s), {"valley": 0.0})  # noqa: E731

    @jax.jit
    def step(x, state):
        value, grad, aux = value_and_grad(x, state)
        updates, state = opt.update(grad, state, x, value=value, grad=grad, value_fn=fn)
        return optax.apply_updates(x, updates), state, aux["valley"]

    x = jnp.array([-1.2, 1.0, -0.5, 0.8, 2.0])
    state = opt.init(x)
    path, trials, valleys = [x], [], []
    for _ in range(iterations):
        x, state, valley = step(x, state)
        path.append(np.asarray(x))
        trials.append(int(optax.tree.get(state, "num_linesearch_steps")))
        valleys.append(float(valley))
    return np.array(path), trials, valleys


@pytest.mark.parametrize("rule, most_trials", [("backtracking", [6, 16]), ("zoom", [3, 5])])
def test_rule_takes_optax_steps_and_keeps_the_parts(rule, most_trials):
    # float64, so the two rules' rounding (value_and_grad against optax's linearize) stays far
    # below the differences a wrong trial step would make.
    with jax.enable_x64(True):
        ours, our_trials, valleys = lbfgs_path(rule, True, 40)
        theirs, their_trials, _ = lbfgs_path(rule, False, 40)
        expected = [float(with_parts(x)[1]["valley"]) for x in ours[:-1]]
    assert our_trials == their_trials
    # The path has to go through the loop, not only the straight-line first trial.
    assert sorted(set(our_trials))[-2:] == most_trials, our_trials
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-8)
    # The parts reported at each iterate are that iterate's, whether the first trial or the loop found it.
    np.testing.assert_allclose(valleys, expected, rtol=1e-12)
