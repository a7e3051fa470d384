"""Orbax checkpoints of a GAN run in <workdir>/checkpoints (`jaxart.checkpoint.Checkpoints`).

Each step holds two items: `state` (the GANState pytree) and `meta` (JSON, see `run_meta`):
the run's GANConfig, its data's checksum and the sha256 of the state itself, so a resume can
refuse a different run, `sample` can rebuild the model from the workdir, and a damaged file
that still decodes is caught rather than trained on.
"""

from __future__ import annotations

import dataclasses
import operator
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flax import struct

from jaxart.checkpoint import Checkpoints, local_target, restore_latest
from jaxart.errors import InputError, option, reason
from jaxart.gan.config import GANConfig, ModelConfig, as_json
from jaxart.gan.models import adam_b1, class_weight, hidden_dim
from jaxart.gan.train import GANState, state_shapes

# The layout of the saved state: 2 since Adam's lr and b1 are values in the optimiser state
# (`optax.inject_hyperparams`); checkpoints without the field are of layout 1 and hold neither.
STATE_FORMAT = 2
# The models' layout: 2 since the conditional MLP's generator sees its labels at every layer;
# checkpoints without the field are of layout 1, whose conditional MLP saw them at its input alone.
MODEL_FORMAT = 2


def run_meta(config: GANConfig, data: str, data_checksum: str) -> dict[str, Any]:
    """What a checkpoint records about its run (JSON-serialisable); `Checkpoints.save` adds the
    state's checksum."""
    return {
        "config": as_json(config),
        "data": data,
        "data_sha256": data_checksum,
        "state_format": STATE_FORMAT,
        "model_format": MODEL_FORMAT,
    }


def _added_fields(recorded: dict[str, Any]) -> dict[str, Any]:
    """Fields added to GANConfig since checkpoints first recorded it, with what every earlier run
    had: conditional runs trained without a class loss, unconditional ones have none to set."""
    return {"ema_decay": 0.0, "conditional": False, "class_weight": 0.0 if recorded.get("conditional") else None}


def _config_from_meta(meta: dict[str, Any], where: str) -> GANConfig:
    """The GANConfig a checkpoint records. Checkpoints of the earlier layout (which recorded the
    same fields under "config") load; a config with other fields is refused in one line."""
    recorded = meta.get("config")
    if isinstance(recorded, dict):
        recorded = {**_added_fields(recorded), **recorded}
    known = {f.name for f in dataclasses.fields(GANConfig)}
    if not isinstance(recorded, dict) or set(recorded) != known or "data_sha256" not in meta:
        raise InputError(
            f"{where} holds a checkpoint written by another jaxart version (settings "
            f"{sorted(recorded) if isinstance(recorded, dict) else recorded!r}); use another {option('workdir')}"
        )
    if meta.get("state_format", 1) != STATE_FORMAT:
        raise InputError(
            f"{where} holds a checkpoint of an earlier jaxart version, whose optimiser state kept no "
            f"learning rate (state format {meta.get('state_format', 1)}, this version reads "
            f"{STATE_FORMAT}); train afresh in another {option('workdir')}"
        )
    try:
        config = GANConfig(**recorded)
    except ValueError as e:  # a ConfigError
        raise InputError(f"{where} holds a checkpoint with an invalid config ({reason(e)})") from e
    if config.conditional and config.model == "mlp" and meta.get("model_format", 1) != MODEL_FORMAT:
        raise InputError(
            f"{where} holds a conditional MLP of an earlier jaxart version, whose generator saw the labels "
            f"at its input alone (model format {meta.get('model_format', 1)}, this version reads "
            f"{MODEL_FORMAT}); train afresh in another {option('workdir')}"
        )
    return config


@struct.dataclass
class _StateWithoutAverage:
    """GANState as versions before the generator's moving average saved it: no `g_ema` entry."""

    step: Any
    g_params: Any
    d_params: Any
    g_opt_state: Any
    d_opt_state: Any
    g_collections: Any
    d_collections: Any
    config: ModelConfig = struct.field(pytree_node=False)


def _saved_layout(target: GANState, meta: dict[str, Any]) -> Any:
    """`target` as the checkpoint of `meta` lays it out (orbax restores only the structure saved)."""
    if "ema_decay" in meta["config"]:
        return target
    fields = {f.name: getattr(target, f.name) for f in dataclasses.fields(_StateWithoutAverage)}
    return _StateWithoutAverage(**fields)


def restore(checkpoints: Checkpoints, step: int, meta: dict[str, Any], target: GANState) -> GANState:
    """The GANState saved at `step` (`Checkpoints.restore`), whichever version's layout it has."""
    return _as_state(checkpoints.restore(step, meta, _saved_layout(target, meta)))


def _as_state(restored: Any) -> GANState:
    if isinstance(restored, _StateWithoutAverage):
        return GANState(**{f.name: getattr(restored, f.name) for f in dataclasses.fields(restored)}, g_ema=None)
    return restored


# Fields left unset to mean the model's own value: a run is the same run when the values in
# effect agree (runs of earlier versions recorded the width they used as a number).
_IN_EFFECT: dict[str, Callable[[GANConfig], Any]] = {
    "b1": adam_b1,
    "class_weight": class_weight,
    "hidden_dim": hidden_dim,
}


def _setting(name: str, value: Any) -> str:
    """A field's value as the command line sets it: `name` value, or a switch on (`name`) or off."""
    if isinstance(value, bool):
        return option(name if value else f"no_{name}")
    return f"{option(name)} {value}"


def check_resumable(meta: dict[str, Any], config: GANConfig, data: str, data_checksum: str, where: str) -> None:
    """Raises InputError naming the first difference between a checkpointed run and this one."""
    saved_config = _config_from_meta(meta, where)
    for field in dataclasses.fields(GANConfig):
        value = _IN_EFFECT.get(field.name, operator.attrgetter(field.name))
        saved, wanted = value(saved_config), value(config)
        if saved != wanted:
            raise InputError(
                f"{where} holds a run with {option(field.name)} {saved}, not {wanted}; "
                f"pass {_setting(field.name, saved)} to resume it, or use another {option('workdir')}"
            )
    if meta["data_sha256"] != data_checksum:
        raise InputError(
            f"{where} holds a run trained on other data ({meta.get('data')!r}) than {option('data')} {data!r}; "
            f"use the same data to resume it, or use another {option('workdir')}"
        )


def load_latest_run(workdir: str | os.PathLike) -> tuple[GANState, dict[str, Any]]:
    """The latest checkpointed state of the run in `workdir` and its meta (see `run_meta`).

    Raises InputError if there is no checkpoint, or it cannot be read or fails its checks.
    """
    workdir = Path(workdir)
    missing = f"no checkpoints in {str(workdir)!r}; train first with {option('workdir')} {workdir}"
    where = f"{option('workdir')} {str(workdir)!r}"
    state, meta = restore_latest(
        workdir,
        missing,
        lambda meta, _: _saved_layout(local_target(state_shapes(_config_from_meta(meta, where).static)), meta),
    )
    return _as_state(state), meta


def load_latest(workdir: str | os.PathLike) -> GANState:
    """The latest checkpointed state of the run in `workdir` (InputError if there is none)."""
    return load_latest_run(workdir)[0]
