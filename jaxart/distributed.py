"""Many processes, one program: joining a `jax.distributed` run, and which process writes.

Both commands take `--coordinator HOST:PORT --num-processes P --process-id I` (or
`--distributed` for JAX's own cluster detection; see `jaxart.cli.add_process_arguments`).
"""

from __future__ import annotations

import jax

from jaxart.errors import InputError


def initialize(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    auto: bool = False,
) -> None:
    """Joins a multi-process run before any JAX computation.

    With the three values, the processes meet at `coordinator` (HOST:PORT, served by process 0).
    CPU devices then talk over gloo (JAX's CPU backend has no cross-process collectives of its
    own); accelerators use their own.
    With `auto`, `jax.distributed.initialize()` detects the cluster itself (SLURM, Cloud TPU,
    Open MPI), as JAX documents. With neither, nothing happens: a plain command stays one
    process even inside a SLURM allocation, where JAX's detection would otherwise expect peers
    that were never started.
    """
    given = [v is not None for v in (coordinator, num_processes, process_id)]
    if any(given) and not all(given):
        raise InputError("--coordinator, --num-processes and --process-id go together; give all three or none")
    if all(given):
        if not 0 <= process_id < num_processes:
            raise InputError(f"--process-id {process_id} must be in [0, --num-processes {num_processes})")
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(coordinator, num_processes, process_id)
    elif auto:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize()


def is_writer() -> bool:
    """Whether this process writes logs, images and reports (process 0); every process
    takes part in the compiled steps and in saving checkpoints."""
    return jax.process_index() == 0
