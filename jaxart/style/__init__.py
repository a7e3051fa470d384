"""Neural style transfer (Gatys et al.) as pure JAX functions.

from jaxart import images, weights
from jaxart.style import StyleConfig, stylize
content = images.load_image("content.png", max_size=400)
style = images.load_image("style.png", shape=content.shape[:2])
params = weights.load()                                   # the VGG19 (see "Pretrained VGG19 weights")
config = StyleConfig(steps=500, **weights.style_defaults(params))  # the loss weights that suit it
image, history = stylize(content, style, params, config)

Several pairs, or a sweep of one pair's weights, run as one compiled batch:
images, history = stylize_batch(content[None].repeat(3, 0), [style] * 3, params, config,
                                per_pair={"style_weight": [1e-5, 1e-4, 1e-3]})
and `make_mesh(pairs=4)` or `make_mesh(rows=4)` splits pairs or rows over devices. Masks
((H, W) float weights in [0, 1] at the content's shape, e.g. `images.load_mask(path, content.shape[:2])`)
place several styles in one picture, or keep the photo outside a region (see `jaxart.style.masks`):
image, history = stylize(content, [style_a, style_b], params, config, style_masks=[left, right])
image, history = stylize(content, style, params, config, content_mask=sky)
A video's frames, each tied to the one before along the optical flow (Ruder et al. 2016; see
`jaxart.flow` and `jaxart.style.folders`):
outputs, motions = stylize_video(frames, style, params, config)
error = flow.temporal_error(outputs, motions)
The loop itself is `iterate`; its step `train_steps`, over `init_state` and `compute_targets`.
"""

from jaxart.style.config import Program, StyleConfig, preset, size_scaled_style_weight
from jaxart.style.folders import frame_start, stylize_video
from jaxart.style.loop import iterate, stylize, stylize_batch
from jaxart.style.losses import content_loss, gram_matrix, style_loss, temporal_loss, total_variation
from jaxart.style.sharding import make_mesh
from jaxart.style.transfer import (
    Region,
    State,
    Targets,
    Temporal,
    compute_targets,
    init_state,
    initial_image,
    loss_fn,
    result_image,
    train_step,
    train_steps,
)

__all__ = [
    "Program",
    "Region",
    "State",
    "StyleConfig",
    "Targets",
    "Temporal",
    "compute_targets",
    "content_loss",
    "frame_start",
    "gram_matrix",
    "init_state",
    "initial_image",
    "iterate",
    "loss_fn",
    "make_mesh",
    "preset",
    "result_image",
    "size_scaled_style_weight",
    "style_loss",
    "stylize",
    "stylize_batch",
    "stylize_video",
    "temporal_loss",
    "total_variation",
    "train_step",
    "train_steps",
]
