"""The training driver: data on the device, compiled calls of `train_steps`, and their side effects.

`train` runs "for each compiled call: run it, then the hooks due at the step it ends on"
(metrics, evaluation, checkpoint, epoch preview), with the calls from `jaxart.schedule`.

Workdir layout:
  checkpoints/<step>/     orbax checkpoints (the latest few)
  metrics.jsonl           one line per step: step, epoch, d_loss, g_loss, d_x, d_g_z, seconds
  samples/epoch_NNN.png   the generator on one fixed latent batch after every epoch (and at the end)
  loss_curves.png         the four metrics against the step
  eval.jsonl, eval.png    with --eval-every: the judge's metrics every N steps, and the latest figure
  train.lock              held by the run training in the folder (see `jaxart.gan.workdir`)
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from jaxart import data, distributed, schedule
from jaxart.errors import InputError, RunError
from jaxart.files import JsonLinesWriter, keep_json_lines
from jaxart.gan import parallel
from jaxart.gan.checkpoint import Checkpoints, check_resumable, run_meta
from jaxart.gan.config import GANConfig, RunConfig
from jaxart.gan.models import steps_per_call
from jaxart.gan.train import GANState, RunKeys, init_state, run_keys, sample, train_steps
from jaxart.gan.workdir import EVAL_FILE, check_workdir, locked
from jaxart.images import make_grid, save_image

METRICS = ("d_loss", "g_loss", "d_x", "d_g_z")
RUN_FOLDER = "run-{:03d}"  # of --runs R: run r's folder in the workdir
PREVIEW_SIZE = 64
LOG_EVERY_STEPS = 100  # fetch metrics from the device in blocks, so dispatch runs ahead of the host
PLOT_EVERY_SECONDS = 30.0  # plotting all steps costs a moment; per epoch would slow short epochs


def up_to(step: int):
    """Keeps the JSON lines of steps up to `step`: later ones were written after the checkpoint
    a run resumes from, by a run then stopped, and the resumed run writes them again."""
    return lambda row: row.get("step", math.inf) <= step


class MetricsLog:
    """metrics.jsonl, consistent with the checkpoint a run resumes from, written from the
    compiled calls' metrics in blocks, each checked for NaN and infinity as it arrives."""

    def __init__(self, path: Path, resume_step: int, steps_per_epoch: int, write: bool = True, run: int | None = None):
        """write: False in all processes but the writer, which reads the same metrics.
        run: of `--runs R` (metrics of shape (steps, R)), the run whose column this log keeps."""
        self.run = run
        self.rows = keep_json_lines(path, up_to(resume_step)) if write else []
        self.steps_per_epoch = steps_per_epoch
        self.seconds = self.rows[-1]["seconds"] if self.rows else 0.0  # training time, evaluations excluded
        self.writer = JsonLinesWriter(path) if write else None
        self.pending: list[tuple[int, dict[str, jax.Array]]] = []  # (steps before the call, its metrics)
        self.clock = time.perf_counter()

    def close(self) -> None:
        if self.writer:
            self.writer.close()

    def add(self, done: int, metrics: dict[str, jax.Array]) -> None:
        self.pending.append((done, metrics))

    def pending_steps(self) -> int:
        return sum(len(m[METRICS[0]]) for _, m in self.pending)

    def flush(self, all_calls: bool = True) -> tuple[dict[str, Any] | None, tuple[int, str, float] | None]:
        """Fetches pending metrics and appends their lines. all_calls=False leaves the latest
        call on the device, so fetching does not wait for the computation just dispatched.

        Returns (the last line written, None) or, at the first non-finite value,
        (its step, metric, value) in place of None, with only the lines before it written.
        """
        blocks = self.pending if all_calls else self.pending[:-1]
        if not blocks:
            return None, None
        host = jax.device_get([metrics for _, metrics in blocks])
        self.pending = self.pending[len(blocks) :]
        now = time.perf_counter()
        self.seconds += now - self.clock
        self.clock = now
        rows, bad = [], None
        for (first, _), metrics in zip(blocks, host):
            for i in range(len(metrics[METRICS[0]])):
                values = {
                    name: float(metrics[name][i] if self.run is None else metrics[name][i, self.run])
                    for name in METRICS
                }
                bad = next(((first + i + 1, n, v) for n, v in values.items() if not math.isfinite(v)), None)
                if bad:
                    break
                rows.append(
                    {
                        **({} if self.run is None else {"run": self.run}),
                        "step": first + i + 1,
                        "epoch": (first + i) // self.steps_per_epoch + 1,
                        **{name: round(value, 6) for name, value in values.items()},
                        "seconds": round(self.seconds, 3),
                    }
                )
            if bad:
                break
        if self.writer:
            self.writer.write(rows)
            self.rows.extend(rows)
        return (rows[-1] if rows else None), bad

    def restart_clock(self) -> None:
        """Leaves the time since the last flush out of the training time (an evaluation's)."""
        self.clock = time.perf_counter()

    def plot(self, path: Path, points: int = 1000) -> None:
        """Loss curves, each value averaged over windows so that at most ~`points` remain."""
        from jaxart.plots import save_loss_curves  # deferred: matplotlib takes a second to import

        if not self.rows:
            return
        window = max(1, len(self.rows) // points)
        n = len(self.rows) // window * window or len(self.rows)
        window = min(window, n)
        steps = [row["step"] for row in self.rows[window - 1 : n : window]]
        curves = {
            label: np.mean(np.array([row[name] for row in self.rows[:n]]).reshape(-1, window), axis=1).tolist()
            for name, label in zip(METRICS, ("d_loss", "g_loss", "D(x)", "D(G(z))"))
        }
        save_loss_curves(path, curves, steps, title="GAN training (window means)", log_y=False)


@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def epoch_order(
    key: jax.Array, epoch: int | jax.Array, num_images: int, num_batches: int, batch_size: int
) -> jax.Array:
    """The (num_batches * batch_size,) int32 image indices of one epoch; the partial batch is dropped."""
    order = jax.random.permutation(jax.random.fold_in(key, epoch), num_images)
    return order[: num_batches * batch_size].astype(jnp.int32)


def preview_path(workdir: Path, step: int, steps_per_epoch: int) -> Path:
    name = f"epoch_{step // steps_per_epoch:03d}" if step % steps_per_epoch == 0 else f"step_{step:07d}"
    return workdir / "samples" / f"{name}.png"


def save_preview(path: Path, state: GANState, key: jax.Array) -> None:
    """The preview grid, by the writer process (a no-op in the others)."""
    if not distributed.is_writer():
        return
    state = parallel.local(state)
    images = sample(state.g_params, key, PREVIEW_SIZE, state.config, state.g_collections)
    save_image(path, make_grid(np.asarray(images), ncols=8))


def resume_or_init(
    checkpoints: Checkpoints, config: GANConfig, run: RunConfig, data_checksum: str, layout: parallel.Layout | None
) -> GANState:
    """The latest checkpointed state if it belongs to this run (else InputError), or a fresh one,
    laid out on `layout` (None: one device) whatever layout wrote it."""
    latest = checkpoints.latest_step()
    if latest is None:
        return parallel.init(layout, config) if layout else init_state(run_keys(config.seed).init, config)
    meta = checkpoints.read_meta(latest)
    check_resumable(meta, config, run.data, data_checksum, f"--workdir {run.workdir!r}")
    return checkpoints.restore(latest, config, meta, parallel.abstract_state(layout, config) if layout else None)


def diverged(bad: tuple[int, str, float], checkpoints: Checkpoints, config: GANConfig) -> RunError:
    step, name, value = bad
    steps = checkpoints.steps()
    kept = f"the last checkpoint, step {steps[-1]}, is finite" if steps else "no checkpoint was saved"
    return RunError(f"training diverged: {name} is {value} at step {step} (--lr {config.lr:g}); {kept}")


def total_steps(run: RunConfig, steps_per_epoch: int) -> int:
    total = run.epochs * steps_per_epoch
    return total if run.max_steps is None else min(total, run.max_steps)


def train(config: GANConfig, run: RunConfig) -> GANState:
    """Trains the run in `run.workdir` from its latest checkpoint (or from scratch) to the end.

    With `run.eval_every`, the judge for `run.data` (loaded, or trained and cached, once)
    measures the generator every that many steps and at the end, into workdir/eval.jsonl.

    Raises InputError for unusable data, a workdir that is a file or cannot be written, a
    checkpoint of a different run, or one that cannot be read or fails its checksum; nothing
    is written before these checks pass. Raises RunError when another run holds the workdir,
    training diverges (no checkpoint of the non-finite state is written) or a checkpoint
    cannot be saved (the earlier ones stay).
    """
    workdir = check_workdir(run.workdir)
    evaluation = None
    if run.eval_every:
        from jaxart.gan.evaluate import eval_config  # deferred: the judge's imports

        evaluation = eval_config(run.eval_samples, what="--eval-samples")
    dataset = data.load(run.data)
    steps_per_epoch = len(dataset.images) // config.batch_size
    if steps_per_epoch == 0:
        raise InputError(
            f"--data {run.data!r} has {len(dataset.images)} images, fewer than --batch-size {config.batch_size}"
        )
    total = total_steps(run, steps_per_epoch)
    checksum = dataset.checksum()
    keys = run_keys(config.seed)
    if run.runs > 1:
        return train_runs(config, run, dataset.images, total, checksum, evaluation)
    layout = parallel.layout_for(config, run)
    writer = distributed.is_writer()  # the other processes compute and save checkpoints, and write nothing else

    with (
        locked(workdir) if writer else contextlib.nullcontext(),
        Checkpoints(workdir, run.keep_checkpoints) as checkpoints,
    ):
        state = resume_or_init(checkpoints, config, run, checksum, layout)
        checkpoints.trim()
        start = int(state.step)
        evaluator = Evaluator(run, evaluation, workdir) if evaluation is not None and start < total else None
        if writer:
            (workdir / "samples").mkdir(exist_ok=True)
            # An evaluation is recorded before its step's checkpoint, so a record past the
            # checkpoint resumed from belongs to a stopped run, and is redone if asked for.
            keep_json_lines(workdir / EVAL_FILE, up_to(start))
        log = MetricsLog(workdir / "metrics.jsonl", start, steps_per_epoch, write=writer)
        meta = run_meta(config, run.data, checksum)
        engine = parallel.Engine(layout, config, dataset.images, epoch_order) if layout else None
        try:
            state = _run_calls(
                state, config, run, keys, dataset.images, total, checkpoints, meta, log, evaluator, workdir, engine
            )
            _, bad = log.flush()
            if bad:
                raise diverged(bad, checkpoints, config)
            checkpoints.save(state, meta)
            save_preview(preview_path(workdir, total, steps_per_epoch), state, keys.preview)
            if writer:
                log.plot(workdir / "loss_curves.png")
        finally:
            log.close()
    return state


def run_folders(workdir: Path, runs: int) -> list[Path]:
    """The folders of `--runs R`'s runs in `workdir`: each a single run's workdir."""
    return [workdir / RUN_FOLDER.format(r) for r in range(runs)]


def resume_or_init_runs(
    managers: list[Checkpoints], configs: list[GANConfig], run: RunConfig, checksum: str, layout: parallel.Layout
) -> tuple[GANState, int]:
    """The runs' states stacked from their latest common checkpoint (they save together, but a
    kill may fall between two of their saves), or fresh ones; and the step."""
    if not any(m.steps() for m in managers):
        return parallel.init(layout, configs[0]), 0
    common = set.intersection(*(set(m.steps()) for m in managers))
    if not common:
        raise InputError(
            f"--workdir {run.workdir!r}: its runs have no checkpointed step in common; "
            "resume with the --runs it was started with, or use another --workdir"
        )
    step = max(common)
    states = []
    for manager, config in zip(managers, configs):
        meta = manager.read_meta(step)
        check_resumable(meta, config, run.data, checksum, f"--workdir {str(manager.directory.parent)!r}")
        states.append(manager.restore(step, config, meta, parallel.abstract_state(parallel.one_run(layout), config)))
    return parallel.stack(layout, states, configs[0]), step


def train_runs(
    config: GANConfig, run: RunConfig, images: np.ndarray, total: int, checksum: str, evaluation: Any
) -> list[GANState]:
    """`run.runs` independent runs in one program (`parallel`: vmapped, on a ("runs", "data")
    mesh): run r is the run of seed `config.seed + r`, kept in workdir/run-RRR as a single run's
    folder (checkpoints, metrics.jsonl with a `run` field, samples, eval.jsonl), which `sample`
    and `eval` read as one. Returns the runs' final states (on the host)."""
    workdir = Path(run.workdir)
    layout = parallel.make_layout(config.batch_size, run.devices, run.runs)
    configs = [dataclasses.replace(config, seed=s) for s in parallel.run_seeds(config.seed, run.runs)]
    folders = run_folders(workdir, run.runs)
    steps_per_epoch = len(images) // config.batch_size
    writer = distributed.is_writer()
    with contextlib.ExitStack() as stack:
        if writer:
            stack.enter_context(locked(workdir))
        managers = [stack.enter_context(Checkpoints(folder, run.keep_checkpoints)) for folder in folders]
        state, start = resume_or_init_runs(managers, configs, run, checksum, layout)
        for manager in managers:
            manager.trim()
        logs = [
            MetricsLog(folder / "metrics.jsonl", start, steps_per_epoch, write=writer, run=r)
            for r, folder in enumerate(folders)
        ]
        for log in logs:
            stack.callback(log.close)
        if writer:
            for folder in folders:
                (folder / "samples").mkdir(exist_ok=True)
                keep_json_lines(folder / EVAL_FILE, up_to(start))
        evaluators = [Evaluator(run, evaluation, f) for f in folders] if evaluation is not None else []
        metas = [run_meta(c, run.data, checksum) for c in configs]
        previews = [run_keys(c.seed).preview for c in configs]
        engine = parallel.Engine(layout, config, images, epoch_order)
        stops = [
            *schedule.every(start, total, steps_per_epoch),
            *schedule.every(start, total, run.checkpoint_every),
            *schedule.every(start, total, run.eval_every if evaluators else None),
        ]
        writer_bar = None if writer else True
        with tqdm(total=total, initial=start, unit="step", dynamic_ncols=True, disable=writer_bar) as bar:
            for done, length in schedule.calls(start, total, steps_per_call(config, run.steps_per_call), stops):
                state, metrics = engine(state, done, length)
                step = done + length
                bar.update(length)
                at_checkpoint = schedule.due(step, run.checkpoint_every) or step == total
                at_eval = bool(evaluators) and (schedule.due(step, run.eval_every) or step == total)
                at_epoch_end = step % steps_per_epoch == 0 or step == total
                for r, log in enumerate(logs):
                    log.add(done, metrics)
                    if at_checkpoint or at_eval or at_epoch_end or log.pending_steps() >= LOG_EVERY_STEPS:
                        _, bad = log.flush()
                        if bad:
                            raise diverged((bad[0], f"run {r}'s {bad[1]}", bad[2]), managers[r], config)
                if not (at_checkpoint or at_eval or at_epoch_end):
                    continue
                runs = parallel.unstack(layout, state, configs)
                if at_eval:
                    for r, evaluate in enumerate(evaluators):
                        if line := evaluate(runs[r]):
                            bar.write(f"run {r}, {line}")
                    for log in logs:
                        log.restart_clock()
                if at_checkpoint:
                    for manager, one, meta in zip(managers, runs, metas):
                        manager.save(one, meta)
                if at_epoch_end:
                    for folder, one, key in zip(folders, runs, previews):
                        save_preview(preview_path(folder, step, steps_per_epoch), one, key)
        if writer:
            for folder, log in zip(folders, logs):
                log.plot(folder / "loss_curves.png")
        runs = parallel.unstack(layout, state, configs)
    return [parallel.local(one) for one in runs]


class Evaluator:
    """The judge and reference statistics of `--eval-every`, loaded once, at the first use."""

    def __init__(self, run: RunConfig, evaluation: Any, workdir: Path):
        self.run, self.evaluation, self.workdir = run, evaluation, workdir
        self.loaded: tuple[Any, Any] | None = None

    def due(self, step: int, total: int) -> bool:
        return schedule.due(step, self.run.eval_every) or step == total

    def __call__(self, state: GANState) -> str:
        from jaxart.gan.evaluate import evaluate_state, load_judge_and_reference, summary

        if not distributed.is_writer():
            return ""
        if self.loaded is None:
            self.loaded = load_judge_and_reference(self.run.data)
        record = evaluate_state(parallel.local(state), self.workdir, *self.loaded, self.evaluation)
        return f"step {record['step']}: {summary(record)}"


def _run_calls(
    state: GANState,
    config: GANConfig,
    run: RunConfig,
    keys: RunKeys,
    images: np.ndarray,
    total: int,
    checkpoints: Checkpoints,
    meta: dict[str, Any],
    log: MetricsLog,
    evaluator: Evaluator | None,
    workdir: Path,
    engine: parallel.Engine | None = None,
) -> GANState:
    """The compiled calls from the state's step to `total`, each followed by its due hooks.

    engine: the steps on a mesh of devices and processes (None: `train_steps` on one device)."""
    steps_per_epoch = len(images) // config.batch_size
    start = int(state.step)
    stops = [
        *schedule.every(start, total, steps_per_epoch),
        *schedule.every(start, total, run.checkpoint_every),
        *schedule.every(start, total, run.eval_every if evaluator else None),
    ]
    device_images = jax.device_put(images)
    epochs = math.ceil(total / steps_per_epoch)
    order_epoch, order = None, None
    last_plot = time.perf_counter()
    # disable=None: a bar only on a terminal; redirected, stderr keeps just what went wrong.
    # One bar for a run of many processes: the writer's.
    writer = distributed.is_writer()
    with tqdm(total=total, initial=start, unit="step", dynamic_ncols=True, disable=None if writer else True) as bar:
        for done, length in schedule.calls(start, total, steps_per_call(config, run.steps_per_call), stops):
            epoch = done // steps_per_epoch
            if epoch != order_epoch:
                order_epoch = epoch
                order = epoch_order(keys.data, epoch, len(images), steps_per_epoch, config.batch_size)
                bar.set_description(f"epoch {epoch + 1}/{epochs}")
            if engine is None:
                start_in_epoch = done - epoch * steps_per_epoch
                state, metrics = train_steps(state, device_images, order, start_in_epoch, keys.train, length=length)
            else:
                state, metrics = engine(state, done, length)
            log.add(done, metrics)
            step = done + length
            bar.update(length)

            at_checkpoint = schedule.due(step, run.checkpoint_every)
            at_eval = evaluator is not None and evaluator.due(step, total)
            at_epoch_end = step % steps_per_epoch == 0
            hooks = at_checkpoint or at_eval or at_epoch_end
            if hooks or log.pending_steps() >= LOG_EVERY_STEPS:
                last, bad = log.flush(all_calls=hooks)
                if bad:
                    raise diverged(bad, checkpoints, config)
                if last:
                    bar.set_postfix({name: f"{last[name]:.3f}" for name in METRICS}, refresh=False)
            if at_eval:
                if line := evaluator(state):
                    bar.write(line)
                log.restart_clock()
            if at_checkpoint:
                checkpoints.save(state, meta)
            if at_epoch_end and step < total:
                save_preview(preview_path(workdir, step, steps_per_epoch), state, keys.preview)
                if log.writer and time.perf_counter() - last_plot >= PLOT_EVERY_SECONDS:
                    log.plot(workdir / "loss_curves.png")
                    last_plot = time.perf_counter()
    return state
