"""Atomic file writes: a temporary file in the destination folder, then a rename."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from jaxart.cli import InputError


def check_output_path(path: str | os.PathLike, suffixes: tuple[str, ...] | None = None) -> Path:
    """Validates an output path before any work is done; returns it as a Path.

    Raises InputError if the folder does not exist, the path is a folder, or
    the extension is not one of `suffixes` (lower-case, with the dot).
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(f"output path {str(path)!r} is a directory, expected a file name")
    folder = path.parent
    if not folder.is_dir():
        raise InputError(f"output folder {str(folder)!r} does not exist")
    if suffixes is not None and path.suffix.lower() not in suffixes:
        raise InputError(
            f"output {str(path)!r} has unknown extension {path.suffix or '(none)'!r}; "
            f"use one of {', '.join(suffixes)}"
        )
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path beside `path`; renames it onto `path` only on success."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix + ".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Calls `write(tmp_path)` then renames tmp onto `path`, so readers never see half a file."""
    with atomic_path(path) as tmp:
        write(tmp)
    return Path(path)


def replace_folder(folder: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Fills a fresh temporary folder with `write(tmp)`, then swaps it in for `folder` whole:
    a reader sees the old folder or the new one, never half of one."""
    folder = Path(folder).expanduser().resolve()
    tmp, old = folder.with_name(f".{folder.name}.tmp"), folder.with_name(f".{folder.name}.old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        write(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)
    return folder
