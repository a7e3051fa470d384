"""A style run's saved state, to continue it after an interruption: the optimisation state
(picture, optimiser state, iterate average) of every pair, the step, and what the run was (its
options and the digests of its input files), in one .npz file written atomically.

A resumed run continues exactly: `loop.iterate(..., resume=(step, leaves))` from a state saved
at step k gives the bits an uninterrupted run gives (tests/test_style_resume.py).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

from jaxart.errors import InputError, reason
from jaxart.files import atomic_write, sha256_file
from jaxart.style.config import StyleConfig

FORMAT = 1
# Options a resumed run may change: how far it goes, how it is run and written, not what it computes.
FREE = ("steps", "steps_per_call", "bit_depth")


def state_path(output: Path) -> Path:
    """Where a run writing `output` keeps its state: NAME.partial.npz beside it."""
    return output.with_name(f"{output.stem}.partial.npz")


def partial_path(picture: Path) -> Path:
    """Where the picture so far goes: NAME.partial.EXT beside the picture."""
    return picture.with_name(f"{picture.stem}.partial{picture.suffix}")


def describe(config: StyleConfig, inputs: Sequence[str | os.PathLike], per_pair: Mapping[str, Any]) -> dict[str, Any]:
    """What a run is, for telling a saved state of this run from one of another: its options
    (JSON-ready), each input file's digest, and the values that differ per pair."""
    options = json.loads(json.dumps(dataclasses.asdict(config)))
    return {
        "config": {k: v for k, v in options.items() if k not in FREE},
        "inputs": [sha256_file(path) for path in inputs],
        "per_pair": {k: [float(v) for v in values] for k, values in per_pair.items()},
    }


class Saved(NamedTuple):
    """A saved run: its step, its state's leaves, each metric's history up to the step
    ({name: (..., step)}) and the (steps done, seconds) at the end of each compiled call."""

    step: int
    leaves: list[np.ndarray]
    history: dict[str, np.ndarray]
    marks: list[tuple[int, float]]


def save(path: Path, saved: Saved, run: Mapping[str, Any]) -> Path:
    """Writes `saved` with `run` (`describe`'s record), atomically. Each leaf is kept as its raw
    bytes and its dtype's name, so any dtype (bfloat16 too) comes back bit for bit."""
    leaves = [np.asarray(x) for x in saved.leaves]
    meta = {
        "format": FORMAT,
        "step": saved.step,
        "run": run,
        "leaves": [{"dtype": x.dtype.name, "shape": list(x.shape)} for x in leaves],
        "marks": saved.marks,
    }
    arrays = {f"leaf{i}": np.ascontiguousarray(x).reshape(-1).view(np.uint8) for i, x in enumerate(leaves)}
    arrays |= {f"history_{name}": np.asarray(values) for name, values in saved.history.items()}

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            # numpy's stubs read **arrays as maybe `allow_pickle`; all its keys are leafN/history_*.
            np.savez(f, meta=np.array(json.dumps(meta)), **arrays)  # type: ignore[arg-type]

    return atomic_write(path, write)


def _differences(saved: Mapping[str, Any], run: Mapping[str, Any]) -> list[str]:
    config, now = saved.get("config", {}), run["config"]
    changed = [f"--{k.replace('_', '-')}" for k in sorted(set(config) | set(now)) if config.get(k) != now.get(k)]
    if saved.get("inputs") != run["inputs"]:
        changed.append("the input images")
    if saved.get("per_pair") != run["per_pair"]:
        changed.append("the swept values")
    return changed


def load(path: Path, run: Mapping[str, Any], steps: int) -> Saved:
    """What `save` wrote at `path`, for a run like `run` (`describe`'s record).

    Raises InputError if there is no saved state, it cannot be read, it was saved by a run with
    other options or inputs (naming them), or it is already at `steps`.
    """
    if not path.is_file():
        raise InputError(
            f"nothing to resume: there is no saved state {str(path)!r} (a run saves one every --autosave seconds "
            "and when it is interrupted)"
        )
    try:
        with np.load(path, allow_pickle=False) as file:
            meta = json.loads(str(file["meta"]))
            raw = [file[f"leaf{i}"] for i in range(len(meta["leaves"]))]
            history = {key.removeprefix("history_"): file[key] for key in file.files if key.startswith("history_")}
        leaves = [
            np.frombuffer(r.tobytes(), dtype=jax.numpy.dtype(leaf["dtype"])).reshape(leaf["shape"])
            for r, leaf in zip(raw, meta["leaves"])
        ]
        step = int(meta["step"])
        marks = [(int(done), float(seconds)) for done, seconds in meta["marks"]]
    except Exception as e:  # numpy's zip reader raises many types (BadZipFile, EOFError, ...) for a damaged file
        raise InputError(
            f"cannot read the saved state {str(path)!r}: it is damaged or not jaxart's ({reason(e)}); "
            "delete it to start afresh"
        ) from e
    if meta.get("format") != FORMAT:
        raise InputError(f"the saved state {str(path)!r} is of another jaxart version; delete it to start afresh")
    changed = _differences(meta["run"], run)
    if changed:
        raise InputError(
            f"the saved state {str(path)!r} is of a run with other {', '.join(changed)}: resume with the "
            "same options and inputs, or delete it to start afresh"
        )
    if step >= steps:
        raise InputError(f"the saved state {str(path)!r} is at step {step}: give more than {step} --steps to go on")
    return Saved(step, leaves, history, marks)


def restore(template: Any, leaves: Sequence[np.ndarray], same_shapes: bool = True) -> Any:
    """`template`'s pytree with the saved leaves; InputError if they do not fit it: another
    structure or dtype, or (with `same_shapes`) other shapes."""
    expected = jax.tree.leaves(template)
    if len(expected) != len(leaves) or any(
        (same_shapes and np.shape(a) != b.shape) or np.dtype(a.dtype) != b.dtype for a, b in zip(expected, leaves)
    ):
        raise InputError("the saved state does not fit this run (other picture sizes or options); delete it")
    return jax.tree.unflatten(jax.tree.structure(template), [jax.numpy.asarray(x) for x in leaves])
