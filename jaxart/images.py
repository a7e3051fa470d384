"""Images in and out: Pillow files <-> float32 HWC arrays in [0, 1].

Colour rule for inputs (applied after EXIF orientation):
  * RGB as is; L, 1 and P are expanded to RGB (P through its palette);
  * any alpha (RGBA, LA, P with transparency) is composited on white;
  * CMYK goes through Pillow's CMYK->RGB conversion;
  * 16-bit greyscale (I;16*, I) is scaled to 8 bits by value / 257, rounded;
    32-bit float (F) is clipped to [0, 255] as Pillow does.
Resizing happens on the 8-bit RGB image with Lanczos, exactly as the seed does it.
Masks (`load_mask`) follow the same colour rule, then become greyscale weights in [0, 1]: the
8-bit luminance (Pillow's "L", ITU-R 601) / 255, resized in float with the triangle filter.

Outputs: PNG, JPEG and WebP at 8 bits per channel; PNG and TIFF also at 16 (`save_image`'s
`bit_depth`; TIFF's default), quantised from the float picture directly, never through 8 bits.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from jaxart import errors
from jaxart.errors import InputError
from jaxart.files import atomic_path, check_output_path, regular_file

__all__ = ["image_size", "load_image", "load_mask", "make_grid", "resize_mask", "save_image"]

OUTPUT_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF"}
BIT_DEPTHS = (8, 16)
# Formats that hold 16 bits per channel, and the depth each is written at when none is asked
# for: TIFF is what one picks for 16 bits (as crowsonkb's style_transfer writes it), PNG for 8.
DEFAULT_DEPTHS = {"PNG": 8, "TIFF": 16}
# PNG at zlib level 1 (OpenCV's default), not Pillow's 6: the same pixels, written 4x faster (25 ms
# against 100 ms for a stylised 512x344 picture) in files ~17% larger. A folder of pictures
# through a feed-forward network spent more time compressing than computing.
SAVE_OPTIONS = {"PNG": {"compress_level": 1}, "JPEG": {"quality": 95}, "WEBP": {"quality": 95}}


def _bomb(path: Path) -> InputError:
    return InputError(
        f"image {str(path)!r} has more than {Image.MAX_IMAGE_PIXELS} pixels (refused as a possible decompression bomb)"
    )


@contextlib.contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Turns what Pillow raises while reading `path` into one InputError saying what is wrong;
    a decompression bomb is refused from 1x Pillow's MAX_IMAGE_PIXELS (it only warns below 2x)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise _bomb(path) from e
    except PermissionError as e:
        raise InputError(f"image {str(path)!r} cannot be read: permission denied") from e
    except UnidentifiedImageError as e:
        raise InputError(f"{str(path)!r} is not an image Pillow can read") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise InputError(f"image {str(path)!r} is damaged or truncated ({e})") from e


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(height, width) of an image file as stored, from its header alone: cheap even for a huge
    picture. (`open_rgb` may swap the two by EXIF orientation; reading that can mean decoding
    the pixels, and sizes' products, e.g. memory, do not depend on it.) Raises InputError as
    `open_rgb` does."""
    path = Path(path)
    regular_file(path, "image")
    with _reading(path), Image.open(path) as image:
        width, height = image.size
    return height, width


def open_rgb(path: str | os.PathLike) -> Image.Image:
    """Opens any image Pillow reads as a fully loaded 8-bit RGB image (see module rule).

    Raises InputError for a missing or unreadable file, a folder, a non-image, a truncated
    image or a decompression bomb (over Pillow's MAX_IMAGE_PIXELS).
    """
    path = Path(path)
    regular_file(path, "image")
    with _reading(path), Image.open(path) as opened:
        opened.load()
        image = ImageOps.exif_transpose(opened)
    return to_rgb(image)


def to_rgb(image: Image.Image) -> Image.Image:
    """Converts any Pillow mode to 8-bit RGB by the module's colour rule."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        values = np.asarray(image, dtype=np.float64)
        image = Image.fromarray(np.round(np.clip(values, 0, 65535) / 257.0).astype(np.uint8), "L")
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def to_float(pixels: Any) -> Any:
    """uint8 pixels (numpy or jax, any shape) -> float32 in [0, 1], as torchvision's ToTensor."""
    return pixels.astype("float32") / 255.0


def to_array(image: Image.Image) -> np.ndarray:
    """8-bit RGB Pillow image -> float32 (H, W, 3) in [0, 1]."""
    return to_float(np.asarray(image))


def resize_longest(image: Image.Image, max_size: int) -> Image.Image:
    """Scales so the longest side is `max_size` (up or down), as the seed's load_image does."""
    scale = max_size / max(image.size)
    width, height = (max(int(s * scale), 1) for s in image.size)
    return image.resize((width, height), Image.Resampling.LANCZOS)


def load_image(
    path: str | os.PathLike, max_size: int | None = None, shape: tuple[int, int] | None = None
) -> np.ndarray:
    """Reads an image as float32 (H, W, 3) in [0, 1], resized like the seed's load_image.

    Args:
      max_size: scale so the longest side has this many pixels.
      shape: resize to exactly (height, width) afterwards.
    """
    image = open_rgb(path)
    if max_size:
        image = resize_longest(image, max_size)
    if shape:
        image = image.resize((shape[1], shape[0]), Image.Resampling.LANCZOS)
    return to_array(image)


def load_mask(path: str | os.PathLike, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Reads an image as float32 (H, W) weights in [0, 1], white 1 and black 0 (see module
    rule); `shape`: resized to exactly (height, width) by `resize_mask`."""
    mask = to_float(np.asarray(open_rgb(path).convert("L")))
    return resize_mask(mask, shape) if shape else mask


def resize_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) float weights in [0, 1] resized to (height, width) `shape`, in float with the
    triangle (bilinear) filter, antialiased when shrinking: unlike Lanczos it never rings, so a
    black area stays exactly 0 away from its edges and the weights stay in [0, 1]. The very same
    array when already that shape."""
    if mask.shape == tuple(shape):
        return mask
    grey = Image.fromarray(np.asarray(mask, np.float32)).resize((shape[1], shape[0]), Image.Resampling.BILINEAR)
    return np.clip(np.asarray(grey, np.float32), 0.0, 1.0)


def output_depth(path: str | os.PathLike, depth: int | None = None) -> int:
    """The bits per channel a picture at `path` is written with: `depth`, or by default the
    format's (see DEFAULT_DEPTHS). InputError for a depth the format cannot hold (JPEG and
    WebP hold 8) or an unknown depth."""
    fmt = OUTPUT_FORMATS.get(Path(path).suffix.lower(), "")
    if depth is None:
        return DEFAULT_DEPTHS.get(fmt, 8)
    if depth not in BIT_DEPTHS:
        raise InputError(f"{errors.option('bit_depth')} must be 8 or 16, got {depth!r}")
    if depth == 16 and fmt not in DEFAULT_DEPTHS:
        raise InputError(
            f"{errors.option('bit_depth')} 16 needs a .png or .tif output; {str(path)!r} is {fmt or 'unknown'}, 8-bit only"
        )
    return depth


def check_image_output(path: str | os.PathLike, depth: int | None = None) -> Path:
    """Validates an image output path (folder exists, known extension, a `bit_depth` the format
    holds) before any work."""
    path = check_output_path(path, tuple(OUTPUT_FORMATS))
    output_depth(path, depth)
    return path


def to_uint8(image: np.ndarray) -> np.ndarray:
    """float [0, 1] -> uint8, rounding to nearest (clamped first)."""
    return np.round(np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)


def to_uint16(image: np.ndarray) -> np.ndarray:
    """float [0, 1] -> uint16, rounding to nearest (clamped first), in float64 so that no value
    rounds otherwise than exactly."""
    return np.round(np.clip(np.asarray(image, dtype=np.float64), 0.0, 1.0) * 65535.0).astype(np.uint16)


def _write_png16(path: Path, pixels: np.ndarray) -> None:
    """Writes uint16 (H, W, 3) RGB or (H, W) greyscale pixels as a 16-bit PNG with OpenCV
    (Pillow writes 16-bit greyscale only), at the module's PNG compression level."""
    import cv2  # deferred: ~15 ms to import (after numpy), and only a 16-bit PNG needs it

    bgr = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR) if pixels.ndim == 3 else pixels  # OpenCV's channel order
    ok, encoded = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, SAVE_OPTIONS["PNG"]["compress_level"]])
    if not ok:
        raise RuntimeError(f"OpenCV could not encode {pixels.shape} pixels as a 16-bit PNG")
    with open(path, "wb") as f:
        f.write(encoded.tobytes())


def _write_tiff(path: Path, pixels: np.ndarray) -> None:
    """Writes uint8 or uint16 pixels as a deflate-compressed TIFF with tifffile (Pillow writes no
    16-bit RGB TIFF); the horizontal predictor shrinks smooth pictures as PNG's filters do."""
    import tifffile  # deferred: only a TIFF needs it

    photometric = "rgb" if pixels.ndim == 3 else "minisblack"
    tifffile.imwrite(
        path, pixels, photometric=photometric, compression="zlib", compressionargs={"level": 1}, predictor=True
    )


def save_image(path: str | os.PathLike, image: np.ndarray, bit_depth: int | None = None) -> Path:
    """Writes a float (H, W, 3) or (H, W) image in [0, 1] atomically; format from the extension.

    Args:
      bit_depth: 8 or 16 bits per channel (16: .png and .tif only); default 16 for .tif/.tiff,
        8 otherwise. 16 bits are round(x * 65535) of the float values themselves.
    """
    path = check_output_path(path, tuple(OUTPUT_FORMATS))
    fmt = OUTPUT_FORMATS[path.suffix.lower()]
    depth = output_depth(path, bit_depth)  # also refuses a depth the format cannot hold
    with atomic_path(path) as tmp:
        if fmt == "TIFF":
            _write_tiff(tmp, to_uint16(image) if depth == 16 else to_uint8(image))
        elif depth == 16:
            _write_png16(tmp, to_uint16(image))
        else:
            Image.fromarray(to_uint8(image)).save(tmp, format=fmt, **SAVE_OPTIONS[fmt])
    return path


def make_grid(images: np.ndarray, ncols: int | None = None, pad: int = 2, pad_value: float = 1.0) -> np.ndarray:
    """Tiles (N, H, W) or (N, H, W, C) images into one (rows*H', cols*W'[, C]) picture."""
    images = np.asarray(images)
    n, h, w = images.shape[:3]
    ncols = ncols or int(np.ceil(np.sqrt(n)))
    nrows = int(np.ceil(n / ncols))
    tail = images.shape[3:]
    grid = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad, *tail), pad_value, images.dtype)
    for i, image in enumerate(images):
        r, c = divmod(i, ncols)
        top, left = pad + r * (h + pad), pad + c * (w + pad)
        grid[top : top + h, left : left + w] = image
    return grid
