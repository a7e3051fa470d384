"""The seed's MNIST GAN and a DCGAN: pure, jit-compiled train steps with explicit PRNG keys and orbax checkpoints.

`python -m jaxart.gan --help` for the command line.
"""

from jaxart.gan.config import GANConfig, RunConfig
from jaxart.gan.train import GANState, init_state, run_keys, sample, train_step, train_steps

__all__ = ["GANConfig", "GANState", "RunConfig", "init_state", "run_keys", "sample", "train_step", "train_steps"]
