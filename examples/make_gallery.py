"""Renders the README's gallery into examples/gallery/: the bundled cat in the bundled styles, with
the default weights (the original VGG19 offline; see `jaxart.weights`) and their `style_defaults`.

    python examples/make_gallery.py [--size 160] [--steps 60]

Each picture is one `stylize` call, printed with the `python -m jaxart.style` line that makes
the same picture (`--original-colors` only recolours the plain result, as the command does after
the same optimisation). The seed's style loss grows with the pixel count, so at a smaller size
than the default 400 px the weights' default style weight is scaled up by (pixels at 400 px) /
(pixels here), to look as the default does at 400 px. Small JPEGs, so the gallery stays well
under 1.5 MB.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image

from jaxart import images, weights
from jaxart.style import StyleConfig, stylize
from jaxart.style.colors import keep_colors

HERE = Path(__file__).resolve().parent
OUT = HERE / "gallery"
# name -> (style files, options beyond the shared ones)
ENTRIES: dict[str, tuple[tuple[str, ...], dict]] = {
    "plain": (("style.png",), {}),
    "blend": (("style.png", "mosaic.png"), {"style_blend": (1.0, 1.0)}),
    "pyramid": (("style.png",), {"pyramid": 128}),
    "color-transfer": (("style.png",), {"color_transfer": "histogram"}),
    "luminance-only": (("style.png",), {"luminance_only": True}),
}


def command(styles: tuple[str, ...], options: dict, size: int, steps: int, out: str, style_weight: float | None) -> str:
    flags = [f"--max-size {size}", f"--steps {steps}", "--optimizer lbfgs", "--lbfgs-step backtracking"]
    flags += [f"--style-weight {style_weight}"] if style_weight is not None else []
    for key, value in options.items():
        flag = f"--{key.replace('_', '-')}"
        flags.append(
            flag if value is True else f"{flag} {','.join(map(str, value)) if isinstance(value, tuple) else value}"
        )
    style = " ".join(f"examples/{s}" for s in styles)
    return f"python -m jaxart.style --style {style} {' '.join(flags)} --output {out}"


def save(picture: np.ndarray, name: str) -> Path:
    path = OUT / f"{name}.jpg"
    Image.fromarray(np.asarray(np.clip(picture, 0, 1) * 255 + 0.5, np.uint8)).save(path, quality=85, optimize=True)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    params = weights.load()
    defaults = weights.style_defaults(params)
    content = images.load_image(HERE / "content.png", max_size=args.size)
    if "style_weight" in defaults:
        default_size = images.load_image(HERE / "content.png", max_size=StyleConfig().max_size).shape[:2]
        scale = (default_size[0] * default_size[1]) / (content.shape[0] * content.shape[1])
        defaults["style_weight"] = float(f"{defaults['style_weight'] * scale:.2g}")
    OUT.mkdir(exist_ok=True)
    lines = []
    for name, (styles, options) in ENTRIES.items():
        config = StyleConfig(
            max_size=args.size,
            steps=args.steps,
            optimizer="lbfgs",
            lbfgs_step="backtracking",
            **{**defaults, **options},
        )
        style = [images.load_image(HERE / s, shape=content.shape[:2]) for s in styles]
        start = time.perf_counter()
        picture, history = stylize(content, style if len(style) > 1 else style[0], params, config)
        seconds = time.perf_counter() - start
        done = [(name, options)]
        if name == "plain":
            done.append(("original-colors", {"original_colors": True}))
        for label, shown in done:
            path = save(picture if label == name else np.asarray(keep_colors(picture, content)), label)
            shown_weight = defaults.get("style_weight")
            lines.append(f"{path.name}: {command(styles, shown, args.size, args.steps, path.name, shown_weight)}")
        print(
            f"{name}: {seconds:.0f} s, style loss {history['style_loss'][-1] / history['style_loss'][0]:.3g} "
            f"of its first value",
            flush=True,
        )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
