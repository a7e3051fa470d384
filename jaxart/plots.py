"""PNG plots written atomically (matplotlib figures on its Agg canvas).

Figures are made without pyplot, whose import and registry of open figures a picture written to
a file does not need (and which threads would share), and saved as drawn: their constrained
layout fits them, and a tight bounding box would draw each a second time to measure it."""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib import font_manager
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from jaxart.files import atomic_path


@functools.cache
def _drawn_characters() -> frozenset[int]:
    """The code points the plots' (default) font has glyphs for."""
    path = font_manager.findfont(font_manager.FontProperties())
    return frozenset(font_manager.get_font(path).get_charmap())


def _escaped(char: str) -> str:
    """A character as Python escapes it (`ascii`), but a file name's undecodable byte, which
    `os.fsdecode` keeps as a surrogate (U+DC80..U+DCFF), as that byte: '\\xe9'."""
    code = ord(char)
    return f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else ascii(char)[1:-1]


def drawable(text: str) -> str:
    """`text` with each character the font cannot draw `_escaped`: an undecodable byte (which
    matplotlib refuses outright) as '\\xe9', a tab or a newline as '\\t' or '\\n', a glyph the
    font lacks as '\\u732b', rather than a crash, a box or a warning per character."""
    drawn = _drawn_characters()
    return "".join(c if ord(c) in drawn else _escaped(c) for c in text)


def figure(**options: Any) -> Figure:
    """A matplotlib figure (`Figure`'s options) on an Agg canvas, outside pyplot."""
    fig = Figure(**options)
    FigureCanvasAgg(fig)
    return fig


def save_figure(path: str | os.PathLike, fig: Figure) -> Path:
    """Saves a matplotlib figure as PNG atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return path


def loss_figure(
    curves: Mapping[str, Sequence[float]],
    steps: Sequence[int] | None = None,
    title: str = "",
    log_y: bool = True,
) -> Figure:
    """A matplotlib figure of each named curve against `steps` (default 0..n-1), one panel per
    curve, under `title`. Names and title are shown as given (`drawable`), never as mathtext:
    a file name may hold a '$'."""
    names = list(curves)
    # Constrained layout makes room for the figure's title above the panels' own.
    fig = figure(figsize=(4.5 * len(names), 3.4), layout="constrained")
    axes = fig.subplots(1, len(names), squeeze=False)
    for ax, name in zip(axes[0], names):
        values = list(curves[name])
        xs = list(steps) if steps is not None else list(range(len(values)))
        # A line needs two points: a run of one step would leave its panels empty.
        ax.plot(xs, values, linewidth=1.2, marker="o" if len(values) == 1 else None)
        ax.set_title(drawable(name), parse_math=False)
        ax.set_xlabel("step")
        if log_y and all(v > 0 for v in values):
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(drawable(title), parse_math=False)
    return fig


def save_loss_curves(
    path: str | os.PathLike,
    curves: Mapping[str, Sequence[float]],
    steps: Sequence[int] | None = None,
    title: str = "",
    log_y: bool = True,
) -> Path:
    """Plots each named curve against `steps` (default 0..n-1), one panel per curve (see
    `loss_figure`), as a PNG."""
    return save_figure(path, loss_figure(curves, steps, title, log_y))
