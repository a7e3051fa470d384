"""python -m jaxart.gan [train] [options] | sample --workdir W --num N --out FILE [--digit C]
| eval --workdir W [--num N] [--data D] | judge [--data D] [--retrain]

With no subcommand, `train` runs: `python -m jaxart.gan` alone trains the
seed's GAN on MNIST into runs/gan-mnist (and resumes it when run again).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from jaxart import cli, distributed, options
from jaxart.cache import COMPILE_CACHE_ENV
from jaxart.gan.config import GANConfig, RunConfig
from jaxart.gan.models import MODELS
from jaxart.gan.workdir import EVAL_FIGURE, EVAL_FILE

_SAMPLE_SUFFIXES = (".npy", ".png")


def parser() -> cli.ArgumentParser:
    top = cli.ArgumentParser(
        prog="python -m jaxart.gan",
        description="The seed's MNIST GAN in JAX. With no subcommand, 'train' runs with the options given.",
    )
    commands = top.add_subparsers(dest="command", required=True, parser_class=cli.ArgumentParser)
    train = commands.add_parser(
        "train",
        help="train (or resume) a GAN in --workdir; the default",
        description="Trains the seed's MNIST GAN, resuming from the latest checkpoint in --workdir. "
        "The model options must match the checkpoint's; the run options may change between runs.",
    )
    cli.add_config_arguments(
        train.add_argument_group("model and optimisation (fixed by the first checkpoint)"),
        GANConfig,
        choices={"model": list(MODELS)},
    )
    cli.add_config_arguments(train.add_argument_group("run"), RunConfig)
    cli.add_process_arguments(train.add_argument_group("processes (jax.distributed; see README, Scaling out)"))
    sample = commands.add_parser(
        "sample",
        help="write generated images from the latest checkpoint",
        description="Writes N generated images from the latest checkpoint in --workdir: "
        ".npy (float32, (N, 28, 28), values in [0, 1]) or a .png grid.",
    )
    sample.add_argument("--workdir", default=RunConfig.workdir, help="a training run's folder")
    sample.add_argument("--num", type=options.positive_int, default=64, help="how many images")
    sample.add_argument("--out", required=True, help="output file, .npy or .png")
    sample.add_argument("--seed", type=options.non_negative_int, default=0, help="seed of the latent noise")
    sample.add_argument("--run", type=options.non_negative_int, help="of a --runs workdir: which run (0, 1, ...)")
    sample.add_argument(
        "--digit",
        "--class",
        dest="digit",
        type=_class_text,
        help="of a --conditional run: the class to draw, 0..9 or its name (fashion-mnist: T-shirt, ..., Boot); "
        "default: each class in turn, a column per class in a 10-column grid",
    )
    _add_raw_argument(sample)
    evaluate = commands.add_parser(
        "eval",
        help="measure the latest checkpoint with the judge of its data",
        description=f"Measures N images from the latest checkpoint in --workdir against the test set with the "
        f"classifier ('judge') of the run's data (shipped for MNIST and Fashion-MNIST, else trained and cached "
        f"on first use): FCD, Inception-style score, class coverage and k-NN precision/recall. Appends the "
        f"record to {EVAL_FILE} in the workdir and draws {EVAL_FIGURE} (a sample grid beside the class histogram).",
    )
    evaluate.add_argument("--workdir", default=RunConfig.workdir, help="a training run's folder")
    evaluate.add_argument("--num", type=options.positive_int, default=10_000, help="how many generated images")
    evaluate.add_argument(
        "--data",
        help="the data the samples are judged against: 'mnist', 'fashion-mnist' or a folder of IDX files "
        "(default: the run's own, as its checkpoint records it)",
    )
    evaluate.add_argument(
        "--precision-recall",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="measure k-NN precision and recall (their cost grows with the square of --num)",
    )
    evaluate.add_argument(
        "--seed",
        type=options.non_negative_int,
        default=0,
        help="seed of the latent noise (training's --eval-every uses 0)",
    )
    _add_raw_argument(evaluate)
    judge = commands.add_parser(
        "judge",
        help="train (or load) and cache the classifier that judges GAN samples",
        description="Trains the judge of --data (or loads it when a valid one is cached or shipped) and caches it.",
    )
    judge.add_argument("--data", default="mnist", help="'mnist', 'fashion-mnist' or a folder of IDX files")
    judge.add_argument("--retrain", action="store_true", help="train even when a valid cache exists")
    for command in (train, sample, evaluate, judge):
        command.add_argument(
            "--compile-cache",
            action=argparse.BooleanOptionalAction,
            default=True,
            help=f"keep XLA's compiled programs in the user's cache folder for the next run "
            f"(--no-compile-cache is {COMPILE_CACHE_ENV}=0)",
        )
    return top


def _class_text(text: str) -> str:
    """`--digit`'s value before the run says which classes it has: a number or a name, not blank."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a class: 0..9, or a class name of the run's data")
    return text


def _add_raw_argument(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--raw",
        action="store_true",
        help="draw from the trained generator, not its moving average (the default where the run kept one)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv.insert(0, "train")
    args = parser().parse_args(argv)
    if not args.compile_cache:
        os.environ[COMPILE_CACHE_ENV] = "0"
    cli.prepare_backend()
    if args.command == "train":
        from jaxart.gan.loop import summary, train

        cli.join_processes(args)
        run = cli.config_from_args(RunConfig, args)
        start = time.perf_counter()
        train(cli.config_from_args(GANConfig, args), run)
        if distributed.is_writer():
            print(summary(run, time.perf_counter() - start))
    elif args.command == "sample":
        _write_samples(_run_workdir(args.workdir, args.run), args.num, args.out, args.seed, args.raw, args.digit)
    elif args.command == "judge":
        print(_train_judge(args.data, args.retrain))
    else:
        runs = _run_workdirs(args.workdir)
        if runs and not (Path(args.workdir) / "checkpoints").is_dir():
            print(_write_run_evaluations(runs, args.num, args.precision_recall, args.seed, args.raw, args.data))
        else:
            print(_write_evaluation(args.workdir, args.num, args.precision_recall, args.seed, args.raw, args.data))
    return 0


def _train_judge(source: str, retrain: bool) -> str:
    """Loads, or trains and caches, the judge of `source`; returns a line about it."""
    from jaxart.gan.judge import load_or_train_judge

    judge = load_or_train_judge(source, retrain=retrain)
    return f"{source} judge: test accuracy {judge.test_accuracy:.2%}, trained on data {judge.train_checksum[:12]}"


def _generator_images(state, num: int, seed: int, raw: bool, label: int | None = None):
    """`num` images of a checkpointed generator (its moving average unless `raw`; of a conditional
    one, of class `label` or each class in turn), float32 (n, 28, 28) batch by batch, drawn as
    evaluation draws them (`sample --seed S` writes what `eval --seed S` judges) in calls of one
    size, so the device's memory does not grow with `num`; InputError if they are not finite."""
    import jax
    import numpy as np

    from jaxart.errors import InputError
    from jaxart.gan.evaluate import EvalConfig, sample_batches
    from jaxart.gan.train import sample_state

    def sample_fn(key, n):
        return sample_state(state, key, n, raw, None if label is None else np.full(n, label, np.int32))

    for images in sample_batches(sample_fn, jax.random.key(seed), num, min(num, EvalConfig.sample_batch_size)):
        if not np.isfinite(images).all():
            raise InputError(
                f"the generator at step {int(state.step)} produces NaN or infinity; use an earlier checkpoint"
            )
        yield images.astype(np.float32, copy=False)


def _write_samples(workdir: str, num: int, out: str, seed: int, raw: bool, digit: str | None = None) -> None:
    """N images from the latest checkpoint in `workdir` to `out` (.npy or .png grid), of class
    `digit` where given; refuses, before any work, more than `out` can hold; RunError, with
    nothing written, when the file system refuses the write (a full disk)."""
    import numpy as np

    from jaxart.errors import RunError, reason
    from jaxart.files import atomic_path, check_output_path
    from jaxart.gan.checkpoint import load_latest_run
    from jaxart.gan.evaluate import check_sample_output, npy_header
    from jaxart.images import make_grid, save_image

    path = check_output_path(out, _SAMPLE_SUFFIXES)
    check_sample_output(path, num)
    state, meta = load_latest_run(workdir)
    label = None if digit is None else _class_index(digit, state, meta["data"], workdir)
    batches = _generator_images(state, num, seed, raw, label)
    try:
        if path.suffix.lower() == ".npy":
            # The header, then each batch as it is drawn: the host holds one batch at a time.
            with atomic_path(path) as tmp, tmp.open("wb") as f:
                f.write(npy_header(num))
                for images in batches:
                    f.write(images.tobytes())
        else:
            save_image(path, make_grid(np.concatenate(list(batches))))
    except OSError as e:
        raise RunError(f"could not write {str(path)!r} ({e.strerror or reason(e)}); nothing was written") from e


def _class_index(digit: str, state, data: str, workdir: str) -> int:
    """`--digit`'s class: 0..9 or a class name of the run's data (any case); InputError for
    another value, or for a run that is not conditional."""
    from jaxart.errors import InputError
    from jaxart.gan.evaluate import class_names, has_class_names

    if not state.config.conditional:
        raise InputError(
            f"--digit needs a class-conditional run (train --conditional); --workdir {workdir!r} holds an "
            f"unconditional one"
        )
    names = class_names(data)
    for index, name in enumerate(names):
        if digit.strip().casefold() in (str(index), name.casefold()):
            return index
    shown = f"0..9 or one of {', '.join(names)}" if has_class_names(data) else "0..9"
    raise InputError(f"--digit {digit!r}: the run's data {data!r} has classes {shown}")


def _run_workdirs(workdir: str) -> list[Path]:
    """The run folders of a `train --runs R` workdir (none for a single run's)."""
    return sorted(p for p in Path(workdir).glob("run-[0-9][0-9][0-9]") if p.is_dir())


def _run_workdir(workdir: str, run: int | None) -> str:
    """`sample --run r`'s folder; InputError for a run that is not there or a missing --run."""
    from jaxart.errors import InputError
    from jaxart.gan.loop import RUN_FOLDER

    runs = _run_workdirs(workdir)
    if run is None:
        if runs and not (Path(workdir) / "checkpoints").is_dir():
            raise InputError(f"--workdir {workdir!r} holds {len(runs)} runs (train --runs); choose one with --run R")
        return workdir
    folder = Path(workdir) / RUN_FOLDER.format(run)
    if not folder.is_dir():
        raise InputError(f"--workdir {workdir!r} has no run {run} ({len(runs)} runs: --run 0 to {len(runs) - 1})")
    return str(folder)


def _write_run_evaluations(
    workdirs: list[Path], num: int, precision_recall: bool, seed: int, raw: bool, source: str | None = None
) -> str:
    """Evaluates every run of a `--runs` workdir (each into its own eval.jsonl and eval.png) against
    `source` (default: the runs' data); returns a line per run and the mean and spread of FCD."""
    import dataclasses

    import numpy as np

    from jaxart.gan.checkpoint import load_latest_run
    from jaxart.gan.evaluate import eval_config, evaluate_state, load_judge_and_reference, summary
    from jaxart.gan.workdir import check_workdir

    config = dataclasses.replace(eval_config(num, precision_recall, what="--num"), seed=seed, raw=raw)
    runs = [load_latest_run(w) for w in workdirs]
    check_workdir(workdirs[0].parent)
    judge, reference = load_judge_and_reference(source or runs[0][1]["data"])
    lines, fcd = [], []
    for w, (state, _) in zip(workdirs, runs):
        record = evaluate_state(state, w, judge, reference, config)
        fcd.append(record["fcd"])
        lines.append(f"{w.name} step {record['step']}: {summary(record)}")
    spread = f", sd {np.std(fcd, ddof=1):.2f}" if len(fcd) > 1 else ""
    lines.append(
        f"FCD over {len(fcd)} runs: mean {np.mean(fcd):.2f}{spread}, min {min(fcd):.2f}, max {max(fcd):.2f} "
        f"({num} samples each)"
    )
    return "\n".join(lines)


def _write_evaluation(
    workdir: str, num: int, precision_recall: bool, seed: int, raw: bool, source: str | None = None
) -> str:
    """Evaluates the latest checkpoint in `workdir` against `source` (default: the run's data) into
    its eval.jsonl and eval.png; returns a summary line."""
    import dataclasses

    from jaxart.gan.checkpoint import load_latest_run
    from jaxart.gan.evaluate import eval_config, evaluate_state, load_judge_and_reference, summary
    from jaxart.gan.workdir import check_workdir

    config = dataclasses.replace(eval_config(num, precision_recall, what="--num"), seed=seed, raw=raw)
    state, meta = load_latest_run(workdir)
    check_workdir(workdir)
    judge, reference = load_judge_and_reference(source or meta["data"])
    record = evaluate_state(state, workdir, judge, reference, config)
    return f"step {record['step']}: {summary(record)} ({num} samples; {Path(workdir) / EVAL_FILE})"


if __name__ == "__main__":
    cli.main(main)
