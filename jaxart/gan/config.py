"""The GAN's configurations, each field declared once with its default (the seed's) and flag.

`GANConfig` is what a run *is*: the model and its optimisation. A checkpoint records it and
a resume must match it. Its `static` part (`ModelConfig`: what changes shapes or the graph) is
the static argument of the compiled steps; the hyperparameters (lr, b1) travel as arrays in the
optimiser state and the seed only makes keys, so one compiled step serves every rate and seed.
`RunConfig` is how a run is *driven*: where it writes, how long it goes, how often it saves or
measures. Changing it between a run and its resume is allowed and leaves the trajectory alone.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from jaxart import options
from jaxart.errors import ConfigError, option


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """What the compiled steps depend on: the architecture and the shapes."""

    model: str = "mlp"
    batch_size: int = 32
    latent_dim: int = 64
    hidden_dim: int | None = None
    ema_decay: float = 0.0
    conditional: bool = False
    class_weight: float | None = None


@dataclasses.dataclass(frozen=True)
class GANConfig:
    """Model and optimisation of one run (what its checkpoints must match); defaults: the seed's MNIST GAN."""

    model: str = options.option(
        "mlp", "generator/discriminator architecture: the seed's 'mlp' or a convolutional 'dcgan'", str
    )
    batch_size: int = options.option(32, "images per step", options.positive_int)
    # A tuple sweeps the rate over `--runs`: run r takes the r-th (one value is kept as a float).
    lr: float | tuple[float, ...] = options.option(
        2e-4,
        "Adam learning rate of both networks; with --runs R, R comma-separated rates sweep it (run r: the r-th)",
        options.values(options.positive_float),
    )
    # None rather than a number: the published optimiser differs by model, and a run
    # records what was asked, so `--model dcgan` alone gets the DCGAN's 0.5.
    b1: float | None = options.option(
        None,
        "Adam's b1 of both networks (default: the model's, mlp 0.9 as torch's Adam, dcgan 0.5 as DCGAN's)",
        options.unit_interval,
    )
    latent_dim: int = options.option(64, "size of the generator's noise input", options.positive_int)
    # None rather than a number: as b1, what serves best differs by model (and by --conditional).
    hidden_dim: int | None = options.option(
        None,
        "width of the hidden layers (default: the model's, mlp 256 as the seed's and 512 with --conditional, "
        "dcgan 256); dcgan: its maps have hidden_dim/2 channels at 7x7, /4 at 14x14",
        options.positive_int,
    )
    conditional: bool = options.option(
        False,
        "class-conditional: G draws the label asked for (one-hot beside its noise), D is a projection "
        "discriminator; trains on the data's labels 0..9, and sample --digit chooses the class",
        bool,
    )
    # None rather than a number: as b1, what serves best differs by model.
    class_weight: float | None = options.option(
        None,
        "with --conditional, weight of a class loss: D's class embeddings read as a classifier learn the real "
        "images' classes on D's features, and push G's fakes towards the class asked (default: the model's, "
        "mlp 1, dcgan 0; 0: none)",
        options.non_negative_float,
    )
    # The seed has none; it changes no training step, only which generator draws the samples.
    ema_decay: float = options.option(
        0.999,
        "decay of the generator's exponential moving average, debiased, which previews, sample and eval "
        "draw from (their --raw: the trained generator); 0: keep none",
        options.unit_interval,
    )
    seed: int = options.option(0, "seed of initialisation, data order and noise", options.non_negative_int)

    def __post_init__(self) -> None:
        if isinstance(self.lr, tuple) and len(self.lr) == 1:
            object.__setattr__(self, "lr", self.lr[0])
        if self.class_weight is not None and not self.conditional:
            raise ConfigError(f"{option('class_weight')} weighs the class loss of {option('conditional')} models only")
        if self.class_weight is not None and not 0 <= self.class_weight < float("inf"):
            raise ConfigError(f"{option('class_weight')} must be a finite number >= 0, got {self.class_weight}")
        if self.model == "dcgan" and self.hidden_dim is not None and self.hidden_dim < 4:
            raise ConfigError(
                f"{option('model')} dcgan needs {option('hidden_dim')} of at least 4, got {self.hidden_dim}"
            )

    @property
    def static(self) -> ModelConfig:
        """The part the compiled steps depend on."""
        return ModelConfig(
            self.model,
            self.batch_size,
            self.latent_dim,
            self.hidden_dim,
            self.ema_decay,
            self.conditional,
            self.class_weight,
        )

    def run(self, r: int, runs: int) -> GANConfig:
        """The config of run r of `runs` trained at once: seed + r, and the r-th rate of a sweep.

        Raises ConfigError for a sweep of another length than `runs`."""
        if isinstance(self.lr, tuple) and len(self.lr) != runs:
            raise ConfigError(
                f"{option('lr')} gives {len(self.lr)} rates for {option('runs')} {runs}; give one rate, or one per run"
            )
        lr = self.lr[r] if isinstance(self.lr, tuple) else self.lr
        return dataclasses.replace(self, seed=self.seed + r, lr=lr)


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """How one run is driven: its folder, data, length and the cadence of its side effects."""

    workdir: str = options.option("runs/gan-mnist", "folder for checkpoints, metrics, samples and plots", options.text)
    # A run, not a model, setting: a resume compares the data's checksum, so a copy elsewhere will do.
    data: str = options.option(
        "mnist",
        "'mnist', 'fashion-mnist' (looked up in $JAXART_DATA, then the cache, then downloaded) or a folder of IDX files",
        str,
    )
    epochs: int = options.option(100, "passes over the training images", options.positive_int)
    max_steps: int | None = options.option(
        None, "stop at this total step count, before the epochs run out", options.positive_int
    )
    checkpoint_every: int = options.option(
        2000, "save a checkpoint every this many steps (and at the end)", options.positive_int
    )
    keep_checkpoints: int = options.option(3, "how many of the latest checkpoints to keep", options.positive_int)
    steps_per_call: int | None = options.option(
        None,
        "steps per compiled call (lax.scan over device-resident data; default: the model's, mlp 50, "
        "dcgan 1 on CPU and 50 on GPU/TPU); mlp results do not depend on it, dcgan's can differ in "
        "the last bits (XLA compiles convolutions in a loop differently)",
        options.positive_int,
    )
    # Evaluation draws from its own key and leaves the training trajectory alone.
    eval_every: int = options.option(
        0,
        "measure the generator with the data's judge every this many steps (and at the end) into eval.jsonl; 0: never",
        options.non_negative_int,
    )
    eval_samples: int = options.option(10_000, "generated images per --eval-every evaluation", options.positive_int)
    tensorboard: bool = options.option(
        True,
        "also write TensorBoard event files in <workdir>/tb: the metrics of every step, the sample grids and "
        "the evaluations (view: tensorboard --logdir <workdir>)",
        bool,
    )
    runs: int = options.option(
        1,
        "independent runs trained at once, vmapped (run r: --seed + r and the r-th of R --lr values, "
        "in <workdir>/run-RRR); a resume needs the same count",
        options.positive_int,
    )
    devices: int | None = options.option(
        None,
        "devices of the mesh, the batch split over them (default: all devices of all processes); "
        "a resume may use another count",
        options.positive_int,
    )


def as_json(config: GANConfig) -> dict[str, Any]:
    """The config as a checkpoint records it."""
    return dataclasses.asdict(config)
