"""Orbax checkpoints of a training run in <workdir>/checkpoints, checksummed (both jobs).

Each step holds two items: `state` (the job's state pytree) and `meta` (JSON: what the job
records about its run, plus the sha256 of the state itself), so a resume can refuse a different
run and a damaged file that still decodes is caught rather than trained on. Orbax writes a step
into a temporary folder and renames it when complete, so a process killed mid-save leaves no
step that looks finished.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import os
import re
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxart import interrupts
from jaxart.cache import tree_checksum
from jaxart.errors import InputError, RunError, option, os_error, reason
from jaxart.files import check_utf8


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

    def save(self, state: Any, meta: dict[str, Any]) -> None:
        """Starts saving `state` (a pytree with a scalar `step`) under its step, its checksum
        added to `meta` (no-op if that step is already saved). RunError if the state is not
        finite, or a save fails."""
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

    def restore(self, step: int, meta: dict[str, Any], target: Any) -> Any:
        """The state saved at `step` with `meta` (`read_meta`), checked against the checksum in
        `meta` (or, in checkpoints older than it, for finiteness).

        target: the shapes, dtypes and shardings to restore into (`jax.ShapeDtypeStruct`s):
        each process reads what its devices hold, whatever devices or processes wrote it."""
        state = self._restore(step, state=ocp.args.StandardRestore(target)).state
        if "state_sha256" in meta:
            if tree_checksum(state) != meta["state_sha256"]:
                raise InputError(
                    f"{self.where(step)} is damaged (its state does not match its checksum); {self._fallback(step)}"
                )
        elif not _all_finite(state):
            raise InputError(f"{self.where(step)} holds NaN or infinity (a diverged run); {self._fallback(step)}")
        return state

    def where(self, step: int) -> str:
        """The checkpoint of `step`, as messages name it."""
        return f"checkpoint {str(self.directory / str(step))!r}"

    def _fallback(self, step: int) -> str:
        earlier = [s for s in self.steps() if s < step]
        return f"delete it to fall back to step {max(earlier)}" if earlier else "delete the workdir to start afresh"

    def _restore(self, step: int, **items: Any) -> Any:
        try:
            return self.manager.restore(step, args=ocp.args.Composite(**items))
        except Exception as e:  # orbax and tensorstore raise many types for a damaged step
            # The reads orbax abandoned are referenced from the error's frames: release and
            # finalize them now, while the command's filter (see `jaxart.cli`) is on, not when
            # the error is printed; the traceback itself stays for JAXART_DEBUG=1.
            traceback.clear_frames(e.__traceback__)
            gc.collect()
            raise InputError(f"{self.where(step)} cannot be read ({_describe(e)}); {self._fallback(step)}") from e


def local_target(shapes: Any) -> Any:
    """`shapes` (e.g. from `jax.eval_shape`) placed on this process's first device: a restore
    target for a reader that is not part of a run's mesh."""
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), shapes)


def restore_latest(
    workdir: str | os.PathLike, missing: str, target: Callable[[dict[str, Any], str], Any]
) -> tuple[Any, dict[str, Any]]:
    """The state of the latest checkpoint in `workdir` and its meta. `target(meta, where)` gives the
    structure to restore into (`where` names the checkpoint, for its errors). InputError(`missing`)
    when there is no checkpoint; InputError as `Checkpoints.restore` for one that cannot be read."""
    if not (Path(workdir) / "checkpoints").is_dir():
        raise InputError(missing)
    with Checkpoints(workdir, create=False) as checkpoints:
        step = checkpoints.latest_step()
        if step is None:
            raise InputError(missing)
        meta = checkpoints.read_meta(step)
        return checkpoints.restore(step, meta, target(meta, checkpoints.where(step))), meta


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
