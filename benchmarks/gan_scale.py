"""GAN at scale: steps/s over forced CPU devices, and total GAN-steps/s of many runs in one program.

    python -m benchmarks.gan_scale [--devices 1 2 4] [--runs 1 4 16] [--steps 1000] [--repeats 3] [--json PATH]
    python -m benchmarks.gan_scale --equivalence [--data tests/fixtures/mnist-small]

Each device count runs in its own process (XLA_FLAGS=--xla_force_host_platform_device_count=N
must be set before JAX starts). Timed: `--steps` steps of the seed's MLP GAN (batch 32, 50
steps per compiled call) through `jaxart.gan.parallel`, the host assembling each call's
batches as the training loop does, after a warm-up call; best of --repeats. The first row is
`train_steps` on one device (batches gathered on the device) for reference. The runs rows
put R vmapped runs on one device (and, with 4 devices, a runs axis of 4); "GAN-steps/s" counts
every run's steps, the number that matters for a sweep. --json PATH also writes the rows there.

--equivalence instead prints, with 4 forced devices, the largest relative difference of any
step's d_loss or g_loss over the first 50 steps between each layout and `train_steps` on one
device (for runs: each run against the single run of its seed).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import load_average
from jaxart import backend
from jaxart.distributed import host_devices_env

RESULT = "RESULT "


def child(devices: int, runs_list: list[int], steps: int, repeats: int, per_call: int, source: str) -> None:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxart import data
    from jaxart.gan import GANConfig, parallel
    from jaxart.gan.train import epoch_order, init_state, run_keys, train_steps

    images = data.load(source).images
    config = GANConfig()
    batch = config.batch_size
    per_epoch = len(images) // batch
    calls = steps // per_call

    def best(run) -> float:
        run(1)  # compile and warm up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            run(calls)
            times.append(time.perf_counter() - start)
        return min(times)

    def report(what: str, devices_used: int, runs: int, seconds: float) -> None:
        rate = calls * per_call / seconds
        row = dict(what=what, devices=devices_used, runs=runs, steps_s=rate, gan_steps_s=rate * runs)
        print(RESULT + json.dumps(row | dict(samples_s=rate * runs * batch)), flush=True)

    if devices == 1:
        keys = run_keys(0)
        order = jnp.asarray(epoch_order(keys.data, 0, len(images), per_epoch, batch))
        device_images = jax.device_put(images)
        state = [init_state(keys.init, config)]

        def reference(n: int) -> None:
            for i in range(n):
                state[0], metrics = train_steps(state[0], device_images, order, i * per_call, keys.train, per_call)
            jax.block_until_ready(metrics)

        report("train_steps, data on the device", 1, 1, best(reference))

    layouts = [(devices, 1)] + [(1, r) for r in runs_list if devices == 1 and r > 1]
    if devices == 4:
        layouts += [(4, r) for r in runs_list if r % 4 == 0]
    for used, runs in layouts:
        mesh = parallel.make_mesh(batch, devices=used, runs=runs)
        configs = [config.run(r, runs) for r in range(runs)]
        state = [parallel.init_runs(mesh, configs)]
        keys = parallel.train_keys(mesh, configs)
        compiled = parallel.compiled_steps(mesh, runs, gather=False)
        orders = np.stack(
            [np.asarray(epoch_order(run_keys(c.seed).data, 0, len(images), per_epoch, batch)) for c in configs]
        )

        def engine(n: int) -> None:
            for i in range(n):
                batches = parallel.host_batches(mesh, images, orders, i * per_call, per_call, batch)
                state[0], metrics = compiled(state[0], batches, keys)
            jax.block_until_ready(metrics)

        shape = " x ".join(f"{k} {v}" for k, v in mesh.shape.items())
        report(f"parallel ({shape})", used, runs, best(engine))


def equivalence(source: str, steps: int = 50) -> None:
    import dataclasses

    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxart import data
    from jaxart.gan import GANConfig, parallel
    from jaxart.gan.train import epoch_order, init_state, run_keys, train_steps

    images = data.load(source).images
    config = GANConfig()
    batch, per_epoch = config.batch_size, len(images) // config.batch_size
    order = lambda seed: np.asarray(epoch_order(run_keys(seed).data, 0, len(images), per_epoch, batch))  # noqa: E731

    def single(seed: int) -> np.ndarray:
        keys = run_keys(seed)
        state = init_state(keys.init, dataclasses.replace(config, seed=seed))
        _, m = train_steps(state, jax.device_put(images), jnp.asarray(order(seed)), 0, keys.train, length=steps)
        return np.stack([np.asarray(m["d_loss"]), np.asarray(m["g_loss"])])

    references = [single(seed) for seed in range(4)]
    for devices, runs in ((1, 1), (2, 1), (4, 1), (1, 4), (4, 4), (4, 2)):
        mesh = parallel.make_mesh(batch, devices, runs)
        configs = [config.run(r, runs) for r in range(runs)]
        state = parallel.init_runs(mesh, configs)
        batches = parallel.host_batches(mesh, images, np.stack([order(s) for s in range(runs)]), 0, steps, batch)
        _, m = parallel.compiled_steps(mesh, runs, gather=False)(state, batches, parallel.train_keys(mesh, configs))
        losses = np.stack([np.asarray(m["d_loss"]), np.asarray(m["g_loss"])])
        worst = max(np.max(np.abs(losses[:, :, r] - references[r]) / np.abs(references[r])) for r in range(runs))
        shape = " x ".join(f"{k} {v}" for k, v in mesh.shape.items())
        print(f"{devices} device(s), {runs} run(s) (mesh {shape}): max relative difference {worst:.2e}", flush=True)


def main() -> None:
    backend.set_xla_flags()  # as the commands run, before the backend starts
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--runs", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--steps", type=int, default=1000, help="timed steps (of each run), a multiple of 50")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--per-call", type=int, default=50, help="steps per compiled call")
    parser.add_argument("--data", default="mnist", help="training images (their values do not matter here)")
    parser.add_argument("--equivalence", action="store_true", help="print the layouts' agreement instead")
    parser.add_argument("--json", type=Path, help="also write the rows here as JSON")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.equivalence:
        if args.child:
            equivalence(args.data)
            return
        env = host_devices_env(4)
        command = [sys.executable, "-m", "benchmarks.gan_scale", "--equivalence", "--child", "4"]
        subprocess.run([*command, "--data", args.data], env=env, check=True)
        return
    if args.child:
        child(args.child, args.runs, args.steps, args.repeats, args.per_call, args.data)
        return

    print(f"{load_average()} at the start")
    rows = []
    for n in args.devices:
        env = host_devices_env(n)
        command = [sys.executable, "-m", "benchmarks.gan_scale", "--child", str(n), "--steps", str(args.steps)]
        command += ["--repeats", str(args.repeats), "--per-call", str(args.per_call), "--data", args.data]
        command += ["--runs", *map(str, args.runs)]
        out = subprocess.run(command, env=env, stdout=subprocess.PIPE, text=True, check=True).stdout
        rows += [json.loads(line[len(RESULT) :]) for line in out.splitlines() if line.startswith(RESULT)]
        if args.json:  # after each device count, so a run stopped part-way still leaves its rows
            args.json.write_text(json.dumps(dict(steps=args.steps, rows=rows), indent=1) + "\n", encoding="utf-8")
    print(f"{load_average()} at the end")
    base = rows[0]["gan_steps_s"]
    print(
        f"\n{args.steps} steps per run timed, best of {args.repeats}; MLP GAN, batch 32, {args.per_call} steps/call\n"
    )
    print("| loop | devices | runs | steps/s (each run) | samples/s | GAN-steps/s | x first row |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['what']} | {r['devices']} | {r['runs']} | {r['steps_s']:.0f} | {r['samples_s']:.0f} "
            f"| {r['gan_steps_s']:.0f} | {r['gan_steps_s'] / base:.2f} |"
        )


if __name__ == "__main__":
    main()
