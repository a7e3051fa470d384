"""The GAN's configuration: every option, its default (the seed's), its flag and whether a run fixes it."""

from __future__ import annotations

import dataclasses
from typing import Any

from jaxart import cli


def _field(default: Any, help: str, parse, fixed: bool = False) -> Any:
    """fixed: the field determines the run's trajectory, so resuming a checkpoint
    with a different value is an error rather than a silent change of course."""
    return cli.option(default, help, parse, fixed=fixed)


@dataclasses.dataclass(frozen=True)
class GANConfig:
    """Options of one training run; the defaults are the seed's MNIST GAN."""

    workdir: str = _field("runs/gan-mnist", "folder for checkpoints, metrics, samples and plots", str)
    # Not `fixed`: a resume compares the data's checksum, so a copy in another folder will do.
    data: str = _field("mnist", "'mnist', 'fashion-mnist' or a folder of IDX files", str)
    model: str = _field("mlp", "generator/discriminator architecture", str, fixed=True)
    epochs: int = _field(100, "passes over the training images", cli.positive_int)
    max_steps: int | None = _field(None, "stop at this total step count, before the epochs run out", cli.positive_int)
    batch_size: int = _field(32, "images per step", cli.positive_int, fixed=True)
    lr: float = _field(2e-4, "Adam learning rate of both networks", cli.positive_float, fixed=True)
    latent_dim: int = _field(64, "size of the generator's noise input", cli.positive_int, fixed=True)
    hidden_dim: int = _field(256, "width of the hidden layers", cli.positive_int, fixed=True)
    seed: int = _field(0, "seed of initialisation, data order and noise", cli.non_negative_int, fixed=True)
    checkpoint_every: int = _field(2000, "save a checkpoint every this many steps (and at the end)", cli.positive_int)
    keep_checkpoints: int = _field(3, "how many of the latest checkpoints to keep", cli.positive_int)
    # 1 by default: on a 2-core CPU a step is compute-bound, and longer scans measured slower.
    steps_per_call: int = _field(
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
