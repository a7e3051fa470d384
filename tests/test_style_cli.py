"""`python -m jaxart.style` end to end on tiny images, and every refusal: one line, exit 2, no output."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jaxart import cli
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


@pytest.fixture
def pair(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for name in ("content.png", "style.jpg"):
        Image.fromarray(rng.integers(0, 255, (30, 40, 3), np.uint8)).save(tmp_path / name)
        paths.append(str(tmp_path / name))
    return paths


def test_end_to_end_with_random_weights(tmp_path, pair):
    content, style = pair
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
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    assert proc.returncode == 0, proc.stderr
    with Image.open(out) as image:
        assert image.format == "WEBP" and image.size == (32, 24)
    for extra in ("result.step00002.webp", "result.step00004.webp", "result.loss.png"):
        assert (tmp_path / extra).is_file(), extra
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(5))
    assert all({"content_loss", "style_loss", "loss", "seconds"} <= r.keys() for r in records)
    assert records[0]["content_loss"] == 0 and records[-1]["content_loss"] > 0
    assert all(a["seconds"] <= b["seconds"] for a, b in zip(records, records[1:]))
    assert "random VGG19 weights" in proc.stderr
    summary = proc.stdout.strip().splitlines()[-1]
    assert "stylised 32x24" in summary and str(out) in summary
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries left


def test_no_arguments_offline_says_how_to_get_weights(tmp_path):
    # The default run needs pretrained weights: none are cached here and there is no internet.
    (tmp_path / "cwd").mkdir()
    env = {
        **os.environ,
        "JAXART_WEIGHTS_DIR": str(tmp_path / "w"),
        "TORCH_HOME": str(tmp_path / "t"),
        "JAX_PLATFORMS": "cpu",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "jaxart.style"],
        cwd=tmp_path / "cwd",
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "python -m jaxart.weights" in proc.stderr, proc.stderr
    assert list((tmp_path / "cwd").iterdir()) == []


def bad_files(tmp_path) -> dict[str, Path]:
    (tmp_path / "folder").mkdir()
    (tmp_path / "notes.png").write_text("not an image")
    good = tmp_path / "good.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), np.uint8)).save(good)
    (tmp_path / "cut.png").write_bytes(good.read_bytes()[:500])
    return {
        "missing": tmp_path / "missing.png",
        "folder": tmp_path / "folder",
        "not an image": tmp_path / "notes.png",
        "truncated": tmp_path / "cut.png",
    }


@pytest.mark.parametrize("which", ["content", "style"])
@pytest.mark.parametrize(
    "case,message",
    [
        ("missing", "does not exist"),
        ("folder", "is a directory"),
        ("not an image", "not an image"),
        ("truncated", "damaged or truncated"),
    ],
)
def test_bad_images(capsys, tmp_path, pair, which, case, message):
    content, style = pair
    bad = str(bad_files(tmp_path)[case])
    args = {"content": content, "style": style, which: bad}
    out = tmp_path / "out.png"
    code, _, err = run_in_process(
        capsys,
        "--content",
        args["content"],
        "--style",
        args["style"],
        "--output",
        str(out),
        "--weights",
        "random",
        "--steps",
        "1",
    )
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--steps", "0"], "--steps: expected a positive integer"),
        (["--steps", "-3"], "--steps: expected a positive integer"),
        (["--max-size", "0"], "--max-size: expected a positive integer"),
        (["--lr", "nan"], "--lr"),
        (["--max-size", "8"], "need at least 16 pixels"),
        (["--output", "{tmp}/nope/out.png"], "does not exist"),
        (["--output", "{tmp}/out.bmp"], "unknown extension"),
        (["--output", "{tmp}"], "is a directory"),
        (["--metrics", "{tmp}/nope/m.jsonl"], "does not exist"),
        (["--weights", "{tmp}/none.pth"], "does not exist"),
        (["--content-layers", "relu9_1"], "unknown VGG19 layer"),
    ],
)
def test_bad_arguments(capsys, tmp_path, pair, argv, message):
    content, style = pair
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    base = ["--content", content, "--style", style, "--output", str(tmp_path / "out.png"), "--weights", "random"]
    code, _, err = run_in_process(capsys, *base, *argv)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out.png").exists() and not (tmp_path / "out.bmp").exists()


def test_decompression_bomb(capsys, tmp_path, pair, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 400)
    content, style = pair
    code, _, err = run_in_process(
        capsys, "--content", content, "--style", style, "--output", str(tmp_path / "o.png"), "--weights", "random"
    )
    assert code == 2 and "decompression bomb" in err
    assert not (tmp_path / "o.png").exists()


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


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--style-blend", "1,1"], "give one --content"),
        (["--optimizer", "lbfgs"], "one batch: Adam at one scale"),
        (["--pyramid", "16"], "one batch: Adam at one scale"),
    ],
)
def test_batch_refusals(capsys, tmp_path, four, extra, message):
    code, _, err = run_in_process(
        capsys,
        "--content",
        four["a"],
        four["b"],
        "--style",
        four["x"],
        four["y"],
        "--output",
        str(tmp_path / "o.png"),
        "--weights",
        "random",
        *extra,
    )
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not list(tmp_path.glob("o*"))


def test_batch_refuses_contents_of_different_shapes(capsys, tmp_path, four):
    Image.new("RGB", (40, 40)).save(tmp_path / "square.png")
    code, _, err = run_in_process(
        capsys,
        "--content",
        four["a"],
        str(tmp_path / "square.png"),
        "--style",
        four["x"],
        "--output",
        str(tmp_path / "o.png"),
        "--weights",
        "random",
    )
    assert code == 2 and "one aspect ratio" in err and len(err.strip().splitlines()) == 1, err


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
