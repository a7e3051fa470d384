"""Style-transfer speed: the seed's PyTorch loop vs jaxart, side by side, per optimisation step.

    python -m benchmarks.style_speed [--sizes 400 128] [--steps 20] [--k 10]

Both run on the bundled examples with the same (randomly initialised, seeded) VGG19
weights: speed does not depend on the weights' values. Prints seconds per step, the
ratio to the seed, and jaxart's achieved GFLOP/s (XLA's count of one compiled step)
against a float32 matmul peak measured in the same run.
"""

from __future__ import annotations

import argparse

import jax

from benchmarks import seed_style as seed
from benchmarks.common import (
    EXAMPLES,
    compiled_flops,
    example_pair,
    machine,
    matmul_peak_gflops,
    random_vgg19,
    seconds,
)
from jaxart import vgg
from jaxart.style import StyleConfig
from jaxart.style.transfer import compute_targets, init_state, train_steps


def seed_seconds_per_step(model, size: int, steps: int) -> float:
    content, style = seed.load_pair(EXAMPLES / "content.png", EXAMPLES / "style.png", max_size=size)
    seed.stylize(model, content, style, num_step=2)  # warm-up: allocator, oneDNN primitives
    return seconds(lambda: seed.stylize(model, content, style, num_step=steps)) / steps


def jaxart_seconds_per_step(params, content, style, steps: int, k: int) -> tuple[float, float]:
    """(seconds per step with k steps per compiled call, XLA flops of one step).

    The flops are counted on the single-step program: XLA's cost analysis counts a loop
    body once, not once per iteration."""
    config = StyleConfig(steps_per_call=k)
    content_n, style_n = vgg.normalize(content), vgg.normalize(style)
    targets = compute_targets(params, content_n, style_n, config)
    state = init_state(content_n, config)
    flops = compiled_flops(train_steps, state, params, targets, config=config, num_steps=1)
    state, _ = train_steps(state, params, targets, config, k)  # compile
    jax.block_until_ready(state)
    calls = max(1, steps // k)

    def run():
        nonlocal state
        for _ in range(calls):
            state, metrics = train_steps(state, params, targets, config, k)
        jax.block_until_ready((state, metrics))

    return seconds(run) / (calls * k), flops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[400, 128], help="content's longest side")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per loop and size")
    parser.add_argument("--k", type=int, nargs="*", default=[10], help="steps per compiled call to time too")
    args = parser.parse_args()

    state_dict, params = random_vgg19()
    model = seed.VGGnet(state_dict).eval()
    peak = matmul_peak_gflops()
    print(machine())
    print(f"float32 matmul peak here: {peak:.1f} GFLOP/s; {args.steps} timed steps per loop\n")
    header = f"{'size':>9} {'loop':28} {'s/step':>8} {'x seed':>7} {'GFLOP/step':>10} {'GFLOP/s':>8} {'% peak':>7}"
    print(header)
    print("-" * len(header))
    for size in args.sizes:
        content, style = example_pair(size)
        h, w = content.shape[:2]
        base = seed_seconds_per_step(model, size, args.steps)
        print(f"{w:>4}x{h:<4} {'seed (PyTorch, as written)':28} {base:8.3f} {1:7.2f}")
        for k in [1, *args.k]:
            t, flops = jaxart_seconds_per_step(params, content, style, args.steps, k)
            name = "jaxart, 1 step/call" if k == 1 else f"jaxart, {k} steps/call"
            print(
                f"{w:>4}x{h:<4} {name:28} {t:8.3f} {base / t:7.2f} {flops / 1e9:10.2f} "
                f"{flops / t / 1e9:8.1f} {100 * flops / t / 1e9 / peak:6.1f}%"
            )


if __name__ == "__main__":
    main()
