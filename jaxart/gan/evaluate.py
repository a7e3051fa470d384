"""GAN evaluation: a judge's view of generated samples against the test set, as numbers and a PNG.

`evaluate_samples` turns images into a flat dict of metrics (see `jaxart.gan.metrics`);
`evaluate_generator` draws the samples from a generator, appends the record to
`<workdir>/eval.jsonl` (one JSON object a line, so `train --eval-every` accumulates the
metrics over training in the same file) and draws `<workdir>/eval.png`: a sample grid beside
the histogram of predicted classes. `sample_batches` draws them in calls of one size, which
`python -m jaxart.gan sample` shares, with `check_sample_output` to refuse what it cannot write.
"""

from __future__ import annotations

import bisect
import dataclasses
import io
import math
import os
import shutil
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

from jaxart import data
from jaxart.data import IMAGE_SHAPE, NUM_CLASSES
from jaxart.errors import ConfigError, InputError, option
from jaxart.files import append_json_line, nearest_existing
from jaxart.gan import metrics
from jaxart.gan.judge import Judge, JudgeConfig, Log, load_or_train_judge, log_stderr
from jaxart.gan.train import GANState, class_cycle, sample_state
from jaxart.gan.workdir import EVAL_FIGURE, EVAL_FILE
from jaxart.images import make_grid, to_float

REPORT_FILE = EVAL_FILE
FIGURE_FILE = EVAL_FIGURE
_CLASS_NAMES = {
    "fashion-mnist": ("T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Boot"),
}


def has_class_names(dataset: str) -> bool:
    """Whether a data set's classes have names other than their digits."""
    return dataset in _CLASS_NAMES


def class_names(dataset: str) -> tuple[str, ...]:
    """The names of a data set's classes 0..9: Fashion-MNIST's garments, else the digits."""
    return _CLASS_NAMES.get(dataset, tuple(map(str, range(NUM_CLASSES))))


# (key, n) -> n images, float (n, 28, 28) or (n, 784) in [0, 1].
SampleFn = Callable[[jax.Array, int], Any]


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """How many samples, in what batches, and the metrics' settings."""

    num_samples: int = 10_000
    sample_batch_size: int = 1_000  # every call to the generator asks for this many (one compile)
    inception_splits: int = 10
    pr_k: int = 3  # neighbours for precision/recall; 0 skips them
    pr_samples: int = 5_000  # precision/recall use this many of each set (cost is quadratic)
    grid_samples: int = 100
    # Of the samples' noise (`evaluation_key`) and the precision/recall subsample; never a run's own keys.
    seed: int = 0
    raw: bool = False  # of a train state: its trained generator, not its moving average

    @property
    def min_samples(self) -> int:
        """The fewest samples the metrics are defined for."""
        return max(self.inception_splits, self.pr_k + 1, 2)


def eval_config(num_samples: int, precision_recall: bool = True, what: str = "`num_samples`") -> EvalConfig:
    """The EvalConfig for `num_samples` samples; ConfigError naming the option `what` if they are too few."""
    config = EvalConfig(
        num_samples=num_samples,
        sample_batch_size=min(num_samples, EvalConfig.sample_batch_size),
        pr_k=EvalConfig.pr_k if precision_recall else 0,
    )
    if num_samples < config.min_samples:
        raise ConfigError(
            f"{what} {num_samples} is too few: the evaluation needs at least {config.min_samples} samples"
        )
    return config


class Reference(NamedTuple):
    """The judge's view of the real test set: features (N, H) float32 and their Gaussian fit."""

    dataset: str
    checksum: str
    features: np.ndarray
    mu: np.ndarray
    sigma: np.ndarray


def reference_stats(judge: Judge, test: data.Dataset, dataset: str) -> Reference:
    """Embeds the real test set, once per evaluation run (seconds on CPU for 10,000 images)."""
    features = judge.embed(to_float(test.images)).features
    return Reference(dataset, test.checksum(), features, *metrics.gaussian_stats(features))


def load_judge_and_reference(
    source: str = "mnist", judge_config: JudgeConfig = JudgeConfig(), log: Log = log_stderr
) -> tuple[Judge, Reference]:
    """The cached (or freshly trained) judge for `source` and its view of the test set."""
    judge = load_or_train_judge(source, judge_config, log=log)
    return judge, reference_stats(judge, data.load(source, "test"), source)


def as_images(samples: Any) -> np.ndarray:
    """Generator output (N, 28, 28), (N, 784) or (N, 28, 28, 1) -> float32 (N, 28, 28).

    Raises ValueError for other shapes, non-finite values or values outside [0, 1]
    (a generator emitting [-1, 1] is a wiring bug the metrics would silently hide).
    """
    images = np.asarray(samples, dtype=np.float32)
    if images.shape[1:] not in ((math.prod(IMAGE_SHAPE),), IMAGE_SHAPE, (*IMAGE_SHAPE, 1)):
        raise ValueError(f"expected samples (N, 28, 28) or (N, 784), got {images.shape}")
    images = images.reshape(-1, *IMAGE_SHAPE)
    if not np.isfinite(images).all():
        raise ValueError("samples contain NaN or infinity")
    if images.size and (images.min() < 0.0 or images.max() > 1.0):
        raise ValueError(f"samples must lie in [0, 1], got [{images.min():.3g}, {images.max():.3g}]")
    return images


def _subsample(features: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    if len(features) <= n:
        return features
    return features[np.sort(rng.choice(len(features), n, replace=False))]


def evaluate_samples(
    images: Any,
    judge: Judge,
    reference: Reference,
    config: EvalConfig = EvalConfig(),
    labels: np.ndarray | None = None,
) -> dict[str, Any]:
    """Metrics of generated images against the reference (test set), as a JSON-ready dict.

    Keys: num_samples; fcd (Frechet distance in the judge's penultimate features);
    inception_score and inception_score_std (over `config.inception_splits` parts);
    class_histogram (fraction per predicted class), kl_to_uniform (nats; log 10 = 2.30 when
    one class takes everything), missing_classes (under half their uniform share) and
    mode_collapse (any missing); precision and recall (k-NN, unless `config.pr_k` is 0).
    With `labels`, the class each image was asked for (N,) of a conditional generator, also
    class_accuracy (per class, the share classified as asked; None for a class not asked) and
    min_class_accuracy (the lowest of them).
    """
    images = as_images(images)
    if len(images) < config.min_samples:
        raise InputError(f"evaluation needs at least {config.min_samples} samples, got {len(images)}")
    embedding = judge.embed(images)
    mu, sigma = metrics.gaussian_stats(embedding.features)
    score, score_std = metrics.inception_score(embedding.probs, config.inception_splits)
    coverage = metrics.class_coverage(embedding.probs)
    result = {
        "num_samples": len(images),
        "fcd": metrics.frechet_distance(mu, sigma, reference.mu, reference.sigma),
        "inception_score": score,
        "inception_score_std": score_std,
        "class_histogram": [round(float(h), 6) for h in coverage.histogram],
        "kl_to_uniform": coverage.kl_to_uniform,
        "missing_classes": coverage.missing,
        "mode_collapse": coverage.mode_collapse,
    }
    if labels is not None:
        accuracy = metrics.class_accuracy(embedding.probs, labels)
        result["class_accuracy"] = [None if np.isnan(a) else round(float(a), 6) for a in accuracy]
        result["min_class_accuracy"] = float(np.nanmin(accuracy))
    if config.pr_k:
        rng = np.random.default_rng(config.seed)
        real = _subsample(reference.features, config.pr_samples, rng)
        fake = _subsample(embedding.features, config.pr_samples, rng)
        result["precision"], result["recall"] = metrics.precision_recall(real, fake, config.pr_k)
    return result


def sample_batches(sample_fn: SampleFn, key: jax.Array, num_samples: int, batch_size: int) -> Iterator[np.ndarray]:
    """num_samples generator outputs, in calls of exactly `batch_size` (one compilation; the
    surplus of the last is dropped), each a host array as it is drawn: the device's memory does
    not grow with num_samples, nor the host's unless the caller keeps them."""
    for i, k in enumerate(jax.random.split(key, -(-num_samples // batch_size))):
        yield np.asarray(sample_fn(k, batch_size))[: num_samples - i * batch_size]


def asked_classes(config: EvalConfig) -> np.ndarray:
    """The classes a conditional generator is asked for in `sample_images`' draws of
    config.num_samples images, when each call of config.sample_batch_size takes `class_cycle`'s."""
    calls = -(-config.num_samples // config.sample_batch_size)
    return np.tile(class_cycle(config.sample_batch_size), calls)[: config.num_samples]


def sample_images(sample_fn: SampleFn, key: jax.Array, num_samples: int, batch_size: int) -> np.ndarray:
    """Draws num_samples images in calls of exactly `batch_size` (the surplus is dropped)."""
    return np.concatenate([as_images(b) for b in sample_batches(sample_fn, key, num_samples, batch_size)])


def npy_header(num: int) -> bytes:
    """The .npy header of `num` float32 images (num, 28, 28), to which their bytes append."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header,
        {
            "descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)),
            "fortran_order": False,
            "shape": (num, *IMAGE_SHAPE),
        },
    )
    return header.getvalue()


def _grid_pixels(num: int) -> int:
    """The pixels of `make_grid`'s picture of `num` >= 1 images (its default layout and padding)."""
    h, w = IMAGE_SHAPE
    cols = int(np.ceil(np.sqrt(num)))
    return (-(-num // cols) * (h + 2) + 2) * (cols * (w + 2) + 2)


def _size(n: float) -> str:
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{math.ceil(n / 2**10)} KiB"


def check_sample_output(path: Path, num: int) -> None:
    """Refuses, before any work, `num` images that `path` cannot hold, naming the most it can: a
    .npy (float32) larger than the free space on its disk, or a .png grid over Pillow's
    MAX_IMAGE_PIXELS, which Pillow and jaxart refuse to read back (a decompression-bomb guard)."""
    from PIL import Image  # deferred: only a .png needs it

    if path.suffix.lower() == ".png":
        limit = Image.MAX_IMAGE_PIXELS or math.inf

        def fits(n: int) -> bool:
            return _grid_pixels(n) <= limit

        if fits(num):
            return
        why = (
            f"a grid of {_grid_pixels(num):,} pixels, over the {limit:,} Pillow reads back (a decompression-bomb guard)"
        )
    else:
        folder = nearest_existing(path.parent)
        free = shutil.disk_usage(folder).free
        image_bytes = math.prod(IMAGE_SHAPE) * np.dtype(np.float32).itemsize

        def fits(n: int) -> bool:
            return len(npy_header(n)) + n * image_bytes <= free

        if fits(num):
            return
        need = len(npy_header(num)) + num * image_bytes
        why = f"{_size(need)}, over the {_size(free)} free in {str(folder)!r}"
    # range(1, num) holds the counts below `num`, which fit up to the first that does not.
    largest = bisect.bisect_left(range(1, num), True, key=lambda n: not fits(n))
    raise InputError(f"{option('num')} {num} images make {why}; at most {largest} fit in a {path.suffix.lower()}")


def _save_eval_figure(
    path: str | os.PathLike,
    images: np.ndarray,
    result: Mapping[str, Any],
    dataset: str = "mnist",
    title: str = "",
) -> Path:
    """PNG: a grid of `images` (N, 28, 28) beside the predicted-class histogram of `result`."""
    from jaxart.plots import figure, save_figure  # deferred: matplotlib takes a second to import

    histogram = np.asarray(result["class_histogram"])
    k = len(histogram)
    fig = figure(figsize=(10, 4.6), layout="constrained")
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.2]})
    left.imshow(make_grid(images), cmap="gray", vmin=0.0, vmax=1.0)
    left.set_axis_off()
    left.set_title(f"{len(images)} samples")
    colours = ["tab:red" if c in result["missing_classes"] else "tab:blue" for c in range(k)]
    right.bar(range(k), histogram, color=colours)
    right.axhline(1.0 / k, color="black", linestyle="--", linewidth=1, label="uniform")
    right.axhline(metrics.MIN_SHARE_OF_UNIFORM / k, color="tab:red", linestyle=":", linewidth=1, label="missing below")
    right.set_xticks(range(k), class_names(dataset), rotation=45 if has_class_names(dataset) else 0)
    for c in result["missing_classes"]:
        right.get_xticklabels()[c].set_color("tab:red")
    right.set_ylabel("fraction of samples")
    missing = f", missing {result['missing_classes']}" if result["missing_classes"] else ""
    right.set_title(f"predicted classes: KL to uniform {result['kl_to_uniform']:.3f}{missing}")
    if "class_accuracy" in result:
        asked = right.twinx()
        accuracy = [np.nan if a is None else a for a in result["class_accuracy"]]
        asked.plot(range(k), accuracy, "o", color="tab:orange", label="classified as asked (right axis)")
        asked.set_ylim(0, 1.05)
        asked.set_ylabel(f"share classified as asked (lowest {result['min_class_accuracy']:.1%})")
        # Below the axes: above, the dots near 1 and the bars near 1/K would hide it.
        handles = [h for ax in (right, asked) for h in ax.get_legend_handles_labels()[0]]
        right.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3, fontsize=8)
    else:
        right.legend(loc="upper right", fontsize=8)
    summary = f"FCD {result['fcd']:.2f}   score {result['inception_score']:.2f}"
    if "precision" in result:
        summary += f"   precision {result['precision']:.2f}   recall {result['recall']:.2f}"
    fig.suptitle(f"{title}   {summary}" if title else summary)
    return save_figure(path, fig)


def evaluate_generator(
    sample_fn: SampleFn,
    key: jax.Array,
    workdir: str | os.PathLike,
    judge: Judge,
    reference: Reference,
    config: EvalConfig = EvalConfig(),
    step: int | None = None,
    figure: str | None = FIGURE_FILE,
    generator: str | None = None,
    labels: np.ndarray | None = None,
) -> dict[str, Any]:
    """Samples a generator, measures it, appends the record to workdir/eval.jsonl and draws the PNG.

    Args:
      sample_fn: (key, n) -> n images in [0, 1], (n, 28, 28) or (n, 784); always called with
        n = config.sample_batch_size.
      key: PRNG key for sampling.
      workdir: an existing folder.
      step: the training step evaluated, recorded when given.
      figure: the PNG's file name in workdir (None: no figure).
      generator: which generator of a run ('ema' or 'raw'), recorded when given.
      labels: of a conditional generator, the class each of the config.num_samples images is
        asked for, in the order `sample_fn` draws them (see `evaluate_samples`).

    Returns the record written: `evaluate_samples`'s metrics plus dataset, judge_test_accuracy,
    judge_train_checksum, reference_checksum, and step and generator (when given).
    """
    workdir = Path(workdir)
    if not workdir.is_dir():
        raise InputError(f"workdir {str(workdir)!r} does not exist")
    images = sample_images(sample_fn, key, config.num_samples, config.sample_batch_size)
    record: dict[str, Any] = {} if step is None else {"step": int(step)}
    if generator is not None:
        record["generator"] = generator
    record.update(evaluate_samples(images, judge, reference, config, labels))
    record.update(
        dataset=reference.dataset,
        judge_test_accuracy=judge.test_accuracy,
        judge_train_checksum=judge.train_checksum,
        reference_checksum=reference.checksum,
    )
    append_json_line(workdir / REPORT_FILE, record)
    if figure:
        title = f"step {step}" if step is not None else ""
        _save_eval_figure(workdir / figure, images[: config.grid_samples], record, reference.dataset, title)
    return record


def evaluate_state(
    state: GANState,
    workdir: str | os.PathLike,
    judge: Judge,
    reference: Reference,
    config: EvalConfig = EvalConfig(),
) -> dict[str, Any]:
    """`evaluate_generator` on a train state's generator (its moving average unless `config.raw`;
    batch norm on its running averages), recording the state's step and which generator it was.
    A conditional generator is asked for each class in turn (`class_cycle` in every call), and
    judged on how many of its samples are of the class asked.

    The noise comes from `jax.random.key(config.seed)` alone: every evaluation of a run (and of
    every run) sees the same latent batches, and the run's own keys are never drawn from.
    """

    def sample_fn(key: jax.Array, n: int) -> jax.Array:
        return sample_state(state, key, n, config.raw)

    key = jax.random.key(config.seed)
    return evaluate_generator(
        sample_fn,
        key,
        workdir,
        judge,
        reference,
        config,
        step=int(state.step),
        generator=generator_name(state, config.raw),
        labels=asked_classes(config) if state.config.conditional else None,
    )


def generator_name(state: GANState, raw: bool) -> str:
    """'ema' or 'raw': which of a state's generators `sample_state(state, ..., raw)` draws from."""
    return "raw" if raw or state.g_ema is None else "ema"


def summary(record: Mapping[str, Any]) -> str:
    """One line of an evaluation record's main numbers."""
    line = (
        f"FCD {record['fcd']:.2f}, score {record['inception_score']:.2f}, KL to uniform {record['kl_to_uniform']:.3f}"
    )
    if record["missing_classes"]:
        line += f", missing classes {record['missing_classes']}"
    if "precision" in record:
        line += f", precision {record['precision']:.3f}, recall {record['recall']:.3f}"
    if "class_accuracy" in record:
        names = class_names(record.get("dataset", ""))
        worst = min((a, c) for c, a in enumerate(record["class_accuracy"]) if a is not None)[1]
        line += f", classified as asked: lowest {record['min_class_accuracy']:.1%} ({names[worst]})"
    if "generator" in record:
        line += f" ({record['generator']} generator)"
    return line
