"""The first ten minutes of a style run: the default preset, the size-scaled style weight,
progress without a terminal, work kept at intervals and on interruption, and --resume."""

from __future__ import annotations

import io
import os
import signal

import jax
import numpy as np
import pytest
from PIL import Image

from jaxart import cli, progress, weights
from jaxart.files import read_json_lines
from jaxart.style import driver, loop, resume
from jaxart.style.__main__ import main, parse_args
from jaxart.style.config import StyleConfig, resolve_preset, size_scaled_style_weight


@pytest.fixture(scope="module")
def params():
    return weights.random_params(seed=0)


def run(capsys, *argv) -> tuple[int, str, str]:
    try:
        code = cli.run(main, list(argv))
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


# --- defaults ------------------------------------------------------------------------------------


def test_the_default_preset_is_quick_on_a_cpu_and_fast_elsewhere():
    assert resolve_preset("auto", "cpu") == "quick"
    assert resolve_preset("auto", "gpu") == resolve_preset("auto", "tpu") == "fast"
    assert resolve_preset("seed", "cpu") == "seed"
    config, _ = driver.config_from_args(parse_args([]))
    assert (config.optimizer, config.lbfgs_step, config.max_size, config.steps) == ("lbfgs", "zoom", 256, 45)
    assert config.init == "recolored"
    assert driver.config_from_args(parse_args(["--init", "content"]))[0].init == "content"


def test_a_style_weight_not_given_follows_the_size_except_in_the_seed_preset():
    caffe = {"content_weight": 1.0, "style_weight": 1e-5}
    assert size_scaled_style_weight(1e-5, 400) == 1e-5
    assert size_scaled_style_weight(1e-5, 160) == pytest.approx(6.25e-5)
    at_200, _ = driver.config_from_args(parse_args(["--max-size", "200"]), caffe)
    assert at_200.style_weight == pytest.approx(4e-5)
    given, _ = driver.config_from_args(parse_args(["--max-size", "200", "--style-weight", "3e-5"]), caffe)
    assert given.style_weight == 3e-5
    seed, _ = driver.config_from_args(parse_args(["--preset", "seed", "--max-size", "128"]))
    assert seed == StyleConfig(max_size=128)  # the seed's 100 at every size


# --- progress ------------------------------------------------------------------------------------


def test_durations_read_as_a_person_says_them():
    assert [progress.duration(s) for s in (4.4, 59.6, 200, 3 * 3600 + 28 * 60)] == [
        "4 s",
        "1 min 00 s",
        "3 min 20 s",
        "3 h 28 min",
    ]


def test_without_a_terminal_progress_is_a_plain_line_every_few_seconds():
    stream = io.StringIO()  # not a terminal: no bar
    with progress.Progress(10, "work", every=0.0, stream=stream) as p:
        p.update(1, {"loss": "50%"})
        p.update(4, {"loss": "20%"})
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("work: step 1/10 (10%), loss 50%")
    assert lines[1].startswith("work: step 4/10 (40%), loss 20%") and "left" in lines[1]
    quiet = io.StringIO()
    with progress.Progress(10, "work", every=3600.0, stream=quiet) as p:
        p.update(1)
        p.update(5)
    assert quiet.getvalue().count("\n") == 0  # within the interval, nothing more is said


def test_relative_losses_are_shares_not_raw_numbers():
    history = {
        "loss": np.array([[10.0, 4.0]]),
        "content_loss": np.array([[0.0, 1.0]]),
        "style_loss": np.array([[100.0, 3.0]]),
    }
    first = {k: v[..., 0] for k, v in history.items()}
    parts = driver.relative_losses(first, history, np.array([2.0]))
    assert parts == {"loss": "40% of start", "style": "3% of start", "content": "50% of loss"}


def test_a_run_says_what_it_will_do_and_how_long_it_will_take(capsys, tmp_path, pair_files):
    content, style = pair_files
    out = tmp_path / "out.png"
    code, _, err = run(
        capsys,
        *("--content", content, "--style", style, "--output", str(out), "--weights", "random"),
        *("--preset", "seed", "--max-size", "32", "--steps", "4"),
    )
    assert code == 0, err
    lines = err.splitlines()
    plan = next(line for line in lines if line.startswith("stylising 32x24: 4 Adam steps"))
    assert "style weight 100" in plan and "random VGG19" in plan and "on cpu" in plan.lower()
    assert any(line.startswith("about ") and "to go" in line for line in lines), err
    assert any(line.startswith("stylising 32x24: step 4/4 (100%)") for line in lines), err


# --- kept work and --resume ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options, at",
    [
        (dict(steps=6), 2),
        (dict(steps=6, optimizer="lbfgs"), 2),
        (dict(steps=6, ema=0.5, lr=0.05), 3),
        (dict(steps=6, pyramid=34), 2),  # levels at 34 and 48 px: step 2 inside the first,
        (dict(steps=6, pyramid=34), 3),  # step 3 at its end
    ],
    ids=["adam", "lbfgs", "ema", "pyramid-inside-a-level", "pyramid-between-levels"],
)
def test_a_resumed_run_gives_the_bits_of_an_uninterrupted_one(params, options, at):
    rng = np.random.default_rng(0)
    contents, styles = rng.random((2, 1, 32, 48, 3), dtype=np.float32)
    config = StyleConfig(max_size=48, **options)
    whole = list(loop.iterate(contents, list(styles), params, config))
    expected = loop.result_images(whole[-1][1], contents, config)

    calls = loop.iterate(contents, list(styles), params, config)
    for done, states, _ in calls:
        if done == at:
            leaves = jax.device_get(jax.tree.leaves(states))
            break
    calls.close()
    rest = list(loop.iterate(contents, list(styles), params, config, resume=(at, leaves)))
    assert rest[0][0] > at and rest[-1][0] == config.steps
    np.testing.assert_array_equal(loop.result_images(rest[-1][1], contents, config), expected)


def _interrupt_after(monkeypatch, calls: int):
    """Makes the next run raise KeyboardInterrupt (as Ctrl-C does) after `calls` compiled calls."""
    real = loop.iterate

    def interrupted(*args, **kwargs):
        for k, item in enumerate(real(*args, **kwargs), 1):
            yield item
            if k == calls:
                raise KeyboardInterrupt

    monkeypatch.setattr(driver.loop, "iterate", interrupted)


def test_ctrl_c_keeps_the_picture_and_resume_finishes_it_as_if_never_stopped(capsys, tmp_path, pair_files, monkeypatch):
    content, style = pair_files
    common = ["--content", content, "--style", style, "--weights", "random", "--max-size", "32", "--steps", "6"]
    code, _, err = run(capsys, *common, "--output", str(tmp_path / "whole.png"), "--metrics", str(tmp_path / "w.jsonl"))
    assert code == 0, err

    out = tmp_path / "out.png"
    with monkeypatch.context() as m:
        _interrupt_after(m, 3)
        code, _, err = run(capsys, *common, "--output", str(out), "--autosave", "0")
    assert code == 130
    assert err.strip().splitlines()[-1] == (
        f"interrupted: kept step 3 of 6 in {tmp_path / 'out.partial.png'}; the same command with --resume goes on"
    )
    assert not out.exists() and (tmp_path / "out.partial.png").is_file() and (tmp_path / "out.partial.npz").is_file()

    code, _, err = run(capsys, *common, "--output", str(out))
    assert code == 2 and "--resume" in err and "out.partial.npz" in err  # the kept run is not overwritten
    code, _, err = run(capsys, *common, "--output", str(out), "--steps", "6", "--lr", "0.1", "--resume")
    assert code == 2 and "--lr" in err and err.count("\n") == 1

    code, _, err = run(capsys, *common, "--output", str(out), "--resume", "--metrics", str(tmp_path / "r.jsonl"))
    assert code == 0, err
    assert "from step 3" in err
    np.testing.assert_array_equal(np.asarray(Image.open(out)), np.asarray(Image.open(tmp_path / "whole.png")))
    assert not (tmp_path / "out.partial.png").exists() and not (tmp_path / "out.partial.npz").exists()
    # The metrics of a resumed run cover all its steps, with the same losses.
    whole, resumed = read_json_lines(tmp_path / "w.jsonl"), read_json_lines(tmp_path / "r.jsonl")
    assert [r["step"] for r in resumed] == list(range(6))
    assert [r["loss"] for r in resumed] == [r["loss"] for r in whole]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_inside_a_calls_dispatch_keeps_that_calls_result(capsys, tmp_path, pair_files, monkeypatch, signum):
    # The signal lands after the next call has taken (donated) the latest state and before its
    # result reaches the driver: the old driver lost both and kept nothing (CI, under load).
    content, style = pair_files
    out = tmp_path / "out.png"
    real = loop.iterate

    def signalled(*args, **kwargs):
        for k, item in enumerate(real(*args, **kwargs), 1):
            if k == 3:
                os.kill(os.getpid(), signum)
            yield item

    monkeypatch.setattr(driver.loop, "iterate", signalled)
    code, _, err = run(
        capsys,
        *("--content", content, "--style", style, "--weights", "random", "--max-size", "32", "--steps", "6"),
        *("--output", str(out), "--autosave", "0"),
    )
    assert code == 130
    assert err.strip().splitlines()[-1] == (
        f"interrupted: kept step 3 of 6 in {tmp_path / 'out.partial.png'}; the same command with --resume goes on"
    )
    assert resume.state_path(out).is_file() and not out.exists()


def test_autosave_keeps_the_work_while_the_run_goes_on(capsys, tmp_path, pair_files, monkeypatch):
    content, style = pair_files
    out = tmp_path / "out.png"
    seen = []
    real = loop.iterate

    def watched(*args, **kwargs):
        for item in real(*args, **kwargs):
            yield item
            seen.append(resume.state_path(out).exists())

    monkeypatch.setattr(driver.loop, "iterate", watched)
    code, _, err = run(
        capsys,
        *("--content", content, "--style", style, "--weights", "random", "--max-size", "32", "--steps", "4"),
        *("--output", str(out), "--autosave", "1e-9"),
    )
    assert code == 0, err
    assert any(seen), "no state was kept during the run"
    assert out.is_file() and not resume.state_path(out).exists() and not resume.partial_path(out).exists()


def test_resume_refuses_what_it_cannot_go_on_with(capsys, tmp_path, pair_files):
    content, style = pair_files
    out = tmp_path / "out.png"
    common = ["--content", content, "--style", style, "--weights", "random", "--max-size", "32", "--output", str(out)]
    code, _, err = run(capsys, *common, "--resume")
    assert code == 2 and "nothing to resume" in err and err.count("\n") == 1
    resume.state_path(out).write_bytes(b"not a state")
    code, _, err = run(capsys, *common, "--resume")
    assert code == 2 and "cannot read the saved state" in err and err.count("\n") == 1
    assert resume.state_path(out).read_bytes() == b"not a state"  # nothing the user had is lost


def test_describe_tells_runs_apart(tmp_path, pair_files):
    record = resume.describe(StyleConfig(), pair_files, {})
    assert resume.describe(StyleConfig(steps=5), pair_files, {}) == record  # more steps: the same run
    assert resume.describe(StyleConfig(lr=0.1), pair_files, {}) != record
    assert resume.describe(StyleConfig(), pair_files[::-1], {}) != record


def test_an_unreadable_input_is_refused_in_one_line_before_the_weights_load(capsys, tmp_path, pair_files):
    content, style = pair_files
    (tmp_path / "notes.png").write_text("not a picture")
    for argv in (["--content", str(tmp_path / "missing.png")], ["--style", str(tmp_path / "notes.png")]):
        # No --weights: loading the default ones would say a line of its own first.
        code, _, err = run(capsys, "--content", content, "--style", style, *argv, "--output", str(tmp_path / "o.png"))
        assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
        assert not (tmp_path / "o.png").exists()


def test_a_folders_unreadable_style_is_refused_in_one_line_before_the_weights_load(capsys, tmp_path, pair_files):
    content, _ = pair_files
    (tmp_path / "photos").mkdir()
    Image.open(content).save(tmp_path / "photos" / "a.png")
    code, _, err = run(capsys, "--content", str(tmp_path / "photos"), "--style", str(tmp_path / "missing.png"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "missing.png" in err, err
