"""Files written so that nothing is lost or half-done: output checks before any work, atomic
writes (a temporary file in the destination folder, then a rename), folder swaps that never
replace what jaxart did not make, and JSON-lines logs."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from jaxart.errors import InputError, reason


def sha256_file(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes, in hex, read a megabyte at a time."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# What a path is, named in refusals.
_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISREG, "a regular file"),
)


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _stat(path: Path, what: str) -> os.stat_result | None:
    """`path`'s stat through its links; None if nothing is there (or a file stands where a
    folder of its path belongs). InputError for a path the system cannot look up (a NUL byte,
    no permission, a loop of links)."""
    try:
        return path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except ValueError as e:  # an embedded NUL byte
        raise InputError(f"{what} {str(path)!r} is not a valid path ({reason(e)})") from e
    except OSError as e:
        raise InputError(f"{what} {str(path)!r} cannot be looked up ({e.strerror or reason(e)})") from e


def regular_file(path: str | os.PathLike, what: str) -> Path:
    """`path` as a Path if it names a regular file (through any links); else InputError saying
    what is there. Every reader checks this before it opens a file: a FIFO would block it
    forever, a device would feed it endless bytes."""
    path = Path(path)
    found = _stat(path, what)
    if found is None:
        raise InputError(f"{what} {str(path)!r} does not exist")
    if not stat.S_ISREG(found.st_mode):
        raise InputError(f"{what} {str(path)!r} is {_kind(found.st_mode)}, expected a file")
    return path


def output_target(path: str | os.PathLike, what: str = "output") -> Path:
    """Where a write to `path` lands: the file a symlink points to (the link stays a link),
    else `path` itself. InputError if something other than a regular file is there: a
    folder, device, FIFO or socket is never replaced by a file."""
    path = Path(path)
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    found = _stat(target, what)
    if found is not None and not stat.S_ISREG(found.st_mode):
        shown = str(path) if target == path else f"{path}' -> '{target}"
        raise InputError(f"{what} {shown!r} is {_kind(found.st_mode)}; outputs are written only as regular files")
    return target


def env_folder(name: str) -> Path | None:
    """The folder the environment variable `name` names (None when unset or empty); InputError
    if something other than a folder is there. Checked when read, so a wrong path is one line
    before any work, not a failed write after it."""
    value = os.environ.get(name, "")
    if not value:
        return None
    folder = Path(value).expanduser()
    found = _stat(folder, f"${name}")
    if found is not None and not stat.S_ISDIR(found.st_mode):
        raise InputError(f"${name} {value!r} is {_kind(found.st_mode)}, expected a folder")
    return folder


def check_utf8(path: str | os.PathLike, what: str) -> Path:
    """`path` as a Path if its whole name (made absolute) is UTF-8; else InputError. orbax's
    tensorstore takes only UTF-8 paths: a name whose bytes are not (which Python keeps as
    surrogates) fails deep inside a save or a read."""
    path = Path(path)
    try:
        str(path.absolute()).encode("utf-8")
    except UnicodeEncodeError as e:
        raise InputError(
            f"{what} {str(path)!r}: orbax reads and writes only folders whose names are UTF-8; rename it"
        ) from e
    return path


def nearest_existing(path: str | os.PathLike) -> Path:
    """`path` (made absolute) or its nearest ancestor that exists (a dangling link counts)."""
    path = Path(path).absolute()
    return next(p for p in (path, *path.parents) if p.exists() or p.is_symlink())


def check_writable(folder: str | os.PathLike, what: str = "output folder") -> Path:
    """Raises InputError unless a file can be created in `folder`: an existing folder, or a
    missing one whose nearest existing ancestor is a folder that can be written. The missing
    folders are made by the first write into them (see `atomic_path`), not here: a refused run
    leaves nothing behind.

    Tries it, rather than reading permission bits, so root on a read-only mount and
    ACLs are judged as the real write will be.
    """
    folder = Path(folder)
    existing = nearest_existing(folder)
    subject = f"{what} {str(folder)!r}"
    if existing != folder.absolute():
        subject += f" cannot be made: {str(existing)!r}"
    if not existing.is_dir():
        raise InputError(f"{subject} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".jaxart-probe.")
    except OSError as e:
        raise InputError(f"{subject} is not writable ({e.strerror or reason(e)})") from e
    os.close(fd)
    os.unlink(probe)
    return folder


def check_output_path(path: str | os.PathLike, suffixes: tuple[str, ...] | None = None, what: str = "output") -> Path:
    """Validates an output path before any work is done; returns it as a Path.

    Raises InputError if the folder cannot be written or made (see `check_writable`), the
    path is a folder, or the extension is not one of `suffixes` (lower-case, with the dot).
    """
    path = Path(path)
    if not str(path).strip():
        raise InputError(f"{what} is empty, expected a file name")
    target = output_target(path, what)
    if suffixes is not None and path.suffix.lower() not in suffixes:
        raise InputError(
            f"{what} {str(path)!r} has unknown extension {path.suffix or '(none)'!r}; use one of {', '.join(suffixes)}"
        )
    check_writable(target.parent, f"{what} folder")
    return path


def check_distinct(
    outputs: Mapping[str, str | os.PathLike | None], inputs: Mapping[str, str | os.PathLike | None] = {}
) -> None:
    """Raises InputError if an output would overwrite an input or another output.

    Keys are the flags' names as the user typed them ('--output'); None values are skipped.
    """
    seen: dict[Path, str] = {}
    for name, path in inputs.items():
        if path is not None:
            seen.setdefault(Path(path).resolve(), name)
    for name, path in outputs.items():
        if path is None:
            continue
        resolved = Path(path).resolve()
        if resolved in seen:
            raise InputError(f"{name} {str(path)!r} is also {seen[resolved]}; refusing to overwrite it")
        seen[resolved] = name


# In every temporary file name jaxart makes (`.<name>.jaxart-<random><suffix>.tmp`).
TMP_TAG = "jaxart-"


def is_own_temporary(path: Path) -> bool:
    """Whether `path` is named as `atomic_path` or `replace_folder` names its temporaries."""
    return path.name.startswith(".") and f".{TMP_TAG}" in path.name and path.name.endswith((".tmp", ".old"))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path beside `path`; renames it onto `path` only on success.

    The file gets the permissions a plain `open` would give it (0666 less the umask),
    not mkstemp's private 0600. Missing folders above `path` are made first (the checks
    before a run accept an output whose folder does not exist yet; see `check_writable`).
    A symlink's target is replaced, not the link; anything but a regular file there is
    refused (`output_target`). The temporary name carries TMP_TAG, so that clean-up in a
    folder jaxart owns removes its own leftovers and nothing else.
    """
    path = output_target(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{TMP_TAG}", suffix=path.suffix + ".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Calls `write(tmp_path)` then renames tmp onto `path`, so readers never see half a file."""
    with atomic_path(path) as tmp:
        write(tmp)
    return Path(path)


def replace_folder(folder: str | os.PathLike, write: Callable[[Path], None], ours: Callable[[Path], bool]) -> Path:
    """Fills a fresh temporary folder with `write(tmp)`, then swaps it in for `folder` whole:
    a reader sees the old folder or the new one, never half of one.

    `ours(folder)` says whether an existing folder is one jaxart wrote (e.g. it holds the
    right sidecar file); anything else that exists, other than an empty folder, is refused
    with InputError before anything is written: a folder of the user's is never replaced.
    """
    folder = Path(os.path.realpath(Path(folder).expanduser()))
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{str(folder)!r} is not a folder; refusing to replace it")
    if folder.is_dir() and any(folder.iterdir()) and not ours(folder):
        raise InputError(f"{str(folder)!r} exists and was not written by jaxart; refusing to replace it")
    check_writable(folder.parent, "folder")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.{TMP_TAG}", suffix=".tmp"))
    os.chmod(tmp, 0o777 & ~_umask())
    old = tmp.with_suffix(".old")
    try:
        write(tmp)
        if folder.exists():
            folder.rename(old)
        tmp.rename(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not folder.exists():
            old.rename(folder)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return folder


def read_json_lines(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The JSON objects of a JSON-lines file, in order; a missing file has none, and a line
    that is not a whole JSON object (one cut short by a kill, or damaged bytes) is skipped.
    InputError if something other than a file is there."""
    rows = []
    for line in _lines(Path(path)):
        with contextlib.suppress(json.JSONDecodeError):
            row = json.loads(line)
            if isinstance(row, dict):
                rows.append(row)
    return rows


def _lines(path: Path) -> list[str]:
    """The lines of a JSON-lines file (none when nothing is there), bytes that are not UTF-8
    replaced (so that line fails to parse, and only it)."""
    if not (path.exists() or path.is_symlink()):
        return []
    data = regular_file(path, "JSON-lines file").read_bytes()
    return data.decode("utf-8", errors="replace").splitlines()


def read_marker(path: str | os.PathLike, kind: str) -> dict[str, Any] | None:
    """The JSON object in the regular file `path` if its "format" is `kind`; None when it is
    missing, damaged, not a regular file or of another kind (a marker or a sidecar that says
    what jaxart wrote beside it)."""
    path = Path(path)
    try:
        if not path.is_file():
            return None
        found = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) and found.get("format") == kind else None


def json_line(record: Mapping[str, Any]) -> str:
    return json.dumps(record) + "\n"


def write_json_lines(path: str | os.PathLike, rows: Iterable[Mapping[str, Any]]) -> Path:
    """Writes `rows` as a whole JSON-lines file, atomically."""
    text = "".join(json_line(row) for row in rows)
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def keep_json_lines(path: str | os.PathLike, keep: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    """Rewrites `path` (atomically, only if something goes) to the rows `keep` accepts; returns them.

    A resumed run uses it to drop the lines written after the checkpoint it resumes from
    (and any line cut short by a kill), so each step appears once.
    """
    path = Path(path)
    lines = [line for line in _lines(path) if line.strip()]
    rows = [row for row in read_json_lines(path) if keep(row)]
    if len(rows) != len(lines):
        write_json_lines(path, rows)
    return rows


class JsonLinesWriter:
    """Appends JSON lines to a file, flushing each batch, so a reader (or a killed run's
    resume) sees whole lines; a line cut short by a kill is dropped by `read_json_lines`."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        target = output_target(self.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        self.file = target.open("a")

    def write(self, rows: Iterable[Mapping[str, Any]]) -> None:
        self.file.write("".join(json_line(row) for row in rows))
        self.file.flush()

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> JsonLinesWriter:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def append_json_line(path: str | os.PathLike, record: Mapping[str, Any]) -> Path:
    """Appends one JSON object as a line with a single write (no rewrite of the file)."""
    with JsonLinesWriter(path) as log:
        log.write([record])
    return Path(path)
