"""Where jaxart keeps what it makes once and reuses: a per-user cache folder (converted weights,
trained judges, XLA's compiled programs), the files shipped inside the package, and the
"orbax folder + JSON sidecar" format of a cached pytree.

The cache is `$JAXART_CACHE` if set, else the platform's user cache folder
(`$XDG_CACHE_HOME/jaxart` or `~/.cache/jaxart` on Linux, `~/Library/Caches/jaxart` on macOS,
`%LOCALAPPDATA%/jaxart` on Windows): never the installed package, which may be read-only.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jaxart.errors import InputError, reason
from jaxart.files import replace_folder

CACHE_ENV = "JAXART_CACHE"
COMPILE_CACHE_ENV = "JAXART_COMPILE_CACHE"  # "0" turns the persistent compilation cache off
PARAMS_DIR = "params"


def cache_dir(*parts: str) -> Path:
    """The per-user cache folder (or a path inside it); not created here."""
    env = os.environ.get(CACHE_ENV)
    if env:
        root = Path(env).expanduser()
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
    # their own but add up to seconds per command.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.1)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return folder


def read_meta(folder: str | os.PathLike, meta_file: str, kind: str) -> dict[str, Any] | None:
    """The sidecar JSON of a cached pytree folder, or None when missing, unreadable or of
    another kind (its "format" field)."""
    try:
        meta = json.loads((Path(folder) / meta_file).read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("format") == kind else None


def save_tree(folder: str | os.PathLike, tree: Any, meta: Mapping[str, Any], meta_file: str, kind: str) -> Path:
    """Writes `tree` as an orbax checkpoint in folder/params and `meta` (plus "format": kind)
    as folder/meta_file, replacing a folder of the same kind whole (see `replace_folder`);
    any other existing folder is refused."""
    import jax
    import numpy as np
    import orbax.checkpoint as ocp  # deferred: only caching needs orbax

    def write(tmp: Path) -> None:
        with ocp.StandardCheckpointer() as ckptr:
            ckptr.save(tmp / PARAMS_DIR, jax.tree.map(np.asarray, tree))
            ckptr.wait_until_finished()
        (tmp / meta_file).write_text(json.dumps({**meta, "format": kind}, indent=2) + "\n")

    return replace_folder(folder, write, ours=lambda f: read_meta(f, meta_file, kind) is not None)


def load_tree(folder: str | os.PathLike, target: Any, meta_file: str, kind: str, what: str) -> tuple[Any, dict]:
    """Reads a folder written by `save_tree` into the structure of `target` (shapes and dtypes,
    e.g. from jax.eval_shape); returns (tree, meta). Raises InputError, naming `what`, if the
    folder is not such a cache or cannot be read."""
    import orbax.checkpoint as ocp  # deferred

    folder = Path(folder).expanduser().absolute()
    meta = read_meta(folder, meta_file, kind)
    if meta is None or not (folder / PARAMS_DIR).is_dir():
        raise InputError(f"{str(folder)!r} is not a {what} folder (no {meta_file} and {PARAMS_DIR}/ inside)")
    try:
        with ocp.StandardCheckpointer() as ckptr:
            tree = ckptr.restore(folder / PARAMS_DIR, target)
    except Exception as e:  # orbax and tensorstore raise many types for a damaged checkpoint
        raise InputError(
            f"{what} in {str(folder)!r} cannot be read ({reason(e)}); delete the folder to rebuild it"
        ) from e
    return tree, meta
