"""Progress for people and for logs: one bar on a terminal, a plain line every few seconds
elsewhere (a log file, nohup, CI), where a bar would draw nothing; and the time left, measured
after the first call (which compiles) so that it does not count compilation."""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Mapping
from typing import TextIO

LINE_EVERY_SECONDS = 15.0


def duration(seconds: float) -> str:
    """Seconds for a person: '45 s', '3 min 20 s', '1 h 05 min'."""
    if not math.isfinite(seconds):
        return "?"
    seconds = max(round(seconds), 0)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _is_terminal(stream: TextIO) -> bool:
    """A terminal a bar can be drawn on: one with columns (a pseudo-terminal may have none,
    and tqdm draws nothing there)."""
    try:
        return stream.isatty() and os.get_terminal_size(stream.fileno()).columns > 0
    except (OSError, ValueError, AttributeError):
        return False


class Progress:
    """Steps done out of `total`, with a few labelled values (`parts`).

    On a terminal, a tqdm bar; otherwise one line every `every` seconds. `seconds_left` is
    measured from the end of the first update on, so the first call's compilation is left out.
    """

    def __init__(
        self,
        total: int,
        desc: str,
        *,
        initial: int = 0,
        every: float = LINE_EVERY_SECONDS,
        stream: TextIO | None = None,
        enabled: bool = True,
    ):
        self.total, self.desc, self.done, self.every = total, desc, initial, every
        self.stream = sys.stderr if stream is None else stream
        self.enabled = enabled
        self.start = time.perf_counter()
        self.last_line = self.start
        self.warm: tuple[int, float] | None = None  # (steps, time) at the end of the first update
        self.bar = None
        if enabled and _is_terminal(self.stream):
            from tqdm import tqdm  # deferred: only a terminal draws a bar

            self.bar = tqdm(total=total, initial=initial, desc=desc, unit="step", file=self.stream, dynamic_ncols=True)

    def seconds_per_step(self) -> float | None:
        """The time a step has taken since the first update; None until a step has."""
        if self.warm is None or self.done <= self.warm[0]:
            return None
        return (time.perf_counter() - self.warm[1]) / (self.done - self.warm[0])

    def seconds_left(self) -> float | None:
        """The time left at `seconds_per_step`; None until it is known."""
        rate = self.seconds_per_step()
        return None if rate is None else rate * (self.total - self.done)

    def update(self, done: int, parts: Mapping[str, str] | None = None, desc: str | None = None) -> None:
        """Steps done so far (not an increment), and the values to show."""
        now = time.perf_counter()
        if self.warm is None:
            self.warm = (done, now)
        step, self.done = done - self.done, done
        self.desc = desc or self.desc
        if self.bar is not None:
            if desc:
                self.bar.set_description(desc, refresh=False)
            if parts:
                self.bar.set_postfix(parts, refresh=False)
            self.bar.update(step)
        elif self.enabled and (now - self.last_line >= self.every or done == self.total):
            self.last_line = now
            self.write(self.line(parts or {}))

    def line(self, parts: Mapping[str, str]) -> str:
        """The plain line: where the run is, its values, the time taken and left."""
        left = self.seconds_left()
        return ", ".join(
            [
                f"{self.desc}: step {self.done}/{self.total} ({100 * self.done // max(self.total, 1)}%)",
                *(f"{name} {value}" for name, value in parts.items()),
                f"{duration(time.perf_counter() - self.start)} so far",
                *([] if left is None or self.done >= self.total else [f"about {duration(left)} left"]),
            ]
        )

    def write(self, text: str, stream: TextIO | None = None) -> None:
        """A line (to `stream`, default the progress's) that does not break the bar."""
        stream = self.stream if stream is None else stream
        if self.bar is not None:
            self.bar.write(text, file=stream)
        else:
            print(text, file=stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
