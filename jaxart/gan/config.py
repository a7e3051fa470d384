"""The GAN's two configurations, each field declared once with its default (the seed's) and flag.

`GANConfig` is what a run *is*: the model and its optimisation. A checkpoint records it and
a resume must match it; it is also the static argument of the compiled steps. `RunConfig` is
how a run is *driven*: where it writes, how long it goes, how often it saves or measures.
Changing it between a run and its resume is allowed and leaves the trajectory alone.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from jaxart import cli


def momentum(text: str) -> float:
    """argparse type: a number in [0, 1)."""
    value = cli.non_negative_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text}")
    return value


@dataclasses.dataclass(frozen=True)
class GANConfig:
    """Model and optimisation of one run (what its checkpoints must match); defaults: the seed's MNIST GAN."""

    model: str = cli.option(
        "mlp", "generator/discriminator architecture: the seed's 'mlp' or a convolutional 'dcgan'", str
    )
    batch_size: int = cli.option(32, "images per step", cli.positive_int)
    lr: float = cli.option(2e-4, "Adam learning rate of both networks", cli.positive_float)
    # None rather than a number: the published optimiser differs by model, and a run
    # records what was asked, so `--model dcgan` alone gets the DCGAN's 0.5.
    b1: float | None = cli.option(
        None,
        "Adam's b1 of both networks (default: the model's, mlp 0.9 as torch's Adam, dcgan 0.5 as DCGAN's)",
        momentum,
    )
    latent_dim: int = cli.option(64, "size of the generator's noise input", cli.positive_int)
    hidden_dim: int = cli.option(
        256,
        "width of the hidden layers; dcgan: its maps have hidden_dim/2 channels at 7x7, /4 at 14x14",
        cli.positive_int,
    )
    seed: int = cli.option(0, "seed of initialisation, data order and noise", cli.non_negative_int)

    def __post_init__(self) -> None:
        if self.model == "dcgan" and self.hidden_dim < 4:
            raise ValueError(f"--model dcgan needs --hidden-dim of at least 4, got {self.hidden_dim}")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """How one run is driven: its folder, data, length and the cadence of its side effects."""

    workdir: str = cli.option("runs/gan-mnist", "folder for checkpoints, metrics, samples and plots", str)
    # A run, not a model, setting: a resume compares the data's checksum, so a copy elsewhere will do.
    data: str = cli.option(
        "mnist",
        "'mnist', 'fashion-mnist' (looked up in $JAXART_DATA, then the cache, then downloaded) or a folder of IDX files",
        str,
    )
    epochs: int = cli.option(100, "passes over the training images", cli.positive_int)
    max_steps: int | None = cli.option(
        None, "stop at this total step count, before the epochs run out", cli.positive_int
    )
    checkpoint_every: int = cli.option(
        2000, "save a checkpoint every this many steps (and at the end)", cli.positive_int
    )
    keep_checkpoints: int = cli.option(3, "how many of the latest checkpoints to keep", cli.positive_int)
    steps_per_call: int | None = cli.option(
        None,
        "steps per compiled call (lax.scan over device-resident data; default: the model's, mlp 50, "
        "dcgan 1 on CPU and 50 on GPU/TPU); mlp results do not depend on it, dcgan's can differ in "
        "the last bits (XLA compiles convolutions in a loop differently)",
        cli.positive_int,
    )
    # Evaluation draws from its own key and leaves the training trajectory alone.
    eval_every: int = cli.option(
        0,
        "measure the generator with the data's judge every this many steps (and at the end) into eval.jsonl; 0: never",
        cli.non_negative_int,
    )
    eval_samples: int = cli.option(10_000, "generated images per --eval-every evaluation", cli.positive_int)
    runs: int = cli.option(
        1,
        "independent runs trained at once, vmapped (run r: --seed + r, in <workdir>/run-RRR); "
        "a resume needs the same count",
        cli.positive_int,
    )
    devices: int | None = cli.option(
        None,
        "devices of the mesh, the batch split over them (default: all devices of all processes); "
        "a resume may use another count",
        cli.positive_int,
    )


def as_json(config: GANConfig) -> dict[str, Any]:
    """The config as a checkpoint records it."""
    return dataclasses.asdict(config)
