"""Style transfer at scale: remat's memory and time, batched throughput, bfloat16's error;
over several devices: pairs/s, memory per device of one image split by rows, the largest image
per memory budget.

    python -m benchmarks.style_scale [--budgets 2 8] [--remat-size 256] [--pairs 4] [--size 128] [--steps 20]
        [--sections memory remat batch bfloat16 devices]

The `devices` section forces 4 CPU devices (XLA_FLAGS=--xla_force_host_platform_device_count=4,
set before JAX starts unless XLA_FLAGS is already set); on a machine with accelerators it uses
those it finds.

Random (seeded) VGG19 weights and random pictures: memory, speed and float error do not
depend on what the weights mean. Memory is XLA's own account of one compiled `train_steps`
call (arguments + outputs - donated aliases + scratch), read from `compiled.memory_analysis()`
without running it, so the largest size within a budget is found by bisection on compiles.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import load_average, machine, seconds
from jaxart import backend, vgg
from jaxart.distributed import cpu_threads_env
from jaxart.style import (
    StyleConfig,
    compute_targets,
    init_state,
    make_mesh,
    sharding,
    stylize,
    stylize_batch,
    train_steps,
)
from jaxart.style.loop import compile_step

GIB = 2**30


@functools.cache
def xla_plan_bytes(size: int, remat: bool) -> int:
    """Peak memory XLA plans for one step on a size x size image (compiled, not run)."""
    return sharding.planned_bytes(compile_step((size, size), StyleConfig(remat=remat)))


def largest_size(budget: int, remat: bool, lo: int = 64, hi: int = 8192, step: int = 32) -> int:
    """The largest square side (a multiple of `step`) whose step fits in `budget` bytes."""
    while hi - lo > step:
        mid = (lo + hi) // 2 // step * step
        lo, hi = (mid, hi) if xla_plan_bytes(mid, remat) <= budget else (lo, mid)
    return lo


def seconds_per_step(size: int, config: StyleConfig, steps: int, rng: np.random.Generator) -> float:
    params = vgg.init_params(jax.random.key(0))
    content, style = (vgg.normalize(jnp.asarray(rng.random((size, size, 3), np.float32))) for _ in range(2))
    targets = compute_targets(params, content, style, config)
    state = init_state(content, config)
    state, _ = train_steps(state, params, targets, config.program, 1)  # compile
    jax.block_until_ready(state)

    def run():
        nonlocal state
        for _ in range(steps):
            state, metrics = train_steps(state, params, targets, config.program, 1)
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


def pairs_per_second(devices: int, pairs: int, size: int, steps: int, rng: np.random.Generator) -> float:
    """pairs * steps per second of `stylize_batch` with its pairs split over `devices`, compiled first."""
    params = vgg.init_params(jax.random.key(0))
    contents, styles = (rng.random((pairs, size, size, 3), np.float32) for _ in range(2))
    config, mesh = StyleConfig(steps=steps), make_mesh(pairs=devices)
    stylize_batch(contents, list(styles), params, config, mesh=mesh)  # compile
    return pairs * steps / seconds(lambda: stylize_batch(contents, list(styles), params, config, mesh=mesh))


def rows_seconds_per_step(devices: int, size: int, steps: int, rng: np.random.Generator) -> float:
    params = vgg.init_params(jax.random.key(0))
    content, style = (rng.random((size, size, 3), np.float32) for _ in range(2))
    config, mesh = StyleConfig(steps=steps), make_mesh(rows=devices)
    stylize(content, style, params, config, mesh=mesh)  # compile
    return seconds(lambda: stylize(content, style, params, config, mesh=mesh)) / steps


CONFIGS = {
    "float32": StyleConfig(),
    "remat": StyleConfig(remat=True),
    "remat+bf16": StyleConfig(remat=True, dtype="bfloat16"),
}


def largest_side(
    budget: int, config: StyleConfig, mesh, measured: dict[int, int], multiple: int = 64
) -> tuple[int, int]:
    """The largest square side (a multiple of `multiple`) whose step fits `budget` bytes per device:
    predicted from the measured {side: bytes} (linear in pixels), then checked by compiling at
    the prediction and stepping to the largest that fits. Returns (side, its bytes)."""
    (s1, b1), (s2, b2) = sorted(measured.items())[-2:]
    per_pixel = (b2 - b1) / (s2**2 - s1**2)
    side = int(((budget - (b2 - per_pixel * s2**2)) / per_pixel) ** 0.5) // multiple * multiple
    fits = {}
    while side > multiple:
        fits[side] = sharding.planned_bytes(compile_step((side, side), config, mesh))
        if fits[side] > budget:
            side -= multiple
        elif side + multiple in fits:
            return side, fits[side]
        else:
            side += multiple  # the prediction fits: make sure the next size up does not
    return 0, 0


def devices_section(args: argparse.Namespace, rng: np.random.Generator) -> None:
    counts = [n for n in (1, 2, 4) if n <= len(jax.devices())]
    meshes = {n: make_mesh(rows=n) for n in (1, counts[-1])}
    print("\nMemory per device of one step, one image split by rows (XLA's plan), MiB")
    print(f"{'side':>6} " + " ".join(f"{f'{name} x{n}':>16}" for name in CONFIGS for n in meshes))
    measured = {(name, n): {} for name in CONFIGS for n in meshes}
    for size in args.split_sizes:
        for (name, n), table in measured.items():
            table[size] = sharding.planned_bytes(compile_step((size, size), CONFIGS[name], meshes[n]))
        print(f"{size:>6} " + " ".join(f"{measured[key][size] / 2**20:16.0f}" for key in measured), flush=True)
    print(f"\n{'budget':>7} " + " ".join(f"{f'{name} x{n}':>16}" for name in CONFIGS for n in meshes))
    print("        (largest square side per device budget; its plan in MiB)")
    for budget in args.budgets:
        cells = []
        for (name, n), table in measured.items():
            side, need = largest_side(int(budget * GIB), CONFIGS[name], meshes[n], table)
            cells.append(f"{side:>6} ({need / 2**20:5.0f})")
        print(f"{budget:>5g} G " + " ".join(f"{c:>16}" for c in cells), flush=True)
    print(f"\nPairs over devices: {args.pairs * 2} pairs x {args.steps} steps at {args.size}px, pairs*steps/s")
    for n in counts:
        print(f"  {n} device(s) {pairs_per_second(n, args.pairs * 2, args.size, args.steps, rng):7.2f}", flush=True)
    print(f"\nOne image split by rows, {args.remat_size}px, seconds/step:")
    for n in (1, counts[-1]):
        print(f"  {n} device(s) {rows_seconds_per_step(n, args.remat_size, 3, rng):7.3f}", flush=True)


def frames_section(args: argparse.Namespace) -> None:
    """Flicker with and without warm start on a slow pan across the example picture, with the
    original (Caffe) VGG19: a picture that means something, so the flicker means something."""
    import tempfile

    from PIL import Image

    from jaxart import weights
    from jaxart.style import driver, folders

    params = weights.load(weights.CAFFE)
    config = StyleConfig(steps=args.frame_steps, max_size=args.size, lr=args.frame_lr, **weights.style_defaults(params))
    picture = Image.open(driver.EXAMPLE_CONTENT).convert("RGB")
    side = picture.height
    print(
        f"\nVideo: {args.frames} frames panning {args.pan} px a frame across examples/content.png "
        f"({side}x{side} crops at {args.size}px), caffe VGG19, {args.frame_steps} steps a frame at lr {args.frame_lr}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "in").mkdir()
        for k in range(args.frames):
            picture.crop((args.pan * k, 0, args.pan * k + side, side)).save(tmp / "in" / f"frame_{k:03d}.png")
        files = folders.list_frames(tmp / "in")
        for warm in (False, True):
            line = folders.run_frames(
                files, [str(driver.EXAMPLE_STYLE)], params, config, tmp / f"{warm}.png", None, warm
            )
            print(f"  {line.split('; wrote')[0]}")


SECTIONS = ("memory", "remat", "batch", "bfloat16", "devices", "frames")


def main() -> None:
    backend.set_xla_flags()  # as the commands run, before the backend starts
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", type=float, nargs="+", default=[2, 8], help="memory budgets, GiB")
    parser.add_argument("--remat-size", type=int, default=256, help="side at which to time remat")
    parser.add_argument("--pairs", type=int, default=4, help="pairs in the throughput comparison")
    parser.add_argument("--size", type=int, default=128, help="side of the throughput and bfloat16 runs")
    parser.add_argument("--steps", type=int, default=20, help="steps of the throughput and bfloat16 runs")
    parser.add_argument(
        "--split-sizes", type=int, nargs=2, default=[512, 1024], help="sides of the per-device memory table"
    )
    parser.add_argument("--frames", type=int, default=8, help="frames of the flicker video")
    parser.add_argument("--pan", type=int, default=4, help="pixels the video's window moves a frame")
    parser.add_argument("--frame-steps", type=int, default=200, help="steps a frame")
    parser.add_argument("--frame-lr", type=float, default=0.003, help="Adam's learning rate for the frames")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="what to run")
    args = parser.parse_args()
    if "devices" in args.sections:
        # Before JAX's backend starts (it starts lazily, on the first device query).
        os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
        os.environ.update(cpu_threads_env(os.environ))
    rng = np.random.default_rng(0)
    print(machine(), f"({len(jax.devices())} devices); {load_average()}\n")

    if "memory" in args.sections:
        print("Memory of one compiled step (XLA's plan), MiB")
        print(f"{'side':>6} {'no remat':>9} {'remat':>9} {'saved':>6}")
        for size in (256, 512, 1024):
            plain, remat = xla_plan_bytes(size, False), xla_plan_bytes(size, True)
            print(f"{size:>6} {plain / 2**20:9.0f} {remat / 2**20:9.0f} {1 - remat / plain:6.0%}")
        print(f"\n{'budget':>7} {'largest side, no remat':>23} {'with remat':>11} {'pixels x':>9}")
        for budget in args.budgets:
            plain, remat = largest_size(int(budget * GIB), False), largest_size(int(budget * GIB), True)
            print(f"{budget:>5g} G {plain:>23} {remat:>11} {(remat / plain) ** 2:9.2f}")

    if "remat" in args.sections:
        plain = seconds_per_step(args.remat_size, StyleConfig(), 5, rng)
        remat = seconds_per_step(args.remat_size, StyleConfig(remat=True), 5, rng)
        print(f"\nseconds/step at {args.remat_size}px: no remat {plain:.3f}, remat {remat:.3f} ({remat / plain:.2f}x)")

    params = vgg.init_params(jax.random.key(0))
    contents, styles = (rng.random((args.pairs, args.size, args.size, 3), np.float32) for _ in range(2))
    config = StyleConfig(steps=args.steps, steps_per_call=args.steps)
    if "batch" in args.sections:
        one_by_one = lambda: [stylize(c, s, params, config) for c, s in zip(contents, styles)]  # noqa: E731
        batched = lambda: stylize_batch(contents, list(styles), params, config)  # noqa: E731
        one_by_one(), batched()  # compile both
        work = args.pairs * args.steps
        t_one, t_batch = seconds(one_by_one), seconds(batched)
        print(f"\n{args.pairs} pairs x {args.steps} steps at {args.size}px (compilation excluded), pairs*steps/s:")
        print(f"  one by one (stylize)   {work / t_one:7.1f}  ({t_one:.2f} s)")
        print(f"  batched (stylize_batch){work / t_batch:7.1f}  ({t_batch:.2f} s, {t_one / t_batch:.2f}x)")

    if "bfloat16" in args.sections:
        print(f"\nbfloat16 vs float32 convolutions, {args.size}px, {args.steps} steps (Gram matrices, losses float32):")
        bfloat16_errors(contents[0], styles[0], params, config)

    if "devices" in args.sections:
        devices_section(args, rng)
    if "frames" in args.sections:
        frames_section(args)
    print(f"\n{load_average()} at the end")


if __name__ == "__main__":
    main()
