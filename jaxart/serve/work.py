"""What the page's jobs do, through the library's own functions (never the command line):
a feed-forward network's one pass, a Gatys optimisation with previews, a short GAN training run.

Compiled programs are reused across requests: the networks' calls are jitted once per network
and colour mode, with the condition and the pictures as arguments (XLA's cache then holds one
program per shape), and the optimisation's steps are `jaxart.style.loop`'s, cached by shape.
"""

from __future__ import annotations

import functools
import io
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from jaxart import images
from jaxart.fast import apply
from jaxart.gan import loop as gan_loop
from jaxart.gan.config import GANConfig, RunConfig
from jaxart.serve.jobs import Job
from jaxart.style import loop
from jaxart.style.config import StyleConfig


def png(picture: np.ndarray) -> bytes:
    """An (H, W, 3) float picture in [0, 1] as 8-bit PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(images.to_uint8(picture)).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _finish(job: Job, picture: np.ndarray, out: Path) -> None:
    images.save_image(out, picture)
    job.result = out
    job.show(png(picture))


@functools.partial(jax.jit, static_argnames=("module", "original_colors"))
def _network(
    module: nn.Module,
    params: Any,
    condition: jax.Array,
    pictures: jax.Array,
    strength: jax.Array,
    original_colors: bool,
) -> jax.Array:
    return apply.stylize(apply.Styler(module, params, condition), pictures, strength, original_colors)


def fast(
    job: Job,
    module: nn.Module,
    params: Any,
    condition: np.ndarray,
    content: np.ndarray,
    out: Path,
    strength: float = 1.0,
    original_colors: bool = False,
) -> None:
    """One pass of a network over `content` ((H, W, 3) in [0, 1]); the result saved to `out`."""
    job.progress(0, 1)
    result = _network(module, params, condition[None], content[None], jnp.float32(strength), original_colors)
    job.check()
    _finish(job, np.asarray(result)[0], out)
    job.progress(1, 1)


def optimise(
    job: Job, content: np.ndarray, style: np.ndarray, params: Any, config: StyleConfig, out: Path, every: int = 10
) -> None:
    """Gatys style transfer of one pair, showing the picture every `every` steps; cancelled
    within a compiled call (one step on a CPU)."""
    contents = content[None]
    stops = range(every, config.steps, every)
    states = None
    for done, states, metrics in loop.iterate(contents, [style], params, config, stops=stops):
        losses = np.asarray(metrics["loss"])[0]
        for k, value in enumerate(losses):
            job.progress(done - len(losses) + k + 1, config.steps, float(value))
        if done % every == 0 or done == config.steps:
            job.show(png(_picture(states, content, config)))
        job.check()
    assert states is not None
    _finish(job, _picture(states, content, config), out)


def _picture(states: Any, content: np.ndarray, config: StyleConfig) -> np.ndarray:
    """The picture so far, at the current pyramid level's shape."""
    shape = states.image.shape[1:3]
    if shape != content.shape[:2]:
        content = np.asarray(jax.image.resize(content, (*shape, 3), "linear"))
    return loop.result_images(states, content[None], config)[0]


def gan(job: Job, config: GANConfig, run: RunConfig) -> None:
    """A GAN training run (`jaxart.gan.loop.train`) in its workdir, which the GAN view watches."""
    job.progress(0, run.max_steps or 0)
    gan_loop.train(config, run)
    job.progress(run.max_steps or 0, run.max_steps or 0)


def styles_sheet(module: nn.Module, params: Any, count: int, picture: np.ndarray) -> list[bytes]:
    """Each of an N-style network's `count` styles on `picture`, as PNG thumbnails."""
    condition = jnp.eye(count, dtype=jnp.float32)
    pictures = jnp.broadcast_to(jnp.asarray(picture), (count, *picture.shape))
    out = np.asarray(_network(module, params, condition, pictures, jnp.float32(1.0), False))
    return [png(p) for p in out]
