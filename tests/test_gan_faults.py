"""Faults during `python -m jaxart.gan train`: SIGKILL at ten moments chosen by what the run has
written (metrics lines, a checkpoint half-written, the last checkpoint done), each resumed to the
same bits as a run never interrupted; and a disk that fills up while checkpointing."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import FIXTURE, assert_same_bits, mount_tmpfs

from jaxart import cli
from jaxart.files import read_json_lines
from jaxart.gan import __main__ as gan_main
from jaxart.gan.checkpoint import load_latest

ROOT = Path(__file__).resolve().parent.parent
# A small model: 120 steps, checkpoints every 20 (3 kept), 64 steps an epoch on the fixture.
RUN = [
    "--data",
    FIXTURE,
    "--hidden-dim",
    "32",
    "--latent-dim",
    "8",
    "--max-steps",
    "120",
    "--checkpoint-every",
    "20",
    "--steps-per-call",
    "10",
]


def command(workdir: Path) -> list[str]:
    return [sys.executable, "-m", "jaxart.gan", "train", "--workdir", str(workdir), *map(str, RUN)]


def lines(workdir: Path) -> int:
    path = workdir / "metrics.jsonl"
    return path.read_bytes().count(b"\n") if path.exists() else 0


def saving(workdir: Path) -> set[int]:
    """Steps whose checkpoint orbax is writing now (its temporary folder)."""
    return {int(p.name.split(".")[0]) for p in (workdir / "checkpoints").glob("*.orbax-checkpoint-tmp*")}


def saved(workdir: Path) -> list[int]:
    return sorted(int(p.name) for p in (workdir / "checkpoints").glob("*") if p.name.isdigit())


# Moments to kill at, each a predicate on the workdir, in the order a run passes them.
EVENTS: dict[str, Callable[[Path], bool]] = {
    "first metrics line": lambda w: lines(w) >= 1,
    "mid first checkpoint": lambda w: 20 in saving(w),
    "after first checkpoint": lambda w: 20 in saved(w),
    "30 metrics lines": lambda w: lines(w) >= 30,
    "mid second checkpoint": lambda w: 40 in saving(w),
    "first epoch preview": lambda w: (w / "samples" / "epoch_001.png").exists(),
    "70 metrics lines": lambda w: lines(w) >= 70,
    "100 metrics lines": lambda w: lines(w) >= 100,
    "mid last checkpoint": lambda w: 120 in saving(w),
    "after last checkpoint": lambda w: 120 in saved(w),
}


def wait_for(event: str, process: subprocess.Popen, workdir: Path) -> None:
    """Returns once the run in `process` has reached `event`; fails if it ends or takes 2 minutes first."""
    deadline = time.monotonic() + 120
    while not EVENTS[event](workdir):
        assert process.poll() is None, f"the run ended before '{event}'"
        assert time.monotonic() < deadline, f"no '{event}' within 2 minutes"
        time.sleep(0.001)


def outcome(workdir: Path):
    """What a finished run leaves: its state, metrics (without times), kept checkpoints, previews."""
    state = jax.tree.map(np.asarray, load_latest(workdir))
    rows = [{k: v for k, v in row.items() if k != "seconds"} for row in read_json_lines(workdir / "metrics.jsonl")]
    samples = sorted(p.name for p in (workdir / "samples").iterdir())
    return state, rows, saved(workdir), samples


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run (a process of its own, which also fills the compile cache)."""
    workdir = tmp_path_factory.mktemp("faults") / "reference"
    subprocess.run(command(workdir), cwd=ROOT, check=True, capture_output=True)
    assert (workdir / "loss_curves.png").exists()
    return outcome(workdir)


@pytest.mark.parametrize("event", EVENTS)
def test_killed_run_resumes_to_the_same_bits(event, reference, tmp_path):
    workdir = tmp_path / "run"
    process = subprocess.Popen(command(workdir), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(event, process, workdir)
    finally:
        process.kill()
    assert process.wait() == -signal.SIGKILL, "the run ended before it could be killed"

    # The dead run's lock is gone with it; the resume finishes the run, previews and plot included.
    assert cli.run(gan_main.main, ["train", "--workdir", str(workdir), *map(str, RUN)]) == 0
    state, rows, checkpoints, samples = outcome(workdir)
    assert_same_bits(state, reference[0])
    assert rows == reference[1]
    assert checkpoints == reference[2] == [80, 100, 120]  # --keep-checkpoints 3, never 4
    assert samples == reference[3] == ["epoch_001.png", "step_0000120.png"]
    assert (workdir / "loss_curves.png").exists()


def test_full_disk_while_checkpointing_is_one_line_naming_the_last_good_step(reference, tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    if not mount_tmpfs(disk, "size=1600k"):
        pytest.skip("cannot mount a small file system here (needs root)")
    # room for two checkpoints of this model (~700 kB each), not three
    try:
        workdir = disk / "run"
        done = subprocess.run(command(workdir), cwd=ROOT, capture_output=True, text=True)
        assert done.returncode == 1, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr, done.stderr
        last = saved(workdir)[-1]
        assert "No space left on device" in done.stderr
        assert f"the last good checkpoint is step {last}" in done.stderr
        # Room again: the resume cleans orbax's leftover and finishes the same run.
        shutil.copytree(workdir, tmp_path / "moved")
    finally:
        subprocess.run(["umount", disk], check=True)
    assert cli.run(gan_main.main, ["train", "--workdir", str(tmp_path / "moved"), *map(str, RUN)]) == 0
    assert_same_bits(outcome(tmp_path / "moved")[0], reference[0])


# (event, signals sent one after the other): Ctrl-C and `kill` at moments of every kind, a
# checkpoint being saved included, and twice in a row.
INTERRUPTS = [
    ("first metrics line", (signal.SIGINT,)),
    ("mid first checkpoint", (signal.SIGINT,)),
    ("mid first checkpoint", (signal.SIGINT, signal.SIGINT)),
    ("30 metrics lines", (signal.SIGTERM,)),
    ("mid second checkpoint", (signal.SIGTERM,)),
    ("first epoch preview", (signal.SIGINT, signal.SIGTERM)),
    ("mid last checkpoint", (signal.SIGINT,)),
]


@pytest.mark.parametrize(
    "event, signals", INTERRUPTS, ids=[f"{e}-{'+'.join(s.name for s in g)}" for e, g in INTERRUPTS]
)
def test_interrupted_run_ends_in_one_line_and_resumes_to_the_same_bits(event, signals, reference, tmp_path):
    """SIGINT or SIGTERM, once or twice, ends the process within `jaxart.interrupts.DEADLINE`
    with one line (after the progress lines) and status 130; what it kept resumes to the uninterrupted run's bits."""
    from jaxart.interrupts import DEADLINE, INTERRUPTED

    workdir = tmp_path / "run"
    process = subprocess.Popen(command(workdir), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(event, process, workdir)
        for s in signals:
            process.send_signal(s)
            time.sleep(0.05)
        sent = time.monotonic()
        _, err = process.communicate(timeout=DEADLINE + 10)
        took = time.monotonic() - sent
    finally:
        process.kill()
    assert process.returncode in (INTERRUPTED, 0), err  # 0: the run had finished first
    if process.returncode == INTERRUPTED:  # the progress lines (on stderr off a terminal), then one
        said = [line for line in err.splitlines() if not line.startswith("epoch ")]
        assert len(said) == 1 and said[0].startswith("interrupted"), err
    assert took < DEADLINE, f"{took:.0f} s from the signal to the end"

    assert cli.run(gan_main.main, ["train", "--workdir", str(workdir), *map(str, RUN)]) == 0
    state, rows, checkpoints, samples = outcome(workdir)
    assert_same_bits(state, reference[0])
    assert rows == reference[1]
    assert checkpoints == reference[2]
    assert samples == reference[3]
