"""Style-transfer speed: the seed's PyTorch loop vs jaxart, side by side, per optimisation step.

    python -m benchmarks.style_speed [--sizes 400 128] [--steps 20] [--k 10]

Both run on the bundled examples with the same (randomly initialised, seeded) VGG19
weights: speed does not depend on the weights' values. Prints seconds per step, the
ratio to the seed, and jaxart's achieved GFLOP/s (XLA's count of one compiled step)
against a float32 matmul peak measured in the same run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax
import torch
import torchvision

from benchmarks import seed_style as seed
from benchmarks.common import compiled_flops, machine, matmul_peak_gflops, seconds
from jaxart import images, vgg, weights
from jaxart.style import StyleConfig
from jaxart.style.transfer import compute_targets, init_state, train_steps

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def seed_seconds_per_step(model, size: int, steps: int) -> float:
    content, style = seed.load_pair(EXAMPLES / "content.png", EXAMPLES / "style.png", max_size=size)
    seed.stylize(model, content, style, num_step=2)  # warm-up: allocator, oneDNN primitives
    return seconds(lambda: seed.stylize(model, content, style, num_step=steps)) / steps


def jaxart_seconds_per_step(params, size: int, steps: int, k: int) -> tuple[float, float]:
    """(seconds per step with k steps per compiled call, XLA flops of one step).

    The flops are counted on the single-step program: XLA's cost analysis counts a loop
    body once, not once per iteration."""
    config = StyleConfig(steps_per_call=k)
    content = images.load_image(EXAMPLES / "content.png", max_size=size)
    style = images.load_image(EXAMPLES / "style.png", shape=content.shape[:2])
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

    torch.manual_seed(0)
    state_dict = torchvision.models.vgg19().state_dict()
    model = seed.VGGnet(state_dict).eval()
    params = weights.convert_state_dict(state_dict)
    peak = matmul_peak_gflops()
    print(machine())
    print(f"float32 matmul peak here: {peak:.1f} GFLOP/s; {args.steps} timed steps per loop\n")
    header = f"{'size':>9} {'loop':28} {'s/step':>8} {'x seed':>7} {'GFLOP/step':>10} {'GFLOP/s':>8} {'% peak':>7}"
    print(header)
    print("-" * len(header))
    for size in args.sizes:
        h, w = images.load_image(EXAMPLES / "content.png", max_size=size).shape[:2]
        base = seed_seconds_per_step(model, size, args.steps)
        print(f"{w:>4}x{h:<4} {'seed (PyTorch, as written)':28} {base:8.3f} {1:7.2f}")
        for k in [1, *args.k]:
            t, flops = jaxart_seconds_per_step(params, size, args.steps, k)
            name = "jaxart, 1 step/call" if k == 1 else f"jaxart, {k} steps/call"
            print(f"{w:>4}x{h:<4} {name:28} {t:8.3f} {base / t:7.2f} {flops / 1e9:10.2f} "
                  f"{flops / t / 1e9:8.1f} {100 * flops / t / 1e9 / peak:6.1f}%")


if __name__ == "__main__":
    main()
