"""Every bad input and refused situation of `python -m jaxart.gan`, as one table per command.

Each case runs the command in this process and asserts its exit status (2: bad input, 1: a run
that could not go on), exactly one line on stderr holding the expected words, no traceback, and
that nothing was written: the case's workdir (or output folder) is byte for byte as before.
Add a case here for every new refusal, so the count can only grow.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import importlib
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import NamedTuple

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from conftest import FIXTURE

from jaxart import cli, data
from jaxart.cache import COMPILE_CACHE_ENV
from jaxart.checkpoint import Checkpoints
from jaxart.gan import __main__ as gan_main
from jaxart.gan.checkpoint import load_latest_run
from jaxart.gan.workdir import LOCK_FILE, locked

TINY = ["--data", FIXTURE, "--hidden-dim", "32", "--latent-dim", "8", "--steps-per-call", "10"]


def run_cli(argv: list) -> int:
    """The exit status of `python -m jaxart.gan argv`, run in this process."""
    try:
        status = cli.run(gan_main.main, [str(a) for a in argv])
    except SystemExit as e:  # argparse's usage errors
        status = e.code
    return status


def snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder` (empty when it does not exist), but the lock file,
    which a refused `train` may have held (and written its pid into) while it checked."""
    if not folder.exists():
        return {}
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in folder.rglob("*")
        if p.is_file() and p.name != LOCK_FILE
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A small finished run with checkpoints at steps 20 and 40."""
    workdir = tmp_path_factory.mktemp("bad-inputs") / "trained"
    assert run_cli(["train", "--workdir", workdir, *TINY, "--max-steps", "40", "--checkpoint-every", "20"]) == 0
    return workdir


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """`folder` read-only while inside: a read-only bind mount as root (who ignores modes),
    the mode bits otherwise."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        mode = folder.stat().st_mode
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(mode)
        return
    try:
        subprocess.run(["mount", "--bind", folder, folder], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("root, but cannot mount here: no read-only folder to test with")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", folder], check=True, capture_output=True)
        yield
    finally:
        subprocess.run(["umount", folder], check=True, capture_output=True)


def copy_run(trained: Path, tmp: Path) -> Path:
    workdir = tmp / "run"
    shutil.copytree(trained, workdir)
    return workdir


def largest_state_file(workdir: Path, step: int = 40) -> Path:
    files = [p for p in (workdir / "checkpoints" / str(step) / "state").rglob("*") if p.is_file()]
    return max(files, key=lambda p: p.stat().st_size)


def flip_bytes(workdir: Path) -> None:
    """Inverts 4,096 bytes in the middle of the latest checkpoint's largest data file."""
    path = largest_state_file(workdir)
    raw = bytearray(path.read_bytes())
    middle = len(raw) // 2
    raw[middle : middle + 4096] = bytes(255 - b for b in raw[middle : middle + 4096])
    path.write_bytes(bytes(raw))


def truncate(workdir: Path) -> None:
    path = largest_state_file(workdir)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def save_old_layout(workdir: Path, transform: Callable, meta_update: Callable = lambda m: m) -> None:
    """Replaces the latest checkpoint by one in the layout of earlier versions (no state
    checksum in its meta), its state passed through `transform`."""
    state, meta = load_latest_run(workdir)
    meta = meta_update({k: v for k, v in meta.items() if k != "state_sha256"})
    state = transform(state)
    shutil.rmtree(workdir / "checkpoints" / "40")
    with Checkpoints(workdir) as checkpoints:
        checkpoints.manager.save(
            40, args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
        )


def nan_generator(state):
    return state.replace(g_params=jax.tree.map(lambda p: np.full_like(p, np.nan), state.g_params))


def idx_folder(tmp: Path, name: str, files: dict[str, bytes]) -> Path:
    folder = tmp / name
    folder.mkdir()
    for file, content in files.items():
        (folder / file).write_bytes(content)
    return folder


def fixture_file(name: str) -> bytes:
    return (FIXTURE / f"{name}.gz").read_bytes()


def idx_bytes(array: np.ndarray, dims: tuple[int, ...] | None = None) -> bytes:
    """An unsigned-byte IDX file of `array`, its header saying `dims` (default: the true shape)."""
    dims = array.shape if dims is None else dims
    return bytes([0, 0, 8, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims) + array.tobytes()


def idx_images(t: Path, name: str, images: bytes) -> Path:
    """A data folder of the fixture's training labels and the images file `images`."""
    return idx_folder(
        t,
        name,
        {"train-images-idx3-ubyte": images, "train-labels-idx1-ubyte.gz": fixture_file("train-labels-idx1-ubyte")},
    )


class Case(NamedTuple):
    """argv(tmp, trained) -> the command line; the status and words expected on stderr."""

    argv: Callable[[Path, Path], list]
    status: int
    message: str
    absent: str = "\0"  # words that must not appear


TRAIN = "train", "--workdir"
CASES = {
    # --- train: data --------------------------------------------------------------------------
    "train: missing data folder": Case(lambda t, w: [*TRAIN, t / "run", "--data", t / "nowhere"], 2, "unknown data"),
    "train: unknown data name": Case(
        lambda t, w: [*TRAIN, t / "run", "--data", "cifar10"], 2, "unknown data 'cifar10'"
    ),
    "train: empty data folder": Case(
        lambda t, w: [*TRAIN, t / "run", "--data", idx_folder(t, "empty", {})],
        2,
        "lacks train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz]",
    ),
    "train: labels missing": Case(
        lambda t, w: [
            *TRAIN,
            t / "run",
            "--data",
            idx_folder(t, "nolabels", {"train-images-idx3-ubyte.gz": fixture_file("train-images-idx3-ubyte")}),
        ],
        2,
        "lacks train-labels-idx1-ubyte[.gz]",
        absent="images-idx3",
    ),
    "train: not IDX": Case(
        lambda t, w: [
            *TRAIN,
            t / "run",
            "--data",
            idx_folder(t, "junk", {"train-images-idx3-ubyte": b"junk", "train-labels-idx1-ubyte": b"x"}),
        ],
        2,
        "is not an unsigned-byte IDX file",
    ),
    "train: truncated IDX": Case(
        lambda t, w: [
            *TRAIN,
            t / "run",
            "--data",
            idx_folder(
                t,
                "cut",
                {
                    "train-images-idx3-ubyte": gzip.decompress(fixture_file("train-images-idx3-ubyte"))[:5000],
                    "train-labels-idx1-ubyte.gz": fixture_file("train-labels-idx1-ubyte"),
                },
            ),
        ],
        2,
        "is truncated",
    ),
    "train: 32x32 IDX images": Case(
        lambda t, w: [*TRAIN, t / "run", "--data", idx_images(t, "big", idx_bytes(np.zeros((2048, 32, 32), np.uint8)))],
        2,
        "train-images-idx3-ubyte' holds an array of shape (2048, 32, 32); expected images of shape (N, 28, 28)",
    ),
    "train: IDX header promising more than the file holds": Case(
        lambda t, w: [
            *TRAIN,
            t / "run",
            "--data",
            idx_images(t, "lies", idx_bytes(np.zeros(0, np.uint8), (2**31, 2**31, 2**31))),
        ],
        2,
        "its header promises shape (2147483648, 2147483648, 2147483648)",
    ),
    "train: damaged .gz": Case(
        lambda t, w: [
            *TRAIN,
            t / "run",
            "--data",
            idx_folder(
                t,
                "gz",
                {
                    "train-images-idx3-ubyte.gz": b"\x1f\x8b\x08\x00" + bytes(6) + b"\xff" * 100,
                    "train-labels-idx1-ubyte.gz": fixture_file("train-labels-idx1-ubyte"),
                },
            ),
        ],
        2,
        "cannot read IDX file",
    ),
    "train: batch larger than the data": Case(
        lambda t, w: [*TRAIN, t / "run", *TINY, "--batch-size", "4096"], 2, "fewer than --batch-size 4096"
    ),
    # --- train: numbers -----------------------------------------------------------------------
    "train: zero epochs": Case(
        lambda t, w: [*TRAIN, t / "run", *TINY, "--epochs", "0"], 2, "--epochs: expected a positive integer"
    ),
    "train: negative lr": Case(
        lambda t, w: [*TRAIN, t / "run", *TINY, "--lr", "-1"], 2, "--lr: expected a finite number"
    ),
    "train: lr beyond float32": Case(
        lambda t, w: [*TRAIN, t / "run", *TINY, "--lr", "1e39"], 2, "does not fit float32"
    ),
    "train: infinite lr": Case(
        lambda t, w: [*TRAIN, t / "run", *TINY, "--lr", "inf"], 2, "--lr: expected a finite number"
    ),
    "train: text latent size": Case(
        lambda t, w: [*TRAIN, t / "run", *TINY, "--latent-dim", "x"], 2, "--latent-dim: expected a positive integer"
    ),
    "train: unknown model": Case(
        lambda t, w: [*TRAIN, t / "run", *TINY, "--model", "gan3"], 2, "invalid choice: 'gan3'"
    ),
    "train: dcgan too narrow": Case(
        lambda t, w: [*TRAIN, t / "run", *TINY, "--model", "dcgan", "--hidden-dim", "2"],
        2,
        "--model dcgan needs --hidden-dim of at least 4",
    ),
    "train: b1 of 1": Case(
        lambda t, w: [*TRAIN, t / "run", *TINY, "--b1", "1"], 2, "--b1: expected a number in [0, 1)"
    ),
    "train: class weight without --conditional": Case(
        lambda t, w: [*TRAIN, t / "run", *TINY, "--class-weight", "1"],
        2,
        "--class-weight weighs the class loss of --conditional models only",
    ),
    "train: negative class weight": Case(
        lambda t, w: [*TRAIN, t / "run", *TINY, "--conditional", "--class-weight", "-0.5"],
        2,
        "--class-weight: expected a finite number >= 0",
    ),
    "train: too few eval samples": Case(
        lambda t, w: [*TRAIN, t / "run", *TINY, "--eval-every", "10", "--eval-samples", "5"],
        2,
        "--eval-samples 5 is too few",
    ),
    "train: unknown flag": Case(lambda t, w: [*TRAIN, t / "run", "--no-such-flag", "3"], 2, "unrecognized arguments"),
    # --- train: the workdir ---------------------------------------------------------------------
    "train: workdir is a file": Case(
        lambda t, w: [*TRAIN, idx_folder(t, "f", {"file": b"x"}) / "file", *TINY], 2, "file' is not a folder"
    ),
    "train: workdir under a file": Case(
        lambda t, w: [*TRAIN, idx_folder(t, "f", {"file": b"x"}) / "file" / "run", *TINY], 2, "is not a folder"
    ),
    "train: resume with another hidden size": Case(
        lambda t, w: [*TRAIN, w, *TINY, "--hidden-dim", "16"], 2, "holds a run with --hidden-dim 32, not 16"
    ),
    "train: resume with another seed": Case(
        lambda t, w: [*TRAIN, w, *TINY, "--seed", "1"], 2, "holds a run with --seed 0, not 1"
    ),
    "train: resume on other data": Case(
        lambda t, w: [
            *TRAIN,
            w,
            *TINY,
            "--data",
            idx_folder(
                t,
                "other",
                {
                    "train-images-idx3-ubyte.gz": fixture_file("t10k-images-idx3-ubyte"),
                    "train-labels-idx1-ubyte.gz": fixture_file("t10k-labels-idx1-ubyte"),
                },
            ),
        ],
        2,
        "trained on other data",
    ),
}


def _with_workdir(prepare: Callable[[Path], None], argv: Callable[[Path, Path], list]) -> Callable:
    """A case on a copy of the trained run, damaged by `prepare` first."""

    def make(t: Path, trained: Path) -> list:
        workdir = copy_run(trained, t)
        prepare(workdir)
        return argv(t, workdir)

    return make


def _garbage(workdir: Path) -> None:
    for file in (workdir / "checkpoints" / "40" / "state").rglob("*"):
        if file.is_file() and file.parent.name == "d":
            file.write_bytes(b"garbage")


def _future_version(workdir: Path) -> None:
    save_old_layout(workdir, lambda s: s, lambda m: {**m, "config": {**m["config"], "dropout": 0.5}})


for command, argv in {
    "train": lambda t, w: [*TRAIN, w, *TINY, "--max-steps", "60"],
    "sample": lambda t, w: ["sample", "--workdir", w, "--out", t / "s.npy"],
    "eval": lambda t, w: ["eval", "--workdir", w, "--num", "100"],
}.items():
    CASES |= {
        f"{command}: garbage in the checkpoint": Case(
            _with_workdir(_garbage, argv), 2, "checkpoints/40' cannot be read", absent="<"
        ),
        f"{command}: truncated checkpoint file": Case(
            _with_workdir(truncate, argv), 2, "checkpoints/40' cannot be read", absent="<bound method"
        ),
        f"{command}: 4,096 bytes flipped in the checkpoint": Case(
            _with_workdir(flip_bytes, argv), 2, "fall back to step 20"
        ),
        f"{command}: NaN in an old-layout checkpoint": Case(
            _with_workdir(lambda w: save_old_layout(w, nan_generator), argv), 2, "holds NaN or infinity"
        ),
        f"{command}: checkpoint of another version": Case(
            _with_workdir(_future_version, argv), 2, "written by another jaxart version"
        ),
    }

CASES |= {
    # --- sample ---------------------------------------------------------------------------------
    "sample: no checkpoint": Case(
        lambda t, w: ["sample", "--workdir", t, "--out", t / "s.npy"], 2, "no checkpoints in"
    ),
    "sample: missing workdir": Case(
        lambda t, w: ["sample", "--workdir", t / "nowhere", "--out", t / "s.npy"], 2, "no checkpoints in"
    ),
    "sample: --digit of an unconditional run": Case(
        lambda t, w: ["sample", "--workdir", w, "--digit", "3", "--out", t / "s.png"],
        2,
        "--digit needs a class-conditional run",
    ),
    "sample: blank --digit": Case(
        lambda t, w: ["sample", "--workdir", w, "--digit", " ", "--out", t / "s.png"], 2, "expected a class"
    ),
    "sample: bad extension": Case(
        lambda t, w: ["sample", "--workdir", w, "--out", t / "s.jpg"], 2, "unknown extension '.jpg'"
    ),
    # (A missing output folder is made when the samples are written: tests/test_first_run.py.)
    "sample: output folder under a file": Case(
        lambda t, w: ["sample", "--workdir", w, "--out", idx_folder(t, "f", {"file": b"x"}) / "file" / "s.npy"],
        2,
        "is not a folder",
    ),
    "sample: output is a folder": Case(
        lambda t, w: ["sample", "--workdir", w, "--out", t],
        2,
        "is a directory; outputs are written only as regular files",
    ),
    "sample: zero images": Case(
        lambda t, w: ["sample", "--workdir", w, "--num", "0", "--out", t / "s.npy"], 2, "--num: expected a positive"
    ),
    "sample: a .png grid larger than Pillow reads": Case(
        lambda t, w: ["sample", "--workdir", w, "--num", 10**8, "--out", t / "s.png"],
        2,
        "--num 100000000 images make a grid of 90,001,200,004 pixels",
    ),
    "sample: no --out": Case(lambda t, w: ["sample", "--workdir", w], 2, "the following arguments are required: --out"),
    # --- eval -----------------------------------------------------------------------------------
    "eval: no checkpoint": Case(lambda t, w: ["eval", "--workdir", t], 2, "no checkpoints in"),
    "eval: missing workdir": Case(lambda t, w: ["eval", "--workdir", t / "nowhere"], 2, "no checkpoints in"),
    "eval: too few samples": Case(lambda t, w: ["eval", "--workdir", w, "--num", "5"], 2, "--num 5 is too few"),
    "eval: zero samples": Case(lambda t, w: ["eval", "--workdir", w, "--num", "0"], 2, "--num: expected a positive"),
    "eval: 32x32 IDX images as --data": Case(
        lambda t, w: [
            "eval",
            "--workdir",
            w,
            "--num",
            "100",
            "--data",
            idx_images(t, "big", idx_bytes(np.zeros((2048, 32, 32), np.uint8))),
        ],
        2,
        "expected images of shape (N, 28, 28)",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_input(case, trained, tmp_path, capsys):
    """One line, the status, no traceback, nothing written (the trained run is untouched too)."""
    argv = CASES[case].argv(tmp_path, trained)
    before, trained_before = snapshot(tmp_path), snapshot(trained)
    status = run_cli(argv)
    out, err = capsys.readouterr()
    assert status == CASES[case].status, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert CASES[case].message in err and CASES[case].absent not in err, err
    assert snapshot(tmp_path) == before and snapshot(trained) == trained_before


# --- cases that need a situation rather than arguments ---------------------------------------------


def assert_one_line(status: int, expected: int, capsys) -> str:
    err = capsys.readouterr().err
    assert status == expected, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("resumed", [False, True], ids=["new", "resumed"])
def test_train_into_a_read_only_workdir(resumed, trained, tmp_path, capsys):
    parent = tmp_path / "ro"
    parent.mkdir()
    workdir = parent / "run"
    if resumed:
        shutil.copytree(trained, workdir)
    before = snapshot(parent)
    with read_only(parent):
        err = assert_one_line(run_cli([*TRAIN, workdir, *TINY, "--max-steps", "60"]), 2, capsys)
    assert "not writable" in err and snapshot(parent) == before


def test_sample_into_and_eval_in_a_read_only_folder(trained, tmp_path, capsys):
    out = tmp_path / "out"
    workdir = copy_run(trained, tmp_path)
    before = snapshot(workdir)
    with read_only(out):
        err = assert_one_line(run_cli(["sample", "--workdir", trained, "--out", out / "s.png"]), 2, capsys)
        assert "'--out' folder" in err or "is not writable" in err
    with read_only(workdir):
        err = assert_one_line(run_cli(["eval", "--workdir", workdir, "--num", "100"]), 2, capsys)
        assert "--workdir" in err and "is not writable" in err
    assert list(out.iterdir()) == [] and snapshot(workdir) == before


def test_a_second_train_on_a_locked_workdir_is_refused(trained, tmp_path, capsys):
    workdir = copy_run(trained, tmp_path)
    before = snapshot(workdir / "checkpoints"), (workdir / "metrics.jsonl").read_bytes()
    with locked(workdir):  # as another `train` holds it
        err = assert_one_line(run_cli([*TRAIN, workdir, *TINY, "--max-steps", "60"]), 1, capsys)
    assert f"is in use by another train run (pid {os.getpid()})" in err
    assert (snapshot(workdir / "checkpoints"), (workdir / "metrics.jsonl").read_bytes()) == before


def test_diverging_run_stops_at_the_first_non_finite_loss(tmp_path, capsys):
    workdir = tmp_path / "run"
    # --lr 1e38 fits float32, but one Adam step of that size overflows the networks.
    err = assert_one_line(run_cli([*TRAIN, workdir, *TINY, "--max-steps", "30", "--lr", "1e38"]), 1, capsys)
    assert "training diverged: g_loss is nan at step 1" in err and "no checkpoint was saved" in err
    assert not (workdir / "checkpoints").exists() or not any((workdir / "checkpoints").iterdir())
    assert (workdir / "metrics.jsonl").read_text() == ""


def test_offline_download_is_one_line_leaves_no_folder_and_prints_nothing(monkeypatch, tmp_path, capsys):
    """Neither data set is here (an empty cache, no $JAXART_DATA); torchvision's attempt fails offline."""
    import socket

    def offline(*args, **kwargs):
        raise OSError("network is unreachable (test)")

    monkeypatch.setattr(socket, "create_connection", offline)
    monkeypatch.setattr(socket.socket, "connect", offline)
    monkeypatch.setenv("JAXART_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("JAXART_DATA", raising=False)
    monkeypatch.setattr(data, "SYSTEM_DATA", tmp_path / "datasets")
    monkeypatch.setenv(COMPILE_CACHE_ENV, "1")  # restored after the test: --no-compile-cache sets it to 0
    for name in ("fashion-mnist", "mnist"):
        status = run_cli([*TRAIN, tmp_path / "run", "--data", name, "--no-compile-cache"])
        out, err = capsys.readouterr()
        assert status == 2 and len(err.strip().splitlines()) == 1, err
        assert f"{name} is not on this machine and could not be downloaded" in err
        assert out == "" and "Downloading" not in err
    assert not (tmp_path / "cache" / "data").exists() and not (tmp_path / "run").exists()


def test_a_damaged_judge_cache_is_one_line(tmp_path, monkeypatch, capsys):
    """A judge whose arrays were damaged, but still decode, was loaded and judged with."""
    import jax.numpy as jnp

    from jaxart.gan import judge as judge_lib

    monkeypatch.setenv("JAXART_CACHE", str(tmp_path / "cache"))
    checksum = data.load(str(FIXTURE)).checksum()
    config = judge_lib.JudgeConfig()
    meta = {"train_checksum": checksum, "config": judge_lib._config_json(config), "test_accuracy": 0.1}
    folders = []
    for name, seed in (("cached", 0), ("other", 1)):
        params = judge_lib._make_model(config).init(jax.random.key(seed), jnp.zeros((1, *data.IMAGE_SHAPE)))["params"]
        folders.append(judge_lib.save_judge(tmp_path / name, judge_lib.Judge(config, params, meta)))
    # Other arrays under the cached judge's judge.json: damage that decodes, whichever bytes it hit
    # (flipped bytes may land in a compressed block, which orbax refuses by itself).
    folder = judge_lib.default_cache_dir(str(FIXTURE), checksum)
    folder.parent.mkdir(parents=True)
    shutil.rmtree(folders[0] / "params")
    shutil.move(folders[1] / "params", folders[0] / "params")
    shutil.move(folders[0], folder)
    before = snapshot(folder)
    err = assert_one_line(run_cli(["judge", "--data", FIXTURE]), 2, capsys)
    assert f"the judge cache folder {str(folder)!r} is damaged" in err and snapshot(folder) == before


@pytest.mark.parametrize("out, num", [("s.npy", 5000), ("s.png", 10_000)])
def test_sample_onto_a_full_disk_is_one_line_and_leaves_nothing(out, num, trained, full_disk, monkeypatch, capsys):
    """A .npy failed with numpy's "requested and written" (exit 2), a .png without naming the file."""
    # A .npy larger than the free space is refused before any work: here the disk fills up during
    # the write, as when something else fills it meanwhile.
    monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(total=2**40, used=0, free=2**40))
    err = assert_one_line(run_cli(["sample", "--workdir", trained, "--num", num, "--out", full_disk / out]), 1, capsys)
    assert f"could not write {str(full_disk / out)!r} (No space left on device)" in err
    assert list(full_disk.iterdir()) == []


def test_sample_draws_fixed_size_batches_as_eval_does(trained, tmp_path, monkeypatch, capsys):
    """`sample --num N` asked the generator for all N images at once: 10^8 aborted in XLA."""
    from jaxart.gan.evaluate import sample_images

    train = importlib.import_module("jaxart.gan.train")  # (jaxart.gan.train is also a function)

    sizes, original = [], train.sample_state
    monkeypatch.setattr(
        train, "sample_state", lambda state, key, n, *rest: sizes.append(n) or original(state, key, n, *rest)
    )
    assert run_cli(["sample", "--workdir", trained, "--num", 2500, "--out", tmp_path / "s.npy"]) == 0, (
        capsys.readouterr()
    )
    assert sizes == [1000, 1000, 1000]
    state = load_latest_run(trained)[0]
    expected = sample_images(lambda key, n: original(state, key, n), jax.random.key(0), 2500, 1000)
    np.testing.assert_array_equal(np.load(tmp_path / "s.npy"), expected)


def test_sample_of_a_npy_larger_than_the_disk_is_refused_before_any_work(trained, tmp_path, monkeypatch, capsys):
    train = importlib.import_module("jaxart.gan.train")  # (jaxart.gan.train is also a function)

    monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(total=2**30, used=0, free=2**30))
    monkeypatch.setattr(train, "sample_state", lambda *args: pytest.fail("sampled first"))
    err = assert_one_line(
        run_cli(["sample", "--workdir", trained, "--num", 10**8, "--out", tmp_path / "s.npy"]), 2, capsys
    )
    assert (
        "--num 100000000 images make 292.1 GiB, over the 1.0 GiB free" in err and "at most 342392 fit in a .npy" in err
    )
    assert list(tmp_path.iterdir()) == []
