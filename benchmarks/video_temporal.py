"""How steady a stylised video is: the temporal error of warm start alone, flow-warped warm start
and flow + temporal loss (Ruder et al. 2016), on a real clip, with the original VGG19.

    python -m benchmarks.video_temporal [--clip DIR] [--first 30] [--every 2] [--frames 8]
        [--max-size 128] [--steps 20] [--temporal-weights 0,1e8] [--out FOLDER]
    python -m benchmarks.video_temporal --fast [--blends 0,0.3,0.5,0.7] [--frames 24] [--max-size 320]

The clip: Debian's visp-images-data (`apt-get install visp-images-data`, GPL-2, Inria), the
hand-held camera circling a cube in ViSP-images/mbt/cube (640x480 grey), every `--every`-th
frame from `--first`. Each mode stylises the same frames with the same config (the quick
preset's L-BFGS, `--steps` iterations a frame, the original VGG19's loss weights scaled to
`--max-size`) through `jaxart.style.stylize_video`; the temporal error (`jaxart.flow.
temporal_error`) is measured against the same flow for every mode. Prints a Markdown table
(and writes each mode's frames to --out when given).

--fast: the feed-forward path instead, `python -m jaxart.fast apply --content-frames` with the
pretrained multistyle26 network (style 0) at each `--temporal-blend`, the frames copied to PNG
in a temporary folder; the table adds how far steadying moved the pictures from the network's
own (mean |steadied - unsteadied|, RGB in [0, 1]).
"""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import EXAMPLES
from jaxart import flow, images, weights
from jaxart.style import preset, size_scaled_style_weight, stylize_video
from jaxart.style.folders import frame_outputs, list_frames

CLIP = Path("/usr/share/visp-images-data/ViSP-images/mbt/cube")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clip", type=Path, default=CLIP)
    p.add_argument("--first", type=int, default=30)
    p.add_argument("--every", type=int, default=2)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--max-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--temporal-weights", default="", help="comma-separated; default: the weights' own")
    p.add_argument(
        "--style-factors",
        default="1",
        help="comma-separated: each temporal weight's rows also at these multiples of the style weight "
        "(to compare at equal style loss)",
    )
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--fast", action="store_true", help="the feed-forward network's steadying instead")
    p.add_argument("--blends", default="0,0.3,0.5,0.7,0.9")
    args = p.parse_args()

    files = list_frames(args.clip)[args.first :: args.every][: args.frames]
    if args.fast:
        _fast(files, args)
        return
    frames = [images.load_image(path, max_size=args.max_size) for path in files]
    style = images.load_image(EXAMPLES / "style.png", shape=frames[0].shape[:2])
    params = weights.load("caffe")
    defaults = weights.style_defaults(params)
    config = preset(
        "quick",
        max_size=args.max_size,
        steps=args.steps,
        **{**defaults, "style_weight": size_scaled_style_weight(defaults["style_weight"], args.max_size)},
    )
    temporal = [float(w) for w in args.temporal_weights.split(",")] if args.temporal_weights else []
    factors = [float(f) for f in args.style_factors.split(",")]
    modes = [("warm start alone", False, 0.0, 1.0), ("flow init", True, 0.0, 1.0)]
    modes += [
        (f"flow init + temporal loss {w:g}" + (f", style weight x{f:g}" if f != 1 else ""), True, w, f)
        for w in temporal or [config.temporal_weight]
        for f in factors
    ]
    print(
        f"clip {args.clip}, frames {files[0].name}..{files[-1].name} every {args.every} ({len(files)}), "
        f"{frames[0].shape[1]}x{frames[0].shape[0]}, {args.steps} L-BFGS iterations a frame, style examples/style.png\n"
    )
    print("| mode | temporal error | vs warm start | mean style loss | mean content loss | seconds |")
    print("|---|---|---|---|---|---|")
    baseline = None
    for name, flow_init, weight, factor in modes:
        mode_config = dataclasses.replace(config, temporal_weight=weight, style_weight=config.style_weight * factor)
        start = time.perf_counter()
        outputs, motions = stylize_video(frames, style, params, mode_config, flow_init=flow_init)
        seconds = time.perf_counter() - start
        error = flow.temporal_error(outputs, motions)
        baseline = baseline or error
        # The losses of each output against its own frame, with the temporal term left out: what it
        # costs in style and content, at the same weights.
        losses = [_losses(o, f, style, params, config) for o, f in zip(outputs, frames)]
        content, style_loss = np.mean(losses, axis=0)
        print(
            f"| {name} | {error:.3g} | {baseline / error:.2f}x lower | {style_loss:.4g} | {content:.4g} | {seconds:.0f} |"
        )
        if args.out:
            folder = args.out / name.replace(" ", "-")
            folder.mkdir(parents=True, exist_ok=True)
            for k, picture in enumerate(outputs):
                images.save_image(folder / f"frame_{k:03d}.png", picture)


def _fast(files: list[Path], args: argparse.Namespace) -> None:
    blends = [float(b) for b in args.blends.split(",")]
    print(
        f"clip {args.clip}, frames {files[0].name}..{files[-1].name} every {args.every} ({len(files)}), multistyle26 style 0\n"
    )
    print("| --temporal-blend | temporal error | vs 0 | mean change from the network's own | seconds |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as scratch:
        clip = Path(scratch) / "clip"
        clip.mkdir()
        for path in files:
            images.save_image(clip / f"{path.stem}.png", images.load_image(path))
        frames = [images.load_image(clip / f"{path.stem}.png", max_size=args.max_size) for path in files]
        motions = [flow.motion(a, b) for a, b in zip(frames[:-1], frames[1:])]
        own = baseline = None
        for blend in blends:
            out = Path(scratch) / f"blend{blend}" / "f.png"
            out.parent.mkdir()
            command = [
                sys.executable,
                "-m",
                "jaxart.fast",
                "apply",
                "--content-frames",
                str(clip),
                "--output",
                str(out),
            ]
            command += ["--max-size", str(args.max_size), "--temporal-blend", str(blend)]
            start = time.perf_counter()
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
            seconds = time.perf_counter() - start
            outputs = [images.load_image(p) for p in frame_outputs(out, [clip / f"{f.stem}.png" for f in files])]
            error = flow.temporal_error(outputs, motions)
            own = own or outputs
            baseline = baseline or error
            change = np.mean([np.mean(np.abs(a - b)) for a, b in zip(outputs, own)])
            print(f"| {blend:g} | {error:.3g} | {baseline / error:.2f}x lower | {change:.4f} | {seconds:.0f} |")


def _losses(output: np.ndarray, frame: np.ndarray, style: np.ndarray, params, config) -> tuple[float, float]:
    import jax.numpy as jnp

    from jaxart import vgg
    from jaxart.style import compute_targets, loss_fn

    targets = compute_targets(params, vgg.normalize(jnp.asarray(frame)), vgg.normalize(jnp.asarray(style)), config)
    _, parts = loss_fn(vgg.normalize(jnp.asarray(output)), params, targets, config.program)
    return float(parts["content_loss"]), float(parts["style_loss"])


if __name__ == "__main__":
    main()
