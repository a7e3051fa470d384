"""A training run's folder: jaxart's own (a marker says so), checked before any work, and held
by one `train` at a time.

jaxart trains only into a new or empty folder, which it marks as its own, or one it marked
before; a folder holding anything else is refused, so that a run never rewrites or deletes a
file of the user's. Inside its folder it touches only the entries of `ENTRIES` (each must be of
its kind, or the folder is refused as damaged) and the temporary files its own writes name
(`jaxart.files.is_own_temporary`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

from jaxart.errors import InputError, RunError, option
from jaxart.files import atomic_write, check_utf8, check_writable, is_own_temporary, read_marker

MARKER = ".jaxart-workdir"  # JSON: {"format": MARKER_FORMAT}
MARKER_FORMAT = "jaxart-gan-workdir"
LOCK_FILE = "train.lock"
EVAL_FILE = "eval.jsonl"  # the judge's records, one a line
EVAL_FIGURE = "eval.png"  # the latest evaluation's sample grid and class histogram
# Everything a run writes at the top of its folder, and whether it is a folder.
ENTRIES = {
    MARKER: False,
    LOCK_FILE: False,
    "checkpoints": True,
    "samples": True,
    "metrics.jsonl": False,
    "loss_curves.png": False,
    EVAL_FILE: False,
    EVAL_FIGURE: False,
}
_RUN_FOLDER = re.compile(r"run-\d{3}")  # a `runs` R > 1 workdir's run folders, each a workdir


def _is_entry(path: Path) -> bool:
    return path.name in ENTRIES or bool(_RUN_FOLDER.fullmatch(path.name)) or is_own_temporary(path)


def _check_entries(workdir: Path) -> None:
    """InputError for an entry of `ENTRIES` (here or in a run folder) of the wrong kind: a file
    named `checkpoints`, a folder named metrics.jsonl."""
    for name, folder in ENTRIES.items():
        path = workdir / name
        present = path.exists() or path.is_symlink()
        if present and not (path.is_dir() if folder else path.is_file()):
            expected = "a folder" if folder else "a regular file"
            raise InputError(
                f"{option('workdir')} {str(workdir)!r} is damaged: {name!r} is not {expected} as jaxart writes it; "
                f"move it away, or use another {option('workdir')}"
            )
    for run in workdir.iterdir():
        if _RUN_FOLDER.fullmatch(run.name) and run.is_dir():
            _check_entries(run)


def is_workdir(folder: Path) -> bool:
    """Whether `folder` is marked as a jaxart workdir, or is one of a version before the marker
    (a lock file, and nothing a run does not write)."""
    if read_marker(folder / MARKER, MARKER_FORMAT) is not None:
        return True
    entries = list(folder.iterdir())
    return (folder / LOCK_FILE).is_file() and all(_is_entry(p) for p in entries)


def check_workdir(workdir: str | os.PathLike) -> Path:
    """`workdir` as a Path if a run may write there: a new folder whose parent can be written,
    an empty folder, or a jaxart workdir (`is_workdir`) whose entries are of their kinds.
    InputError otherwise, before anything is written."""
    if not str(workdir).strip():
        raise InputError(f"{option('workdir')} is empty; give a folder's name (it is made if missing)")
    workdir = check_utf8(workdir, option("workdir"))
    if workdir.is_symlink() and not workdir.exists():
        raise InputError(f"{option('workdir')} {str(workdir)!r} is a link to nothing; give a folder")
    if workdir.exists():
        if not workdir.is_dir():
            raise InputError(f"{option('workdir')} {str(workdir)!r} is not a folder")
        if any(workdir.iterdir()) and not is_workdir(workdir):
            foreign = sorted(p.name for p in workdir.iterdir() if not _is_entry(p))
            shown = f" (such as {foreign[0]!r})" if foreign else ""
            raise InputError(
                f"{option('workdir')} {str(workdir)!r} holds files jaxart did not write{shown}; "
                "give a new or empty folder, so that none of them is touched"
            )
        _check_entries(workdir)
    check_writable(workdir, option("workdir"))
    return workdir


def _remove_half_written(workdir: Path) -> None:
    """Deletes what writes cut short by a killed run left: the temporaries of
    `jaxart.files.atomic_path` (orbax cleans its own in checkpoints/). Only the holder of the
    lock may: another run could be writing them."""
    for root, folders, files in os.walk(workdir):
        folders[:] = [name for name in folders if name != "checkpoints"]
        for name in [*folders, *files]:
            path = Path(root) / name
            if is_own_temporary(path):
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)


def _mark(workdir: Path) -> None:
    if read_marker(workdir / MARKER, MARKER_FORMAT) is None:
        atomic_write(workdir / MARKER, lambda tmp: tmp.write_text(json.dumps({"format": MARKER_FORMAT}) + "\n"))


@contextlib.contextmanager
def locked(workdir: str | os.PathLike) -> Iterator[None]:
    """Holds an exclusive lock on `workdir` (creating the folder and its marker) while inside,
    after removing the half-written files of a killed run; RunError if another process holds it.
    Call `check_workdir` first.

    `flock` ties the lock to the open file, so the system releases it when its process dies
    however it dies: a killed run never leaves the folder locked. The file keeps the holder's
    pid for the message.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    _mark(workdir)
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
