"""python -m jaxart.serve: the web page for both jobs (see README: The web page)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from jaxart import cli
from jaxart.serve.config import ServeConfig


def parser() -> cli.ArgumentParser:
    p = cli.ArgumentParser(
        prog="python -m jaxart.serve",
        description="Serves one local page: stylise a photo (a network's one pass, or the optimisation "
        "with a live preview), watch or start GAN runs. Open the address it prints.",
    )
    cli.add_config_arguments(p, ServeConfig)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    config = cli.config_from_args(ServeConfig, parser().parse_args(argv))
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
    server = uvicorn.Server(uvicorn.Config(app, host=config.host, port=config.port, log_level="warning"))
    print(f"jaxart: the page is at http://{config.host}:{config.port}/ (Ctrl-C stops it)", flush=True)
    try:
        server.run()
    finally:  # however it ends (Ctrl-C, SIGTERM), the jobs stop and the results folder goes
        app.state.server.close()
    return 0


if __name__ == "__main__":
    cli.main(main)
