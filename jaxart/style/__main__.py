"""python -m jaxart.style [--content C] [--style S [S ...]] [--output O] [--preset P] [options]

With no arguments, stylises the bundled examples/content.png with examples/style.png.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

from jaxart import cli, images, weights
from jaxart.files import atomic_path, check_output_path
from jaxart.style import pyramid
from jaxart.style.config import DTYPES, OPTIMIZERS, POOLINGS, PRESETS, StyleConfig
from jaxart.style.transfer import METRICS, check_sizes, initial_image, iterate, result_image

EXAMPLES = Path(__file__).resolve().parent.parent.parent / "examples"


def _add_preset_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", choices=list(PRESETS), default="seed",
                   help="defaults to start from: seed (the tutorial's) or gatys (Gatys et al. 2016: content "
                   "relu4_2, style relu1_1..relu5_1, average pooling); options given explicitly win over it")


def parser(preset: str = "seed") -> cli.ArgumentParser:
    """The command line, its config defaults those of `preset`."""
    p = cli.ArgumentParser(
        prog="python -m jaxart.style",
        description="Neural style transfer (Gatys et al.): keep one picture's content, take another's style.",
    )
    p.add_argument("--content", default=str(EXAMPLES / "content.png"), help="content image")
    p.add_argument("--style", nargs="+", default=[str(EXAMPLES / "style.png")],
                   help="style image(s), blended by --style-blend; resized to the content's shape unless "
                   "--style-scale is given")
    p.add_argument("--output", default="stylized.png", help="output image: .png, .jpg or .webp")
    p.add_argument("--weights", default=None,
                   help="VGG19 weights: a converted folder, a torchvision .pth file, or 'random' "
                   "(if not given: the cache in weights/, then torchvision's download)")
    p.add_argument("--save-every", type=cli.positive_int, default=None, metavar="N",
                   help="also write the image every N steps, beside the output (default: only at the end)")
    p.add_argument("--metrics", default=None, metavar="FILE",
                   help="write one JSON line per step: step, its losses before its update, seconds since "
                   "the optimisation began (default: none)")
    _add_preset_argument(p)
    cli.add_config_arguments(
        p, StyleConfig, choices={"pooling": list(POOLINGS), "dtype": list(DTYPES), "optimizer": list(OPTIMIZERS)}
    )
    # As add_config_arguments does: a tuple default is given as its command-line text.
    p.set_defaults(**{k: ",".join(v) if isinstance(v, tuple) else v for k, v in PRESETS[preset].items()})
    return p


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parses in two passes: --preset first, as it sets the other options' defaults."""
    first = cli.ArgumentParser(prog="python -m jaxart.style", add_help=False)
    _add_preset_argument(first)
    preset = first.parse_known_args(argv)[0].preset
    return parser(preset).parse_args(argv)


def snapshot_path(output: Path, step: int) -> Path:
    return output.with_name(f"{output.stem}.step{step:05d}{output.suffix}")


def loss_plot_path(output: Path) -> Path:
    return output.with_name(f"{output.stem}.loss.png")


class Inputs(NamedTuple):
    """A transfer's images, float32 (H, W, 3) RGB in [0, 1]."""

    content: np.ndarray
    styles: list[np.ndarray]
    init: np.ndarray


def load_inputs(content: str, styles: Sequence[str], config: StyleConfig) -> Inputs:
    """Reads the content as the seed does, each style at the shape --style-scale gives it (the
    content's by default, as in the seed) and the starting image; refuses sizes too small for
    the chosen layers and a --style-blend that does not match the styles."""
    content_image = images.load_image(content, max_size=config.max_size)
    longest = pyramid.style_longest(content_image.shape[:2], config)
    style_images = [
        images.load_image(path, max_size=longest) if longest else images.load_image(path, shape=content_image.shape[:2])
        for path in styles
    ]
    try:
        check_sizes(content_image.shape, [s.shape for s in style_images], config)
    except ValueError as e:
        raise cli.InputError(str(e)) from None
    return Inputs(content_image, style_images, initial_image(content_image, config))


def load_weights(source: str | None, seed: int) -> Any:
    """VGG19 params; random weights are said to be meaningless, once, in the user's terms."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        params = weights.load(source, seed=seed)
    if source == "random":
        print("warning: random VGG19 weights: the picture will mean nothing", file=sys.stderr)
    return params


def run_transfer(
    inputs: Inputs,
    params: Any,
    config: StyleConfig,
    output: Path,
    metrics_path: Path | None = None,
    save_every: int | None = None,
    title: str = "",
) -> str:
    """Runs one transfer under a progress bar; writes the output, its loss plot, the snapshots
    and the metrics log. Returns the summary line."""
    from tqdm import tqdm  # deferred: only the CLI draws progress bars

    stops = tuple(range(save_every, config.steps, save_every)) if save_every else ()
    history: dict[str, list[float]] = {name: [] for name in METRICS}
    h, w = inputs.content.shape[:2]
    with contextlib.ExitStack() as stack:
        log = stack.enter_context(open(stack.enter_context(atomic_path(metrics_path)), "w")) if metrics_path else None
        bar = stack.enter_context(tqdm(total=config.steps, desc=f"stylising {w}x{h}", unit="step",
                                       file=sys.stderr, dynamic_ncols=True, disable=None))
        start = time.perf_counter()
        done_before, seconds_before, state = 0, 0.0, None
        for done, state, metrics in iterate(inputs.content, inputs.styles, params, config, stops, inputs.init):
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
                images.save_image(snapshot_path(output, done), result_image(state, inputs.content, config))
            bar.set_postfix(content=f"{history['content_loss'][-1]:.4g}", style=f"{history['style_loss'][-1]:.4g}")
            bar.update(n)
            done_before, seconds_before = done, seconds
        total = time.perf_counter() - start
    images.save_image(output, result_image(state, inputs.content, config))
    from jaxart.plots import save_loss_curves

    plot = save_loss_curves(loss_plot_path(output), {k: history[k] for k in ("content_loss", "style_loss", "loss")},
                            title=title)
    written = f"{output}, {plot}" + (f", {metrics_path}" if metrics_path else "")
    return (
        f"stylised {w}x{h} in {total:.1f} s ({config.steps / total:.2f} steps/s); final content loss "
        f"{history['content_loss'][-1]:.4g}, style loss {history['style_loss'][-1]:.4g}; wrote {written}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    config = cli.config_from_args(StyleConfig, args)
    if config.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    output = images.check_image_output(args.output)
    metrics_path = check_output_path(args.metrics) if args.metrics else None
    inputs = load_inputs(args.content, args.style, config)
    params = load_weights(args.weights, config.seed)
    title = f"{Path(args.content).name} in the style of {' + '.join(Path(s).name for s in args.style)}"
    print(run_transfer(inputs, params, config, output, metrics_path, args.save_every, title))
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
