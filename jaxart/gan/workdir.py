"""A training run's folder: checked before any work, and held by one `train` at a time."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from jaxart.errors import InputError, RunError, option
from jaxart.files import check_writable

LOCK_FILE = "train.lock"
EVAL_FILE = "eval.jsonl"  # the judge's records, one a line
EVAL_FIGURE = "eval.png"  # the latest evaluation's sample grid and class histogram


def check_workdir(workdir: str | os.PathLike) -> Path:
    """Raises InputError unless `workdir` is a writable folder, or can be made in a writable one."""
    workdir = Path(workdir)
    if workdir.exists() and not workdir.is_dir():
        raise InputError(f"{option('workdir')} {str(workdir)!r} is a file, expected a folder")
    existing = next(p for p in (workdir.absolute(), *workdir.absolute().parents) if p.exists())
    what = option("workdir") if existing == workdir.absolute() else f"{option('workdir')}'s parent folder"
    check_writable(existing, what)
    return workdir


def _remove_half_written(workdir: Path) -> None:
    """Deletes what writes cut short by a killed run left: `jaxart.files.atomic_path`'s hidden
    temporary files (`.<name>.<random><suffix>.tmp`; orbax cleans its own). Only the holder of
    the lock may: another run could be writing them."""
    for path in workdir.rglob(".*.tmp"):
        if path.is_file() and "checkpoints" not in path.relative_to(workdir).parts:
            path.unlink(missing_ok=True)


@contextlib.contextmanager
def locked(workdir: str | os.PathLike) -> Iterator[None]:
    """Holds an exclusive lock on `workdir` (creating the folder) while inside, after removing
    the half-written files of a killed run; RunError if another process holds it.

    `flock` ties the lock to the open file, so the system releases it when its process dies
    however it dies: a killed run never leaves the folder locked. The file keeps the holder's
    pid for the message.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / LOCK_FILE
    with path.open("a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            f.seek(0)
            holder = f.read().strip() or "?"
            raise RunError(
                f"{option('workdir')} {str(workdir)!r} is in use by another train run (pid {holder}); "
                f"wait for it to finish or use another {option('workdir')}"
            ) from e
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        _remove_half_written(workdir)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
