"""The Python side of benchmarks/device_check.sh (the one prepared accelerator check, issue 21).

    python -m benchmarks.device_check machine --json F      the GPU, jax and its devices, torch
    python -m benchmarks.device_check time --json F [--repeats R] -- COMMAND...
    python -m benchmarks.device_check resume --json F --workdir DIR [--steps N]
    python -m benchmarks.device_check report --work DIR --out F [--quick] [--summary]

time: wall seconds of COMMAND, R times in turn ("{run}" in it becomes the run's index, so each
  run can have a fresh workdir): the first fills the compile and weights caches, so the best is
  what a second run of the same command costs. Rewritten after each run, so a part stopped by
  its timeout still reports the runs it finished.
resume: the DCGAN's resume, bit for bit: `python -m jaxart.gan train --model dcgan` for 2N steps
  in one workdir, and for N then resumed to 2N in another; the two checkpoints' parameters,
  Adam states and batch statistics compared as bytes (tests/test_dcgan.py's check, at full size
  on the full data set); exit status 1 where they differ.
report: one JSON of the machine, each part's record (the driver's parts.tsv: exit status, wall
  seconds, timed out), the JSON each part wrote (WORK/NAME.json; the tests' JUnit XML), a few
  headline numbers per part, and the two goals against their targets. It reads files only (no
  JAX), so the driver rewrites it after every part.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

# The goals: (part, what, target seconds).
GOALS = [
    ("style_goal", "400 px, 2,000 Adam steps (the seed's job), end to end", 5.0),
    ("gan_goal", "python -m jaxart.gan train --epochs 100 on MNIST, end to end", 15.0),
]


def write(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=1) + "\n", encoding="utf-8")


def machine(args: argparse.Namespace) -> None:
    import jax
    import torch

    smi = None
    if shutil.which("nvidia-smi"):
        query = ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"]
        smi = subprocess.run(query, capture_output=True, text=True).stdout.strip()
    write(
        args.json,
        dict(
            nvidia_smi=smi,
            python=sys.version.split()[0],
            jax=jax.__version__,
            backend=jax.default_backend(),
            devices=[f"{d.platform}:{d.device_kind}" for d in jax.devices()],
            torch=torch.__version__,
            torch_cuda=torch.cuda.is_available(),
            cpus=os.cpu_count(),
        ),
    )


def time_command(args: argparse.Namespace) -> None:
    record: dict[str, Any] = dict(command=shlex.join(args.command), runs=[])
    for run in range(args.repeats):
        start = time.perf_counter()
        status = subprocess.run([a.replace("{run}", str(run)) for a in args.command]).returncode
        record["runs"].append(dict(seconds=time.perf_counter() - start, exit_status=status))
        write(args.json, record)
        if status:
            sys.exit(status)


def resume(args: argparse.Namespace) -> None:
    import jax
    import numpy as np

    from jaxart.gan.checkpoint import load_latest

    def train(workdir: Path, steps: int) -> float:
        argv = [sys.executable, "-m", "jaxart.gan", "train", "--model", "dcgan", "--data", args.data]
        start = time.perf_counter()
        subprocess.run([*argv, "--workdir", str(workdir), "--max-steps", str(steps)], check=True)
        return time.perf_counter() - start

    n, straight, resumed = args.steps, args.workdir / "straight", args.workdir / "resumed"
    seconds = [train(straight, 2 * n), train(resumed, n), train(resumed, 2 * n)]
    a, b = load_latest(straight), load_latest(resumed)
    leaves = jax.tree.leaves(a), jax.tree.leaves(b)
    pairs = [(np.asarray(x), np.asarray(y)) for x, y in zip(*leaves)]
    differing = sum(x.shape != y.shape or x.tobytes() != y.tobytes() for x, y in pairs)
    floats = [(x, y) for x, y in pairs if x.shape == y.shape and np.issubdtype(x.dtype, np.floating)]
    worst = max((float(np.max(np.abs(x.astype(np.float64) - y), initial=0)) for x, y in floats), default=0.0)
    equal = len(leaves[0]) == len(leaves[1]) and int(a.step) == int(b.step) == 2 * n and not differing
    record = dict(steps=[n, 2 * n], equal=equal, leaves=len(pairs), differing_leaves=differing)
    write(args.json, record | dict(max_abs_difference=worst, seconds_straight_first_resumed=seconds))
    print(f"DCGAN {2 * n} steps straight vs {n} + resumed to {2 * n}: {'bit-exact' if equal else 'DIFFERENT'}")
    sys.exit(0 if equal else 1)


def junit(path: Path) -> dict[str, Any]:
    suite = next(ET.parse(path).getroot().iter("testsuite"))  # pytest's one suite, inside <testsuites>
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    failed = [
        f"{case.get('classname')}::{case.get('name')}"
        for case in suite.iter("testcase")
        if case.find("failure") is not None or case.find("error") is not None
    ]
    return counts | dict(seconds=float(suite.get("time", 0)), failed=failed)


# A few numbers of each part's JSON, for reading the report at a glance (None: not measured).
HEADLINES: dict[str, Callable[[dict], dict]] = {
    "style_speed": lambda r: dict(
        engine_x_seed={x["size"] + " " + x["loop"]: x.get("x_seed") for x in r.get("engine", [])},
        command_vs_engine={x["size"]: x["ratio"] for x in r.get("command_vs_engine", [])},
    ),
    "gan_speed": lambda r: dict(
        x_seed={x["loop"]: x["x_seed"] for x in r.get("loops", [])},
        command_vs_engine=r.get("command", {}).get("command_vs_engine"),
        start_s=r.get("start"),
    ),
    "tests": lambda r: {k: r.get(k) for k in ("tests", "failures", "errors", "skipped")},
    "dcgan_resume": lambda r: dict(equal=r.get("equal"), differing_leaves=r.get("differing_leaves")),
    "gan_runs": lambda r: {f"{x['what']}, runs {x['runs']}": x["gan_steps_s"] for x in r.get("rows", [])},
    "fast_speed": lambda r: {f"{x['network']} {x['size']} {x['engine']}": x["ms/img"] for x in r.get("single", [])},
}


def report(args: argparse.Namespace) -> None:
    machine_file = args.work / "machine.json"
    parts = []
    for line in (args.work / "parts.tsv").read_text().splitlines():
        name, status, start, end, limit, command = line.split("\t", 5)
        part: dict[str, Any] = dict(name=name, command=command, exit_status=int(status))
        part |= dict(wall_s=round(float(end) - float(start), 2), timeout_s=int(limit))
        part["timed_out"] = part["exit_status"] in (124, 137)  # timeout's status; 137: killed after the grace
        result = args.work / f"{name}.json"
        xml = args.work / f"{name}.xml"
        results = json.loads(result.read_text()) if result.exists() else junit(xml) if xml.exists() else None
        if results is not None and name in HEADLINES:
            part["headline"] = HEADLINES[name](results)
        parts.append(part | dict(results=results))
    goals = []
    for name, what, target in GOALS:
        timed = next((p["results"] or {} for p in parts if p["name"] == name), {})
        done = [r["seconds"] for r in timed.get("runs", []) if r["exit_status"] == 0]
        measured = round(min(done), 2) if done else None
        # A quick run's commands are shrunk: its times say nothing of the targets.
        verdict = None if args.quick or measured is None else measured < target
        goal = dict(goal=what, command=timed.get("command"), target_s=target, measured_s=measured, runs_s=done)
        goals.append(goal | dict(passed=verdict))
    machine_info = json.loads(machine_file.read_text()) if machine_file.exists() else None
    out = dict(quick=args.quick, platforms=os.environ.get("JAX_PLATFORMS"), machine=machine_info)
    write(args.out, out | dict(goals=goals, parts=parts))
    if args.summary:
        for goal in goals:
            print(f"goal: {goal['goal']}: {goal['measured_s']} s (target {goal['target_s']} s): {goal['passed']}")
        for part in parts:
            state = "timed out" if part["timed_out"] else f"exit {part['exit_status']}"
            print(f"{part['name']}: {state}, {part['wall_s']} s of {part['timeout_s']}; {part.get('headline')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    sub.add_parser("machine").add_argument("--json", type=Path, required=True)
    timing = sub.add_parser("time")
    timing.add_argument("--json", type=Path, required=True)
    timing.add_argument("--repeats", type=int, default=2)
    timing.add_argument("command", nargs="+")
    check = sub.add_parser("resume")
    check.add_argument("--json", type=Path, required=True)
    check.add_argument("--workdir", type=Path, required=True)
    check.add_argument("--steps", type=int, default=100, help="N: the first run stops there, both end at 2N")
    check.add_argument("--data", default="mnist")
    assemble = sub.add_parser("report")
    assemble.add_argument("--work", type=Path, required=True)
    assemble.add_argument("--out", type=Path, required=True)
    assemble.add_argument("--quick", action="store_true")
    assemble.add_argument("--summary", action="store_true", help="also print the goals and each part's headline")
    args = parser.parse_args()
    {"machine": machine, "time": time_command, "resume": resume, "report": report}[args.what](args)


if __name__ == "__main__":
    main()
