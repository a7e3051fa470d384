"""The judge: a small convolutional classifier that jaxart trains itself, to measure GAN samples.

Its penultimate features give the Frechet distance (FCD) and precision/recall, its softmax
the Inception-style score and the class coverage (see `jaxart.gan.metrics`).

A judge is trained once per data set, deterministically from `JudgeConfig.seed`, and kept
as an orbax checkpoint beside `judge.json`, which records the sha256 of the training data,
the config and the test accuracy. The judges of MNIST and Fashion-MNIST ship with jaxart
(`weights/judge-<name>`, package data); one trained here (other data, another config) is
cached in the user's cache folder, `jaxart.cache.cache_dir("judges")`. `load_or_train_judge`
loads a judge whose checksum and config match, and trains one (saying why) otherwise.

`python -m jaxart.gan judge [--data mnist] [--retrain]` (re)trains and caches one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxart import cache, data
from jaxart.data import IMAGE_SHAPE, NUM_CLASSES
from jaxart.errors import InputError
from jaxart.images import to_float

_META_FILE = "judge.json"
_FORMAT = "jaxart-judge-1"  # the "format" field of judge.json

Params = Any
Log = Callable[[str], None]


def log_stderr(message: str) -> None:
    print(message, file=sys.stderr)


@dataclasses.dataclass(frozen=True)
class JudgeConfig:
    """Architecture and training of a judge; a cached judge is reused only under the same config."""

    widths: tuple[int, ...] = (32, 64, 128)  # 3x3 conv channels, each stage followed by 2x2 max-pool
    hidden: int = 128  # penultimate (feature) width
    dropout: float = 0.3  # before the last layer, in training only
    epochs: int = 4
    batch_size: int = 128
    learning_rate: float = 2e-3  # peak of a cosine one-cycle schedule
    weight_decay: float = 1e-4
    seed: int = 0
    eval_batch_size: int = 500  # fixed forward-pass batch (padded), so inference compiles once


class Classifier(nn.Module):
    """(N, 28, 28) images in [0, 1] -> logits (N, 10) and penultimate features (N, hidden)."""

    widths: Sequence[int]
    hidden: int
    dropout: float

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False) -> tuple[jax.Array, jax.Array]:
        x = images[..., None] - 0.5
        for width in self.widths:
            x = nn.relu(nn.Conv(width, (3, 3))(x))
            x = nn.max_pool(x, (2, 2), strides=(2, 2))  # 28 -> 14 -> 7 -> 3
        x = x.reshape(x.shape[0], -1)
        features = nn.relu(nn.Dense(self.hidden)(x))
        x = nn.Dropout(self.dropout, deterministic=not train)(features)
        return nn.Dense(NUM_CLASSES)(x), features


def _make_model(config: JudgeConfig) -> Classifier:
    return Classifier(widths=config.widths, hidden=config.hidden, dropout=config.dropout)


class Embedding(NamedTuple):
    """What the judge sees in N images: features (N, hidden) and class probabilities (N, 10), float32."""

    features: np.ndarray
    probs: np.ndarray


@dataclasses.dataclass(frozen=True)
class Judge:
    """A trained classifier and its provenance (`meta` is what `judge.json` holds)."""

    config: JudgeConfig
    params: Params
    meta: dict[str, Any]

    @property
    def test_accuracy(self) -> float:
        return float(self.meta["test_accuracy"])

    @property
    def train_checksum(self) -> str:
        return str(self.meta["train_checksum"])

    def embed(self, images: np.ndarray | jax.Array) -> Embedding:
        """Features and softmax of float (N, 28, 28) images in [0, 1], in fixed-size padded batches."""
        return embed(_make_model(self.config), self.params, images, self.config.eval_batch_size)

    def accuracy(self, dataset: data.Dataset) -> float:
        """Fraction of `dataset` classified correctly."""
        probs = self.embed(to_float(dataset.images)).probs
        return float(np.mean(probs.argmax(axis=1) == dataset.labels))


@jax.jit(static_argnums=0)
def _forward(model: Classifier, params: Params, images: jax.Array) -> tuple[jax.Array, jax.Array]:
    outputs: Any = model.apply({"params": params}, images)  # (logits, features)
    logits, features = outputs
    return features, jax.nn.softmax(logits)


def embed(model: Classifier, params: Params, images: np.ndarray | jax.Array, batch_size: int) -> Embedding:
    """Runs `model` over images (N, 28, 28) in batches of exactly `batch_size` (the last zero-padded)."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
        raise ValueError(f"expected images (N, 28, 28), got {images.shape}")
    features, probs = [], []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        padded = np.pad(chunk, ((0, batch_size - len(chunk)), (0, 0), (0, 0)))
        f, p = jax.device_get(_forward(model, params, padded))
        features.append(f[: len(chunk)])
        probs.append(p[: len(chunk)])
    if not features:
        return Embedding(np.zeros((0, model.hidden), np.float32), np.zeros((0, NUM_CLASSES), np.float32))
    return Embedding(np.concatenate(features), np.concatenate(probs))


def _train_params(train: data.Dataset, config: JudgeConfig, log: Log = log_stderr) -> Params:
    """Trains a classifier on `train` with Adam(W) and a one-cycle cosine schedule, deterministically.

    Each epoch visits a fresh permutation in full batches (the remainder is dropped, so the
    step compiles once; a different remainder is dropped each epoch).
    """
    data.check_labels(train, "the training set")
    steps_per_epoch = len(train.images) // config.batch_size
    if steps_per_epoch == 0:
        raise InputError(f"the training set has fewer than {config.batch_size} images")
    model = _make_model(config)
    init_key, shuffle_key, dropout_key = jax.random.split(jax.random.key(config.seed), 3)
    params = model.init(init_key, jnp.zeros((1, *IMAGE_SHAPE)))["params"]
    schedule = optax.cosine_onecycle_schedule(steps_per_epoch * config.epochs, config.learning_rate)
    tx = optax.adamw(schedule, weight_decay=config.weight_decay)
    opt_state = tx.init(params)

    @jax.jit
    def step(params, opt_state, images, labels, key):
        def loss_fn(params):
            logits, _ = model.apply({"params": params}, images, train=True, rngs={"dropout": key})
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    images = jnp.asarray(to_float(train.images))
    labels = jnp.asarray(train.labels, dtype=jnp.int32)
    for epoch in range(config.epochs):
        order = np.asarray(jax.random.permutation(jax.random.fold_in(shuffle_key, epoch), len(images)))
        start, losses = time.perf_counter(), []
        for i in range(steps_per_epoch):
            idx = order[i * config.batch_size : (i + 1) * config.batch_size]
            key = jax.random.fold_in(dropout_key, epoch * steps_per_epoch + i)
            params, opt_state, loss = step(params, opt_state, images[idx], labels[idx], key)
            losses.append(loss)
        log(
            f"judge epoch {epoch + 1}/{config.epochs}: loss {float(np.mean(jax.device_get(losses))):.4f} "
            f"({time.perf_counter() - start:.0f} s)"
        )
    return params


def _config_json(config: JudgeConfig) -> dict[str, Any]:
    """The config as it reads back from JSON (tuples become lists), for comparing with a cache."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def shipped_dir(name: str) -> Path:
    """The judge shipped with jaxart for a named data set (read-only package data)."""
    return cache.packaged("weights", f"judge-{name}")


def default_cache_dir(source: str, train_checksum: str) -> Path:
    """Where a judge trained here is cached: `judge-<name>` for a named data set, else
    `judge-<first 12 hex digits of the data's checksum>`, in the user's cache folder."""
    name = source if source in data.NAMES else train_checksum[:12]
    return cache.cache_dir("judges", f"judge-{name}")


def candidate_dirs(source: str, train_checksum: str) -> list[Path]:
    """Folders that may hold a judge for this data, in the order they are tried: the shipped
    judges (the source's own first; a folder holding MNIST finds MNIST's), then the cache."""
    names = sorted(data.NAMES, key=lambda name: name != source)
    return [*(shipped_dir(name) for name in names), default_cache_dir(source, train_checksum)]


def read_meta(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The judge.json of a judge folder, or None when missing or unreadable."""
    return cache.read_meta(folder, _META_FILE, _FORMAT)


def save_judge(folder: str | os.PathLike, judge: Judge) -> Path:
    """Writes `judge` as an orbax checkpoint plus judge.json into `folder`, replacing a judge
    there whole; any other folder that is not empty is refused (InputError)."""
    return cache.save_tree(folder, judge.params, judge.meta, _META_FILE, _FORMAT)


def _check_replaceable(folder: Path) -> None:
    """Raises InputError unless `folder` is absent, empty or a judge cache: never replace other files."""
    if folder.exists() and read_meta(folder) is None and (not folder.is_dir() or any(folder.iterdir())):
        raise InputError(f"{str(folder)!r} exists and is not a judge cache; refusing to replace it")


def load_judge(folder: str | os.PathLike) -> Judge:
    """Loads a judge written by `save_judge`. Raises InputError if the folder is not a readable judge."""
    folder = Path(folder).expanduser()
    meta = read_meta(folder)
    if meta is None:
        raise InputError(f"{str(folder)!r} is not a judge cache (no readable {_META_FILE})")
    config_fields = {f.name for f in dataclasses.fields(JudgeConfig)}
    recorded: dict[str, Any] = meta.get("config", {})
    if set(recorded) != config_fields:
        raise InputError(f"judge cache {str(folder)!r} records a config of another jaxart version")
    values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in recorded.items()}
    config = JudgeConfig(**values)
    target = jax.eval_shape(_make_model(config).init, jax.random.key(0), jnp.zeros((1, *IMAGE_SHAPE)))["params"]
    params, meta = cache.load_tree(folder, target, _META_FILE, _FORMAT, "judge cache")
    return Judge(config, params, meta)


def train_judge(source: str, train: data.Dataset, test: data.Dataset, config: JudgeConfig, log: Log) -> Judge:
    """Trains a judge on `train` and measures it on `test`; returns it with its metadata."""
    start = time.perf_counter()
    params = _train_params(train, config, log)
    data.check_labels(test, "the test set")
    seconds = time.perf_counter() - start
    meta = {
        "format": _FORMAT,
        "dataset": source,
        "train_checksum": train.checksum(),
        "test_checksum": test.checksum(),
        "train_size": len(train.labels),
        "test_size": len(test.labels),
        "config": _config_json(config),
        "num_params": int(sum(np.size(p) for p in jax.tree.leaves(params))),
        "train_seconds": round(seconds, 1),
        "versions": {"jax": jax.__version__, "flax": flax.__version__},
        "test_accuracy": Judge(config, params, {}).accuracy(test),
        cache.CHECKSUM: cache.tree_checksum(params),  # as judge.json will hold it, and a loaded judge's meta
    }
    return Judge(config, params, meta)


def load_or_train_judge(
    source: str = "mnist",
    config: JudgeConfig = JudgeConfig(),
    cache_dir: str | os.PathLike | None = None,
    retrain: bool = False,
    log: Log = log_stderr,
) -> Judge:
    """The judge for a data source: from its cache when the training data's checksum and the
    config match, else trained (a few minutes on CPU), cached and announced through `log`.

    Args:
      source: 'mnist', 'fashion-mnist' or a folder of IDX files (see `jaxart.data`).
      cache_dir: the judge's folder; default: the shipped judges (see `candidate_dirs`),
        then `default_cache_dir(source, checksum)`, which a judge trained here goes to.
      retrain: train even when the cache is valid.
    """
    train = data.load(source, "train")
    checksum = train.checksum()
    folders = [Path(cache_dir)] if cache_dir is not None else candidate_dirs(source, checksum)
    reasons = []
    for folder in folders:
        meta = read_meta(folder)
        if meta is None:
            reasons.append(f"no judge cached in {folder}")
        elif not cache.is_current(meta):
            reasons.append(f"the judge in {folder} was cached by an earlier jaxart version, without a checksum")
        elif meta.get("train_checksum") != checksum:
            recorded = str(meta.get("train_checksum"))[:12]
            reasons.append(f"the judge in {folder} was trained on other data ({recorded}, not {checksum[:12]})")
        elif meta.get("config") != _config_json(config):
            reasons.append(f"the judge in {folder} was trained with another config")
        elif not retrain:
            return load_judge(folder)
    folder = folders[-1]  # a shipped judge is never replaced: training goes to the cache
    _check_replaceable(folder)  # before minutes of training, not after
    log(f"training a {source} judge: {'retraining was asked for' if retrain else reasons[-1]}")
    judge = train_judge(source, train, data.load(source, "test"), config, log)
    folder.parent.mkdir(parents=True, exist_ok=True)
    save_judge(folder, judge)
    log(f"judge test accuracy {judge.test_accuracy:.2%}, cached in {folder}")
    return judge
