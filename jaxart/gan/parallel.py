"""The GAN at scale with JAX's own engine: a device mesh, per-process batches, many runs at once.

The unit stays `jaxart.gan.train.step`, the pure step of one run; this module only says where
its arrays live and compiles it with those shardings (as big_vision does), so XLA's SPMD
partitioner inserts the gradient all-reduces: no pmap, no hand-written collectives.

A `Layout` is a ("runs", "data") mesh:
  * "data" splits each global batch of `batch_size` images; parameters and optimiser states are
    replicated along it, so N devices take the same steps as one, up to float32 summation order.
  * "runs" splits R independent runs (`--runs R`): their states, stacked on a leading axis, are
    `vmap`ped through the same step; run r uses seed `seed + r` (its own initialisation, data
    order and noise), so it follows the single run of that seed.

With many processes (`jaxart.distributed.initialize`), every process computes the same data order from the seed,
reads only the rows of each global batch that its devices hold, and builds the global array
with `jax.make_array_from_process_local_data`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxart.errors import InputError
from jaxart.gan.config import GANConfig, RunConfig
from jaxart.gan.train import GANState, Metrics, init_state, run_keys, step

RUNS, DATA = "runs", "data"


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where one program's runs and batches live.

    runs: 1 for a plain run (its state as `init_state` makes it), R > 1 for R stacked runs.
    """

    mesh: Mesh
    runs: int = 1

    @property
    def stacked(self) -> bool:
        return self.runs > 1

    def sharding(self, *spec) -> NamedSharding:
        return NamedSharding(self.mesh, P(*spec))

    @property
    def replicated(self) -> NamedSharding:
        return self.sharding()

    @property
    def state_sharding(self) -> NamedSharding:
        """Replicated along "data"; stacked runs split along "runs" (a prefix for every leaf)."""
        return self.sharding(RUNS) if self.stacked else self.replicated

    @property
    def batch_sharding(self) -> NamedSharding:
        """Of (calls' steps, [runs,] batch, 28, 28): the batch along "data"."""
        return self.sharding(None, RUNS, DATA) if self.stacked else self.sharding(None, DATA)


def make_layout(batch_size: int, devices: int | None = None, runs: int = 1) -> Layout:
    """The mesh over the first `devices` devices of all processes (default: all of them).

    The "runs" axis takes the largest share of the devices that divides both the device count
    and R (each device then holds whole runs, which needs no communication); "data" the rest.
    Raises InputError for a device count that is not there or a batch that does not divide.
    """
    available = jax.devices()
    count = len(available) if devices is None else devices
    if not 1 <= count <= len(available):
        raise InputError(f"--devices {count}: this program sees {len(available)} device(s)")
    if jax.process_count() > 1 and count != len(available):
        raise InputError(f"--devices {count}: a run of {jax.process_count()} processes uses all {len(available)}")
    if runs < 1:
        raise InputError(f"--runs must be at least 1, got {runs}")
    run_axis = math.gcd(runs, count)
    data_axis = count // run_axis
    if batch_size % data_axis:
        raise InputError(
            f"--batch-size {batch_size} does not split over {data_axis} devices of the data axis; "
            f"use a multiple of {data_axis} or other --devices"
        )
    grid = np.array(available[:count]).reshape(run_axis, data_axis)
    return Layout(Mesh(grid, (RUNS, DATA)), runs)


def layout_for(config: GANConfig, run: RunConfig) -> Layout | None:
    """The layout a `RunConfig` asks for (`devices`, `runs`), or None for one device in one
    process, where the loop keeps `train.train_steps` on device-resident data."""
    if jax.process_count() == 1 and (run.devices or jax.device_count()) == 1 and run.runs == 1:
        return None
    return make_layout(config.batch_size, run.devices, run.runs)


def run_seeds(seed: int, runs: int) -> list[int]:
    return [seed + r for r in range(runs)]


def _key_data(keys: Sequence[jax.Array]) -> np.ndarray:
    """Typed keys as host uint32 data, the same in every process (wrapped again inside jit)."""
    return np.stack([np.asarray(jax.random.key_data(k)) for k in keys])


def _global(layout: Layout, host: np.ndarray) -> jax.Array:
    """A host array every process holds alike, as a replicated global array."""
    return jax.make_array_from_process_local_data(layout.replicated, host, host.shape)


def train_keys(layout: Layout, seed: int) -> jax.Array:
    """Key data of the runs' training streams: (2,) for one run, (R, 2) for R, replicated."""
    data = _key_data([run_keys(s).train for s in run_seeds(seed, layout.runs)])
    return _global(layout, data if layout.stacked else data[0])


def _fresh(layout: Layout, config: GANConfig, key_data: jax.Array) -> GANState:
    one = lambda k: init_state(jax.random.wrap_key_data(k), config)  # noqa: E731
    return jax.vmap(one)(key_data) if layout.stacked else one(key_data[0])


def init(layout: Layout, config: GANConfig) -> GANState:
    """Fresh state(s) at step 0, laid out as `layout` says; run r from `init_state(run_keys(seed + r).init)`."""
    keys = _global(layout, _key_data([run_keys(s).init for s in run_seeds(config.seed, layout.runs)]))
    return jax.jit(functools.partial(_fresh, layout, config), out_shardings=layout.state_sharding)(keys)


def abstract_state(layout: Layout, config: GANConfig) -> GANState:
    """Shapes, dtypes and target shardings of `init(layout, config)`, for orbax to restore into:
    each process reads what its devices hold, whatever layout wrote the checkpoint."""
    keys = jax.ShapeDtypeStruct((layout.runs, 2), np.uint32)
    shapes = jax.eval_shape(functools.partial(_fresh, layout, config), keys)
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=layout.state_sharding), shapes)


@functools.cache
def compiled_steps(layout: Layout):
    """`steps(state, batches, keys) -> (state, metrics)`: batches[j] is step j's global batch.

    The step is jitted with the layout's shardings and donates the state; metrics come back
    replicated, shape (length,) or (length, R).
    """
    one_run = lambda state, batch, key: step(state, batch, jax.random.wrap_key_data(key))  # noqa: E731
    unit = jax.vmap(one_run) if layout.stacked else one_run

    def steps(state: GANState, batches: jax.Array, keys: jax.Array) -> tuple[GANState, Metrics]:
        if batches.shape[0] == 1:  # as train_steps: XLA CPU's convolutions are slower in a loop body
            state, metrics = unit(state, batches[0], keys)
            return state, jax.tree.map(lambda m: m[None], metrics)
        return jax.lax.scan(lambda s, b: unit(s, b, keys), state, batches)

    return jax.jit(
        steps,
        in_shardings=(layout.state_sharding, layout.batch_sharding, layout.replicated),
        out_shardings=(layout.state_sharding, layout.replicated),
        donate_argnums=0,
    )


def _local_indices(layout: Layout, global_shape: tuple[int, ...], axis: int) -> np.ndarray:
    """The indices along `axis` that this process's devices hold, in order."""
    spans = {
        (index[axis].start or 0, global_shape[axis] if index[axis].stop is None else index[axis].stop)
        for index in layout.batch_sharding.addressable_devices_indices_map(global_shape).values()
    }
    return np.concatenate([np.arange(start, stop) for start, stop in sorted(spans)])


def batches(
    layout: Layout, images: np.ndarray, orders: Sequence[np.ndarray], start: int, length: int, batch_size: int
) -> jax.Array:
    """Global batches of `length` steps from step `start` of the epoch: this process reads only its rows.

    Step j of run r takes images[orders[r][(start + j) * B : (start + j + 1) * B]], as
    `train.train_steps` does on one device. orders: one epoch order per run (all processes
    compute them alike from the seeds).
    """
    runs = layout.runs
    shape = (length, runs, batch_size) if layout.stacked else (length, batch_size)
    global_shape = (*shape, *images.shape[1:])
    rows = _local_indices(layout, global_shape, len(shape) - 1)
    steps = np.arange(start, start + length)[:, None] * batch_size + rows  # (length, local rows)
    if layout.stacked:
        local_runs = _local_indices(layout, global_shape, 1)
        local = np.stack([images[orders[r][steps]] for r in local_runs], axis=1)
    else:
        local = images[orders[0][steps]]
    return jax.make_array_from_process_local_data(layout.batch_sharding, local, global_shape)


def one_run(layout: Layout) -> Layout:
    """The same mesh for one run's state (replicated over all its devices)."""
    return dataclasses.replace(layout, runs=1)


def stack(layout: Layout, states: Sequence[GANState], config: GANConfig) -> GANState:
    """Single runs' states (replicated) as the stacked state of `layout`; `config`: its static config."""
    states = [s.replace(config=config) for s in states]
    stacked = jax.jit(lambda *s: jax.tree.map(lambda *x: jax.numpy.stack(x), *s), out_shardings=layout.state_sharding)
    return stacked(*states)


def unstack(layout: Layout, state: GANState, configs: Sequence[GANConfig]) -> list[GANState]:
    """Each run of a stacked state, replicated on every device (an all-gather), with its own config.
    Every process calls it. A layout of one run holds that run's state as it is."""
    if not layout.stacked:
        return [state.replace(config=configs[0])]
    return [one.replace(config=c) for one, c in zip(_splitter(layout)(state), configs)]


@functools.cache
def _splitter(layout: Layout):
    """Compiled once per layout: `unstack` runs at every checkpoint and epoch end."""
    split = lambda s: [jax.tree.map(lambda x: x[r], s) for r in range(layout.runs)]  # noqa: E731
    return jax.jit(split, out_shardings=layout.replicated)


def local(state: GANState) -> GANState:
    """One replica of a replicated (single-run) state, on the host: what the writer process
    samples and evaluates from without the other processes."""
    return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)) if isinstance(x, jax.Array) else x, state)


class Engine:
    """What a training loop calls in place of `train.train_steps` on a layout: the same steps,
    each call's global batches assembled from the host-held images by every process.

    epoch_order: (data key, epoch, num_images, num_batches, batch_size) -> that epoch's image
    indices, the single-device loop's own, so every layout sees the same batches.
    """

    def __init__(self, layout: Layout, config: GANConfig, images: np.ndarray, epoch_order):
        self.layout, self.images, self.epoch_order = layout, images, epoch_order
        self.batch_size = config.batch_size
        self.steps_per_epoch = len(images) // config.batch_size
        self.data_keys = [run_keys(s).data for s in run_seeds(config.seed, layout.runs)]
        self.keys = train_keys(layout, config.seed)
        self.compiled = compiled_steps(layout)
        self.epoch, self.orders = None, []

    def __call__(self, state: GANState, done: int, length: int) -> tuple[GANState, Metrics]:
        """`length` steps from step `done` (within one epoch)."""
        epoch = done // self.steps_per_epoch
        if epoch != self.epoch:
            n, b = len(self.images), self.batch_size
            self.orders = [np.asarray(self.epoch_order(k, epoch, n, self.steps_per_epoch, b)) for k in self.data_keys]
            self.epoch = epoch
        start = done - epoch * self.steps_per_epoch
        batch = batches(self.layout, self.images, self.orders, start, length, self.batch_size)
        return self.compiled(state, batch, self.keys)
