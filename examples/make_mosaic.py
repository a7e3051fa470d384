"""Paints examples/mosaic.png: irregular glass tiles (a jittered Voronoi tiling) in a warm
palette, set in dark lead lines with a soft shading per tile. Deterministic; run from anywhere:

    python examples/make_mosaic.py
"""

from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

SIZE = 384
PALETTE = np.array(
    [(196, 64, 40), (232, 140, 46), (244, 200, 92), (64, 120, 96), (40, 84, 140), (150, 48, 88), (236, 226, 196)]
)


def paint(seed: int = 0, tiles: int = 260) -> Image.Image:
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, SIZE, (tiles, 2))
    colours = PALETTE[rng.choice(len(PALETTE), tiles, p=[0.2, 0.18, 0.14, 0.14, 0.14, 0.1, 0.1])]
    colours = np.clip(colours + rng.normal(0, 14, (tiles, 3)), 0, 255)
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    d = (x[..., None] - centres[:, 0]) ** 2 + (y[..., None] - centres[:, 1]) ** 2
    nearest = np.argsort(d, axis=-1)[..., :2]
    d1 = np.sqrt(np.take_along_axis(d, nearest[..., :1], -1))[..., 0]
    d2 = np.sqrt(np.take_along_axis(d, nearest[..., 1:], -1))[..., 0]
    image = colours[nearest[..., 0]] * (1.0 - 0.35 * np.clip(d1 / 30.0, 0, 1))[..., None]  # darker at the rims
    lead = np.clip((d2 - d1 - 1.0) / 2.0, 0, 1)[..., None]  # lead lines where two tiles meet
    image = lead * image + (1 - lead) * np.array([28, 24, 22])
    return Image.fromarray(image.astype(np.uint8)).filter(ImageFilter.SMOOTH)


if __name__ == "__main__":
    out = Path(__file__).resolve().parent / "mosaic.png"
    paint().save(out)
    print(f"wrote {out}")
