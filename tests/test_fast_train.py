"""Training a feed-forward style network (`jaxart.fast.train`, `.photos`, `.loop`): the loss is the
optimisation's, steps learn, seeds and crops are reproducible, a run killed with SIGKILL resumes
to the same bits, two devices follow one, and bad inputs or another run's styles are refused.

Everything is tiny: 16 px crops, a network of 4 channels, random VGG19 weights and the loss's
layers up to relu2_1 (the VGG19 is computed no further), so the file runs in about two minutes.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_same_bits
from PIL import Image

from jaxart import vgg
from jaxart.cache import packaged
from jaxart.checkpoint import Checkpoints
from jaxart.distributed import host_devices_env
from jaxart.errors import InputError
from jaxart.fast import loop, photos
from jaxart.fast import train as fast
from jaxart.fast.config import RunConfig, TrainConfig
from jaxart.files import read_json_lines
from jaxart.gan.workdir import check_workdir as check_gan_workdir
from jaxart.gan.workdir import locked as gan_locked
from jaxart.style.transfer import compute_targets, loss_fn

ROOT = Path(__file__).resolve().parent.parent
TINY = {
    "contract": (4, 4, 4),
    "residual": 1,
    "expand": (4, 4),
    "size": 16,
    "batch_size": 2,
    "weights": "random",
    "content_layers": (("relu2_1", 1.0),),
    "style_layers": (("relu1_1", 1.0), ("relu2_1", 1.0)),
    "style_weight": 1e3,
    # At Johnson's 1e-3 this tiny network's runs on 1 and 2 devices part after a few steps: Adam
    # turns gradients that are float noise (of parameters an instance norm makes irrelevant, or
    # of flat crops) into whole steps. At 1e-4 they stay within TOLERANCE.
    "lr": 1e-4,
}
STEPS, EVERY = 20, 5  # the subprocess runs: 20 steps, a checkpoint every 5
# Relative, per-step losses of 2 devices against 1 (float32 sums in another order), as the GAN's;
# measured: 1.2e-5 at most over 40 steps.
TOLERANCE = 1e-4

# A run in a process of its own, as a command runs it (one line and a status for a failure); the
# compile cache ($JAXART_CACHE, a temporary folder of the test session's) spares the later ones.
DRIVER = """
import json, sys
from jaxart import cli
from jaxart.fast.config import RunConfig, TrainConfig
from jaxart.fast.loop import train

def main(argv):
    config, run = json.loads(argv[0])
    train(TrainConfig(**config), RunConfig(**run))

cli.prepare_backend()
sys.exit(cli.run(main, sys.argv[1:], command=True))
"""


def _picture(path: Path, shape: tuple[int, int], seed: int) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (*shape, 3), np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Seven photos of assorted sizes and formats (two in a sub-folder, one smaller than a crop),
    a note beside them, and two style images."""
    root = tmp_path_factory.mktemp("fast")
    shapes = [(30, 40), (48, 20), (12, 14), (64, 64), (25, 33), (40, 30), (20, 60)]
    for i, shape in enumerate(shapes):
        _picture(root / "photos" / ("sub" if i % 3 == 1 else "") / f"p{i}.{'jpg' if i % 2 else 'png'}", shape, i)
    (root / "photos" / "notes.txt").write_text("not a photo")
    return {
        "root": root,
        "photos": root / "photos",
        "style_a": _picture(root / "a.png", (40, 50), 10),
        "style_b": _picture(root / "b.jpg", (50, 40), 11),
        "style_c": _picture(root / "c.png", (40, 50), 12),
    }


def tiny_config(files: dict[str, Path], **changes) -> TrainConfig:
    return TrainConfig(**{"style": (str(files["style_a"]), str(files["style_b"])), **TINY, **changes})


def tiny_run(files: dict[str, Path], workdir: Path, **changes) -> RunConfig:
    settings = {"content": str(files["photos"]), "workdir": str(workdir), "max_steps": STEPS}
    return RunConfig(**{**settings, "checkpoint_every": EVERY, **changes})


def command(config: TrainConfig, run: RunConfig) -> list[str]:
    return [sys.executable, "-c", DRIVER, json.dumps([dataclasses.asdict(config), dataclasses.asdict(run)])]


def outcome(workdir: Path):
    """What a finished run leaves: its network, metrics (without times), kept checkpoints, previews."""
    _, params, _ = loop.load_network(workdir)
    rows = [{k: v for k, v in row.items() if k != "seconds"} for row in read_json_lines(workdir / "metrics.jsonl")]
    checkpoints = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
    return jax.tree.map(np.asarray, params), rows, checkpoints, sorted(p.name for p in (workdir / "previews").iterdir())


@pytest.fixture(scope="module")
def reference(files):
    """The uninterrupted run, on one device, in a process of its own (which fills the compile cache)."""
    workdir = files["root"] / "reference"
    done = subprocess.run(command(tiny_config(files), tiny_run(files, workdir)), cwd=ROOT, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()
    assert (workdir / "loss_curves.png").is_file()
    return workdir, outcome(workdir)


@pytest.fixture(scope="module")
def vgg_random():
    return vgg.init_params(jax.random.key(0))


# The loss and the step


def test_the_loss_is_the_optimisations_objective_image_by_image(files, vgg_random):
    config = tiny_config(files, content_layers=(("relu1_1", 0.5), ("relu2_1", 1.0)), tv_weight=2.0)
    rng = np.random.default_rng(0)
    styles = [rng.random((20, 25, 3), np.float32), rng.random((30, 12, 3), np.float32)]
    objective = fast.make_objective(vgg_random, styles, config)
    content = rng.random((2, 16, 16, 3), np.float32)
    stylized = rng.random((2, 16, 16, 3), np.float32)
    chosen = np.array([1, 0])  # image i in style chosen[i]
    grams = {name: g[chosen] for name, g in objective.style_grams.items()}
    loss, parts = fast.perceptual_loss(vgg_random, jnp.asarray(stylized), jnp.asarray(content), grams, config)

    # Each image's objective as `python -m jaxart.style` builds it, for that content and style.
    expected = []
    for i, s in enumerate(chosen):
        targets = compute_targets(vgg_random, vgg.normalize(content[i]), vgg.normalize(styles[s]), config.loss)
        expected.append(loss_fn(vgg.normalize(jnp.asarray(stylized[i])), vgg_random, targets, config.loss.program)[1])
    for name in ("loss", "content_loss", "style_loss"):
        mean = np.mean([float(e[name]) for e in expected])
        np.testing.assert_allclose(float(parts[name]), mean, rtol=1e-5)
    np.testing.assert_allclose(float(loss), float(parts["loss"]), rtol=0)
    assert float(parts["content_loss"]) > 0 and float(parts["style_loss"]) > 0


def test_the_style_weight_defaults_to_a_32nd_of_the_style_jobs_scaled_to_the_crops(files, vgg_random):
    from jaxart.style import size_scaled_style_weight

    config = fast.resolve(tiny_config(files, style_weight=None, size=200), vgg_random)
    want = size_scaled_style_weight(100.0, 200) * fast.NETWORK_STYLE_SCALE  # torchvision's (random) weights
    assert config.style_weight == pytest.approx(want)
    assert fast.resolve(tiny_config(files, style_weight=3.0), vgg_random).style_weight == 3.0


def test_steps_lower_the_loss_on_a_fixed_batch(files, vgg_random):
    config = tiny_config(files, lr=1e-2)  # the next test's: one compiled step for both
    rng = np.random.default_rng(1)
    objective = fast.make_objective(vgg_random, [rng.random((16, 16, 3), np.float32)] * 2, config)
    batch = rng.integers(0, 256, (2, 16, 16, 3), np.uint8)
    keys = fast.run_keys(0)
    state = fast.init_state(keys.init, config)
    losses = []
    for _ in range(15):
        state, metrics = fast.train_step(state, batch, keys.train, objective)
        losses.append(float(metrics["loss"]))
    assert int(state.step) == 15
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), losses


def test_the_same_seed_gives_the_same_bits(files, vgg_random):
    config = tiny_config(files, lr=1e-2)
    rng = np.random.default_rng(2)
    objective = fast.make_objective(vgg_random, [rng.random((16, 16, 3), np.float32)] * 2, config)
    batches = rng.integers(0, 256, (3, 2, 16, 16, 3), np.uint8)

    def run(seed: int):
        keys = fast.run_keys(seed)
        state = fast.init_state(keys.init, config)
        for batch in batches:
            state, _ = fast.train_step(state, batch, keys.train, objective)
        return jax.tree.map(np.asarray, state)

    first = run(0)
    assert_same_bits(run(0), first)
    assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(run(1)), jax.tree.leaves(first)))


def test_each_batch_holds_every_style_from_a_drawn_first_one():
    key = fast.run_keys(0).train
    firsts = set()
    for step in range(20):
        chosen = np.asarray(fast.styles_of(key, jnp.int32(step), 5, 3))
        assert sorted(set(chosen)) == [0, 1, 2] and list(chosen) == [(chosen[0] + j) % 3 for j in range(5)]
        firsts.add(int(chosen[0]))
    assert firsts == {0, 1, 2}


# Photos and crops


def test_crops_depend_only_on_the_seed_and_their_index(files):
    paths = photos.list_photos(files["photos"])
    assert len(paths) == 7 and all(p.suffix in (".png", ".jpg") for p in paths)  # notes.txt is no photo
    key = np.asarray(jax.random.key_data(fast.run_keys(0).data))
    a, b = photos.Photos(paths, 16, key), photos.Photos(paths, 16, key)
    late = a.crop(37)
    np.testing.assert_array_equal(b.crop(0), a.crop(0))
    np.testing.assert_array_equal(b.crop(37), late)  # in any order, decoded or cached
    assert late.shape == (16, 16, 3) and late.dtype == np.uint8
    whole = a.batches(5, 3, 4, range(4))
    np.testing.assert_array_equal(b.batches(5, 3, 4, [2, 3]), whole[:, 2:])  # a process's rows alone
    np.testing.assert_array_equal(whole[1, 2], a.crop(6 * 4 + 2))
    other = photos.Photos(paths, 16, np.asarray(jax.random.key_data(fast.run_keys(1).data)))
    assert not np.array_equal(other.batches(5, 3, 4, range(4)), whole)
    # One photo held out for the previews (7 photos: at most one in five), never drawn; each
    # epoch draws every training photo once.
    assert len(a.held_out) == 1 and sorted(a.train + a.held_out) == list(range(7))
    for epoch in range(3):
        drawn = [a.photo_of(epoch * 6 + i) for i in range(6)]
        assert sorted(drawn) == a.train
    assert a.preview().shape == (1, 16, 16, 3)


def test_a_folder_without_photos_and_a_style_that_is_no_image_are_refused_before_anything_is_written(files, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.md").write_text("no photos here")
    workdir = tmp_path / "run"
    with pytest.raises(InputError, match="holds no photos") as caught:
        loop.train(tiny_config(files), tiny_run(files, workdir, content=str(empty)))
    assert "\n" not in str(caught.value) and "`content`" in str(caught.value)
    not_image = tmp_path / "style.png"
    not_image.write_text("not a picture")
    with pytest.raises(InputError, match="not an image") as caught:
        loop.train(tiny_config(files, style=(str(not_image),)), tiny_run(files, workdir))
    assert "\n" not in str(caught.value)
    damaged = tmp_path / "damaged"
    _picture(damaged / "good.png", (20, 20), 0)
    (damaged / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut short")
    with pytest.raises(InputError, match="bad.jpg"):  # named, not skipped
        loop.train(tiny_config(files), tiny_run(files, workdir, content=str(damaged)))
    with pytest.raises(InputError, match="does not exist"):
        loop.train(tiny_config(files), tiny_run(files, workdir, content=str(tmp_path / "missing")))
    assert not workdir.exists()


# Runs of the job (subprocesses, sharing the compile cache)


def test_a_run_killed_with_sigkill_resumes_to_the_same_bits(files, reference, tmp_path):
    _, (params, rows, checkpoints, previews) = reference
    assert [row["step"] for row in rows] == list(range(1, STEPS + 1))
    assert checkpoints == [10, 15, 20] and previews == [f"step_{s:06d}.png" for s in range(EVERY, STEPS + 1, EVERY)]
    workdir = tmp_path / "run"
    process = subprocess.Popen(
        command(tiny_config(files), tiny_run(files, workdir)), cwd=ROOT, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 120
        while not (workdir / "checkpoints" / str(EVERY)).is_dir():  # orbax renames a step's folder when complete
            assert process.poll() is None, "the run ended before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint within 2 minutes"
            time.sleep(0.001)
    finally:
        process.kill()
    assert process.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    with Checkpoints(workdir, create=False) as kept:
        assert kept.steps() and kept.steps()[-1] < STEPS

    loop.train(tiny_config(files), tiny_run(files, workdir))  # in this process: the same programs
    resumed = outcome(workdir)
    assert_same_bits(resumed[0], params)
    assert resumed[1:] == (rows, checkpoints, previews)


def test_two_devices_follow_one_within_float32_summation_order(files, reference, tmp_path):
    run = tiny_run(files, tmp_path / "two", devices=2)
    done = subprocess.run(
        command(tiny_config(files), run),
        cwd=ROOT,
        env={**host_devices_env(2), "PYTHONPATH": str(ROOT)},
        capture_output=True,
    )
    assert done.returncode == 0, done.stderr.decode()
    one = reference[1][1]
    two = [{k: v for k, v in row.items() if k != "seconds"} for row in read_json_lines(run.workdir + "/metrics.jsonl")]
    assert [row["step"] for row in two] == [row["step"] for row in one]
    for name in fast.METRICS:
        np.testing.assert_allclose([row[name] for row in two], [row[name] for row in one], rtol=TOLERANCE)


def test_a_resume_with_another_style_image_is_refused_in_one_line(files, reference, tmp_path):
    import shutil

    workdir = tmp_path / "copy"
    shutil.copytree(reference[0], workdir)
    before = (workdir / "metrics.jsonl").read_bytes()
    config = dataclasses.replace(tiny_config(files), style=(str(files["style_a"]), str(files["style_c"])))
    with pytest.raises(InputError, match="other style images") as caught:
        loop.train(config, tiny_run(files, workdir, max_steps=STEPS + 10))
    assert "\n" not in str(caught.value) and "`style`" in str(caught.value)
    assert (workdir / "metrics.jsonl").read_bytes() == before
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["10", "15", "20"]
    # The same pixels elsewhere are the same styles; another setting is named.
    moved = tmp_path / "moved.png"
    shutil.copy(files["style_b"], tmp_path / "moved.jpg")
    shutil.copy(files["style_a"], moved)
    config = dataclasses.replace(tiny_config(files), style=(str(moved), str(tmp_path / "moved.jpg")), lr=2e-3)
    with pytest.raises(InputError, match="`lr` 0.0001, not 0.002"):
        loop.train(config, tiny_run(files, workdir, max_steps=STEPS + 10))


def test_load_network_reads_a_trained_network_and_refuses_other_folders(files, reference, tmp_path):
    module, params, names = loop.load_network(reference[0])
    assert names == ["a.png", "b.jpg"] and module.styles == 2
    out = module.apply({"params": params}, jnp.zeros((1, 20, 24, 3)), jnp.array([[0.5, 0.5]]))
    assert out.shape == (1, 20, 24, 3)
    with pytest.raises(InputError, match="not the folder of a fast-style training run"):
        loop.load_network(files["photos"])
    gan = tmp_path / "gan"
    with gan_locked(gan):
        pass
    with pytest.raises(InputError, match="not the folder of a fast-style training run"):
        loop.load_network(gan)
    # Each job refuses the other's folder in one line.
    with pytest.raises(InputError, match="another jaxart job") as caught:
        check_gan_workdir(reference[0])
    assert "jaxart-fast-workdir" in str(caught.value)
    with pytest.raises(InputError, match="another jaxart job"):
        loop.train(tiny_config(files), tiny_run(files, gan))


def test_the_command_line_takes_several_styles_and_maps_flags_onto_the_configs():
    from jaxart import cli
    from jaxart.fast.__main__ import parser

    args = parser().parse_args(["train", "--style", "a.png", "b.png", "--content", "photos", "--size", "64"])
    config, run = cli.config_from_args(TrainConfig, args), cli.config_from_args(RunConfig, args)
    assert config.style == ("a.png", "b.png") and config.size == 64 and run.content == "photos"


def test_apply_takes_a_trained_network_and_mixes_its_styles(files, reference, tmp_path):
    from jaxart import cli, images
    from jaxart.fast.__main__ import main as fast_main

    out = tmp_path / "mixed.png"
    photo = files["photos"] / "p3.jpg"
    argv = ["apply", "--workdir", str(reference[0]), "--content", str(photo), "--output", str(out), "--mix", "0:1,1:1"]
    assert cli.run(fast_main, argv) == 0
    module, params, names = loop.load_network(reference[0])
    picture = images.load_image(photo)
    expected = module.apply({"params": params}, picture[None], jnp.array([[0.5, 0.5]]))[0]
    assert np.abs(images.to_uint8(expected).astype(int) - np.asarray(Image.open(out), int)).max() <= 1
    # An index the network does not have is refused in one line.
    assert cli.run(fast_main, [*argv[:-2], "--style-index", "2"]) == 2


def test_the_train_command_as_readme_spells_it(files, tmp_path):
    """`python -m jaxart.fast train --style A B --content DIR --workdir W`, then `apply --workdir W`."""
    workdir, out = tmp_path / "w", tmp_path / "out.png"
    train = [sys.executable, "-m", "jaxart.fast", "train", "--style", str(files["style_a"]), str(files["style_b"])]
    train += ["--content", str(files["photos"]), "--workdir", str(workdir), "--weights", "random", "--size", "32"]
    train += ["--batch-size", "2", "--max-steps", "2", "--checkpoint-every", "2", "--contract", "8,8,8"]
    train += ["--expand", "8,8", "--residual", "1"]
    done = subprocess.run(train, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("trained to step 2")
    apply = [sys.executable, "-m", "jaxart.fast", "apply", "--workdir", str(workdir), "--style-index", "1"]
    done = subprocess.run(apply + ["--output", str(out)], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert Image.open(out).size == Image.open(packaged("examples", "content.png")).size  # apply's default content
