"""The fast-style job: `train` sets a network's run up on a mesh and hands it to
`jaxart.training.train_loop` with its periodic actions (checkpoint, preview, plot);
`load_network` reads a trained network back.

Workdir layout:
  checkpoints/<step>/       orbax checkpoints (the latest few), checksummed
  metrics.jsonl             one line per step: step, epoch, loss, content_loss, style_loss, seconds
  previews/step_NNNNNN.png  the held-out photos in every style (a row per photo, the styles on top)
  loss_curves.png           the three losses against the step
  train.lock                held by the run training in the folder (see `jaxart.workdir`)

Data parallel: the batch of crops is split over the "data" axis of a mesh (`jaxart.gan.parallel.make_mesh`);
the state and the objective are replicated, and XLA's partitioner writes the gradient all-reduce.
With several processes (`jaxart.distributed`), each draws only the crops of its own rows.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxart import distributed, images, training, vgg, weights
from jaxart.checkpoint import Checkpoints, local_target, restore_latest
from jaxart.errors import InputError, RunError, option, reason
from jaxart.fast import photos
from jaxart.fast.config import RunConfig, TrainConfig, as_json
from jaxart.fast.networks import Transformer
from jaxart.fast.train import (
    METRICS,
    FastState,
    Metrics,
    Objective,
    init,
    make_objective,
    resolve,
    run_keys,
    scan_steps,
    state_shapes,
    stylize,
)
from jaxart.files import read_json_lines
from jaxart.gan.parallel import DATA, make_mesh, replicated
from jaxart.workdir import Layout, check_workdir, is_workdir, locked

__all__ = ["load_network", "load_trained", "summary", "train"]

LAYOUT = Layout(
    "jaxart-fast-workdir", {"checkpoints": True, "previews": True, "metrics.jsonl": False, "loss_curves.png": False}
)
JOB = "fast"
STATE_FORMAT = 1  # the layout of the saved state (FastState: step, params, opt_state)
_LABELS = ("loss", "content loss", "style loss")
ACCELERATOR_STEPS_PER_CALL = 20
_PLOT_EVERY_SECONDS = 30.0  # plotting all steps costs a moment


def train(config: TrainConfig, run: RunConfig) -> FastState:
    """Trains the network of `config` on the photos of `run.content` in `run.workdir`, from its
    latest checkpoint (or from scratch) to `run.max_steps`; returns the final state.

    Raises InputError (ConfigError for values) for a content folder without photos or with one
    Pillow cannot read, a style file that is not an image, unusable VGG19 weights, a workdir that
    is not a new, empty or fast-training folder, or a checkpoint of a different run (other
    settings, style images or photos), or one that cannot be read or fails its checksum; nothing
    is written before these checks pass. Raises RunError when another run holds the workdir,
    training diverges (no checkpoint of the non-finite state is written) or a checkpoint cannot
    be saved (the earlier ones stay).
    """
    workdir = check_workdir(run.workdir, LAYOUT)
    assert run.content is not None  # RunConfig refuses None
    paths = photos.list_photos(run.content)
    styles, style_sums, thumbs = _load_styles(config)
    with warnings.catch_warnings():  # "random" weights warn: the run's purpose is a smoke test then
        warnings.simplefilter("ignore")
        vgg_params = weights.load(config.weights, seed=config.seed)
    config = resolve(config, vgg_params)
    mesh = make_mesh(config.batch_size, run.devices)
    keys = run_keys(config.seed)
    data = photos.Photos(paths, config.size, np.asarray(jax.random.key_data(keys.data)))
    steps_per_epoch = math.ceil(len(data.train) / config.batch_size)
    meta = run_meta(config, style_sums, data.checksum(), run.content)
    objective = replicated(mesh, jax.device_get(make_objective(vgg_params, styles, config)))
    train_key = replicated(mesh, np.asarray(jax.random.key_data(keys.train)))
    writer = distributed.is_writer()  # the other processes compute and save checkpoints, and write nothing else
    with contextlib.ExitStack() as stack:
        if writer:
            stack.enter_context(locked(workdir, LAYOUT))
        manager = stack.enter_context(Checkpoints(workdir, run.keep_checkpoints))
        state = _resume_or_init(mesh, manager, workdir, config, meta, keys.init)
        start = int(np.asarray(state.step.addressable_data(0)))
        manager.trim()
        if writer:
            (workdir / "previews").mkdir(exist_ok=True)
        log = stack.enter_context(
            contextlib.closing(
                training.MetricsLog(workdir / "metrics.jsonl", METRICS, start, steps_per_epoch, write=writer)
            )
        )
        preview = (data.preview(), thumbs) if writer else None
        job = _Job(workdir, config, run, manager, meta, log, preview)
        feed = stack.enter_context(_Feed(mesh, data, config.batch_size, run.max_steps))
        compiled = _compiled_steps(mesh)

        def advance(state: FastState, done: int, length: int) -> tuple[FastState, Metrics]:
            return compiled(state, feed(done, length), train_key, objective)

        context = training.RunContext(start, run.max_steps, _steps_per_call(run), steps_per_epoch, [log], job.diverged)
        state = training.train_loop(state, advance, context, job.actions())
    return state


def _steps_per_call(run: RunConfig) -> int:
    """The run's, or 1 on CPU (XLA runs convolutions inside a loop body slower) and
    ACCELERATOR_STEPS_PER_CALL on GPU/TPU (dispatching each step would cost more than it)."""
    if run.steps_per_call is not None:
        return run.steps_per_call
    return 1 if jax.default_backend() == "cpu" else ACCELERATOR_STEPS_PER_CALL


def _load_styles(config: TrainConfig) -> tuple[list[np.ndarray], list[str], np.ndarray]:
    """The style images as the loss sees them ((h, w, 3) in [0, 1], longest side `style_size`,
    default `size`), the sha256 of each one's pixels as read, and their square thumbnails for
    the previews (uint8 (N, size, size, 3)). InputError for a file that is not a readable image
    or a style too narrow for the style layers."""
    need = 2 ** vgg.downsampling(name for name, _ in config.style_layers)
    styles, sums, thumbs = [], [], []
    for path in config.style:
        picture = images.open_rgb(path)
        pixels = np.asarray(picture)
        sums.append(hashlib.sha256(f"{pixels.shape}".encode() + pixels.tobytes()).hexdigest())
        style = images.to_array(images.resize_longest(picture, config.style_size or config.size))
        if min(style.shape[:2]) < need:
            raise InputError(
                f"style image {path!r} is {style.shape[1]}x{style.shape[0]} at {option('style_size')} "
                f"{config.style_size or config.size}; the style layers need at least {need} pixels per side"
            )
        styles.append(style)
        thumbs.append(photos.center_crop(picture, config.size))
    return styles, sums, np.stack(thumbs)


def run_meta(config: TrainConfig, style_sums: Sequence[str], photos_sum: str, content: str) -> dict[str, Any]:
    """What a checkpoint records about its run (JSON-serialisable); `Checkpoints.save` adds the
    state's checksum."""
    return {
        "job": JOB,
        "state_format": STATE_FORMAT,
        "config": as_json(config),
        "style_sha256": list(style_sums),
        "content": str(content),
        "photos_sha256": photos_sum,
    }


def _config_from_meta(meta: dict[str, Any], where: str) -> TrainConfig:
    """The TrainConfig a checkpoint records; InputError for one of another job or version."""
    recorded = meta.get("config")
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    if meta.get("job") != JOB or not isinstance(recorded, dict) or set(recorded) != known:
        raise InputError(
            f"{where} holds a checkpoint of another jaxart job or version; use another {option('workdir')}"
        )
    if meta.get("state_format") != STATE_FORMAT:
        raise InputError(
            f"{where} holds a checkpoint of state format {meta.get('state_format')!r}, this version reads "
            f"{STATE_FORMAT}; train afresh in another {option('workdir')}"
        )
    try:
        return TrainConfig(**recorded)
    except (TypeError, ValueError) as e:  # ValueError: a ConfigError
        raise InputError(f"{where} holds a checkpoint with an invalid config ({reason(e)})") from e


def check_resumable(
    meta: dict[str, Any], config: TrainConfig, style_sums: Sequence[str], photos_sum: str, where: str
) -> None:
    """Raises InputError naming the first difference between a checkpointed run and this one:
    a setting, the style images (their pixels: the files may have moved) or the photos."""
    saved_config = _config_from_meta(meta, where)
    for field in dataclasses.fields(TrainConfig):
        saved, wanted = getattr(saved_config, field.name), getattr(config, field.name)
        if field.name != "style" and saved != wanted:
            raise InputError(
                f"{where} holds a run with {option(field.name)} {saved}, not {wanted}; "
                f"pass {option(field.name)} {saved} to resume it, or use another {option('workdir')}"
            )
    if meta.get("style_sha256") != list(style_sums):
        shown = ", ".join(Path(p).name for p in saved_config.style)
        raise InputError(
            f"{where} holds a run trained on other style images ({shown}) than {option('style')} "
            f"{', '.join(config.style)}; give its style images, in its order, to resume it, or use another {option('workdir')}"
        )
    if meta.get("photos_sha256") != photos_sum:
        raise InputError(
            f"{where} holds a run trained on other photos ({meta.get('content')!r}) than {option('content')}; "
            f"use the same photos to resume it, or use another {option('workdir')}"
        )


def _resume_or_init(
    mesh: Mesh, manager: Checkpoints, workdir: Path, config: TrainConfig, meta: dict[str, Any], key: jax.Array
) -> FastState:
    """The state of the latest checkpoint, checked to belong to this run, or a fresh one; replicated on `mesh`."""
    sharding = NamedSharding(mesh, P())
    step = manager.latest_step()
    if step is None:
        fresh = jax.jit(lambda k: init(jax.random.wrap_key_data(k), config), out_shardings=sharding)
        return fresh(replicated(mesh, np.asarray(jax.random.key_data(key))))
    saved = manager.read_meta(step)
    check_resumable(saved, config, meta["style_sha256"], meta["photos_sha256"], f"{option('workdir')} {str(workdir)!r}")
    target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), state_shapes(config))
    return manager.restore(step, saved, target)


@functools.cache
def _compiled_steps(mesh: Mesh) -> Callable[..., tuple[FastState, Metrics]]:
    """`steps(state, batches, key_data, objective)`: len(batches) steps on `mesh`, the batches
    (L, B, size, size, 3) split along B over "data", the rest replicated, donating the state;
    metrics come back replicated, each of shape (L, 1) (one run)."""
    replicated_sharding = NamedSharding(mesh, P())

    def steps(state: FastState, batches: jax.Array, key: jax.Array, objective: Objective) -> tuple[FastState, Metrics]:
        state, metrics = scan_steps(state, batches, jax.random.wrap_key_data(key), objective)
        return state, {name: m[:, None] for name, m in metrics.items()}

    return jax.jit(
        steps,
        in_shardings=(replicated_sharding, _batch_sharding(mesh), replicated_sharding, replicated_sharding),
        out_shardings=(replicated_sharding, replicated_sharding),
        donate_argnums=0,
    )


def _batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(None, DATA))


class _Feed:
    """The global batches of crops of each compiled call, this process drawing only its rows;
    a thread draws the next call's crops (guessed: the same length) while the devices compute."""

    def __init__(self, mesh: Mesh, data: photos.Photos, batch_size: int, total: int):
        self.sharding, self.data, self.batch_size, self.total = _batch_sharding(mesh), data, batch_size, total
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jaxart-crops")
        self.next: tuple[tuple[int, int], Future] | None = None

    def __enter__(self) -> _Feed:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    def _shape(self, length: int) -> tuple[int, ...]:
        return (length, self.batch_size, self.data.size, self.data.size, 3)

    def _rows(self, length: int) -> list[int]:
        """The batch rows this process's devices hold, in order."""
        shape = self._shape(length)
        spans = {
            (index[1].start or 0, shape[1] if index[1].stop is None else index[1].stop)
            for index in self.sharding.addressable_devices_indices_map(shape).values()
            if index is not None
        }
        return [row for start, stop in sorted(spans) for row in range(start, stop)]

    def _draw(self, done: int, length: int) -> np.ndarray:
        return self.data.batches(done, length, self.batch_size, self._rows(length))

    def __call__(self, done: int, length: int) -> jax.Array:
        if self.next is not None and self.next[0] == (done, length):
            local = self.next[1].result()
        else:
            local = self.pool.submit(self._draw, done, length).result()
        ahead = done + length
        self.next = ((ahead, length), self.pool.submit(self._draw, ahead, length)) if ahead < self.total else None
        return jax.make_array_from_process_local_data(self.sharding, local, self._shape(length))


@dataclasses.dataclass
class _Job:
    """The job's side of a training run: its folder, checkpoints and log, and the actions on them."""

    workdir: Path
    config: TrainConfig
    run: RunConfig
    manager: Checkpoints
    meta: dict[str, Any]
    log: training.MetricsLog
    preview_inputs: tuple[np.ndarray, np.ndarray] | None  # (photos, style thumbnails), uint8, in the writer
    last_plot: float = dataclasses.field(default_factory=time.perf_counter)

    def actions(self) -> list[training.Periodic]:
        """The checkpoint last: a run resumes after its checkpoint's step and never redoes that
        step's actions, so one killed between them would lose a preview taken after the save."""
        return [
            training.Periodic(self.preview, self.run.preview_every or self.run.checkpoint_every, at_end=True),
            training.Periodic(self.plot, self.run.checkpoint_every, at_end=True),
            training.Periodic(self.checkpoint, self.run.checkpoint_every, at_end=True),
        ]

    def checkpoint(self, state: FastState, step: int) -> None:
        self.manager.save(state, self.meta)

    def preview(self, state: FastState, step: int) -> None:
        if self.preview_inputs is None:
            return
        pictures, thumbs = self.preview_inputs
        params = jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), state.params)
        count = len(thumbs)
        mix = np.tile(np.eye(count, dtype=np.float32), (len(pictures), 1))
        styled = np.asarray(stylize(params, np.repeat(pictures, count, axis=0), mix, self.config))
        blank = np.ones_like(styled[:1])
        rows = [np.concatenate([blank, images.to_float(thumbs)])]
        for p, picture in enumerate(pictures):
            rows.append(np.concatenate([images.to_float(picture)[None], styled[p * count : (p + 1) * count]]))
        grid = images.make_grid(np.concatenate(rows), ncols=count + 1)
        images.save_image(self.workdir / "previews" / f"step_{step:06d}.png", grid)

    def plot(self, state: FastState, step: int) -> None:
        due = step == self.run.max_steps or time.perf_counter() - self.last_plot >= _PLOT_EVERY_SECONDS
        if not (due and distributed.is_writer()):
            return
        self.log.plot(self.workdir / "loss_curves.png", _LABELS, title="fast style training (window means)")
        self.last_plot = time.perf_counter()

    def diverged(self, r: int, bad: training.NonFinite) -> RunError:
        step, name, value = bad
        steps = self.manager.steps()
        kept = f"the last checkpoint, step {steps[-1]}, is finite" if steps else "no checkpoint was saved"
        return RunError(
            f"training diverged: {name} is {value} at step {step} ({option('lr')} {self.config.lr:g}); {kept}"
        )


def summary(run: RunConfig, seconds: float) -> str:
    """The line `fast train` ends with: how far the run got and in what wall time, its final
    losses (the last line of its metrics.jsonl) and where the files are."""
    workdir = Path(run.workdir)
    rows = read_json_lines(workdir / "metrics.jsonl")
    if not rows:
        return f"no steps were trained; the run's files are in {workdir}"
    last = rows[-1]
    losses = ", ".join(f"{label} {last[name]:.4g}" for name, label in zip(METRICS, _LABELS))
    return (
        f"trained to step {last['step']} in {seconds:.1f} s; final {losses}; "
        f"checkpoints, previews/, metrics.jsonl and loss_curves.png in {workdir}"
    )


def load_trained(workdir: str | os.PathLike) -> tuple[TrainConfig, Any]:
    """The run's config (as its checkpoint records it, style weight resolved) and the network's
    params at the latest checkpoint, verified against its checksum.

    Raises InputError if `workdir` is not a fast-training folder, has no checkpoint, or its
    checkpoint cannot be read or fails its checks."""
    folder = Path(workdir)
    if not folder.is_dir() or not is_workdir(folder, LAYOUT):
        raise InputError(f"{option('workdir')} {str(folder)!r} is not the folder of a fast-style training run")
    missing = f"{option('workdir')} {str(folder)!r} holds no checkpoint yet; train on until one is saved"
    state, meta = restore_latest(
        folder, missing, lambda meta, where: local_target(state_shapes(_config_from_meta(meta, where)))
    )
    return _config_from_meta(meta, str(folder)), state.params  # read and checked as restored: cheap, pure


def load_network(workdir: str | os.PathLike) -> tuple[Transformer, Any, list[str]]:
    """The network trained in `workdir` at its latest checkpoint: (module, params, the style
    images' file names, in the order of the network's styles), for `module.apply({"params":
    params}, images, mix)`. Raises InputError as `load_trained` does."""
    config, params = load_trained(workdir)
    return config.network, params, [Path(p).name for p in config.style]
