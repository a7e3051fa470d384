"""MNIST and Fashion-MNIST as uint8 numpy arrays, from IDX files or torchvision's download.

A data source is a name (`mnist`, `fashion-mnist`) or a folder holding the four standard IDX
files (`train-images-idx3-ubyte[.gz]`, ...). A name is looked up, in order, in `$JAXART_DATA`
(a folder holding `mnist/` and `fashion-mnist/`, or torchvision's `MNIST/raw/` layout), in
`/usr/share/datasets` (where Debian's `dataset-fashion-mnist` package puts its files), in the
user's cache (`jaxart.cache.cache_dir("data")`, where downloads go), and only then fetched with
torchvision's dataset classes, so nothing is downloaded when the data is already on disk.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import math
import os
import sys
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np

from jaxart.cache import cache_dir
from jaxart.errors import InputError, option, reason
from jaxart.files import env_folder, regular_file

DATA_ENV = "JAXART_DATA"
SYSTEM_DATA = Path("/usr/share/datasets")  # Debian's dataset-* packages
IMAGE_SHAPE = (28, 28)  # every data set here: (height, width), one channel
NUM_CLASSES = 10  # and its labels 0..9
SPLITS = {"train": "train", "test": "t10k"}
_IDX_DTYPES = {0x08: np.uint8}
# Each name's folder inside $JAXART_DATA, and torchvision's class (its folder is <class>/raw).
NAMES = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}
# `data` is a field (RunConfig's; the judge's and eval's source): each command shows its --data.
HOW_TO_GET = (
    f"put its four IDX files in a folder and pass it with {option('data')}, set ${DATA_ENV} to a folder "
    "holding mnist/ and fashion-mnist/, or connect to the internet so torchvision can download it"
)


def candidate_folders(name: str) -> list[Path]:
    """Where a named data set may already be, in the order they are tried."""
    given = env_folder(DATA_ENV)
    roots = [*([given] if given is not None else []), SYSTEM_DATA]
    folders = [folder for root in roots for folder in (root / name, root / NAMES[name] / "raw")]
    return [*folders, download_root() / NAMES[name] / "raw"]


def download_root() -> Path:
    return cache_dir("data")


class Dataset(NamedTuple):
    """Images (N, 28, 28) uint8 in [0, 255] and labels (N,) uint8."""

    images: np.ndarray
    labels: np.ndarray

    def checksum(self) -> str:
        """sha256 of images and labels: identifies the data a model was trained on."""
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.images).tobytes())
        h.update(np.ascontiguousarray(self.labels).tobytes())
        return h.hexdigest()


def check_labels(dataset: Dataset, what: str) -> None:
    """Raises InputError naming `what` (the data's role) unless it holds images, each labelled
    with a class 0..NUM_CLASSES-1."""
    labels = np.asarray(dataset.labels)
    outside = labels[(labels < 0) | (labels >= NUM_CLASSES)]
    if len(labels) == 0 or len(outside):
        found = f"label {int(outside[0])}" if len(outside) else "no images"
        raise InputError(f"{what} needs images labelled 0..{NUM_CLASSES - 1}; it has {found}")


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Reads one IDX file (gzipped or not) into a numpy array, checking its header against its
    length: a header that lies about the sizes is refused like a file cut short."""
    path = regular_file(path, "IDX file")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as e:  # zlib: a damaged .gz
        raise InputError(f"cannot read IDX file {str(path)!r} ({reason(e)})") from e
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise InputError(f"{str(path)!r} is not an unsigned-byte IDX file")
    header = 4 + 4 * data[3]
    if len(data) < header:
        raise InputError(
            f"IDX file {str(path)!r} is truncated: its header needs {header} bytes, the file holds {len(data)}"
        )
    shape = tuple(int.from_bytes(data[i : i + 4], "big") for i in range(4, header, 4))
    size = math.prod(shape)  # a Python int: no overflow, whatever the header says
    if len(data) != header + size:
        raise InputError(
            f"IDX file {str(path)!r} is truncated or has trailing bytes: its header promises shape {shape}, "
            f"{size} bytes of data, and the file holds {len(data) - header}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _find(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def has_idx_files(folder: Path, split: str = "train") -> bool:
    prefix = SPLITS[split]
    return all(_find(folder, f"{prefix}-{kind}") for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"))


def load_folder(folder: str | os.PathLike, split: str = "train") -> Dataset:
    """Loads one split from a folder of IDX files."""
    folder = Path(folder).expanduser()
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
    if not folder.is_dir():
        raise InputError(f"data folder {str(folder)!r} does not exist")
    prefix = SPLITS[split]
    stems = (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte")
    paths = [_find(folder, stem) for stem in stems]
    found = [path for path in paths if path is not None]
    if len(found) < len(paths):
        missing = [f"{stem}[.gz]" for stem, path in zip(stems, paths) if path is None]
        raise InputError(f"data folder {str(folder)!r} lacks {' and '.join(missing)}")
    images, labels = (read_idx(path) for path in found)
    if images.shape[1:] != IMAGE_SHAPE:
        raise InputError(
            f"IDX file {str(found[0])!r} holds an array of shape {images.shape}; expected images of shape "
            f"(N, {', '.join(map(str, IMAGE_SHAPE))})"
        )
    if labels.ndim != 1:
        raise InputError(f"IDX file {str(found[1])!r} holds an array of shape {labels.shape}; expected labels (N,)")
    if len(images) != len(labels):
        raise InputError(
            f"IDX files in {str(folder)!r} disagree: {found[0].name} holds {len(images)} images, "
            f"{found[1].name} {len(labels)} labels"
        )
    return Dataset(images, labels)


def _download(name: str) -> Path | None:
    """Fetches `name` with torchvision into `download_root()`; None when that fails (offline).

    torchvision reports its progress on stdout, which belongs to the commands' results: it
    goes to stderr after a success and nowhere after a failure, and a failed attempt removes
    the folders it created.
    """
    try:
        from torchvision import datasets  # deferred: importing torch costs seconds
    except ImportError as e:
        raise InputError(
            f"{name} is not on this machine, and torchvision, which downloads it, is not installed "
            f"(pip install 'jaxart[torchvision]'); or pass a folder of its four IDX files with {option('data')}"
        ) from e

    cls = getattr(datasets, NAMES[name])
    root = download_root()
    created = [p for p in (root / NAMES[name] / "raw", root / NAMES[name], root) if not p.exists()]
    report = io.StringIO()
    try:
        with contextlib.redirect_stdout(report), contextlib.redirect_stderr(report):
            cls(str(root), train=True, download=True)
            cls(str(root), train=False, download=True)
    except (OSError, RuntimeError):
        for folder in created:  # innermost first; a folder holding anything stays
            with contextlib.suppress(OSError):
                folder.rmdir()
        return None
    print(report.getvalue(), end="", file=sys.stderr)
    return root / NAMES[name] / "raw"


def resolve(source: str, download: bool = True) -> Path:
    """Turns a data source (a name or a folder) into a folder of IDX files."""
    if source not in NAMES:
        folder = Path(source).expanduser()
        if not folder.is_dir():
            raise InputError(f"unknown data {source!r}: expected 'mnist', 'fashion-mnist' or an existing folder")
        return folder
    for folder in candidate_folders(source):
        if folder.is_dir() and has_idx_files(folder):
            return folder
    downloaded = _download(source) if download else None
    if downloaded is None:
        raise InputError(f"{source} is not on this machine and could not be downloaded: {HOW_TO_GET}")
    return downloaded


def load(source: str, split: str = "train", download: bool = True) -> Dataset:
    """Loads `split` ('train' or 'test') of a data source (a name or a folder)."""
    return load_folder(resolve(source, download=download), split)
