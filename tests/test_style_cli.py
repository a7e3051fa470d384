"""`python -m jaxart.style` end to end on tiny images, and every refusal: one line, exit 2, no output."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jaxart import cli, weights
from jaxart.files import read_json_lines
from jaxart.style.__main__ import main

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_in_process(capsys, *argv) -> tuple[int, str, str]:
    """Runs the CLI's main in this process (no jax start-up per case)."""
    try:
        code = cli.run(main, list(argv))
    except SystemExit as e:  # argparse's own refusals
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def style_command(argv, cache, *flags) -> subprocess.CompletedProcess:
    """`python -m jaxart.style` in a fresh process with its own cache folder."""
    return subprocess.run(
        [sys.executable, "-m", "jaxart.style", *map(str, argv), *flags],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "JAX_PLATFORMS": "cpu", "JAXART_CACHE": str(cache)},
    )


def test_end_to_end_with_random_weights(tmp_path, pair_files):
    content, style = pair_files
    out = tmp_path / "result.webp"
    metrics = tmp_path / "metrics.jsonl"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "jaxart.style",
            "--content",
            content,
            "--style",
            style,
            "--output",
            str(out),
            "--weights",
            "random",
            "--max-size",
            "32",
            "--steps",
            "5",
            "--save-every",
            "2",
            "--metrics",
            str(metrics),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "JAX_PLATFORMS": "cpu", "JAXART_CACHE": str(tmp_path / "cache")},
    )
    assert proc.returncode == 0, proc.stderr
    assert list((tmp_path / "cache" / "xla").iterdir()), "no compiled program was cached"
    with Image.open(out) as image:
        assert image.format == "WEBP" and image.size == (32, 24)
    for extra in ("result.step00002.webp", "result.step00004.webp", "result.loss.png"):
        assert (tmp_path / extra).is_file(), extra
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(5))
    assert all({"content_loss", "style_loss", "loss", "seconds"} <= r.keys() for r in records)
    # The default preset starts from the content in the style's colours, not the content itself.
    assert records[0]["content_loss"] > 0 and all(np.isfinite(r["loss"]) for r in records)
    assert all(a["seconds"] <= b["seconds"] for a, b in zip(records, records[1:]))
    assert "random VGG19 weights" in proc.stderr
    summary = proc.stdout.strip().splitlines()[-1]
    assert "stylised 32x24" in summary and str(out) in summary
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries left


def test_no_compile_cache_keeps_nothing(tmp_path, pair_files):
    content, style = pair_files
    argv = ["--content", content, "--style", style, "--output", tmp_path / "o.png", "--weights", "random"]
    argv += ["--max-size", "16", "--steps", "1", "--content-layers", "relu1_1", "--style-layers", "relu1_1"]
    proc = style_command(argv, tmp_path / "cache", "--no-compile-cache")
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "cache" / "xla").exists() or not list((tmp_path / "cache" / "xla").iterdir())


def test_weights_bring_their_loss_weights_unless_given(capsys, tmp_path, pair_files):
    content, style = pair_files
    own = weights.STYLE_DEFAULTS[weights.CAFFE]["style_weight"]
    assert own != 100.0
    # Stated for 400 px, the weights' own style weight follows the size (32 px here); a flag given does not.
    for extra, style_weight in (([], own * (400 / 32) ** 2), (["--style-weight", "100"], 100.0)):
        metrics = tmp_path / f"m{style_weight}.jsonl"
        code, _, err = run_in_process(
            capsys,
            *("--content", content, "--style", style, "--output", str(tmp_path / "o.png"), "--weights", "caffe"),
            *("--max-size", "32", "--steps", "2", "--metrics", str(metrics), *extra),
        )
        assert code == 0, err
        last = read_json_lines(metrics)[-1]
        expected = last["content_loss"] + style_weight * last["style_loss"]
        assert last["loss"] == pytest.approx(expected, rel=1e-5), extra


def test_help_shows_defaults(capsys):
    code, out, _ = run_in_process(capsys, "--help")
    assert code == 0
    out = " ".join(out.split())  # argparse wraps lines
    for text in (
        "--steps",
        "(default: 2000)",
        "(default: 400)",
        "(default: 0.003)",
        "(default: 100.0)",
        "relu1_1,relu2_1,relu3_1,relu4_1,relu5_1",
        "or auto (the default): 1 on CPU",
        "--no-compile-cache",
        "caffe (the original VGG19",
    ):
        assert text in out, text


@pytest.fixture
def four(tmp_path):
    rng = np.random.default_rng(2)
    for name in ("a", "b", "x", "y"):
        Image.fromarray(rng.integers(0, 255, (30, 40, 3), np.uint8)).save(tmp_path / f"{name}.png")
    return {name: str(tmp_path / f"{name}.png") for name in ("a", "b", "x", "y")}


def test_batch_writes_every_combination_and_a_contact_sheet(capsys, tmp_path, four):
    out, metrics = tmp_path / "out.png", tmp_path / "m.jsonl"
    code, stdout, err = run_in_process(
        capsys,
        "--content",
        four["a"],
        four["b"],
        "--style",
        four["x"],
        four["y"],
        "--output",
        str(out),
        "--weights",
        "random",
        "--max-size",
        "32",
        "--steps",
        "3",
        "--save-every",
        "2",
        "--metrics",
        str(metrics),
    )
    assert code == 0, err
    for c in "ab":
        for s in "xy":
            assert (tmp_path / f"out_{c}_{s}.png").is_file() and (tmp_path / f"out_{c}_{s}.step00002.png").is_file()
    with Image.open(tmp_path / "out_grid.png") as sheet:  # 3x3 tiles of 32x24 with 2 px padding
        assert sheet.size == (3 * 34 + 2, 3 * 26 + 2)
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert len(records) == 3 * 4
    assert {(Path(r["content"]).stem, Path(r["style"]).stem) for r in records} == {
        ("a", "x"),
        ("a", "y"),
        ("b", "x"),
        ("b", "y"),
    }
    assert "4 pairs at 32x24" in stdout


def test_style_blend_runs_one_transfer(capsys, tmp_path, four):
    out = tmp_path / "blend.png"
    code, stdout, err = run_in_process(
        capsys,
        "--content",
        four["a"],
        "--style",
        four["x"],
        four["y"],
        "--style-blend",
        "0.7,0.3",
        "--output",
        str(out),
        "--weights",
        "random",
        "--max-size",
        "32",
        "--steps",
        "2",
    )
    assert code == 0, err
    assert out.is_file() and not list(tmp_path.glob("blend_*"))


def test_metrics_are_read_after_the_next_call_is_dispatched(monkeypatch):
    # The device must never wait for the host: call k's metrics are fetched only once call
    # k + 1 is queued, except at a stop, where the state is read anyway (and before it).
    from jaxart.style import driver
    from jaxart.style.config import StyleConfig

    events = []

    def calls():
        for done in range(1, 6):
            events.append(f"dispatch {done}")
            yield done, f"state {done}", {name: np.array([float(done)]) for name in driver.METRICS}

    def device_get(tree):
        if isinstance(tree, dict):  # one call's metrics (the history is joined from a list)
            events.append(f"fetch {int(tree['loss'][0])}")
        return tree

    monkeypatch.setattr(driver.jax, "device_get", device_get)
    run = driver.optimise(
        calls(), StyleConfig(steps=5), "test", stops=(3,), on_stop=lambda s, _: events.append(f"stop {s}")
    )
    assert events == [
        *("dispatch 1", "dispatch 2", "fetch 1", "dispatch 3", "fetch 2", "fetch 3", "stop 3"),
        *("dispatch 4", "dispatch 5", "fetch 4", "fetch 5"),
    ]
    assert run.state == "state 5" and run.history["loss"].tolist() == [1, 2, 3, 4, 5]
    assert [step for step, _ in run.marks] == [1, 2, 3, 4, 5]


def test_a_weight_sweep_writes_one_picture_per_value_and_a_sheet(capsys, tmp_path, pair_files):
    content, style = pair_files
    out, metrics = tmp_path / "stylized.png", tmp_path / "m.jsonl"
    code, stdout, err = run_in_process(
        capsys,
        *("--content", content, "--style", style, "--output", str(out), "--weights", "random"),
        *("--max-size", "32", "--steps", "2", "--style-weight", "1e-5,1e-4,1e-3", "--metrics", str(metrics)),
    )
    assert code == 0, err
    names = ["stylized_sw1e-05.png", "stylized_sw0.0001.png", "stylized_sw0.001.png", "stylized_grid.png"]
    assert all((tmp_path / name).is_file() for name in names), sorted(p.name for p in tmp_path.iterdir())
    assert not out.exists() and "3 pairs at 32x24" in stdout
    records = read_json_lines(metrics)
    assert sorted({r["style_weight"] for r in records}) == [1e-5, 1e-4, 1e-3]
    for r in records:
        assert r["loss"] == pytest.approx(r["content_loss"] + r["style_weight"] * r["style_loss"], rel=1e-5)
