"""MNIST and Fashion-MNIST as uint8 numpy arrays, from IDX files or torchvision's download.

A data source is a name (`mnist`, `fashion-mnist`) or a folder holding the four
standard IDX files (`train-images-idx3-ubyte[.gz]`, ...). Names are looked up in
known folders first (so nothing is downloaded when the data is already on disk),
then fetched with torchvision's dataset classes where the internet is reachable.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from jaxart.errors import InputError

SPLITS = {"train": "train", "test": "t10k"}
_IDX_DTYPES = {0x08: np.uint8}
_PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Folders searched for each named data set, in order, before any download.
KNOWN_FOLDERS = {
    "mnist": [
        "$JAXART_MNIST_DIR",
        str(_PROJECT_ROOT.parent / "shared" / "data" / "mnist"),
        "~/.cache/jaxart/data/MNIST/raw",
    ],
    "fashion-mnist": [
        "$JAXART_FASHION_MNIST_DIR",
        "/usr/share/datasets/fashion-mnist",
        "~/.cache/jaxart/data/FashionMNIST/raw",
    ],
}
DOWNLOAD_ROOT = Path("~/.cache/jaxart/data").expanduser()
HOW_TO_GET = {
    "mnist": "put the four MNIST IDX files in a folder and pass it with --data, set $JAXART_MNIST_DIR, "
    "or connect to the internet so torchvision can download MNIST",
    "fashion-mnist": "run 'apt-get install dataset-fashion-mnist', pass a folder of its IDX files with --data, "
    "or connect to the internet so torchvision can download FashionMNIST",
}


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


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Reads one IDX file (gzipped or not) into a numpy array, checking its header."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise InputError(f"cannot read IDX file {str(path)!r}: {e}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise InputError(f"{str(path)!r} is not an unsigned-byte IDX file")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if len(data) != header + int(np.prod(shape)):
        raise InputError(f"IDX file {str(path)!r} is truncated or has trailing bytes (shape {shape})")
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
    images_path = _find(folder, f"{prefix}-images-idx3-ubyte")
    labels_path = _find(folder, f"{prefix}-labels-idx1-ubyte")
    if images_path is None or labels_path is None:
        raise InputError(
            f"data folder {str(folder)!r} lacks {prefix}-images-idx3-ubyte[.gz] and {prefix}-labels-idx1-ubyte[.gz]"
        )
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise InputError(f"IDX files in {str(folder)!r} disagree: images {images.shape}, labels {labels.shape}")
    return Dataset(images, labels)


def _download(name: str) -> Path | None:
    """Fetches `name` with torchvision into DOWNLOAD_ROOT; None when offline."""
    from torchvision import datasets  # deferred: importing torch costs seconds

    cls = {"mnist": datasets.MNIST, "fashion-mnist": datasets.FashionMNIST}[name]
    try:
        cls(str(DOWNLOAD_ROOT), train=True, download=True)
        cls(str(DOWNLOAD_ROOT), train=False, download=True)
    except (OSError, RuntimeError):
        return None
    return DOWNLOAD_ROOT / cls.__name__ / "raw"


def resolve(source: str, download: bool = True) -> Path:
    """Turns a data source (a name or a folder) into a folder of IDX files."""
    if source not in KNOWN_FOLDERS:
        folder = Path(source).expanduser()
        if not folder.is_dir():
            raise InputError(f"unknown data {source!r}: expected 'mnist', 'fashion-mnist' or an existing folder")
        return folder
    for candidate in KNOWN_FOLDERS[source]:
        expanded = os.path.expandvars(candidate)
        if expanded.startswith("$"):
            continue
        folder = Path(expanded).expanduser()
        if folder.is_dir() and has_idx_files(folder):
            return folder
    folder = _download(source) if download else None
    if folder is None:
        raise InputError(f"{source} is not on this machine and could not be downloaded: {HOW_TO_GET[source]}")
    return folder


def load(source: str, split: str = "train", download: bool = True) -> Dataset:
    """Loads `split` ('train' or 'test') of a data source (a name or a folder)."""
    return load_folder(resolve(source, download=download), split)
