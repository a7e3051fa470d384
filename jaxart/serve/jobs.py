"""The page's jobs: a queue, one worker thread per device, and what the page can see of each job.

Rules:
  * jobs run one at a time per device (this process has one worker per device it was given), in
    the order they came; the page sees the queue (`Jobs.listing`);
  * a job is a function of its `Job`, run in this process through the library's own functions;
    it reports through the `Job` (step, losses, preview) and checks `Job.cancelled()` between
    compiled calls, raising `Cancelled` to stop;
  * the page polls its jobs; a job nobody has polled for `idle` seconds (the browser went
    away) is cancelled, queued or running;
  * jaxart's own errors (InputError, RunError) fail the job with their one line; anything else
    fails it with a generic line (the traceback goes to the server's log, never the page).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jaxart.errors import InputError, RunError

log = logging.getLogger(__name__)

LOSSES_KEPT = 2000  # per job: a loss curve the page can draw


class Cancelled(Exception):
    """Raised inside a job's work when its `Job.cancelled()`."""


@dataclasses.dataclass
class Job:
    """One job and what the page sees of it (`public`). Written by its worker, read by requests."""

    kind: str
    label: str
    work: Callable[[Job], None]
    id: str = dataclasses.field(default_factory=lambda: uuid.uuid4().hex)
    state: str = "queued"
    step: int = 0
    steps: int = 0
    started: float | None = None
    losses: list[float] = dataclasses.field(default_factory=list)
    preview: bytes | None = None  # PNG
    preview_version: int = 0
    result: Path | None = None
    message: str = ""
    seen: float = dataclasses.field(default_factory=time.monotonic)
    _cancel: threading.Event = dataclasses.field(default_factory=threading.Event)

    def cancel(self) -> None:
        self._cancel.set()

    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def check(self) -> None:
        """Raises Cancelled once the job is cancelled: called between compiled calls."""
        if self.cancelled():
            raise Cancelled

    def progress(self, step: int, steps: int, loss: float | None = None) -> None:
        self.step, self.steps = step, steps
        if loss is not None:
            self.losses.append(loss)
            del self.losses[:-LOSSES_KEPT]

    def show(self, png: bytes) -> None:
        self.preview = png
        self.preview_version += 1

    def eta(self) -> float | None:
        """Seconds left at the pace so far (None before the second step)."""
        if self.started is None or self.step < 2 or self.state != "running":
            return None
        return (time.monotonic() - self.started) / self.step * (self.steps - self.step)

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "label": self.label,
            "state": self.state,
            "step": self.step,
            "steps": self.steps,
            "eta": self.eta(),
            "losses": self.losses,
            "preview": self.preview_version,
            "result": self.result is not None,
            "message": self.message,
        }


class Jobs:
    """The queue and its workers (see the module's rules)."""

    def __init__(self, workers: int = 1, idle: float = 60.0) -> None:
        self.idle = idle
        self._jobs: dict[str, Job] = {}
        self._queue: list[Job] = []
        self._lock = threading.Condition()
        self._closed = False
        self._threads = [threading.Thread(target=self._work, daemon=True) for _ in range(workers)]
        self._threads.append(threading.Thread(target=self._watch, daemon=True))
        for thread in self._threads:
            thread.start()

    def submit(self, kind: str, label: str, work: Callable[[Job], None]) -> Job:
        job = Job(kind, label, work)
        with self._lock:
            self._jobs[job.id] = job
            self._queue.append(job)
            self._lock.notify_all()
        return job

    def get(self, job_id: str) -> Job:
        """The job of that id, marked as seen; KeyError for none."""
        job = self._jobs[job_id]
        job.seen = time.monotonic()
        return job

    def listing(self) -> list[dict[str, Any]]:
        """Every job, oldest first, queued ones with their place in the queue."""
        with self._lock:
            places = {job.id: k for k, job in enumerate(self._queue)}
            return [{**job.public(), "place": places.get(job.id)} for job in self._jobs.values()]

    def close(self) -> None:
        """Cancels everything and stops the workers (their current call finishes first)."""
        with self._lock:
            self._closed = True
            for job in self._jobs.values():
                job.cancel()
            self._lock.notify_all()
        for thread in self._threads:
            thread.join(timeout=30)

    def _next(self) -> Job | None:
        with self._lock:
            while not self._queue and not self._closed:
                self._lock.wait()
            return None if self._closed else self._queue.pop(0)

    def _work(self) -> None:
        while (job := self._next()) is not None:
            if job.cancelled():
                job.state = "cancelled"
                continue
            job.state, job.started = "running", time.monotonic()
            try:
                job.work(job)
                job.state = "done"
            except Cancelled:
                job.state = "cancelled"
            except (InputError, RunError) as e:
                job.state, job.message = "failed", str(e)
            except Exception:  # a bug: the log has it, the page gets one line
                log.exception("job %s (%s) failed", job.id, job.label)
                job.state, job.message = "failed", "the job failed unexpectedly (see the server's log)"

    def _watch(self) -> None:
        while not self._closed:
            time.sleep(min(self.idle / 4, 1.0))
            now = time.monotonic()
            with self._lock:
                for job in self._jobs.values():
                    if job.state in ("queued", "running") and now - job.seen > self.idle:
                        job.cancel()
                        job.message = f"cancelled: not watched for {self.idle:g} s"
                        if job in self._queue:
                            self._queue.remove(job)
                            job.state = "cancelled"
