"""`train --eval-every` and `python -m jaxart.gan eval` on the MNIST fixture, with the committed MNIST judge."""

from __future__ import annotations

import shutil
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import FIXTURE

from jaxart import cli
from jaxart.files import read_json_lines
from jaxart.gan import __main__ as gan_main
from jaxart.gan import evaluate
from jaxart.gan.checkpoint import load_latest
from jaxart.gan.judge import load_judge, shipped_dir

RUN = ["--data", FIXTURE, "--max-steps", "150", "--steps-per-call", "25", "--checkpoint-every", "50"]
EVAL = ["--eval-every", "60", "--eval-samples", "200"]


@pytest.fixture(scope="module", autouse=True)
def mnist_judge():
    """The committed MNIST judge for the fixture's data, which would otherwise get (and cache) its own."""
    judge = load_judge(shipped_dir("mnist"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(evaluate, "load_or_train_judge", lambda *args, **kwargs: judge)
        yield judge


def run(argv) -> None:
    assert cli.run(gan_main.main, [str(a) for a in argv]) == 0


def state_and_metrics(workdir: Path):
    state = load_latest(workdir)
    rows = read_json_lines(workdir / "metrics.jsonl")
    return jax.tree.map(np.asarray, state), [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(plain, evaluated): the same 150-step run without and with --eval-every 60."""
    base = tmp_path_factory.mktemp("eval")
    run(["train", "--workdir", base / "plain", *RUN])
    run(["train", "--workdir", base / "evaluated", *RUN, *EVAL])
    return base / "plain", base / "evaluated"


def test_evaluation_leaves_training_bit_for_bit_alone(runs):
    plain, evaluated = (state_and_metrics(w) for w in runs)
    assert plain[1] == evaluated[1]
    for a, b in zip(jax.tree.leaves(plain[0]), jax.tree.leaves(evaluated[0])):
        np.testing.assert_array_equal(a, b)
    assert not (runs[0] / evaluate.REPORT_FILE).exists()


def test_eval_every_records_steps_and_matches_the_eval_command(runs, capsys):
    workdir = runs[1]
    records = read_json_lines(workdir / evaluate.REPORT_FILE)
    assert [r["step"] for r in records] == [60, 120, 150]  # every 60 steps, and the end
    assert all(r["num_samples"] == 200 and "precision" in r for r in records)
    assert (workdir / evaluate.FIGURE_FILE).stat().st_size > 0
    # Both draw the noise from the evaluation's own key: the command reproduces the last record.
    capsys.readouterr()
    run(["eval", "--workdir", workdir, "--num", "200"])
    assert capsys.readouterr().out.startswith("step 150: FCD ")
    assert read_json_lines(workdir / evaluate.REPORT_FILE)[-1] == records[-1]


def test_resume_does_not_repeat_evaluations(runs, tmp_path):
    workdir = tmp_path / "copy"
    shutil.copytree(runs[1], workdir)
    # As if killed after step 150's evaluation but before its checkpoint.
    shutil.rmtree(workdir / "checkpoints" / "150")
    run(["train", "--workdir", workdir, *RUN, *EVAL])
    steps = [r["step"] for r in read_json_lines(workdir / evaluate.REPORT_FILE)]
    assert steps == [60, 120, 150]


BAD_EVAL_INPUT = {
    "no checkpoint": (lambda t, w: ["--workdir", t], "no checkpoints in"),
    "missing workdir": (lambda t, w: ["--workdir", t / "nowhere"], "no checkpoints in"),
    "too few samples": (lambda t, w: ["--workdir", w, "--num", "5"], "--num 5 is too few"),
    "zero samples": (lambda t, w: ["--workdir", w, "--num", "0"], "--num: expected a positive"),
}


@pytest.mark.parametrize("case", BAD_EVAL_INPUT)
def test_bad_eval_input_is_one_line_and_writes_nothing(case, runs, tmp_path, capsys):
    make_args, message = BAD_EVAL_INPUT[case]
    before = (runs[1] / evaluate.REPORT_FILE).read_bytes()
    try:
        status = cli.run(gan_main.main, ["eval", *map(str, make_args(tmp_path, runs[1]))])
    except SystemExit as e:  # argparse's usage errors
        status = e.code
    err = capsys.readouterr().err
    assert status == 2
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert list(tmp_path.iterdir()) == [] and (runs[1] / evaluate.REPORT_FILE).read_bytes() == before


def test_eval_judges_the_moving_average_unless_raw(runs, tmp_path, capsys):
    workdir = tmp_path / "copy"
    shutil.copytree(runs[1], workdir)
    for flags in ([], ["--raw"]):
        run(["eval", "--workdir", workdir, "--num", "200", *flags])
    ema, raw = read_json_lines(workdir / evaluate.REPORT_FILE)[-2:]
    assert (ema["generator"], raw["generator"]) == ("ema", "raw")
    assert ema["fcd"] != raw["fcd"]
    assert "(ema generator)" in capsys.readouterr().out


def test_tensorboard_holds_the_evaluations(runs):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(runs[1] / "tb"), size_guidance={"scalars": 0})
    events.Reload()
    records = read_json_lines(runs[1] / evaluate.REPORT_FILE)[:3]
    for name in ("fcd", "inception_score", "precision", "recall"):
        logged = events.Scalars(f"eval/{name}")
        assert [e.step for e in logged] == [r["step"] for r in records]
        np.testing.assert_allclose([e.value for e in logged], [r[name] for r in records], rtol=1e-6)
