"""16-bit outputs: PNG (--bit-depth 16) and TIFF (16 bits by default), quantised from the float
picture itself: values are round(x * 65535), not an 8-bit value times 257. Read back with
libpng (torchvision's decoder), Pillow and tifffile; and every picture a style run writes
(result, snapshots, a batch's pairs and contact sheet, a folder's and a video's pictures) at
the depth asked for."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
from conftest import EXAMPLES, run_style
from PIL import Image

from jaxart import images
from jaxart.errors import InputError


def expected16(x: np.ndarray) -> np.ndarray:
    return np.round(np.clip(x.astype(np.float64), 0, 1) * 65535).astype(np.uint16)


def read_png16(path: Path) -> np.ndarray:
    """A 16-bit PNG's samples as libpng decodes them: (H, W, C) uint16. (Pillow reads 16-bit
    RGB as 8 bits; torchvision's decoder, deprecated for TorchCodec, is the libpng at hand.)"""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from torchvision.io import ImageReadMode, decode_png, read_file

        return decode_png(read_file(str(path)), ImageReadMode.UNCHANGED).permute(1, 2, 0).numpy()


def png_header(path: Path) -> tuple[int, int]:
    """(bit depth, colour type) from a PNG's IHDR chunk, which the format puts first."""
    data = Path(path).read_bytes()
    assert data[12:16] == b"IHDR"
    return data[24], data[25]


@pytest.fixture
def picture(rng) -> np.ndarray:
    x = rng.random((7, 9, 3)).astype(np.float32)
    x[0, :3] = [-0.5, 0.0, 1.5]  # out of range: clipped
    assert (expected16(x) % 257 != 0).mean() > 0.9  # not 8-bit values scaled up
    return x


def test_png16_round_trips_exactly(tmp_path, picture):
    path = images.save_image(tmp_path / "x.png", picture, bit_depth=16)
    assert png_header(path) == (16, 2)  # 16 bits, RGB
    np.testing.assert_array_equal(read_png16(path), expected16(picture))
    with Image.open(path) as im:  # Pillow reads 16-bit RGB as its high bytes: a valid file to it too
        im.verify()
    with Image.open(path) as im:
        np.testing.assert_array_equal(np.asarray(im), expected16(picture) >> 8)
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"]  # no temporary left behind


def test_grey_png16_round_trips_exactly_through_pillow(tmp_path, picture):
    path = images.save_image(tmp_path / "g.png", picture[..., 1], bit_depth=16)
    assert png_header(path) == (16, 0)
    with Image.open(path) as im:
        assert im.mode == "I;16"
        np.testing.assert_array_equal(np.asarray(im), expected16(picture[..., 1]))


@pytest.mark.parametrize("name", ["x.tif", "x.TIFF"])
def test_tiff_is_16_bits_by_default_and_round_trips_exactly(tmp_path, picture, name):
    path = images.save_image(tmp_path / name, picture)
    stored = tifffile.imread(path)
    assert stored.dtype == np.uint16
    np.testing.assert_array_equal(stored, expected16(picture))
    with Image.open(path) as im:  # Pillow opens it too (at 8 bits)
        assert im.size == (9, 7)
    assert images.load_image(path).shape == (7, 9, 3)


def test_8_bits_when_asked_or_by_default(tmp_path, picture):
    tif = images.save_image(tmp_path / "x.tif", picture, bit_depth=8)
    np.testing.assert_array_equal(tifffile.imread(tif), images.to_uint8(picture))
    png = images.save_image(tmp_path / "x.png", picture)
    assert png_header(png) == (8, 2)
    np.testing.assert_array_equal(np.asarray(Image.open(png)), images.to_uint8(picture))


def test_to_uint16_rounds_the_float_values(rng):
    x = rng.random(10_000).astype(np.float32)
    np.testing.assert_array_equal(images.to_uint16(x), expected16(x))
    halves = (np.arange(10) + 0.5) / 65535  # halfway: float64's rounding, to even
    np.testing.assert_array_equal(images.to_uint16(halves), np.round(halves * 65535))


@pytest.mark.parametrize("name", ["x.jpg", "x.jpeg", "x.webp"])
def test_16_bits_in_an_8_bit_format_are_refused_before_writing(tmp_path, name):
    with pytest.raises(InputError, match=r"`bit_depth` 16 needs a \.png or \.tif output"):
        images.check_image_output(tmp_path / name, 16)
    with pytest.raises(InputError, match="16 needs"):
        images.save_image(tmp_path / name, np.zeros((2, 2, 3)), bit_depth=16)
    with pytest.raises(InputError, match="must be 8 or 16"):
        images.save_image(tmp_path / "x.png", np.zeros((2, 2, 3)), bit_depth=12)
    assert list(tmp_path.iterdir()) == []


# --- the style command writes every picture at the depth asked for ------------------------------


BASE = ["--weights", "random", "--max-size", 32, "--steps", 3, "--content-layers", "relu1_1", "--style-layers"]
BASE += ["relu1_1", "--style", EXAMPLES / "style.png"]


def test_result_and_snapshots_at_16_bits(capsys, tmp_path):
    out16, out8 = tmp_path / "o16.png", tmp_path / "o8.png"
    for out, depth in ((out16, 16), (out8, 8)):
        code, _, err = run_style(
            capsys,
            [*BASE, "--content", EXAMPLES / "content.png", "--output", out, "--save-every", 2, "--bit-depth", depth],
        )
        assert code == 0, err
    assert png_header(out16) == png_header(tmp_path / "o16.step00002.png") == (16, 2)
    assert png_header(out8) == png_header(tmp_path / "o8.step00002.png") == (8, 2)
    assert png_header(tmp_path / "o16.loss.png")[0] == 8  # the loss plot is matplotlib's, not a picture
    # One float result, quantised twice: each 16-bit value within half an 8-bit step of the 8-bit one.
    v16, v8 = read_png16(out16) / 65535, np.asarray(Image.open(out8)) / 255
    assert np.abs(v16 - v8).max() <= 0.5 / 255 + 0.5 / 65535
    assert (read_png16(out16) % 257 != 0).mean() > 0.9


def test_a_batch_writes_its_pairs_and_contact_sheet_at_16_bits(capsys, tmp_path):
    out = tmp_path / "o.png"
    code, _, err = run_style(
        capsys,
        [
            *BASE,
            EXAMPLES / "content.png",  # a second --style: one content, two styles
            "--content",
            EXAMPLES / "content.png",
            "--output",
            out,
            "--bit-depth",
            16,
            "--save-every",
            2,
        ],
    )
    assert code == 0, err
    for name in ("o_content_style.png", "o_content_content.png", "o_grid.png", "o_content_style.step00002.png"):
        assert png_header(tmp_path / name) == (16, 2), name


@pytest.mark.parametrize("frames", [False, True])
def test_a_folder_and_a_video_write_16_bit_tiffs(frames, capsys, tmp_path, rng):
    folder = tmp_path / "in"
    folder.mkdir()
    for k in range(2):
        Image.fromarray(rng.integers(0, 255, (24, 32, 3), np.uint8)).save(folder / f"frame{k}.png")
    out = tmp_path / "o.tif"
    where = ["--content-frames", folder] if frames else ["--content", folder]
    code, _, err = run_style(capsys, [*BASE, *where, "--output", out])
    assert code == 0, err
    written = sorted(tmp_path.glob("o_*.tif"))
    assert len(written) == 2, written
    for path in written:
        assert tifffile.imread(path).dtype == np.uint16


def test_an_interrupted_run_keeps_its_picture_so_far_at_16_bits(capsys, tmp_path, monkeypatch):
    from jaxart.style import driver, loop

    real = loop.iterate

    def interrupted(*args, **kwargs):  # Ctrl-C after the second compiled call
        for k, item in enumerate(real(*args, **kwargs), 1):
            yield item
            if k == 2:
                raise KeyboardInterrupt

    out = tmp_path / "o.png"
    argv = [*BASE, "--content", EXAMPLES / "content.png", "--output", out, "--autosave", 0, "--steps-per-call", 1]
    with monkeypatch.context() as m:
        m.setattr(driver.loop, "iterate", interrupted)
        code, _, err = run_style(capsys, [*argv, "--bit-depth", 16])
    assert code == 130, err
    assert png_header(tmp_path / "o.partial.png") == (16, 2)
    code, _, err = run_style(capsys, [*argv, "--resume"])  # another depth computes the same: it may go on
    assert code == 0, err
    assert png_header(out) == (8, 2) and not (tmp_path / "o.partial.png").exists()
