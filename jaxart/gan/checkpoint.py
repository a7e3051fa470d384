"""Orbax checkpoints of a GAN run in <workdir>/checkpoints.

Each step holds two items: `state` (the GANState pytree) and `meta` (JSON: the
config fields a run fixes and the training data's checksum), so a resume can
refuse a different run and `sample` can rebuild the model from the workdir.
Orbax writes a step into a temporary folder and renames it when complete, so a
process killed mid-save leaves no step that looks finished.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

from jaxart.cli import flag
from jaxart.errors import InputError
from jaxart.gan.config import GANConfig
from jaxart.gan.train import GANState, init_state, run_keys


class Checkpoints:
    """The CheckpointManager of one workdir; use as a context manager so saves finish before exit."""

    def __init__(self, workdir: str | os.PathLike, keep: int = 3, create: bool = True):
        self.directory = Path(workdir).absolute() / "checkpoints"
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

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Waits for pending saves, then releases the manager."""
        self.manager.wait_until_finished()
        self.manager.close()

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, state: GANState, meta: dict[str, Any]) -> None:
        """Starts saving `state` under its step (no-op if that step is already saved)."""
        step = int(state.step)
        if step in self.manager.all_steps():
            return
        self.manager.save(
            step, args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
        )

    def read_meta(self, step: int) -> dict[str, Any]:
        return self._restore(step, meta=ocp.args.JsonRestore()).meta

    def restore(self, step: int, config: GANConfig) -> GANState:
        """The state saved at `step`, for a run configured as `config`."""
        abstract = jax.eval_shape(lambda: init_state(run_keys(config.seed).init, config))
        return self._restore(step, state=ocp.args.StandardRestore(abstract)).state

    def _restore(self, step: int, **items: Any) -> Any:
        _silence_closed_loop_reports()
        try:
            return self.manager.restore(step, args=ocp.args.Composite(**items))
        except Exception as e:  # orbax and tensorstore raise many types for a damaged step
            earlier = [s for s in self.manager.all_steps() if s < step]
            advice = (
                f"delete it to fall back to step {max(earlier)}" if earlier else "delete the workdir to start afresh"
            )
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise InputError(
                f"checkpoint {str(self.directory / str(step))!r} cannot be read ({reason[:200]}); {advice}"
            ) from None


def _is_closed_loop_report(unraisable) -> bool:
    return isinstance(unraisable.exc_value, RuntimeError) and "Event loop is closed" in str(unraisable.exc_value)


def _silence_closed_loop_reports() -> None:
    """Drops the 'Event loop is closed' reports of reads still in flight after a failed restore.

    Tensorstore finishes those reads after orbax has closed its event loop and
    reports each through sys.unraisablehook, some before the error reaches us:
    noise beside the one real error. Other reports pass through.
    """
    original = sys.unraisablehook
    if getattr(original, "drops_closed_loop_reports", False):
        return

    def hook(unraisable) -> None:
        if not _is_closed_loop_report(unraisable):
            original(unraisable)

    hook.drops_closed_loop_reports = True
    sys.unraisablehook = hook


def run_meta(config: GANConfig, data_checksum: str) -> dict[str, Any]:
    """What a checkpoint records about its run (JSON-serialisable)."""
    return {"config": config.fixed(), "data": config.data, "data_sha256": data_checksum}


def check_resumable(meta: dict[str, Any], config: GANConfig, data_checksum: str, where: str) -> None:
    """Raises InputError naming the first difference between a checkpointed run and `config`."""
    for name, saved in meta["config"].items():
        wanted = getattr(config, name)
        if saved != wanted:
            raise InputError(
                f"{where} holds a run with {flag(name)} {saved}, not {wanted}; "
                f"pass {flag(name)} {saved} to resume it, or use another --workdir"
            )
    if meta["data_sha256"] != data_checksum:
        raise InputError(
            f"{where} holds a run trained on other data ({meta['data']!r}) than --data {config.data!r}; "
            "use the same data to resume it, or use another --workdir"
        )


def config_from_meta(meta: dict[str, Any]) -> GANConfig:
    """The config (fixed fields from the checkpoint, the rest default) that rebuilds the run's models."""
    known = {f.name for f in dataclasses.fields(GANConfig)}
    return GANConfig(**{k: v for k, v in meta["config"].items() if k in known})


def load_latest_run(workdir: str | os.PathLike) -> tuple[GANState, dict[str, Any]]:
    """The latest checkpointed state of the run in `workdir` and its meta (see `run_meta`).

    Raises InputError if there is no checkpoint or it cannot be read.
    """
    workdir = Path(workdir)
    if not (workdir / "checkpoints").is_dir():
        raise InputError(f"no checkpoints in {str(workdir)!r}; train first with --workdir {workdir}")
    with Checkpoints(workdir, create=False) as checkpoints:
        step = checkpoints.latest_step()
        if step is None:
            raise InputError(f"no checkpoints in {str(workdir)!r}; train first with --workdir {workdir}")
        meta = checkpoints.read_meta(step)
        return checkpoints.restore(step, config_from_meta(meta)), meta


def load_latest(workdir: str | os.PathLike) -> GANState:
    """The latest checkpointed state of the run in `workdir` (InputError if there is none)."""
    return load_latest_run(workdir)[0]
