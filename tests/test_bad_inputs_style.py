"""Every bad input and fault of `python -m jaxart.style` the project knows of, as one table: each
case gets one stderr line, its exit status (2: bad input; 1: a run that could not finish), no
traceback and no output file. Add a row when a new one is found; the count only grows.

Cases run `main` in this process (no jax start-up per case), except SIGTERM, which needs a
process to signal. Read-only folders are real (a read-only tmpfs when root, where permission
bits do not stop writes; chmod otherwise); a full disk is a 64 KiB tmpfs when `mount` works.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import mount_tmpfs, run_style
from PIL import Image

from jaxart import images


def picture(path: Path, height: int = 30, width: int = 40, seed: int = 0) -> str:
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (height, width, 3), np.uint8)).save(path)
    return str(path)


def grey(path: Path, white_columns: int, height: int = 30, width: int = 40) -> str:
    """A greyscale mask: its first `white_columns` columns white, the rest black."""
    mask = np.zeros((height, width), np.uint8)
    mask[:, :white_columns] = 255
    Image.fromarray(mask).save(path)
    return str(path)


@pytest.fixture
def files(tmp_path) -> dict[str, str]:
    """Inputs in tmp_path/in (good and bad ones); outputs go to tmp_path/out, empty."""
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    (src / "folder.png").mkdir()
    (src / "notes.png").write_text("not an image")
    good = picture(src / "good.png", 64, 64, seed=1)
    (src / "cut.png").write_bytes(Path(good).read_bytes()[:500])
    (src / "cut-mask.png").write_bytes(Path(picture(tmp_path / "whole-mask.png", seed=8)).read_bytes()[:500])
    return {
        "content": picture(src / "content.png"),
        "style": picture(src / "style.jpg", seed=2),
        "b": picture(src / "b.png", seed=3),
        "y": picture(src / "y.png", seed=4),
        "square": picture(src / "square.png", 40, 40, seed=5),
        "twin": picture(tmp_path / "content.png", seed=6),  # the content's stem, another folder
        "plot": picture(src / "o.loss.png", seed=7),
        "mask": grey(src / "mask.png", 20),  # the content's size, its left half white
        "black": grey(src / "black.png", 0),
        "missing": str(src / "missing.png"),
        "folder": str(src / "folder.png"),
        "notes": str(src / "notes.png"),
        "cut": str(src / "cut.png"),
        "cut_mask": str(src / "cut-mask.png"),  # the content's size in its header
        "in": str(src),
        "out": str(out),
    }


def argv_of(template: list[str], files: dict[str, str]) -> list[str]:
    return [a.format(**files) for a in template]


BASE = ["--content", "{content}", "--style", "{style}", "--output", "{out}/o.png", "--weights", "random"]
# (name, argv after BASE (later flags win), exit status, text the one line must hold)
CASES = [
    # images
    ("content missing", ["--content", "{missing}"], 2, "does not exist"),
    ("content folder without images", ["--content", "{folder}"], 2, "holds no image"),
    ("content not an image", ["--content", "{notes}"], 2, "not an image"),
    ("content truncated", ["--content", "{cut}"], 2, "damaged or truncated"),
    ("style missing", ["--style", "{missing}"], 2, "does not exist"),
    ("style folder", ["--style", "{folder}"], 2, "is a directory"),
    ("style not an image", ["--style", "{notes}"], 2, "not an image"),
    ("style truncated", ["--style", "{cut}"], 2, "damaged or truncated"),
    ("init missing", ["--init", "{missing}"], 2, "missing.png"),
    ("init truncated", ["--init", "{cut}"], 2, "damaged or truncated"),
    # numbers
    ("steps 0", ["--steps", "0"], 2, "--steps: expected a positive integer"),
    ("steps negative", ["--steps", "-3"], 2, "--steps: expected a positive integer"),
    ("max-size 0", ["--max-size", "0"], 2, "--max-size: expected a positive integer"),
    ("lr nan", ["--lr", "nan"], 2, "--lr"),
    ("lr beyond float32", ["--lr", "1e39"], 2, "does not fit float32"),
    ("style weight beyond float32", ["--style-weight", "1e39"], 2, "does not fit float32"),
    ("steps per call 0", ["--steps-per-call", "0"], 2, "--steps-per-call"),
    ("steps per call word", ["--steps-per-call", "fast"], 2, "--steps-per-call"),
    ("ema 1", ["--ema", "1"], 2, "ema"),
    ("b1 1", ["--b1", "1"], 2, "b1"),
    # layers, presets, choices
    ("unknown content layer", ["--content-layers", "relu9_1"], 2, "unknown VGG19 layer"),
    ("unknown style layer", ["--style-layers", "relu1_1,conv9_9"], 2, "unknown VGG19 layer"),
    ("negative layer weight", ["--content-layers", "relu1_1:-2"], 2, ">= 0"),
    ("preset unknown", ["--preset", "picasso"], 2, "--preset"),
    ("optimizer unknown", ["--optimizer", "sgd"], 2, "--optimizer"),
    ("pooling unknown", ["--pooling", "min"], 2, "--pooling"),
    ("colour transfer unknown", ["--color-transfer", "lab"], 2, "--color-transfer"),
    # colour control, output depth
    (
        "luminance only with original colours",
        ["--luminance-only", "--original-colors"],
        2,
        "--luminance-only and --original-colors exclude each other",
    ),
    (
        "luminance only with colour transfer",
        ["--luminance-only", "--color-transfer", "histogram"],
        2,
        "--luminance-only and --color-transfer histogram exclude each other",
    ),
    ("bit depth unknown", ["--bit-depth", "12"], 2, "--bit-depth"),
    ("bit depth 0", ["--bit-depth", "0"], 2, "--bit-depth: expected 8 or 16, got 0"),
    ("16 bits into a JPEG", ["--bit-depth", "16", "--output", "{out}/o.jpg"], 2, "--bit-depth 16 needs a .png"),
    ("16 bits into a WebP", ["--bit-depth", "16", "--output", "{out}/o.webp"], 2, "--bit-depth 16 needs a .png"),
    # sizes
    ("content too small", ["--max-size", "8"], 2, "need at least 16 pixels"),
    ("style scale too small", ["--style-scale", "0.05", "--max-size", "64"], 2, "style image"),
    ("pyramid level too small", ["--pyramid", "8", "--max-size", "64", "--content-layers", "relu5_1"], 2, "pyramid"),
    (
        "fewer steps than pyramid levels",
        [
            "--pyramid",
            "8",
            "--max-size",
            "64",
            "--steps",
            "2",
            "--style-layers",
            "relu1_1",
            "--content-layers",
            "relu1_1",
        ],
        2,
        "pyramid levels",
    ),
    ("more memory than the machine has", ["--max-size", "100000"], 2, "the largest --max-size that fits is"),
    (
        "style scale beyond memory",
        ["--max-size", "32", "--style-scale", "2000"],
        2,
        "a 32x24 image with styles up to 64000 px long needs about",
    ),
    (
        "batch beyond memory",
        ["--content", "{content}", "{b}", "--max-size", "30000"],
        2,
        "the largest --max-size that fits is",
    ),
    # blends and batches
    ("blend weights do not match", ["--style", "{style}", "{y}", "--style-blend", "1,2,3"], 2, "--style-blend has 3"),
    ("blend weight negative", ["--style-blend", "-1"], 2, "--style-blend"),
    ("batch with a blend", ["--content", "{content}", "{b}", "--style-blend", "1"], 2, "no --style-blend"),
    ("batch with style scale", ["--style", "{style}", "{y}", "--style-scale", "0.5"], 2, "no --style-scale"),
    ("folder with style scale", ["--content", "{in}", "--style-scale", "0.5"], 2, "no --style-scale"),
    ("batch of two shapes", ["--content", "{content}", "{square}"], 2, "one aspect ratio"),
    ("sweep of a batch", ["--content", "{content}", "{b}", "--style-weight", "1,2"], 2, "a sweep (--style-weight)"),
    ("sweep value negative", ["--tv-weight", "1,-2"], 2, "--tv-weight"),
    ("lbfgs step unknown", ["--lbfgs-step", "wolfe"], 2, "--lbfgs-step"),
    ("batch outputs share a name", ["--content", "{content}", "{twin}", "--style", "{style}"], 2, "share a name"),
    # masks
    ("style mask missing", ["--style-masks", "{missing}"], 2, "does not exist"),
    ("style mask not an image", ["--style-masks", "{notes}"], 2, "not an image"),
    ("content mask truncated", ["--content-mask", "{cut_mask}"], 2, "damaged or truncated"),
    (
        "style mask of another size",
        ["--style-masks", "{square}"],
        2,
        "is 40x40; a mask must have the content's size, 40x30",
    ),
    ("content mask all black", ["--content-mask", "{black}"], 2, "black.png' is all black"),
    ("style mask all black", ["--style", "{style}", "{y}", "--style-masks", "{mask}", "{black}"], 2, "all black"),
    ("style masks fewer than styles", ["--style", "{style}", "{y}", "--style-masks", "{mask}"], 2, "1 mask(s) for 2"),
    (
        "style masks with a blend",
        ["--style", "{style}", "{y}", "--style-masks", "{mask}", "{mask}", "--style-blend", "1,1"],
        2,
        "give one or the other",
    ),
    ("masks with several contents", ["--content", "{content}", "{b}", "--content-mask", "{mask}"], 2, "one --content"),
    ("masks with a folder", ["--content", "{in}", "--style-masks", "{mask}"], 2, "drawn on one --content"),
    ("output is a mask", ["--content-mask", "{mask}", "--output", "{mask}"], 2, "refusing to overwrite"),
    # outputs
    # (A missing output folder is made when the output is written: tests/test_first_run.py.)
    ("output folder under a file", ["--output", "{notes}/nope/o.png"], 2, "is not a folder"),
    ("output extension", ["--output", "{out}/o.bmp"], 2, "unknown extension"),
    ("output is a folder", ["--output", "{out}"], 2, "is a directory"),
    ("metrics folder under a file", ["--metrics", "{notes}/m.jsonl"], 2, "is not a folder"),
    ("metrics is a folder", ["--metrics", "{out}"], 2, "is a directory"),
    ("output is the content", ["--output", "{content}"], 2, "refusing to overwrite"),
    ("output is the style", ["--output", "{out}/s.png", "--style", "{out}/s.png"], 2, "refusing to overwrite"),
    ("output is the init", ["--init", "{content}", "--output", "{content}"], 2, "refusing to overwrite"),
    ("metrics is the output", ["--metrics", "{out}/o.png"], 2, "refusing to overwrite"),
    ("metrics is the content", ["--metrics", "{content}"], 2, "refusing to overwrite"),
    ("loss plot is the content", ["--content", "{plot}", "--output", "{in}/o.png"], 2, "refusing to overwrite"),
    ("snapshot is the style", ["--save-every", "1", "--steps", "3", "--style", "{out}/o.step00001.png"], 2, "refusing"),
    # weights
    ("weights file missing", ["--weights", "{missing}"], 2, "does not exist"),
    # values that make the first step's loss overflow float32
    (
        "first loss not finite",
        ["--style-weight", "3e38", "--style-layers", "relu1_1:1e6", "--max-size", "32", "--steps", "2"],
        2,
        "first step's loss is not finite",
    ),
    (
        "diverging learning rate",
        ["--preset", "seed", "--lr", "3e38", "--max-size", "32", "--steps", "3"],
        1,
        "diverged",
    ),
]


def inputs_unchanged(files, before: dict[Path, bytes]) -> bool:
    now = {p: p.read_bytes() for p in Path(files["in"]).iterdir() if p.is_file()}
    return now == before


@pytest.mark.parametrize("name,extra,status,message", CASES, ids=[c[0] for c in CASES])
def test_bad_input(name, extra, status, message, capsys, files, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    before = {p: Path(p).read_bytes() for p in Path(files["in"]).iterdir() if p.is_file()}
    code, out, err = run_style(capsys, argv_of(BASE + extra, files))
    assert code == status, err
    lines = err.strip().splitlines()
    # Refused input (2) is one line; a run that started and then failed (1) may have said what it was doing first.
    assert (len(lines) == 1 or status == 1) and message in lines[-1], err
    assert all(line.startswith("stylising ") for line in lines[:-1]), err
    assert "Traceback" not in err and out == ""
    assert list(Path(files["out"]).iterdir()) == [], "an output was written"
    assert inputs_unchanged(files, before)


def test_permission_denied_image_is_named_as_such(capsys, files, monkeypatch):
    # Root reads any file, so the refusal is made where Pillow opens it.
    opened = Image.open

    def refuse(path, *args, **kwargs):
        if Path(path) == Path(files["style"]):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return opened(path, *args, **kwargs)

    monkeypatch.setattr(Image, "open", refuse)
    code, _, err = run_style(capsys, argv_of(BASE, files))
    assert code == 2 and "permission denied" in err and "damaged" not in err, err
    assert len(err.strip().splitlines()) == 1
    assert list(Path(files["out"]).iterdir()) == []


def test_decompression_bomb(capsys, files, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 400)
    code, _, err = run_style(capsys, argv_of(BASE, files))
    assert code == 2 and "decompression bomb" in err and len(err.strip().splitlines()) == 1, err
    assert list(Path(files["out"]).iterdir()) == []


@pytest.mark.parametrize(
    "flag,what",
    [("--output", "o.png"), ("--metrics", "m.jsonl"), ("--output", "new/o.png"), ("--metrics", "a/m.jsonl")],
)
def test_read_only_folders_are_refused_before_any_work(flag, what, capsys, files, readonly_dir):
    """Into a read-only folder, or a folder to be made in one."""
    argv = argv_of(BASE, files) + [flag, str(readonly_dir / what)]
    code, _, err = run_style(capsys, argv)
    assert code == 2 and "is not writable" in err and len(err.strip().splitlines()) == 1, err
    assert list(readonly_dir.iterdir()) == [] and list(Path(files["out"]).iterdir()) == []


@pytest.fixture
def full_disk(tmp_path, monkeypatch):
    """A folder whose file system is full but for a few KiB: a 64 KiB tmpfs when root can mount
    one, else writes under it fail with ENOSPC in this process."""
    folder = tmp_path / "full"
    folder.mkdir()
    if os.geteuid() == 0 and mount_tmpfs(folder, "size=64k"):
        fd = os.open(folder / ".filler", os.O_WRONLY | os.O_CREAT)
        try:
            while True:  # until full: an empty file (the writability probe) still fits
                os.write(fd, b"\0" * 4096)
        except OSError as e:
            assert e.errno == errno.ENOSPC
        finally:
            os.close(fd)
        yield folder
        subprocess.run(["umount", str(folder)], check=True)
        return
    saved = images.save_image

    def save(path, image, *args):
        if Path(path).parent == folder:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return saved(path, image, *args)

    monkeypatch.setattr(images, "save_image", save)
    yield folder


def test_full_disk_at_the_end_keeps_the_result_and_says_where(capsys, files, full_disk):
    argv = argv_of(BASE, files) + ["--output", str(full_disk / "o.png"), "--max-size", "32", "--steps", "2"]
    code, _, err = run_style(capsys, argv)
    lines = err.strip().splitlines()
    assert code == 1 and "Traceback" not in err, err
    # Before it, only what a run says as it goes: its plan and progress.
    assert "No space left on device" in lines[-1] and "kept in" in lines[-1], err
    assert all(line.startswith(("stylising 32x24", "about ")) for line in lines[:-1]), err
    kept = Path(lines[-1].split("kept in ")[1])
    assert images.load_image(kept / "o.png").shape == (24, 32, 3)
    assert not (full_disk / "o.png").exists() and not list(full_disk.glob(".o*"))


def test_sigterm_leaves_no_temporary_file(files, tmp_path):
    out = Path(files["out"])
    argv = argv_of(BASE, files) + ["--max-size", "32", "--steps", "500", "--save-every", "1"]
    argv += ["--metrics", str(out / "m.jsonl")]
    proc = subprocess.Popen(
        [sys.executable, "-m", "jaxart.style", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    # Start-up (imports, weights, compiling) took over 240 s on 2 cores running two test suites at
    # once: the signal then came before any step was kept. Wait longer, and say so if it was that.
    deadline = time.monotonic() + 540
    while not (out / "o.step00002.png").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert (out / "o.step00002.png").exists(), "no step kept within 540 s: the run never got going"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("interrupted: kept step ") and "Traceback" not in err, err
    assert last.endswith(f"of 500 in {out / 'o.partial.png'}; the same command with --resume goes on"), err
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")], "a temporary file was left"
    assert not (out / "o.png").exists() and not (out / "m.jsonl").exists()
    assert (out / "o.partial.png").is_file() and (out / "o.partial.npz").is_file()
