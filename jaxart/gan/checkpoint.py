"""Orbax checkpoints of a GAN run in <workdir>/checkpoints.

Each step holds two items: `state` (the GANState pytree) and `meta` (JSON, see `run_meta`):
the run's GANConfig, its data's checksum and the sha256 of the state itself, so a resume can
refuse a different run, `sample` can rebuild the model from the workdir, and a damaged file
that still decodes is caught rather than trained on. Orbax writes a step into a temporary
folder and renames it when complete, so a process killed mid-save leaves no step that looks
finished.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import gc
import os
import re
import traceback
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxart import interrupts
from jaxart.cache import tree_checksum
from jaxart.errors import InputError, RunError, option, os_error, reason
from jaxart.files import check_utf8
from jaxart.gan.config import GANConfig, as_json
from jaxart.gan.train import GANState, state_shapes


def _all_finite(state: Any) -> bool:
    return all(bool(np.isfinite(leaf).all()) for leaf in jax.tree.leaves(jax.device_get(state)))


class Checkpoints:
    """The CheckpointManager of one workdir; use as a context manager so saves finish before exit."""

    def __init__(self, workdir: str | os.PathLike, keep: int = 3, create: bool = True):
        self.directory = check_utf8(workdir, option("workdir")).absolute() / "checkpoints"
        self.keep = keep
        self.saving: int | None = None  # the step of the latest save started
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep,
            # Saves overlap training; the blocking part copies the state off the
            # device, so donating it to the next step right after is safe.
            enable_async_checkpointing=True,
            # A reader must not create the folder (orbax's read_only mode would, with warnings, too).
            create=create,
        )
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def __enter__(self) -> Checkpoints:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
            return
        # Already failing: the error in flight is the one to report, not a save's after it.
        with contextlib.suppress(Exception):
            self.close()
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            # A log or preview found the disk full (the save in flight may have failed too):
            # say what survives, as a failed save does.
            where = f" {exc.filename!r}" if exc.filename else ""
            raise RunError(f"could not write{where} ({exc.strerror}); {self._last_good()}") from exc

    def close(self) -> None:
        """Waits for pending saves, then releases the manager (RunError if a save failed)."""
        try:
            self._finish()
        finally:
            with interrupts.deferred():
                self.manager.close()

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def trim(self) -> None:
        """Deletes all but the latest `keep` steps: a run killed between a save and orbax's
        clean-up of the oldest step leaves one too many."""
        for step in self.steps()[: -self.keep]:
            self.manager.delete(step)

    def save(self, state: GANState, meta: dict[str, Any]) -> None:
        """Starts saving `state` under its step, its checksum added to `meta` (no-op if that
        step is already saved). RunError if the state is not finite, or a save fails."""
        step = int(state.step)
        if step in self.manager.all_steps():
            return
        if not _all_finite(state):
            raise RunError(f"the state at step {step} holds NaN or infinity; {self._last_good()}")
        self._finish()  # a failed earlier save is reported before this one starts
        meta = {**meta, "state_sha256": tree_checksum(state)}
        self.saving = step
        try:
            # Begun, orbax's save runs threads that a start cut short leaves waiting forever.
            with interrupts.deferred():
                self.manager.save(
                    step, args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
                )
        except Exception as e:  # orbax wraps the file system's errors in its own types
            raise self._save_error(e) from e

    def _finish(self) -> None:
        try:
            with interrupts.deferred():
                self.manager.wait_until_finished()
        except Exception as e:
            raise self._save_error(e) from e

    def _save_error(self, e: Exception) -> RunError:
        return RunError(
            f"could not save checkpoint {self.saving} in {str(self.directory)!r} ({_os_cause(e)}); {self._last_good()}"
        )

    def _last_good(self) -> str:
        steps = self.steps()
        return f"the last good checkpoint is step {steps[-1]}" if steps else "no checkpoint was saved"

    def read_meta(self, step: int) -> dict[str, Any]:
        return self._restore(step, meta=ocp.args.JsonRestore()).meta

    def restore(self, step: int, meta: dict[str, Any], target: GANState | None = None) -> GANState:
        """The state saved at `step` with `meta` (`read_meta`), checked against the checksum in
        `meta` (or, in checkpoints older than it, for finiteness).

        target: shapes, dtypes and shardings to restore into (`parallel.one_run_target`);
        default: this process's first device, whatever devices or processes wrote it."""
        if target is None:
            device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
            shapes = state_shapes(_config_from_meta(meta, self._where(step)).static)
            target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), shapes)
        state = self._restore(step, state=ocp.args.StandardRestore(target)).state
        if "state_sha256" in meta:
            if tree_checksum(state) != meta["state_sha256"]:
                raise InputError(
                    f"{self._where(step)} is damaged (its state does not match its checksum); {self._fallback(step)}"
                )
        elif not _all_finite(state):
            raise InputError(f"{self._where(step)} holds NaN or infinity (a diverged run); {self._fallback(step)}")
        return state

    def _where(self, step: int) -> str:
        return f"checkpoint {str(self.directory / str(step))!r}"

    def _fallback(self, step: int) -> str:
        earlier = [s for s in self.steps() if s < step]
        return f"delete it to fall back to step {max(earlier)}" if earlier else "delete the workdir to start afresh"

    def _restore(self, step: int, **items: Any) -> Any:
        try:
            return self.manager.restore(step, args=ocp.args.Composite(**items))
        except Exception as e:  # orbax and tensorstore raise many types for a damaged step
            # The reads orbax abandoned are referenced from the error's frames: release and
            # finalize them now, while the command's filter (see `jaxart.gan.__main__`) is on,
            # not when the error is printed; the traceback itself stays for JAXART_DEBUG=1.
            traceback.clear_frames(e.__traceback__)
            gc.collect()
            raise InputError(f"{self._where(step)} cannot be read ({_describe(e)}); {self._fallback(step)}") from e


def _describe(e: BaseException) -> str:
    """`reason(e)` without the object reprs that tensorstore's errors embed ('See full
    TensorStore details: <bound method pybind11_detail_function_record... of <...>>'),
    removed innermost first, before the line is cut to length."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    while True:
        shorter = re.sub(r"<[^<>]*>", "", text)
        if shorter == text:
            break
        text = shorter
    text = re.sub(r"\s*See full TensorStore details:?\s*", " ", text.split("<")[0])
    return reason(RuntimeError(" ".join(text.split()).strip(" :,.") or type(e).__name__))


def _os_cause(e: BaseException) -> str:
    """The file system's reason for a failed save ("No space left on device"), which orbax
    and tensorstore bury in their own messages; else the error's cleaned first line."""
    cause = os_error(e)
    return cause.strerror if cause is not None and cause.strerror else _describe(e)


# The layout of the saved state: 2 since Adam's lr and b1 are values in the optimiser state
# (`optax.inject_hyperparams`); checkpoints without the field are of layout 1 and hold neither.
STATE_FORMAT = 2


def run_meta(config: GANConfig, data: str, data_checksum: str) -> dict[str, Any]:
    """What a checkpoint records about its run (JSON-serialisable); `Checkpoints.save` adds the
    state's checksum."""
    return {"config": as_json(config), "data": data, "data_sha256": data_checksum, "state_format": STATE_FORMAT}


def _config_from_meta(meta: dict[str, Any], where: str) -> GANConfig:
    """The GANConfig a checkpoint records. Checkpoints of the earlier layout (which recorded the
    same fields under "config") load; a config with other fields is refused in one line."""
    recorded = meta.get("config")
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
        return GANConfig(**recorded)
    except ValueError as e:  # a ConfigError
        raise InputError(f"{where} holds a checkpoint with an invalid config ({reason(e)})") from e


def check_resumable(meta: dict[str, Any], config: GANConfig, data: str, data_checksum: str, where: str) -> None:
    """Raises InputError naming the first difference between a checkpointed run and this one."""
    saved_config = _config_from_meta(meta, where)
    for field in dataclasses.fields(GANConfig):
        saved, wanted = getattr(saved_config, field.name), getattr(config, field.name)
        if saved != wanted:
            raise InputError(
                f"{where} holds a run with {option(field.name)} {saved}, not {wanted}; "
                f"pass {option(field.name)} {saved} to resume it, or use another {option('workdir')}"
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
    missing = InputError(f"no checkpoints in {str(workdir)!r}; train first with {option('workdir')} {workdir}")
    if not (workdir / "checkpoints").is_dir():
        raise missing
    with Checkpoints(workdir, create=False) as checkpoints:
        step = checkpoints.latest_step()
        if step is None:
            raise missing
        meta = checkpoints.read_meta(step)
        _config_from_meta(meta, f"{option('workdir')} {str(workdir)!r}")
        return checkpoints.restore(step, meta), meta


def load_latest(workdir: str | os.PathLike) -> GANState:
    """The latest checkpointed state of the run in `workdir` (InputError if there is none)."""
    return load_latest_run(workdir)[0]
