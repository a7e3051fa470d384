"""The seed's MNIST GAN and a DCGAN: pure, jit-compiled train steps with explicit PRNG keys and orbax checkpoints.

To drive the step yourself::

    keys = run_keys(config.seed)
    state = init_state(keys.init, config)
    order = epoch_order(keys.data, epoch, len(images), len(images) // config.batch_size, config.batch_size)
    state, metrics = train_steps(state, images, order, 0, keys.train, length=50)

A conditional model (`GANConfig(conditional=True)`) takes `(images, labels)` wherever images go.

`train` runs whole jobs (checkpoints, metrics, previews, evaluation; many runs at once);
`python -m jaxart.gan --help` for the command line.
"""

from jaxart.gan.config import GANConfig, ModelConfig, RunConfig
from jaxart.gan.loop import train
from jaxart.gan.train import (
    GANState,
    RunKeys,
    class_cycle,
    epoch_order,
    generator_params,
    init_state,
    run_keys,
    sample,
    sample_state,
    step,
    train_step,
    train_steps,
)

__all__ = [
    "GANConfig",
    "GANState",
    "ModelConfig",
    "RunConfig",
    "RunKeys",
    "class_cycle",
    "epoch_order",
    "generator_params",
    "init_state",
    "run_keys",
    "sample",
    "sample_state",
    "step",
    "train",
    "train_step",
    "train_steps",
]
