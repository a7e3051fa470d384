"""A training driver for jobs that advance R runs by compiled calls of many steps.

A job gives `train_loop` its state, an `advance(state, done, length)` that runs `length` steps
in one compiled call and returns their metrics ((length, R) arrays), a `RunContext`, and its
side effects declared once as a list of `Periodic` actions (checkpoint, evaluation, preview,
plot). The driver splits the run into calls that end on every step an action is due (see
`jaxart.schedule`), fetches metrics in blocks into one `MetricsLog` per run, stops at the first
non-finite value, and runs the due actions in their listed order. Resume, the workdir lock and
checkpoints are the job's: the driver starts from the state it is given.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxart import distributed, schedule
from jaxart.errors import InputError
from jaxart.files import JsonLinesWriter, keep_json_lines
from jaxart.progress import Progress
from jaxart.tensorboard import TensorBoard

LOG_EVERY_STEPS = 100  # fetch metrics from the device in blocks, so dispatch runs ahead of the host

Metrics = dict[str, jax.Array]
NonFinite = tuple[int, str, float]  # (step, metric, value)


def up_to(step: int) -> Callable[[dict[str, Any]], bool]:
    """Keeps the JSON lines of steps up to `step`: later ones were written after the checkpoint
    a run resumes from, by a run then stopped, and the resumed run writes them again."""
    return lambda row: type(row.get("step")) is int and row["step"] <= step


def _check_row(row: dict[str, Any], fields: Sequence[str], path: Path) -> None:
    """InputError unless `row` holds a number for each of `fields`, as the lines jaxart writes do."""
    missing = next((f for f in fields if type(row.get(f)) not in (int, float)), None)
    if missing is not None:
        raise InputError(
            f"{str(path)!r} holds a line without a number for {missing!r} (step {row['step']}), which jaxart did "
            "not write; move the file away and the run goes on with a new log (its checkpoints stay)"
        )


class MetricsLog:
    """One run's metrics.jsonl, consistent with the checkpoint it resumes from, written from the
    compiled calls' metrics in blocks, each checked for NaN and infinity as it arrives."""

    def __init__(
        self,
        path: Path,
        names: Sequence[str],
        resume_step: int,
        steps_per_epoch: int,
        column: int = 0,
        label: dict[str, Any] | None = None,
        write: bool = True,
        events: TensorBoard | None = None,
    ):
        """names: the metrics logged, in order. column: this run's index in the metrics' runs axis.
        label: fields that start each line (e.g. {"run": r}). write: False in all processes but
        the writer, which reads the same metrics. events: where each line's metrics go as
        TensorBoard scalars too."""
        self.names, self.column, self.label = tuple(names), column, label or {}
        self.rows = keep_json_lines(path, up_to(resume_step)) if write else []
        for row in self.rows:
            _check_row(row, ("seconds", *self.names), path)
        self.steps_per_epoch = steps_per_epoch
        self.seconds = self.rows[-1]["seconds"] if self.rows else 0.0  # training time, evaluations excluded
        self.writer = JsonLinesWriter(path) if write else None
        self.events = events
        self.pending: list[tuple[int, Metrics]] = []  # (steps before the call, its metrics)
        self.clock = time.perf_counter()

    def close(self) -> None:
        if self.writer:
            self.writer.close()

    def add(self, done: int, metrics: Metrics) -> None:
        self.pending.append((done, metrics))

    def pending_steps(self) -> int:
        return sum(len(m[self.names[0]]) for _, m in self.pending)

    def flush(self, all_calls: bool = True) -> tuple[dict[str, Any] | None, NonFinite | None]:
        """Fetches pending metrics and appends their lines. all_calls=False leaves the latest
        call on the device, so fetching does not wait for the computation just dispatched.

        Returns (the last line written, None) or, at the first non-finite value, (the last line,
        (its step, metric, value)), with only the lines before it written.
        """
        blocks = self.pending if all_calls else self.pending[:-1]
        if not blocks:
            return None, None
        # Whole arrays: a jax.Array keeps its host copy, so the other runs' logs fetch nothing more.
        host = [{n: m[n][:, self.column] for n in self.names} for m in jax.device_get([m for _, m in blocks])]
        self.pending = self.pending[len(blocks) :]
        now = time.perf_counter()
        self.seconds += now - self.clock
        self.clock = now
        rows: list[dict[str, Any]] = []
        bad = None
        for (first, _), metrics in zip(blocks, host):
            for i in range(len(metrics[self.names[0]])):
                values = {name: float(metrics[name][i]) for name in self.names}
                bad = next(((first + i + 1, n, v) for n, v in values.items() if not math.isfinite(v)), None)
                if bad:
                    break
                rows.append(
                    {
                        **self.label,
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
        if self.events:
            for row in rows:
                self.events.scalars(row["step"], {name: row[name] for name in self.names})
        return (rows[-1] if rows else None), bad

    def restart_clock(self) -> None:
        """Leaves the time since the last flush out of the training time (an evaluation's)."""
        self.clock = time.perf_counter()

    def plot(self, path: Path, labels: Sequence[str], title: str, points: int = 1000) -> None:
        """The metrics' curves (labelled `labels`), each value averaged over windows so that at
        most ~`points` remain."""
        from jaxart.plots import save_loss_curves  # deferred: matplotlib takes a second to import

        if not self.rows:
            return
        window = max(1, len(self.rows) // points)
        n = len(self.rows) // window * window or len(self.rows)
        window = min(window, n)
        steps = [row["step"] for row in self.rows[window - 1 : n : window]]
        curves = {
            label: np.mean(np.array([row[name] for row in self.rows[:n]]).reshape(-1, window), axis=1).tolist()
            for name, label in zip(self.names, labels)
        }
        save_loss_curves(path, curves, steps, title=title, log_y=False)


@dataclasses.dataclass(frozen=True)
class Periodic:
    """A side effect `action(state, step)` due after the call ending on a multiple of `every`
    (None: never) and, with `at_end`, at the run's last step (also when a run resumes there).

    The action may return a line for the progress bar. untimed: its time is left out of the
    training time the metrics record (an evaluation's)."""

    action: Callable[[Any, int], str | None]
    every: int | None
    at_end: bool = False
    untimed: bool = False

    def due(self, step: int, total: int) -> bool:
        return schedule.due(step, self.every) or (self.at_end and step == total)


@dataclasses.dataclass(frozen=True)
class RunContext:
    """How far a run goes and what it logs into.

    logs: one per run, the metrics' column `column` of each. diverged: (run, (step, metric,
    value)) -> the exception that stops training at a non-finite metric."""

    start: int
    total: int
    steps_per_call: int
    steps_per_epoch: int
    logs: Sequence[MetricsLog]
    diverged: Callable[[int, NonFinite], Exception]


def _flush(context: RunContext, all_calls: bool) -> dict[str, Any] | None:
    """Flushes every run's log; raises `context.diverged` at a non-finite value. Returns the
    first run's last line."""
    first = None
    for r, log in enumerate(context.logs):
        last, bad = log.flush(all_calls)
        if bad:
            raise context.diverged(r, bad)
        first = last if r == 0 else first
    return first


def train_loop(
    state: Any,
    advance: Callable[[Any, int, int], tuple[Any, Metrics]],
    context: RunContext,
    actions: Sequence[Periodic],
) -> Any:
    """Runs the compiled calls from `context.start` to `context.total`, each followed by the
    actions due at the step it ends on. Returns the final state."""
    start, total, per_epoch = context.start, context.total, context.steps_per_epoch
    stops = [s for a in actions for s in schedule.every(start, total, a.every)]
    epochs = math.ceil(total / per_epoch)
    # One display for a run of many processes: the writer's (a bar on a terminal, else lines).
    with Progress(
        total, f"epoch {start // per_epoch + 1}/{epochs}", initial=start, enabled=distributed.is_writer()
    ) as bar:
        due = [a for a in actions if a.at_end] if start == total else []
        parts: dict[str, str] = {}
        for done, length in schedule.calls(start, total, context.steps_per_call, stops):
            state, metrics = advance(state, done, length)
            for log in context.logs:
                log.add(done, metrics)
            step = done + length
            due = [a for a in actions if a.due(step, total)]
            if due or context.logs[0].pending_steps() >= LOG_EVERY_STEPS:
                last = _flush(context, all_calls=bool(due))
                if last:
                    parts = {n: f"{last[n]:.3f}" for n in context.logs[0].names}
            bar.update(step, parts, desc=f"epoch {min(step // per_epoch + 1, epochs)}/{epochs}")
            if step < total:
                _act(due, state, step, context, bar)
        _flush(context, all_calls=True)
        _act(due, state, total, context, bar)
    return state


def _act(due: Sequence[Periodic], state: Any, step: int, context: RunContext, bar: Progress) -> None:
    for action in due:
        if line := action.action(state, step):
            bar.write(line, sys.stdout)
        if action.untimed:
            for log in context.logs:
                log.restart_clock()
