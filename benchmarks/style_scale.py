"""Style transfer at scale: remat's memory and time, batched throughput, bfloat16's error.

    python -m benchmarks.style_scale [--budgets 2 8] [--remat-size 256] [--pairs 4] [--size 128] [--steps 20]

Random (seeded) VGG19 weights and random pictures: memory, speed and float error do not
depend on what the weights mean. Memory is XLA's own account of one compiled `train_steps`
call (arguments + outputs - donated aliases + scratch), read from `compiled.memory_analysis()`
without running it, so the largest size within a budget is found by bisection on compiles.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import machine, seconds
from jaxart import vgg
from jaxart.style import StyleConfig
from jaxart.style.batch import stylize_batch
from jaxart.style.transfer import compute_targets, init_state, stylize, train_steps

GIB = 2**30


@functools.cache
def step_bytes(size: int, remat: bool) -> int:
    """Peak memory XLA plans for one step on a size x size image (compiled, not run)."""
    config = StyleConfig(remat=remat)
    params = jax.eval_shape(vgg.init_params, jax.random.key(0))
    image = jax.ShapeDtypeStruct((size, size, 3), jnp.float32)
    targets = jax.eval_shape(functools.partial(compute_targets, config=config), params, image, image)
    state = jax.eval_shape(functools.partial(init_state, config=config), image)
    m = train_steps.lower(state, params, targets, config=config, num_steps=1).compile().memory_analysis()
    return m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes + m.temp_size_in_bytes


def largest_size(budget: int, remat: bool, lo: int = 64, hi: int = 8192, step: int = 32) -> int:
    """The largest square side (a multiple of `step`) whose step fits in `budget` bytes."""
    while hi - lo > step:
        mid = (lo + hi) // 2 // step * step
        lo, hi = (mid, hi) if step_bytes(mid, remat) <= budget else (lo, mid)
    return lo


def seconds_per_step(size: int, config: StyleConfig, steps: int, rng: np.random.Generator) -> float:
    params = vgg.init_params(jax.random.key(0))
    content, style = (vgg.normalize(jnp.asarray(rng.random((size, size, 3), np.float32))) for _ in range(2))
    targets = compute_targets(params, content, style, config)
    state = init_state(content, config)
    state, _ = train_steps(state, params, targets, config, 1)  # compile
    jax.block_until_ready(state)

    def run():
        nonlocal state
        for _ in range(steps):
            state, metrics = train_steps(state, params, targets, config, 1)
        jax.block_until_ready((state, metrics))

    return seconds(run) / steps


def bfloat16_errors(content: np.ndarray, style: np.ndarray, params, config: StyleConfig) -> None:
    """Prints bfloat16's relative error on each loss (steps 1.., step 0's content loss being 0) and the image."""
    image32, history32 = stylize(content, style, params, config)
    image16, history16 = stylize(content, style, params, dataclasses.replace(config, dtype="bfloat16"))
    for name in ("loss", "content_loss", "style_loss"):
        rel = np.abs(history16[name][1:] - history32[name][1:]) / np.abs(history32[name][1:])
        print(f"  {name:13} relative error: max {rel.max():.2e}, last step {rel[-1]:.2e}")
    diff = np.abs(image16 - image32)
    print(f"  output image (RGB in [0, 1]): max abs error {diff.max():.2e}, mean {diff.mean():.2e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", type=float, nargs="+", default=[2, 8], help="memory budgets, GiB")
    parser.add_argument("--remat-size", type=int, default=256, help="side at which to time remat")
    parser.add_argument("--pairs", type=int, default=4, help="pairs in the throughput comparison")
    parser.add_argument("--size", type=int, default=128, help="side of the throughput and bfloat16 runs")
    parser.add_argument("--steps", type=int, default=20, help="steps of the throughput and bfloat16 runs")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(machine(), "\n")

    print("Memory of one compiled step (XLA's plan), MiB")
    print(f"{'side':>6} {'no remat':>9} {'remat':>9} {'saved':>6}")
    for size in (256, 512, 1024):
        plain, remat = step_bytes(size, False), step_bytes(size, True)
        print(f"{size:>6} {plain / 2**20:9.0f} {remat / 2**20:9.0f} {1 - remat / plain:6.0%}")
    print(f"\n{'budget':>7} {'largest side, no remat':>23} {'with remat':>11} {'pixels x':>9}")
    for budget in args.budgets:
        plain, remat = largest_size(int(budget * GIB), False), largest_size(int(budget * GIB), True)
        print(f"{budget:>5g} G {plain:>23} {remat:>11} {(remat / plain) ** 2:9.2f}")

    plain = seconds_per_step(args.remat_size, StyleConfig(), 5, rng)
    remat = seconds_per_step(args.remat_size, StyleConfig(remat=True), 5, rng)
    print(f"\nseconds/step at {args.remat_size}px: no remat {plain:.3f}, remat {remat:.3f} ({remat / plain:.2f}x)")

    params = vgg.init_params(jax.random.key(0))
    contents, styles = (rng.random((args.pairs, args.size, args.size, 3), np.float32) for _ in range(2))
    config = StyleConfig(steps=args.steps, steps_per_call=args.steps)
    one_by_one = lambda: [stylize(c, s, params, config) for c, s in zip(contents, styles)]  # noqa: E731
    batched = lambda: stylize_batch(contents, styles, params, config)  # noqa: E731
    one_by_one(), batched()  # compile both
    work = args.pairs * args.steps
    t_one, t_batch = seconds(one_by_one), seconds(batched)
    print(f"\n{args.pairs} pairs x {args.steps} steps at {args.size}px (compilation excluded), pairs*steps/s:")
    print(f"  one by one (stylize)   {work / t_one:7.1f}  ({t_one:.2f} s)")
    print(f"  batched (stylize_batch){work / t_batch:7.1f}  ({t_batch:.2f} s, {t_one / t_batch:.2f}x)")

    print(f"\nbfloat16 vs float32 convolutions, {args.size}px, {args.steps} steps (Gram matrices, losses float32):")
    bfloat16_errors(contents[0], styles[0], params, config)


if __name__ == "__main__":
    main()
