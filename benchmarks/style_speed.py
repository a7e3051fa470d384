"""Style-transfer speed: the seed's PyTorch loop vs jaxart's engine vs jaxart's command line, per
optimisation step; the command's cold and warm start; each step's memory.

    python -m benchmarks.style_speed [--sizes 400 128] [--steps 20] [--k 10] [--cli-steps 12]
        [--sections engine cli start memory] [--json PATH]

engine: the seed (on its GPU when there is one, synchronised before each clock read) and
  `train_steps` back to back, on the bundled examples with the same (randomly initialised,
  seeded) VGG19 weights: speed does not depend on the weights' values. Seconds per step, the
  ratio to the seed, and jaxart's achieved GFLOP/s (XLA's count of one compiled step) against
  a float32 matmul peak measured in the same run.
cli: `python -m jaxart.style` itself, per step from its own --metrics clock (the first compiled
  call, which compiles, left out), next to the engine at the same steps per call.
start: wall seconds of `python -m jaxart.style --steps 1 --weights random --max-size 128` with an
  empty compile cache (cold), then again with it filled (warm), and warm with --no-compile-cache.
memory: XLA's plan of one compiled step (`memory_analysis()`: arguments + outputs - donated +
  scratch) beside `jaxart.style.memory`'s estimate, which the command refuses sizes by; and on
  a GPU torch's `max_memory_allocated` for the seed.
--json PATH also writes each section's numbers there (seconds, MiB), as printed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax

from benchmarks import seed_style as seed
from benchmarks.common import (
    EXAMPLES,
    compiled_flops,
    example_pair,
    load_average,
    machine,
    matmul_peak_gflops,
    random_vgg19,
    seconds,
)
from jaxart import backend, vgg
from jaxart.style import StyleConfig, compute_targets, init_state, memory, sharding, train_steps
from jaxart.style.loop import compile_step
from jaxart.style.transfer import steps_per_call


def seed_seconds_per_step(model, size: int, steps: int) -> float:
    content, style = seed.load_pair(EXAMPLES / "content.png", EXAMPLES / "style.png", max_size=size)
    seed.stylize(model, content, style, num_step=2)  # warm-up: allocator, oneDNN/cuDNN primitives
    seed.synchronize()

    def run():
        seed.stylize(model, content, style, num_step=steps)
        seed.synchronize()

    return seconds(run) / steps


def jaxart_seconds_per_step(params, content, style, steps: int, k: int) -> tuple[float, float]:
    """(seconds per step with k steps per compiled call, XLA flops of one step).

    The flops are counted on the single-step program: XLA's cost analysis counts a loop
    body once, not once per iteration."""
    config = StyleConfig(steps_per_call=k)
    content_n, style_n = vgg.normalize(content), vgg.normalize(style)
    targets = compute_targets(params, content_n, style_n, config)
    state = init_state(content_n, config)
    flops = compiled_flops(train_steps, state, params, targets, program=config.program, num_steps=1)
    state, _ = train_steps(state, params, targets, config.program, k)  # compile
    jax.block_until_ready(state)
    calls = max(1, steps // k)

    def run():
        nonlocal state
        for _ in range(calls):
            state, metrics = train_steps(state, params, targets, config.program, k)
        jax.block_until_ready((state, metrics))

    return seconds(run) / (calls * k), flops


def style_command(argv: list[str], cache: Path, *, timeout: float = 1800) -> float:
    """Wall seconds of one `python -m jaxart.style` run with its own cache folder."""
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "jaxart.style", *argv],
        check=True,
        capture_output=True,
        timeout=timeout,
        env={**os.environ, "JAXART_CACHE": str(cache)},
    )
    return time.perf_counter() - start


def cli_seconds_per_step(size: int, steps: int, workdir: Path) -> float:
    """The command's own seconds per step, from its --metrics clock: from the end of its first
    compiled call (compilation included there) to the end of its last."""
    metrics = workdir / f"m{size}.jsonl"
    argv = ["--weights", "random", "--max-size", str(size), "--steps", str(steps)]
    style_command([*argv, "--output", str(workdir / f"o{size}.png"), "--metrics", str(metrics)], workdir / "cache")
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    # Steps of one call share its clock: the call ends are where the clock moves.
    ends = [
        (r["step"], r["seconds"])
        for r, after in zip(rows, rows[1:] + [None])
        if not after or after["seconds"] != r["seconds"]
    ]
    (first_step, first_t), (last_step, last_t) = ends[0], ends[-1]
    return (last_t - first_t) / (last_step - first_step)


def engine_section(args, model, params, peak, rows: list[dict]) -> dict[int, float]:
    header = f"{'size':>9} {'loop':28} {'s/step':>8} {'x seed':>7} {'GFLOP/step':>10} {'GFLOP/s':>8} {'% peak':>7}"
    print(header)
    print("-" * len(header))
    auto = steps_per_call(StyleConfig())
    engine = {}
    for size in args.sizes:
        content, style = example_pair(size)
        h, w = content.shape[:2]
        base = seed_seconds_per_step(model, size, args.steps)
        print(f"{w:>4}x{h:<4} {f'seed (PyTorch, {seed.device.type})':28} {base:8.3f} {1:7.2f}", flush=True)
        rows.append(dict(size=f"{w}x{h}", loop=f"seed (PyTorch, {seed.device.type})", s_per_step=base, x_seed=1.0))
        for k in sorted({1, auto, *args.k}):
            t, flops = jaxart_seconds_per_step(params, content, style, args.steps, k)
            if k == auto:
                engine[size] = t
            name = f"jaxart, {k} step{'s' if k > 1 else ''}/call{' (auto)' if k == auto else ''}"
            rows.append(
                dict(size=f"{w}x{h}", loop=name, s_per_step=t, x_seed=base / t, gflop_per_step=flops / 1e9)
                | dict(gflops=flops / t / 1e9, pct_peak=100 * flops / t / 1e9 / peak)
            )
            print(
                f"{w:>4}x{h:<4} {name:28} {t:8.3f} {base / t:7.2f} {flops / 1e9:10.2f} "
                f"{flops / t / 1e9:8.1f} {100 * flops / t / 1e9 / peak:6.1f}%",
                flush=True,
            )
    return engine


def cli_section(args, params, engine: dict[int, float], rows: list[dict]) -> None:
    print(f"\ncommand line vs engine (--steps-per-call auto = {steps_per_call(StyleConfig())} here), s/step:")
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            if size not in engine:
                content, style = example_pair(size)
                engine[size] = jaxart_seconds_per_step(
                    params, content, style, args.steps, steps_per_call(StyleConfig())
                )[0]
            command = cli_seconds_per_step(size, args.cli_steps, Path(tmp))
            ratio = command / engine[size]
            rows.append(dict(size=size, command_s_per_step=command, engine_s_per_step=engine[size], ratio=ratio))
            print(
                f"  {size:>4} px: command {command:.3f}, engine {engine[size]:.3f}: {ratio:.2f}x",
                flush=True,
            )


def start_section() -> dict[str, float]:
    argv = ["--steps", "1", "--weights", "random", "--max-size", "128"]
    with tempfile.TemporaryDirectory() as tmp:
        out = ["--output", str(Path(tmp) / "o.png")]
        cold = style_command([*argv, *out], Path(tmp) / "cache")
        warm = style_command([*argv, *out], Path(tmp) / "cache")
        off = style_command([*argv, *out, "--no-compile-cache"], Path(tmp) / "cache")
        files = list((Path(tmp) / "cache" / "xla").iterdir())
    print(f"\n`python -m jaxart.style {' '.join(argv)}`, wall seconds:")
    print(f"  cold (empty compile cache) {cold:.1f}; warm (cache filled: {len(files)} programs) {warm:.1f}; ")
    print(f"  warm caches but --no-compile-cache {off:.1f}")
    return dict(cold_s=cold, warm_s=warm, no_compile_cache_s=off)


def memory_section(args, params, model, rows: list[dict]) -> None:
    print("\nmemory of one step, MiB: XLA's plan (memory_analysis) | jaxart.style.memory's estimate")
    for size in args.sizes:
        content, _ = example_pair(size)
        shape = content.shape[:2]
        for config in (StyleConfig(), StyleConfig(remat=True)):
            plan = sharding.planned_bytes(compile_step(shape, config))
            estimate = memory.estimate_bytes(shape, config, params)
            name = "remat" if config.remat else "plain"
            rows.append(
                dict(size=f"{shape[1]}x{shape[0]}", step=name, plan_mib=plan / 2**20, estimate_mib=estimate / 2**20)
            )
            print(
                f"  {shape[1]}x{shape[0]} {name}: {plan / 2**20:7.0f} | {estimate / 2**20:7.0f} ({estimate / plan:.2f}x)"
            )
    if seed.device.type == "cuda":
        import torch

        for size in args.sizes:
            torch.cuda.reset_peak_memory_stats()
            content, style = seed.load_pair(EXAMPLES / "content.png", EXAMPLES / "style.png", max_size=size)
            seed.stylize(model, content, style, num_step=2)
            seed.synchronize()
            peak_mib = torch.cuda.max_memory_allocated() / 2**20
            rows.append(dict(size=size, step="seed", torch_max_allocated_mib=peak_mib))
            print(f"  seed at {size} px: torch max_memory_allocated {peak_mib:.0f} MiB")


def main() -> None:
    backend.set_xla_flags()  # as the commands run, before the backend starts
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[400, 128], help="content's longest side")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per loop and size")
    parser.add_argument("--k", type=int, nargs="*", default=[10], help="steps per compiled call to time too")
    parser.add_argument("--cli-steps", type=int, default=12, help="steps of each command-line run")
    parser.add_argument(
        "--sections",
        nargs="+",
        default=["engine", "cli", "start", "memory"],
        choices=["engine", "cli", "start", "memory"],
    )
    parser.add_argument("--json", type=Path, help="also write the results here as JSON")
    args = parser.parse_args()

    state_dict, params = random_vgg19()
    params = jax.device_put(params)
    model = seed.VGGnet(state_dict).to(seed.device).eval()
    results: dict = dict(machine=machine(), steps=args.steps, engine=[], command_vs_engine=[], memory=[])
    print(results["machine"])
    print(f"{load_average()} at the start")

    def save() -> None:  # after each section, so a run stopped part-way still leaves its numbers
        if args.json:
            args.json.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")

    engine: dict[int, float] = {}
    if "engine" in args.sections:
        peak = results["matmul_peak_gflops"] = matmul_peak_gflops()
        print(f"float32 matmul peak here: {peak:.1f} GFLOP/s; {args.steps} timed steps per loop\n")
        engine = engine_section(args, model, params, peak, results["engine"])
        save()
    if "cli" in args.sections:
        cli_section(args, params, engine, results["command_vs_engine"])
        save()
    if "start" in args.sections:
        results["start"] = start_section()
        save()
    if "memory" in args.sections:
        memory_section(args, params, model, results["memory"])
        save()
    print(f"{load_average()} at the end")


if __name__ == "__main__":
    main()
