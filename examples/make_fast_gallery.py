"""Renders the README's real-time gallery into examples/gallery/ with `jaxart.fast`:

- fast-sheet.jpg: the bundled cat in each of multistyle26's 26 styles (the index under each tile
  is `--style-index`), beside the original;
- fast-arbitrary.jpg: the cat with the arbitrary pair, in the style of examples/style.png and
  examples/mosaic.png (`--style-image`);
- fast-trained.jpg (with --workdir W): each style of a network jaxart trained, then the cat and
  each --photo through the network in that style.

    python examples/make_fast_gallery.py [--tile 150] [--workdir W [--photo P ...]]

Small JPEGs, so the gallery stays small.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from jaxart import images
from jaxart.fast import apply, photos, pretrained

HERE = Path(__file__).resolve().parent
OUT = HERE / "gallery"
LABEL = 14  # pixels of text above each tile


def sheet(tiles: list[tuple[str, np.ndarray]], columns: int) -> Image.Image:
    h, w = tiles[0][1].shape[:2]
    rows = -(-len(tiles) // columns)
    pad = 4
    out = Image.new("RGB", (columns * (w + pad) + pad, rows * (h + LABEL + pad) + pad), "white")
    draw = ImageDraw.Draw(out)
    for n, (name, tile) in enumerate(tiles):
        r, c = divmod(n, columns)
        x, y = pad + c * (w + pad), pad + r * (h + LABEL + pad)
        out.paste(Image.fromarray(images.to_uint8(tile)), (x, y + LABEL))
        draw.text((x + 2, y + 1), name, fill="black")
    return out


def square(path: str | Path, side: int) -> np.ndarray:
    """The centred square of a picture at side x side, float in [0, 1]."""
    return images.to_float(photos.center_crop(images.open_rgb(path), side))


def save(picture: Image.Image, name: str) -> Path:
    path = OUT / f"{name}.jpg"
    picture.save(path, quality=85, optimize=True)
    print(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tile", type=int, default=150, help="longest side of a tile")
    parser.add_argument("--workdir", help="a network trained by python -m jaxart.fast train")
    parser.add_argument("--photo", nargs="+", default=[], help="more photos for fast-trained.jpg, besides the cat")
    args = parser.parse_args()
    cat = apply.load_picture(HERE / "content.png", args.tile)

    network = pretrained.load("multistyle26")
    assert isinstance(network, pretrained.StyleNetwork)
    styler = apply.network_styler(network, np.eye(26, dtype=np.float32))
    styled = np.asarray(apply.stylize(styler, np.repeat(cat[None], 26, axis=0)))
    save(sheet([("original", cat)] + [(str(i), s) for i, s in enumerate(styled)], columns=9), "fast-sheet")

    pair = pretrained.load("arbitrary")
    assert isinstance(pair, pretrained.ArbitraryNetwork)
    big = apply.load_picture(HERE / "content.png", 2 * args.tile)
    tiles = [("original", big)]
    for painting in ("style.png", "mosaic.png"):
        art = apply.load_picture(HERE / painting, 2 * args.tile)
        tiles.append((painting, np.asarray(Image.fromarray(images.to_uint8(art)).resize(big.shape[1::-1])) / 255))
        tiles.append(
            ("in its style", np.asarray(apply.stylize(apply.arbitrary_styler(pair, HERE / painting), big[None]))[0])
        )
    save(sheet(tiles, columns=5), "fast-arbitrary")

    if args.workdir:
        from jaxart.fast.loop import load_trained

        config, params = load_trained(args.workdir)
        trained = pretrained.StyleNetwork(config.network, params, tuple(config.style))
        side = 2 * args.tile
        pictures = [square(p, side) for p in [HERE / "content.png", *args.photo]]
        tiles = []
        for s, path in enumerate(config.style):
            tiles.append((Path(path).name, square(path, side)))
            styler = apply.network_styler(trained, np.eye(trained.styles, dtype=np.float32)[s])
            tiles += [("", np.asarray(apply.stylize(styler, picture[None]))[0]) for picture in pictures]
        save(sheet(tiles, columns=1 + len(pictures)), "fast-trained")


if __name__ == "__main__":
    main()
