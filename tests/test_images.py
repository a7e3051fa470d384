"""Images in and out: the colour rule, EXIF orientation, atomic writes, refusals."""

import errno

import numpy as np
import pytest
from PIL import Image

from jaxart import images
from jaxart.errors import InputError


def save(tmp_path, name, image, **kwargs):
    path = tmp_path / name
    image.save(path, **kwargs)
    return path


@pytest.mark.parametrize(
    "mode,expected",
    [
        ("L", (100, 100, 100)),
        ("RGB", (10, 20, 30)),
        ("CMYK", None),
    ],
)
def test_plain_modes_become_rgb(tmp_path, mode, expected):
    colour = {"L": 100, "RGB": (10, 20, 30), "CMYK": (0, 255, 255, 0)}[mode]
    path = save(tmp_path, "x.tif" if mode == "CMYK" else "x.png", Image.new(mode, (4, 3), colour))
    out = images.open_rgb(path)
    assert out.mode == "RGB" and out.size == (4, 3)
    if expected:
        assert out.getpixel((0, 0)) == expected
    else:
        r, g, b = out.getpixel((0, 0))  # pure cyan-free magenta+yellow = red
        assert r > 200 and g < 50 and b < 50


def test_alpha_is_composited_on_white(tmp_path):
    rgba = Image.new("RGBA", (2, 2), (0, 0, 0, 0))
    rgba.putpixel((1, 1), (200, 0, 0, 255))
    rgba.putpixel((0, 1), (0, 0, 0, 128))
    out = images.open_rgb(save(tmp_path, "a.png", rgba))
    assert out.getpixel((0, 0)) == (255, 255, 255)  # fully transparent -> white
    assert out.getpixel((1, 1)) == (200, 0, 0)
    assert out.getpixel((0, 1))[0] in (127, 128)  # half black over white
    la = images.open_rgb(save(tmp_path, "la.png", Image.new("LA", (1, 1), (0, 0))))
    assert la.getpixel((0, 0)) == (255, 255, 255)


def test_palette_with_transparency(tmp_path):
    p = Image.new("P", (2, 1))
    p.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    p.putpixel((0, 0), 0)
    p.putpixel((1, 0), 1)
    p.info["transparency"] = 0
    out = images.open_rgb(save(tmp_path, "p.png", p, transparency=0))
    assert out.getpixel((0, 0)) == (255, 255, 255) and out.getpixel((1, 0)) == (0, 0, 255)


def test_16_bit_grey_is_scaled(tmp_path):
    values = np.array([[0, 257 * 100, 65535]], dtype=np.uint16)
    path = save(tmp_path, "g16.png", Image.fromarray(values))
    out = np.asarray(images.open_rgb(path))
    assert out[0, :, 0].tolist() == [0, 100, 255] and (out[..., 0] == out[..., 2]).all()


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (4, 2), (0, 0, 0))
    image.putpixel((0, 0), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = save(tmp_path, "r.png", image, exif=exif)
    out = images.open_rgb(path)
    assert out.size == (2, 4)
    assert out.getpixel((1, 0)) == (255, 0, 0)  # the red corner moved to the top right


def test_image_size_reads_the_header(tmp_path, monkeypatch):
    plain = save(tmp_path, "p.png", Image.new("RGB", (4, 2)))
    assert images.image_size(plain) == (2, 4) == np.asarray(images.open_rgb(plain)).shape[:2]
    # The header only: the pixels are never decoded.
    monkeypatch.setattr(Image.Image, "load", lambda self: pytest.fail("pixels decoded"))
    assert images.image_size(plain) == (2, 4)


def test_load_image_resizes_like_the_seed(tmp_path):
    path = save(tmp_path, "x.png", Image.new("RGB", (451, 300), (1, 2, 3)))
    assert images.load_image(path, max_size=400).shape == (266, 400, 3)
    assert images.load_image(path, shape=(10, 20)).shape == (10, 20, 3)
    small = images.load_image(path, max_size=64)
    assert small.dtype == np.float32 and np.allclose(small[0, 0], np.array([1, 2, 3]) / 255)


def test_refusals(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        images.open_rgb(tmp_path / "missing.png")
    with pytest.raises(InputError, match="is a directory"):
        images.open_rgb(tmp_path)
    (tmp_path / "text.png").write_text("hello")
    with pytest.raises(InputError, match="not an image"):
        images.open_rgb(tmp_path / "text.png")
    good = save(tmp_path, "good.png", Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)))
    (tmp_path / "cut.png").write_bytes(good.read_bytes()[:600])
    with pytest.raises(InputError, match="damaged or truncated"):
        images.open_rgb(tmp_path / "cut.png")
    for read in (images.open_rgb, images.image_size):
        with pytest.raises(InputError, match="does not exist"):
            read(tmp_path / "missing.png")
        with pytest.raises(InputError, match="not an image"):
            read(tmp_path / "text.png")


def test_unreadable_file_is_called_unreadable(tmp_path, monkeypatch):
    path = save(tmp_path, "secret.png", Image.new("RGB", (4, 4)))

    def refuse(*args, **kwargs):  # what open() raises for a file mode 000 (root reads anything)
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(Image, "open", refuse)
    for read in (images.open_rgb, images.image_size):
        with pytest.raises(InputError, match="cannot be read: permission denied"):
            read(path)


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    path = save(tmp_path, "big.png", Image.new("RGB", (40, 40)))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 1600 pixels: between 1x and 2x
    with pytest.raises(InputError, match="decompression bomb"):
        images.open_rgb(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # over 2x: Pillow's own error
    with pytest.raises(InputError, match="decompression bomb"):
        images.open_rgb(path)
    with pytest.raises(InputError, match="decompression bomb"):
        images.image_size(path)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".jpeg", ".webp"])
def test_save_image_by_extension(tmp_path, suffix):
    x = np.linspace(0, 1, 8 * 8 * 3, dtype=np.float32).reshape(8, 8, 3)
    path = images.save_image(tmp_path / f"out{suffix}", x)
    with Image.open(path) as im:
        assert im.format == images.OUTPUT_FORMATS[suffix] and im.size == (8, 8)
    assert [p.name for p in tmp_path.iterdir()] == [f"out{suffix}"]  # no temporary left behind
    if suffix == ".png":
        np.testing.assert_array_equal(np.asarray(Image.open(path)), images.to_uint8(x))


def test_save_image_refusals_write_nothing(tmp_path):
    x = np.zeros((2, 2, 3), np.float32)
    with pytest.raises(InputError, match="unknown extension"):
        images.save_image(tmp_path / "out.gif", x)
    (tmp_path / "afile").write_bytes(b"")
    with pytest.raises(InputError, match="is not a folder"):
        images.save_image(tmp_path / "afile" / "out.png", x)
    assert [p.name for p in tmp_path.iterdir()] == ["afile"]


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = images.save_image(tmp_path / "out.png", np.zeros((2, 2, 3), np.float32))
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", boom)
    with pytest.raises(OSError):
        images.save_image(path, np.ones((2, 2, 3), np.float32))
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["out.png"]


def test_make_grid():
    tiles = np.arange(5 * 2 * 3, dtype=np.float32).reshape(5, 2, 3)
    grid = images.make_grid(tiles, ncols=3, pad=1, pad_value=-1)
    assert grid.shape == (2 * 3 + 1, 3 * 4 + 1)
    np.testing.assert_array_equal(grid[1:3, 1:4], tiles[0])
    np.testing.assert_array_equal(grid[4:6, 5:8], tiles[4])
