"""A batch as the command line makes one: every content x style combination of lists of files,
their output names and a contact sheet. (`loop.iterate` runs any batch of pairs.)

    contents, styles = load_images(content_files, style_files, config)
    image_batch, history = stylize_batch(*combinations(contents, styles), params, config)
    save_results("out.png", content_files, style_files, contents, styles, image_batch)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from jaxart import errors, images
from jaxart.errors import ConfigError, InputError
from jaxart.style.config import StyleConfig
from jaxart.style.transfer import check_sizes


def check_batch(config: StyleConfig) -> None:
    """Raises ConfigError for options a batch of files cannot take: `load_images` gives each pair
    one style, at its content's shape (no `style_blend` or `style_scale`; a sweep of one pair,
    whose pairs share their styles, takes both)."""
    for name in ("style_blend", "style_scale"):
        if getattr(config, name):
            raise ConfigError(
                f"several contents or styles run as one batch, one style per pair at its content's shape: "
                f"no {errors.option(name)} (run such pairs one at a time)"
            )


def load_images(
    content_files: Sequence[str | os.PathLike], style_files: Sequence[str | os.PathLike], config: StyleConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Reads contents and styles for a batch, each as `stylize`'s command line reads one pair.

    Rule: each content is resized so its longest side is `config.max_size` (as the seed does), and
    all contents must then have one shape: InputError naming the files otherwise (nothing is
    cropped or squashed behind the user's back). Each style is resized to that shape (as the seed).
    Returns (contents (C, H, W, 3), styles (S, H, W, 3)), float32 RGB in [0, 1].
    """
    contents = [images.load_image(path, max_size=config.max_size) for path in content_files]
    shapes = {image.shape for image in contents}
    at = f"{errors.option('max_size')} {config.max_size}"
    if len(shapes) > 1:
        sizes = ", ".join(f"{Path(p).name} {c.shape[1]}x{c.shape[0]}" for p, c in zip(content_files, contents))
        raise InputError(
            f"content images must have one aspect ratio to run as a batch; at {at} "
            f"they are {sizes} (crop them alike, or run them separately)"
        )
    shape = contents[0].shape[:2]
    styles = [images.load_image(path, shape=shape) for path in style_files]
    try:
        check_sizes(contents[0].shape, [styles[0].shape], config)
    except ConfigError as e:
        raise ConfigError(f"{e} (after resizing to {at})") from e
    return np.stack(contents), np.stack(styles)


def combinations(contents: np.ndarray, styles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every (content, style) pair, content-major: pair i * S + j is (contents[i], styles[j]).

    (C, H, W, 3) and (S, H, W, 3) -> two (C * S, H, W, 3) arrays.
    """
    return np.repeat(contents, len(styles), axis=0), np.tile(styles, (len(contents), 1, 1, 1))


def pair_path(output: str | os.PathLike, content: str | os.PathLike, style: str | os.PathLike) -> Path:
    """`<out_stem>_<content stem>_<style stem><out suffix>` beside `output`: one pair's picture."""
    output = Path(output)
    return output.with_name(f"{output.stem}_{Path(content).stem}_{Path(style).stem}{output.suffix}")


def output_paths(
    output: str | os.PathLike, content_files: Sequence[str | os.PathLike], style_files: Sequence[str | os.PathLike]
) -> list[Path]:
    """Each pair's `pair_path`, in `combinations` order.

    Raises InputError if two pairs would get one name (inputs sharing a stem).
    """
    paths = [pair_path(output, c, s) for c in content_files for s in style_files]
    if len(set(paths)) < len(paths):
        raise InputError("content or style files share a name (stem), so their outputs would overwrite each other")
    return paths


def contact_sheet_path(output: str | os.PathLike) -> Path:
    """`<out_stem>_grid<out suffix>` beside `output`: a batch's contact sheet."""
    output = Path(output)
    return output.with_name(f"{output.stem}_grid{output.suffix}")


def contact_sheet(contents: np.ndarray, styles: np.ndarray, results: np.ndarray, pad: int = 2) -> np.ndarray:
    """One picture of a batch: rows = contents, columns = styles, with the style images as the header
    row and the contents as the header column (top-left corner blank, white).

    (C, H, W, 3), (S, H, W, 3) and (C * S, H, W, 3) in `combinations` order -> (H', W', 3).
    """
    blank = np.ones_like(contents[:1])
    rows = [np.concatenate([blank, styles])]
    rows += [
        np.concatenate([content[None], results[i * len(styles) : (i + 1) * len(styles)]])
        for i, content in enumerate(contents)
    ]
    return images.make_grid(np.concatenate(rows), ncols=len(styles) + 1, pad=pad)


def save_results(
    output: str | os.PathLike,
    content_files: Sequence[str | os.PathLike],
    style_files: Sequence[str | os.PathLike],
    contents: np.ndarray,
    styles: np.ndarray,
    results: np.ndarray,
    bit_depth: int | None = None,
) -> list[Path]:
    """Writes each result (see `output_paths`) and the contact sheet (`contact_sheet_path`),
    each atomically, at `bit_depth` (see `images.save_image`); returns their paths, the sheet last."""
    paths = output_paths(output, content_files, style_files)
    paths = [images.save_image(path, image, bit_depth) for path, image in zip(paths, results)]
    sheet = contact_sheet(contents, styles, results)
    return [*paths, images.save_image(contact_sheet_path(output), sheet, bit_depth)]
