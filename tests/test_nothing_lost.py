"""Nothing lost, by construction: readers take regular files only, writers replace regular files
only (a link's target, never the link), a GAN workdir is jaxart's own, signals end a command in
one line, and every flag is checked against what the code can hold."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURE
from PIL import Image

from jaxart import cli, interrupts, options
from jaxart.errors import InputError
from jaxart.files import atomic_write, output_target, read_json_lines, regular_file
from jaxart.gan import __main__ as gan_main
from jaxart.gan.workdir import LOCK_FILE, MARKER, check_workdir, locked
from jaxart.style import __main__ as style_main

ROOT = Path(__file__).resolve().parent.parent


def run(main, argv, capsys) -> tuple[int, str]:
    try:
        status = cli.run(main, [str(a) for a in argv])
    except SystemExit as e:  # argparse's own refusals
        status = e.code
    return status, capsys.readouterr().err


def picture(path: Path) -> Path:
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (24, 32, 3), np.uint8)).save(path)
    return path


def tree(folder: Path) -> dict[str, tuple]:
    """Every entry under `folder`: its kind, and a regular file's bytes."""
    return {
        str(p.relative_to(folder)): (p.is_symlink(), p.is_dir(), p.read_bytes() if p.is_file() else None)
        for p in sorted(folder.rglob("*"))
    }


# Readers and writers


def test_readers_take_regular_files_only(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "folder").mkdir()
    for name, kind in [("pipe", "named pipe"), ("folder", "directory"), ("missing", "does not exist")]:
        with pytest.raises(InputError, match=kind):
            regular_file(tmp_path / name, "image")
    (tmp_path / "file").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "file")
    assert regular_file(tmp_path / "link", "image") == tmp_path / "link"


def test_a_write_replaces_a_links_target_and_never_a_device_pipe_or_folder(tmp_path):
    target = tmp_path / "target.txt"
    target.write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    atomic_write(link, lambda tmp: tmp.write_text("new"))
    assert link.is_symlink() and target.read_text() == "new"
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "folder").mkdir()
    for name in ("pipe", "folder"):
        with pytest.raises(InputError, match="outputs are written only as regular files"):
            atomic_write(tmp_path / name, lambda tmp: tmp.write_text("x"))
    with pytest.raises(InputError, match="character device"):
        output_target("/dev/null")
    assert Path("/dev/null").is_char_device()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "link.txt", "pipe", "target.txt"]


def test_json_lines_with_bytes_that_are_not_utf8_lose_only_those_lines(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b'{"step": 1}\n{"step": \xff\xfe}\n{"step": 3}\n')
    assert read_json_lines(path) == [{"step": 1}, {"step": 3}]


# A workdir of jaxart's own


def test_a_folder_of_the_users_is_refused_and_left_as_it_was(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "metrics.jsonl").write_text('{"mine": 1}\n')
    (mine / ".draft.tmp").write_text("a draft")
    (mine / "sub").mkdir()
    (mine / "sub" / ".x.png.tmp").write_text("kept")
    before = tree(mine)
    status, err = run(gan_main.main, ["train", "--workdir", mine, "--data", FIXTURE], capsys)
    assert status == 2 and len(err.splitlines()) == 1
    assert "holds files jaxart did not write" in err and "--workdir" in err
    assert tree(mine) == before


def test_an_empty_workdir_is_refused_as_an_option_and_in_the_library(capsys):
    status, err = run(gan_main.main, ["train", "--workdir", ""], capsys)
    assert status == 2 and "--workdir" in err and len(err.splitlines()) == 1
    with pytest.raises(InputError, match="empty"):
        check_workdir("")


def test_a_new_or_empty_folder_becomes_a_marked_workdir(tmp_path):
    for folder in (tmp_path / "new" / "run", tmp_path / "empty"):
        if folder.name == "empty":
            folder.mkdir()
        check_workdir(folder)
        with locked(folder):
            pass
        assert json.loads((folder / MARKER).read_text())["format"] == "jaxart-gan-workdir"
        (folder / "notes.txt").write_text("added later")  # the folder stays jaxart's
        check_workdir(folder)


def test_a_workdir_of_an_earlier_version_is_still_one(tmp_path):
    old = tmp_path / "old"
    (old / "checkpoints").mkdir(parents=True)
    (old / LOCK_FILE).write_text("123\n")
    (old / "metrics.jsonl").write_text("")
    assert check_workdir(old) == old
    (old / "notes.txt").write_text("not a run's")
    with pytest.raises(InputError, match="notes.txt"):
        check_workdir(old)


@pytest.mark.parametrize("name, make", [("checkpoints", "file"), ("metrics.jsonl", "folder"), (LOCK_FILE, "pipe")])
def test_an_entry_of_the_wrong_kind_is_refused(name, make, tmp_path):
    workdir = tmp_path / "run"
    with locked(workdir):
        pass
    path = workdir / name
    path.unlink(missing_ok=True)
    {"file": lambda: path.write_text("x"), "folder": path.mkdir, "pipe": lambda: os.mkfifo(path)}[make]()
    with pytest.raises(InputError, match=f"{name!r} is not a"):
        check_workdir(workdir)


def test_a_damaged_workdir_is_one_line_and_the_process_ends_at_once(tmp_path):
    """A file named checkpoints once gave the right line, then a 5-minute hang at exit."""
    workdir = tmp_path / "run"
    with locked(workdir):
        pass
    (workdir / "checkpoints").write_text("not a folder")
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "jaxart.gan", "train", "--workdir", str(workdir), "--data", str(FIXTURE)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1, done.stderr
    assert time.monotonic() - start < 60


# Inputs and outputs of the style command


def test_a_pipe_as_content_is_refused_before_it_is_opened(tmp_path, capsys):
    os.mkfifo(tmp_path / "pipe.png")
    signal.alarm(60)  # a reader blocked on the pipe fails the test instead of hanging it
    try:
        status, err = run(style_main.main, ["--content", tmp_path / "pipe.png", "--output", tmp_path / "o.png"], capsys)
    finally:
        signal.alarm(0)
    assert status == 2 and "named pipe" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o.png").exists()


def test_a_pipe_or_device_as_an_output_is_refused_and_stays(tmp_path, capsys):
    content = picture(tmp_path / "c.png")
    os.mkfifo(tmp_path / "metrics.jsonl")
    for flag, path in [("--metrics", tmp_path / "metrics.jsonl"), ("--output", "/dev/null")]:
        argv = ["--content", content, "--style", content, "--output", tmp_path / "o.png", flag, path]
        status, err = run(style_main.main, argv, capsys)
        assert status == 2 and "outputs are written only as regular files" in err, err
    assert (tmp_path / "metrics.jsonl").is_fifo() and Path("/dev/null").is_char_device()
    assert not (tmp_path / "o.png").exists()


# Flags, errors and signals


@pytest.mark.parametrize("value", [str(2**31), str(2**63), "-1"])
def test_integer_flags_hold_only_what_an_int32_holds(value, capsys):
    status, err = run(gan_main.main, ["sample", "--seed", value, "--out", "x.png"], capsys)
    assert status == 2 and "--seed" in err and len(err.splitlines()) == 1
    assert options.non_negative_int(str(2**31 - 1)) == 2**31 - 1


def test_a_string_flag_is_neither_empty_nor_holds_a_nul(capsys):
    for value in ("", "  ", "a\0b"):
        status, err = run(style_main.main, ["--content", value], capsys)
        assert status == 2 and "--content" in err and len(err.splitlines()) == 1


def test_any_failure_of_a_command_is_one_line(capsys):
    def bug(argv):
        raise ValueError("first\nsecond")

    def missing_folder(argv):
        raise NotADirectoryError(errno.ENOTDIR, "Not a directory", "a/b")

    for main, status, text in [(bug, 1, "please report it"), (missing_folder, 2, "'a/b' Not a directory")]:
        assert cli.run(main, []) == status
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and text in err


def test_an_interrupt_inside_a_deferred_block_arrives_at_its_end():
    reached = []
    with pytest.raises(KeyboardInterrupt), interrupts.handling():
        with interrupts.deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.1)
            reached.append("the end of the block")
        reached.append("after it")
    assert reached == ["the end of the block"]
    assert signal.getsignal(signal.SIGTERM) is not interrupts._handler  # restored


def test_a_commands_exit_keeps_what_pythons_would_and_skips_the_teardown(tmp_path):
    """A command's process ends as Python's exit begins (its status, stdout and stderr flushed,
    the threads exit waits for joined, the exit handlers run), and skips the teardown that
    follows: a global's `__del__` does not run."""
    code = f"""
import atexit, sys, threading, time
from pathlib import Path
from jaxart import cli

folder = Path({str(tmp_path)!r})

class Teardown:
    def __del__(self):
        (folder / "teardown").write_text("ran")

kept = Teardown()  # a module's global, taken apart only by Python's teardown
atexit.register(lambda: (folder / "atexit").write_text("ran"))

def late():
    time.sleep(0.5)
    (folder / "thread").write_text("ran")

def command(argv):
    threading.Thread(target=late).start()
    print("unflushed", end="")
    sys.stderr.write("a library's note")
    return 3

cli.main(command)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout, done.stderr) == (3, "unflushed", "a library's note")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["atexit", "thread"]


@pytest.mark.parametrize("variable", ["JAXART_CACHE", "JAXART_DATA"])
def test_an_environment_variable_naming_a_file_for_a_folder_is_one_line(variable, tmp_path, monkeypatch, capsys):
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv(variable, str(tmp_path / "file"))
    status, err = run(gan_main.main, ["train", "--workdir", tmp_path / "run", "--data", "mnist"], capsys)
    assert status == 2 and f"${variable}" in err and "expected a folder" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()
