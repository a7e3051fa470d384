"""python -m jaxart.serve: the web page for both jobs (see README: The web page)."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from jaxart import cli, data, weights
from jaxart.errors import InputError, option
from jaxart.serve.config import ServeConfig


def parser() -> cli.ArgumentParser:
    p = cli.ArgumentParser(
        prog="python -m jaxart.serve",
        description="Serves one local page: stylise a photo (a network's one pass, or the optimisation "
        "with a live preview), watch or start GAN runs. Open the address it prints.",
    )
    cli.add_config_arguments(p, ServeConfig)
    return p


def _listen(host: str, port: int) -> socket.socket:
    """A socket bound to (host, port) before the page is announced, so an address that does not
    resolve, a port in use or one not allowed is refused in one line."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as e:  # socket.gaierror too
        raise InputError(f"cannot listen on {host!r}: {e.strerror or e}") from e
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as e:
        sock.close()
        raise InputError(f"cannot listen on {host} port {port}: {e.strerror or e}") from e
    return sock


def _check_paths(config: ServeConfig) -> None:
    """Refuses, before serving, what a job would only fail on later: a runs folder that is a file
    or cannot be made, a weights file or GAN data folder that does not exist."""
    runs = Path(config.runs_dir).expanduser()
    if runs.exists() and not runs.is_dir():
        raise InputError(f"{option('runs_dir')} {config.runs_dir!r} is a file, not a folder")
    parent = next(p for p in (runs, *runs.absolute().parents) if p.exists())
    if not (parent.is_dir() and os.access(parent, os.W_OK | os.X_OK)):
        raise InputError(f"{option('runs_dir')} {config.runs_dir!r} cannot be made: {str(parent)!r} is not writable")
    weights.check_source(config.weights)
    if config.gan_data not in data.NAMES:
        data.resolve(config.gan_data, download=False)


def main(argv: Sequence[str] | None = None) -> int:
    config = cli.config_from_args(ServeConfig, parser().parse_args(argv))
    _check_paths(config)
    sock = _listen(config.host, config.port)
    cli.prepare_backend()
    import uvicorn  # deferred: --help and refusals need none of the server

    from jaxart.serve.app import create_app

    if not config.loopback:
        print(
            f"warning: listening on {config.host}: anyone who can reach this machine can use the page "
            "(there is no login)",
            file=sys.stderr,
        )
    app = create_app(config)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    host = f"[{config.host}]" if ":" in config.host else config.host
    print(f"jaxart: the page is at http://{host}:{sock.getsockname()[1]}/ (Ctrl-C stops it)", flush=True)
    try:
        server.run(sockets=[sock])
    finally:  # however it ends (Ctrl-C, SIGTERM), the jobs stop and the results folder goes
        app.state.server.close()
        sock.close()
    return 0


if __name__ == "__main__":
    cli.main(main)
