"""The judge: a small convolutional classifier that jaxart trains itself, to measure GAN samples.

Its penultimate features give the Frechet distance (FCD) and precision/recall, its softmax
the Inception-style score and the class coverage (see `jaxart.gan.metrics`).

A judge is trained once per data set, deterministically from `JudgeConfig.seed`, and cached
as an orbax checkpoint in `weights/judge-<data>/` beside `judge.json`, which records the
sha256 of the training data, the config and the test accuracy. `load_or_train_judge` loads
the cache when both the checksum and the config match, and retrains (saying why) otherwise.

`python -m jaxart.gan.judge [--data mnist]` (re)trains and caches one.
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

from jaxart import cli, data
from jaxart.errors import InputError
from jaxart.files import replace_folder
from jaxart.weights import weights_dir

NUM_CLASSES = 10
IMAGE_SHAPE = (28, 28)
_PARAMS_DIR = "params"
_META_FILE = "judge.json"
_FORMAT = "jaxart-judge-1"

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


def make_model(config: JudgeConfig) -> Classifier:
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
        return embed(make_model(self.config), self.params, images, self.config.eval_batch_size)

    def accuracy(self, dataset: data.Dataset) -> float:
        """Fraction of `dataset` classified correctly."""
        probs = self.embed(to_float(dataset.images)).probs
        return float(np.mean(probs.argmax(axis=1) == dataset.labels))


def to_float(images: np.ndarray) -> np.ndarray:
    """uint8 (N, 28, 28) -> float32 in [0, 1], the judge's input."""
    return np.asarray(images, dtype=np.float32) / 255.0


@jax.jit(static_argnums=0)
def _forward(model: Classifier, params: Params, images: jax.Array) -> tuple[jax.Array, jax.Array]:
    logits, features = model.apply({"params": params}, images)
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


def check_labels(dataset: data.Dataset, what: str) -> None:
    if len(dataset.labels) == 0 or int(dataset.labels.max()) >= NUM_CLASSES:
        raise InputError(f"{what} must hold images labelled 0..{NUM_CLASSES - 1}")


def train_params(train: data.Dataset, config: JudgeConfig, log: Log = log_stderr) -> Params:
    """Trains a classifier on `train` with Adam(W) and a one-cycle cosine schedule, deterministically.

    Each epoch visits a fresh permutation in full batches (the remainder is dropped, so the
    step compiles once; a different remainder is dropped each epoch).
    """
    check_labels(train, "the training set")
    steps_per_epoch = len(train.images) // config.batch_size
    if steps_per_epoch == 0:
        raise InputError(f"the training set has fewer than {config.batch_size} images")
    model = make_model(config)
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


def default_cache_dir(source: str, train_checksum: str) -> Path:
    """`weights/judge-<name>` for a named data set; for a folder, the named cache trained on the
    same data if there is one (so a folder holding MNIST reuses MNIST's judge), else
    `weights/judge-<first 12 hex digits of the checksum>`."""
    if source in data.KNOWN_FOLDERS:
        return weights_dir() / f"judge-{source}"
    for name in data.KNOWN_FOLDERS:
        meta = read_meta(weights_dir() / f"judge-{name}")
        if meta is not None and meta.get("train_checksum") == train_checksum:
            return weights_dir() / f"judge-{name}"
    return weights_dir() / f"judge-{train_checksum[:12]}"


def read_meta(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The judge.json of a cache folder, or None when missing or unreadable."""
    try:
        meta = json.loads((Path(folder) / _META_FILE).read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("format") == _FORMAT else None


def check_replaceable(folder: Path) -> None:
    """Raises InputError unless `folder` is absent, empty or a judge cache: never replace other files."""
    if folder.exists() and read_meta(folder) is None and (not folder.is_dir() or any(folder.iterdir())):
        raise InputError(f"{str(folder)!r} exists and is not a judge cache; refusing to replace it")


def save_judge(folder: str | os.PathLike, judge: Judge) -> Path:
    """Writes `judge` as an orbax checkpoint plus judge.json into `folder`, replacing it whole."""
    import orbax.checkpoint as ocp  # deferred: only caching needs orbax

    folder = Path(folder).expanduser().resolve()
    check_replaceable(folder)

    def write(tmp: Path) -> None:
        with ocp.StandardCheckpointer() as ckptr:
            ckptr.save(tmp / _PARAMS_DIR, jax.tree.map(np.asarray, judge.params))
            ckptr.wait_until_finished()
        (tmp / _META_FILE).write_text(json.dumps(judge.meta, indent=2) + "\n")

    return replace_folder(folder, write)


def load_judge(folder: str | os.PathLike) -> Judge:
    """Loads a judge written by `save_judge`. Raises InputError if the folder is not a readable cache."""
    import orbax.checkpoint as ocp  # deferred: only caching needs orbax

    folder = Path(folder).expanduser().resolve()
    meta = read_meta(folder)
    if meta is None or not (folder / _PARAMS_DIR).is_dir():
        raise InputError(f"{str(folder)!r} is not a judge cache (no {_META_FILE} and {_PARAMS_DIR}/)")
    config_fields = {f.name for f in dataclasses.fields(JudgeConfig)}
    recorded = meta.get("config", {})
    if set(recorded) != config_fields:
        raise InputError(f"judge cache {str(folder)!r} records a config of another jaxart version")
    config = JudgeConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in recorded.items()})
    dummy = jnp.zeros((1, *IMAGE_SHAPE))
    target = jax.eval_shape(make_model(config).init, jax.random.key(0), dummy)["params"]
    try:
        with ocp.StandardCheckpointer() as ckptr:
            params = ckptr.restore(folder / _PARAMS_DIR, target)
    except Exception as e:  # orbax raises a variety of errors on damaged checkpoints
        raise InputError(f"judge cache {str(folder)!r} is unreadable ({str(e)[:160]}); delete it to retrain") from None
    return Judge(config, params, meta)


def train_judge(source: str, train: data.Dataset, test: data.Dataset, config: JudgeConfig, log: Log) -> Judge:
    """Trains a judge on `train` and measures it on `test`; returns it with its metadata."""
    start = time.perf_counter()
    params = train_params(train, config, log)
    check_labels(test, "the test set")
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
      cache_dir: the cache folder; default `default_cache_dir(source, checksum)`.
      retrain: train even when the cache is valid.
    """
    train = data.load(source, "train")
    checksum = train.checksum()
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir(source, checksum)
    meta = read_meta(folder)
    if meta is None:
        reason = f"no judge cached in {folder}"
    elif meta.get("train_checksum") != checksum:
        recorded = str(meta.get("train_checksum"))[:12]
        reason = f"the judge in {folder} was trained on other data ({recorded}, not {checksum[:12]})"
    elif meta.get("config") != _config_json(config):
        reason = f"the judge in {folder} was trained with another config"
    elif retrain:
        reason = "retraining was asked for"
    else:
        return load_judge(folder)
    check_replaceable(folder)  # before minutes of training, not after
    log(f"training a {source} judge: {reason}")
    judge = train_judge(source, train, data.load(source, "test"), config, log)
    folder.parent.mkdir(parents=True, exist_ok=True)
    save_judge(folder, judge)
    log(f"judge test accuracy {judge.test_accuracy:.2%}, cached in {folder}")
    return judge


def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.ArgumentParser(
        prog="python -m jaxart.gan.judge",
        description="Train (or load) and cache the classifier that judges GAN samples.",
    )
    parser.add_argument("--data", default="mnist", help="'mnist', 'fashion-mnist' or a folder of IDX files")
    parser.add_argument("--retrain", action="store_true", help="train even when a valid cache exists")
    args = parser.parse_args(argv)
    judge = load_or_train_judge(args.data, retrain=args.retrain)
    print(f"{args.data} judge: test accuracy {judge.test_accuracy:.2%}, trained on data {judge.train_checksum[:12]}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
