"""Where a warm start's seconds go: issue 21's two one-step commands, each phase in wall seconds.

    python -m benchmarks.starts [--data mnist] [--repeats 5]

Each command runs once to fill the caches (compile cache, converted VGG19), then --repeats
times warm, each in a fresh process, the two in turns. A run's wall clock, measured here, is
split into:
- python start: the interpreter's own, to this module's standard-library imports;
- imports: jax and the command's module;
- trace, lower, load: what JAX's monitoring events time inside every `jit` call that misses
  its in-memory cache: tracing to a jaxpr, lowering that to an MLIR module, and getting the
  executable (on a compile-cache hit: hashing the module, reading the entry, loading it);
- plot: the loss plot (importing matplotlib, drawing, writing the PNG);
- rest: reading inputs, computing, writing the other outputs, everything else;
- exit: from the command's end to the process's.
Medians of the warm runs. No profiler runs: these are wall seconds, not a profiler's shares.
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

_STARTED = time.time()  # before any heavy import; time.time(): the parent compares it with its own
ROOT = Path(__file__).resolve().parent.parent
# JAX's own duration events (jax._src.dispatch) for the three stages of a jit call's miss.
JIT_EVENTS = {
    "trace": "/jax/core/compile/jaxpr_trace_duration",
    "lower": "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "load": "/jax/core/compile/backend_compile_duration",
}
PHASES = ("python start", "imports", "trace", "lower", "load", "plot", "rest", "exit")


def commands(data: str, scratch: Path) -> dict[str, list[str]]:
    """The issue's commands (a module, then its arguments), each writing into scratch/<name>."""
    return {
        "gan": ["jaxart.gan", "train", "--max-steps", "1", "--data", data, "--workdir", str(scratch / "gan" / "w")],
        "style": ["jaxart.style", "--steps", "1", "--max-size", "128", "--output", str(scratch / "style" / "o.png")],
    }


def _timed(fn: Callable, seconds: list[float]) -> Callable:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            seconds.append(time.perf_counter() - start)

    return wrapper


def child(report: str, module: str, argv: list[str]) -> None:
    """Runs `python -m module argv` in this process, as its `__main__` does (`jaxart.cli.main`,
    which ends the process), and writes the seconds of each phase to `report` (JSON) as the
    exit begins."""
    import jax

    main = importlib.import_module(f"{module}.__main__").main
    imported = time.time()
    jit: dict[str, float] = defaultdict(float)
    names = {event: phase for phase, event in JIT_EVENTS.items()}

    def listen(event: str, duration_secs: float, **_: str | int) -> None:
        if event in names:
            jit[names[event]] += duration_secs

    jax.monitoring.register_event_duration_secs_listener(listen)
    import jaxart.cli

    # The commands import jaxart.plots (matplotlib) only to draw: imported here, timed alike.
    start = time.perf_counter()
    import jaxart.plots

    plot = [time.perf_counter() - start]
    jaxart.plots.save_loss_curves = _timed(jaxart.plots.save_loss_curves, plot)

    def write() -> None:
        ended = time.time()
        phases = {"imports": imported - _STARTED, **jit, "plot": sum(plot)}
        phases["rest"] = ended - _STARTED - sum(phases.values())
        Path(report).write_text(json.dumps({"started": _STARTED, "ended": ended, **phases}))

    atexit.register(write)
    sys.argv = [module, *argv]
    jaxart.cli.main(main)


def one_run(argv: list[str], env: dict[str, str]) -> dict[str, float]:
    """One fresh process: its wall clock and the child's phases."""
    with tempfile.NamedTemporaryFile(suffix=".json") as report:
        start = time.time()
        subprocess.run(
            [sys.executable, "-m", "benchmarks.starts", "--child", report.name, *argv],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
        )
        end = time.time()
        phases = json.loads(Path(report.name).read_text())
    phases["python start"] = phases.pop("started") - start
    phases["exit"] = end - phases.pop("ended")
    return {"wall": end - start, **phases}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="mnist", help="the GAN's data set (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=5, help="warm runs of each command (default: %(default)s)")
    parser.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        report, module, *argv = args.child
        child(report, module, argv)
        return

    from benchmarks.common import load_average, machine

    print(machine())
    print(f"{load_average()} at the start")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory() as scratch:
        cases = commands(args.data, Path(scratch))
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in cases}
        for turn in range(args.repeats + 1):
            for name, argv in cases.items():
                shutil.rmtree(Path(scratch) / name, ignore_errors=True)  # each run writes into an empty folder
                (Path(scratch) / name).mkdir()
                phases = one_run(argv, env)
                if turn:  # the first fills the caches
                    runs[name].append(phases)
    print(f"{load_average()} at the end; medians of {args.repeats} warm runs, seconds\n")
    print(f"{'phase':12s}" + "".join(f"{name:>10s}" for name in runs))
    for phase in ("wall", *PHASES):
        print(f"{phase:12s}" + "".join(f"{statistics.median(r[phase] for r in rs):10.2f}" for rs in runs.values()))


if __name__ == "__main__":
    main()
