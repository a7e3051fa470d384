"""The XLA flags jaxart's commands run under, for programs that want the same (call
`set_xla_flags` before JAX's first computation)."""

from __future__ import annotations

import importlib.metadata
import os

__all__ = ["set_xla_flags", "xla_flags"]

# XLA's CPU backend hands convolutions, dots and reductions to YNNPACK by default (jaxlib 0.10).
# Its convolutions are what made jaxart's small-channel networks slow: a 3x3, 32-channel
# convolution at 256 px took 80-90 ms there and 10 ms in XLA's own (Eigen) convolution, and
# multistyle26 went from 0.58-0.65x onnxruntime's speed to 1.01-1.15x (benchmarks/RESULTS.md). Dots and reductions stay with YNNPACK.
# The flag is experimental, and XLA aborts on a flag it does not know, so it is set only for the
# jaxlib versions it was measured on; and only where asked (`python -m jaxart.fast`): the style
# job's VGG19 evaluation did not get faster, and its checks of remat and sharded runs against
# plain ones hold at 1e-5 under YNNPACK's convolutions, not Eigen's (1.7e-4 apart).
CPU_FUSION_FLAG = "xla_cpu_experimental_ynn_fusion_type"
CPU_FUSION_TYPES = "LIBRARY_FUSION_TYPE_DOT,LIBRARY_FUSION_TYPE_REDUCE"
CPU_FUSION_JAXLIB = "0.10."


def xla_flags(flags: str, jaxlib_version: str, own_convolutions: bool = False) -> str:
    """`flags` (an `XLA_FLAGS` value) with what jaxart's commands run under, where not set there
    already: XLA's deterministic GPU algorithms, so that a resumed run repeats an uninterrupted
    one bit for bit there as on the CPU; and with `own_convolutions`, for the `jaxlib_version`s
    it was measured on, XLA's own CPU convolutions in place of YNNPACK's (`CPU_FUSION_FLAG`:
    the feed-forward networks' narrow layers run 2-8x faster)."""
    if "xla_gpu_deterministic_ops" not in flags:
        flags = f"{flags} --xla_gpu_deterministic_ops=true"
    if own_convolutions and CPU_FUSION_FLAG not in flags and jaxlib_version.startswith(CPU_FUSION_JAXLIB):
        flags = f"{flags} --{CPU_FUSION_FLAG}={CPU_FUSION_TYPES}"
    return flags.strip()


def set_xla_flags(own_convolutions: bool = False) -> None:
    """Sets `XLA_FLAGS` to `xla_flags` of its value. Call it before JAX's first computation: XLA
    reads its flags when a backend starts, and a later change has no effect. Process-wide, so
    commands, tests and benchmarks call it (and programs may); library functions never do."""
    environ = os.environ.get("XLA_FLAGS", "")
    os.environ["XLA_FLAGS"] = xla_flags(environ, importlib.metadata.version("jaxlib"), own_convolutions)
