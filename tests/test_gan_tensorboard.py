"""`train` writes TensorBoard event files beside metrics.jsonl, read back with TensorBoard's own reader."""

from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
from conftest import FIXTURE
from PIL import Image
from test_gan_cli import run_cli

from jaxart.files import read_json_lines
from jaxart.images import make_grid

EventAccumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator").EventAccumulator

# The fixture's 2,048 images: 64 steps an epoch, so previews at 64, 128 and the end.
RUN = ["--data", FIXTURE, "--epochs", "5", "--steps-per-call", "10", "--checkpoint-every", "50"]
METRICS = ("d_loss", "g_loss", "d_x", "d_g_z")


def read_events(workdir):
    events = EventAccumulator(str(workdir / "tb"), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    return events


def test_scalars_are_the_metrics_lines_and_images_the_sample_grids(tmp_path, capsys):
    workdir = tmp_path / "run"
    status, err = run_cli(["train", "--workdir", workdir, *RUN, "--max-steps", "140"], capsys)
    assert status == 0, err
    events = read_events(workdir)
    rows = read_json_lines(workdir / "metrics.jsonl")
    assert set(events.Tags()["scalars"]) == set(METRICS)
    for name in METRICS:
        logged = events.Scalars(name)
        assert [e.step for e in logged] == [row["step"] for row in rows] == list(range(1, 141))
        np.testing.assert_array_equal([e.value for e in logged], np.float32([row[name] for row in rows]))
    images = events.Images("samples")
    assert [e.step for e in images] == [64, 128, 140]
    last = np.asarray(Image.open(io.BytesIO(images[-1].encoded_image_string)))
    grid = np.asarray(Image.open(workdir / "samples" / "step_0000140.png"))
    assert last.shape == grid.shape == make_grid(np.zeros((64, 28, 28)), ncols=8).shape
    np.testing.assert_array_equal(last, grid)


def test_a_resumed_run_hides_what_the_stopped_one_wrote_after_its_checkpoint(tmp_path, capsys):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert run_cli(["train", "--workdir", straight, *RUN, "--max-steps", "140"], capsys)[0] == 0
    assert run_cli(["train", "--workdir", resumed, *RUN, "--max-steps", "130"], capsys)[0] == 0
    # Killed after step 130's events but before its checkpoint: the run resumes from step 100.
    shutil.rmtree(resumed / "checkpoints" / "130")
    assert run_cli(["train", "--workdir", resumed, *RUN, "--max-steps", "140"], capsys)[0] == 0
    assert len(list((resumed / "tb").iterdir())) == 2
    a, b = read_events(straight), read_events(resumed)
    for name in METRICS:
        assert [(e.step, e.value) for e in b.Scalars(name)] == [(e.step, e.value) for e in a.Scalars(name)]
    assert [e.step for e in b.Images("samples")] == [64, 128, 140]


def test_no_tensorboard_writes_no_event_files(tmp_path, capsys):
    workdir = tmp_path / "run"
    status, err = run_cli(["train", "--workdir", workdir, *RUN, "--max-steps", "20", "--no-tensorboard"], capsys)
    assert status == 0, err
    assert not (workdir / "tb").exists()
    assert (workdir / "metrics.jsonl").exists()
