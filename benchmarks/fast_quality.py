"""Quality of a feed-forward network jaxart trained, measured with its own training objective on
photos it never saw: how many L-BFGS iterations of the optimisation of that same objective match
the network's one pass.

    python -m benchmarks.fast_quality --workdir W --photos ~/.cache/jaxart/photos/heldout \
        [--iterations 200] [--sheet quality.png]

For each held-out photo (its centred square at the run's crop size) and each of the network's
styles: the network's output, its loss under the run's objective (`jaxart.fast.train.perceptual_loss`:
the same VGG19, layers, Gram normalisation and weights the run trained with, read from its
checkpoint), and `jaxart.style.stylize` with L-BFGS (zoom line search) on the same content,
style and weights, from the content. Reported: the loss of the photo itself, the network's, the
optimisation's after 10/50/100 and the last iteration, and the first iteration whose loss is at
or below the network's ("never" if none within --iterations). Johnson et al. report networks
comparable to 50-100 L-BFGS iterations at 256 px, after 40,000 training steps.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import machine
from jaxart import backend, images, weights
from jaxart.fast import photos
from jaxart.fast.loop import load_trained
from jaxart.fast.train import make_objective, perceptual_loss
from jaxart.style import stylize


def first_at_or_below(history: np.ndarray, bar: float) -> int | None:
    """The first iteration (1-based: the loss after that many updates) at or below `bar`."""
    below = np.nonzero(history[1:] <= bar)[0]
    return int(below[0]) + 1 if below.size else None


def main() -> None:
    backend.set_xla_flags(own_convolutions=True)  # as `python -m jaxart.fast` runs, before the backend starts
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--photos", required=True, help="held-out photos (never in the training folder)")
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--sheet", help="also write photo | network | optimisation rows to this PNG")
    args = parser.parse_args()

    config, params = load_trained(args.workdir)
    vgg_params = weights.load(config.weights)
    style_images = [
        images.to_array(images.resize_longest(images.open_rgb(p), config.style_size or config.size))
        for p in config.style
    ]
    objective = make_objective(vgg_params, style_images, config)
    network = jax.jit(config.network.apply)
    loss_of = jax.jit(lambda out, content, grams: perceptual_loss(vgg_params, out, content, grams, config)[0])
    lbfgs = dataclasses.replace(
        config.loss, optimizer="lbfgs", lbfgs_step="zoom", steps=args.iterations, style_scale=1.0, init="content"
    )
    print(machine())
    print(f"run: {args.workdir}, crop {config.size} px, styles {[Path(s).name for s in config.style]}")
    print(f"objective: content x{config.content_weight}, style x{config.style_weight:.4g}, tv x{config.tv_weight}")
    header = "| photo | style | photo's loss | network | L-BFGS 10 | 50 | 100 | last | L-BFGS matches the network at |"
    print(header + "\n|" + " --- |" * 9)
    rows, matched = [], []
    for path in photos.list_photos(args.photos):
        content = images.to_float(photos.center_crop(images.open_rgb(path), config.size))
        for s, style in enumerate(style_images):
            mix = jnp.zeros((1, len(style_images))).at[0, s].set(1.0)
            grams = {name: g[s][None] for name, g in objective.style_grams.items()}
            out = network({"params": params}, content[None], mix)
            fast = float(loss_of(out, content[None], grams))
            own = float(loss_of(content[None], content[None], grams))
            start = time.perf_counter()
            image, history = stylize(content, style, vgg_params, lbfgs)
            seconds = time.perf_counter() - start
            h = history["loss"]
            at = first_at_or_below(h, fast)
            matched.append(at)
            picks = [f"{h[min(i, len(h) - 1)]:.4g}" for i in (10, 50, 100)]
            print(
                f"| {path.name} | {Path(config.style[s]).name} | {own:.4g} | {fast:.4g} | {' | '.join(picks)} | "
                f"{h[-1]:.4g} | {at if at is not None else 'never'} ({seconds:.0f} s for {len(h)}) |"
            )
            rows.append(np.concatenate([content, np.asarray(out[0]), image], axis=1))
    found = [m for m in matched if m is not None]
    if found:
        print(
            f"\nL-BFGS iterations to match the network: median {np.median(found):.0f}, range {min(found)}-{max(found)}"
            f" ({len(found)} of {len(matched)} matched within {args.iterations})"
        )
    if args.sheet:
        images.save_image(args.sheet, np.concatenate(rows, axis=0))
        print(f"wrote {args.sheet}")


if __name__ == "__main__":
    main()
