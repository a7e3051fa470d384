"""The training driver: data on the device, compiled calls of `train_steps`, and their side effects.

Workdir layout:
  checkpoints/<step>/     orbax checkpoints (the latest few)
  metrics.jsonl           one line per step: step, epoch, d_loss, g_loss, d_x, d_g_z, seconds
  samples/epoch_NNN.png   the generator on one fixed latent batch after every epoch
  loss_curves.png         the four metrics against the step
  eval.jsonl, eval.png    with --eval-every: the judge's metrics every N steps, and the latest figure
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np
from tqdm import tqdm

from jaxart import data
from jaxart.errors import InputError
from jaxart.files import atomic_write
from jaxart.gan.checkpoint import Checkpoints, check_resumable, run_meta
from jaxart.gan.config import GANConfig
from jaxart.gan.evaluate import REPORT_FILE, eval_config, evaluate_state, load_judge_and_reference, summary
from jaxart.gan.models import steps_per_call
from jaxart.gan.train import GANState, init_state, run_keys, sample, train_steps
from jaxart.images import make_grid, save_image
from jaxart.plots import save_loss_curves

METRICS = ("d_loss", "g_loss", "d_x", "d_g_z")
PREVIEW_SIZE = 64
LOG_EVERY_STEPS = 100  # fetch metrics from the device in blocks, so dispatch runs ahead of the host
PLOT_EVERY_SECONDS = 30.0  # plotting all steps costs a moment; per epoch would slow short epochs


def rows_up_to(path: Path, resume_step: int) -> list[dict]:
    """The JSON lines of `path` (if any) with a step up to `resume_step`, rewriting the file to just those.

    Lines past the step were written after the checkpoint a run resumes from, by
    a run that was then stopped, and a line cut short by a kill is no record: the
    resumed run writes those steps again, so each step appears once.
    """
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    rows = []
    for line in lines:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and row.get("step", math.inf) <= resume_step:
            rows.append(row)
    if len(rows) != len(lines):
        text = "".join(json.dumps(row) + "\n" for row in rows)
        atomic_write(path, lambda tmp: tmp.write_text(text))
    return rows


class MetricsLog:
    """metrics.jsonl, kept consistent with the checkpoint a run resumes from (see `rows_up_to`)."""

    def __init__(self, path: Path, resume_step: int):
        self.path = path
        self.rows = rows_up_to(path, resume_step)
        self.seconds = self.rows[-1]["seconds"] if self.rows else 0.0
        self.file = path.open("a")

    def close(self) -> None:
        self.file.close()

    def write(self, blocks: Sequence[tuple[int, dict[str, np.ndarray]]], steps_per_epoch: int, seconds: float) -> dict:
        """Appends one line per step; a block (s, metrics) holds steps s+1 ... s+len.

        seconds: training time spent on the blocks (added to the run's total).
        Returns the last line.
        """
        self.seconds += seconds
        rows = [
            {
                "step": first + i + 1,
                "epoch": (first + i) // steps_per_epoch + 1,
                **{name: round(float(metrics[name][i]), 6) for name in METRICS},
                "seconds": round(self.seconds, 3),
            }
            for first, metrics in blocks
            for i in range(len(metrics[METRICS[0]]))
        ]
        self.file.write("".join(json.dumps(row) + "\n" for row in rows))
        self.file.flush()
        self.rows.extend(rows)
        return rows[-1]

    def plot(self, path: Path, points: int = 1000) -> None:
        """Loss curves, each value averaged over windows so that at most ~`points` remain."""
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


def epoch_order(key: jax.Array, epoch: int, num_images: int, num_batches: int, batch_size: int) -> jax.Array:
    """The (num_batches * batch_size,) int32 image indices of one epoch; the partial batch is dropped."""
    order = jax.random.permutation(jax.random.fold_in(key, epoch), num_images)
    return order[: num_batches * batch_size].astype(np.int32)


def call_length(step: int, boundary: int, per_call: int) -> int:
    """Steps in the next compiled call: `per_call`, or single steps up to a boundary.

    Single steps before an epoch end or a checkpoint compile once, where
    arbitrary remainders would compile one scan per length.
    """
    return per_call if boundary - step >= per_call else 1


def save_preview(path: Path, state: GANState, key: jax.Array) -> None:
    images = sample(state.g_params, key, PREVIEW_SIZE, state.config, state.g_collections)
    save_image(path, make_grid(np.asarray(images), ncols=8))


def resume_or_init(checkpoints: Checkpoints, config: GANConfig, data_checksum: str) -> GANState:
    """The latest checkpointed state if it belongs to this run (else InputError), or a fresh one."""
    latest = checkpoints.latest_step()
    if latest is None:
        return init_state(run_keys(config.seed).init, config)
    check_resumable(checkpoints.read_meta(latest), config, data_checksum, f"--workdir {config.workdir!r}")
    return checkpoints.restore(latest, config)


def train(config: GANConfig) -> GANState:
    """Trains the run in `config.workdir` from its latest checkpoint (or from scratch) to the end.

    With `config.eval_every`, the judge for `config.data` (loaded, or trained and cached, once)
    measures the generator every that many steps and at the end, into workdir/eval.jsonl.

    Raises InputError for unusable data, a workdir that is a file, a checkpoint
    of a different run, or one that cannot be read; nothing is written before
    these checks pass.
    """
    dataset = data.load(config.data)
    num_images = len(dataset.images)
    steps_per_epoch = num_images // config.batch_size
    if steps_per_epoch == 0:
        raise InputError(f"--data {config.data!r} has {num_images} images, fewer than --batch-size {config.batch_size}")
    total_steps = config.epochs * steps_per_epoch
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)
    workdir = Path(config.workdir)
    if workdir.exists() and not workdir.is_dir():
        raise InputError(f"--workdir {str(workdir)!r} is a file, expected a folder")
    evaluation = eval_config(config.eval_samples, what="--eval-samples") if config.eval_every else None
    checksum = dataset.checksum()
    meta = run_meta(config, checksum)
    keys = run_keys(config.seed)

    with Checkpoints(workdir, keep=config.keep_checkpoints) as checkpoints:
        state = resume_or_init(checkpoints, config, checksum)
        judge = reference = None
        if evaluation is not None and int(state.step) < total_steps:
            judge, reference = load_judge_and_reference(config.data)
        (workdir / "samples").mkdir(exist_ok=True)
        log = MetricsLog(workdir / "metrics.jsonl", int(state.step))
        # An evaluation is recorded before its step's checkpoint, so a record past the
        # checkpoint resumed from belongs to a stopped run, and is redone if asked for.
        rows_up_to(workdir / REPORT_FILE, int(state.step))
        images = jax.device_put(dataset.images)
        step = int(state.step)
        pending: list[tuple[int, dict]] = []  # (steps before the call, its metrics on the device)
        clock = last_plot = time.perf_counter()

        def flush() -> None:
            nonlocal clock
            host = jax.device_get([metrics for _, metrics in pending])
            now = time.perf_counter()
            last = log.write([(first, m) for (first, _), m in zip(pending, host)], steps_per_epoch, now - clock)
            clock = now
            pending.clear()
            bar.set_postfix({name: f"{last[name]:.3f}" for name in METRICS}, refresh=False)

        def boundary(step: int, every: int) -> int:
            return (step // every + 1) * every if every else total_steps

        epochs = math.ceil(total_steps / steps_per_epoch)
        try:
            with tqdm(total=total_steps, initial=step, unit="step", dynamic_ncols=True) as bar:
                while step < total_steps:
                    epoch = step // steps_per_epoch
                    bar.set_description(f"epoch {epoch + 1}/{epochs}")
                    order = epoch_order(keys.data, epoch, num_images, steps_per_epoch, config.batch_size)
                    epoch_end = min((epoch + 1) * steps_per_epoch, total_steps)
                    while step < epoch_end:
                        next_stop = min(
                            epoch_end, boundary(step, config.checkpoint_every), boundary(step, config.eval_every)
                        )
                        length = call_length(step, next_stop, steps_per_call(config))
                        start = step - epoch * steps_per_epoch
                        state, metrics = train_steps(state, images, order, start, keys.train, length=length)
                        pending.append((step, metrics))
                        step += length
                        bar.update(length)
                        at_checkpoint = step % config.checkpoint_every == 0
                        at_eval = judge is not None and (step % config.eval_every == 0 or step == total_steps)
                        if at_checkpoint or at_eval or step == epoch_end or step - pending[0][0] >= LOG_EVERY_STEPS:
                            flush()
                        if at_eval:
                            record = evaluate_state(state, workdir, judge, reference, evaluation)
                            bar.write(f"step {step}: {summary(record)}")
                            clock = time.perf_counter()  # the training time excludes evaluations
                        if at_checkpoint:
                            checkpoints.save(state, meta)
                    name = f"epoch_{epoch + 1:03d}" if step % steps_per_epoch == 0 else f"step_{step:07d}"
                    save_preview(workdir / "samples" / f"{name}.png", state, keys.preview)
                    if step == total_steps or time.perf_counter() - last_plot >= PLOT_EVERY_SECONDS:
                        log.plot(workdir / "loss_curves.png")
                        last_plot = time.perf_counter()
            checkpoints.save(state, meta)
        finally:
            log.close()
    return state
