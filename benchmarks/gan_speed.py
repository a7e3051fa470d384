"""GAN training speed: the seed's PyTorch loop vs jaxart, side by side, at batch 32.

    python -m benchmarks.gan_speed [--data mnist] [--steps 2000] [--repeats 3]

Times each loop for --steps steps after a warm-up (compilation excluded), best
of --repeats, and prints steps/s, the ratio to the seed, the projected time of
the seed's 100-epoch job, and achieved GFLOP/s (XLA's count of one step's
floating-point operations) against a float32 matmul peak measured here.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import torch

from benchmarks.common import compiled_flops, matmul_peak_gflops
from benchmarks.seed_gan import BATCH, SeedGAN, mnist_as_written
from jaxart import data
from jaxart.gan import GANConfig, init_state, run_keys, train_step, train_steps
from jaxart.gan.train import step as gan_step

STEPS_PER_EPOCH = 60000 // BATCH
FULL_JOB_STEPS = 100 * STEPS_PER_EPOCH


def best_rate(run: Callable[[int], int], steps: int, warmup: int, repeats: int) -> float:
    """Best steps/s of `repeats` timings of run(steps) (which returns the steps it took), after run(warmup)."""
    run(warmup)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        done = run(steps)
        rates.append(done / (time.perf_counter() - start))
    return max(rates)


def with_torch_threads(run: Callable[[int], int], threads: int) -> Callable[[int], int]:
    """`run` with torch limited to `threads` threads (OpenMP's spin-waits suffer most on a busy machine)."""

    def limited(steps: int) -> int:
        default = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            return run(steps)
        finally:
            torch.set_num_threads(default)

    return limited


def jax_single(images: np.ndarray, config: GANConfig) -> Callable[[int], int]:
    """`train_step` once per step, batches gathered on the host as a DataLoader would."""
    keys = run_keys(config.seed)
    state = init_state(keys.init, config)
    order = np.asarray(jax.random.permutation(keys.data, len(images)))
    position = 0

    def run(steps: int) -> int:
        nonlocal state, position
        for _ in range(steps):
            if position + BATCH > len(order):
                position = 0
            state, metrics = train_step(state, images[order[position : position + BATCH]], keys.train)
            position += BATCH
        jax.block_until_ready(metrics)
        return steps

    return run


def jax_scan(images: np.ndarray, config: GANConfig, k: int) -> Callable[[int], int]:
    """`train_steps`: k steps per compiled call, the data set on the device."""
    keys = run_keys(config.seed)
    state = init_state(keys.init, config)
    device_images = jax.device_put(images)
    order = jax.random.permutation(keys.data, len(images))[: STEPS_PER_EPOCH * BATCH].astype(jnp.int32)
    start = 0

    def run(steps: int) -> int:
        nonlocal state, start
        calls = max(1, steps // k)
        for _ in range(calls):
            if start + k > STEPS_PER_EPOCH:
                start = 0
            state, metrics = train_steps(state, device_images, order, start, keys.train, length=k)
            start += k
        jax.block_until_ready(metrics)
        return calls * k

    return run


def step_flops(images: np.ndarray, config: GANConfig) -> float:
    """Floating-point operations of one step, as XLA counts them in the compiled step."""
    state = init_state(run_keys(0).init, config)
    return compiled_flops(jax.jit(gan_step), state, images[:BATCH], run_keys(0).train)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="mnist", help="'mnist', 'fashion-mnist' or a folder of IDX files")
    parser.add_argument("--steps", type=int, default=2000, help="timed steps per loop")
    parser.add_argument("--repeats", type=int, default=3, help="timings per loop; the best counts")
    parser.add_argument("--k", type=int, nargs="+", default=[50, 200], help="steps per call to time")
    args = parser.parse_args()

    dataset = data.load(args.data)
    images = dataset.images
    config = GANConfig()
    flops = step_flops(images, config)
    peak = matmul_peak_gflops()
    print(
        f"jax {jax.__version__} on {jax.devices()[0].platform}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads); {len(images)} images, batch {BATCH}, "
        f"{args.steps} timed steps, best of {args.repeats}"
    )
    print(f"one step: {flops / 1e6:.1f} MFLOP (XLA count); float32 matmul peak here: {peak:.1f} GFLOP/s\n")

    as_written = mnist_as_written(images, dataset.labels, tempfile.mkdtemp())
    loops = {
        "seed (PyTorch, as written)": SeedGAN(images, dataset=as_written).train,
        "seed, tensors preloaded": SeedGAN(images).train,
        "seed, preloaded, 1 torch thread": with_torch_threads(SeedGAN(images).train, 1),
        "jaxart train_step (1 step/call)": jax_single(images, config),
    }
    for k in args.k:
        loops[f"jaxart train_steps (K={k})"] = jax_scan(images, config, k)
    header = f"{'loop':34} {'steps/s':>9} {'x seed':>7} {'100 epochs':>11} {'GFLOP/s':>8} {'% peak':>7}"
    print(header)
    print("-" * len(header))
    seed_rate = None
    for name, run in loops.items():
        warmup = max(args.k) * 2 if "K=" in name else 100
        rate = best_rate(run, args.steps, warmup, args.repeats)
        seed_rate = seed_rate or rate
        gflops = rate * flops / 1e9
        print(
            f"{name:34} {rate:9.0f} {rate / seed_rate:7.2f} {FULL_JOB_STEPS / rate / 60:9.1f} m "
            f"{gflops:8.2f} {100 * gflops / peak:6.1f}%"
        )


if __name__ == "__main__":
    main()
