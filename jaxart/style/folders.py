"""Many pictures: every image of a folder, and a folder of numbered frames as a video.

Rules:
  * A folder's images are its files with an IMAGE_SUFFIXES suffix, in name order; frames are
    ordered by the last number in their names.
  * Each content x style pair writes `<output stem>_<content stem>_<style stem><suffix>` beside
    --output (as a batch does), each frame `<output stem>_<frame stem><suffix>`, atomically, as
    soon as its batch or frame ends. An output that exists is done: a rerun skips it, so an
    interrupted folder or video resumes where it stopped (with the same options, or the
    outputs it kept were made with others). What such a run writes, or a run of one pair with
    that --output left (its picture so far, snapshots, loss plot, contact sheet), is never
    taken as an input: the output may lie inside the input folder.
  * Folder: contents of one shape (after --max-size) run as batches of `batch_size` pairs.
  * Frames: one by one, in order (Ruder et al. 2016, "Artistic style transfer for videos").
    From the second on, the previous frame's output as written (read back from its file, so a
    resumed video takes the very same steps as an uninterrupted one) is carried into this
    frame's place along the optical flow between the input frames (`jaxart.flow`); with warm
    start the optimisation starts from it (`flow_init`; else from the previous output as it
    is), and with `temporal_weight` the temporal loss pulls the pixels the flow trusts towards
    it. `flow.temporal_error` measures how well consecutive outputs agree; `flicker` how much
    they change at all.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh

from jaxart import errors, flow, images
from jaxart.errors import ConfigError, InputError
from jaxart.style import batch, driver, loop, pyramid
from jaxart.style.config import StyleConfig
from jaxart.style.transfer import Temporal, blend_weights, check_sizes

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".pgm", ".ppm", ".pnm")


def list_images(
    folder: str | os.PathLike,
    output: Path | None = None,
    pictures: Callable[[Sequence[Path]], Iterable[Path]] = lambda found: (),
) -> list[Path]:
    """The image files directly in `folder`, in name order, less those a run writing beside
    `output` leaves (`driver.written_by`), `pictures(found)` being its pictures for the files
    found: an output folder inside the input folder is never read back as inputs, and a
    rerun finds the same inputs, and their pictures done. InputError if none is left."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{str(folder)!r} is not a folder")
    found = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    ours = driver.written_by(found, output, pictures(found)) if output is not None else set()
    inputs = [p for p in found if p not in ours]
    if not inputs:
        what = "but this run's outputs" if ours else f"({', '.join(IMAGE_SUFFIXES)})"
        raise InputError(f"folder {str(folder)!r} holds no image {what}")
    return inputs


def list_contents(folder: str | os.PathLike, output: Path, style_files: Sequence[str]) -> list[Path]:
    """`list_images` of a folder run writing each content x style pair beside `output`."""
    return list_images(
        folder, output, lambda found: [batch.pair_path(output, c, s) for c in found for s in style_files]
    )


def _frame_number(path: Path) -> int | None:
    """The last run of digits in a file's stem ('clip_0042' -> 42), None without one."""
    digits = re.findall(r"\d+", path.stem)
    return int(digits[-1]) if digits else None


def list_frames(folder: str | os.PathLike, output: Path | None = None) -> list[Path]:
    """A folder's images ordered as frames, by `_frame_number`, less the outputs of a run
    writing beside `output` (see `list_images`); InputError if one has no number or two share
    one (the order would be a guess)."""
    paths = list_images(folder, output, lambda found: frame_outputs(output, found) if output else ())
    numbers = [_frame_number(p) for p in paths]
    unnumbered = [p.name for p, n in zip(paths, numbers) if n is None]
    if unnumbered:
        raise InputError(f"frames need a number in their names; {', '.join(unnumbered[:3])} have none")
    if len(set(numbers)) < len(numbers):
        raise InputError(f"two frames in {str(folder)!r} share a number; the order would be ambiguous")
    return [p for _, p in sorted(zip(numbers, paths))]


def flicker(frames: Sequence[np.ndarray]) -> float:
    """Mean absolute difference between consecutive (H, W, 3) frames, averaged over the pairs."""
    return float(np.mean([np.mean(np.abs(b - a)) for a, b in zip(frames[:-1], frames[1:])]))


def flicker_ratio(outputs: Sequence[np.ndarray], inputs: Sequence[np.ndarray]) -> float:
    """`flicker` of the outputs over that of the inputs: 1 = the stylised video changes from
    frame to frame as much as the input does; more = stylisation adds flicker."""
    return flicker(outputs) / flicker(inputs)


def frame_outputs(output: Path, frame_files: Sequence[Path]) -> list[Path]:
    """`<output stem>_<frame stem><output suffix>` beside `output`, one per frame."""
    return [output.with_name(f"{output.stem}_{Path(f).stem}{output.suffix}") for f in frame_files]


def check_contents(
    content_files: Sequence[Path], config: StyleConfig, blended: Sequence[str | os.PathLike] = ()
) -> None:
    """Refuses (InputError, naming the file) a content too small for the chosen layers at
    --max-size, or whose styles would be, or a `style_blend` that does not match them, from the
    headers alone, before any work. Each content has the styles `blended` (a video's frames
    blend every --style), or else one style at its own shape (a folder's pairs)."""
    blend_weights(max(len(blended), 1), config)  # about the styles, not a content: said plainly first
    style_sizes = [images.image_size(path) for path in blended]
    for path in content_files:
        shape = pyramid.scaled_shape(images.image_size(path), config.max_size)
        try:
            check_sizes((*shape, 3), [(*size, 3) for size in style_sizes] or [(*shape, 3)], config)
        except ConfigError as e:
            raise ConfigError(
                f"{path.name}: {e} (after resizing to {errors.option('max_size')} {config.max_size})"
            ) from e


def _load_styles(style_files: Sequence[str | os.PathLike], shape: tuple[int, int]) -> np.ndarray:
    return np.stack([images.load_image(path, shape=shape) for path in style_files])


def run_folder(
    content_files: Sequence[Path],
    style_files: Sequence[str],
    params: Any,
    config: StyleConfig,
    output: Path,
    mesh: Mesh,
    batch_size: int | None = None,
) -> str:
    """Every content x style pair whose output does not exist yet, contents of one shape in
    batches of `batch_size` pairs (default: one per device of `mesh`), the pairs split over
    `mesh`'s devices; with several processes, each runs its share on its own devices. Returns
    the summary line."""
    outputs = batch.output_paths(output, content_files, style_files)
    # After jax.distributed.initialize, each process takes every process_count-th pair, split
    # before looking at what exists: another process may be writing its share meanwhile.
    mine = [(i, j) for i, _ in enumerate(content_files) for j, _ in enumerate(style_files)]
    mine = mine[jax.process_index() :: jax.process_count()]
    todo = [(i, j) for i, j in mine if not outputs[i * len(style_files) + j].exists()]
    skipped = len(mine) - len(todo)
    contents = {i: images.load_image(content_files[i], max_size=config.max_size) for i in sorted({i for i, _ in todo})}
    by_shape: dict[tuple[int, ...], list[tuple[int, int]]] = {}
    for i, j in todo:
        by_shape.setdefault(contents[i].shape, []).append((i, j))
    size = batch_size or mesh.size
    seconds, written = 0.0, 0
    for shape, pairs in by_shape.items():
        styles = _load_styles(style_files, (shape[0], shape[1]))
        for start in range(0, len(pairs), size):
            chunk = pairs[start : start + size]
            pair_contents = np.stack([contents[i] for i, _ in chunk])
            pair_styles = styles[[j for _, j in chunk]]
            labels = [{"content": str(content_files[i]), "style": str(style_files[j])} for i, j in chunk]
            calls = loop.iterate(pair_contents, list(pair_styles), params, config, mesh=mesh)
            run = driver.optimise(calls, config, f"{written + len(chunk)}/{len(todo)} at {shape[1]}x{shape[0]}", labels)
            results = loop.result_images(run.state, pair_contents, config)
            for (i, j), image in zip(chunk, results):
                images.save_image(outputs[i * len(style_files) + j], image, config.bit_depth)
            seconds += run.seconds
            written += len(chunk)
    done = f"; skipped {skipped} already done" if skipped else ""
    pattern = driver.shown_path(output.with_name(output.stem + "_*"))
    return f"stylised {written} pairs in {seconds:.1f} s{done}; wrote {pattern}"


def frame_start(
    previous_output: np.ndarray, move: flow.Motion, config: StyleConfig, warm_start: bool = True, flow_init: bool = True
) -> tuple[np.ndarray | None, Temporal | None]:
    """A frame's (starting image, temporal targets) for `stylize`, from the (H, W, 3) output of
    the frame before and the `Motion` between the two input frames: that output warped along
    the flow (as is without `flow_init`) to start from, None without `warm_start` (then
    `config.init` says); and the temporal loss's targets, None when `temporal_weight` is 0."""
    warped = flow.warp(previous_output, move.backward)
    init = (warped if flow_init else np.asarray(previous_output, np.float32)) if warm_start else None
    return init, Temporal(warped, move.visible) if config.temporal_weight > 0 else None


def _frame_starts(
    frames: Sequence[np.ndarray],
    previous_output: Callable[[int], np.ndarray],
    config: StyleConfig,
    warm_start: bool,
    flow_init: bool,
    done: Callable[[int], bool] = lambda k: False,
) -> Iterator[tuple[int, np.ndarray | None, Temporal | None, flow.Motion | None]]:
    """(k, init, temporal, motion from frame k-1) of each frame not `done`, in order, lazily:
    `previous_output(k - 1)` is read only once frame k - 1's output exists."""
    for k, frame in enumerate(frames):
        if done(k):
            continue
        if k == 0:
            yield k, None, None, None
            continue
        move = flow.motion(frames[k - 1], frame)
        yield k, *frame_start(previous_output(k - 1), move, config, warm_start, flow_init), move


def stylize_video(
    frames: Sequence[np.ndarray],
    style: np.ndarray | Sequence[np.ndarray],
    params: Any,
    config: StyleConfig = StyleConfig(),
    *,
    warm_start: bool = True,
    flow_init: bool = True,
    mesh: Mesh | None = None,
) -> tuple[list[np.ndarray], list[flow.Motion]]:
    """Gatys style transfer of a video's (H, W, 3) RGB frames in [0, 1], in memory, one after
    the other (see the module's rules, and `frame_start`): (each frame's output, the motion
    between each pair of input frames), for `flow.temporal_error`."""
    outputs: list[np.ndarray] = []
    motions: list[flow.Motion] = []
    for k, init, temporal, move in _frame_starts(frames, outputs.__getitem__, config, warm_start, flow_init):
        outputs.append(loop.stylize(frames[k], style, params, config, mesh=mesh, init=init, temporal=temporal)[0])
        motions += [move] if move is not None else []
    return outputs, motions


def _mode(config: StyleConfig, warm_start: bool, flow_init: bool) -> str:
    start = ("flow-warped warm start" if flow_init else "warm start") if warm_start else "each frame from its own start"
    return f"{start}, temporal weight {config.temporal_weight:g}"


def run_frames(
    frame_files: Sequence[Path],
    style_files: Sequence[str],
    params: Any,
    config: StyleConfig,
    output: Path,
    mesh: Mesh,
    warm_start: bool = True,
    flow_init: bool = True,
) -> str:
    """Stylises the frames in order (see the module's rules), each split by rows over `mesh`;
    frames already written are skipped. Returns the summary line, with the temporal error and
    the flicker of the outputs against that of the inputs."""
    outputs = frame_outputs(output, frame_files)
    frames = [images.load_image(path, max_size=config.max_size) for path in frame_files]
    if len({f.shape for f in frames}) > 1:
        raise InputError("frames of one video must share one size")
    inputs = driver.load_inputs(str(frame_files[0]), style_files, config)
    seconds, ran, losses = 0.0, 0, []
    pair_errors: dict[int, float] = {}  # each pair's temporal error, of the frames run here

    # Frame k's output as written, read once: for its pair's error, then for frame k + 1's start.
    @functools.lru_cache(maxsize=2)
    def previous(k: int) -> np.ndarray:
        return images.load_image(outputs[k], shape=frames[k].shape[:2])

    for k, init, temporal, move in _frame_starts(
        frames, previous, config, warm_start, flow_init, done=lambda k: outputs[k].exists()
    ):
        calls = loop.iterate(
            frames[k][None],
            [inputs.styles],
            params,
            config,
            mesh=mesh,
            init=None if init is None else init[None],
            temporal=None if temporal is None else Temporal(*(x[None] for x in temporal)),
        )
        run = driver.optimise(calls, config, f"frame {k + 1}/{len(frames)}")
        images.save_image(outputs[k], loop.result_images(run.state, frames[k][None], config)[0], config.bit_depth)
        if move is not None:
            pair_errors[k] = flow.pair_error(previous(k - 1), previous(k), move)
        seconds, ran = seconds + run.seconds, ran + 1
        losses.append([float(run.history[name][0, -1]) for name in ("content_loss", "style_loss")])
    steadiness = ""
    if len(frames) > 1:
        results = [images.load_image(path) for path in outputs]
        # Motions one pair at a time, and only for frames skipped here (a video's every flow at
        # once would not fit in memory).
        pairs = [
            pair_errors[k]
            if k in pair_errors
            else flow.pair_error(results[k - 1], results[k], flow.motion(frames[k - 1], frames[k]))
            for k in range(1, len(frames))
        ]
        steadiness = (
            f"; temporal error {np.mean(pairs):.3g} (mean squared difference from the "
            f"previous output warped along the flow, where it is trusted); flicker "
            f"{flicker_ratio(results, frames):.3f} x the input's (mean |frame k+1 - frame k|: output "
            f"{flicker(results):.4f}, input {flicker(frames):.4f})"
        )
    skipped = len(frames) - ran
    done = f", skipped {skipped} already done" if skipped else ""
    # Steadiness alone would reward a video that ignores its frames: say how well each frame was fitted.
    fit = ""
    if losses:
        content, style = np.mean(losses, axis=0)
        fit = f"; mean final content loss {content:.4g}, style loss {style:.4g}"
    return (
        f"stylised {ran} frames in {seconds:.1f} s ({_mode(config, warm_start, flow_init)}{done}{fit})"
        f"{steadiness}; wrote {driver.shown_path(output.with_name(output.stem + '_*'))}"
    )
