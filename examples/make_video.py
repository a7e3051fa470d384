"""The README's video strip: a clip of a camera panning and zooming over the bundled cat (its
motion known exactly, see `jaxart.flow.pan_zoom`), and the strip of two stylised runs of it.

    python examples/make_video.py clip FOLDER                 # writes FOLDER/frame_000.png ...
    python examples/make_video.py strip CLIP RUN_A RUN_B ...  # -> examples/gallery/video.jpg

`strip` takes each run's --output (its frames are OUTPUT_frame_<k> beside it), lays them out one
row per run under a row of the clip itself, and prints each run's temporal error (`jaxart.flow.temporal_error`, against the
flow DIS estimates between the clip's frames).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from jaxart import flow, images
from jaxart.style.folders import frame_outputs, list_frames

HERE = Path(__file__).resolve().parent
FRAMES, SHAPE, PAN, ZOOM = 5, (200, 300), (10.0, 4.0), 1.02


def clip(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    frames, _ = flow.pan_zoom(images.load_image(HERE / "content.png"), FRAMES, SHAPE, PAN, ZOOM)
    for k, frame in enumerate(frames):
        images.save_image(folder / f"frame_{k:03d}.png", frame)


def strip(folder: Path, outputs: list[Path]) -> None:
    files = list_frames(folder)
    shape = images.load_image(frame_outputs(outputs[0], files)[0]).shape[:2]
    rows = [_row([images.load_image(p, shape=shape) for p in files])]
    for output in outputs:
        pictures = [images.load_image(p) for p in frame_outputs(output, files)]
        frames = [images.load_image(p, shape=pictures[0].shape[:2]) for p in files]
        motions = [flow.motion(a, b) for a, b in zip(frames[:-1], frames[1:])]
        print(f"{output}: temporal error {flow.temporal_error(pictures, motions):.3g}")
        rows.append(_row(pictures))
    sheet = np.clip(np.concatenate(rows, 0) * 255 + 0.5, 0, 255).astype(np.uint8)
    Image.fromarray(sheet).save(HERE / "gallery" / "video.jpg", quality=85, optimize=True)


def _row(pictures: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([np.pad(p, ((2, 2), (2, 2), (0, 0)), constant_values=1) for p in pictures], 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("clip").add_argument("folder", type=Path)
    p = commands.add_parser("strip")
    p.add_argument("folder", type=Path)
    p.add_argument("outputs", type=Path, nargs="+")
    args = parser.parse_args()
    if args.command == "clip":
        clip(args.folder)
    else:
        strip(args.folder, args.outputs)


if __name__ == "__main__":
    main()
