"""The GAN view: the training runs in one folder (`--runs-dir`), read live.

Rules: the page names a run by its folder's name alone, one path component of letters, digits,
'.', '_' and '-' (not '.' or '..'); the folder, resolved through any symlink, must lie inside
the runs folder and be a GAN workdir (`jaxart.gan.workdir.is_workdir`). Anything else is
`NotFound`, whatever the reason, so the page learns nothing of the server's other files.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from jaxart.gan.workdir import EVAL_FILE, is_workdir

NAME = re.compile(r"[A-Za-z0-9._-]{1,100}")
POINTS = 500  # loss-curve points the page gets per metric (the latest, thinned evenly)


class NotFound(Exception):
    """No run of that name the page may see."""


def run_folder(root: Path, name: str) -> Path:
    """The run `name` under `root` (see the module's rules); NotFound otherwise."""
    if not NAME.fullmatch(name) or name in (".", ".."):
        raise NotFound(name)
    folder = root / name
    try:
        real = folder.resolve(strict=True)
    except OSError:
        raise NotFound(name) from None
    if not real.is_relative_to(root.resolve()) or not real.is_dir() or not is_workdir(real):
        raise NotFound(name)
    return real


def names(root: Path) -> list[str]:
    """The runs the page may see, by name."""
    if not root.is_dir():
        return []
    found = []
    for entry in sorted(root.iterdir()):
        try:
            run_folder(root, entry.name)
        except NotFound:
            continue
        found.append(entry.name)
    return found


def _json_lines(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # a line being written
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def latest_samples(folder: Path) -> Path | None:
    """The newest sample grid of a run (samples/*.png, by step), or None."""
    grids = sorted((folder / "samples").glob("*.png"), key=lambda p: p.stat().st_mtime)
    return grids[-1] if grids else None


def view(root: Path, name: str) -> dict[str, Any]:
    """What the page shows of a run: its loss curves (step and each metric), its evaluations,
    and which sample grid is the latest."""
    folder = run_folder(root, name)
    rows = _json_lines(folder / "metrics.jsonl")
    stride = max(1, len(rows) // POINTS)
    rows = rows[::stride][-POINTS:]
    metrics = sorted({k for row in rows for k, v in row.items() if isinstance(v, (int, float)) and k != "step"})
    samples = latest_samples(folder)
    return {
        "name": name,
        "steps": [row.get("step") for row in rows],
        "metrics": {k: [row.get(k) for row in rows] for k in metrics},
        "evaluations": _json_lines(folder / EVAL_FILE)[-20:],
        "samples": samples.name if samples else None,
    }
