"""Configuration of the web page's server: every option and its default."""

from __future__ import annotations

import dataclasses

from jaxart import errors, options
from jaxart.errors import ConfigError

LOOPBACK = ("127.0.0.1", "::1", "localhost")


@dataclasses.dataclass(frozen=True)
class ServeConfig:
    host: str = options.option(
        "127.0.0.1",
        "address to listen on: this machine only by default (anything wider is warned about)",
        options.text,
    )
    port: int = options.option(8000, "port to listen on (0: any free one)", options.non_negative_int)
    runs_dir: str = options.option(
        "runs",
        "the folder of training runs the page may watch (GAN workdirs) and use (jaxart.fast networks); "
        "short GAN runs started from the page go there too",
        options.text,
    )
    weights: str | None = options.option(
        None,
        "VGG19 weights of the optimisation (as jaxart.style's --weights; default: the first that works)",
        options.text,
    )
    gan_data: str = options.option(
        "mnist", "the data of GAN runs started from the page (as jaxart.gan's --data)", options.text
    )
    max_upload_bytes: int = options.option(20_000_000, "largest upload accepted, in bytes", options.positive_int)
    max_upload_pixels: int = options.option(
        40_000_000,
        "largest upload accepted, in pixels (read from its header: a bomb never decodes)",
        options.positive_int,
    )
    max_size: int = options.option(1024, "the largest picture size the page may ask for", options.positive_int)
    preview_every: int = options.option(10, "optimisation steps between two previews", options.positive_int)
    idle: float = options.option(
        60.0, "seconds after which a job nobody watches (the page was closed) is cancelled", options.positive_float
    )

    def __post_init__(self):
        if not 0 <= self.port < 65536:
            raise ConfigError(f"{errors.option('port')} must be in 0..65535, got {self.port}")

    @property
    def loopback(self) -> bool:
        return self.host in LOOPBACK
