"""Renders the README's GAN picture into examples/gallery/gan-ema.png: the same latent noise
through a run's trained generator (top row) and through its moving average (bottom row).

    python examples/make_gan_rows.py --workdir runs/gan-mnist [--num 12] [--seed 0]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax
import numpy as np

from jaxart.gan import sample_state
from jaxart.gan.checkpoint import load_latest
from jaxart.images import make_grid, save_image

OUT = Path(__file__).resolve().parent / "gallery" / "gan-ema.png"
SCALE = 2  # pixels per MNIST pixel, so the digits read at README size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="a GAN run kept with a moving average")
    parser.add_argument("--num", type=int, default=12, help="digits per row")
    parser.add_argument("--seed", type=int, default=0, help="seed of the latent noise")
    args = parser.parse_args()
    state = load_latest(args.workdir)
    key = jax.random.key(args.seed)
    rows = [np.asarray(sample_state(state, key, args.num, raw)) for raw in (True, False)]
    grid = make_grid(np.concatenate(rows), ncols=args.num)
    save_image(OUT, grid.repeat(SCALE, 0).repeat(SCALE, 1))
    print(f"step {int(state.step)}: {OUT}")


if __name__ == "__main__":
    main()
