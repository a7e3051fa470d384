"""The page's HTTP API (Starlette): pictures in, jobs, their previews and results out, GAN runs.

Every answer is JSON or a picture. A bad request gets status 400 and {"error": one line} (from
jaxart's own errors), an unknown name 404; the page never sees a traceback or a server path.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import tempfile
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from jaxart import images
from jaxart.cache import packaged
from jaxart.errors import InputError
from jaxart.fast import apply
from jaxart.gan.config import GANConfig, RunConfig
from jaxart.serve import runs, work
from jaxart.serve.config import ServeConfig
from jaxart.serve.jobs import Job, Jobs
from jaxart.serve.uploads import Uploads
from jaxart.style.config import PRESETS, StyleConfig, preset, size_scaled_style_weight

STATIC = Path(__file__).resolve().parent / "static"
EXAMPLES = ("content.png", "style.png", "mosaic.png")
THUMBNAIL_SIZE = 96
FAST_STEPS_LIMIT = 5000  # an optimisation asked for from the page


class Server:
    """What the API serves from: the config, the jobs, the uploads, a temporary folder for
    results (removed on exit), and the networks and VGG19 weights, loaded once when first used."""

    def __init__(self, config: ServeConfig, vgg_loader: Callable[[], tuple[Any, dict[str, Any]]] | None = None):
        self.config = config
        self.folder = Path(tempfile.mkdtemp(prefix="jaxart-serve-"))
        self.uploads = Uploads(self.folder, config.max_upload_bytes, config.max_upload_pixels)
        self.jobs = Jobs(idle=config.idle)
        self.runs_dir = Path(config.runs_dir).expanduser()
        self._vgg_loader = vgg_loader
        self._loaded: dict[str, Any] = {}
        self._load_lock = threading.Lock()

    def close(self) -> None:
        self.jobs.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    def once(self, key: str, load: Callable[[], Any]) -> Any:
        with self._load_lock:
            if key not in self._loaded:
                self._loaded[key] = load()
            return self._loaded[key]

    def vgg(self) -> tuple[Any, dict[str, Any]]:
        from jaxart.style import driver

        return self.once("vgg", self._vgg_loader or (lambda: driver.load_weights(self.config.weights, 0)))

    def network(self, name: str) -> Any:
        from jaxart.fast import pretrained

        return self.once(name, lambda: pretrained.load(name))

    def thumbnails(self) -> list[bytes]:
        network = self.network("multistyle26")
        cat = images.load_image(packaged("examples", "content.png"), max_size=THUMBNAIL_SIZE)
        return self.once("thumbnails", lambda: work.styles_sheet(network.module, network.params, network.styles, cat))

    def picture(self, ref: Any, max_size: int | None = None, shape: tuple[int, int] | None = None) -> np.ndarray:
        """A picture the page names: {"example": name} or {"upload": id}; InputError otherwise."""
        if not isinstance(ref, dict):
            raise InputError("a picture is named {'example': name} or {'upload': id}")
        if "example" in ref:
            if ref["example"] not in EXAMPLES:
                raise InputError(f"no bundled picture {str(ref['example'])!r}; there are {', '.join(EXAMPLES)}")
            path = packaged("examples", ref["example"])
        elif "upload" in ref:
            path = self.uploads.get(str(ref["upload"])).path
        else:
            raise InputError("a picture is named {'example': name} or {'upload': id}")
        return images.load_image(path, max_size=max_size, shape=shape)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _server(request: Request) -> Server:
    return request.app.state.server


def _job(request: Request) -> Job:
    try:
        return _server(request).jobs.get(request.path_params["job"])
    except KeyError:
        raise HTTPException(404, "no such job") from None


async def index(request: Request) -> Response:
    return FileResponse(STATIC / "index.html")


async def info(request: Request) -> Response:
    server = _server(request)
    return JSONResponse(
        {
            "examples": list(EXAMPLES),
            "styles": 26,
            "trained": _trained(server.runs_dir),
            "runs": runs.names(server.runs_dir),
            "presets": list(PRESETS),
            "max_size": server.config.max_size,
            "defaults": {"size": 256, "steps": 60, "preset": "quick"},
        }
    )


def _trained(root: Path) -> list[str]:
    from jaxart.fast.loop import LAYOUT
    from jaxart.workdir import is_workdir

    if not root.is_dir():
        return []
    return [p.name for p in sorted(root.iterdir()) if runs.NAME.fullmatch(p.name) and is_workdir(p, LAYOUT)]


async def example(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in EXAMPLES:
        raise HTTPException(404, "no such picture")
    return FileResponse(packaged("examples", name))


async def upload(request: Request) -> Response:
    server = _server(request)
    name = request.query_params.get("name", "upload")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > server.config.max_upload_bytes:
        return _error(400, f"{name!r} is {int(declared):,} bytes; the limit is {server.config.max_upload_bytes:,}")
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > server.config.max_upload_bytes:
            return _error(400, f"{name!r} is over the limit of {server.config.max_upload_bytes:,} bytes")
    kept = server.uploads.add(bytes(data), name)
    return JSONResponse({"id": kept.id, "name": kept.name, "width": kept.width, "height": kept.height})


async def uploaded(request: Request) -> Response:
    return FileResponse(_server(request).uploads.get(request.path_params["id"]).path)


async def thumbnail(request: Request) -> Response:
    sheet = _server(request).thumbnails()
    index = request.path_params["index"]
    if not 0 <= index < len(sheet):
        raise HTTPException(404, "no such style")
    return Response(sheet[index], media_type="image/png")


def _number(body: dict, key: str, default: float, low: float, high: float) -> float:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise InputError(f"{key} must be a number from {low:g} to {high:g}, got {value!r}")
    return float(value)


def _style_job(server: Server, body: dict) -> tuple[str, Callable[[Job], None]]:
    """(label, work) of a style request (see README: the web page)."""
    method = body.get("method")
    if method not in ("fast", "optimise"):
        raise InputError(f"method must be 'fast' or 'optimise', got {method!r}")
    size = int(_number(body, "size", 256, 32, server.config.max_size))
    content = server.picture(body.get("content"), max_size=size)
    style = body.get("style")
    out = server.folder / f"result-{uuid.uuid4().hex}.png"
    original_colors = bool(body.get("original_colors", False))
    if method == "fast":
        strength = _number(body, "strength", 1.0, 0.0, 1.0)
        module, params, condition = _fast_network(server, style)
        label = f"fast, {content.shape[1]}x{content.shape[0]}"
        return label, lambda job: work.fast(job, module, params, condition, content, out, strength, original_colors)
    if not isinstance(style, dict) or not ("upload" in style or "example" in style):
        raise InputError("the optimisation needs a painting: upload one or pick a bundled style")
    painting = server.picture(style, shape=content.shape[:2])
    steps = int(_number(body, "steps", 60, 1, FAST_STEPS_LIMIT))
    name = body.get("preset", "quick")
    if name not in PRESETS:
        raise InputError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    params, defaults = server.vgg()
    weight = defaults.get("style_weight", StyleConfig.style_weight)
    weight = _number(body, "style_weight", size_scaled_style_weight(weight, size), 0, 1e12)
    config = preset(name, **{**defaults, "steps": steps, "max_size": size, "style_weight": weight})
    config = dataclasses.replace(config, original_colors=original_colors)
    every = server.config.preview_every
    label = f"optimise, {steps} steps, {content.shape[1]}x{content.shape[0]}"
    return label, lambda job: work.optimise(job, content, painting, params, config, out, every)


def _fast_network(server: Server, style: Any) -> tuple[Any, Any, np.ndarray]:
    """(module, params, condition) of the page's style choice for the fast method."""
    if not isinstance(style, dict):
        raise InputError("a style is {'pretrained': index}, {'trained': name, 'index': i}, or a picture")
    if "pretrained" in style:
        network = server.network("multistyle26")
        index = style["pretrained"]
        if not isinstance(index, int) or not 0 <= index < network.styles:
            raise InputError(f"pretrained style must be 0..{network.styles - 1}, got {index!r}")
        return network.module, network.params, np.eye(network.styles, dtype=np.float32)[index]
    if "trained" in style:
        from jaxart.fast.loop import load_network

        name = str(style["trained"])
        if name not in _trained(server.runs_dir):
            raise InputError(f"no trained network {name!r} in the runs folder")
        module, params, names = server.once(f"trained:{name}", lambda: load_network(server.runs_dir / name))
        index = style.get("index", 0)
        if not isinstance(index, int) or not 0 <= index < len(names):
            raise InputError(f"{name!r} has styles 0..{len(names) - 1}, got {index!r}")
        return module, params, np.eye(len(names), dtype=np.float32)[index]
    network = server.network("arbitrary")
    painting = (
        server.uploads.get(str(style["upload"])).path if "upload" in style else _example_path(style.get("example"))
    )
    return (
        network.transformer,
        network.transformer_params,
        np.asarray(apply.arbitrary_styler(network, painting).condition),
    )


def _example_path(name: Any) -> Path:
    if name not in EXAMPLES:
        raise InputError(f"no bundled picture {name!r}; there are {', '.join(EXAMPLES)}")
    return packaged("examples", name)


async def submit(request: Request) -> Response:
    server = _server(request)
    body = await _json(request)
    label, run = _style_job(server, body)
    job = server.jobs.submit(body["method"], label, run)
    return JSONResponse(job.public())


async def _json(request: Request) -> dict:
    try:
        body = await request.json()
    except ValueError:
        raise InputError("the request is not JSON") from None
    if not isinstance(body, dict):
        raise InputError("the request must be a JSON object")
    return body


async def jobs(request: Request) -> Response:
    return JSONResponse(_server(request).jobs.listing())


async def job_state(request: Request) -> Response:
    return JSONResponse(_job(request).public())


async def preview(request: Request) -> Response:
    job = _job(request)
    if job.preview is None:
        raise HTTPException(404, "no preview yet")
    return Response(job.preview, media_type="image/png", headers={"Cache-Control": "no-store"})


async def result(request: Request) -> Response:
    job = _job(request)
    if job.result is None:
        raise HTTPException(404, "no result yet")
    return FileResponse(job.result, media_type="image/png", filename=f"jaxart-{job.kind}-{job.id[:8]}.png")


async def cancel(request: Request) -> Response:
    job = _job(request)
    job.cancel()
    return JSONResponse(job.public())


async def run_list(request: Request) -> Response:
    return JSONResponse(runs.names(_server(request).runs_dir))


async def run_view(request: Request) -> Response:
    try:
        return JSONResponse(runs.view(_server(request).runs_dir, request.path_params["name"]))
    except runs.NotFound:
        raise HTTPException(404, "no such run") from None


async def run_samples(request: Request) -> Response:
    try:
        folder = runs.run_folder(_server(request).runs_dir, request.path_params["name"])
    except runs.NotFound:
        raise HTTPException(404, "no such run") from None
    grid = runs.latest_samples(folder)
    if grid is None:
        raise HTTPException(404, "no samples yet")
    return FileResponse(grid, headers={"Cache-Control": "no-store"})


async def start_run(request: Request) -> Response:
    server = _server(request)
    body = await _json(request)
    name = str(body.get("name", ""))
    if not runs.NAME.fullmatch(name) or name in (".", ".."):
        raise InputError("a run's name is letters, digits, '.', '_' and '-'")
    steps = int(_number(body, "steps", 200, 1, 100_000))
    model = body.get("model", "mlp")
    if model not in ("mlp", "dcgan"):
        raise InputError(f"model must be 'mlp' or 'dcgan', got {model!r}")
    server.runs_dir.mkdir(parents=True, exist_ok=True)
    run = RunConfig(
        workdir=str(server.runs_dir / name), data=server.config.gan_data, max_steps=steps, checkpoint_every=steps
    )
    config = GANConfig(model=model)
    job = server.jobs.submit("gan", f"GAN {model} {name!r}, {steps} steps", lambda job: work.gan(job, config, run))
    return JSONResponse(job.public())


async def _input_error(request: Request, exc: Exception) -> Response:
    return _error(400, str(exc))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _error(exc.status_code, exc.detail)


async def _server_error(request: Request, exc: Exception) -> Response:
    return _error(500, "the server failed (see its log)")


def create_app(config: ServeConfig = ServeConfig(), vgg_loader: Callable[[], Any] | None = None) -> Starlette:
    """The page and its API. `vgg_loader`: () -> (VGG19 params, their style defaults) for the
    optimisation (default: `config.weights`, loaded when first needed)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.server = server
        yield
        server.close()

    server = Server(config, vgg_loader)
    routes = [
        Route("/", index),
        Route("/api/info", info),
        Route("/api/examples/{name}", example),
        Route("/api/uploads", upload, methods=["POST"]),
        Route("/api/uploads/{id}", uploaded),
        Route("/api/styles/{index:int}.png", thumbnail),
        Route("/api/jobs", jobs),
        Route("/api/jobs", submit, methods=["POST"]),
        Route("/api/jobs/{job}", job_state),
        Route("/api/jobs/{job}/preview.png", preview),
        Route("/api/jobs/{job}/result.png", result),
        Route("/api/jobs/{job}/cancel", cancel, methods=["POST"]),
        Route("/api/runs", run_list),
        Route("/api/runs", start_run, methods=["POST"]),
        Route("/api/runs/{name}", run_view),
        Route("/api/runs/{name}/samples.png", run_samples),
        Mount("/static", StaticFiles(directory=STATIC)),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={InputError: _input_error, HTTPException: _http_error, Exception: _server_error},
    )
    app.state.server = server
    return app
