"""GAN training speed: the seed's PyTorch loop vs jaxart, side by side, at batch 32; and the
command's own speed and start times.

    python -m benchmarks.gan_speed [--data mnist] [--steps 2000] [--repeats 3] [--cli-steps 3000] [--json PATH]

1. Loops, timed in turns (round-robin, so a busy machine slows them alike) for --steps steps
   after a warm-up (compilation excluded): steps/s (best and median of --repeats), the ratio to
   the seed as written, the seed's 100-epoch job projected, and GFLOP/s (XLA's count of one
   step) against a float32 matmul peak measured here. "plain jit step" is issue 11's reference:
   the same step with the indices drawn inside it and no metrics. "the step's products alone"
   is a ceiling, not a loop: the matrix products XLA's compiled step runs (read from its HLO),
   each as a plain row-major product, and nothing else: no step can go faster here than its
   products do (on CPU only: elsewhere XLA calls its products from libraries the HLO hides).
2. `python -m jaxart.gan train --max-steps N`: the training time it records in metrics.jsonl
   (start-up excluded), as steps/s beside the engine's; and in turns with `--no-tensorboard`,
   what writing TensorBoard's event files costs.
3. Start times of `python -m jaxart.gan train --max-steps 1`: cold (an empty compile cache) and
   warm (the cache filled by the previous run), --repeats each, wall clock of the process and
   its CPU seconds (user + system): on a busy machine the wall clock measures the share of the
   CPU a process got, which varies between runs; the CPU seconds measure its work.
The load average is printed with each part: on a shared machine, compare ratios, not rates.
--json PATH also writes each part's numbers there, as printed.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import torch

from benchmarks.common import (
    compiled_dots,
    compiled_flops,
    dots_alone,
    load_average,
    machine,
    matmul_peak_gflops,
)
from benchmarks.seed_gan import BATCH, SeedGAN, mnist_as_written
from jaxart import backend, data
from jaxart.files import read_json_lines
from jaxart.gan import GANConfig, init_state, run_keys, train_step, train_steps
from jaxart.gan.train import step as gan_step

STEPS_PER_EPOCH = 60000 // BATCH
FULL_JOB_STEPS = 100 * STEPS_PER_EPOCH
ROOT = Path(__file__).resolve().parent.parent
BOUND = "ceiling: the step's products alone"


def rates(loops: dict[str, Callable[[int], int]], steps: int, repeats: int) -> dict[str, list[float]]:
    """steps/s of each loop, `repeats` times, the loops taking turns."""
    result: dict[str, list[float]] = {name: [] for name in loops}
    for _ in range(repeats):
        for name, run in loops.items():
            start = time.perf_counter()
            done = run(steps)
            result[name].append(done / (time.perf_counter() - start))
    return result


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


def jax_host_batches(images: np.ndarray, config: GANConfig) -> Callable[[int], int]:
    """`train_step` once per step, batches gathered on the host as a DataLoader would."""
    keys = run_keys(config.seed)
    state = [init_state(keys.init, config)]
    order = np.asarray(jax.random.permutation(keys.data, len(images)))

    def run(steps: int) -> int:
        for i in range(steps):
            position = (i * BATCH) % (STEPS_PER_EPOCH * BATCH)
            state[0], metrics = train_step(state[0], images[order[position : position + BATCH]], keys.train)
        jax.block_until_ready(state[0])
        return steps

    return run


def jax_train_steps(images: np.ndarray, config: GANConfig, k: int) -> Callable[[int], int]:
    """`train_steps` as the command calls it: k steps per compiled call, the data set on the device."""
    keys = run_keys(config.seed)
    state = [init_state(keys.init, config), 0]
    device_images = jax.device_put(images)
    order = jax.random.permutation(keys.data, len(images))[: STEPS_PER_EPOCH * BATCH].astype(jnp.int32)

    def run(steps: int) -> int:
        calls = max(1, steps // k)
        for _ in range(calls):
            if state[1] + k > STEPS_PER_EPOCH:
                state[1] = 0
            state[0], metrics = train_steps(state[0], device_images, order, state[1], keys.train, length=k)
            state[1] += k
        jax.block_until_ready(state[0])
        return calls * k

    return run


@functools.partial(jax.jit, donate_argnums=0)
def _plain_step(state, images, key):
    indices = jax.random.randint(jax.random.fold_in(key, state.step), (BATCH,), 0, images.shape[0])
    return gan_step(state, images[indices], key)[0]


def jax_plain(images: np.ndarray, config: GANConfig) -> Callable[[int], int]:
    """Issue 11's reference: one jitted step a call, indices drawn in it, no metrics out."""
    keys = run_keys(config.seed)
    state = [init_state(keys.init, config)]
    device_images = jax.device_put(images)

    def run(steps: int) -> int:
        for _ in range(steps):
            state[0] = _plain_step(state[0], device_images, keys.train)
        jax.block_until_ready(state[0])
        return steps

    return run


def cli_rate(data_source: str, steps: int, env: dict[str, str], *flags: str) -> float:
    """steps/s of `python -m jaxart.gan train`, from the training time it records (no start-up)."""
    with tempfile.TemporaryDirectory() as workdir:
        subprocess.run(
            [sys.executable, "-m", "jaxart.gan", "train", "--workdir", workdir, "--data", data_source]
            + ["--max-steps", str(steps), "--checkpoint-every", str(steps), *flags],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
        )
        return steps / read_json_lines(Path(workdir) / "metrics.jsonl")[-1]["seconds"]


def cpu_seconds() -> float:
    """User and system CPU seconds of this process's children that have ended."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def start_seconds(data_source: str, env: dict[str, str]) -> tuple[float, float]:
    """Wall clock and CPU seconds of `python -m jaxart.gan train --max-steps 1` into a fresh workdir."""
    with tempfile.TemporaryDirectory() as workdir:
        start, cpu = time.perf_counter(), cpu_seconds()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "jaxart.gan",
                "train",
                "--workdir",
                workdir,
                "--data",
                data_source,
                "--max-steps",
                "1",
            ],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
        )
        return time.perf_counter() - start, cpu_seconds() - cpu


def command_rates(args: argparse.Namespace, scratch: Path, engine: float | None) -> dict[str, float]:
    """Part 2: the command's steps/s, with TensorBoard's event files and without, in turns."""
    env = {**os.environ, "JAXART_CACHE": str(scratch / "cache")}
    with_events, without = [], []
    for _ in range(args.repeats):
        with_events.append(cli_rate(args.data, args.cli_steps, env))
        without.append(cli_rate(args.data, args.cli_steps, env, "--no-tensorboard"))
    print(f"\n`train --max-steps {args.cli_steps}` (training time it records): {summary(with_events, 'steps/s')}; ")
    print(f"  --no-tensorboard: {summary(without, 'steps/s')}; ")
    result = dict(steps_s=statistics.median(with_events), no_tensorboard_steps_s=statistics.median(without))
    result["tensorboard_ratio"] = result["steps_s"] / result["no_tensorboard_steps_s"]
    print(f"  with / without TensorBoard (medians): {result['tensorboard_ratio']:.3f}")
    if engine is not None:
        result["command_vs_engine"] = result["steps_s"] / engine
        print(f"  command / engine (K={min(args.k)}, medians): {result['command_vs_engine']:.2f}; {load_average()}")
    return result


def summary(values: list[float], unit: str) -> str:
    return (
        f"best {min(values) if unit == 's' else max(values):.1f} {unit}, median {statistics.median(values):.1f} {unit}"
    )


def main() -> None:
    backend.set_xla_flags()  # as the commands run, before the backend starts
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="mnist", help="'mnist', 'fashion-mnist' or a folder of IDX files")
    parser.add_argument("--steps", type=int, default=2000, help="timed steps per loop and turn")
    parser.add_argument("--repeats", type=int, default=3, help="turns per loop (and start-ups per kind)")
    parser.add_argument("--k", type=int, nargs="+", default=[1, 50], help="steps per call to time")
    parser.add_argument("--cli-steps", type=int, default=3000, help="steps of the timed command (0: skip)")
    parser.add_argument("--only-command", action="store_true", help="part 2 alone, without the engine's ratio")
    parser.add_argument("--json", type=Path, help="also write the results here as JSON")
    args = parser.parse_args()
    # Every folder the benchmark writes (the seed's data set, compile caches) goes, at the end.
    with tempfile.TemporaryDirectory(prefix="jaxart-bench-") as scratch:
        run_all(args, Path(scratch))


def run_all(args: argparse.Namespace, scratch: Path) -> None:
    dataset = data.load(args.data)
    images = dataset.images
    config = GANConfig()
    state = init_state(run_keys(0).init, config)
    flops = compiled_flops(jax.jit(gan_step), state, images[:BATCH], run_keys(0).train)
    # On CPU only: a GPU's compiled step calls its products from a library, unseen in the HLO.
    on_cpu = jax.default_backend() == "cpu"
    products = compiled_dots(jax.jit(gan_step), state, images[:BATCH], run_keys(0).train) if on_cpu else []
    peak = matmul_peak_gflops()
    results: dict = dict(machine=machine(), steps=args.steps, repeats=args.repeats, mflop_per_step=flops / 1e6)
    results["matmul_peak_gflops"] = peak

    def save() -> None:  # after each part, so a run stopped part-way still leaves its numbers
        if args.json:
            args.json.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")

    print(results["machine"])
    if args.only_command:
        print(load_average(), "(before)")
        results["command"] = command_rates(args, scratch, None)
        save()
        return
    print(f"{len(images)} images, batch {BATCH}, {args.steps} timed steps a turn, {args.repeats} turns")
    print(f"one step: {flops / 1e6:.1f} MFLOP (XLA count); float32 matmul peak here: {peak:.1f} GFLOP/s")
    if products:
        product_flops = sum(2 * m * k * n for m, k, n in products)
        print(
            f"its {len(products)} matrix products: {product_flops / 1e6:.1f} MFLOP (the ceiling's GFLOP/s count the step's)"
        )
    print()

    as_written = mnist_as_written(images, dataset.labels, scratch / "seed-data")
    loops = {
        "seed (PyTorch, as written)": SeedGAN(images, dataset=as_written).train,
        "seed, tensors preloaded": SeedGAN(images).train,
        "seed, preloaded, 1 torch thread": with_torch_threads(SeedGAN(images).train, 1),
        "jaxart train_step, host batches": jax_host_batches(images, config),
        "plain jit step (issue 11)": jax_plain(images, config),
    }
    for k in args.k:
        loops[f"jaxart train_steps (K={k})"] = jax_train_steps(images, config, k)
    if products:
        loops[BOUND] = dots_alone(products)
    for run in loops.values():
        run(max(args.k) * 2)  # compile and warm up
    print(load_average(), "(before)")
    rows = rates(loops, args.steps, args.repeats)
    print(load_average(), "(after)\n")
    header = f"{'loop':34} {'best/s':>7} {'median':>7} {'x seed':>7} {'100 epochs':>11} {'GFLOP/s':>8} {'% peak':>7}"
    print(header)
    print("-" * len(header))
    seed_rate = statistics.median(rows["seed (PyTorch, as written)"])
    results["loops"] = []
    for name, values in rows.items():
        median = statistics.median(values)
        gflops = median * flops / 1e9
        results["loops"].append(
            dict(loop=name, best_steps_s=max(values), median_steps_s=median, x_seed=median / seed_rate)
            | dict(full_job_minutes=FULL_JOB_STEPS / median / 60, gflops=gflops, pct_peak=100 * gflops / peak)
        )
        print(
            f"{name:34} {max(values):7.0f} {median:7.0f} {median / seed_rate:7.2f} "
            f"{FULL_JOB_STEPS / median / 60:9.1f} m {gflops:8.2f} {100 * gflops / peak:6.1f}%"
        )

    save()
    if args.cli_steps:
        results["command"] = command_rates(
            args, scratch, statistics.median(rows[f"jaxart train_steps (K={min(args.k)})"])
        )
        save()

        cold, warm = [], []
        for turn in range(args.repeats):
            fresh = {**os.environ, "JAXART_CACHE": str(scratch / f"cold-{turn}")}
            cold.append(start_seconds(args.data, fresh))
            warm.append(start_seconds(args.data, fresh))  # the cache the cold run filled
        (cold_wall, cold_cpu), (warm_wall, warm_cpu) = zip(*cold), zip(*warm)
        print(f"\n`train --max-steps 1`, wall clock: cold (empty compile cache) {summary(list(cold_wall), 's')}; ")
        print(f"  warm (filled) {summary(list(warm_wall), 's')}; {load_average()}")
        print(
            f"  CPU seconds (user + system): cold {summary(list(cold_cpu), 's')}; warm {summary(list(warm_cpu), 's')}"
        )
        results["start"] = dict(cold_s=statistics.median(cold_wall), warm_s=statistics.median(warm_wall))
        results["start"] |= dict(cold_cpu_s=statistics.median(cold_cpu), warm_cpu_s=statistics.median(warm_cpu))
        save()


if __name__ == "__main__":
    main()
