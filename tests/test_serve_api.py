"""The web page's API through Starlette's test client: uploads and their refusals, jobs (fast,
optimisation with previews, cancel, the idle watchdog, compiled programs reused), the GAN view
and its confinement to --runs-dir, the temporary folder's clean-up. The page in a real browser:
tests/test_serve_browser.py."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import EXAMPLES, FIXTURE
from PIL import Image
from starlette.testclient import TestClient
from test_fuzz import png_header_only

from jaxart import cli, images, weights
from jaxart.serve import ServeConfig, create_app, work
from jaxart.serve import __main__ as serve_main


@pytest.fixture(scope="module")
def random_vgg():
    params = weights.load("random")
    return lambda: (params, {})


@pytest.fixture
def client(tmp_path, random_vgg):
    config = ServeConfig(
        runs_dir=str(tmp_path / "runs"), gan_data=str(FIXTURE), preview_every=2, max_upload_pixels=10**6
    )
    with TestClient(create_app(config, random_vgg)) as c:
        yield c


def wait(client: TestClient, job_id: str, seconds: float = 300) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        state = client.get(f"/api/jobs/{job_id}").json()
        if state["state"] not in ("queued", "running"):
            return state
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still running after {seconds} s")


def upload(client: TestClient, data: bytes, name: str = "picture.png"):
    return client.post(f"/api/uploads?name={name}", content=data)


def png_header(width: int, height: int) -> bytes:
    """`png_header_only` and an empty data chunk: Pillow reads the size of such a file (without
    one it does not take it for a PNG)."""
    return png_header_only(width, height) + struct.pack(">I", 0) + b"IDAT" + struct.pack(">I", zlib.crc32(b"IDAT"))


def test_the_page_and_its_files_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and "jaxart" in page.text and "/static/app.js" in page.text
    assert "http" not in page.text.replace("http-equiv", "")  # nothing from elsewhere: works offline
    assert client.get("/static/app.js").status_code == 200
    info = client.get("/api/info").json()
    assert info["examples"] == ["content.png", "style.png", "mosaic.png"] and info["styles"] == 26


@pytest.mark.parametrize(
    "data, says",
    [
        (b"just some notes", "not an image"),
        (b"", "empty"),
        ((EXAMPLES / "content.png").read_bytes()[:2000], "damaged or truncated"),
        (png_header(2000, 1000), "the limit is 1,000,000 pixels"),  # from the header: never decoded
        (png_header(100_000, 100_000), "decompression bomb"),  # refused by jaxart's own image rule first
    ],
)
def test_bad_uploads_get_one_line(client, data, says):
    answer = upload(client, data, "notes.png")
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert says in error and "\n" not in error and "/tmp" not in error, error


def test_uploads_are_capped_in_bytes(tmp_path, random_vgg):
    config = ServeConfig(runs_dir=str(tmp_path), max_upload_bytes=1000)
    with TestClient(create_app(config, random_vgg)) as c:
        answer = upload(c, (EXAMPLES / "content.png").read_bytes())
        assert answer.status_code == 400 and "limit" in answer.json()["error"]


def test_an_upload_is_named_by_an_id_only(client):
    kept = upload(client, (EXAMPLES / "style.png").read_bytes(), "my painting.png").json()
    assert set(kept) == {"id", "name", "width", "height"} and len(kept["id"]) == 32
    assert client.get(f"/api/uploads/{kept['id']}").content[:4] == b"\x89PNG"
    for bad in ("../../etc/passwd", "0" * 32, "x"):
        assert client.get(f"/api/uploads/{bad}").status_code in (400, 404)


def test_a_fast_job_makes_a_png_of_the_asked_size_and_reuses_its_program(client):
    kept = upload(client, (EXAMPLES / "content.png").read_bytes()).json()
    request = {"method": "fast", "content": {"upload": kept["id"]}, "style": {"pretrained": 5}, "size": 120}
    done = wait(client, client.post("/api/jobs", json=request).json()["id"])
    assert done["state"] == "done" and done["result"], done
    result = client.get(f"/api/jobs/{done['id']}/result.png")
    assert "attachment" in result.headers["content-disposition"]
    height, width = images.load_image(EXAMPLES / "content.png", max_size=120).shape[:2]  # the seed's rounding
    assert Image.open(io.BytesIO(result.content)).size == (width, height)
    programs = work._network._cache_size()
    request["style"] = {"pretrained": 9}
    assert wait(client, client.post("/api/jobs", json=request).json()["id"])["state"] == "done"
    assert work._network._cache_size() == programs  # another style, the same shape: nothing compiled


def test_the_arbitrary_pair_takes_an_uploaded_painting(client):
    painting = upload(client, (EXAMPLES / "mosaic.png").read_bytes()).json()
    request = {"method": "fast", "content": {"example": "content.png"}, "style": {"upload": painting["id"]}, "size": 64}
    assert wait(client, client.post("/api/jobs", json=request).json()["id"])["state"] == "done"


def test_an_optimisation_shows_previews_and_its_loss(client):
    request = {
        "method": "optimise",
        "content": {"example": "content.png"},
        "style": {"example": "style.png"},
        "size": 48,
        "steps": 7,
    }
    job = client.post("/api/jobs", json=request).json()
    done = wait(client, job["id"])
    assert done["state"] == "done" and done["step"] == 7 and len(done["losses"]) == 7
    assert done["preview"] == 5  # steps 2, 4, 6 and 7, then the result
    assert Image.open(io.BytesIO(client.get(f"/api/jobs/{job['id']}/preview.png").content)).size == (48, 31)


def test_a_cancelled_optimisation_stops_within_a_step(client):
    request = {"method": "optimise", "content": {"example": "content.png"}, "style": {"example": "style.png"}}
    job = client.post("/api/jobs", json={**request, "size": 48, "steps": 5000}).json()
    while client.get(f"/api/jobs/{job['id']}").json()["step"] < 2:
        time.sleep(0.05)
    client.post(f"/api/jobs/{job['id']}/cancel")
    stopped = wait(client, job["id"], 60)
    assert stopped["state"] == "cancelled" and stopped["step"] < 5000
    assert client.get(f"/api/jobs/{job['id']}/result.png").status_code == 404


def test_a_job_nobody_watches_is_cancelled(tmp_path, random_vgg):
    config = ServeConfig(runs_dir=str(tmp_path), idle=1.0)
    with TestClient(create_app(config, random_vgg)) as c:
        request = {"method": "optimise", "content": {"example": "content.png"}, "style": {"example": "style.png"}}
        job = c.post("/api/jobs", json={**request, "size": 48, "steps": 5000}).json()
        time.sleep(4)  # the page is gone: nobody polls
        state = c.get(f"/api/jobs/{job['id']}").json()
        assert state["state"] == "cancelled" and "not watched" in state["message"]


@pytest.mark.parametrize(
    "request_body, says",
    [
        ({"method": "paint"}, "method must be"),
        (
            {"method": "fast", "content": {"example": "../../etc/passwd"}, "style": {"pretrained": 0}},
            "no bundled picture",
        ),
        ({"method": "fast", "content": {"upload": "f" * 32}, "style": {"pretrained": 0}}, "no uploaded picture"),
        ({"method": "fast", "content": "/etc/passwd", "style": {"pretrained": 0}}, "a picture is named"),
        ({"method": "fast", "content": {"example": "content.png"}, "style": {"pretrained": 26}}, "0..25"),
        ({"method": "fast", "content": {"example": "content.png"}, "style": {"trained": "x"}}, "no trained network"),
        ({"method": "fast", "content": {"example": "content.png"}, "size": 10**6, "style": {}}, "size must be"),
        ({"method": "optimise", "content": {"example": "content.png"}, "style": {"pretrained": 1}}, "needs a painting"),
        (
            {
                "method": "optimise",
                "content": {"example": "content.png"},
                "style": {"example": "style.png"},
                "preset": "x",
            },
            "unknown preset",
        ),
        (
            {
                "method": "optimise",
                "content": {"example": "content.png"},
                "style": {"example": "style.png"},
                "steps": -1,
            },
            "steps must be",
        ),
    ],
)
def test_bad_job_requests_get_one_line(client, request_body, says):
    answer = client.post("/api/jobs", json=request_body)
    assert answer.status_code == 400 and says in answer.json()["error"], answer.json()
    assert client.get("/api/jobs").json() == []


def test_a_request_that_is_not_json_gets_one_line(client):
    answer = client.post("/api/jobs", content=b"{not json")
    assert answer.status_code == 400 and answer.json() == {"error": "the request is not JSON"}


def test_a_gan_run_started_from_the_page_is_watched(client):
    job = client.post("/api/runs", json={"name": "page-run", "model": "mlp", "steps": 60}).json()
    assert wait(client, job["id"])["state"] == "done"
    assert client.get("/api/runs").json() == ["page-run"]
    view = client.get("/api/runs/page-run").json()
    assert view["steps"][-1] == 60 and set(view["metrics"]) >= {"d_loss", "g_loss"}
    assert len(view["metrics"]["d_loss"]) == len(view["steps"])
    grid = client.get("/api/runs/page-run/samples.png")
    assert grid.status_code == 200 and grid.content[:4] == b"\x89PNG"


def test_the_gan_view_stays_inside_the_runs_folder(client, tmp_path):
    runs = tmp_path / "runs"
    outside = tmp_path / "outside"
    job = client.post("/api/runs", json={"name": "real", "steps": 2}).json()
    assert wait(client, job["id"])["state"] == "done"
    (runs / "real").rename(outside)  # a GAN workdir, but outside the runs folder
    (runs / "escape").symlink_to(outside)
    (runs / "plain").mkdir()  # inside, but not a workdir
    assert client.get("/api/runs").json() == []
    for name in ("escape", "plain", "..", "%2e%2e", "..%2Foutside", "nothing"):
        assert client.get(f"/api/runs/{name}").status_code == 404, name
        assert client.get(f"/api/runs/{name}/samples.png").status_code == 404, name
    for name in ("..", "a/b", "", "x" * 200):
        answer = client.post("/api/runs", json={"name": name, "steps": 2})
        assert answer.status_code == 400, name


def test_results_live_in_a_temporary_folder_removed_on_exit(tmp_path, random_vgg):
    app = create_app(ServeConfig(runs_dir=str(tmp_path)), random_vgg)
    folder = app.state.server.folder
    with TestClient(app) as c:
        upload(c, (EXAMPLES / "style.png").read_bytes())
        assert any(folder.iterdir())
    assert not folder.exists()


def fetch(url: str, seconds: float = 60) -> bytes:
    """GET `url`, waiting for the server to listen."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=seconds) as answer:
                return answer.read()
        except urllib.error.URLError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_the_command_refuses_bad_flags_and_warns_when_listening_wider(tmp_path):
    command = [sys.executable, "-m", "jaxart.serve", "--runs-dir", str(tmp_path)]
    refused = subprocess.run([*command, "--port", "70000"], capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "0..65535" in refused.stderr
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    before = set(Path(tempfile.gettempdir()).glob("jaxart-serve-*"))
    server = subprocess.Popen(
        [*command, "--host", "0.0.0.0", "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert "the page is at" in server.stdout.readline()
        assert server.stderr.readline().startswith("warning: listening on 0.0.0.0")
        assert json.loads(fetch(f"http://127.0.0.1:{port}/api/info"))["styles"] == 26
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(60)
    assert set(Path(tempfile.gettempdir()).glob("jaxart-serve-*")) == before  # the results folder is gone


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--port", "{busy}"], "cannot listen on 127.0.0.1 port {busy}: Address already in use"),
        (["--host", "999.1.1.1"], "cannot listen on '999.1.1.1'"),
        (["--host", " "], "--host: expected a name"),
        (["--runs-dir", "{file}"], "is a file, not a folder"),
        (["--weights", "{missing}"], "no such file or folder"),
        (["--gan-data", "{missing}"], "unknown data"),
    ],
    ids=["port in use", "unknown host", "empty host", "runs folder a file", "no weights", "no GAN data"],
)
def test_the_command_refuses_what_it_could_not_serve(flags, words, tmp_path, capsys):
    """Before the page is announced, in one line with status 2: nothing it serves would work."""
    (tmp_path / "file").write_text("x")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        names = {"busy": busy.getsockname()[1], "file": tmp_path / "file", "missing": tmp_path / "missing"}
        argv = ["--runs-dir", str(tmp_path / "runs"), *(f.format(**names) for f in flags)]
        try:
            status = cli.run(serve_main.main, argv)
        except SystemExit as e:  # argparse's usage errors
            status = e.code
    out, err = capsys.readouterr()
    assert status == 2 and err.count("\n") == 1 and words.format(**names) in err, err
    assert "page is at" not in out and sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_uploads_keep_the_pixels_by_jaxart_rules(client, tmp_path):
    rgba = Image.new("RGBA", (20, 10), (255, 0, 0, 0))  # fully transparent red: white by the rule
    buffer = io.BytesIO()
    rgba.save(buffer, format="PNG")
    kept = upload(client, buffer.getvalue()).json()
    picture = np.asarray(Image.open(io.BytesIO(client.get(f"/api/uploads/{kept['id']}").content)))
    assert picture.shape == (10, 20, 3) and (picture == 255).all()
    assert os.path.basename(kept["name"]) == kept["name"]


def test_the_static_folder_ships_with_the_package():
    static = Path(work.__file__).parent / "static"
    assert {p.name for p in static.iterdir()} >= {"index.html", "app.js", "style.css"}
