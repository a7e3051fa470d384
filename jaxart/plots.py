"""PNG plots written atomically (matplotlib, headless Agg backend)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from jaxart.files import atomic_path  # noqa: E402


def save_figure(path: str | os.PathLike, fig) -> Path:
    """Saves a matplotlib figure as PNG atomically and closes it."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def loss_figure(
    curves: Mapping[str, Sequence[float]],
    steps: Sequence[int] | None = None,
    title: str = "",
    log_y: bool = True,
):
    """A matplotlib figure of each named curve against `steps` (default 0..n-1), one panel per
    curve, under `title`."""
    names = list(curves)
    # Constrained layout makes room for the figure's title above the panels' own.
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.4), squeeze=False, layout="constrained")
    for ax, name in zip(axes[0], names):
        values = list(curves[name])
        xs = list(steps) if steps is not None else list(range(len(values)))
        ax.plot(xs, values, linewidth=1.2)
        ax.set_title(name)
        ax.set_xlabel("step")
        if log_y and all(v > 0 for v in values):
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
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
