"""Configuration of a style transfer: every option and its default (the seed's)."""

from __future__ import annotations

import argparse
import dataclasses

from jaxart import cli, vgg

# The seed selects torchvision features 0, 5, 10, 19, 28 (conv1_1..conv5_1), but its in-place
# ReLUs overwrite those outputs before the loss reads them: it really uses relu{1..5}_1.
SEED_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
DTYPES = ("float32", "bfloat16", "float64")


def layer_list(text: str) -> tuple[str, ...]:
    """argparse type: comma-separated VGG19 layer names."""
    try:
        return vgg.check_layers(name.strip() for name in text.split(",") if name.strip())
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


@dataclasses.dataclass(frozen=True)
class StyleConfig:
    """Options of `stylize`; the defaults reproduce the seed. Loss = content_weight * content
    + style_weight * style, over the named VGG19 layers."""

    steps: int = cli.option(2000, "optimisation steps", cli.positive_int)
    max_size: int = cli.option(400, "the content's longest side after resizing, in pixels", cli.positive_int)
    lr: float = cli.option(0.003, "Adam's learning rate", cli.positive_float)
    b1: float = cli.option(0.5, "Adam's first-moment decay", cli.non_negative_float)
    b2: float = cli.option(0.999, "Adam's second-moment decay", cli.non_negative_float)
    content_weight: float = cli.option(1.0, "weight of the content loss", cli.non_negative_float)
    style_weight: float = cli.option(100.0, "weight of the style loss", cli.non_negative_float)
    content_layers: tuple[str, ...] = cli.option(SEED_LAYERS, "VGG19 layers of the content loss, comma-separated", layer_list)
    style_layers: tuple[str, ...] = cli.option(SEED_LAYERS, "VGG19 layers of the style loss, comma-separated", layer_list)
    pooling: str = cli.option("max", "VGG19 pooling: max (torchvision) or avg (Gatys et al.)", str)
    steps_per_call: int = cli.option(
        1, "optimisation steps per compiled call (lax.scan); results do not depend on it", cli.positive_int
    )
    dtype: str = cli.option(
        "float32", "convolution dtype: float32, bfloat16 (accelerators; Gram matrices and losses stay "
        "float32) or float64 (needs jax_enable_x64; reference checks)", str,
    )
    remat: bool = cli.option(
        False, "recompute VGG activations in the backward pass (jax.checkpoint): less memory, more time",
        bool,
    )
    seed: int = cli.option(0, "seed of anything random (random weights, noise initialisation)", cli.non_negative_int)

    def __post_init__(self):
        for name in ("steps", "max_size", "steps_per_call"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if not (0 <= self.b1 < 1 and 0 <= self.b2 < 1):
            raise ValueError(f"b1 and b2 must be in [0, 1), got {self.b1}, {self.b2}")
        if self.content_weight < 0 or self.style_weight < 0:
            raise ValueError("content_weight and style_weight must be >= 0")
        vgg.check_layers(self.content_layers + self.style_layers)
        if self.pooling not in ("max", "avg"):
            raise ValueError(f"pooling must be 'max' or 'avg', got {self.pooling!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be float32, bfloat16 or float64, got {self.dtype!r}")

    @property
    def layers(self) -> tuple[str, ...]:
        """Every layer either loss reads, each once, in network order."""
        wanted = set(self.content_layers) | set(self.style_layers)
        return tuple(name for name in vgg.LAYERS if name in wanted)
