"""The GAN job: `train` sets up R runs (1 for a plain run) on a mesh and hands them to
`jaxart.training.train_loop` with its periodic actions (evaluation, checkpoint, preview, plot).

Workdir layout of a plain run (`runs` 1):
  checkpoints/<step>/     orbax checkpoints (the latest few)
  metrics.jsonl           one line per step: step, epoch, d_loss, g_loss, d_x, d_g_z, seconds
  samples/epoch_NNN.png   the generator (its moving average, if kept) on one fixed latent batch
                          after every epoch (and at the end); a conditional one's has a
                          column per class
  loss_curves.png         the four metrics against the step
  eval.jsonl, eval.png    with `eval_every`: the judge's metrics every N steps, and the latest figure
  tb/                     TensorBoard event files (with `tensorboard`): the metrics, the sample
                          grids and the evaluations' scores
  train.lock              held by the run training in the folder (see `jaxart.gan.workdir`)
With `runs` R > 1, run r's folder run-RRR holds the same (its metrics lines with a `run` field),
and the lock stays at the top.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh

from jaxart import data, distributed, training
from jaxart.checkpoint import Checkpoints
from jaxart.errors import ConfigError, InputError, RunError, option
from jaxart.files import keep_json_lines, read_json_lines
from jaxart.gan import parallel
from jaxart.gan.checkpoint import check_resumable, restore, run_meta
from jaxart.gan.config import GANConfig, RunConfig
from jaxart.gan.models import steps_per_call
from jaxart.gan.train import GANState, Metrics, epoch_order, run_keys, sample_state
from jaxart.gan.workdir import EVAL_FILE, check_workdir, locked
from jaxart.images import make_grid, save_image
from jaxart.tensorboard import TensorBoard

METRICS = ("d_loss", "g_loss", "d_x", "d_g_z")
_METRIC_LABELS = ("d_loss", "g_loss", "D(x)", "D(G(z))")
RUN_FOLDER = "run-{:03d}"  # of `runs` R > 1: run r's folder in the workdir
_PREVIEW_SIZE = 64
# A conditional model's: a column per class (`sample`'s default labels cycle through them).
_CONDITIONAL_PREVIEW = 100, data.NUM_CLASSES
_PLOT_EVERY_SECONDS = 30.0  # plotting all steps costs a moment; per epoch would slow short epochs
# An evaluation's numbers that TensorBoard draws (as eval/<name>).
_EVAL_SCALARS = ("fcd", "inception_score", "kl_to_uniform", "precision", "recall", "min_class_accuracy")


def train(config: GANConfig, run: RunConfig) -> GANState:
    """Trains the `run.runs` runs of `config` in `run.workdir` from their latest checkpoint (or
    from scratch) to the end; returns their final state (with a leading runs axis).

    Run r is `config.run(r, run.runs)`: seed + r, and the r-th rate of a sweep. With
    `run.eval_every`, the judge for `run.data` (loaded, or trained and cached, once) measures the
    generators every that many steps and at the end, into each run's eval.jsonl.

    Raises InputError (ConfigError for values) for unusable data or settings, a workdir that is
    a file or cannot be written, a checkpoint of a different run, or one that cannot be read or
    fails its checksum; nothing is written before these checks pass. Raises RunError when another
    run holds the workdir, training diverges (no checkpoint of the non-finite state is written)
    or a checkpoint cannot be saved (the earlier ones stay).
    """
    workdir = check_workdir(run.workdir)
    configs = [config.run(r, run.runs) for r in range(run.runs)]
    evaluation = None
    if run.eval_every:
        from jaxart.gan.evaluate import eval_config  # deferred: the judge's imports

        evaluation = eval_config(run.eval_samples, what=option("eval_samples"))
    dataset = data.load(run.data)
    if config.conditional:
        data.check_labels(dataset, f"a {option('conditional')} model's {option('data')} {run.data!r}")
    steps_per_epoch = len(dataset.images) // config.batch_size
    if steps_per_epoch == 0:
        raise ConfigError(
            f"{option('data')} {run.data!r} has {len(dataset.images)} images, "
            f"fewer than {option('batch_size')} {config.batch_size}"
        )
    mesh = parallel.make_mesh(config.batch_size, run.devices, run.runs)
    total = run.epochs * steps_per_epoch if run.max_steps is None else min(run.epochs * steps_per_epoch, run.max_steps)
    checksum = dataset.checksum()
    folders = [workdir] if run.runs == 1 else [workdir / RUN_FOLDER.format(r) for r in range(run.runs)]
    writer = distributed.is_writer()  # the other processes compute and save checkpoints, and write nothing else
    with contextlib.ExitStack() as stack:
        if writer:
            stack.enter_context(locked(workdir))
        managers = [stack.enter_context(Checkpoints(folder, run.keep_checkpoints)) for folder in folders]
        state = _resume_or_init(mesh, managers, folders, configs, run.data, checksum)
        start = parallel.step_of(state)
        for manager in managers:
            manager.trim()
        if writer:
            for folder in folders:
                (folder / "samples").mkdir(exist_ok=True)
                # An evaluation is recorded before its step's checkpoint, so a record past the
                # checkpoint resumed from belongs to a stopped run, and is redone if asked for.
                keep_json_lines(folder / EVAL_FILE, training.up_to(start))
        events = [
            stack.enter_context(contextlib.closing(TensorBoard(folder, start))) if writer and run.tensorboard else None
            for folder in folders
        ]
        logs = [
            stack.enter_context(
                contextlib.closing(
                    training.MetricsLog(
                        folder / "metrics.jsonl",
                        METRICS,
                        start,
                        steps_per_epoch,
                        column=r,
                        label={"run": r} if run.runs > 1 else None,
                        write=writer,
                        events=events[r],
                    )
                )
            )
            for r, folder in enumerate(folders)
        ]
        metas = [run_meta(c, run.data, checksum) for c in configs]
        job = _Job(mesh, folders, configs, managers, metas, logs, events, run, total, steps_per_epoch, evaluation)
        context = training.RunContext(
            start, total, steps_per_call(config, run.steps_per_call), steps_per_epoch, logs, job.diverged
        )
        training_data = (dataset.images, dataset.labels) if config.conditional else dataset.images
        advance = _advance(mesh, configs, training_data, steps_per_epoch)
        state = training.train_loop(state, advance, context, job.actions(evaluate=start < total))
    return state


def _resume_or_init(
    mesh: Mesh,
    managers: Sequence[Checkpoints],
    folders: Sequence[Path],
    configs: Sequence[GANConfig],
    data_name: str,
    data_checksum: str,
) -> GANState:
    """The runs' states stacked from their latest common checkpoint (they save together, but a
    kill may fall between two of their saves), each checked to belong to its run; or fresh ones."""
    if not any(m.steps() for m in managers):
        return parallel.init_runs(mesh, configs)
    common = set.intersection(*(set(m.steps()) for m in managers))
    if not common:
        raise InputError(
            f"{option('workdir')} {str(folders[0].parent)!r}: its runs have no checkpointed step in common; "
            f"resume with the {option('runs')} it was started with, or use another {option('workdir')}"
        )
    step = max(common)
    target = parallel.one_run_target(mesh, configs[0].static)
    states = []
    for manager, folder, config in zip(managers, folders, configs):
        meta = manager.read_meta(step)
        check_resumable(meta, config, data_name, data_checksum, f"{option('workdir')} {str(folder)!r}")
        states.append(restore(manager, step, meta, target))
    return parallel.stack(mesh, states)


def _advance(
    mesh: Mesh, configs: Sequence[GANConfig], images: Any, steps_per_epoch: int
) -> Callable[[GANState, int, int], tuple[GANState, Metrics]]:
    """`advance(state, done, length)`: `length` steps from step `done` (within one epoch).
    images: (N, 28, 28), or (images, labels) for a conditional model.

    In one process the data set stays on the devices and each call gathers its batches there;
    with several, each call's global batches are assembled from the processes' rows."""
    batch_size = configs[0].batch_size
    num_images = len(jax.tree.leaves(images)[0])
    keys = parallel.train_keys(mesh, configs)
    data_keys = [run_keys(c.seed).data for c in configs]
    gather = jax.process_count() == 1
    compiled = parallel.compiled_steps(mesh, len(configs), gather)
    device_images = parallel.replicated(mesh, images) if gather else None

    @functools.lru_cache(maxsize=1)
    def orders(epoch: int) -> tuple[np.ndarray, jax.Array]:
        """The runs' image orders (R, M) of one epoch, the same in every process: on the host
        and replicated on the mesh."""
        host = [np.asarray(epoch_order(k, epoch, num_images, steps_per_epoch, batch_size)) for k in data_keys]
        return np.stack(host), parallel.replicated(mesh, np.stack(host))

    def advance(state: GANState, done: int, length: int) -> tuple[GANState, Metrics]:
        epoch, start = divmod(done, steps_per_epoch)
        host, device = orders(epoch)
        if gather:
            return compiled(state, device_images, device, start, keys, length)
        return compiled(state, parallel.host_batches(mesh, images, host, start, length, batch_size), keys)

    return advance


def _preview_path(workdir: Path, step: int, steps_per_epoch: int) -> Path:
    """samples/epoch_NNN.png at an epoch's end, else samples/step_SSSSSSS.png."""
    name = f"epoch_{step // steps_per_epoch:03d}" if step % steps_per_epoch == 0 else f"step_{step:07d}"
    return workdir / "samples" / f"{name}.png"


@dataclasses.dataclass
class _Job:
    """The GAN's side of a training run: its runs' folders, checkpoints and logs, and the actions
    on them, each taking the state with its runs axis."""

    mesh: Mesh
    folders: Sequence[Path]
    configs: Sequence[GANConfig]
    managers: Sequence[Checkpoints]
    metas: Sequence[dict[str, Any]]
    logs: Sequence[training.MetricsLog]
    events: Sequence[TensorBoard | None]  # each run's, where it writes them
    run: RunConfig
    total: int
    steps_per_epoch: int
    evaluation: Any  # the EvalConfig of `run.eval_every`, or None
    judge: tuple[Any, Any] | None = None  # (judge, reference statistics), loaded at the first evaluation
    last_plot: float = dataclasses.field(default_factory=time.perf_counter)
    split: tuple[int, list[GANState]] | None = None

    def actions(self, evaluate: bool) -> list[training.Periodic]:
        """The checkpoint last: a run resumes after its checkpoint's step and never redoes that
        step's actions, so every output of a step is written before its checkpoint (an
        evaluation's record too, see `train`). evaluate: False where the run resumes at its end,
        evaluated already."""
        evaluation = training.Periodic(self.evaluate, self.run.eval_every, at_end=True, untimed=True)
        return [
            *([evaluation] if evaluate and self.evaluation is not None else []),
            training.Periodic(self.preview, self.steps_per_epoch, at_end=True),
            training.Periodic(self.plot, self.steps_per_epoch, at_end=True),
            training.Periodic(self.checkpoint, self.run.checkpoint_every, at_end=True),
        ]

    def runs(self, state: GANState, step: int) -> list[GANState]:
        """Each run's state, replicated; split once per step however many actions need it."""
        if self.split is None or self.split[0] != step:
            self.split = step, parallel.unstack(self.mesh, state)
        return self.split[1]

    def checkpoint(self, state: GANState, step: int) -> None:
        for manager, one, meta in zip(self.managers, self.runs(state, step), self.metas):
            manager.save(one, meta)

    def preview(self, state: GANState, step: int) -> None:
        if not distributed.is_writer():
            return
        for folder, one, config, events in zip(self.folders, self.runs(state, step), self.configs, self.events):
            n, columns = _CONDITIONAL_PREVIEW if config.conditional else (_PREVIEW_SIZE, 8)
            images = sample_state(parallel.local(one), run_keys(config.seed).preview, n)
            grid = make_grid(np.asarray(images), ncols=columns)
            save_image(_preview_path(folder, step, self.steps_per_epoch), grid)
            if events:
                events.image(step, "samples", grid)

    def plot(self, state: GANState, step: int) -> None:
        due = step == self.total or time.perf_counter() - self.last_plot >= _PLOT_EVERY_SECONDS
        if not (due and distributed.is_writer()):
            return
        for folder, log in zip(self.folders, self.logs):
            log.plot(folder / "loss_curves.png", _METRIC_LABELS, title="GAN training (window means)")
        self.last_plot = time.perf_counter()

    def evaluate(self, state: GANState, step: int) -> str | None:
        from jaxart.gan.evaluate import evaluate_state, load_judge_and_reference, summary

        if not distributed.is_writer():
            return None
        if self.judge is None:
            self.judge = load_judge_and_reference(self.run.data)
        judge, reference = self.judge
        lines = []
        for r, (folder, one, events) in enumerate(zip(self.folders, self.runs(state, step), self.events)):
            record = evaluate_state(parallel.local(one), folder, judge, reference, self.evaluation)
            if events:
                events.scalars(step, {f"eval/{k}": v for k, v in record.items() if k in _EVAL_SCALARS})
            lines.append(("" if len(self.folders) == 1 else f"run {r}, ") + f"step {record['step']}: {summary(record)}")
        return "\n".join(lines)

    def diverged(self, r: int, bad: training.NonFinite) -> RunError:
        step, name, value = bad
        name = name if len(self.folders) == 1 else f"run {r}'s {name}"
        steps = self.managers[r].steps()
        kept = f"the last checkpoint, step {steps[-1]}, is finite" if steps else "no checkpoint was saved"
        return RunError(
            f"training diverged: {name} is {value} at step {step} ({option('lr')} {self.configs[r].lr:g}); {kept}"
        )


def summary(run: RunConfig, seconds: float) -> str:
    """The line `gan train` ends with: how far the runs got and in what wall time, each run's
    final losses (the last line of its metrics.jsonl) and where the files are."""
    workdir = Path(run.workdir)
    folders = [workdir] if run.runs == 1 else [workdir / RUN_FOLDER.format(r) for r in range(run.runs)]
    lasts = [rows[-1] for rows in (read_json_lines(f / "metrics.jsonl") for f in folders) if rows]
    if not lasts:
        return f"no steps were trained; the run's files are in {workdir}"
    finals = [
        ("" if run.runs == 1 else f"run {r}: ")
        + ", ".join(f"{label} {last[n]:.3f}" for n, label in zip(METRICS, _METRIC_LABELS))
        for r, last in enumerate(lasts)
    ]
    runs = "" if run.runs == 1 else f"{run.runs} runs to "
    return (
        f"trained {runs}step {lasts[0]['step']} (epoch {lasts[0]['epoch']}) in {seconds:.1f} s; final "
        f"{'; '.join(finals)}; checkpoints, samples/, metrics.jsonl, loss_curves.png"
        f"{' and tb/' if run.tensorboard else ''} in {workdir}"
    )
