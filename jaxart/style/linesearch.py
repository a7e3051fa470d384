"""L-BFGS's two step rules, optax's zoom and backtracking line searches, each with its first trial
outside XLA's loop and the loss's parts kept for the next iteration.

optax evaluates every trial step inside a `while_loop`. XLA CPU ran VGG19's gradient there 4.5x
slower than at the top level (`jaxart.vgg`'s convolution VJP now avoids that), and any loop costs
copies of its carried state. After its first iteration L-BFGS's full step nearly always passes
both rules' tests, so here that first trial is straight-line code; optax's loop runs only when
it fails, from where that trial left it. The trial steps, the accepted step, and the value and
gradient kept for the next iteration are optax's.

The objective returns (value, aux), aux a dict of named scalars (a loss's parts), and the state
keeps aux at the accepted point beside the value and gradient: reporting the parts of each iterate
then costs no forward pass of its own.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from optax._src.linesearch import BacktrackingLinesearchInfo, ZoomLinesearchInfo, zoom_linesearch

# optax's defaults, given to its loop too, so that the first trial and the loop follow one rule.
SLOPE_RTOL = 1e-4
DECREASE_FACTOR = 0.8
INCREASE_FACTOR = 1.5
MAX_LEARNING_RATE = 1.0


class LinesearchState(NamedTuple):
    """optax's `ScaleByBacktrackingLinesearchState` or `ScaleByZoomLinesearchState` (so
    `optax.value_and_grad_from_state` reads it), plus `aux` at the accepted point. `value` is inf
    until the first iteration."""

    learning_rate: jax.Array
    value: jax.Array
    grad: Any
    info: BacktrackingLinesearchInfo | ZoomLinesearchInfo
    aux: dict[str, jax.Array]


def _with_aux(search: optax.GradientTransformationExtraArgs, aux_names: Sequence[str]) -> Callable:
    """`init_fn` of a rule: `search`'s initial state, with aux not a number."""

    def init_fn(params) -> LinesearchState:
        start = search.init(params)
        aux = {name: jnp.full((), jnp.nan, start.value.dtype) for name in aux_names}
        return LinesearchState(start.learning_rate, start.value, start.grad, start.info, aux)

    return init_fn


def zoom(aux_names: Sequence[str], max_linesearch_steps: int = 20) -> optax.GradientTransformationExtraArgs:
    """`optax.lbfgs`'s own line search (`optax.scale_by_zoom_linesearch(max_linesearch_steps,
    initial_guess_strategy="one")`, strong Wolfe conditions), the same steps, for a `value_fn`
    that returns (value, {name: scalar for name in aux_names})."""
    search = optax.scale_by_zoom_linesearch(max_linesearch_steps, initial_guess_strategy="one")
    # optax's defaults: the same search as `search` runs, one step at a time.
    init_search, search_step, searching = zoom_linesearch(max_linesearch_steps)

    def update_fn(updates, state, params, *, value, grad, value_fn):
        start = init_search(updates, params, value=value, grad=grad, initial_guess_strategy="one")
        trial = optax.tree.add_scale(params, start.stepsize_guess, updates)
        (trial_value, aux), trial_grad = jax.value_and_grad(value_fn, has_aux=True)(trial)
        # optax's first step of the search, handed the evaluation just made rather than making it.
        first = search_step(start, value_and_grad_fn=lambda _: (trial_value, trial_grad), fn_kwargs={})

        def go_on(found):
            step = functools.partial(
                search_step, value_and_grad_fn=jax.value_and_grad(lambda x: value_fn(x)[0]), fn_kwargs={}
            )
            found = jax.lax.while_loop(searching, step, found)
            return found, value_fn(optax.tree.add_scale(params, found.stepsize, updates))[1]

        found, aux = jax.lax.cond(searching(first), go_on, lambda found: (found, aux), first)
        info = ZoomLinesearchInfo(found.count, found.decrease_error, found.curvature_error)
        new_state = LinesearchState(found.stepsize, found.value, found.grad, info, aux)
        return optax.tree.scale(found.stepsize, updates), optax.tree.cast_like(new_state, other_tree=state)

    return optax.GradientTransformationExtraArgs(_with_aux(search, aux_names), update_fn)


def backtracking(aux_names: Sequence[str], max_backtracking_steps: int = 30) -> optax.GradientTransformationExtraArgs:
    """`optax.scale_by_backtracking_linesearch(max_backtracking_steps, store_grad=True)`, the same
    steps, for a `value_fn` that returns (value, {name: scalar for name in aux_names})."""
    search = optax.scale_by_backtracking_linesearch(
        max_backtracking_steps - 1,
        slope_rtol=SLOPE_RTOL,
        decrease_factor=DECREASE_FACTOR,
        increase_factor=INCREASE_FACTOR,
        max_learning_rate=MAX_LEARNING_RATE,
        store_grad=True,
    )

    def update_fn(updates, state, params, *, value, grad, value_fn):
        learning_rate = jnp.minimum(INCREASE_FACTOR * state.learning_rate, MAX_LEARNING_RATE)
        trial = optax.tree.add_scale(params, learning_rate, updates)
        (new_value, aux), new_grad = jax.value_and_grad(value_fn, has_aux=True)(trial)
        slope = optax.tree.real(optax.tree.vdot(updates, optax.tree.conj(grad)))
        error = new_value - value - learning_rate * SLOPE_RTOL * slope
        error = jnp.maximum(jnp.where(jnp.isnan(error), jnp.inf, error), 0.0)

        def accept(_):
            info = BacktrackingLinesearchInfo(num_linesearch_steps=jnp.asarray(1), decrease_error=error)
            return optax.tree.scale(learning_rate, updates), LinesearchState(
                learning_rate, new_value, new_grad, info, aux
            )

        def backtrack(_):
            # optax's loop first tries min(INCREASE_FACTOR * rate, MAX): start it one step shorter.
            shorter = search.init(params)._replace(learning_rate=DECREASE_FACTOR * learning_rate / INCREASE_FACTOR)
            new_updates, found = search.update(
                updates, shorter, params, value=value, grad=grad, value_fn=lambda x: value_fn(x)[0]
            )
            info = found.info._replace(num_linesearch_steps=found.info.num_linesearch_steps + 1)
            new_aux = value_fn(optax.apply_updates(params, new_updates))[1]
            return new_updates, LinesearchState(*found._replace(info=info), aux=new_aux)

        new_updates, new_state = jax.lax.cond(error <= 0.0, accept, backtrack, None)
        return new_updates, optax.tree.cast_like(new_state, other_tree=state)

    return optax.GradientTransformationExtraArgs(_with_aux(search, aux_names), update_fn)


def value_grad_aux_from_state(fn: Callable, params, state) -> tuple[jax.Array, Any, dict[str, jax.Array]]:
    """`fn`'s value, gradient and aux at `params`: those a `zoom` or `backtracking` state holds (every
    iteration after the first), else evaluated, as `optax.value_and_grad_from_state` does."""
    value, grad, aux = (optax.tree.get(state, name) for name in ("value", "grad", "aux"))

    def evaluate(_):
        (new_value, new_aux), new_grad = jax.value_and_grad(fn, has_aux=True)(params)
        return optax.tree.cast_like((new_value, new_grad, new_aux), other_tree=(value, grad, aux))

    return jax.lax.cond(jnp.isfinite(value), lambda _: (value, grad, aux), evaluate, None)
