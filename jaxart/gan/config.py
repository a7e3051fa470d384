"""The GAN's configuration: every option, its default (the seed's), its flag and whether a run fixes it."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from typing import Any

from jaxart import cli


def _option(default: Any, help: str, parse: Callable[[str], Any], fixed: bool = False) -> Any:
    """A config field carrying its command-line help and parser.

    fixed: the field determines the run's trajectory, so resuming a checkpoint
    with a different value is an error rather than a silent change of course.
    """
    return dataclasses.field(default=default, metadata={"help": help, "parse": parse, "fixed": fixed})


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


@dataclasses.dataclass(frozen=True)
class GANConfig:
    """Options of one training run; the defaults are the seed's MNIST GAN."""

    workdir: str = _option("runs/gan-mnist", "folder for checkpoints, metrics, samples and plots", str)
    # Not `fixed`: a resume compares the data's checksum, so a copy in another folder will do.
    data: str = _option("mnist", "'mnist', 'fashion-mnist' or a folder of IDX files", str)
    model: str = _option("mlp", "generator/discriminator architecture", str, fixed=True)
    epochs: int = _option(100, "passes over the training images", cli.positive_int)
    max_steps: int | None = _option(None, "stop at this total step count, before the epochs run out", cli.positive_int)
    batch_size: int = _option(32, "images per step", cli.positive_int, fixed=True)
    lr: float = _option(2e-4, "Adam learning rate of both networks", cli.positive_float, fixed=True)
    latent_dim: int = _option(64, "size of the generator's noise input", cli.positive_int, fixed=True)
    hidden_dim: int = _option(256, "width of the hidden layers", cli.positive_int, fixed=True)
    seed: int = _option(0, "seed of initialisation, data order and noise", non_negative_int, fixed=True)
    checkpoint_every: int = _option(2000, "save a checkpoint every this many steps (and at the end)", cli.positive_int)
    keep_checkpoints: int = _option(3, "how many of the latest checkpoints to keep", cli.positive_int)
    # 1 by default: on a 2-core CPU a step is compute-bound, and longer scans measured slower.
    steps_per_call: int = _option(
        1, "steps per compiled call (lax.scan over device-resident data); results do not depend on it",
        cli.positive_int,
    )

    def fixed(self) -> dict[str, Any]:
        """The fields a resumed run must share with its checkpoint."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.metadata["fixed"]}

    def fixed_only(self) -> GANConfig:
        """This config with the other fields at their defaults.

        A train state carries this (statically), so runs that differ only in
        workdir, epochs, checkpointing, ... share their compiled steps.
        """
        return GANConfig(**self.fixed())


def flag(name: str) -> str:
    """Field name -> command-line flag ('latent_dim' -> '--latent-dim')."""
    return "--" + name.replace("_", "-")


def add_arguments(parser: cli.ArgumentParser, choices: dict[str, Any] | None = None) -> None:
    """Adds one flag per GANConfig field, defaulting to the field's default.

    choices: allowed values by field name (e.g. the model registry's names).
    """
    for field in dataclasses.fields(GANConfig):
        parser.add_argument(
            flag(field.name),
            dest=field.name,
            default=field.default,
            type=field.metadata["parse"],
            help=field.metadata["help"],
            choices=(choices or {}).get(field.name),
            metavar=field.name.upper() if field.name not in (choices or {}) else None,
        )


def from_args(args: Any) -> GANConfig:
    """The GANConfig named by parsed arguments (one attribute per field)."""
    return GANConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(GANConfig)})
