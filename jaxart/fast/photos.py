"""Training photos: a folder's photos listed and checked up front, and deterministic random crops.

Every draw comes from the run's data key and the draw's own indices, never from a stream
consumed in order: crop j of step i depends only on (seed, i, j), so a resumed run, or a
process reading only its rows of a batch, draws exactly what an uninterrupted run does.

Photo s = i * batch_size + j of the run is photo `s % n` of epoch `s // n`'s permutation of
the n training photos (each photo once per epoch). Its crop: the photo is first shrunk (never
enlarged) so its shorter side is at most `ZOOM` x `size`; then its shorter side is resized to a
random length in [size, max(size, that side)] (a small photo is enlarged to `size`) and a random
`size` x `size` square is cut from it.

Decoding: photos are decoded on the fly, and the shrunk pictures of the first photos decoded are
kept in memory up to `CACHE_BYTES`, so a small folder (a few hundred photos at 256 px) is
decoded once; a large one keeps that much and decodes the rest each time it is drawn. Either way
the pixels are the same.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from jaxart import images
from jaxart.errors import InputError, option

__all__ = ["Photos", "center_crop", "list_photos"]

ZOOM = 2  # the largest shorter side a crop is drawn from, in crop sizes: a crop shows at least half the photo's
CACHE_BYTES = 1 << 30  # decoded (shrunk) pictures kept in memory
PREVIEW_PHOTOS = 4  # held out of training for the previews (see `Photos.split`)
HOLD_OUT_SHARE = 5  # ... but at most one photo in this many
# Tags that keep the draws of different purposes apart under one key.
_ORDER, _CROP, _HOLD = 1, 2, 3


def _suffixes() -> frozenset[str]:
    """The file name endings Pillow opens (".jpg", ".png", ...), lower case."""
    Image.init()
    return frozenset(ext.lower() for ext, kind in Image.registered_extensions().items() if kind in Image.OPEN)


def list_photos(folder: str | os.PathLike) -> list[Path]:
    """The photos under `folder` (recursively, links followed, each folder once, in sorted order):
    the files whose extension Pillow opens, each checked to be a readable image from its header.

    Raises InputError for a folder that is missing or not a folder, a photo Pillow cannot read
    (naming it: none is skipped), or a folder with no photos."""
    root = Path(folder)
    if not root.is_dir():
        what = "does not exist" if not (root.exists() or root.is_symlink()) else "is not a folder"
        raise InputError(f"{option('content')} {str(root)!r} {what}; give a folder of photos")
    suffixes = _suffixes()
    photos, others, seen = [], 0, set()
    for parent, folders, files in os.walk(root, followlinks=True):
        real = os.path.realpath(parent)
        if real in seen:  # a link back up (a loop) or to a folder listed already
            folders[:] = []
            continue
        seen.add(real)
        folders.sort()
        for name in sorted(files):
            if Path(name).suffix.lower() in suffixes:
                photos.append(Path(parent) / name)
            else:
                others += 1
    if not photos:
        shown = ", ".join(sorted(suffixes & {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif"}))
        raise InputError(
            f"{option('content')} {str(root)!r} holds no photos (files ending {shown}, ...; it holds {others} other "
            "file(s)); give a folder of photos"
        )
    for path in photos:
        images.image_size(path)  # InputError naming a file that is not a readable image
    return photos


def _shrunk(picture: Image.Image, longest_short_side: int) -> Image.Image:
    """`picture` scaled down (Lanczos) so its shorter side is at most `longest_short_side`."""
    width, height = picture.size
    short = min(width, height)
    if short <= longest_short_side:
        return picture
    scale = longest_short_side / short
    size = (max(round(width * scale), longest_short_side), max(round(height * scale), longest_short_side))
    return picture.resize(size, Image.Resampling.LANCZOS)


def _short_side_to(picture: Image.Image, short: int) -> Image.Image:
    """`picture` resized (Lanczos) so its shorter side is `short` pixels, keeping its aspect."""
    width, height = picture.size
    scale = short / min(width, height)
    size = (max(round(width * scale), short), max(round(height * scale), short))
    return picture if size == picture.size else picture.resize(size, Image.Resampling.LANCZOS)


class Photos:
    """A run's photos, drawn as crops of `size` pixels from `key` (uint32 key data: the run's
    data key, `jax.random.key_data`); the held-out preview photos are never drawn."""

    def __init__(self, paths: Sequence[Path], size: int, key: np.ndarray):
        self.paths, self.size = list(paths), size
        self.key = tuple(int(k) for k in np.asarray(key, np.uint32).ravel())
        self.train, self.held_out = self.split()
        self._cache: dict[int, Image.Image] = {}
        self._cached_bytes = 0
        self._epoch: tuple[int, np.ndarray] = (-1, np.zeros(0, np.int64))

    def split(self) -> tuple[list[int], list[int]]:
        """(training, held-out) photo indices: PREVIEW_PHOTOS drawn from the key held out for
        the previews, at most one in HOLD_OUT_SHARE (none from fewer than HOLD_OUT_SHARE
        photos: then the previews show training photos)."""
        n = len(self.paths)
        held = min(PREVIEW_PHOTOS, n // HOLD_OUT_SHARE)
        order = np.random.default_rng((*self.key, _HOLD)).permutation(n)
        return sorted(int(i) for i in order[held:]), sorted(int(i) for i in order[:held])

    def checksum(self) -> str:
        """sha256 of the photos' relative names and sizes, in order: what a resume must find
        again for its crops to be the same (cheap: no photo is read)."""
        h = hashlib.sha256()
        root = os.path.commonpath([str(p.parent) for p in self.paths])
        for path in self.paths:
            h.update(f"{os.path.relpath(path, root)}\0{path.stat().st_size}\n".encode("utf-8", "surrogateescape"))
        return h.hexdigest()

    def picture(self, index: int) -> Image.Image:
        """Photo `index` decoded (EXIF-oriented, RGB) and shrunk so its shorter side is at most
        ZOOM x size; kept in memory while the cache has room."""
        if index in self._cache:
            return self._cache[index]
        picture = _shrunk(images.open_rgb(self.paths[index]), ZOOM * self.size)
        cost = picture.width * picture.height * 3
        if self._cached_bytes + cost <= CACHE_BYTES:
            self._cache[index] = picture
            self._cached_bytes += cost
        return picture

    def _order(self, epoch: int) -> np.ndarray:
        """Epoch `epoch`'s permutation of the training photos (the latest epoch's kept)."""
        if self._epoch[0] != epoch:
            self._epoch = (epoch, np.random.default_rng((*self.key, _ORDER, epoch)).permutation(len(self.train)))
        return self._epoch[1]

    def photo_of(self, sample: int) -> int:
        """The photo index of the run's `sample`-th crop (step i's row j is i * batch_size + j)."""
        epoch, position = divmod(sample, len(self.train))
        return self.train[int(self._order(epoch)[position])]

    def crop(self, sample: int) -> np.ndarray:
        """The run's `sample`-th crop: uint8 (size, size, 3)."""
        picture = self.picture(self.photo_of(sample))
        rng = np.random.default_rng((*self.key, _CROP, sample))
        short = int(rng.integers(self.size, max(self.size, min(picture.size)) + 1))
        picture = _short_side_to(picture, short)
        top = int(rng.integers(0, picture.height - self.size + 1))
        left = int(rng.integers(0, picture.width - self.size + 1))
        return np.asarray(picture.crop((left, top, left + self.size, top + self.size)))

    def batches(self, step: int, length: int, batch_size: int, rows: Sequence[int]) -> np.ndarray:
        """Rows `rows` of the batches of steps step..step+length-1: uint8 (length, len(rows), size, size, 3)."""
        return np.stack([np.stack([self.crop(i * batch_size + j) for j in rows]) for i in range(step, step + length)])

    def preview(self) -> np.ndarray:
        """The fixed preview photos, centre crops of `size`: uint8 (P, size, size, 3); the held-out
        photos, or the first training photos when there are none."""
        indices = self.held_out or self.train[:PREVIEW_PHOTOS]
        return np.stack([center_crop(self.picture(i), self.size) for i in indices])


def center_crop(picture: Image.Image, size: int) -> np.ndarray:
    """The central `size` x `size` square of `picture` after its shorter side is resized to `size`: uint8."""
    picture = _short_side_to(picture, size)
    left, top = (picture.width - size) // 2, (picture.height - size) // 2
    return np.asarray(picture.crop((left, top, left + size, top + size)))
