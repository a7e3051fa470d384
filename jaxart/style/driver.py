"""The command line's driver: reads the inputs, runs `iterate` (or `iterate_batch`) under a
progress bar, and writes what a run leaves. Side effects live here; the math in `transfer`.

A run writes, beside --output (every location checked writable before the first step):
  OUTPUT                     the picture (a batch: OUTPUT_<content>_<style> each, and OUTPUT_grid)
  OUTPUT.loss.png            the loss curves (a batch: the pairs' mean)
  OUTPUT.stepNNNNN.png       with --save-every N, snapshots
  --metrics FILE             one JSON line per step (and pair), written at the end, atomically
If the disk refuses a write at the end, the pictures are kept in the cache folder instead
(`RunError` says where), so a finished optimisation is never lost.
"""

from __future__ import annotations

import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

from jaxart import cache, images, weights
from jaxart.errors import InputError, RunError, reason
from jaxart.files import check_distinct, check_output_path, write_json_lines
from jaxart.style import batch, pyramid, sharding
from jaxart.style.config import StyleConfig
from jaxart.style.transfer import METRICS, check_sizes, concat_history, initial_image, iterate, result_image

EXAMPLE_CONTENT = cache.packaged("examples", "content.png")
EXAMPLE_STYLE = cache.packaged("examples", "style.png")


def snapshot_path(output: Path, step: int) -> Path:
    return output.with_name(f"{output.stem}.step{step:05d}{output.suffix}")


def loss_plot_path(output: Path) -> Path:
    return output.with_name(f"{output.stem}.loss.png")


def stops(config: StyleConfig, save_every: int | None) -> tuple[int, ...]:
    """The steps at which a snapshot is written (and so a compiled call must end)."""
    return tuple(range(save_every, config.steps, save_every)) if save_every else ()


def check_outputs(
    output: Path,
    metrics: Path | None,
    contents: Sequence[str],
    styles: Sequence[str],
    config: StyleConfig,
    save_every: int | None,
    pairs: Sequence[Path] | None = None,
) -> None:
    """Refuses, before any work, an output location that cannot be written or one that would
    overwrite an input or another output: the picture (a batch: each pair's, see
    `batch.output_paths`, and the contact sheet), the loss plot, the snapshots, the metrics."""
    plot = check_output_path(loss_plot_path(output), what="loss plot")
    pictures = [output] if pairs is None else list(pairs)
    named: dict[str, Path | None] = {"--output": output} if pairs is None else {}
    named.update({f"the output {str(p)!r}": p for p in pictures if p != output})
    if pairs is not None:
        named["the contact sheet"] = batch.contact_sheet_path(output)
    named.update({"the loss plot": plot, "--metrics": metrics})
    for path in pictures:
        for step in stops(config, save_every):
            named[f"the snapshot {str(snapshot_path(path, step))!r}"] = snapshot_path(path, step)
    inputs = {**{f"--content {c!r}": c for c in contents}, **{f"--style {s!r}": s for s in styles}}
    if config.init not in ("content", "noise"):
        inputs["--init"] = config.init
    check_distinct(named, inputs)


def load_weights(source: str | None, seed: int) -> tuple[Any, dict[str, Any]]:
    """VGG19 params, placed on the device once (not copied there by every compiled call), and
    the StyleConfig overrides their source needs (`weights.style_defaults`). The weights'
    own warning about random weights is silenced: `warn_random` says it in the user's terms,
    beside the summary (so that a refusal stays one line)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        params = weights.load(source, seed=seed)
    return jax.device_put(params), weights.style_defaults(params)


def warn_random(source: str | None) -> None:
    if source == weights.RANDOM:
        print("warning: random VGG19 weights: the picture will mean nothing", file=sys.stderr)


class Inputs(NamedTuple):
    """A transfer's images, float32 (H, W, 3) RGB in [0, 1]."""

    content: np.ndarray
    styles: list[np.ndarray]
    init: np.ndarray


def check_memory(
    content_files: Sequence[str], config: StyleConfig, params: Any, pairs: int = 1, mesh: Any = None
) -> None:
    """Refuses (InputError) a run that cannot fit in memory, from the contents' headers alone:
    before their pixels are resized, let alone a step allocated. A batch is judged by its
    largest content (they must share one shape in the end); with a `mesh`, per device."""
    shapes = [images.image_size(path) for path in content_files]
    shape = max(shapes, key=lambda s: np.prod(pyramid.scaled_shape(s, config.max_size)))
    try:
        sharding.check_fits(shape, config, params, mesh, pairs)
    except ValueError as e:
        raise InputError(str(e)) from e


def load_inputs(content: str, styles: Sequence[str], config: StyleConfig) -> Inputs:
    """Reads the content as the seed does, each style at the shape --style-scale gives it (the
    content's by default, as in the seed) and the starting image; refuses sizes too small for
    the chosen layers and a --style-blend that does not match the styles."""
    content_image = images.load_image(content, max_size=config.max_size)
    longest = pyramid.style_longest(content_image.shape[:2], config)
    style_images = [
        images.load_image(path, max_size=longest) if longest else images.load_image(path, shape=content_image.shape[:2])
        for path in styles
    ]
    try:
        check_sizes(content_image.shape, [s.shape for s in style_images], config)
    except ValueError as e:
        raise InputError(str(e)) from e
    return Inputs(content_image, style_images, initial_image(content_image, config))


class Run(NamedTuple):
    """What a finished optimisation left: its last state, each metric's history (steps,) or
    (pairs, steps), the (steps done, seconds) at the end of each compiled call, and its seconds."""

    state: Any
    history: dict[str, np.ndarray]
    marks: list[tuple[int, float]]
    seconds: float


def _check_finite(metrics: dict[str, np.ndarray], before: int, labels: Sequence[dict[str, str]] | None) -> None:
    """Refuses a first step whose loss is not finite (weights or a learning rate that overflow
    float32): InputError; stops a run that diverges later: RunError, naming the step."""
    bad = ~np.isfinite(np.asarray(metrics["loss"]))
    if not bad.any():
        return
    pair, step = (0, *np.argwhere(bad)[0]) if bad.ndim == 1 else tuple(np.argwhere(bad)[0])
    which = f" (pair {labels[pair]['content']} x {labels[pair]['style']})" if labels else ""
    if before + step == 0:
        raise InputError(
            f"the first step's loss is not finite{which}: --content-weight, --style-weight or "
            "--tv-weight is too large for float32; use smaller weights"
        )
    raise RunError(
        f"the loss became non-finite at step {before + step}{which}: the optimisation diverged "
        "(try a smaller --lr); the output was not written"
    )


def optimise(
    calls: Iterator[tuple[int, Any, dict[str, Any]]],
    config: StyleConfig,
    desc: str,
    labels: Sequence[dict[str, str]] | None = None,
    stops: tuple[int, ...] = (),
    on_stop: Callable[[int, Any], None] | None = None,
) -> Run:
    """Drives `iterate` (or `iterate_batch`, then `labels` names each pair) under a progress bar,
    calling `on_stop(step, state)` at each of `stops`.

    A call's metrics are read only once the next call has been dispatched (the generator
    dispatches it before yielding), so the device never waits for the host; at a stop the
    state is read anyway, and its metrics with it.
    """
    from tqdm import tqdm  # deferred: only the CLI draws progress bars

    chunks: list[dict[str, np.ndarray]] = []
    marks: list[tuple[int, float]] = []
    with tqdm(total=config.steps, desc=desc, unit="step", file=sys.stderr, dynamic_ncols=True, disable=None) as bar:
        start = time.perf_counter()

        def fetch(before: int, done: int, metrics: dict[str, Any]) -> None:
            values = jax.device_get(metrics)
            _check_finite(values, before, labels)
            chunks.append(values)
            marks.append((done, time.perf_counter() - start))
            bar.set_postfix(
                content=f"{float(np.mean(values['content_loss'][..., -1])):.4g}",
                style=f"{float(np.mean(values['style_loss'][..., -1])):.4g}",
            )
            bar.update(done - before)

        pending, before, state = None, 0, None
        for done, state, metrics in calls:
            if pending is not None:
                fetch(*pending)
            pending = (before, done, metrics)
            if on_stop is not None and done in stops:
                fetch(*pending)
                pending = None
                on_stop(done, state)
            before = done
        if pending is not None:
            fetch(*pending)
    history = concat_history(chunks)
    return Run(state, history, marks, time.perf_counter() - start)


def metrics_rows(run: Run, labels: Sequence[dict[str, str]] | None = None) -> list[dict[str, Any]]:
    """One JSON record per step (and pair): step, its losses before its update, seconds since
    the optimisation began (steps inside one compiled call share its time, spread evenly)."""
    rows = []
    before, seconds_before = 0, 0.0
    for done, seconds in run.marks:
        n = done - before
        for i in range(n):
            at = round(seconds_before + (i + 1) / n * (seconds - seconds_before), 6)
            for p, label in enumerate(labels or [{}]):
                values = {name: float(run.history[name][..., before + i].reshape(-1)[p]) for name in METRICS}
                rows.append({**label, "step": before + i, **values, "seconds": at})
        before, seconds_before = done, seconds
    return rows


def save_plot(output: Path, history: dict[str, np.ndarray], title: str) -> Path:
    """The loss curves beside the output; a batch plots its pairs' mean."""
    from jaxart.plots import save_loss_curves  # deferred: matplotlib takes a second to import

    curves = {k: np.mean(np.atleast_2d(history[k]), axis=0) for k in ("content_loss", "style_loss", "loss")}
    return save_loss_curves(loss_plot_path(output), curves, title=title)


def rescue(pictures: Sequence[tuple[Path, np.ndarray]], rows: list[dict[str, Any]]) -> Path | None:
    """Keeps pictures (and metrics rows) that could not be written where they belong in a fresh
    folder of the cache (else of the temporary folder); returns it, or None if neither takes them."""
    for root in (cache.cache_dir("rescued"), Path(tempfile.gettempdir()) / "jaxart-rescued"):
        try:
            root.mkdir(parents=True, exist_ok=True)
            folder = Path(tempfile.mkdtemp(prefix=time.strftime("%Y%m%d-%H%M%S-"), dir=root))
            for path, image in pictures:
                images.save_image(folder / path.name, image)
            if rows:
                write_json_lines(folder / "metrics.jsonl", rows)
            return folder
        except OSError:
            continue
    return None


def write_results(
    pictures: Sequence[tuple[Path, np.ndarray]],
    writes: Sequence[Callable[[], Path]],
    rows: list[dict[str, Any]],
) -> list[Path]:
    """Writes the pictures, then the rest (plot, metrics); if the file system refuses (a full
    disk), keeps the pictures and metrics in the cache and raises RunError saying where."""
    try:
        return [images.save_image(path, image) for path, image in pictures] + [write() for write in writes]
    except OSError as e:
        kept = rescue(pictures, rows)
        where = f"the result was kept in {kept}" if kept else "nothing could be kept (no writable folder)"
        raise RunError(f"could not write {e.filename or 'the output'}: {e.strerror or reason(e)}; {where}") from e


def summary(shape: tuple[int, ...], run: Run, config: StyleConfig, written: Sequence[Path], pairs: int = 1) -> str:
    h, w = shape[:2]
    what = f"stylised {w}x{h}" if pairs == 1 else f"stylised {pairs} pairs at {w}x{h}"
    last = {k: float(np.mean(run.history[k][..., -1])) for k in ("content_loss", "style_loss")}
    mean = "" if pairs == 1 else " (mean over pairs)"
    return (
        f"{what} in {run.seconds:.1f} s ({config.steps / run.seconds:.2f} steps/s); final content loss "
        f"{last['content_loss']:.4g}, style loss {last['style_loss']:.4g}{mean}; wrote "
        f"{', '.join(str(p) for p in written)}"
    )


def _metrics_writes(run: Run, path: Path | None, labels: Sequence[dict[str, str]] | None = None):
    rows = metrics_rows(run, labels) if path else []
    return rows, ([lambda: write_json_lines(path, rows)] if path else [])


def run_transfer(
    inputs: Inputs,
    params: Any,
    config: StyleConfig,
    output: Path,
    metrics_path: Path | None = None,
    save_every: int | None = None,
    title: str = "",
    mesh: Any = None,
) -> str:
    """Runs one transfer (its rows split over `mesh`'s devices when given, see `sharding`);
    writes the output, its loss plot, the snapshots and the metrics log. Returns the summary line."""
    at = stops(config, save_every)

    def snapshot(step: int, state: Any) -> None:
        images.save_image(snapshot_path(output, step), result_image(state, inputs.content, config))

    h, w = inputs.content.shape[:2]
    if mesh is None:
        calls = iterate(inputs.content, inputs.styles, params, config, at, inputs.init)
    else:
        calls = sharding.iterate_rows(inputs.content, inputs.styles, params, config, mesh, at, inputs.init)
    run = optimise(calls, config, f"stylising {w}x{h}", stops=at, on_stop=snapshot)
    rows, writes = _metrics_writes(run, metrics_path)
    written = write_results(
        [(output, result_image(run.state, inputs.content, config))],
        [lambda: save_plot(output, run.history, title), *writes],
        rows,
    )
    return summary(inputs.content.shape, run, config, written)


def run_batch(
    content_files: Sequence[str],
    style_files: Sequence[str],
    contents: np.ndarray,
    styles: np.ndarray,
    params: Any,
    config: StyleConfig,
    output: Path,
    metrics_path: Path | None = None,
    save_every: int | None = None,
    mesh: Any = None,
) -> str:
    """Every content x style combination (images from `batch.load_images`) in one compiled,
    vmapped optimisation (the pairs split over `mesh`'s devices when given, see `sharding`);
    writes each result, a contact sheet, the loss plot (pairs' mean), snapshots and the metrics
    log (one line per step and pair, naming the pair). Returns the summary line."""
    paths = batch.output_paths(output, content_files, style_files)
    pair_contents, pair_styles = batch.combinations(contents, styles)
    labels = [{"content": str(c), "style": str(s)} for c in content_files for s in style_files]
    at = stops(config, save_every)

    def snapshot(step: int, states: Any) -> None:
        for path, image in zip(paths, batch.batch_results(states, pair_contents, config)):
            images.save_image(snapshot_path(path, step), image)

    h, w = contents.shape[1:3]
    if mesh is None:
        calls = batch.iterate_batch(pair_contents, pair_styles, params, config, stops=at)
    else:
        calls = sharding.iterate_pairs(pair_contents, pair_styles, params, config, mesh, stops=at)
    run = optimise(calls, config, f"stylising {len(labels)} pairs at {w}x{h}", labels, at, snapshot)
    results = batch.batch_results(run.state, pair_contents, config)
    sheet = batch.contact_sheet(contents, styles, results)
    rows, writes = _metrics_writes(run, metrics_path, labels)
    written = write_results(
        [*zip(paths, results), (batch.contact_sheet_path(output), sheet)],
        [lambda: save_plot(output, run.history, f"{len(labels)} pairs (mean)"), *writes],
        rows,
    )
    return summary(contents.shape[1:], run, config, written, len(labels))


def check_batch(config: StyleConfig) -> None:
    """`batch.check_batch` in the command line's terms (InputError)."""
    try:
        batch.check_batch(config)
    except ValueError as e:
        raise InputError(str(e)) from e
