"""`python -m jaxart.gan` end to end on the MNIST fixture: outputs, exact resume (also after SIGKILL), bad input."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import FIXTURE, assert_same_bits

from jaxart import cli
from jaxart.gan import __main__ as gan_main
from jaxart.gan import loop
from jaxart.gan.checkpoint import load_latest
from jaxart.gan.config import GANConfig, RunConfig

ROOT = Path(__file__).resolve().parent.parent
# The fixture's 2048 images: 64 steps per epoch.
RUN = ["--data", str(FIXTURE), "--epochs", "5", "--max-steps", "300", "--steps-per-call", "25"]


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    """(exit status, stderr) of `python -m jaxart.gan argv`, in this process."""
    try:
        status = cli.run(gan_main.main, [str(a) for a in argv])
    except SystemExit as e:  # argparse's usage errors
        status = e.code
    return status, capsys.readouterr().err


def train(workdir: Path, *extra, capsys) -> None:
    status, err = run_cli(["train", "--workdir", workdir, *RUN, *extra], capsys)
    assert status == 0, err


def final_params(workdir: Path):
    state = load_latest(workdir)
    return int(state.step), jax.tree.map(
        np.asarray, (state.g_params, state.d_params, state.g_opt_state, state.d_opt_state, state.g_ema)
    )


def metric_rows(workdir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """A run of 300 steps never interrupted: (workdir, (step, params))."""
    workdir = tmp_path_factory.mktemp("gan") / "straight"
    status = cli.run(gan_main.main, ["train", "--workdir", str(workdir), *RUN, "--checkpoint-every", "100"])
    assert status == 0
    return workdir, final_params(workdir)


def test_train_writes_checkpoints_metrics_samples_and_plot(straight):
    workdir, (step, _) = straight
    assert step == 300
    assert sorted(int(p.name) for p in (workdir / "checkpoints").iterdir()) == [100, 200, 300]
    rows = metric_rows(workdir)
    assert [row["step"] for row in rows] == list(range(1, 301))
    assert rows[0]["epoch"] == 1 and rows[64]["epoch"] == 2 and rows[-1]["epoch"] == 5
    assert set(rows[0]) == {"step", "epoch", "d_loss", "g_loss", "d_x", "d_g_z"}
    samples = sorted(p.name for p in (workdir / "samples").iterdir())
    assert samples == ["epoch_001.png", "epoch_002.png", "epoch_003.png", "epoch_004.png", "step_0000300.png"]
    assert (workdir / "loss_curves.png").stat().st_size > 0


def test_stop_and_resume_gives_the_same_bits(straight, tmp_path, capsys):
    workdir = tmp_path / "resumed"
    train(workdir, "--max-steps", "130", "--checkpoint-every", "50", "--steps-per-call", "1", capsys=capsys)
    # As if killed after step 130's metrics but before its checkpoint: lines 101-130 must not repeat.
    shutil.rmtree(workdir / "checkpoints" / "130")
    train(workdir, "--checkpoint-every", "50", capsys=capsys)
    assert_same_bits(final_params(workdir), straight[1])
    assert metric_rows(workdir) == metric_rows(straight[0])


def test_killed_process_resumes_to_the_same_bits(straight, tmp_path, capsys):
    workdir = tmp_path / "killed"
    command = [sys.executable, "-m", "jaxart.gan", "train", "--workdir", str(workdir), *RUN]
    process = subprocess.Popen(
        [*command, "--checkpoint-every", "20", "--steps-per-call", "10"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not any(p.name.isdigit() for p in (workdir / "checkpoints").glob("*")):
            assert process.poll() is None and time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.01)
    finally:
        process.kill()
    assert process.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    killed_at = load_latest(workdir).step
    assert 0 < killed_at < 300

    train(workdir, capsys=capsys)
    assert_same_bits(final_params(workdir), straight[1])
    assert metric_rows(workdir) == metric_rows(straight[0])


def test_unfinished_save_is_ignored(straight, tmp_path):
    workdir = tmp_path / "copy"
    shutil.copytree(straight[0], workdir)
    # What a process killed mid-save leaves: orbax's temporary folder, never renamed to a step.
    shutil.copytree(workdir / "checkpoints" / "300", workdir / "checkpoints" / "400.orbax-checkpoint-tmp")
    assert load_latest(workdir).step == 300


def test_sample_writes_npy_and_png(straight, tmp_path, capsys):
    workdir = straight[0]
    status, err = run_cli(["sample", "--workdir", workdir, "--num", "10", "--out", tmp_path / "s.npy"], capsys)
    assert status == 0, err
    images = np.load(tmp_path / "s.npy")
    assert images.shape == (10, 28, 28) and images.dtype == np.float32
    assert 0 <= images.min() and images.max() <= 1
    status, err = run_cli(["sample", "--workdir", workdir, "--num", "10", "--out", tmp_path / "s.png"], capsys)
    assert status == 0, err
    assert (tmp_path / "s.png").stat().st_size > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.npy", "s.png"]


def test_no_arguments_trains_the_seed_job(monkeypatch):
    seen = []
    monkeypatch.setattr(loop, "train", lambda *configs: seen.append(configs))
    assert cli.run(gan_main.main, []) == 0
    assert cli.run(gan_main.main, ["train"]) == 0
    assert cli.run(gan_main.main, ["--epochs", "3", "--lr", "1e-3"]) == 0
    default = (GANConfig(), RunConfig())
    assert seen == [default, default, (GANConfig(lr=1e-3), RunConfig(epochs=3))]
    assert RunConfig().workdir == "runs/gan-mnist" and RunConfig().data == "mnist"


def test_every_config_field_is_a_flag_and_back():
    """The CLI maps flags onto both configs one to one."""
    argv = ["--model", "dcgan", "--batch-size", "8", "--lr", "0.001", "--b1", "0.3", "--latent-dim", "5"]
    argv += ["--hidden-dim", "8", "--conditional", "--class-weight", "0.25", "--ema-decay", "0.5", "--seed", "4"]
    argv += ["--workdir", "w", "--data", "d"]
    argv += ["--epochs", "2", "--max-steps", "7", "--checkpoint-every", "3", "--keep-checkpoints", "2"]
    argv += ["--steps-per-call", "5", "--eval-every", "6", "--eval-samples", "20", "--no-tensorboard"]
    args = gan_main.parser().parse_args(["train", *argv])
    config, run = cli.config_from_args(GANConfig, args), cli.config_from_args(RunConfig, args)
    assert config == GANConfig("dcgan", 8, 0.001, 0.3, 5, 8, True, 0.25, 0.5, 4)
    assert run == RunConfig("w", "d", 2, 7, 3, 2, 5, 6, 20, False)


def _folder(tmp_path: Path, name: str, files: dict[str, bytes]) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    for file, content in files.items():
        (folder / file).write_bytes(content)
    return folder


BAD_TRAIN_INPUT = {
    "missing folder": (lambda t: ["--data", t / "nowhere"], "unknown data"),
    "unknown name": (lambda t: ["--data", "cifar10"], "unknown data 'cifar10'"),
    "empty folder": (lambda t: ["--data", _folder(t, "empty", {})], "lacks train-images-idx3-ubyte"),
    "not IDX": (
        lambda t: ["--data", _folder(t, "junk", {"train-images-idx3-ubyte": b"junk", "train-labels-idx1-ubyte": b"x"})],
        "is not an unsigned-byte IDX file",
    ),
    "zero epochs": (lambda t: ["--data", FIXTURE, "--epochs", "0"], "--epochs: expected a positive integer"),
    "negative lr": (lambda t: ["--data", FIXTURE, "--lr", "-1"], "--lr: expected a finite number"),
    "text latent": (lambda t: ["--data", FIXTURE, "--latent-dim", "x"], "--latent-dim: expected a positive integer"),
    "unknown model": (lambda t: ["--data", FIXTURE, "--model", "gan3"], "invalid choice: 'gan3'"),
    "dcgan too narrow": (
        lambda t: ["--data", FIXTURE, "--model", "dcgan", "--hidden-dim", "2"],
        "--model dcgan needs --hidden-dim of at least 4",
    ),
    "b1 of 1": (lambda t: ["--data", FIXTURE, "--b1", "1"], "--b1: expected a number in [0, 1)"),
    "too few eval samples": (
        lambda t: ["--data", FIXTURE, "--eval-every", "10", "--eval-samples", "5"],
        "--eval-samples 5 is too few",
    ),
    "batch too big": (lambda t: ["--data", FIXTURE, "--batch-size", "4096"], "fewer than --batch-size 4096"),
}


@pytest.mark.parametrize("case", BAD_TRAIN_INPUT)
def test_bad_train_input_is_one_line_and_writes_nothing(case, tmp_path, capsys):
    make_args, message = BAD_TRAIN_INPUT[case]
    workdir = tmp_path / "run"
    status, err = run_cli(["train", "--workdir", workdir, *make_args(tmp_path)], capsys)
    assert status == 2
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not workdir.exists()


BAD_SAMPLE_INPUT = {
    "no checkpoint": (lambda t, w: ["--workdir", t, "--out", t / "s.npy"], "no checkpoints in"),
    "missing workdir": (lambda t, w: ["--workdir", t / "nowhere", "--out", t / "s.npy"], "no checkpoints in"),
    "bad extension": (lambda t, w: ["--workdir", w, "--out", t / "s.jpg"], "unknown extension '.jpg'"),
    # (A missing folder is made when the samples are written: tests/test_first_run.py.)
    "folder is a device": (lambda t, w: ["--workdir", w, "--out", "/dev/null/s.npy"], "is not a folder"),
    "zero images": (lambda t, w: ["--workdir", w, "--num", "0", "--out", t / "s.npy"], "--num: expected a positive"),
}


@pytest.mark.parametrize("case", BAD_SAMPLE_INPUT)
def test_bad_sample_input_is_one_line_and_writes_nothing(case, straight, tmp_path, capsys):
    make_args, message = BAD_SAMPLE_INPUT[case]
    status, err = run_cli(["sample", *make_args(tmp_path, straight[0])], capsys)
    assert status == 2
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "flag, value, saved", [("--hidden-dim", "128", "256"), ("--latent-dim", "32", "64"), ("--seed", "1", "0")]
)
def test_resume_with_another_configuration_names_the_difference(flag, value, saved, straight, capsys):
    before = (straight[0] / "metrics.jsonl").read_bytes()
    status, err = run_cli(["train", "--workdir", straight[0], *RUN, flag, value], capsys)
    assert status == 2
    assert f"holds a run with {flag} {saved}, not {value}" in err and len(err.strip().splitlines()) == 1
    assert (straight[0] / "metrics.jsonl").read_bytes() == before


def test_resume_on_other_data_is_refused(straight, tmp_path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    for kind in ("images-idx3-ubyte.gz", "labels-idx1-ubyte.gz"):  # the test split, posing as training data
        shutil.copy(FIXTURE / f"t10k-{kind}", other / f"train-{kind}")
    status, err = run_cli(["train", "--workdir", straight[0], *RUN, "--data", other], capsys)
    assert status == 2 and "trained on other data" in err and len(err.strip().splitlines()) == 1


def test_corrupt_checkpoint_is_an_error_not_a_fresh_start(straight, tmp_path, capsys):
    workdir = tmp_path / "corrupt"
    shutil.copytree(straight[0], workdir)
    for file in (workdir / "checkpoints" / "300" / "state").rglob("*"):
        if file.is_file() and file.parent.name == "d":
            file.write_bytes(b"garbage")
    for argv in (
        ["train", "--workdir", workdir, *RUN, "--max-steps", "320"],
        ["sample", "--workdir", workdir, "--out", tmp_path / "s.npy"],
    ):
        status, err = run_cli(argv, capsys)
        assert status == 2
        assert "checkpoints/300' cannot be read" in err and "fall back to step 200" in err
        assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "s.npy").exists()
    assert sorted(int(p.name) for p in (workdir / "checkpoints").iterdir()) == [100, 200, 300]


def test_checkpoint_of_an_earlier_state_format_is_refused_in_one_line(straight, tmp_path, capsys):
    """Checkpoints of the versions before the learning rate became a value (their meta has no
    `state_format`: config, data, data_sha256 and maybe state_sha256) hold an optimiser state
    without it: resume, sample and eval refuse them in one line, saying why, and write nothing."""
    import orbax.checkpoint as ocp

    from jaxart.checkpoint import Checkpoints
    from jaxart.gan.checkpoint import load_latest_run

    workdir = tmp_path / "old"
    shutil.copytree(straight[0], workdir)
    state, meta = load_latest_run(workdir)
    shutil.rmtree(workdir / "checkpoints" / "300")
    with Checkpoints(workdir) as checkpoints:
        old_meta = {k: meta[k] for k in ("config", "data", "data_sha256")}
        checkpoints.manager.save(
            300, args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(old_meta))
        )
    lines = (workdir / "metrics.jsonl").read_text()
    for argv in (
        ["train", "--workdir", workdir, *RUN, "--max-steps", "310"],
        ["sample", "--workdir", workdir, "--out", tmp_path / "s.npy"],
    ):
        status, err = run_cli(argv, capsys)
        assert status == 2, err
        assert len(err.strip().splitlines()) == 1
        assert "earlier jaxart version" in err and "state format 1" in err and "--workdir" in err
    assert (workdir / "metrics.jsonl").read_text() == lines
    assert not (tmp_path / "s.npy").exists()


def test_no_compile_cache_flag_is_the_environment_variable(straight, tmp_path, capsys, monkeypatch):
    from jaxart.cache import COMPILE_CACHE_ENV

    monkeypatch.setenv(COMPILE_CACHE_ENV, "1")
    status, err = run_cli(
        ["sample", "--workdir", straight[0], "--out", tmp_path / "a.npy", "--no-compile-cache"], capsys
    )
    assert status == 0, err
    assert os.environ[COMPILE_CACHE_ENV] == "0"


def test_commands_import_what_they_use_and_compile_a_handful_of_programs(tmp_path):
    """Importing the command loads neither matplotlib, torch nor the judge; a 50-step run
    compiles a few programs (49 before the eager one-off operations were folded into jit)."""
    probe = "import sys, jaxart.gan.__main__, jaxart.gan.loop; print(sorted({m.split('.')[0] if m in ('matplotlib', 'torch') else m for m in sys.modules if m in ('matplotlib', 'torch', 'jaxart.gan.evaluate', 'jaxart.gan.judge')}))"
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
    command = [sys.executable, "-m", "jaxart.gan", "train", "--workdir", str(tmp_path / "w"), "--data", str(FIXTURE)]
    env = {**os.environ, "JAX_LOG_COMPILES": "1"}
    done = subprocess.run(
        [*command, "--max-steps", "50", "--no-compile-cache"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    compiled = [line for line in done.stderr.splitlines() if "Finished XLA compilation" in line]
    assert 1 <= len(compiled) <= 8, "\n".join(compiled)


@pytest.mark.parametrize("layout", ["mnist", "MNIST/raw"])
def test_named_data_is_found_through_jaxart_data(layout, tmp_path, monkeypatch):
    from jaxart import data
    from jaxart.errors import InputError

    shutil.copytree(FIXTURE, tmp_path / "shared" / layout)
    monkeypatch.setenv("JAXART_DATA", str(tmp_path / "shared"))
    monkeypatch.setenv("JAXART_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(data, "SYSTEM_DATA", tmp_path / "datasets")
    assert data.resolve("mnist", download=False) == tmp_path / "shared" / layout
    assert data.load("mnist").checksum() == data.load(str(FIXTURE)).checksum()
    monkeypatch.delenv("JAXART_DATA")
    with pytest.raises(InputError, match="mnist is not on this machine"):
        data.resolve("mnist", download=False)


def test_named_data_is_found_where_debian_installs_it(tmp_path, monkeypatch):
    """`apt-get install dataset-fashion-mnist` puts the gzipped IDX files in
    /usr/share/datasets/fashion-mnist; $JAXART_DATA still comes first."""
    from jaxart import data

    monkeypatch.setattr(data, "SYSTEM_DATA", tmp_path / "datasets")
    monkeypatch.setenv("JAXART_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("JAXART_DATA", raising=False)
    system = tmp_path / "datasets" / "fashion-mnist"
    shutil.copytree(FIXTURE, system)  # gzipped, as Debian ships them
    assert data.resolve("fashion-mnist", download=False) == system
    assert data.load("fashion-mnist").checksum() == data.load(str(FIXTURE)).checksum()
    shutil.copytree(FIXTURE, tmp_path / "shared" / "fashion-mnist")
    monkeypatch.setenv("JAXART_DATA", str(tmp_path / "shared"))
    assert data.resolve("fashion-mnist", download=False) == tmp_path / "shared" / "fashion-mnist"


def test_half_written_files_of_a_killed_run_are_removed_on_restart(straight, tmp_path, capsys):
    """A run killed while writing a preview or the plot leaves atomic_path's hidden temporary
    file; the next `train` (holding the lock) removes it, and finishes what was missing. A
    hidden .tmp file jaxart did not name stays."""
    workdir = tmp_path / "copy"
    shutil.copytree(straight[0], workdir)
    leftovers = [
        workdir / "samples" / ".step_0000300.png.jaxart-k1ll3d.png.tmp",
        workdir / ".loss_curves.png.jaxart-x.png.tmp",
    ]
    for path in leftovers:
        path.write_bytes(b"half a png")
    theirs = workdir / "samples" / ".notes.x.tmp"
    theirs.write_text("the user's")
    (workdir / "samples" / "step_0000300.png").unlink()
    train(workdir, capsys=capsys)
    assert not any(path.exists() for path in leftovers)
    assert theirs.read_text() == "the user's"
    assert (workdir / "samples" / "step_0000300.png").stat().st_size > 0
