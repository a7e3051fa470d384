"""A training run's folder: jaxart's own (a marker says so, and which job's), checked before any
work, and held by one `train` at a time. Each job describes its folder with a `Layout`.

jaxart trains only into a new or empty folder, which it marks as its job's own, or one it marked
before; a folder holding anything else is refused, so that a run never rewrites or deletes a
file of the user's, and another job's folder is refused too. Inside its folder a run touches only
its layout's entries (each must be of its kind, or the folder is refused as damaged) and the
temporary files its own writes name (`jaxart.files.is_own_temporary`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import json
import os
import re
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path

from jaxart.errors import InputError, RunError, option
from jaxart.files import atomic_write, check_utf8, check_writable, is_own_temporary, read_marker

MARKER = ".jaxart-workdir"  # JSON: {"format": the job's Layout.format}
LOCK_FILE = "train.lock"


@dataclasses.dataclass(frozen=True)
class Layout:
    """What a job's workdir holds.

    format: the marker's "format", naming the job. entries: everything a run writes at the top
    of its folder besides the marker and the lock, each mapped to whether it is a folder.
    run_folder: the names of sub-folders that are workdirs of the same layout (a GAN's `runs`).
    unmarked: whether a folder without a marker is accepted when it holds a lock file and only
    entries (the GAN's folders of versions before the marker)."""

    format: str
    entries: Mapping[str, bool]
    run_folder: re.Pattern[str] | None = None
    unmarked: bool = False

    @property
    def all_entries(self) -> dict[str, bool]:
        return {MARKER: False, LOCK_FILE: False, **self.entries}

    def is_entry(self, path: Path) -> bool:
        run = self.run_folder is not None and self.run_folder.fullmatch(path.name)
        return path.name in self.all_entries or bool(run) or is_own_temporary(path)


def _marked_as(folder: Path) -> str | None:
    """The "format" of the marker in `folder` (any job's); None when there is none readable."""
    path = folder / MARKER
    try:
        found = json.loads(path.read_bytes()) if path.is_file() else None
    except (OSError, ValueError):
        return None
    kind = found.get("format") if isinstance(found, dict) else None
    return kind if isinstance(kind, str) else None


def _check_entries(workdir: Path, layout: Layout) -> None:
    """InputError for an entry (here or in a run folder) of the wrong kind: a file named
    `checkpoints`, a folder named metrics.jsonl."""
    for name, folder in layout.all_entries.items():
        path = workdir / name
        present = path.exists() or path.is_symlink()
        if present and not (path.is_dir() if folder else path.is_file()):
            expected = "a folder" if folder else "a regular file"
            raise InputError(
                f"{option('workdir')} {str(workdir)!r} is damaged: {name!r} is not {expected} as jaxart writes it; "
                f"move it away, or use another {option('workdir')}"
            )
    if layout.run_folder is not None:
        for run in workdir.iterdir():
            if layout.run_folder.fullmatch(run.name) and run.is_dir():
                _check_entries(run, layout)


def is_workdir(folder: Path, layout: Layout) -> bool:
    """Whether `folder` is marked as a workdir of `layout`'s job or, where the layout accepts
    unmarked folders, is one of a version before the marker (a lock file, nothing a run does
    not write, and no other job's marker)."""
    if read_marker(folder / MARKER, layout.format) is not None:
        return True
    if not layout.unmarked or _marked_as(folder) is not None:
        return False
    entries = list(folder.iterdir())
    return (folder / LOCK_FILE).is_file() and all(layout.is_entry(p) for p in entries)


def check_workdir(workdir: str | os.PathLike, layout: Layout) -> Path:
    """`workdir` as a Path if a run of `layout`'s job may write there: a new folder whose parent
    can be written, an empty folder, or a workdir of the job (`is_workdir`) whose entries are of
    their kinds. InputError otherwise, before anything is written."""
    if not str(workdir).strip():
        raise InputError(f"{option('workdir')} is empty; give a folder's name (it is made if missing)")
    workdir = check_utf8(workdir, option("workdir"))
    if workdir.is_symlink() and not workdir.exists():
        raise InputError(f"{option('workdir')} {str(workdir)!r} is a link to nothing; give a folder")
    if workdir.exists():
        if not workdir.is_dir():
            raise InputError(f"{option('workdir')} {str(workdir)!r} is not a folder")
        if any(workdir.iterdir()) and not is_workdir(workdir, layout):
            other = _marked_as(workdir)
            if other is not None:
                raise InputError(
                    f"{option('workdir')} {str(workdir)!r} is the folder of another jaxart job ({other}); "
                    f"use another {option('workdir')}"
                )
            foreign = sorted(p.name for p in workdir.iterdir() if not layout.is_entry(p))
            shown = f" (such as {foreign[0]!r})" if foreign else ""
            raise InputError(
                f"{option('workdir')} {str(workdir)!r} holds files jaxart did not write{shown}; "
                "give a new or empty folder, so that none of them is touched"
            )
        _check_entries(workdir, layout)
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


def _mark(workdir: Path, layout: Layout) -> None:
    if read_marker(workdir / MARKER, layout.format) is None:
        text = json.dumps({"format": layout.format}) + "\n"
        atomic_write(workdir / MARKER, lambda tmp: tmp.write_text(text))


@contextlib.contextmanager
def locked(workdir: str | os.PathLike, layout: Layout) -> Iterator[None]:
    """Holds an exclusive lock on `workdir` (creating the folder and its marker) while inside,
    after removing the half-written files of a killed run; RunError if another process holds it.
    Call `check_workdir` first.

    `flock` ties the lock to the open file, so the system releases it when its process dies
    however it dies: a killed run never leaves the folder locked. The file keeps the holder's
    pid for the message.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    _mark(workdir, layout)
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
