"""Where jaxart keeps what it makes once and reuses: a per-user cache folder (converted weights,
trained judges, XLA's compiled programs), the files shipped inside the package, and the
"orbax folder + JSON sidecar" format of a cached pytree.

The cache is `$JAXART_CACHE` if set, else the platform's user cache folder
(`$XDG_CACHE_HOME/jaxart` or `~/.cache/jaxart` on Linux, `~/Library/Caches/jaxart` on macOS,
`%LOCALAPPDATA%/jaxart` on Windows): never the installed package, which may be read-only.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import os
import sys
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jaxart import interrupts
from jaxart.errors import InputError, RunError, os_error, reason
from jaxart.files import check_utf8, env_folder, read_marker, replace_folder

CACHE_ENV = "JAXART_CACHE"
COMPILE_CACHE_ENV = "JAXART_COMPILE_CACHE"  # "0" turns the persistent compilation cache off
PARAMS_DIR = "params"
# The sidecar's field holding `tree_checksum` of the saved tree. Caches written before it are
# stale: a damaged file that still decodes would pass unseen (see `is_current`).
CHECKSUM = "params_sha256"


def cache_dir(*parts: str) -> Path:
    """The per-user cache folder (or a path inside it); not created here."""
    given = env_folder(CACHE_ENV)
    if given is not None:
        root = given
    elif sys.platform == "darwin":
        root = Path.home() / "Library" / "Caches" / "jaxart"
    elif sys.platform == "win32":
        root = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local")) / "jaxart"
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "jaxart"
    return root.joinpath(*parts)


def packaged(*parts: str) -> Path:
    """A file shipped with jaxart: `examples/...` (the bundled pictures) or `weights/...` (the
    trained judges). In a source checkout these are the top-level folders; a wheel carries
    them as the package data `jaxart/_examples` and `jaxart/_weights`."""
    top, *rest = parts
    installed = Path(__file__).resolve().parent / f"_{top}"
    root = installed if installed.is_dir() else Path(__file__).resolve().parent.parent / top
    return root.joinpath(*rest)


def enable_compile_cache() -> Path | None:
    """Turns on JAX's persistent compilation cache in `cache_dir("xla")`, unless
    `JAXART_COMPILE_CACHE=0`; returns the folder (None when off).

    A command's second run then loads its compiled programs instead of compiling them.
    Call it before the first compilation; it only sets jax.config (process-wide), so
    only the command-line entry points call it, never library functions.
    """
    if os.environ.get(COMPILE_CACHE_ENV, "1") in ("0", "", "false", "off"):
        return None
    import jax

    folder = cache_dir("xla")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None  # an unwritable cache only costs time
    jax.config.update("jax_compilation_cache_dir", str(folder))
    # The defaults skip programs that compile in under a second; most of ours take less on
    # their own but add up to seconds per command. Every one, however quick: the style targets
    # run op by op (`jaxart.style.loop._targets`), ~90 programs of ~17 ms each, 1.5 s a start
    # when compiled again (benchmarks/RESULTS.md, "Where a one-step run's seconds go").
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return folder


def tree_checksum(tree: Any) -> str:
    """sha256 of a pytree's leaves (dtype, shape and bytes, in tree order), computed on the host."""
    import jax
    import numpy as np

    h = hashlib.sha256()
    for leaf in jax.tree.leaves(jax.device_get(tree)):
        leaf = np.ascontiguousarray(leaf)
        h.update(f"{leaf.dtype}{leaf.shape}".encode())
        h.update(leaf.tobytes())
    return h.hexdigest()


def _listing(folder: Path) -> list[tuple[str, int]]:
    """Every path under `folder` with its size (-1 for a folder); what vanishes meanwhile is skipped."""
    entries = []
    for root, dirs, files in os.walk(folder):
        entries += [(os.path.join(root, d), -1) for d in dirs]
        for name in files:
            with contextlib.suppress(OSError):
                entries.append((os.path.join(root, name), os.stat(os.path.join(root, name)).st_size))
    return sorted(entries)


def _wait_until_still(folder: Path, quiet: float = 0.5, limit: float = 20.0) -> None:
    """Returns once nothing under `folder` has changed for `quiet` seconds (or after `limit`).

    When one write of an orbax save fails (a full disk), orbax gives up at once, but the others
    go on in tensorstore's threads for a moment: removed before they end, the folder comes back.
    """
    deadline = time.monotonic() + limit
    before = _listing(folder)
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = _listing(folder)
        if now == before:
            return
        before = now


def read_meta(folder: str | os.PathLike, meta_file: str, kind: str) -> dict[str, Any] | None:
    """The sidecar JSON of a cached pytree folder, or None when missing, unreadable or of
    another kind (its "format" field)."""
    return read_marker(Path(folder) / meta_file, kind)


def is_current(meta: Mapping[str, Any] | None) -> bool:
    """Whether a sidecar (`read_meta`'s) is of a cache that can be verified: it records its tree's
    checksum. An older one is stale: jaxart rebuilds its own caches, and `load_tree` refuses it."""
    return meta is not None and isinstance(meta.get(CHECKSUM), str)


def save_tree(folder: str | os.PathLike, tree: Any, meta: Mapping[str, Any], meta_file: str, kind: str) -> Path:
    """Writes `tree` as an orbax checkpoint in folder/params and `meta` (plus "format": kind and
    the tree's checksum) as folder/meta_file, replacing a folder of the same kind whole (see
    `replace_folder`); any other existing folder is refused. RunError, with nothing changed, when
    the file system refuses the write (a full disk)."""
    import jax
    import numpy as np
    import orbax.checkpoint as ocp  # deferred: only caching needs orbax

    check_utf8(folder, "folder")
    host = jax.tree.map(np.asarray, tree)
    sidecar = json.dumps({**meta, "format": kind, CHECKSUM: tree_checksum(host)}, indent=2) + "\n"

    def write(tmp: Path) -> None:
        try:
            # Begun, orbax's save runs threads that a start cut short leaves waiting forever.
            with interrupts.deferred(), ocp.StandardCheckpointer() as ckptr:
                ckptr.save(tmp / PARAMS_DIR, host)
                ckptr.wait_until_finished()
        except Exception:
            _wait_until_still(tmp)  # before `replace_folder` removes it
            raise
        (tmp / meta_file).write_text(sidecar)

    try:
        return replace_folder(folder, write, ours=lambda f: read_meta(f, meta_file, kind) is not None)
    except InputError:
        raise  # a refusal, before anything was written
    except Exception as e:  # orbax wraps the file system's errors in its own types
        cause = os_error(e)
        if cause is None:
            raise
        where = Path(folder).expanduser().absolute()
        raise RunError(f"could not write {str(where)!r} ({cause.strerror}); nothing there was changed") from e


def load_tree(folder: str | os.PathLike, target: Any, meta_file: str, kind: str, what: str) -> tuple[Any, dict]:
    """Reads a folder written by `save_tree` into the structure of `target` (shapes and dtypes,
    e.g. from jax.eval_shape) and checks it against its checksum; returns (tree, meta). Raises
    InputError, naming `what`, if the folder is not such a cache, is stale (`is_current`), cannot
    be read or is damaged."""
    import orbax.checkpoint as ocp  # deferred

    folder = check_utf8(Path(folder).expanduser(), f"{what} folder").absolute()
    meta = read_meta(folder, meta_file, kind)
    if meta is None or not (folder / PARAMS_DIR).is_dir():
        raise InputError(f"{str(folder)!r} is not a {what} folder (no {meta_file} and {PARAMS_DIR}/ inside)")
    if not is_current(meta):
        raise InputError(
            f"the {what} folder {str(folder)!r} was written by an earlier jaxart version, without a checksum; "
            "delete it to rebuild it"
        )
    try:
        with ocp.StandardCheckpointer() as ckptr:
            tree = ckptr.restore(folder / PARAMS_DIR, target)
    except Exception as e:  # orbax and tensorstore raise many types for a damaged checkpoint
        # The reads orbax abandoned are referenced from the error's frames: finalize them now,
        # while a command's filter of their reports is on (see `jaxart.cli`).
        traceback.clear_frames(e.__traceback__)
        gc.collect()
        raise InputError(
            f"{what} in {str(folder)!r} cannot be read ({reason(e)}); delete the folder to rebuild it"
        ) from e
    if tree_checksum(tree) != meta[CHECKSUM]:
        raise InputError(
            f"the {what} folder {str(folder)!r} is damaged (its arrays do not match their checksum); "
            "delete it to rebuild it"
        )
    return tree, meta
