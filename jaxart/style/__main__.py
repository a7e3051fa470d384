"""python -m jaxart.style [--content C] [--style S] [--output O] [options]

With no arguments, stylises the bundled examples/content.png with examples/style.png.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np

from jaxart import cli, images, vgg, weights
from jaxart.files import atomic_path, check_output_path
from jaxart.style.config import DTYPES, StyleConfig
from jaxart.style.transfer import METRICS, iterate, output_image

EXAMPLES = Path(__file__).resolve().parent.parent.parent / "examples"


def parser() -> cli.ArgumentParser:
    p = cli.ArgumentParser(
        prog="python -m jaxart.style",
        description="Neural style transfer (Gatys et al.): keep one picture's content, take another's style.",
    )
    p.add_argument("--content", default=str(EXAMPLES / "content.png"), help="content image")
    p.add_argument("--style", default=str(EXAMPLES / "style.png"), help="style image (resized to the content's size)")
    p.add_argument("--output", default="stylized.png", help="output image: .png, .jpg or .webp")
    p.add_argument("--weights", default=None,
                   help="VGG19 weights: a converted folder, a torchvision .pth file, or 'random' "
                   "(if not given: the cache in weights/, then torchvision's download)")
    p.add_argument("--save-every", type=cli.positive_int, default=None, metavar="N",
                   help="also write the image every N steps, beside the output (default: only at the end)")
    p.add_argument("--metrics", default=None, metavar="FILE",
                   help="write one JSON line per step: step, its losses before its update, seconds since "
                   "the optimisation began (default: none)")
    cli.add_config_arguments(p, StyleConfig, choices={"pooling": ["max", "avg"], "dtype": list(DTYPES)})
    return p


def snapshot_path(output: Path, step: int) -> Path:
    return output.with_name(f"{output.stem}.step{step:05d}{output.suffix}")


def loss_plot_path(output: Path) -> Path:
    return output.with_name(f"{output.stem}.loss.png")


def load_inputs(content: str, style: str, config: StyleConfig) -> tuple[np.ndarray, np.ndarray]:
    """Reads both images as the seed does; refuses sizes too small for the chosen layers."""
    content_image = images.load_image(content, max_size=config.max_size)
    style_image = images.load_image(style, shape=content_image.shape[:2])
    need = 2 ** vgg.downsampling(config.layers)
    h, w = content_image.shape[:2]
    if min(h, w) < need:
        raise cli.InputError(
            f"content image is {w}x{h} after resizing to --max-size {config.max_size}; layers up to "
            f"{config.layers[-1]} need at least {need} pixels per side"
        )
    return content_image, style_image


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    config = cli.config_from_args(StyleConfig, args)
    if config.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    output = images.check_image_output(args.output)
    metrics_path = check_output_path(args.metrics) if args.metrics else None
    content, style = load_inputs(args.content, args.style, config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # said once, below, in the user's terms
        params = weights.load(args.weights, seed=config.seed)
    if args.weights == "random":
        print("warning: random VGG19 weights: the picture will mean nothing", file=sys.stderr)

    from tqdm import tqdm  # deferred: only the CLI draws progress bars

    stops = tuple(range(args.save_every, config.steps, args.save_every)) if args.save_every else ()
    history: dict[str, list[float]] = {name: [] for name in METRICS}
    h, w = content.shape[:2]
    with contextlib.ExitStack() as stack:
        log = stack.enter_context(open(stack.enter_context(atomic_path(metrics_path)), "w")) if metrics_path else None
        bar = stack.enter_context(tqdm(total=config.steps, desc=f"stylising {w}x{h}", unit="step",
                                       file=sys.stderr, dynamic_ncols=True, disable=None))
        start = time.perf_counter()
        done_before, seconds_before, state = 0, 0.0, None
        for done, state, metrics in iterate(content, style, params, config, stops):
            seconds = time.perf_counter() - start
            n = done - done_before
            if log is not None:
                for i in range(n):
                    record = {"step": done_before + i, **{name: float(metrics[name][i]) for name in METRICS},
                              # Steps inside one compiled call share its time, spread evenly.
                              "seconds": round(seconds_before + (i + 1) / n * (seconds - seconds_before), 6)}
                    log.write(json.dumps(record) + "\n")
            for name in METRICS:
                history[name].extend(float(v) for v in metrics[name])
            if done in stops:
                images.save_image(snapshot_path(output, done), np.asarray(output_image(state.image)))
            bar.set_postfix(content=f"{history['content_loss'][-1]:.4g}", style=f"{history['style_loss'][-1]:.4g}")
            bar.update(n)
            done_before, seconds_before = done, seconds
        total = time.perf_counter() - start
    images.save_image(output, np.asarray(output_image(state.image)))
    from jaxart.plots import save_loss_curves

    plot = save_loss_curves(loss_plot_path(output), {k: history[k] for k in ("content_loss", "style_loss", "loss")},
                            title=f"{Path(args.content).name} in the style of {Path(args.style).name}")
    written = f"{output}, {plot}" + (f", {metrics_path}" if metrics_path else "")
    print(
        f"stylised {w}x{h} in {total:.1f} s ({config.steps / total:.2f} steps/s); final content loss "
        f"{history['content_loss'][-1]:.4g}, style loss {history['style_loss'][-1]:.4g}; wrote {written}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
