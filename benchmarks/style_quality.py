"""Style-transfer convergence: the wall time each optimiser needs to reach the loss the seed's Adam
loop reaches after 300 steps, at 128 px.

    python -m benchmarks.style_quality [--size 128] [--seed-steps 300] [--adam-budget 450]
                                       [--lbfgs-budget 100] [--pyramid 64] [--torch-threshold]

On the bundled examples with fixed random VGG19 weights (torchvision `vgg19()` after
`torch.manual_seed(0)`, converted). The threshold is the total loss (content + 100 * style) of
the seed's loop at its 300th step; by default it comes from jaxart's default configuration,
which reproduces that loop step for step (tests/test_style_seed.py), because the PyTorch loop
itself takes minutes here; `--torch-threshold` runs the PyTorch loop instead (and prints both).

Each method runs once to compile (every pyramid level), then is timed from the start of the
run (targets included) to the end of the first compiled call whose step, at the final level,
starts at or below the threshold. Pyramid runs start at `--pyramid` px and split their budget
equally across levels; coarse levels' losses are not compared (other sizes, other scales).
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import seed_style as seed
from benchmarks.common import EXAMPLES, example_pair, machine, random_vgg19
from jaxart import vgg
from jaxart.style import StyleConfig, pyramid
from jaxart.style.transfer import compute_targets, init_state, iterate, train_steps


def torch_threshold(state_dict, size: int, steps: int) -> float:
    """The seed's PyTorch loop: total loss at its `steps`-th step (before that step's update)."""
    losses = []
    model = seed.VGGnet(state_dict).eval()
    content, style = seed.load_pair(EXAMPLES / "content.png", EXAMPLES / "style.png", max_size=size)
    seed.stylize(model, content, style, num_step=steps, on_step=lambda _, c, s: losses.append(c + 100.0 * s))
    return losses[-1]


def compile_levels(content: np.ndarray, style: np.ndarray, params, config: StyleConfig) -> None:
    """Compiles `train_steps` (one step per call) at every pyramid level's shape."""
    for shape in pyramid.level_shapes(content.shape[:2], config):
        level_content = vgg.normalize(pyramid.resize(jnp.asarray(content), shape))
        level_style = vgg.normalize(pyramid.resize(jnp.asarray(style), shape))
        targets = compute_targets(params, level_content, level_style, config)
        jax.block_until_ready(train_steps(init_state(level_content, config), params, targets, config, 1))


def run(content, style, params, config: StyleConfig, threshold: float) -> tuple[float | None, int, float, float]:
    """(seconds to the threshold or None, steps done then, final-level loss then, seconds run)."""
    compile_levels(content, style, params, config)
    start = time.perf_counter()
    done, loss = 0, float("nan")
    for done, state, metrics in iterate(content, style, params, config):
        if state.image.shape[:2] != content.shape[:2]:
            continue
        loss = float(metrics["loss"][-1])
        if loss <= threshold:
            seconds = time.perf_counter() - start
            return seconds, done, loss, seconds
    return None, done, loss, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128, help="the content's longest side")
    parser.add_argument("--seed-steps", type=int, default=300, help="the seed's steps that set the threshold")
    parser.add_argument("--adam-budget", type=int, default=450, help="Adam steps at most (pyramid: all levels)")
    parser.add_argument("--lbfgs-budget", type=int, default=100, help="L-BFGS iterations at most (pyramid: all levels)")
    parser.add_argument("--pyramid", type=int, default=64, help="longest side of the pyramid's first level")
    parser.add_argument("--torch-threshold", action="store_true", help="take the threshold from the PyTorch loop")
    args = parser.parse_args()

    state_dict, params = random_vgg19()
    content, style = example_pair(args.size)
    print(machine())
    with open("/proc/loadavg") as f:
        print(f"load average at start: {' '.join(f.read().split()[:3])} (1, 5, 15 min)")

    # The seed's loop, in jaxart: its 300th step's loss is the threshold, reached by definition.
    seed_config = StyleConfig(max_size=args.size, steps=args.seed_steps)
    compile_levels(content, style, params, seed_config)
    start = time.perf_counter()
    losses = [float(m["loss"][0]) for _, _, m in iterate(content, style, params, seed_config)]
    seed_seconds = time.perf_counter() - start
    threshold = losses[-1]
    print(f"threshold: loss {threshold:.6g} at the seed's step {args.seed_steps} (jaxart's seed-identical loop)")
    if args.torch_threshold:
        reference = torch_threshold(state_dict, args.size, args.seed_steps)
        print(f"  the PyTorch seed loop: {reference:.6g} (relative difference {abs(reference / threshold - 1):.2e})")
        threshold = reference

    h, w = content.shape[:2]
    rows = [("Adam (seed settings)", args.seed_steps, seed_seconds, args.seed_steps, losses[-1], seed_seconds)]
    for name, options in [
        ("Adam + pyramid", dict(steps=args.adam_budget, pyramid=args.pyramid)),
        ("L-BFGS", dict(steps=args.lbfgs_budget, optimizer="lbfgs")),
        ("L-BFGS + pyramid", dict(steps=args.lbfgs_budget, optimizer="lbfgs", pyramid=args.pyramid)),
    ]:
        config = StyleConfig(max_size=args.size, **options)
        seconds, done, loss, ran = run(content, style, params, config, threshold)
        rows.append((name, config.steps, seconds, done, loss, ran))
        levels = " -> ".join(f"{x}x{y}" for y, x in pyramid.level_shapes((h, w), config))
        print(f"  {name}: levels {levels}, budget {config.steps} steps", flush=True)

    header = f"{'method':22} {'budget':>6} {'steps to threshold':>18} {'seconds to threshold':>21} {'loss then':>10}"
    print(f"\n{w}x{h}, threshold {threshold:.6g}; steps are Adam steps or L-BFGS iterations, counted over all levels")
    print(header)
    print("-" * len(header))
    for name, budget, seconds, done, loss, ran in rows:
        reached = f"{seconds:21.1f}" if seconds is not None else f"{'not reached in ' + format(ran, '.0f') + ' s':>21}"
        steps = f"{done:18d}" if seconds is not None else f"{'-':>18}"
        print(f"{name:22} {budget:6d} {steps} {reached} {loss:10.6g}")


if __name__ == "__main__":
    main()
