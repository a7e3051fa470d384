"""IDX files that are not MNIST's shape, whose header lies about their sizes, or that are cut
short or damaged: each is one InputError naming the file and what was expected."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from jaxart import data
from jaxart.errors import InputError

N = 6


def idx_bytes(array: np.ndarray, dims: tuple[int, ...] | None = None) -> bytes:
    """An unsigned-byte IDX file of `array`, its header saying `dims` (default: the true shape)."""
    dims = array.shape if dims is None else dims
    return bytes([0, 0, 8, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims) + array.tobytes()


IMAGES, LABELS = "train-images-idx3-ubyte", "train-labels-idx1-ubyte"
GOOD_IMAGES = idx_bytes(np.zeros((N, 28, 28), np.uint8))
GOOD_LABELS = idx_bytes(np.arange(N, dtype=np.uint8))

# name -> (files, the file the message names, the words expected)
CASES = {
    "32x32 images": (
        {IMAGES: idx_bytes(np.zeros((N, 32, 32), np.uint8))},
        IMAGES,
        f"holds an array of shape ({N}, 32, 32); expected images of shape (N, 28, 28)",
    ),
    "flat images": (
        {IMAGES: idx_bytes(np.zeros((N, 784), np.uint8))},
        IMAGES,
        "expected images of shape (N, 28, 28)",
    ),
    "images with a channel axis": (
        {IMAGES: idx_bytes(np.zeros((N, 28, 28, 1), np.uint8))},
        IMAGES,
        "expected images of shape (N, 28, 28)",
    ),
    "labels in two dimensions": (
        {LABELS: idx_bytes(np.zeros((N, 2), np.uint8))},
        LABELS,
        f"holds an array of shape ({N}, 2); expected labels (N,)",
    ),
    "more labels than images": (
        {LABELS: idx_bytes(np.zeros(N + 1, np.uint8))},
        None,
        f"{IMAGES} holds {N} images, {LABELS} {N + 1} labels",
    ),
    "a header counting more images than the file holds": (
        {IMAGES: idx_bytes(np.zeros((N, 28, 28), np.uint8), (N + 5, 28, 28))},
        IMAGES,
        f"its header promises shape ({N + 5}, 28, 28), {(N + 5) * 784} bytes of data, and the file holds {N * 784}",
    ),
    "a header with other image sizes": (
        {IMAGES: idx_bytes(np.zeros((N, 28, 28), np.uint8), (N, 32, 24))},
        IMAGES,
        f"its header promises shape ({N}, 32, 24)",
    ),
    "a header whose sizes overflow 64 bits": (
        {IMAGES: idx_bytes(np.zeros(0, np.uint8), (2**31, 2**31, 2**31))},
        IMAGES,
        "is truncated or has trailing bytes",
    ),
    "a header cut short": (
        {IMAGES: GOOD_IMAGES[:10]},
        IMAGES,
        "is truncated: its header needs 16 bytes, the file holds 10",
    ),
    "a header of 255 dimensions": (
        {IMAGES: bytes([0, 0, 8, 255]) + bytes(20)},
        IMAGES,
        "is truncated: its header needs 1024 bytes",
    ),
    "a damaged .gz": (
        {IMAGES + ".gz": b"\x1f\x8b\x08\x00" + bytes(6) + b"\xff" * 100},
        IMAGES + ".gz",
        "cannot read IDX file",
    ),
    "a .gz cut short": (
        {
            IMAGES + ".gz": gzip.compress(idx_bytes(np.random.default_rng(0).integers(0, 256, (N, 28, 28), np.uint8)))[
                :100
            ]
        },
        IMAGES + ".gz",
        "cannot read IDX file",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_idx_files_are_one_input_error_naming_the_file(case, tmp_path):
    files, named, words = CASES[case]
    folder = tmp_path / "data"
    folder.mkdir()
    for name, content in {IMAGES: GOOD_IMAGES, LABELS: GOOD_LABELS, **files}.items():
        if name.endswith(".gz"):
            (folder / name.removesuffix(".gz")).unlink(missing_ok=True)
        (folder / name).write_bytes(content)
    with pytest.raises(InputError) as raised:
        data.load_folder(folder)
    message = str(raised.value)
    assert "\n" not in message and words in message, message
    assert named is None or repr(str(Path(folder / named))) in message, message


def test_good_idx_files_load(tmp_path):
    (tmp_path / IMAGES).write_bytes(GOOD_IMAGES)
    (tmp_path / LABELS).write_bytes(GOOD_LABELS)
    dataset = data.load_folder(tmp_path)
    assert dataset.images.shape == (N, 28, 28) and dataset.labels.tolist() == list(range(N))


@pytest.mark.parametrize(
    "labels, found", [([0, 9, 10, 3], "it has label 10"), ([2, -1], "it has label -1"), ([], "it has no images")]
)
def test_labels_outside_the_classes_are_one_input_error(labels, found):
    dataset = data.Dataset(np.zeros((len(labels), 28, 28), np.uint8), np.array(labels, np.int64))
    with pytest.raises(InputError, match=f"the test set needs images labelled 0..9; {found}"):
        data.check_labels(dataset, "the test set")
    data.check_labels(data.Dataset(np.zeros((3, 28, 28), np.uint8), np.array([0, 5, 9], np.uint8)), "fine")
