"""jaxart: neural style transfer and an MNIST GAN as pure, jit-compiled JAX functions."""

__version__ = "0.1.0"
