"""The GAN's configuration: every option, its default (the seed's), its flag and whether a run fixes it."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from jaxart import cli


def _field(default: Any, help: str, parse, fixed: bool = False) -> Any:
    """fixed: the field determines the run's trajectory, so resuming a checkpoint
    with a different value is an error rather than a silent change of course."""
    return cli.option(default, help, parse, fixed=fixed)


def momentum(text: str) -> float:
    """argparse type: a number in [0, 1)."""
    value = cli.non_negative_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text}")
    return value


@dataclasses.dataclass(frozen=True)
class GANConfig:
    """Options of one training run; the defaults are the seed's MNIST GAN."""

    workdir: str = _field("runs/gan-mnist", "folder for checkpoints, metrics, samples and plots", str)
    # Not `fixed`: a resume compares the data's checksum, so a copy in another folder will do.
    data: str = _field("mnist", "'mnist', 'fashion-mnist' or a folder of IDX files", str)
    model: str = _field(
        "mlp", "generator/discriminator architecture: the seed's 'mlp' or a convolutional 'dcgan'", str, fixed=True
    )
    epochs: int = _field(100, "passes over the training images", cli.positive_int)
    max_steps: int | None = _field(None, "stop at this total step count, before the epochs run out", cli.positive_int)
    batch_size: int = _field(32, "images per step", cli.positive_int, fixed=True)
    lr: float = _field(2e-4, "Adam learning rate of both networks", cli.positive_float, fixed=True)
    # None rather than a number: the published optimiser differs by model, and a run
    # records what was asked, so `--model dcgan` alone gets the DCGAN's 0.5.
    b1: float | None = _field(
        None,
        "Adam's b1 of both networks (default: the model's, mlp 0.9 as torch's Adam, dcgan 0.5 as DCGAN's)",
        momentum,
        fixed=True,
    )
    latent_dim: int = _field(64, "size of the generator's noise input", cli.positive_int, fixed=True)
    hidden_dim: int = _field(
        256,
        "width of the hidden layers; dcgan: its maps have hidden_dim/2 channels at 7x7, /4 at 14x14",
        cli.positive_int,
        fixed=True,
    )
    seed: int = _field(0, "seed of initialisation, data order and noise", cli.non_negative_int, fixed=True)
    checkpoint_every: int = _field(2000, "save a checkpoint every this many steps (and at the end)", cli.positive_int)
    keep_checkpoints: int = _field(3, "how many of the latest checkpoints to keep", cli.positive_int)
    steps_per_call: int | None = _field(
        None,
        "steps per compiled call (lax.scan over device-resident data; default: the model's, mlp 50, "
        "dcgan 1); mlp results do not depend on it, dcgan's can differ in the last bits (XLA compiles "
        "convolutions in a loop differently)",
        cli.positive_int,
    )
    # Not `fixed`: evaluation draws from its own key and leaves the training trajectory alone.
    eval_every: int = _field(
        0,
        "measure the generator with the data's judge every this many steps (and at the end) into eval.jsonl; 0: never",
        cli.non_negative_int,
    )
    eval_samples: int = _field(10_000, "generated images per --eval-every evaluation", cli.positive_int)

    def __post_init__(self) -> None:
        if self.model == "dcgan" and self.hidden_dim < 4:
            raise ValueError(f"--model dcgan needs --hidden-dim of at least 4, got {self.hidden_dim}")

    def fixed(self) -> dict[str, Any]:
        """The fields a resumed run must share with its checkpoint."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.metadata["fixed"]}

    def fixed_only(self) -> GANConfig:
        """This config with the other fields at their defaults.

        A train state carries this (statically), so runs that differ only in
        workdir, epochs, checkpointing, ... share their compiled steps.
        """
        return GANConfig(**self.fixed())
