"""Where a GAN job's arrays live: a ("runs", "data") mesh, and the steps compiled for it.

The unit stays `jaxart.gan.train.step`, the pure step of one run; this module only says where
its arrays live and compiles it with those shardings (as big_vision does), so XLA's SPMD
partitioner inserts the gradient all-reduces: no pmap, no hand-written collectives.

A job's state carries a leading runs axis of R runs (1 for a plain run):
  * "runs" splits the R independent runs: run r has its own seed, rate, initialisation, data
    order and noise, and `vmap` takes them through the same step. A single run's steps are not
    vmapped: they compile to the program of `train.train_steps`, bit for bit.
  * "data" splits each global batch of `batch_size` images; parameters and optimiser states are
    replicated along it, so N devices take the same steps as one, up to float32 summation order.

Data reaches the step in one of two ways: in one process, the whole data set and the epoch
orders sit on the devices and each call gathers its batches there; with many processes
(`jaxart.distributed.initialize`), every process computes the same orders from the seeds, reads
only the rows of each global batch its devices hold, and builds the global array with
`jax.make_array_from_process_local_data`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxart.errors import ConfigError, option
from jaxart.gan.config import GANConfig, ModelConfig
from jaxart.gan.train import (
    GANState,
    Hyperparams,
    Metrics,
    epoch_batches,
    hyperparams,
    init,
    run_keys,
    scan_steps,
    state_shapes,
    step,
)

RUNS, DATA = "runs", "data"


def make_mesh(batch_size: int, devices: int | None = None, runs: int = 1) -> Mesh:
    """The ("runs", "data") mesh over the first `devices` devices of all processes (default: all).

    "runs" takes the largest share of the devices that divides both the device count and R
    (each device then holds whole runs, which needs no communication); "data" the rest.
    Raises ConfigError for a device count that is not there or a batch that does not divide.
    """
    available = jax.devices()
    count = len(available) if devices is None else devices
    if not 1 <= count <= len(available):
        raise ConfigError(f"{option('devices')} {count}: this program sees {len(available)} device(s)")
    if jax.process_count() > 1 and count != len(available):
        raise ConfigError(
            f"{option('devices')} {count}: a run of {jax.process_count()} processes uses all {len(available)}"
        )
    if runs < 1:
        raise ConfigError(f"{option('runs')} must be at least 1, got {runs}")
    run_axis = math.gcd(runs, count)
    data_axis = count // run_axis
    if batch_size % data_axis:
        raise ConfigError(
            f"{option('batch_size')} {batch_size} does not split over {data_axis} devices of the data axis; "
            f"use a multiple of {data_axis} or other {option('devices')}"
        )
    return Mesh(np.array(available[:count]).reshape(run_axis, data_axis), (RUNS, DATA))


def _sharding(mesh: Mesh, *spec: str | None) -> NamedSharding:
    return NamedSharding(mesh, P(*spec))


def _state_sharding(mesh: Mesh) -> NamedSharding:
    """Of a state with a runs axis: the runs along "runs", replicated along "data"."""
    return _sharding(mesh, RUNS)


def _batch_sharding(mesh: Mesh) -> NamedSharding:
    """Of (steps, runs, batch, 28, 28) batches: runs along "runs", each batch along "data"."""
    return _sharding(mesh, None, RUNS, DATA)


def per_run(fn: Callable, runs: int) -> Callable:
    """`fn` of one run's arguments as a function of R runs' (each with a leading runs axis):
    vmapped, or for R = 1 the one run taken out and put back around `fn`."""
    if runs > 1:
        return jax.vmap(fn)

    def one(*args: Any) -> Any:
        out = fn(*jax.tree.map(lambda x: x[0], args))
        return jax.tree.map(lambda x: x[None], out)

    return one


def _key_data(keys: Sequence[jax.Array]) -> np.ndarray:
    """Typed keys as host uint32 data, the same in every process (wrapped again inside jit)."""
    return np.stack([np.asarray(jax.random.key_data(k)) for k in keys])


def replicated(mesh: Mesh, tree: Any) -> Any:
    """Host arrays every process holds alike, as replicated global arrays."""
    sharding = _sharding(mesh)
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x, x.shape), tree)


def train_keys(mesh: Mesh, configs: Sequence[GANConfig]) -> jax.Array:
    """Key data (R, 2) of the runs' training streams, replicated."""
    return replicated(mesh, _key_data([run_keys(c.seed).train for c in configs]))


def init_runs(mesh: Mesh, configs: Sequence[GANConfig]) -> GANState:
    """The runs' states at step 0 stacked on a runs axis: run r as `init_state(run_keys(seed_r).init, configs[r])`."""
    hyper = Hyperparams(*(np.stack(values) for values in zip(*map(hyperparams, configs))))
    keys = _key_data([run_keys(c.seed).init for c in configs])
    fresh = per_run(lambda k, h: init(jax.random.wrap_key_data(k), configs[0].static, h), len(configs))
    return jax.jit(fresh, out_shardings=_state_sharding(mesh))(*replicated(mesh, (keys, hyper)))


def one_run_target(mesh: Mesh, config: ModelConfig) -> GANState:
    """Shapes, dtypes and shardings (replicated) of one run's state, for orbax to restore into:
    each process reads what its devices hold, whatever layout wrote the checkpoint."""
    sharding = _sharding(mesh)
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), state_shapes(config))


def stack(mesh: Mesh, states: Sequence[GANState]) -> GANState:
    """Single runs' states (replicated) as one state with a runs axis."""
    stacked = jax.jit(lambda *s: jax.tree.map(lambda *x: jax.numpy.stack(x), *s), out_shardings=_state_sharding(mesh))
    return stacked(*states)


@functools.cache
def _splitter(mesh: Mesh, runs: int) -> Callable:
    """Compiled once per mesh and R: `unstack` runs at every checkpoint and epoch end."""
    split = lambda s: [jax.tree.map(lambda x: x[r], s) for r in range(runs)]  # noqa: E731
    return jax.jit(split, out_shardings=_sharding(mesh))


def unstack(mesh: Mesh, state: GANState) -> list[GANState]:
    """Each run of a state with a runs axis, replicated on every device (an all-gather).
    Every process calls it."""
    return _splitter(mesh, int(state.step.shape[0]))(state)


def step_of(state: GANState) -> int:
    """The step of a state with a runs axis (its runs move together), read from this process's
    first shard: no program to compile, and no other process to wait for."""
    return int(np.asarray(state.step.addressable_data(0))[0])


def local(state: GANState) -> GANState:
    """One replica of a replicated (single-run) state, on the host: what the writer process
    samples and evaluates from without the other processes."""
    return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)) if isinstance(x, jax.Array) else x, state)


@functools.cache
def compiled_steps(mesh: Mesh, runs: int, gather: bool) -> Callable:
    """The steps of R runs on `mesh`, jitted with its shardings and donating the state; metrics
    come back replicated, each of shape (length, R).

    gather: `steps(state, images, orders, start, keys, length)`, the data set (N, 28, 28) and the
    runs' epoch orders (R, M) on the devices, step j of run r on its epoch batch start + j (as
    `train.train_steps`). Otherwise `steps(state, batches, keys)`, batches[j] the (R, B, 28, 28)
    global batch of step j. keys: the runs' training key data (R, 2). A conditional model's
    images and batches are (images, labels) pairs, the labels (N,) and (R, B).
    """
    replicated = _sharding(mesh)
    # A single run's program takes its state without the runs axis (see below).
    state_sharding = _state_sharding(mesh) if runs > 1 else replicated

    def one_run(state: GANState, batches: jax.Array, key: jax.Array) -> tuple[GANState, Metrics]:
        return scan_steps(step, state, batches, jax.random.wrap_key_data(key))

    def fed(state: GANState, batches: jax.Array, keys: jax.Array) -> tuple[GANState, Metrics]:
        if runs > 1:
            return jax.vmap(one_run, (0, 1, 0), (0, 1))(state, batches, keys)
        state, metrics = one_run(state, jax.tree.map(lambda b: b[:, 0], batches), keys[0])
        return state, jax.tree.map(lambda m: m[:, None], metrics)

    def gathered(
        state: GANState, images: jax.Array, orders: jax.Array, start: jax.Array, keys: jax.Array, length: int
    ) -> tuple[GANState, Metrics]:
        gather_runs = jax.vmap(epoch_batches, (None, 0, None, None, None), 1)
        batches = gather_runs(images, orders, start, length, state.config.batch_size)
        return fed(state, jax.lax.with_sharding_constraint(batches, _batch_sharding(mesh)), keys)

    data_shardings = (replicated,) * 4 if gather else (_batch_sharding(mesh), replicated)
    steps = jax.jit(
        gathered if gather else fed,
        in_shardings=(state_sharding, *data_shardings),
        out_shardings=(state_sharding, replicated),
        static_argnums=5 if gather else (),
        donate_argnums=0,
    )
    if runs > 1:
        return steps
    # The runs axis of one run is taken off and put back by programs of their own: indexed
    # inside the steps, a call of one step (no scan) compiles to other CPU code than
    # `train.train_steps`, which changes the last bits, and a resume would not repeat a run.
    take = jax.jit(lambda s: jax.tree.map(lambda x: x[0], s), out_shardings=replicated)
    put = jax.jit(lambda s: jax.tree.map(lambda x: x[None], s), out_shardings=_state_sharding(mesh))

    def one_run_steps(state: GANState, *args: Any) -> tuple[GANState, Metrics]:
        state, metrics = steps(take(state), *args)
        return put(state), metrics

    return one_run_steps


def _local_indices(mesh: Mesh, global_shape: tuple[int, ...], axis: int) -> np.ndarray:
    """The indices along `axis` of a batch array that this process's devices hold, in order."""
    indices = _batch_sharding(mesh).addressable_devices_indices_map(global_shape).values()
    spans = {
        (index[axis].start or 0, global_shape[axis] if index[axis].stop is None else index[axis].stop)
        for index in indices
        if index is not None
    }
    return np.concatenate([np.arange(start, stop) for start, stop in sorted(spans)])


def host_batches(mesh: Mesh, data: Any, orders: np.ndarray, start: int, length: int, batch_size: int) -> Any:
    """Global batches (length, R, B, ...) of `length` steps from step `start` of the epoch, of each
    array of `data` (the images (N, 28, 28), or images and labels (N,)), of which this process
    reads only its rows: step j of run r takes rows orders[r][(start + j) * B : (start + j + 1) * B].
    orders: (R, M), all processes alike."""

    def batches(array: np.ndarray) -> jax.Array:
        global_shape = (length, len(orders), batch_size, *array.shape[1:])
        rows = _local_indices(mesh, global_shape, 2)
        steps = np.arange(start, start + length)[:, None] * batch_size + rows  # (length, local rows)
        local = np.stack([array[orders[r][steps]] for r in _local_indices(mesh, global_shape, 1)], axis=1)
        return jax.make_array_from_process_local_data(_batch_sharding(mesh), local, global_shape)

    return jax.tree.map(batches, data)
