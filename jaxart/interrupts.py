"""Ctrl-C and SIGTERM that always end a command, and never in the middle of a save.

`handling()` (entered by `jaxart.cli.run`) turns both signals into KeyboardInterrupt, as
Python does for Ctrl-C, except inside `deferred()`: a save that must finish or not start
(orbax's asynchronous checkpoint, once begun, runs threads that a half-done start leaves
waiting forever) gets the interrupt when it ends, and a loop whose calls take their state
(donated buffers) gets it where it calls `take()`, between calls.

In a command's own process (`handling(command=True)`, from `jaxart.cli.main`) the end is
bounded as well: a second signal ends the process at once, and so does a clean-up, or an exit,
that overruns `DEADLINE`. Nothing kept is lost by that: every file jaxart writes is written
whole or not at all, and an unfinished checkpoint is one orbax never committed.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import NoReturn

DEADLINE = 30.0  # seconds from a command's first signal, or from its report, to the end of its process
INTERRUPTED = 130  # the exit status of an interrupted command


@dataclasses.dataclass
class _State:
    command: bool = False  # this process is the command: it may end itself
    depth: int = 0  # nested `deferred` blocks the main thread is in
    pending: bool = False  # a signal arrived inside them
    signals: int = 0
    closing: bool = False  # the command's work is over: a signal no longer raises
    reported: bool = False  # the command's one line is out: end silently


_state = _State()


# The real stderr of a command's process once `silence_libraries` has pointed fd 2 elsewhere.
_report_fd: int | None = None


def silence_libraries() -> None:
    """Once a command's own process has done its work (or failed), points its stderr (fd 2) at
    /dev/null and keeps the real one for the command's lines (`write_line`): what libraries
    print from their threads as the reads they abandoned are finalised (tensorstore's callbacks
    into a closed event loop, orbax's unfinished coroutines) is not the user's business, and it
    raced the command's line (tracebacks after it in 5 of 12 runs on a damaged weights folder)."""
    global _report_fd
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.flush()
        _report_fd = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)


def write_line(line: str) -> None:
    """`line` on the command's stderr (the real one, after `silence_libraries`)."""
    if _report_fd is None:
        print(line, file=sys.stderr)
    else:
        os.write(_report_fd, (line + "\n").encode(sys.stderr.encoding or "utf-8", "backslashreplace"))


def _end(status: int, line: str | None = None) -> NoReturn:
    """Ends the process now, with `line` on stderr unless the command has reported already."""
    if line and not _state.reported:
        with contextlib.suppress(Exception):
            write_line(line)
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(status)


def _deadline(status: int, line: str | None) -> None:
    """Ends the process `DEADLINE` seconds from now if it is still running then."""
    timer = threading.Timer(DEADLINE, _end, (status, line))
    timer.daemon = True
    timer.start()


def _handler(signum: int, frame: object) -> None:
    _state.signals += 1
    if _state.command and (_state.signals > 1 or _state.closing):
        _end(INTERRUPTED, "interrupted again: stopped at once; what was kept before stays")
    if _state.closing:
        return
    if _state.command:
        _deadline(INTERRUPTED, f"interrupted: the clean-up took over {DEADLINE:.0f} s; stopped at once")
    if _state.depth:
        _state.pending = True
        return
    raise KeyboardInterrupt


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Holds back an interrupt that arrives inside until the block ends, then raises it."""
    _state.depth += 1
    try:
        yield
    finally:
        _state.depth -= 1
        if not _state.depth:
            take()


def take() -> None:
    """Inside `deferred()`, at a point where the block may be left: raises the interrupt held so
    far, if any (a block that runs long takes its interrupts there, not only at its end)."""
    if _state.pending:
        _state.pending = False
        raise KeyboardInterrupt


@contextlib.contextmanager
def handling(command: bool = False) -> Iterator[None]:
    """SIGINT and SIGTERM handled as the module says while inside (outside the main thread,
    where Python allows no handlers, signals are left alone). With `command`, the handlers
    stay to the process's end: a signal during the exit ends it silently."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    global _state
    _state = _State(command=command)
    previous = {s: signal.signal(s, _handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        _state.closing = True
        if not command:
            for s, handler in previous.items():
                signal.signal(s, handler)


def close() -> None:
    """The command's work is over (done or failed): from now a signal does not raise, so the
    line that reports it goes out whole."""
    _state.closing = True


def exit(status: int) -> NoReturn:
    """Ends a command's process with `status` once its line is out, within `DEADLINE` (a
    library's thread left waiting at exit does not hold it).

    It ends as Python's exit begins: it waits for the threads that exit waits for, runs the
    exit handlers (jax's, orbax's, every `weakref.finalize`; `atexit._run_exitfuncs` is what
    Python's exit calls) and flushes stdout and stderr. It skips what Python's exit then does:
    taking every module and object apart one by one, which after jax, flax and orbax took
    0.35-0.45 s of every command (`benchmarks.starts`), for memory the process's end frees."""
    _state.reported = True
    _deadline(status, None)
    for thread in threading.enumerate():
        if not thread.daemon and thread is not threading.current_thread():
            thread.join()
    atexit._run_exitfuncs()
    _end(status)
