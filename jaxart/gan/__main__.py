"""python -m jaxart.gan [train] [options] | sample --workdir W --num N --out FILE | eval --workdir W [--num N]

With no subcommand, `train` runs: `python -m jaxart.gan` alone trains the
seed's GAN on MNIST into runs/gan-mnist (and resumes it when run again).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np

from jaxart import cli
from jaxart.files import atomic_path, check_output_path
from jaxart.gan import config as config_lib
from jaxart.gan.checkpoint import load_latest, load_latest_run
from jaxart.gan.evaluate import FIGURE_FILE, REPORT_FILE, eval_config, evaluate_state, load_judge_and_reference, summary
from jaxart.gan.loop import train
from jaxart.gan.models import MODELS
from jaxart.gan.train import sample
from jaxart.images import make_grid, save_image

SAMPLE_SUFFIXES = (".npy", ".png")


def parser() -> cli.ArgumentParser:
    top = cli.ArgumentParser(
        prog="python -m jaxart.gan",
        description="The seed's MNIST GAN in JAX. With no subcommand, 'train' runs with the options given.",
    )
    commands = top.add_subparsers(dest="command", required=True, parser_class=cli.ArgumentParser)
    train = commands.add_parser(
        "train",
        help="train (or resume) a GAN in --workdir; the default",
        description="Trains the seed's MNIST GAN, resuming from the latest checkpoint in --workdir.",
    )
    cli.add_config_arguments(train, config_lib.GANConfig, choices={"model": list(MODELS)})
    sample = commands.add_parser(
        "sample",
        help="write generated images from the latest checkpoint",
        description="Writes N generated images from the latest checkpoint in --workdir: "
        ".npy (float32, (N, 28, 28), values in [0, 1]) or a .png grid.",
    )
    sample.add_argument("--workdir", default=config_lib.GANConfig.workdir, help="a training run's folder")
    sample.add_argument("--num", type=cli.positive_int, default=64, help="how many images")
    sample.add_argument("--out", required=True, help="output file, .npy or .png")
    sample.add_argument("--seed", type=cli.non_negative_int, default=0, help="seed of the latent noise")
    evaluate = commands.add_parser(
        "eval",
        help="measure the latest checkpoint with the judge of its data",
        description=f"Measures N images from the latest checkpoint in --workdir against the test set with the "
        f"classifier ('judge') of the run's data (trained and cached in weights/ on first use): FCD, "
        f"Inception-style score, class coverage and k-NN precision/recall. Appends the record to "
        f"{REPORT_FILE} in the workdir and draws {FIGURE_FILE} (a sample grid beside the class histogram).",
    )
    evaluate.add_argument("--workdir", default=config_lib.GANConfig.workdir, help="a training run's folder")
    evaluate.add_argument("--num", type=cli.positive_int, default=10_000, help="how many generated images")
    evaluate.add_argument(
        "--precision-recall",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="measure k-NN precision and recall (their cost grows with the square of --num)",
    )
    evaluate.add_argument(
        "--seed", type=cli.non_negative_int, default=0, help="seed of the latent noise (training's --eval-every uses 0)"
    )
    return top


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv.insert(0, "train")
    args = parser().parse_args(argv)
    if args.command == "train":
        train(cli.config_from_args(config_lib.GANConfig, args))
    elif args.command == "sample":
        write_samples(args.workdir, args.num, args.out, args.seed)
    else:
        print(write_evaluation(args.workdir, args.num, args.precision_recall, args.seed))
    return 0


def write_samples(workdir: str, num: int, out: str, seed: int) -> None:
    """N images from the latest checkpoint in `workdir` to `out` (.npy or .png grid)."""
    path = check_output_path(out, SAMPLE_SUFFIXES)
    state = load_latest(workdir)
    images = np.asarray(sample(state.g_params, jax.random.key(seed), num, state.config, state.g_collections))
    if path.suffix.lower() == ".npy":
        with atomic_path(path) as tmp, tmp.open("wb") as f:
            np.save(f, images.astype(np.float32))
    else:
        save_image(path, make_grid(images))


def write_evaluation(workdir: str, num: int, precision_recall: bool, seed: int) -> str:
    """Evaluates the latest checkpoint in `workdir` into its eval.jsonl and eval.png; returns a summary line."""
    config = dataclasses.replace(eval_config(num, precision_recall), seed=seed)
    state, meta = load_latest_run(workdir)
    judge, reference = load_judge_and_reference(meta["data"])
    record = evaluate_state(state, workdir, judge, reference, config)
    return f"step {record['step']}: {summary(record)} ({num} samples; {Path(workdir) / REPORT_FILE})"


if __name__ == "__main__":
    sys.exit(cli.run(main))
