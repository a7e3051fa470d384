"""Paints examples/style.png: thousands of short curved brush strokes following a swirling
flow field, in a night-sky palette. Deterministic; run from anywhere:

    python examples/make_style.py
"""

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SIZE = 512
PALETTE = np.array(
    [(16, 32, 84), (28, 68, 140), (52, 110, 182), (96, 150, 206), (230, 200, 80), (245, 225, 140), (20, 48, 60)]
)


def flow_angle(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Direction of the strokes: a few vortices over a gentle horizontal drift."""
    angle = 0.4 * np.sin(y / 60.0)
    for cx, cy, strength in ((150, 170, 1.0), (360, 120, -0.8), (300, 360, 1.2), (90, 420, -0.6)):
        dx, dy = x - cx, y - cy
        weight = strength * np.exp(-(dx**2 + dy**2) / (2 * 90.0**2))
        angle = angle + weight * (np.arctan2(dy, dx) + np.pi / 2)
    return angle


def paint(seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (SIZE, SIZE), tuple(int(c) for c in PALETTE[0]))
    draw = ImageDraw.Draw(image)
    for _ in range(9000):
        x, y = rng.uniform(0, SIZE, 2)
        colour = PALETTE[rng.choice(len(PALETTE), p=[0.18, 0.24, 0.22, 0.14, 0.08, 0.06, 0.08])]
        colour = np.clip(colour + rng.normal(0, 12, 3), 0, 255).astype(int)
        points = [(x, y)]
        for _ in range(int(rng.integers(6, 14))):
            a = flow_angle(np.array(x), np.array(y))
            x, y = x + 3.0 * np.cos(a), y + 3.0 * np.sin(a)
            points.append((float(x), float(y)))
        draw.line(points, fill=tuple(int(c) for c in colour), width=int(rng.integers(2, 6)), joint="curve")
    return image.filter(ImageFilter.SMOOTH)


if __name__ == "__main__":
    out = Path(__file__).resolve().parent / "style.png"
    paint().save(out)
    print(f"wrote {out}")
