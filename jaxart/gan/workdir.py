"""A GAN run's folder: the GAN's `Layout` of a `jaxart.workdir` (see there for the rules: a
folder of jaxart's own, checked before any work, held by one `train` at a time).

Besides the marker and the lock, a GAN run touches only the entries of `ENTRIES` at the top of
its folder (and, with `runs` R > 1, the same in each run-RRR folder).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

from jaxart import workdir as _workdir
from jaxart.tensorboard import FOLDER as TENSORBOARD_FOLDER
from jaxart.workdir import LOCK_FILE, MARKER, Layout

MARKER_FORMAT = "jaxart-gan-workdir"
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
    TENSORBOARD_FOLDER: True,
}
# A `runs` R > 1 workdir's run folders are workdirs too; folders of versions before the marker stay ours.
LAYOUT = Layout(MARKER_FORMAT, ENTRIES, run_folder=re.compile(r"run-\d{3}"), unmarked=True)


def is_workdir(folder: Path) -> bool:
    """Whether `folder` is a GAN workdir (`jaxart.workdir.is_workdir`)."""
    return _workdir.is_workdir(folder, LAYOUT)


def check_workdir(workdir: str | os.PathLike) -> Path:
    """`workdir` as a Path if a GAN run may write there (`jaxart.workdir.check_workdir`)."""
    return _workdir.check_workdir(workdir, LAYOUT)


@contextlib.contextmanager
def locked(workdir: str | os.PathLike) -> Iterator[None]:
    """Holds the GAN workdir's lock while inside (`jaxart.workdir.locked`)."""
    with _workdir.locked(workdir, LAYOUT):
        yield
