"""Which steps each compiled call runs, for both jobs.

A loop compiled with `lax.scan` runs K steps per call; a run must still stop at chosen steps
(saving an image, a checkpoint, an evaluation, an epoch's end). A call of length r compiles
once per distinct r, so a remainder below K is split into powers of two: however the stops
fall, a run compiles at most log2(K) + 1 programs, in few calls.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator


def every(start: int, end: int, period: int | None) -> list[int]:
    """The multiples of `period` in (start, end) (none when period is 0 or None)."""
    if not period:
        return []
    return list(range((start // period + 1) * period, end, period))


def lengths(steps: int, per_call: int) -> Iterator[int]:
    """Call lengths covering `steps`: `per_call` while it fits, then the remainder's binary
    digits, largest first (so 37 with per_call 32 is 32, 4, 1)."""
    full, rest = divmod(steps, per_call)
    yield from [per_call] * full
    bit = 1 << max(rest.bit_length() - 1, 0)
    while rest:
        if rest & bit:
            yield bit
            rest -= bit
        bit >>= 1


def calls(start: int, end: int, per_call: int, stops: Iterable[int] = ()) -> Iterator[tuple[int, int]]:
    """(steps done before, steps in this call) for each compiled call from `start` to `end`,
    ending at every stop in between (and at `end`)."""
    if per_call < 1:
        raise ValueError(f"steps per call must be >= 1, got {per_call}")
    done = start
    for boundary in sorted({s for s in stops if start < s < end} | {end}):
        for n in lengths(boundary - done, per_call):
            yield done, n
            done += n


def due(step: int, period: int | None) -> bool:
    """Whether a hook run every `period` steps (0 or None: never) is due after `step`."""
    return period is not None and period > 0 and step % period == 0
