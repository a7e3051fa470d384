"""Many processes, one program: joining a `jax.distributed` run, and which process writes.

Both commands take `--coordinator HOST:PORT --num-processes P --process-id I` (or
`--distributed` for JAX's own cluster detection; see `jaxart.cli.add_process_arguments`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

import jax

__all__ = ["cpu_threads_env", "host_devices_env", "initialize", "is_writer"]

from jaxart.errors import ConfigError, option, reason


def initialize(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    distributed: bool = False,
) -> None:
    """Joins a multi-process run before any JAX computation.

    With the three values, the processes meet at `coordinator` (HOST:PORT, served by process 0).
    CPU devices then talk over gloo (JAX's CPU backend has no cross-process collectives of its
    own); accelerators use their own.
    With `distributed`, `jax.distributed.initialize()` detects the cluster itself (SLURM, Cloud
    TPU, Open MPI, Kubernetes), as JAX documents; ConfigError if it finds none. With neither,
    nothing happens: a plain command stays one process even inside a SLURM allocation, where
    JAX's detection would otherwise expect peers that were never started.
    """
    given = [v is not None for v in (coordinator, num_processes, process_id)]
    if any(given) and not all(given):
        names = ", ".join(option(name) for name in ("coordinator", "num_processes", "process_id"))
        raise ConfigError(f"{names} go together; give all three or none")
    if coordinator is not None and num_processes is not None and process_id is not None:
        if not 0 <= process_id < num_processes:
            raise ConfigError(
                f"{option('process_id')} {process_id} must be in [0, {option('num_processes')} {num_processes})"
            )
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(coordinator, num_processes, process_id)
    elif distributed:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        try:
            jax.distributed.initialize()
        except ValueError as e:
            # JAX checks what its detection found before it connects to anything: a ValueError
            # here means a value it could not find, i.e. no cluster around this process.
            raise ConfigError(
                f"{option('distributed')} found no cluster to join (no SLURM, Open MPI, Cloud TPU or "
                f"Kubernetes job detected; jax: {reason(e).rstrip('.')}): give {option('coordinator')} HOST:PORT, "
                f"{option('num_processes')} N and {option('process_id')} I instead"
            ) from e


def is_writer() -> bool:
    """Whether this process writes logs, images and reports (process 0); every process
    takes part in the compiled steps and in saving checkpoints."""
    return jax.process_index() == 0


_FORCED_DEVICES = re.compile(r"--xla_force_host_platform_device_count=(\d+)")


def cpu_threads_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The `PJRT_NPROC` that forced CPU devices (`XLA_FLAGS=--xla_force_host_platform_device_count=N`)
    need, if `environ` forces some and does not set it; else nothing.

    XLA's CPU client runs each device's part of a collective on a thread of one pool of
    max(cores, N) threads. With several programs in flight, other work can hold one of those
    threads while the rest wait in the collective, and XLA aborts the process after 40 s (seen
    with 4 devices on 2 cores, and every time on 1). Twice N threads leave that work room.
    """
    forced = _FORCED_DEVICES.search(environ.get("XLA_FLAGS", ""))
    if forced is None or "PJRT_NPROC" in environ:
        return {}
    return {"PJRT_NPROC": str(max(os.cpu_count() or 1, 2 * int(forced.group(1))))}


def host_devices_env(count: int, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """`environ` for a fresh process that sees `count` CPU devices (tests, benchmarks, trying
    the many-device paths on one machine): XLA's forced host device count and the threads
    it needs (see `cpu_threads_env`)."""
    flags = _FORCED_DEVICES.sub("", environ.get("XLA_FLAGS", "")).strip()
    environ = {**environ, "XLA_FLAGS": f"{flags} --xla_force_host_platform_device_count={count}".strip()}
    return {**environ, **cpu_threads_env(environ)}
