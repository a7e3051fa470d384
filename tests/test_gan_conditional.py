"""The class-conditional GAN: its models against NumPy, the labels through a step, sampling by
class, the per-class evaluation, and the commands (resume, --runs, --devices, --digit)."""

from __future__ import annotations

import dataclasses
import gzip
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import FIXTURE, assert_same_bits
from test_gan_cli import run_cli
from test_gan_scale import TOLERANCE

from jaxart import cli, data
from jaxart.distributed import host_devices_env
from jaxart.errors import ConfigError, InputError
from jaxart.files import read_json_lines
from jaxart.gan import GANConfig, init_state, run_keys, sample, sample_state, train_step
from jaxart.gan import __main__ as gan_main
from jaxart.gan import evaluate as gan_evaluate
from jaxart.gan.__main__ import _class_index
from jaxart.gan.checkpoint import (
    MODEL_FORMAT,
    STATE_FORMAT,
    _config_from_meta,
    check_resumable,
    load_latest,
    load_latest_run,
    run_meta,
)
from jaxart.gan.config import as_json
from jaxart.gan.metrics import class_accuracy
from jaxart.gan.models import class_weight, hidden_dim, make_models
from jaxart.gan.train import class_cycle, class_loss, discriminator_loss, generator_loss, sample_labels

ROOT = Path(__file__).resolve().parent.parent
CONFIG = GANConfig(conditional=True, hidden_dim=32, latent_dim=8)
# With a class loss, so the commands' tests cover it too.
CONDITIONAL = ["--conditional", "--class-weight", "0.5"]
FLAGS = ["--data", FIXTURE, *CONDITIONAL, "--hidden-dim", "32", "--latent-dim", "8", "--steps-per-call", "10"]
LOSSES = ("d_loss", "g_loss", "d_x", "d_g_z")


@pytest.fixture(scope="module")
def fixture_data() -> data.Dataset:
    return data.load(str(FIXTURE))


def _trained_embeddings(d_params):
    """D's parameters with random class embeddings in place of its initial ones."""
    embedding = d_params["Embed_0"]["embedding"]
    random = jax.random.normal(jax.random.key(7), embedding.shape) * 0.1
    return {**d_params, "Embed_0": {"embedding": random}}


def _leaky(x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, x, 0.2 * x)


def _dense(params, x: np.ndarray) -> np.ndarray:
    return x @ np.asarray(params["kernel"], np.float64) + np.asarray(params["bias"], np.float64)


def test_mlp_models_are_the_numpy_conditional_networks():
    """G: the one-hot label beside the noise and each hidden layer (Mirza & Osindero); D: the
    unconditional logit plus
    the label's embedding dotted with the last hidden layer (a projection discriminator), in
    float64 against the float32 modules."""
    generator, discriminator = make_models(CONFIG.static)
    rng = np.random.default_rng(0)
    z = rng.standard_normal((6, CONFIG.latent_dim)).astype(np.float32)
    labels = np.array([0, 3, 3, 7, 9, 1], np.int32)
    images = rng.random((6, 28, 28)).astype(np.float32)
    state = init_state(run_keys(0).init, CONFIG)
    # The MLP's class embeddings start at zero (D starts unconditional); trained ones are not.
    assert not np.any(state.d_params["Embed_0"]["embedding"])
    g, d = state.g_params, _trained_embeddings(state.d_params)

    one_hot = np.eye(10)[labels]
    x = np.concatenate([z, one_hot], axis=1)
    x = np.concatenate([np.maximum(_dense(g["Dense_0"], x), 0), one_hot], axis=1)
    x = np.concatenate([np.maximum(_dense(g["Dense_1"], x), 0), one_hot], axis=1)
    expected_images = (1 / (1 + np.exp(-_dense(g["Dense_2"], x)))).reshape(6, 28, 28)
    actual_images = generator.apply({"params": g}, z, labels, train=False)
    np.testing.assert_allclose(actual_images, expected_images, rtol=1e-5, atol=1e-6)

    h = _leaky(_dense(d["Dense_1"], _leaky(_dense(d["Dense_0"], images.reshape(6, -1)))))
    embedding = np.asarray(d["Embed_0"]["embedding"], np.float64)
    expected_logits = _dense(d["Dense_2"], h) + h @ embedding.T  # (6, 10): column c for class c
    scores = discriminator.apply({"params": d}, images, train=False)
    assert scores.logits.shape == (6, 10)
    np.testing.assert_allclose(scores.logits, expected_logits, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(scores.class_logits, h @ embedding.T, rtol=1e-5, atol=1e-6)
    assert np.abs(np.diff(np.asarray(scores.logits), axis=1)).max() > 1e-3


def _bce(logits: np.ndarray, target: float) -> float:
    """Mean binary cross-entropy of logits against a constant target, in float64."""
    return float(np.mean(np.logaddexp(0, logits) - target * logits))


def _cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    log_softmax = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
    return float(-np.mean(log_softmax[np.arange(len(labels)), labels]))


@pytest.mark.parametrize("weight", [0.0, 0.7])
def test_losses_read_the_asked_class_and_weigh_the_class_loss(weight):
    """D's loss: BCE at each real image's label (1) and each fake's asked label (0), + weight x the
    cross-entropy of D's rows as a classifier of the real images; G's: BCE at the asked label (1)
    + weight x the cross-entropy of the fakes as asked. Against NumPy in float64."""
    config = dataclasses.replace(CONFIG, class_weight=weight)
    _, discriminator = make_models(config.static)
    d_params = _trained_embeddings(init_state(run_keys(0).init, config).d_params)
    rng = np.random.default_rng(1)
    real, fake = rng.random((2, 8, 28, 28)).astype(np.float32)
    real_labels, fake_labels = rng.integers(0, 10, (2, 8)).astype(np.int32)
    logits = [np.asarray(discriminator.apply({"params": d_params}, x).logits, np.float64) for x in (real, fake)]
    rows = np.arange(8)
    asked_real, asked_fake = logits[0][rows, real_labels], logits[1][rows, fake_labels]

    d_loss, (d_x, d_g_z, _) = discriminator_loss(d_params, {}, real, fake, config.static, real_labels, fake_labels)
    expected = _bce(asked_real, 1) + _bce(asked_fake, 0) + weight * _cross_entropy(logits[0], real_labels)
    assert float(d_loss) == pytest.approx(expected, rel=1e-5)
    assert float(d_x) == pytest.approx(np.mean(1 / (1 + np.exp(-asked_real))), rel=1e-5)
    assert float(d_g_z) == pytest.approx(np.mean(1 / (1 + np.exp(-asked_fake))), rel=1e-5)

    g_loss, _ = generator_loss(fake, d_params, {}, config.static, fake_labels)
    expected = _bce(asked_fake, 1) + weight * _cross_entropy(logits[1], fake_labels)
    assert float(g_loss) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("model", ["mlp", "dcgan"])
def test_the_class_loss_of_d_trains_only_the_class_embeddings(model):
    """D's class loss reads D's features held constant: its gradient reaches the class
    embeddings and nothing else of D, while G's class loss reaches the fakes through them."""
    config = dataclasses.replace(CONFIG, model=model, hidden_dim=16, class_weight=1.0)
    _, discriminator = make_models(config.static)
    d_params = _trained_embeddings(init_state(run_keys(0).init, config).d_params)
    images = np.random.default_rng(2).random((4, 28, 28)).astype(np.float32)
    labels = np.array([1, 2, 3, 4], np.int32)

    def loss(params, images):
        return class_loss(discriminator.apply({"params": params}, images).class_logits, labels)

    grads = jax.grad(loss)(d_params, images)
    for path, grad in jax.tree_util.tree_leaves_with_path(grads):
        assert (np.abs(grad).max() > 0) == ("Embed_0" in jax.tree_util.keystr(path)), path
    fake_grad = jax.grad(lambda x: class_loss(discriminator.apply({"params": d_params}, x).logits, labels))(images)
    assert np.abs(fake_grad).max() > 0


def test_class_weight_settings():
    """Unset: the model's (mlp 1, dcgan 0); only for a conditional model; finite and >= 0."""
    assert class_weight(GANConfig(conditional=True)) == 1.0
    assert class_weight(GANConfig(conditional=True, model="dcgan").static) == 0.0
    assert class_weight(GANConfig(conditional=True, class_weight=0.25).static) == 0.25
    assert class_weight(GANConfig()) == 0.0
    for bad in ({"class_weight": 1.0}, {"conditional": True, "class_weight": float("nan")}):
        with pytest.raises(ConfigError, match="class.weight"):
            GANConfig(**bad)


def test_width_settings():
    """Unset: the model's (mlp 256 as the seed's and 512 conditional, dcgan 256); a given width wins."""
    assert hidden_dim(GANConfig()) == 256 and hidden_dim(GANConfig(conditional=True).static) == 512
    assert hidden_dim(GANConfig(model="dcgan", conditional=True)) == 256
    assert hidden_dim(GANConfig(conditional=True, hidden_dim=64)) == 64
    generator, discriminator = make_models(GANConfig(conditional=True).static)
    assert generator.hidden_dim == discriminator.hidden_dim == 512


def test_a_resume_compares_the_settings_in_effect():
    """A run that recorded the model's own width, b1 or class weight as a number (as earlier
    versions did) resumes with them unset, and the other way round; a conditional MLP trained
    256 wide is not the 512-wide default, and the refusal says what to pass."""

    def check(saved: GANConfig, asked: GANConfig) -> None:
        check_resumable(run_meta(saved, "mnist", "x"), asked, "mnist", "x", "w")

    check(GANConfig(hidden_dim=256, b1=0.9), GANConfig())
    check(GANConfig(conditional=True), GANConfig(conditional=True, hidden_dim=512, b1=0.9, class_weight=1.0))
    with pytest.raises(InputError, match=r"hidden.dim\W* 256, not 512; pass \W*hidden.dim\W* 256 to resume"):
        check(GANConfig(conditional=True, hidden_dim=256), GANConfig(conditional=True))
    with pytest.raises(InputError, match=r"b1\W* 0.9, not 0.5"):
        check(GANConfig(), GANConfig(b1=0.5))


def test_checkpoints_before_the_class_loss_had_none():
    """A conditional run recorded before --class-weight trained without a class loss and resumes
    so; an unconditional one has none to set."""
    for conditional, expected in ((True, 0.0), (False, None)):
        recorded = {k: v for k, v in as_json(GANConfig(conditional=conditional)).items() if k != "class_weight"}
        meta = {"config": recorded, "data_sha256": "x", "state_format": STATE_FORMAT, "model_format": MODEL_FORMAT}
        assert _config_from_meta(meta, "w") == GANConfig(conditional=conditional, class_weight=expected)


@pytest.mark.parametrize("model", ["mlp", "dcgan"])
@pytest.mark.parametrize("conditional", [False, True])
def test_checkpoints_of_the_first_model_format(model, conditional):
    """Of the models written before `model_format`, only the conditional MLP changed (its generator
    saw the labels at its input alone): it is refused by name, the others load."""
    recorded = as_json(GANConfig(model=model, conditional=conditional))
    meta = {"config": recorded, "data_sha256": "x", "state_format": STATE_FORMAT}
    if conditional and model == "mlp":
        with pytest.raises(InputError, match="conditional MLP of an earlier jaxart version.*model format 1"):
            _config_from_meta(meta, "w")
    else:
        assert _config_from_meta(meta, "w") == GANConfig(model=model, conditional=conditional)


@pytest.mark.parametrize("model", ["mlp", "dcgan"])
def test_the_label_chooses_the_image(model):
    """Same noise, another label: another image; the default labels cycle through the classes."""
    config = dataclasses.replace(CONFIG, model=model, hidden_dim=16)
    state = init_state(run_keys(0).init, config)
    key = jax.random.key(1)
    images = sample(state.g_params, key, 12, config.static, state.g_collections)
    assert images.shape == (12, 28, 28) and images.dtype == np.float32
    assert_same_bits(images, sample(state.g_params, key, 12, config.static, state.g_collections, class_cycle(12)))
    sevens = sample(state.g_params, key, 12, config.static, state.g_collections, np.full(12, 7, np.int32))
    assert_same_bits(sevens[7], images[7])  # image 7 was asked for a 7 in both
    assert np.abs(np.asarray(sevens[0]) - np.asarray(images[0])).max() > 1e-4
    assert_same_bits(sample_state(state, key, 12, labels=np.full(12, 7, np.int32)), sevens)


def test_an_unconditional_model_takes_no_labels():
    config = GANConfig(hidden_dim=16, latent_dim=8)
    state = init_state(run_keys(0).init, config)
    with pytest.raises(ValueError, match="unconditional"):
        sample(state.g_params, jax.random.key(0), 4, config.static, None, np.zeros(4, np.int32))


def test_class_cycle_and_sample_labels():
    assert class_cycle(23).tolist() == [i % 10 for i in range(23)]
    labels = np.asarray(sample_labels(jax.random.key(0), 100_000))
    counts = np.bincount(labels, minlength=10)
    assert labels.min() == 0 and labels.max() == 9 and len(counts) == 10
    # Uniform: each count ~ Binomial(1e5, 0.1), sd 95; 6 sd.
    assert np.abs(counts - 10_000).max() < 570


@pytest.mark.parametrize("model", ["mlp", "dcgan"])
def test_the_step_reads_the_real_labels(model, fixture_data):
    """A step of a conditional model depends on the batch's labels, and repeats bit for bit."""
    config = dataclasses.replace(CONFIG, model=model, hidden_dim=16)
    keys = run_keys(0)
    images, labels = fixture_data.images[:32], fixture_data.labels[:32]

    def one_step(batch_labels):
        state, metrics = train_step(init_state(keys.init, config), (images, batch_labels), keys.train)
        return state, metrics

    state, metrics = one_step(labels)
    again, metrics_again = one_step(labels)
    assert_same_bits((state.d_params, metrics), (again.d_params, metrics_again))
    shifted, _ = one_step((labels + 1) % 10)
    embeddings = (state.d_params["Embed_0"]["embedding"], shifted.d_params["Embed_0"]["embedding"])
    assert np.abs(np.asarray(embeddings[0]) - np.asarray(embeddings[1])).max() > 0
    assert int(state.step) == 1 and np.isfinite(float(metrics["g_loss"]))


def test_class_accuracy_against_a_loop():
    rng = np.random.default_rng(0)
    probs = rng.random((500, 10))
    labels = rng.integers(0, 9, 500)  # class 9 never asked for
    accuracy = class_accuracy(probs, labels)
    for c in range(9):
        asked = labels == c
        assert accuracy[c] == pytest.approx(np.mean(probs[asked].argmax(1) == c))
    assert np.isnan(accuracy[9])
    with pytest.raises(ValueError):
        class_accuracy(probs, labels[:-1])


def test_summary_names_the_worst_class():
    record = {
        "fcd": 3.0,
        "inception_score": 9.0,
        "kl_to_uniform": 0.01,
        "missing_classes": [],
        "dataset": "fashion-mnist",
        "class_accuracy": [0.99, 0.98, 0.97, 0.96, 0.95, 0.99, 0.9, 0.99, 0.99, 0.99],
        "min_class_accuracy": 0.9,
    }
    assert "classified as asked: lowest 90.0% (Shirt)" in gan_evaluate.summary(record)
    assert gan_evaluate.class_names("mnist") == tuple("0123456789")


@pytest.fixture(scope="module")
def judge_patch():
    """The committed MNIST judge stands in for the fixture's (which would be trained first)."""
    from jaxart.gan.judge import load_judge, shipped_dir

    judge = load_judge(shipped_dir("mnist"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(gan_evaluate, "load_or_train_judge", lambda *args, **kwargs: judge)
        yield


def test_cli_resume_runs_sample_by_class_and_eval(tmp_path, capsys, judge_patch):
    """`train --conditional --class-weight`: a resumed run ends with the bits of a straight one
    (labels, moving average and class loss included); a `--runs 2` sweep of rates follows the
    single runs; `sample --digit` draws the class asked; `eval` reports the share classified as
    asked per class."""

    def run(*argv) -> None:
        status, err = run_cli(list(argv), capsys)
        assert status == 0, err

    checkpoints = ["--checkpoint-every", "10"]
    run("train", "--workdir", tmp_path / "straight", *FLAGS, "--max-steps", "30", *checkpoints)
    run("train", "--workdir", tmp_path / "halves", *FLAGS, "--max-steps", "10", *checkpoints)
    run("train", "--workdir", tmp_path / "halves", *FLAGS, "--max-steps", "30", *checkpoints)
    straight = load_latest(tmp_path / "straight")
    assert int(straight.step) == 30 and straight.g_ema is not None
    assert straight.config.conditional and straight.config.class_weight == 0.5
    assert_same_bits(straight, load_latest(tmp_path / "halves"))

    # A sweep: run r of `--runs 2 --lr a,b` is the single run of seed r at the r-th rate.
    sweep = ["--runs", "2", "--lr", "2e-4,1e-3"]
    run("train", "--workdir", tmp_path / "runs", *sweep, *FLAGS, "--max-steps", "30", *checkpoints)
    run("train", "--workdir", tmp_path / "seed1", "--seed", "1", "--lr", "1e-3", *FLAGS, "--max-steps", "30")
    ours = np.array([[r[k] for k in LOSSES] for r in read_json_lines(tmp_path / "runs/run-001/metrics.jsonl")])
    single = np.array([[r[k] for k in LOSSES] for r in read_json_lines(tmp_path / "seed1/metrics.jsonl")])
    assert np.max(np.abs(ours - single) / np.abs(single)) <= TOLERANCE

    run("sample", "--workdir", tmp_path / "straight", "--digit", "7", "--num", "12", "--out", tmp_path / "7.npy")
    run("sample", "--workdir", tmp_path / "straight", "--num", "12", "--out", tmp_path / "all.npy")
    sevens, every = np.load(tmp_path / "7.npy"), np.load(tmp_path / "all.npy")
    assert sevens.shape == (12, 28, 28) and sevens.dtype == np.float32
    key = jax.random.split(jax.random.key(0), 1)[0]  # `sample`'s first (and only) call's key
    np.testing.assert_array_equal(sevens, sample_state(straight, key, 12, labels=np.full(12, 7, np.int32)))
    np.testing.assert_array_equal(every, sample_state(straight, key, 12))
    np.testing.assert_array_equal(sevens[7], every[7])  # image 7 of the default cycle is a 7
    run("sample", "--workdir", tmp_path / "straight", "--num", "100", "--out", tmp_path / "grid.png")
    assert (tmp_path / "grid.png").is_file()

    capsys.readouterr()
    assert cli.run(gan_main.main, ["eval", "--workdir", str(tmp_path / "straight"), "--num", "200"]) == 0
    assert "classified as asked: lowest " in capsys.readouterr().out
    (record,) = read_json_lines(tmp_path / "straight" / "eval.jsonl")
    assert len(record["class_accuracy"]) == 10 and record["min_class_accuracy"] == min(record["class_accuracy"])


def test_cli_devices_follow_one_device(tmp_path, capsys):
    """`--conditional --devices 2` (a subprocess with two CPU devices) follows the one-device run."""
    command = ["train", "--workdir", tmp_path / "one", *FLAGS, "--max-steps", "20"]
    status, err = run_cli(command, capsys)
    assert status == 0, err
    result = subprocess.run(
        [sys.executable, "-m", "jaxart.gan", "train", "--workdir", tmp_path / "two", *FLAGS, "--max-steps", "20"]
        + ["--devices", "2"],
        capture_output=True,
        text=True,
        env={**host_devices_env(2), "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    one, two = (
        np.array([[r[k] for k in LOSSES] for r in read_json_lines(tmp_path / name / "metrics.jsonl")])
        for name in ("one", "two")
    )
    assert one.shape == (20, 4) and np.max(np.abs(two - one) / np.abs(one)) <= TOLERANCE


@pytest.fixture(scope="module")
def conditional_run(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("conditional") / "run"
    assert cli.run(gan_main.main, ["train", "--workdir", str(workdir), *map(str, FLAGS), "--max-steps", "10"]) == 0
    return workdir


@pytest.mark.parametrize("digit", ["10", "-1", "seven", "", "7.0", "Sandal", "\u0663"])
def test_bad_digit_refused_in_one_line(digit, conditional_run, tmp_path, capsys):
    out = tmp_path / "x.npy"
    status, err = run_cli(["sample", "--workdir", conditional_run, "--digit", digit, "--out", out], capsys)
    assert status == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "--digit" in err and "0..9" in err and not out.exists()


def test_class_names_of_fashion_mnist(conditional_run):
    """--digit takes Fashion-MNIST's class names (any case), or their numbers."""
    state, _ = load_latest_run(conditional_run)
    assert _class_index("sandal", state, "fashion-mnist", "w") == 5
    assert _class_index("T-SHIRT", state, "fashion-mnist", "w") == 0
    assert _class_index("9", state, "fashion-mnist", "w") == 9


def test_labels_outside_the_classes_refused(tmp_path, capsys):
    """Data labelled 0..10 cannot train a 10-class model: one line, nothing written."""
    folder = tmp_path / "data"
    shutil.copytree(FIXTURE, folder)
    labels = data.read_idx(folder / "train-labels-idx1-ubyte.gz").copy()
    labels[5] = 10
    header = bytes([0, 0, 8, 1]) + len(labels).to_bytes(4, "big")
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(header + labels.tobytes()))
    workdir = tmp_path / "run"
    status, err = run_cli(["train", "--workdir", workdir, *FLAGS[2:], "--data", folder, "--max-steps", "10"], capsys)
    assert status == 2 and len(err.strip().splitlines()) == 1, err
    assert "--conditional model's --data" in err and "needs images labelled 0..9; it has label 10" in err
    assert not workdir.exists()


def test_resume_without_conditional_names_the_switch(conditional_run, capsys):
    flags = [f for f in FLAGS if f not in CONDITIONAL]
    status, err = run_cli(["train", "--workdir", conditional_run, *flags, "--max-steps", "20"], capsys)
    assert status == 2 and len(err.strip().splitlines()) == 1, err
    assert "holds a run with --conditional True, not False; pass --conditional to resume it" in err
    assert int(load_latest(conditional_run).step) == 10


def test_a_batch_of_the_wrong_kind_is_refused(fixture_data):
    """A conditional model needs (images, labels); an unconditional one takes images alone."""
    images, labels = fixture_data.images[:32], fixture_data.labels[:32]
    keys = run_keys(0)
    for config, batch in ((CONFIG, images), (GANConfig(hidden_dim=16, latent_dim=8), (images, labels))):
        with pytest.raises(ValueError, match=r"\(images, labels\) batches"):
            train_step(init_state(keys.init, config), batch, keys.train)
