"""GAN quality: the seed's MLP GAN in PyTorch and in jaxart, and jaxart's DCGAN, scored by one judge.

    python -m benchmarks.gan_quality [--epochs 5] [--dcgan-epochs 2] [--num 10000] [--workdir runs/gan-quality]

Trains each for the given epochs on MNIST (the jaxart runs through `jaxart.gan.loop.train`
into <workdir>/{mlp,dcgan}, which must not exist yet; the seed's PyTorch loop with torch
limited to --torch-threads), then measures --num samples of each, and as a ceiling --num
MNIST training images, against the test set with the MNIST judge (`jaxart.gan.evaluate`).
Prints a Markdown table with the training times and the projected time of 100 epochs.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import torch

from benchmarks.common import machine
from benchmarks.seed_gan import SeedGAN
from jaxart import data
from jaxart.gan import GANConfig
from jaxart.gan.evaluate import (
    eval_config,
    evaluate_generator,
    evaluate_samples,
    evaluate_state,
    load_judge_and_reference,
)
from jaxart.gan.judge import to_float
from jaxart.gan.loop import train

FULL_EPOCHS = 100


def row(name: str, record: dict, epochs: int = 0, steps: int = 0, seconds: float = 0.0) -> str:
    """A table row; a model's training columns, or dashes for the real images."""
    training = ["-"] * 5
    if epochs:
        full = seconds * FULL_EPOCHS / epochs / 60
        training = [str(epochs), str(steps), f"{seconds / 60:.1f} min", f"{steps / seconds:.0f}", f"{full:.0f} min"]
    return (
        f"| {name} | {' | '.join(training)} | {record['fcd']:.2f} | {record['inception_score']:.2f} | {record['kl_to_uniform']:.3f} | "
        f"{len(record['missing_classes'])} | {record['precision']:.3f} | {record['recall']:.3f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5, help="epochs of both MLP GANs")
    parser.add_argument("--dcgan-epochs", type=int, default=2, help="epochs of the DCGAN")
    parser.add_argument("--num", type=int, default=10_000, help="samples scored per model")
    parser.add_argument("--workdir", default="runs/gan-quality", help="folder of the runs and their eval.jsonl")
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="torch threads for the seed (its default OpenMP threads crawl on a shared 2-core CPU)",
    )
    args = parser.parse_args()

    workdir = Path(args.workdir)
    if workdir.exists():
        parser.error(f"--workdir {workdir} exists; the timings need fresh runs")
    images = data.load("mnist").images
    steps_per_epoch = len(images) // 32
    config = eval_config(args.num)
    judge, reference = load_judge_and_reference("mnist")
    print(machine())
    real = evaluate_samples(to_float(images[: args.num]), judge, reference, config)
    rows = [row("MNIST training images (ceiling)", real)]
    print(rows[-1], flush=True)

    torch.set_num_threads(args.torch_threads)
    seed = SeedGAN(images, seed=0)
    start = time.perf_counter()
    steps = seed.train(args.epochs * steps_per_epoch)
    seconds = time.perf_counter() - start
    (workdir / "seed-torch").mkdir(parents=True, exist_ok=True)
    record = evaluate_generator(
        lambda key, n: seed.sample(n), jax.random.key(0), workdir / "seed-torch", judge, reference, config, step=steps
    )
    rows.append(row(f"seed MLP, PyTorch ({args.torch_threads} thread)", record, args.epochs, steps, seconds))
    print(rows[-1], flush=True)

    for name, model, epochs in (
        ("seed MLP, jaxart", "mlp", args.epochs),
        ("DCGAN, jaxart", "dcgan", args.dcgan_epochs),
    ):
        run = GANConfig(workdir=str(workdir / model), model=model, epochs=epochs, checkpoint_every=steps_per_epoch)
        start = time.perf_counter()
        state = train(run)  # includes compilation, per-epoch previews and checkpoints
        seconds = time.perf_counter() - start
        record = evaluate_state(state, run.workdir, judge, reference, config)
        rows.append(row(name, record, epochs, int(state.step), seconds))
        print(rows[-1], flush=True)

    print(
        f"\n{args.num} samples each vs the {len(reference.features)} MNIST test images; judge test accuracy "
        f"{judge.test_accuracy:.2%}\n"
    )
    print(
        "| model | epochs | steps | train time | steps/s | 100 epochs (projected) | FCD | score | KL to uniform "
        "| missing classes | precision | recall |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
