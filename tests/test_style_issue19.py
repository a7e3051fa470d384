"""Issue 19, found by probing `python -m jaxart.style`: a file name that is not UTF-8, an output
folder inside the input folder, a video with a blend of styles, a --style-scale beyond memory.

Runs use random weights, pictures of a few dozen pixels and two steps, in this process
(`run_main`: conftest's `run_style`)."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import jax
import pytest
from conftest import run_style as run_main
from test_bad_inputs_style import picture

from jaxart import images, vgg
from jaxart.errors import InputError
from jaxart.style import StyleConfig, folders, memory

QUICK = ["--weights", "random", "--max-size", "32", "--steps", "2"]
NOT_UTF8 = os.fsdecode(b"caf\xe9.png")  # what Python makes of a Latin-1 name on a UTF-8 system


def test_a_content_named_in_no_utf8_gets_its_picture_plot_and_metrics(capsys, tmp_path):
    content = picture(tmp_path / NOT_UTF8)
    style = picture(tmp_path / "style.png", seed=1)
    argv = ["--content", content, "--style", style, "--output", tmp_path / "o.png", "--metrics", tmp_path / "m.jsonl"]
    code, out, err = run_main(capsys, argv + QUICK)
    assert code == 0 and "Traceback" not in err, err
    assert out.startswith("stylised 32x24")
    assert images.load_image(tmp_path / "o.png").shape == (24, 32, 3)
    assert (tmp_path / "o.loss.png").is_file()
    assert len((tmp_path / "m.jsonl").read_text().splitlines()) == 2


def test_a_batch_names_such_a_content_in_its_metrics_as_its_bytes(capsys, tmp_path):
    contents = [picture(tmp_path / NOT_UTF8), picture(tmp_path / "b.png", seed=2)]
    style = picture(tmp_path / "s.png", seed=1)
    argv = ["--content", *contents, "--style", style, "--output", tmp_path / "o.png", "--metrics", tmp_path / "m.jsonl"]
    code, out, err = run_main(capsys, argv + QUICK)
    assert code == 0 and "Traceback" not in err, err
    assert (tmp_path / os.fsdecode(b"o_caf\xe9_s.png")).is_file() and (tmp_path / "o.loss.png").is_file()
    assert f"wrote {tmp_path / 'o_caf'}\\xe9_s.png, " in out  # the byte shown, on any stdout
    # The JSON is ASCII (the undecodable byte escaped), and reads back to the very file name.
    text = (tmp_path / "m.jsonl").read_bytes()
    assert text.isascii()
    rows = [json.loads(line) for line in text.decode().splitlines()]
    assert {os.fsencode(row["content"]) for row in rows} == {os.fsencode(c) for c in contents}


@pytest.mark.parametrize(
    "title,shown",
    [
        (NOT_UTF8, "caf\\xe9.png"),
        ("a$\\frac$.png", "a$\\frac$.png"),  # not mathtext: this one would not parse
        ("$x^2$.png", "$x^2$.png"),
        ("tab\there", "tab\\there"),
        ("two\nlines", "two\\nlines"),
        ("\u732b.png", "\\u732b.png"),  # no glyph in the font
        ("caf\u00e9.png", "caf\u00e9.png"),
    ],
    ids=["not-utf8", "bad-mathtext", "mathtext", "tab", "newline", "no-glyph", "latin"],
)
def test_the_loss_plot_shows_any_name_without_a_warning(title, shown, tmp_path):
    from jaxart.plots import loss_figure, save_loss_curves

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        save_loss_curves(tmp_path / "p.png", {"loss": [3.0, 2.0]}, title=title)
    fig = loss_figure({"loss": [3.0, 2.0]}, title=title)
    assert [t.get_text() for t in fig.texts] == [shown]


def _folder(tmp_path: Path) -> tuple[Path, str]:
    """A folder of two contents, with what an earlier run of one pair into it left (its
    picture, loss plot, picture so far, snapshot and a batch's contact sheet); and a style."""
    folder = tmp_path / "in"
    folder.mkdir()
    for seed, name in enumerate(["a.png", "b.png", "o.png", "o.loss.png", "o.partial.png", "o.step00010.png"]):
        picture(folder / name, seed=seed)
    picture(folder / "o_grid.png", 60, 80)
    return folder, picture(tmp_path / "s.png", seed=9)


def test_a_folder_run_writing_into_its_folder_reads_neither_its_outputs_nor_earlier_runs(capsys, tmp_path):
    folder, style = _folder(tmp_path)
    argv = ["--content", folder, "--style", style, "--output", folder / "o.png", *QUICK]
    code, out, err = run_main(capsys, argv)
    assert code == 0 and out.startswith("stylised 2 pairs"), err
    written = sorted(p.name for p in folder.iterdir())
    assert [n for n in written if n.startswith("o_") and n != "o_grid.png"] == ["o_a_s.png", "o_b_s.png"]
    code, out, err = run_main(capsys, argv)  # the rerun: all done
    assert code == 0 and out.startswith("stylised 0 pairs") and "skipped 2 already done" in out, err
    assert sorted(p.name for p in folder.iterdir()) == written


def test_a_video_written_into_its_frames_folder_resumes(capsys, tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    for k in range(2):
        picture(frames / f"f{k}.png", seed=k)
    style = picture(tmp_path / "s.png", seed=9)
    argv = ["--content-frames", frames, "--style", style, "--output", frames / "o.png", *QUICK]
    assert run_main(capsys, argv)[0] == 0
    code, out, err = run_main(capsys, argv)
    assert code == 0 and out.startswith("stylised 0 frames") and "skipped 2 already done" in out, err
    assert sorted(p.name for p in frames.iterdir()) == ["f0.png", "f1.png", "o_f0.png", "o_f1.png"]


def test_a_folder_of_only_a_runs_outputs_says_so(tmp_path):
    picture(tmp_path / "o.loss.png")
    with pytest.raises(InputError, match="holds no image but this run's outputs"):
        folders.list_contents(tmp_path, tmp_path / "o.png", ["s.png"])
    assert folders.list_images(tmp_path) == [tmp_path / "o.loss.png"]  # with no output: all


def test_a_video_takes_a_blend_of_two_styles(capsys, tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    for k in range(2):
        picture(frames / f"f{k}.png", seed=k)
    styles = [picture(tmp_path / "s.png", seed=8), picture(tmp_path / "t.png", 40, 40, seed=9)]
    argv = ["--content-frames", frames, "--style", *styles, "--output", tmp_path / "o.png", *QUICK]
    code, out, err = run_main(capsys, [*argv, "--style-blend", "1,3"])
    assert code == 0 and out.startswith("stylised 2 frames"), err
    assert images.load_image(tmp_path / "o_f1.png").shape == (24, 32, 3)
    code, _, err = run_main(capsys, [*argv, "--style-blend", "1,2,3", "--output", tmp_path / "x.png"])
    assert code == 2 and err == "error: --style-blend has 3 weight(s) for 2 style image(s)\n"


@pytest.mark.parametrize("video", [False, True], ids=["picture", "video"])
def test_a_style_scale_beyond_memory_is_refused_in_one_line_before_it_is_made(video, capsys, tmp_path, monkeypatch):
    (tmp_path / "frames").mkdir()
    content = picture(tmp_path / "frames" / "f1.png")
    style = picture(tmp_path / "s.png", seed=1)
    # Room for the run at --max-size 32, not for its style 50 times as long (~2.5 GiB).
    monkeypatch.setattr(memory, "available_bytes", lambda: 2**30)

    def load_image(*args, **kwargs):
        raise AssertionError("an image was loaded")

    monkeypatch.setattr(images, "load_image", load_image)
    what = ["--content-frames", tmp_path / "frames"] if video else ["--content", content]
    argv = [*what, "--style", style, "--output", tmp_path / "out" / "o.png", *QUICK, "--style-scale", "50"]
    code, out, err = run_main(capsys, argv)
    assert code == 2 and out == "" and len(err.splitlines()) == 1, err
    assert "32x24 image with styles up to 1600 px long" in err and "the largest --style-scale is " in err
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def params():
    return jax.eval_shape(vgg.init_params, jax.random.key(0))  # shapes are all an estimate reads


@pytest.mark.parametrize(
    "more,pairs",
    [
        (dict(style_scale=4.0), 1),  # a style 4x as long
        (dict(style_blend=(1.0, 1.0, 1.0)), 1),  # three styles per pair
        ({}, 3),  # a batch or a sweep
    ],
    ids=["style-scale", "blend", "pairs"],
)
def test_the_memory_estimate_grows_with_every_option_that_adds_pixels(params, more, pairs):
    base = memory.estimate_bytes((240, 320), StyleConfig(), params)
    assert memory.estimate_bytes((240, 320), StyleConfig(**more), params, pairs) > base


def test_the_memory_estimate_holds_the_pyramid_level_before_while_the_last_starts(params):
    # Where the style targets make the peak (a large style), not the step.
    one, levels = (StyleConfig(style_scale=8.0, pyramid=p) for p in (0, 64))
    assert memory.estimate_bytes((240, 320), levels, params) > memory.estimate_bytes((240, 320), one, params)


def test_the_largest_style_scale_named_fits(params):
    config = StyleConfig(style_scale=50.0)
    budget = memory.estimate_bytes((24, 32), StyleConfig(style_scale=10.0), params)
    scale = memory.largest_style_scale((24, 32), config, params, budget)
    assert 9.9 <= scale <= 10.0
    assert memory.estimate_bytes((24, 32), StyleConfig(style_scale=scale), params) <= budget
