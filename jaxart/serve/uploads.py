"""Pictures the page sends: capped, decoded by jaxart's own image rules, kept under an id.

Rules:
  * an upload is refused (InputError, one line) over `max_bytes`, over `max_pixels` (read from
    its header, before any decoding: a decompression bomb never decodes), or when it is not a
    whole image by `jaxart.images` (a text file named .png, a truncated file);
  * what is kept is the decoded picture as an 8-bit RGB PNG (EXIF orientation applied), in the
    server's temporary folder, named by a random id: the page names pictures by id, never by
    a path on the server.
"""

from __future__ import annotations

import dataclasses
import re
import threading
import uuid
from pathlib import Path

from PIL import Image

from jaxart import images
from jaxart.errors import InputError
from jaxart.files import atomic_path

ID = re.compile(r"[0-9a-f]{32}")


@dataclasses.dataclass(frozen=True)
class Upload:
    id: str
    name: str
    width: int
    height: int
    path: Path


class Uploads:
    def __init__(self, folder: Path, max_bytes: int, max_pixels: int) -> None:
        self.folder, self.max_bytes, self.max_pixels = folder, max_bytes, max_pixels
        self._kept: dict[str, Upload] = {}
        self._lock = threading.Lock()

    def add(self, data: bytes, name: str = "upload") -> Upload:
        """Checks and keeps one picture's bytes (see the module's rules)."""
        if len(data) > self.max_bytes:
            raise InputError(f"{name!r} is {len(data):,} bytes; the limit is {self.max_bytes:,}")
        if not data:
            raise InputError(f"{name!r} is empty")
        key = uuid.uuid4().hex
        raw = self.folder / f"{key}.upload"
        raw.write_bytes(data)
        try:
            height, width = _named(name, images.image_size, raw)
            if width * height > self.max_pixels:
                raise InputError(f"{name!r} is {width}x{height}; the limit is {self.max_pixels:,} pixels")
            picture = _named(name, images.open_rgb, raw)
        finally:
            raw.unlink()
        path = self.folder / f"{key}.png"
        with atomic_path(path) as tmp:
            picture.save(tmp, format="PNG")
        upload = Upload(key, Path(name).name, picture.width, picture.height, path)
        with self._lock:
            self._kept[key] = upload
        return upload

    def get(self, key: str) -> Upload:
        """The upload of that id; InputError for an id that is not one."""
        upload = self._kept.get(key) if ID.fullmatch(key) else None
        if upload is None:
            raise InputError(f"no uploaded picture {key!r}")
        return upload


def _named(name: str, read, path: Path):
    """`read(path)`, its InputError naming the upload rather than the temporary file."""
    try:
        return read(path)
    except InputError as e:
        raise InputError(str(e).replace(repr(str(path)), repr(name)).replace(str(path), name)) from None
    except Image.DecompressionBombError:
        raise InputError(f"{name!r} has too many pixels") from None
