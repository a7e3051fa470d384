"""Shared fixtures and helpers: a randomly initialised torchvision VGG19 stands in for the
pretrained one; the MNIST fixture; bit-exact comparison of pytrees; the style command run in
this process, and the small style runs' VGG19 params, pictures and layers. The cache folder is
a temporary one, so tests neither read nor fill the user's."""

import atexit
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jaxart import backend

FIXTURES = Path(__file__).parent / "fixtures"
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
# Set at import, before any test or subprocess starts (and before JAX starts a backend), so both
# see them: a temporary cache, and the style and GAN commands' XLA flags (on GPUs, the deterministic
# algorithms that bit-exact checks need).
os.environ["JAXART_CACHE"] = tempfile.mkdtemp(prefix="jaxart-test-cache-")
# It holds converted VGG19s (~300 MB a run): left behind, repeated runs fill the disk.
atexit.register(shutil.rmtree, os.environ["JAXART_CACHE"], ignore_errors=True)
backend.set_xla_flags()  # what the style and GAN commands run under


def pytest_configure(config):
    config.addinivalue_line("markers", "cpu_only: a check of XLA CPU's own behaviour; skipped on accelerators")


def pytest_collection_modifyitems(config, items):
    """On a GPU or TPU (`JAX_PLATFORMS=cuda python -m pytest`), float32 references are compared
    at full matmul precision (not TF32), and CPU-only checks are skipped, not failed."""
    import jax

    if jax.default_backend() == "cpu":
        return
    jax.config.update("jax_default_matmul_precision", "highest")
    skip = pytest.mark.skip(reason=f"CPU-only check; this run is on {jax.default_backend()}")
    for item in items:
        if "cpu_only" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _environment_kept():
    """A command run in-process sets process-wide variables (`jaxart.fast`'s XLA flags among
    them) after this process's backend started: restored after each test, so later tests'
    subprocesses compile what this process compiles (bit-exact resumes compare the two)."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def mount_tmpfs(folder: Path, options: str) -> bool:
    """Mounts a small tmpfs (e.g. "size=64k", "ro,size=64k") on an existing folder; False
    where that is not allowed (not root, no mount): the caller skips or fakes the case."""
    try:
        return (
            subprocess.run(
                ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True
            ).returncode
            == 0
        )
    except OSError:
        return False


@pytest.fixture
def readonly_dir(tmp_path):
    """A folder no one may write into, root included (a read-only tmpfs for root)."""
    folder = tmp_path / "readonly"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    if not mount_tmpfs(folder, "ro,size=64k"):
        pytest.skip("root without mount: no way to make a read-only folder")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


@pytest.fixture
def full_disk(tmp_path):
    """A folder on a 64 KiB tmpfs."""
    folder = tmp_path / "full"
    folder.mkdir()
    if os.geteuid() != 0 or not mount_tmpfs(folder, "size=64k"):
        pytest.skip("a full disk needs root and mount (a small tmpfs)")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


@pytest.fixture(scope="session")
def torch_vgg19():
    """torchvision's vgg19() with random weights from a fixed torch seed, in eval mode."""
    import torch
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.vgg19().eval()


@pytest.fixture(scope="session")
def torch_vgg19_file(torch_vgg19, tmp_path_factory) -> Path:
    """That model's state_dict saved as a .pth file, as torchvision ships it."""
    import torch

    path = tmp_path_factory.mktemp("torch") / "vgg19-random.pth"
    torch.save(torch_vgg19.state_dict(), path)
    return path


@pytest.fixture(scope="session")
def vgg_params(torch_vgg19):
    """The same weights converted to Flax params."""
    from jaxart import weights

    return weights.convert_state_dict(torch_vgg19.state_dict())


@pytest.fixture
def pair_files(tmp_path) -> list[str]:
    """A content and a style file of random 40x30 pixels (PNG and JPEG), for the commands."""
    rng = np.random.default_rng(0)
    paths = []
    for name in ("content.png", "style.jpg"):
        Image.fromarray(rng.integers(0, 255, (30, 40, 3), np.uint8)).save(tmp_path / name)
        paths.append(str(tmp_path / name))
    return paths


def run_style(capsys, argv) -> tuple[int, str, str]:
    """`python -m jaxart.style` run in this process (no jax start-up per run): (exit status,
    stdout, stderr), argparse's refusals included."""
    from jaxart import cli
    from jaxart.style import __main__ as style_main

    try:
        code = cli.run(style_main.main, [str(a) for a in argv])
    except SystemExit as e:  # argparse's own refusals
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


# Style runs on shallow layers of ~32 px pictures: each compiles in seconds.
SHALLOW = dict(max_size=32, content_layers=("relu2_1",), style_layers=("relu1_1", "relu2_1"))


@pytest.fixture(scope="module")
def params():
    """Randomly initialised Flax VGG19 params (key 0), for the style runs."""
    import jax

    from jaxart import vgg

    return vgg.init_params(jax.random.key(0))


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    """The bundled content at 32 px (21x32) and the bundled style at its shape."""
    from jaxart import images

    content = images.load_image(EXAMPLES / "content.png", max_size=32)
    return content, images.load_image(EXAMPLES / "style.png", shape=content.shape[:2])


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


FIXTURE = FIXTURES / "mnist-small"  # 2,048 MNIST training and 512 test images


def assert_same_bits(a, b) -> None:
    """Two pytrees of arrays have the same structure and bit-identical leaves."""
    import jax

    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
