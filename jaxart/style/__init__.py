"""Neural style transfer (Gatys et al.) as pure JAX functions.

from jaxart import images, weights
from jaxart.style import StyleConfig, stylize
content = images.load_image("content.png", max_size=400)
style = images.load_image("style.png", shape=content.shape[:2])
params = weights.load()                                   # the VGG19 (see "Pretrained VGG19 weights")
config = StyleConfig(steps=500, **weights.style_defaults(params))  # the loss weights that suit it
image, history = stylize(content, style, params, config)
"""

from jaxart.style.config import StyleConfig, preset
from jaxart.style.losses import content_loss, gram_matrix, style_loss, total_variation
from jaxart.style.transfer import (
    Targets,
    compute_targets,
    initial_image,
    iterate,
    loss_fn,
    result_image,
    stylize,
    train_step,
    train_steps,
)

__all__ = [
    "StyleConfig",
    "Targets",
    "compute_targets",
    "content_loss",
    "gram_matrix",
    "initial_image",
    "iterate",
    "loss_fn",
    "preset",
    "result_image",
    "style_loss",
    "stylize",
    "total_variation",
    "train_step",
    "train_steps",
]
