"""Configuration of a style transfer: every option and its default (the seed's), and presets."""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Iterable
from typing import Any

from jaxart import errors, images, options, vgg
from jaxart.errors import ConfigError

# The seed selects torchvision features 0, 5, 10, 19, 28 (conv1_1..conv5_1), but its in-place
# ReLUs overwrite those outputs before the loss reads them: it really uses relu{1..5}_1.
SEED_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
DTYPES = ("float32", "bfloat16", "float64")
OPTIMIZERS = ("adam", "lbfgs")
LBFGS_STEPS = ("zoom", "backtracking")
POOLINGS = ("max", "avg")
COLOR_TRANSFERS = ("none", "histogram")
# The starting images `init` names; any other value is an image file.
INITS = ("content", "noise", "recolored")
# The starts `loop.iterate` makes itself, from the contents (and styles) the run sees.
CONTENT_STARTS = ("content", "recolored")

SWEEP_HELP = "; several, comma-separated, run as one batch of pictures, one per value (a sweep)"

# A preset is a set of defaults; options given explicitly win over it.
PRESETS: dict[str, dict[str, Any]] = {
    "seed": {},
    # Gatys, Ecker & Bethge, CVPR 2016: content at conv4_2 (read after its ReLU), style at
    # conv{1..5}_1 equally weighted (their w_l = 1/5 is absorbed by style_weight), average pooling.
    "gatys": {
        "content_layers": (("relu4_2", 1.0),),
        "style_layers": tuple((n, 1.0) for n in SEED_LAYERS),
        "pooling": "avg",
    },
    # The seed's loss, minimised by L-BFGS with the zoom line search: with the original VGG19 at
    # the default 400 px it reached the seed's 2,000-step Adam loss in 45 iterations, 12x sooner.
    # Not the backtracking rule: its Armijo-only steps stalled there from the third iteration on
    # (benchmarks/RESULTS.md, "Style quality with the original VGG19"). From the content in the
    # styles' colours: the same loss in half the iterations ("A better start").
    "fast": {"optimizer": "lbfgs", "lbfgs_step": "zoom", "steps": 100, "init": "recolored"},
    # fast's method at 256 px and 45 iterations: a finished picture in under a minute on a
    # 2-core CPU (benchmarks/RESULTS.md, "The bare command").
    "quick": {"optimizer": "lbfgs", "lbfgs_step": "zoom", "steps": 45, "max_size": 256, "init": "recolored"},
}
# The command line's default preset: quick on a CPU, fast on a GPU or TPU (see `resolve_preset`).
AUTO = "auto"

# The temporal loss's weight (Ruder et al. 2016) for torchvision's VGG19 (and random weights).
# Measured for the original VGG19 (`weights.style_defaults`: 1e8, benchmarks/RESULTS.md, "Steady
# video"), whose content loss is ~1e7 times torchvision's (their default style weights, 1e-5 and
# 100, balance the same pictures: style ~ features^4, content ~ features^2); the temporal loss,
# in RGB pixels, does not change with the network. torchvision's weights cannot be downloaded
# here to measure it directly.
TEMPORAL_WEIGHT = 10.0

# The longest side, in pixels, at which default style weights are stated (the seed's 400 px).
STYLE_WEIGHT_SIZE = 400


def resolve_preset(name: str, backend: str) -> str:
    """The preset `name` stands for on `backend` ("cpu", "gpu", "tpu"): AUTO is quick on a CPU,
    where fast's 400 px takes ~5 minutes, and fast elsewhere, where it takes seconds."""
    if name != AUTO:
        return name
    return "quick" if backend == "cpu" else "fast"


def size_scaled_style_weight(weight: float, max_size: int) -> float:
    """A style weight stated for STYLE_WEIGHT_SIZE, for pictures whose longest side is `max_size`.

    The style loss (Gram MSE / (C*H*W)) grows with the pixel count and the content loss (a mean)
    does not, so the balance that suits 400 px needs (400 / max_size)^2 times the weight at
    `max_size` (1e-5 at 400 px is 6.25e-5 at 160 px and 9.8e-5 at 128 px).
    """
    return weight * (STYLE_WEIGHT_SIZE / max_size) ** 2


Layers = tuple[tuple[str, float], ...]  # (VGG19 layer, weight) pairs, in the order given


def _layer(entry: str | tuple[str, float]) -> tuple[str, float]:
    """'relu1_1:0.2' or ('relu1_1', 0.2) -> ('relu1_1', 0.2); a bare name weighs 1."""
    if not isinstance(entry, str):
        name, weight = entry
        return name, float(weight)
    name, sep, weight_text = entry.partition(":")
    try:
        return name.strip(), float(weight_text) if sep else 1.0
    except ValueError:
        raise ValueError(f"layer weight of {name.strip()!r} is not a number: {weight_text!r}") from None


def _as_layers(entries: Iterable[str | tuple[str, float]], field: str = "style_layers") -> Layers:
    """Checked (name, weight) pairs from 'name', 'name:weight' or (name, weight) entries.

    Raises ConfigError, naming `field`, for an unknown or repeated layer, a bad or negative
    weight, or none at all.
    """
    try:
        pairs = tuple(_layer(entry) for entry in entries)
        names = vgg.check_layers(name for name, _ in pairs)
    except ValueError as e:
        raise ConfigError(f"{errors.option(field)}: {e}") from None
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ConfigError(f"{errors.option(field)}: layer(s) {repeated} listed more than once")
    bad = [name for name, w in pairs if not 0 <= w < math.inf]
    if bad:
        raise ConfigError(f"{errors.option(field)}: layer weights must be finite and >= 0 (layer(s) {bad})")
    return pairs


def _show_layers(pairs: Layers) -> str:
    """(name, weight) pairs as the command line writes them: 'relu1_1,relu2_1:0.5'."""
    return ",".join(name if w == 1 else f"{name}:{w!r}" for name, w in pairs)


def layer_list(text: str) -> Layers:
    """argparse type: comma-separated VGG19 layer names, each optionally `:weight` (default 1)."""
    try:
        return _as_layers(part for part in text.split(",") if part.strip())
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e).partition(": ")[2]) from e


def _steps_per_call_arg(text: str) -> int | None:
    """argparse type: 'auto' (None: chosen by the backend) or a positive integer."""
    return None if text.strip().lower() == "auto" else options.positive_int(text)


def _blend_list(text: str) -> tuple[float, ...]:
    """argparse type: comma-separated weights >= 0, one per style image."""
    return tuple(options.non_negative_float(part.strip()) for part in text.split(",") if part.strip())


@dataclasses.dataclass(frozen=True)
class Program:
    """What a compiled step is built from: its static argument, hashable and small. Values that
    only change numbers (loss weights, Adam's hyperparameters, the EMA decay) are not here but
    run-time arrays: a sweep over them, or another seed or step count, compiles nothing new."""

    content_layers: Layers = tuple((name, 1.0) for name in SEED_LAYERS)
    style_layers: Layers = tuple((name, 1.0) for name in SEED_LAYERS)
    pooling: str = "max"
    dtype: str = "float32"
    remat: bool = False
    optimizer: str = "adam"
    lbfgs_step: str = "zoom"
    tv: bool = False  # whether the total-variation term is in the graph at all
    ema: bool = False  # whether the state carries an average of the iterates

    @property
    def layers(self) -> tuple[str, ...]:
        """Every layer either loss reads, each once, in network order."""
        wanted = {name for name, _ in self.content_layers + self.style_layers}
        return tuple(name for name in vgg.LAYERS if name in wanted)


@dataclasses.dataclass(frozen=True)
class StyleConfig:
    """Options of `stylize`; the defaults reproduce the seed.

    Loss = content_weight * content + style_weight * style + tv_weight * total variation, each
    of the first two a weighted sum over VGG19 layers: `content_layers` and `style_layers` are
    (name, weight) pairs ('name' and 'name:weight' strings are read as such at construction).
    """

    steps: int = options.option(2000, "optimisation steps (L-BFGS: iterations)", options.positive_int)
    max_size: int = options.option(400, "the content's longest side after resizing, in pixels", options.positive_int)
    optimizer: str = options.option(
        "adam", "adam (--lr, --b1, --b2) or lbfgs (optax.lbfgs: zoom line search, no learning rate)", str
    )
    lbfgs_step: str = options.option(
        "zoom",
        "L-BFGS's step rule: zoom (optax's strong-Wolfe zoom line search) or backtracking (optax's "
        "Armijo backtracking: it can stall, as at 400 px). Both try L-BFGS's full step first, "
        "usually accepted: about one loss evaluation per iteration",
        str,
    )
    lr: float = options.option(0.003, "Adam's learning rate", options.positive_float)
    b1: float = options.option(0.5, "Adam's first-moment decay", options.non_negative_float)
    b2: float = options.option(0.999, "Adam's second-moment decay", options.non_negative_float)
    content_weight: float = options.option(
        1.0, "weight of the content loss" + SWEEP_HELP, options.values(options.non_negative_float), sweep=True
    )
    style_weight: float = options.option(
        100.0, "weight of the style loss" + SWEEP_HELP, options.values(options.non_negative_float), sweep=True
    )
    tv_weight: float = options.option(
        0.0,
        "weight of the total-variation loss (mean squared difference of neighbouring RGB pixels)" + SWEEP_HELP,
        options.values(options.non_negative_float),
        sweep=True,
    )
    temporal_weight: float = options.option(
        TEMPORAL_WEIGHT,
        "with --content-frames: weight of the temporal loss (Ruder et al. 2016), the mean squared "
        "difference, in RGB pixels, from the previous frame's output warped along the optical flow, "
        "where the flow is trusted; 0 = off; 1e8 unless given with the original VGG19 (--weights "
        "caffe), whose features are larger",
        options.non_negative_float,
    )
    content_layers: Layers = options.option(
        Program.content_layers,
        "VGG19 layers of the content loss, comma-separated, each optionally name:weight (default weight 1)",
        layer_list,
        show=_show_layers,
    )
    style_layers: Layers = options.option(
        Program.style_layers,
        "VGG19 layers of the style loss, comma-separated, each optionally name:weight (default weight 1)",
        layer_list,
        show=_show_layers,
    )
    style_blend: tuple[float, ...] = options.option(
        (),
        "blend several --style images into one style with these weights, comma-separated, normalised "
        "to sum 1 (without it the command line runs several styles separately, as a batch; stylize() "
        "blends them equally)",
        _blend_list,
    )
    style_scale: float | None = options.option(
        None,
        "resize each style image, keeping its aspect, so its longest side is this times the "
        "content's (1 = as long as the content; smaller = finer texture); default: squash it to the "
        "content's exact shape, as the seed does",
        options.positive_float,
    )
    pooling: str = options.option("max", "VGG19 pooling: max (torchvision) or avg (Gatys et al.)", str)
    init: str = options.option(
        "content",
        "starting image: content, noise (uniform RGB, seeded by --seed), recolored (the content "
        "with the styles' RGB mean and covariance) or an image file (resized to the content's shape)",
        str,
    )
    ema: float = options.option(
        0.0,
        "if > 0, output an exponential moving average of the iterates with this decay, e.g. 0.99 "
        "(0 = off: the last iterate)",
        options.non_negative_float,
    )
    pyramid: int = options.option(
        0,
        "coarse to fine: optimise at longest sides PYRAMID, PYRAMID*sqrt(2), ... up to --max-size, "
        "the steps split equally (the last level takes the remainder), each level starting from the "
        "previous result upsampled (0 = off: one level)",
        options.non_negative_int,
    )
    original_colors: bool = options.option(
        False,
        "keep the content's colours: the output's luminance (BT.601 Y) from the stylised image, "
        "its chrominance (Cb, Cr) from the content",
        bool,
    )
    color_transfer: str = options.option(
        "none",
        "before the run, give the style image(s) the content's colours: none, or histogram (Gatys et "
        "al. 2017: each style pixel x becomes A (x - mean_s) + mean_c, A = Cov_c^(1/2) Cov_s^(-1/2) "
        "with symmetric square roots, so the style's RGB mean and covariance are the content's)",
        str,
    )
    luminance_only: bool = options.option(
        False,
        "transfer the style on luminance alone (Gatys et al. 2017): the run optimises a grey picture "
        "from the content's BT.601 luminance Y against the style's (its mean and deviation matched to "
        "the content's), and the result takes the content's chrominance (Cb, Cr). Unlike "
        "--original-colors, which recolours an RGB run, the style's colours never enter the run",
        bool,
    )
    bit_depth: int | None = options.option(
        None,
        "bits per channel of the pictures written (result, snapshots, pictures so far, contact "
        "sheet): 8, or 16 for .png and .tif (from the float result, never through 8 bits); default: "
        "16 for .tif and .tiff, 8 otherwise",
        options.integer_in(images.BIT_DEPTHS),
    )
    steps_per_call: int | None = options.option(
        None,
        "optimisation steps per compiled call (lax.scan), or auto (the default): 1 on CPU, where "
        "more per call buys nothing, 20 on GPU/TPU; calls always end at --save-every stops; results do "
        "not depend on it",
        _steps_per_call_arg,
    )
    dtype: str = options.option(
        "float32",
        "convolution dtype: float32, bfloat16 (accelerators; Gram matrices and losses stay "
        "float32) or float64 (needs jax_enable_x64; reference checks)",
        str,
    )
    remat: bool = options.option(
        False,
        "recompute VGG activations in the backward pass (jax.checkpoint): less memory, more time",
        bool,
    )
    seed: int = options.option(
        0, "seed of anything random (random weights, noise initialisation)", options.non_negative_int
    )

    def __post_init__(self):
        def refuse(field: str, rule: str) -> None:
            raise ConfigError(f"{errors.option(field)} {rule}, got {getattr(self, field)!r}")

        for field in ("steps", "max_size", "steps_per_call", "lr"):
            if getattr(self, field) is not None and not getattr(self, field) > 0:
                refuse(field, "must be positive")
        for field, allowed in (
            ("optimizer", OPTIMIZERS),
            ("lbfgs_step", LBFGS_STEPS),
            ("pooling", POOLINGS),
            ("dtype", DTYPES),
            ("color_transfer", COLOR_TRANSFERS),
        ):
            if getattr(self, field) not in allowed:
                refuse(field, f"must be one of {', '.join(allowed)}")
        for field in ("b1", "b2", "ema"):
            if not 0 <= getattr(self, field) < 1:
                refuse(field, "must be in [0, 1)")
        for field in ("content_weight", "style_weight", "tv_weight", "temporal_weight"):
            if not getattr(self, field) >= 0:
                refuse(field, "must be >= 0")
        # Frozen: normalising means going around __setattr__; the values stay hashable tuples.
        object.__setattr__(self, "content_layers", _as_layers(self.content_layers, "content_layers"))
        object.__setattr__(self, "style_layers", _as_layers(self.style_layers, "style_layers"))
        object.__setattr__(self, "style_blend", tuple(float(w) for w in self.style_blend))
        if any(not w >= 0 for w in self.style_blend) or (self.style_blend and sum(self.style_blend) <= 0):
            refuse("style_blend", "weights must be >= 0 with a positive sum")
        if self.style_scale is not None and not self.style_scale > 0:
            refuse("style_scale", "must be positive")
        if not self.init:
            refuse("init", f"must be {', '.join(INITS)} or an image path")
        if self.pyramid < 0:
            refuse("pyramid", "must be >= 0")
        if self.bit_depth is not None and self.bit_depth not in images.BIT_DEPTHS:
            refuse("bit_depth", "must be 8 or 16")
        if self.luminance_only and self.original_colors:
            raise ConfigError(
                f"{errors.option('luminance_only')} and {errors.option('original_colors')} exclude each other: "
                "a luminance-only result already takes the content's chrominance"
            )
        if self.luminance_only and self.color_transfer != "none":
            raise ConfigError(
                f"{errors.option('luminance_only')} and {errors.option('color_transfer')} {self.color_transfer} "
                "exclude each other: a luminance-only run never sees the style's colours"
            )

    @property
    def program(self) -> Program:
        """The static part of the compiled step (see `Program`)."""
        return Program(
            self.content_layers,
            self.style_layers,
            self.pooling,
            self.dtype,
            self.remat,
            self.optimizer,
            self.lbfgs_step,
            tv=self.tv_weight > 0,
            ema=self.ema > 0,
        )

    @property
    def layers(self) -> tuple[str, ...]:
        """Every layer either loss reads, each once, in network order."""
        return self.program.layers

    @property
    def style_layer_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.style_layers)

    @property
    def content_layer_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.content_layers)


def preset(name: str, **overrides: Any) -> StyleConfig:
    """The config of a preset (see PRESETS), with `overrides` winning over it."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    return StyleConfig(**{**PRESETS[name], **overrides})
