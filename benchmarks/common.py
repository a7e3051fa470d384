"""Timing helpers shared by the benchmarks."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxart.cache import packaged

EXAMPLES = packaged("examples")  # the bundled pictures, in a checkout or an installed wheel


def load_averages() -> list[float]:
    """The 1, 5 and 15 minute load averages, for a benchmark to record with its timings."""
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


def load_average() -> str:
    """'load average 1m 5m 15m', for a benchmark to print with its timings."""
    return "load average " + " ".join(f"{x:.2f}" for x in load_averages())


def seconds(fn: Callable[[], object]) -> float:
    """Wall-clock seconds of one call."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def matmul_peak_gflops(n: int = 2048, repeats: int = 5) -> float:
    """float32 GFLOP/s of an n x n matmul on this machine (JAX/XLA), best of `repeats`."""
    a = jax.random.normal(jax.random.key(0), (n, n))
    dot = jax.jit(jnp.dot)
    dot(a, a).block_until_ready()
    best = min(seconds(lambda: dot(a, a).block_until_ready()) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def compiled_flops(jitted, *args, **kwargs) -> float:
    """Floating-point operations of one call of a jitted function, as XLA counts them."""
    analysis = jitted.lower(*args, **kwargs).compile().cost_analysis()
    return float((analysis[0] if isinstance(analysis, list) else analysis)["flops"])


_DEFINITION = re.compile(r"%([\w.-]+) = f32\[([\d,]*)\]")
_DOT = re.compile(
    r"= f32\[[\d,]*\]\S* dot\(%([\w.-]+), %([\w.-]+)\), (?:lhs_batch_dims=\{[\d,]*\}, rhs_batch_dims=\{[\d,]*\}, )?"
    r"lhs_contracting_dims=\{([\d,]*)\}, rhs_contracting_dims=\{([\d,]*)\}"
)


def compiled_dots(jitted, *args, **kwargs) -> list[tuple[int, int, int]]:
    """The float32 matrix products XLA's optimised program of one call runs, as (m, k, n): an
    (m, k) by (k, n) product each, read from its HLO (what it runs, after the products nothing
    reads are gone). Batched products are not expected and are refused."""
    text = jitted.lower(*args, **kwargs).compile().as_text()
    shapes = {name: tuple(int(d) for d in dims.split(",") if d) for name, dims in _DEFINITION.findall(text)}
    dots = []
    for line in text.splitlines():
        if " dot(" not in line:
            continue
        if "batch_dims" in line or not (found := _DOT.search(line)):
            raise ValueError(f"a product this reader does not know: {line.strip()[:200]}")
        lhs, rhs = shapes[found[1]], shapes[found[2]]
        lhs_k, rhs_k = (tuple(int(d) for d in dims.split(",")) for dims in (found[3], found[4]))
        k = int(np.prod([lhs[d] for d in lhs_k]))
        m = int(np.prod([n for d, n in enumerate(lhs) if d not in lhs_k]))
        n = int(np.prod([size for d, size in enumerate(rhs) if d not in rhs_k]))
        dots.append((m, k, n))
    return dots


def dots_alone(dots: list[tuple[int, int, int]]) -> Callable[[int], int]:
    """`run(calls)`: that many calls, dispatched ahead as a training loop's are, of a program
    that runs just `dots`, each as a row-major (m, k) @ (k, n) product of random operands, every
    product kept: how fast a step made of nothing but its matrix products could go here."""
    keys = jax.random.split(jax.random.key(0), 2 * len(dots))
    operands = [
        (jax.random.normal(keys[2 * i], (m, k)), jax.random.normal(keys[2 * i + 1], (k, n)))
        for i, (m, k, n) in enumerate(dots)
    ]
    products = jax.jit(lambda ops: [a @ b for a, b in ops])

    def run(calls: int) -> int:
        for _ in range(calls):
            out = products(operands)
        jax.block_until_ready(out)
        return calls

    return run


def cpu_name() -> str:
    """The processor's model name (from /proc/cpuinfo where there is one)."""
    import platform

    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def machine() -> str:
    """One line naming the software and the machine."""
    import os

    import torch

    return (
        f"{cpu_name()}, {os.cpu_count()} cores; jax {jax.__version__} on {jax.devices()[0].device_kind}, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads); XLA_FLAGS {os.environ.get('XLA_FLAGS', '')!r}"
    )


def random_vgg19() -> tuple[dict[str, Any], Any]:
    """torchvision's vgg19() after torch.manual_seed(0), as (its state_dict, the converted Flax
    params): the benchmarks' stand-in for the pretrained weights, whose values speed ignores."""
    import torch
    import torchvision

    from jaxart import weights

    torch.manual_seed(0)
    state_dict = torchvision.models.vgg19().state_dict()
    return state_dict, weights.convert_state_dict(state_dict)


def example_pair(max_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The bundled content and style, read as the seed reads them: (H, W, 3) float32 in [0, 1]."""
    from jaxart import images

    content = images.load_image(EXAMPLES / "content.png", max_size=max_size)
    return content, images.load_image(EXAMPLES / "style.png", shape=content.shape[:2])
