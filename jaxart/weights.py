"""VGG19 weights: torchvision state_dict -> Flax params, cached under `weights/` by orbax.

Sources, tried in this order when none is named:
  1. the converted cache (`weights/vgg19/`, or $JAXART_WEIGHTS_DIR/vgg19/), loaded without torch;
  2. torchvision's own download of `VGG19_Weights.IMAGENET1K_V1` (its hub cache first, so a
     file downloaded once is not fetched again), converted and written to the cache.
A named source is a converted folder, a torchvision `.pth` file, or "random".

`python -m jaxart.weights [--from PATH]` converts once and says where the result went.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxart import cli, vgg
from jaxart.errors import InputError
from jaxart.files import replace_folder

TORCHVISION_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
TORCHVISION_FILE = "vgg19-dcbb9e9d.pth"
CACHE_NAME = "vgg19"
_PARAMS_DIR = "params"
_SOURCE_FILE = "source.json"
# torchvision names its files `name-<first hex digits of sha256>.pth`.
_HASH_IN_NAME = re.compile(r"-([a-f0-9]{6,64})\.pth?$")

HOW_TO_GET = (
    "no VGG19 weights found: run 'python -m jaxart.weights' where the internet is reachable "
    "(torchvision downloads VGG19_Weights.IMAGENET1K_V1), or download "
    f"{TORCHVISION_URL} and run 'python -m jaxart.weights --from {TORCHVISION_FILE}' "
    "(or pass the .pth file with --weights); '--weights random' runs without them, meaninglessly"
)


class WeightsError(InputError):
    """Weights that are missing, damaged or not VGG19's."""


def weights_dir() -> Path:
    """The folder that holds converted weights: $JAXART_WEIGHTS_DIR or the project's `weights/`."""
    env = os.environ.get("JAXART_WEIGHTS_DIR")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "weights"


def default_cache() -> Path:
    return weights_dir() / CACHE_NAME


def expected_shapes() -> dict[str, tuple[int, ...]]:
    """torchvision state_dict key -> shape, for the 16 convolutions of `features`."""
    shapes = {}
    params = jax.eval_shape(vgg.init_params, jax.random.key(0))
    for name, leaf in params.items():
        index = vgg.TORCH_INDEX[name]
        h, w, i, o = leaf["kernel"].shape
        shapes[f"features.{index}.weight"] = (o, i, h, w)
        shapes[f"features.{index}.bias"] = (o,)
    return shapes


def convert_state_dict(state_dict: Mapping[str, Any]) -> dict[str, dict[str, np.ndarray]]:
    """torchvision VGG19 state_dict -> Flax params (conv kernels OIHW -> HWIO), float32 numpy.

    Keys outside `features` (the classifier) are ignored. Raises WeightsError naming
    missing keys or wrong shapes.
    """
    expected = expected_shapes()
    missing = [k for k in expected if k not in state_dict]
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise WeightsError(f"not a VGG19 state_dict: missing {shown}")
    arrays = {
        k: np.asarray(state_dict[k].detach().cpu().numpy() if hasattr(state_dict[k], "detach") else state_dict[k])
        for k in expected
    }
    wrong = [
        f"{k} is {tuple(a.shape)}, expected {expected[k]}" for k, a in arrays.items() if tuple(a.shape) != expected[k]
    ]
    if wrong:
        raise WeightsError(
            f"not a VGG19 state_dict: {wrong[0]}" + (f" (and {len(wrong) - 1} more)" if len(wrong) > 1 else "")
        )
    params = {}
    for name in vgg.CONV_LAYERS:
        index = vgg.TORCH_INDEX[name]
        kernel = arrays[f"features.{index}.weight"].astype(np.float32)
        params[name] = {
            "kernel": np.ascontiguousarray(kernel.transpose(2, 3, 1, 0)),
            "bias": arrays[f"features.{index}.bias"].astype(np.float32),
        }
    return params


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_torch_file(path: str | os.PathLike) -> dict[str, dict[str, np.ndarray]]:
    """Reads a torchvision `.pth` state_dict safely (weights_only) and converts it.

    When the name carries a sha256 prefix (`vgg19-dcbb9e9d.pth`), the file must match it.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise WeightsError(f"weights file {str(path)!r} does not exist")
    if path.is_dir():
        raise WeightsError(f"weights file {str(path)!r} is a directory")
    digest = sha256_file(path)
    match = _HASH_IN_NAME.search(path.name)
    if match and not digest.startswith(match.group(1)):
        raise WeightsError(
            f"weights file {str(path)!r} is damaged or not the named file: its sha256 starts with "
            f"{digest[: len(match.group(1))]}, its name says {match.group(1)}"
        )
    import torch  # deferred: only this path needs torch

    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for bad files; all mean the same here
        message = str(e).strip().splitlines()[0] if str(e).strip() else ""
        reason = f"{type(e).__name__}: {message}" if message else type(e).__name__
        raise WeightsError(f"{str(path)!r} is not a readable PyTorch state_dict file ({reason[:200]})") from None
    if not isinstance(state_dict, Mapping):
        raise WeightsError(f"{str(path)!r} holds a {type(state_dict).__name__}, not a state_dict")
    return convert_state_dict(state_dict)


def download_torchvision() -> dict[str, dict[str, np.ndarray]]:
    """torchvision's VGG19_Weights.IMAGENET1K_V1, from its hub cache or the internet (hash checked)."""
    import torch  # deferred

    interactive = sys.stderr.isatty()
    try:
        # torch.hub announces every download attempt on stderr; off a terminal that would be a
        # second line beside our one-line error when offline.
        with contextlib.nullcontext() if interactive else contextlib.redirect_stderr(io.StringIO()):
            state_dict = torch.hub.load_state_dict_from_url(
                TORCHVISION_URL, progress=interactive, check_hash=True, weights_only=True
            )
    except Exception as e:  # offline: URLError; a bad cached file: RuntimeError
        raise WeightsError(f"{HOW_TO_GET} (torchvision download failed: {str(e)[:120]})") from None
    return convert_state_dict(state_dict)


def save(params: Mapping[str, Any], folder: str | os.PathLike, source: str) -> Path:
    """Writes params as an orbax checkpoint in `folder` (replacing it) with a note of the source."""
    import orbax.checkpoint as ocp

    def write(tmp: Path) -> None:
        with ocp.StandardCheckpointer() as ckptr:
            ckptr.save(tmp / _PARAMS_DIR, jax.tree.map(np.asarray, params))
            ckptr.wait_until_finished()
        (tmp / _SOURCE_FILE).write_text(json.dumps({"source": source, "format": "flax-hwio-float32"}) + "\n")

    return replace_folder(folder, write)


def load_converted(folder: str | os.PathLike) -> dict[str, dict[str, jax.Array]]:
    """Loads params written by `save` (no torch import). Raises WeightsError if unreadable."""
    import orbax.checkpoint as ocp

    folder = Path(folder).expanduser().resolve()
    if not (folder / _PARAMS_DIR).is_dir():
        raise WeightsError(f"{str(folder)!r} is not a converted-weights folder (no {_PARAMS_DIR}/ inside)")
    target = jax.eval_shape(vgg.init_params, jax.random.key(0))
    try:
        with ocp.StandardCheckpointer() as ckptr:
            params = ckptr.restore(folder / _PARAMS_DIR, target)
    except Exception as e:  # orbax raises a variety of errors on damaged checkpoints
        raise WeightsError(
            f"converted weights in {str(folder)!r} are unreadable ({str(e)[:160]}); delete the folder and convert again"
        ) from None
    return params


def source_note(folder: str | os.PathLike) -> str:
    """Where a converted folder's weights came from (as recorded at conversion)."""
    try:
        return json.loads((Path(folder) / _SOURCE_FILE).read_text())["source"]
    except (OSError, ValueError, KeyError):
        return "unknown"


def random_params(seed: int = 0) -> dict[str, dict[str, jax.Array]]:
    """Seeded random weights (torchvision's init), with a warning: the pictures mean nothing."""
    warnings.warn(
        "using RANDOM VGG19 weights: fine for smoke tests, but the pictures mean nothing",
        stacklevel=2,
    )
    return vgg.init_params(jax.random.key(seed))


def load(source: str | None = None, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Loads VGG19 params from `source`, or by the default order (cache, then torchvision).

    Args:
      source: None (default order), "random", a converted folder, or a `.pth` file.
      seed: for the "random" source.
    """
    if source == "random":
        return random_params(seed)
    if source is not None:
        path = Path(source).expanduser()
        if path.is_dir():
            return load_converted(path)
        return load_torch_file(path)
    cache = default_cache()
    if (cache / _PARAMS_DIR).is_dir():
        return load_converted(cache)
    params = download_torchvision()
    save(params, cache, source=TORCHVISION_URL)
    print(f"converted VGG19 weights cached in {cache}", file=sys.stderr)
    return params


def convert(source: str | None, out: str | os.PathLike | None = None) -> Path:
    """Converts a `.pth` file (or torchvision's download when None) into a cache folder."""
    if source is not None and source == "random":
        raise WeightsError("refusing to cache random weights as if they were pretrained")
    params = download_torchvision() if source is None else load_torch_file(source)
    out = Path(out) if out is not None else default_cache()
    if not out.parent.is_dir():
        raise WeightsError(f"output folder {str(out.parent)!r} does not exist")
    recorded = TORCHVISION_URL if source is None else str(Path(source).expanduser().resolve())
    return save(params, out, source=recorded)


def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.ArgumentParser(
        prog="python -m jaxart.weights",
        description="Convert torchvision's VGG19 weights into jaxart's Flax format, once.",
    )
    parser.add_argument(
        "--from",
        dest="source",
        default=None,
        metavar="PATH",
        help="a torchvision vgg19 .pth file (default: torchvision's download)",
    )
    parser.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help="where to write the converted weights (default: weights/vgg19 in the project)",
    )
    args = parser.parse_args(argv)
    folder = convert(args.source, args.out)
    print(f"VGG19 weights converted from {source_note(folder)} into {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
