"""A wheel install, not the source checkout: both main jobs and `eval` run from another folder,
finding the bundled pictures and the trained judge inside the package, and writing caches to
the user's cache folder rather than into the (possibly read-only) package."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FIXTURE

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """jaxart built as a wheel and installed alone into a folder (its dependencies are this
    environment's)."""
    tmp = tmp_path_factory.mktemp("wheel")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", tmp / "dist", ROOT], check=True, capture_output=True)
    (wheel,) = (tmp / "dist").glob("jaxart-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", tmp / "site", wheel], check=True, capture_output=True)
    return tmp / "site"


def run_installed(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site), "JAXART_CACHE": str(cwd / "cache")}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_installed_package_is_the_one_imported_and_carries_its_data(site, tmp_path):
    code = "import jaxart.cache as c; print(c.__file__); print(c.packaged('examples', 'content.png'))"
    out = run_installed(site, tmp_path, "-c", code).stdout.split()
    assert out[0].startswith(str(site)) and out[1].startswith(str(site))
    assert Path(out[1]).is_file()
    assert (site / "jaxart" / "_weights" / "judge-mnist" / "judge.json").is_file()


def test_style_runs_on_the_bundled_examples_from_another_folder(site, tmp_path):
    done = run_installed(
        site,
        tmp_path,
        "-m",
        "jaxart.style",
        "--weights",
        "random",
        "--steps",
        "2",
        "--max-size",
        "64",
        "--output",
        "out.png",
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out.png").is_file()


def test_gan_trains_samples_and_evaluates_from_another_folder(site, tmp_path):
    work = str(tmp_path / "run")
    train = run_installed(
        site, tmp_path, "-m", "jaxart.gan", "train", "--workdir", work, "--data", str(FIXTURE), "--max-steps", "3"
    )
    assert train.returncode == 0, train.stderr
    sample = run_installed(
        site, tmp_path, "-m", "jaxart.gan", "sample", "--workdir", work, "--num", "4", "--out", "s.png"
    )
    assert sample.returncode == 0, sample.stderr
    assert (tmp_path / "s.png").is_file()
    evaluate = run_installed(site, tmp_path, "-m", "jaxart.gan", "eval", "--workdir", work, "--num", "256")
    assert evaluate.returncode == 0, evaluate.stderr
    assert (tmp_path / "run" / "eval.jsonl").is_file()
    assert not [
        p
        for p in site.rglob("*")
        if p.stat().st_mtime > site.stat().st_mtime + 1 and p.is_file() and "__pycache__" not in p.parts
    ], "nothing may be written into the installed package"
