"""A run's curves and pictures as TensorBoard event files, beside its JSON lines.

Written with the `tensorboard` package's own event writer (the one torch.utils.tensorboard
uses): no TensorFlow, no torch, a fifth of a second to import, and a background thread that
does the file writes. One event per logged step holds all of its scalars: the GAN's 4 cost 54
microseconds of CPU a step, 16 of them in the training loop (one event per scalar cost 4x).

A run resumed from step S writes a "session start" at step S + 1 first: TensorBoard then hides
the events from that step on that a stopped run wrote past its checkpoint, as the JSON lines
are cut back to S.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from PIL import Image

from jaxart.images import to_uint8

FOLDER = "tb"  # in the run's workdir
_QUEUE = 1 << 20  # events; the writer thread drains ~18,000 a second, faster than a run fills it


class TensorBoard:
    """The event files of one run in `<workdir>/tb`."""

    def __init__(self, workdir: str | os.PathLike, start: int = 0, flush_seconds: float = 10.0):
        """start: the step the run resumes from (0 for a fresh run)."""
        # Deferred: only a run that writes events pays for the import.
        from tensorboard.compat.proto.event_pb2 import Event, SessionLog
        from tensorboard.compat.proto.summary_pb2 import Summary
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        self._event, self._summary = Event, Summary
        self.folder = Path(workdir) / FOLDER
        # A queue that never fills: with the writer's default of 10 events, each step's event
        # waited for the thread's pure-Python checksums (~70 us an event, 9% of an MLP step).
        self.writer = EventFileWriter(str(self.folder), max_queue_size=_QUEUE, flush_secs=flush_seconds)
        if start:
            self.writer.add_event(Event(step=start + 1, session_log=SessionLog(status=SessionLog.START)))

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        """One event at `step` holding every value, tagged by its name."""
        summary = self._summary(value=[self._summary.Value(tag=k, simple_value=float(v)) for k, v in values.items()])
        self._add(step, summary)

    def image(self, step: int, tag: str, image: np.ndarray) -> None:
        """A float (H, W) or (H, W, 3) picture in [0, 1], stored as PNG."""
        pixels = to_uint8(image)
        png = io.BytesIO()
        Image.fromarray(pixels).save(png, format="PNG", compress_level=1)
        encoded = self._summary.Image(
            height=pixels.shape[0],
            width=pixels.shape[1],
            colorspace=1 if pixels.ndim == 2 else 3,
            encoded_image_string=png.getvalue(),
        )
        self._add(step, self._summary(value=[self._summary.Value(tag=tag, image=encoded)]))

    def _add(self, step: int, summary) -> None:
        self.writer.add_event(self._event(wall_time=time.time(), step=step, summary=summary))

    def close(self) -> None:
        """Writes what is queued and closes the file."""
        self.writer.close()
