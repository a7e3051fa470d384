"""python -m jaxart.style [--content C [C ...]] [--style S [S ...]] [--output O] [--preset P] [options]

With no arguments, stylises the bundled examples/content.png with examples/style.png.
Several contents or styles (without --style-blend) run as one batch: every combination.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple, TextIO

import jax
import numpy as np

from jaxart import cli, images, weights
from jaxart.files import atomic_path, check_output_path
from jaxart.style import batch, pyramid
from jaxart.style.config import DTYPES, OPTIMIZERS, POOLINGS, PRESETS, StyleConfig
from jaxart.style.transfer import METRICS, check_sizes, initial_image, iterate, result_image

EXAMPLES = Path(__file__).resolve().parent.parent.parent / "examples"


def _add_preset_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--preset",
        choices=list(PRESETS),
        default="seed",
        help="defaults to start from: seed (the tutorial's) or gatys (Gatys et al. 2016: content "
        "relu4_2, style relu1_1..relu5_1, average pooling); options given explicitly win over it",
    )


def parser(preset: str = "seed") -> cli.ArgumentParser:
    """The command line, its config defaults those of `preset`."""
    p = cli.ArgumentParser(
        prog="python -m jaxart.style",
        description="Neural style transfer (Gatys et al.): keep one picture's content, take another's style.",
    )
    p.add_argument(
        "--content",
        nargs="+",
        default=[str(EXAMPLES / "content.png")],
        help="content image(s); several run as one batch, every content with every style",
    )
    p.add_argument(
        "--style",
        nargs="+",
        default=[str(EXAMPLES / "style.png")],
        help="style image(s); several are blended into one with --style-blend, else each is used "
        "separately (one batch: every content x style, plus a contact sheet); resized to the "
        "content's shape unless --style-scale is given",
    )
    p.add_argument("--output", default="stylized.png", help="output image: .png, .jpg or .webp")
    p.add_argument(
        "--weights",
        default=None,
        help="VGG19 weights: a converted folder, a torchvision .pth file, or 'random' "
        "(if not given: the cache in weights/, then torchvision's download)",
    )
    p.add_argument(
        "--save-every",
        type=cli.positive_int,
        default=None,
        metavar="N",
        help="also write the image every N steps, beside the output (default: only at the end)",
    )
    p.add_argument(
        "--metrics",
        default=None,
        metavar="FILE",
        help="write one JSON line per step: step, its losses before its update, seconds since "
        "the optimisation began (default: none)",
    )
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


class Run(NamedTuple):
    """What a finished optimisation left: its last state, each metric's history (steps,) or
    (pairs, steps), and its seconds."""

    state: Any
    history: dict[str, np.ndarray]
    seconds: float


def optimise(
    calls: Iterator[tuple[int, Any, dict[str, np.ndarray]]],
    config: StyleConfig,
    desc: str,
    log: TextIO | None = None,
    labels: Sequence[dict[str, str]] | None = None,
    stops: tuple[int, ...] = (),
    on_stop: Callable[[int, Any], None] | None = None,
) -> Run:
    """Drives `iterate` (or `iterate_batch`, then `labels` names each pair) under a progress bar,
    writing one JSON line per step (and pair) to `log` and calling `on_stop(step, state)` at
    each of `stops`."""
    from tqdm import tqdm  # deferred: only the CLI draws progress bars

    chunks: dict[str, list[np.ndarray]] = {name: [] for name in METRICS}
    with tqdm(total=config.steps, desc=desc, unit="step", file=sys.stderr, dynamic_ncols=True, disable=None) as bar:
        start = time.perf_counter()
        done_before, seconds_before, state = 0, 0.0, None
        for done, state, metrics in calls:
            seconds = time.perf_counter() - start
            n = done - done_before
            per_pair = (
                [metrics] if labels is None else [{k: v[i] for k, v in metrics.items()} for i in range(len(labels))]
            )
            if log is not None:
                for i in range(n):
                    # Steps inside one compiled call share its time, spread evenly.
                    at = round(seconds_before + (i + 1) / n * (seconds - seconds_before), 6)
                    for p, pair in enumerate(per_pair):
                        record = {
                            **(labels[p] if labels else {}),
                            "step": done_before + i,
                            **{name: float(pair[name][i]) for name in METRICS},
                            "seconds": at,
                        }
                        log.write(json.dumps(record) + "\n")
            for name in METRICS:
                chunks[name].append(metrics[name])
            if on_stop is not None and done in stops:
                on_stop(done, state)
            bar.set_postfix(
                content=f"{float(np.mean(metrics['content_loss'][..., -1])):.4g}",
                style=f"{float(np.mean(metrics['style_loss'][..., -1])):.4g}",
            )
            bar.update(n)
            done_before, seconds_before = done, seconds
    history = {name: np.concatenate(parts, axis=-1) for name, parts in chunks.items()}
    return Run(state, history, time.perf_counter() - start)


def metrics_log(stack: contextlib.ExitStack, path: Path | None) -> TextIO | None:
    """The metrics file, written atomically when the run ends well (None: no log)."""
    return stack.enter_context(open(stack.enter_context(atomic_path(path)), "w")) if path else None


def save_plot(output: Path, history: dict[str, np.ndarray], title: str) -> Path:
    """The loss curves beside the output; a batch plots its pairs' mean."""
    from jaxart.plots import save_loss_curves

    curves = {k: np.mean(np.atleast_2d(history[k]), axis=0) for k in ("content_loss", "style_loss", "loss")}
    return save_loss_curves(loss_plot_path(output), curves, title=title)


def summary(shape: tuple[int, ...], run: Run, config: StyleConfig, written: Sequence[Path], pairs: int = 1) -> str:
    h, w = shape[:2]
    what = f"stylised {w}x{h}" if pairs == 1 else f"stylised {pairs} pairs at {w}x{h}"
    last = {k: float(np.mean(run.history[k][..., -1])) for k in ("content_loss", "style_loss")}
    mean = "" if pairs == 1 else " (mean over pairs)"
    return (
        f"{what} in {run.seconds:.1f} s ({config.steps / run.seconds:.2f} steps/s); final content loss "
        f"{last['content_loss']:.4g}, style loss {last['style_loss']:.4g}{mean}; wrote "
        f"{', '.join(str(p) for p in written)}"
    )


def run_transfer(
    inputs: Inputs,
    params: Any,
    config: StyleConfig,
    output: Path,
    metrics_path: Path | None = None,
    save_every: int | None = None,
    title: str = "",
) -> str:
    """Runs one transfer; writes the output, its loss plot, the snapshots and the metrics log.
    Returns the summary line."""
    stops = tuple(range(save_every, config.steps, save_every)) if save_every else ()

    def snapshot(step: int, state: Any) -> None:
        images.save_image(snapshot_path(output, step), result_image(state, inputs.content, config))

    h, w = inputs.content.shape[:2]
    with contextlib.ExitStack() as stack:
        calls = iterate(inputs.content, inputs.styles, params, config, stops, inputs.init)
        run = optimise(
            calls, config, f"stylising {w}x{h}", metrics_log(stack, metrics_path), stops=stops, on_stop=snapshot
        )
    written = [
        images.save_image(output, result_image(run.state, inputs.content, config)),
        save_plot(output, run.history, title),
    ]
    return summary(inputs.content.shape, run, config, written + ([metrics_path] if metrics_path else []))


def check_batch(config: StyleConfig) -> None:
    """Refuses options a batch cannot honour (before any work is done)."""
    if config.style_blend:
        raise cli.InputError("--style-blend blends styles for one content; give one --content")
    if config.style_scale is not None or config.optimizer != "adam" or config.pyramid:
        raise cli.InputError(
            "several contents or styles run as one batch: Adam at one scale, styles at "
            "the content's shape (no --style-scale, --optimizer lbfgs or --pyramid)"
        )


def run_batch(
    content_files: Sequence[str],
    style_files: Sequence[str],
    contents: np.ndarray,
    styles: np.ndarray,
    params: Any,
    config: StyleConfig,
    output: Path,
    metrics_path: Path | None = None,
    save_every: int | None = None,
) -> str:
    """Every content x style combination (images from `batch.load_images`) in one compiled,
    vmapped optimisation; writes each result, a contact sheet, the loss plot (pairs' mean),
    snapshots and the metrics log (one line per step and pair, naming the pair). Returns the
    summary line."""
    paths = batch.output_paths(output, content_files, style_files)
    pair_contents, pair_styles = batch.combinations(contents, styles)
    labels = [{"content": str(c), "style": str(s)} for c in content_files for s in style_files]
    stops = tuple(range(save_every, config.steps, save_every)) if save_every else ()

    def snapshot(step: int, states: Any) -> None:
        for path, image in zip(paths, batch.batch_results(states, pair_contents, config)):
            images.save_image(snapshot_path(path, step), image)

    h, w = contents.shape[1:3]
    with contextlib.ExitStack() as stack:
        calls = batch.iterate_batch(pair_contents, pair_styles, params, config, stops=stops)
        run = optimise(
            calls,
            config,
            f"stylising {len(labels)} pairs at {w}x{h}",
            metrics_log(stack, metrics_path),
            labels,
            stops,
            snapshot,
        )
    results = batch.batch_results(run.state, pair_contents, config)
    written = batch.save_results(output, content_files, style_files, contents, styles, results)
    written.append(save_plot(output, run.history, f"{len(labels)} pairs (mean)"))
    return summary(contents.shape[1:], run, config, written + ([metrics_path] if metrics_path else []), len(labels))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    config = cli.config_from_args(StyleConfig, args)
    if config.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    output = images.check_image_output(args.output)
    metrics_path = check_output_path(args.metrics) if args.metrics else None
    if len(args.content) > 1 or (len(args.style) > 1 and not config.style_blend):
        check_batch(config)
        batch.output_paths(output, args.content, args.style)
        contents, styles = batch.load_images(args.content, args.style, config)
        params = load_weights(args.weights, config.seed)
        print(
            run_batch(args.content, args.style, contents, styles, params, config, output, metrics_path, args.save_every)
        )
        return 0
    inputs = load_inputs(args.content[0], args.style, config)
    params = load_weights(args.weights, config.seed)
    title = f"{Path(args.content[0]).name} in the style of {' + '.join(Path(s).name for s in args.style)}"
    print(run_transfer(inputs, params, config, output, metrics_path, args.save_every, title))
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
