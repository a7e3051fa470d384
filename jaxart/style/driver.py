"""The command line's driver: works out the config from the flags, reads the inputs, runs
`loop.iterate` under a progress bar, and writes what a run leaves. Side effects live here; the
loop in `loop`, the math in `transfer`.

A run writes, beside --output (every location checked writable before the first step):
  OUTPUT                     the picture (a batch: OUTPUT_<content>_<style> each, a sweep
                             OUTPUT_sw<style weight> each, ..., and OUTPUT_grid)
  OUTPUT.loss.png            the loss curves (a batch: the pairs' mean)
  OUTPUT.stepNNNNN.png       with --save-every N, snapshots
  --metrics FILE             one JSON line per step (and pair), written at the end, atomically
If the disk refuses a write at the end, the pictures are kept in the cache folder instead
(`RunError` says where), so a finished optimisation is never lost.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import os
import re
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh

from jaxart import cache, images, interrupts, weights
from jaxart.errors import InputError, Interrupted, RunError, reason
from jaxart.files import check_distinct, check_output_path, write_json_lines
from jaxart.style import batch, loop, memory, pyramid, resume, sharding
from jaxart.style.config import CONTENT_STARTS, INITS, PRESETS, StyleConfig, resolve_preset, size_scaled_style_weight
from jaxart.style.transfer import METRICS, check_sizes, concat_history, initial_image

EXAMPLE_CONTENT = cache.packaged("examples", "content.png")
EXAMPLE_STYLE = cache.packaged("examples", "style.png")


class _Unset:
    """A StyleConfig flag the user did not give (see `unset_namespace`)."""

    def __repr__(self) -> str:
        return "<unset>"


UNSET = _Unset()


def unset_namespace() -> argparse.Namespace:
    """A namespace to parse the flags into: argparse fills in the defaults of missing attributes
    only, so each StyleConfig flag not given stays UNSET (`config_from_args` tells it apart from a
    value given), while --help still shows the defaults."""
    return argparse.Namespace(**dict.fromkeys((f.name for f in dataclasses.fields(StyleConfig)), UNSET))


# Each sweepable field's mark in the output names (see `sweep_paths`).
SWEEP_MARKS = {"style_weight": "sw", "content_weight": "cw", "tv_weight": "tv"}


def config_from_args(
    args: argparse.Namespace, weights_defaults: Mapping[str, Any] | None = None
) -> tuple[StyleConfig, dict[str, tuple[float, ...]]]:
    """The config the flags ask for, by one rule: the preset's values < the weights' own
    (`weights.style_defaults`) < the flags given explicitly; and the sweep, {field: values} for
    each sweepable flag given several comma-separated values (the config holds the first).

    A style weight not given is stated for 400 px and follows the picture's size
    (`size_scaled_style_weight`), except in the seed's preset, which keeps it at every size."""
    fields = dataclasses.fields(StyleConfig)
    given = {f.name: getattr(args, f.name) for f in fields if getattr(args, f.name) is not UNSET}
    sweepable = [f.name for f in fields if f.metadata.get("sweep") and f.name in given]
    sweep = {name: tuple(given[name]) for name in sweepable if len(given[name]) > 1}
    given |= {name: given[name][0] for name in sweepable}
    name = resolve_preset(args.preset, jax.default_backend())
    config = StyleConfig(**{**PRESETS[name], **(weights_defaults or {}), **given})
    if "style_weight" not in given and name != "seed":
        config = dataclasses.replace(
            config, style_weight=size_scaled_style_weight(config.style_weight, config.max_size)
        )
    return config, sweep


def _snapshot_path(output: Path, step: int) -> Path:
    return output.with_name(f"{output.stem}.step{step:05d}{output.suffix}")


def _loss_plot_path(output: Path) -> Path:
    return output.with_name(f"{output.stem}.loss.png")


# What a picture's stem gains in the files kept beside it: the picture so far, a snapshot.
_KEPT = re.compile(r"\.(partial|step\d+)$")


def _place(path: Path) -> Path:
    """`path` in its folder's real place (links and `..` resolved), the file itself left as named."""
    return path.parent.resolve() / path.name


def written_by(files: Sequence[Path], output: Path, pictures: Iterable[Path]) -> set[Path]:
    """Those of `files` that a run writing `pictures` beside `output` writes or keeps: a
    picture, its picture so far (`resume.partial_path`) or a snapshot, or `output`'s own
    picture, loss plot or contact sheet (an earlier run of one pair or a batch may have left them)."""
    ours = {_place(p) for p in (output, _loss_plot_path(output), batch.contact_sheet_path(output), *pictures)}
    return {f for f in files if {_place(f), _place(f.with_name(_KEPT.sub("", f.stem) + f.suffix))} & ours}


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
    other_inputs: Mapping[str, str] | None = None,
) -> None:
    """Refuses, before any work, an output location that cannot be written or one that would
    overwrite an input (`other_inputs`: more of them, by what a message calls each) or another
    output: the picture (a batch: each pair's, see `batch.output_paths`, and the contact sheet),
    the loss plot, the snapshots, the metrics."""
    plot = check_output_path(_loss_plot_path(output), what="loss plot")
    pictures = [output] if pairs is None else list(pairs)
    named: dict[str, Path | None] = {"--output": output} if pairs is None else {}
    named.update({f"the output {str(p)!r}": p for p in pictures if p != output})
    if pairs is not None:
        named["the contact sheet"] = batch.contact_sheet_path(output)
    named.update({"the loss plot": plot, "--metrics": metrics, "the kept state": resume.state_path(output)})
    named.update({f"the picture so far {str(resume.partial_path(p))!r}": resume.partial_path(p) for p in pictures})
    for path in pictures:
        for step in stops(config, save_every):
            named[f"the snapshot {str(_snapshot_path(path, step))!r}"] = _snapshot_path(path, step)
    inputs = {**{f"--content {c!r}": c for c in contents}, **{f"--style {s!r}": s for s in styles}}
    if config.init not in INITS:
        inputs["--init"] = config.init
    check_distinct(named, {**inputs, **(other_inputs or {})})


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
    """A transfer's images, float32 (H, W, 3) RGB in [0, 1]; init None where `loop.iterate` makes
    the start itself (`config.init` in CONTENT_STARTS)."""

    content: np.ndarray
    styles: list[np.ndarray]
    init: np.ndarray | None


def command_line_mesh(devices: int | None, spatial: bool, pairs: int) -> Mesh:
    """The mesh --devices and --shard-spatial ask for: several pairs split over `devices`
    (default: all local devices); one pair's rows split when `spatial`, or when `devices` > 1 is
    given for one pair; else one device. InputError for more devices than there are."""
    available = len(jax.local_devices())
    count = available if devices is None else devices
    if count > available:
        raise InputError(f"--devices {count}: this process has {available} device(s)")
    if spatial and pairs > 1:
        raise InputError("--shard-spatial splits one picture over the devices; give one --content and one --style")
    if pairs > 1:
        return sharding.make_mesh(pairs=count)
    return sharding.make_mesh(rows=count if spatial or devices is not None else 1)


def check_memory(content_files: Sequence[str], config: StyleConfig, params: Any, pairs: int, mesh: Mesh) -> None:
    """Refuses (ConfigError) a run that cannot fit in memory, from the contents' headers alone:
    before their pixels are resized, let alone a step allocated. A batch is judged by its
    largest content (they must share one shape in the end); per device of `mesh`."""
    shapes = [images.image_size(path) for path in content_files]
    shape = max(shapes, key=lambda s: np.prod(pyramid.scaled_shape(s, config.max_size)))
    memory.check_fits(shape, config, params, pairs, mesh)


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
    check_sizes(content_image.shape, [s.shape for s in style_images], config)
    init = None if config.init in CONTENT_STARTS else initial_image(content_image, config)
    return Inputs(content_image, style_images, init)


class Run(NamedTuple):
    """What a finished optimisation left: its last state, each metric's history (steps,) or
    (pairs, steps), the (steps done, seconds) at the end of each compiled call, and its seconds
    (a resumed run's include those before the interruption)."""

    state: Any
    history: dict[str, np.ndarray]
    marks: list[tuple[int, float]]
    seconds: float


def _check_finite(metrics: dict[str, np.ndarray], before: int, labels: Sequence[Mapping[str, Any]] | None) -> None:
    """Refuses a first step whose loss is not finite (weights or a learning rate that overflow
    float32): InputError; stops a run that diverges later: RunError, naming the step."""
    bad = ~np.isfinite(np.asarray(metrics["loss"]))
    if not bad.any():
        return
    pair, step = np.argwhere(bad.reshape(-1, bad.shape[-1]))[0]
    which = f" ({', '.join(f'{k} {v}' for k, v in labels[pair].items())})" if labels else ""
    if before + step == 0:
        raise InputError(
            f"the first step's loss is not finite{which}: --content-weight, --style-weight or "
            "--tv-weight is too large for float32; use smaller weights"
        )
    raise RunError(
        f"the loss became non-finite at step {before + step}{which}: the optimisation diverged "
        "(try a smaller --lr); the output was not written"
    )


def _percent(value: float, of: float) -> str:
    return f"{100 * value / of:.3g}%" if of > 0 else "-"


def relative_losses(first: Mapping[str, Any], latest: Mapping[str, Any], content_weight: Any) -> dict[str, str]:
    """The latest losses for a person: the total and the style loss as shares of their first
    values, and the weighted content loss as a share of the total (it starts at 0 from the
    content). `first`: each metric's first value, (P,) or scalar; `latest`: each metric's values
    of a call, (..., steps), the last one shown. Means over pairs; `content_weight` a float or
    one per pair."""
    now = {k: np.asarray(v)[..., -1] for k, v in latest.items()}
    content_share = np.mean(np.asarray(content_weight) * now["content_loss"] / np.maximum(now["loss"], 1e-30))
    return {
        "loss": _percent(float(np.mean(now["loss"])), float(np.mean(first["loss"]))) + " of start",
        "style": _percent(float(np.mean(now["style_loss"])), float(np.mean(first["style_loss"]))) + " of start",
        "content": f"{100 * float(content_share):.3g}% of loss",
    }


# A run expected to take longer than this is told how to go faster.
HINT_AFTER_SECONDS = 180.0


class Keep(NamedTuple):
    """How `optimise` keeps a run's work: `save(saved, states)` (the states read to the host)
    every `every` seconds (0: only when interrupted) and on Ctrl-C or SIGTERM, where
    `say(saved)` tells what was kept; `before`, the part of the run done before a --resume."""

    save: Callable[[resume.Saved, Any], None]
    every: float
    say: Callable[[resume.Saved], str]
    before: resume.Saved | None = None


def optimise(
    calls: Iterator[tuple[int, Any, dict[str, Any]]],
    config: StyleConfig,
    desc: str,
    labels: Sequence[Mapping[str, Any]] | None = None,
    stops: tuple[int, ...] = (),
    on_stop: Callable[[int, Any], None] | None = None,
    *,
    content_weight: Any = None,
    announce: str = "",
    hint: str = "",
    keep: Keep | None = None,
) -> Run:
    """Drives `loop.iterate` under a `Progress` (`labels` naming each pair of a batch), calling
    `on_stop(step, state)` at each of `stops`. Says `announce` once the first step's loss is
    known to be finite (so that a refusal of the inputs stays one line), then, once the first
    calls have run, how long the rest will take, and `hint` if that is long; with `keep`, saves
    the run as it goes and when interrupted (then raises `Interrupted`, saying where it is).
    Under `interrupts.handling()` (the commands) an interrupt is taken between calls, so the
    state it keeps is that of the latest call dispatched.

    A call's metrics are read only once the next call has been dispatched (the generator
    dispatches it before yielding), so the device never waits for the host; at a stop, a save
    or an interruption the state is read anyway, and its metrics with it.
    """
    from jaxart.progress import Progress, duration

    earlier = keep.before if keep else None
    start = earlier.step if earlier else 0
    chunks: list[dict[str, np.ndarray]] = [earlier.history] if earlier else []
    previous = earlier.marks[-1][1] if earlier else 0.0
    marks: list[tuple[int, float]] = list(earlier.marks) if earlier else []
    weight = config.content_weight if content_weight is None else content_weight
    progress = Progress(config.steps, desc, initial=start)
    clock = last_save = time.perf_counter()
    told = False

    def fetch(before: int, done: int, metrics: dict[str, Any]) -> None:
        nonlocal told
        values = jax.device_get(metrics)
        _check_finite(values, before, labels)
        if announce and before == start:
            progress.write(announce)
        chunks.append(values)
        marks.append((done, previous + time.perf_counter() - clock))
        progress.update(done, relative_losses({k: v[..., 0] for k, v in chunks[0].items()}, values, weight))
        left, per_step = progress.seconds_left(), progress.seconds_per_step()
        if not told and left is not None and per_step is not None:
            told = True
            progress.write(f"about {duration(left)} to go ({per_step:.2g} s a step, compiled)")
            if hint and left > HINT_AFTER_SECONDS:
                progress.write(f"hint: {hint}")

    def saved(done: int, state: Any) -> resume.Saved:
        host = jax.device_get(state)
        kept = resume.Saved(done, jax.tree.leaves(host), concat_history(chunks), list(marks))
        assert keep is not None
        keep.save(kept, host)
        return kept

    unread: list[tuple[int, int, dict[str, Any]]] = []  # calls whose metrics are still on the device
    last, state, latest = start, None, None
    # An interrupt is taken only between calls: each call takes (donates) the latest state, so
    # one landing inside `calls`' dispatch would lose both the state and the call's result.
    with progress, interrupts.deferred():
        try:
            for done, state, metrics in calls:
                latest = (done, state)  # valid until the next call is asked for (it takes the state)
                unread.append((last, done, metrics))
                last = done
                interrupts.take()
                if len(unread) > 1:
                    fetch(*unread.pop(0))
                save_now = keep is not None and keep.every > 0 and time.perf_counter() - last_save >= keep.every
                if done in stops or save_now:
                    fetch(*unread.pop())
                    if on_stop is not None and done in stops:
                        on_stop(done, state)
                    if save_now:
                        saved(done, state)
                        last_save = time.perf_counter()
                interrupts.take()
            while unread:
                fetch(*unread.pop(0))
            interrupts.take()
        except KeyboardInterrupt:
            if keep is None or latest is None:
                raise
            while unread:  # the latest call's metrics with its state, once it has finished
                fetch(*unread.pop(0))
            raise Interrupted(keep.say(saved(*latest))) from None
    return Run(state, concat_history(chunks), marks, previous + time.perf_counter() - clock)


def _metrics_rows(run: Run, labels: Sequence[Mapping[str, Any]] | None = None) -> list[dict[str, Any]]:
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


def _save_plot(output: Path, history: dict[str, np.ndarray], title: str) -> Path:
    """The loss curves beside the output; a batch plots its pairs' mean."""
    from jaxart.plots import save_loss_curves  # deferred: matplotlib takes a second to import

    curves = {k: np.mean(np.atleast_2d(history[k]), axis=0) for k in ("content_loss", "style_loss", "loss")}
    return save_loss_curves(_loss_plot_path(output), curves, title=title)


def _rescue(
    pictures: Sequence[tuple[Path, np.ndarray]], rows: list[dict[str, Any]], bit_depth: int | None
) -> Path | None:
    """Keeps pictures (and metrics rows) that could not be written where they belong in a fresh
    folder of the cache (else of the temporary folder), at `bit_depth`; returns it, or None if
    neither takes them."""
    for root in (cache.cache_dir("rescued"), Path(tempfile.gettempdir()) / "jaxart-rescued"):
        try:
            root.mkdir(parents=True, exist_ok=True)
            folder = Path(tempfile.mkdtemp(prefix=time.strftime("%Y%m%d-%H%M%S-"), dir=root))
            for path, image in pictures:
                images.save_image(folder / path.name, image, bit_depth)
            if rows:
                write_json_lines(folder / "metrics.jsonl", rows)
            return folder
        except OSError:
            continue
    return None


def _write_results(
    pictures: Sequence[tuple[Path, np.ndarray]],
    writes: Sequence[Callable[[], Path]],
    rows: list[dict[str, Any]],
    bit_depth: int | None = None,
) -> list[Path]:
    """Writes the pictures at `bit_depth` (see `images.save_image`), then the rest (plot,
    metrics); if the file system refuses (a full disk), keeps the pictures and metrics in the
    cache and raises RunError saying where."""
    try:
        pictures_written = [images.save_image(path, image, bit_depth) for path, image in pictures]
        return pictures_written + [write() for write in writes]
    except OSError as e:
        kept = _rescue(pictures, rows, bit_depth)
        where = f"the result was kept in {kept}" if kept else "nothing could be kept (no writable folder)"
        raise RunError(f"could not write {e.filename or 'the output'}: {e.strerror or reason(e)}; {where}") from e


def shown_path(path: str | os.PathLike) -> str:
    """A path as text that any stream takes, a strict UTF-8 one too: a byte of its name that is
    not UTF-8 (which `os.fsdecode` keeps as a surrogate) written as '\\xe9'."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def summary(shape: tuple[int, ...], run: Run, config: StyleConfig, written: Sequence[Path], pairs: int = 1) -> str:
    h, w = shape[:2]
    what = f"stylised {w}x{h}" if pairs == 1 else f"stylised {pairs} pairs at {w}x{h}"
    last = {k: float(np.mean(run.history[k][..., -1])) for k in ("content_loss", "style_loss")}
    mean = "" if pairs == 1 else " (mean over pairs)"
    return (
        f"{what} in {run.seconds:.1f} s ({config.steps / run.seconds:.2f} steps/s); final content loss "
        f"{last['content_loss']:.4g}, style loss {last['style_loss']:.4g}{mean}; wrote "
        f"{', '.join(map(shown_path, written))}"
    )


def _metrics_writes(run: Run, path: Path | None, labels: Sequence[Mapping[str, Any]] | None = None):
    rows = _metrics_rows(run, labels) if path else []
    return rows, ([lambda: write_json_lines(path, rows)] if path else [])


class Pairs(NamedTuple):
    """What the command line runs: each pair's images, output path and label (what the metrics
    log and a refusal call it; none for one picture), its values (see `loop.iterate`), the
    contact sheet of a batch's results, the starting images (None: the contents), and the masks
    every pair takes (`loop.iterate`'s, at the contents' shape; None: none)."""

    contents: np.ndarray
    styles: Sequence[np.ndarray | Sequence[np.ndarray]]
    paths: list[Path]
    labels: list[dict[str, Any]]
    per_pair: dict[str, tuple[float, ...]]
    sheet: Callable[[np.ndarray], np.ndarray] | None
    init: np.ndarray | None = None
    style_masks: np.ndarray | None = None
    content_mask: np.ndarray | None = None


def with_masks(pairs: Pairs, style_masks: Sequence[np.ndarray], content_mask: np.ndarray | None) -> Pairs:
    """`pairs` with masks read at their own size (`masks.read`), resized to the contents' shape
    (`images.resize_mask`)."""
    shape = pairs.contents.shape[1:3]
    return pairs._replace(
        style_masks=np.stack([images.resize_mask(m, shape) for m in style_masks]) if style_masks else None,
        content_mask=None if content_mask is None else images.resize_mask(content_mask, shape),
    )


def one_pair(inputs: Inputs, output: Path) -> Pairs:
    """One transfer: the content with its styles (blended), written to `output`."""
    init = None if inputs.init is None else inputs.init[None]
    return Pairs(inputs.content[None], [inputs.styles], [output], [], {}, None, init)


def batch_pairs(
    content_files: Sequence[str], style_files: Sequence[str], contents: np.ndarray, styles: np.ndarray, output: Path
) -> Pairs:
    """Every content x style combination (images from `batch.load_images`), named by its files."""
    pair_contents, pair_styles = batch.combinations(contents, styles)
    return Pairs(
        pair_contents,
        list(pair_styles),
        batch.output_paths(output, content_files, style_files),
        [{"content": str(c), "style": str(s)} for c in content_files for s in style_files],
        {},
        lambda results: batch.contact_sheet(contents, styles, results),
    )


def _combinations(sweep: Mapping[str, Sequence[float]]) -> list[dict[str, float]]:
    """Every combination of the swept values, one value of each field."""
    return [dict(zip(sweep, values)) for values in itertools.product(*sweep.values())]


def sweep_paths(output: Path, sweep: Mapping[str, Sequence[float]]) -> list[Path]:
    """Each combination's picture, named by its values: `<out stem>_sw1e-05<suffix>` for
    `style_weight` 1e-05 (see SWEEP_MARKS)."""
    return [
        output.with_name(output.stem + "".join(f"_{SWEEP_MARKS[k]}{v:g}" for k, v in c.items()) + output.suffix)
        for c in _combinations(sweep)
    ]


def sweep_pairs(inputs: Inputs, sweep: Mapping[str, Sequence[float]], output: Path) -> Pairs:
    """One pair per combination of the swept values, each the content with its styles; the
    contact sheet is the content, then each result, in one row."""
    combos = _combinations(sweep)
    count = len(combos)
    return Pairs(
        np.repeat(inputs.content[None], count, axis=0),
        [inputs.styles] * count,
        sweep_paths(output, sweep),
        combos,
        {name: tuple(c[name] for c in combos) for name in sweep},
        lambda results: images.make_grid(np.concatenate([inputs.content[None], results]), ncols=count + 1),
    )


def plan(pairs: Pairs, config: StyleConfig, params: Any, source: str | None, mesh: Mesh, start: int = 0) -> str:
    """The line said before the first step: what will run, with what, where."""
    count, (h, w) = len(pairs.paths), pairs.contents.shape[1:3]
    what = f"stylising {w}x{h}" if count == 1 else f"stylising {count} pairs at {w}x{h}"
    if config.optimizer == "lbfgs":
        method = f"{config.steps} L-BFGS iterations ({config.lbfgs_step} line search)"
    else:
        method = f"{config.steps} Adam steps (lr {config.lr:g})"
    kind = weights.preprocessing_of(params)
    vgg19 = "random VGG19" if source == weights.RANDOM else {"caffe": "the original VGG19"}.get(kind, f"{kind} VGG19")
    device = mesh.devices.flat[0]
    where = f"{mesh.size} x {device.device_kind}" if mesh.size > 1 else device.device_kind
    weights_line = f"content weight {config.content_weight:g}, style weight {config.style_weight:g}"
    if pairs.style_masks is not None:
        weights_line += f", {len(pairs.style_masks)} styles in their masks"
    if pairs.content_mask is not None:
        weights_line += ", inside the content mask"
    resumed = f", from step {start}" if start else ""
    return f"{what}: {method}, {weights_line}, {vgg19}, on {where}{resumed}"


def speed_hint(config: StyleConfig) -> str:
    """What makes a long run shorter, for the line said when it will be long."""
    if config.optimizer == "adam":
        return "--preset fast (L-BFGS) reaches the loss of the seed's 2,000 Adam steps about 12x sooner"
    return f"a smaller --max-size is faster (steps take time in proportion to the pixels; now {config.max_size})"


def run_pairs(
    pairs: Pairs,
    params: Any,
    config: StyleConfig,
    output: Path,
    mesh: Mesh,
    metrics_path: Path | None = None,
    save_every: int | None = None,
    title: str = "",
    *,
    source: str | None = None,
    autosave: float = 0.0,
    record: Mapping[str, Any] | None = None,
    resumed: resume.Saved | None = None,
) -> str:
    """Runs the pairs in one compiled optimisation (split over `mesh`'s devices); writes each
    result, a batch's contact sheet, the loss plot (a batch's: the pairs' mean), the snapshots
    and the metrics log (one line per step and pair, naming a batch's pair). Returns the
    summary line.

    With `record` (`resume.describe` of this run) the work is kept as it goes: every `autosave`
    seconds and on Ctrl-C or SIGTERM, each picture so far (NAME.partial.EXT) and the state
    (`resume.state_path`), removed once the run ends; `resumed` continues a saved run.
    """
    at = stops(config, save_every)
    state_file = resume.state_path(output)

    def results(states: Any) -> np.ndarray:
        return loop.result_images(states, pairs.contents, config, pairs.content_mask)

    def snapshot(step: int, states: Any) -> None:
        for path, image in zip(pairs.paths, results(states)):
            images.save_image(_snapshot_path(path, step), image, config.bit_depth)

    def save(saved: resume.Saved, states: Any) -> None:
        assert record is not None
        for path, image in zip(pairs.paths, results(states)):
            images.save_image(resume.partial_path(path), image, config.bit_depth)
        resume.save(state_file, saved, record)

    def say(saved: resume.Saved) -> str:
        pictures = ", ".join(str(resume.partial_path(p)) for p in pairs.paths)
        return f"kept step {saved.step} of {config.steps} in {pictures}; the same command with --resume goes on"

    count, (h, w) = len(pairs.paths), pairs.contents.shape[1:3]
    labels = pairs.labels or None
    calls = loop.iterate(
        pairs.contents,
        pairs.styles,
        params,
        config,
        per_pair=pairs.per_pair,
        mesh=mesh,
        stops=at,
        init=pairs.init,
        resume=None if resumed is None else (resumed.step, resumed.leaves),
        style_masks=pairs.style_masks,
        content_mask=pairs.content_mask,
    )
    keep = None if record is None else Keep(save, autosave, say, resumed)
    desc = f"stylising {w}x{h}" if count == 1 else f"stylising {count} pairs at {w}x{h}"
    weight = np.asarray(pairs.per_pair.get("content_weight", config.content_weight))
    run = optimise(
        calls,
        config,
        desc,
        labels,
        at,
        snapshot,
        content_weight=weight,
        announce=plan(pairs, config, params, source, mesh, resumed.step if resumed else 0),
        hint=speed_hint(config),
        keep=keep,
    )
    finals = results(run.state)
    pictures = list(zip(pairs.paths, finals))
    if pairs.sheet is not None:
        pictures.append((batch.contact_sheet_path(output), pairs.sheet(finals)))
    rows, writes = _metrics_writes(run, metrics_path, labels)
    written = _write_results(
        pictures, [lambda: _save_plot(output, run.history, title), *writes], rows, config.bit_depth
    )
    for path in [state_file, *(resume.partial_path(p) for p in pairs.paths)]:
        path.unlink(missing_ok=True)
    return summary(pairs.contents.shape[1:], run, config, written, count)
