"""GAN quality over seeds: the seed's MLP GAN in PyTorch and in jaxart, and jaxart's DCGAN, by one judge.

    python -m benchmarks.gan_quality --models seed mlp dcgan --seeds 5 --epochs 5 20 --out runs/gan-quality.jsonl
    python -m benchmarks.gan_quality --out runs/gan-quality.jsonl --table     # the table of what is there
    python -m benchmarks.gan_quality --models dcgan --together 1 --epochs 5 --out runs/gan-quality.jsonl
    python -m benchmarks.gan_quality --models mlp --conditional --epochs 20 --out runs/gan-quality.jsonl

One run per model is noise: GAN quality moves a lot from seed to seed. Each model is trained
with seeds F .. F+S-1 (--first-seed, --seeds; the PyTorch seed one seed after another,
`torch.manual_seed(s)`; jaxart's S runs at once, vmapped in one program by `jaxart.gan.parallel`,
each the run of its seed up to float32 rounding), and each run is scored after every epoch count of --epochs with the MNIST judge on --num
samples against the test set. Each record is appended to --out as a JSON line, so models can be
run by separate commands; --table prints mean, sample standard deviation and range per model
and epoch count. With --conditional, jaxart's models are class-conditional, asked for each class
in turn, and also scored on the share of each class's samples the judge classifies as asked.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import jax
import numpy as np

from benchmarks.common import machine
from jaxart import backend, data, schedule
from jaxart.gan import GANConfig, parallel
from jaxart.gan.evaluate import asked_classes, eval_config, evaluate_samples, load_judge_and_reference, sample_images
from jaxart.gan.models import class_weight, hidden_dim, steps_per_call
from jaxart.gan.train import epoch_order, run_keys, sample_state

NAMES = {"seed": "seed MLP, PyTorch", "mlp": "seed MLP, jaxart", "dcgan": "DCGAN, jaxart"}
SCORES = ("fcd", "inception_score", "kl_to_uniform", "recall", "precision")


def score(images: np.ndarray, judge, reference, config, labels: np.ndarray | None = None) -> dict:
    result = evaluate_samples(images, judge, reference, config, labels)
    asked = {k: result[k] for k in ("class_accuracy", "min_class_accuracy") if k in result}
    return {k: result[k] for k in SCORES} | {"missing": len(result["missing_classes"])} | asked


def train_seed(images, seeds, epochs, threads, judge, reference, config, emit) -> None:
    import torch

    from benchmarks.seed_gan import SeedGAN

    torch.set_num_threads(threads)
    steps_per_epoch = len(images) // 32
    for s in seeds:
        gan, done, start = SeedGAN(images, seed=s), 0, time.perf_counter()
        for e in epochs:
            done += gan.train(e * steps_per_epoch - done)
            seconds = time.perf_counter() - start
            torch.manual_seed(10_000 + s)  # the scoring noise, apart from training's stream
            sampled = np.concatenate([gan.sample(1000) for _ in range(-(-config.num_samples // 1000))])
            emit("seed", s, 1, e, done, seconds, score(sampled[: config.num_samples], judge, reference, config))


def train_jaxart(model, dataset, seeds, epochs, run: GANConfig, judge, reference, config, emit) -> None:
    """`seeds` (consecutive) as one vmapped program (`--runs len(seeds)`) on one device; each run
    scored twice, its trained generator and (with an `ema_decay`) its moving average. `run`: the
    runs' settings besides model and seed."""
    run = dataclasses.replace(run, model=model, seed=seeds[0])
    conditional = run.conditional
    images = dataset.images
    training = (images, dataset.labels) if conditional else images
    labels = asked_classes(config) if conditional else None
    configs = [run.run(r, len(seeds)) for r in range(len(seeds))]
    mesh = parallel.make_mesh(run.batch_size, devices=1, runs=len(seeds))
    state = parallel.init_runs(mesh, configs)
    keys = parallel.train_keys(mesh, configs)
    steps = parallel.compiled_steps(mesh, len(seeds), gather=False)
    per_epoch = len(images) // run.batch_size
    start = time.perf_counter()
    for epoch in range(max(epochs)):
        orders = np.stack(
            [np.asarray(epoch_order(run_keys(s).data, epoch, len(images), per_epoch, run.batch_size)) for s in seeds]
        )
        for done, length in schedule.calls(0, per_epoch, steps_per_call(run, None)):
            state, _ = steps(state, parallel.host_batches(mesh, training, orders, done, length, run.batch_size), keys)
        if epoch + 1 in epochs:
            runs = [parallel.local(one) for one in parallel.unstack(mesh, state)]
            seconds = time.perf_counter() - start
            for one, s in zip(runs, seeds):
                for generator in ("raw", "ema") if run.ema_decay else ("raw",):
                    fn = lambda key, n, one=one, raw=generator == "raw": sample_state(one, key, n, raw)  # noqa: E731
                    sampled = sample_images(
                        fn, jax.random.key(config.seed), config.num_samples, config.sample_batch_size
                    )
                    result = score(sampled, judge, reference, config, labels) | {"generator": generator}
                    if conditional:
                        result |= {"conditional": True, "class_weight": class_weight(run)}
                    result |= {"hidden_dim": hidden_dim(run)}
                    emit(model, s, len(seeds), epoch + 1, (epoch + 1) * per_epoch, seconds, result)
            start = time.perf_counter() - seconds  # scoring is not training time


def table(records: list[dict]) -> str:
    lines = [
        "| model | generator | epochs | seeds | FCD mean ± sd | FCD min-max | score mean ± sd | recall mean ± sd "
        "| missing classes (mean) | lowest class classified as asked, mean (worst run) | train time per run |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def kind(r: dict) -> tuple:
        # Records of versions before the moving average scored the trained generator, and before
        # the class loss trained their conditional models without one.
        ema = r.get("generator", "raw") == "ema"
        # ... and before the width was recorded, every model was 256 wide.
        width = r.get("hidden_dim", 256)
        return r["model"], r.get("conditional", False), r.get("class_weight", 0.0), width, ema, r["epochs"]

    kinds = sorted({kind(r) for r in records})
    for model in NAMES:
        for k in [k for k in kinds if k[0] == model]:
            _, conditional, class_weight, width, ema, e = k
            generator = "ema" if ema else "raw"
            variant = (
                (", conditional" if conditional else "")
                + (f", class weight {class_weight:g}" if class_weight else "")
                + (f", {width} wide" if width != 256 else "")
            )
            rs = [r for r in records if kind(r) == k]
            fcd, sc, rec = (np.array([r[k] for r in rs]) for k in ("fcd", "inception_score", "recall"))
            sd = lambda x, f: format(x.std(ddof=1), f) if len(x) > 1 else "-"  # noqa: E731
            per_run = np.mean([r["seconds"] / r["runs_together"] for r in rs]) / 60
            lowest = np.array([r.get("min_class_accuracy", np.nan) for r in rs])
            asked = "-" if np.isnan(lowest).all() else f"{lowest.mean():.1%} ({lowest.min():.1%})"
            lines.append(
                f"| {NAMES[model]}{variant} | {generator} | {e} | {len(rs)} "
                f"| {fcd.mean():.1f} ± {sd(fcd, '.1f')} "
                f"| {fcd.min():.1f}-{fcd.max():.1f} | {sc.mean():.2f} ± {sd(sc, '.2f')} "
                f"| {rec.mean():.3f} ± {sd(rec, '.3f')} "
                f"| {np.mean([r['missing'] for r in rs]):.1f} | {asked} | {per_run:.1f} min |"
            )
    return "\n".join(lines)


def main() -> None:
    backend.set_xla_flags()  # as the commands run, before the backend starts
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=list(NAMES), default=list(NAMES))
    parser.add_argument("--seeds", type=int, default=5, help="seeds per model: F .. F+S-1")
    parser.add_argument("--first-seed", type=int, default=0, help="F (to split the seeds over processes)")
    parser.add_argument("--epochs", type=int, nargs="+", default=[5, 20], help="score after these epoch counts")
    parser.add_argument("--dcgan-epochs", type=int, nargs="+", help="the DCGAN's epoch counts (default: --epochs)")
    parser.add_argument(
        "--together",
        type=int,
        default=0,
        help="jaxart runs per vmapped program (0: all seeds; vmapped convolutions are slow on CPU, so 1 for the DCGAN there)",
    )
    parser.add_argument("--num", type=int, default=10_000, help="samples scored per run")
    parser.add_argument(
        "--ema-decay",
        type=float,
        default=GANConfig.ema_decay,
        help="jaxart's runs keep this moving average of the generator and score it beside the trained one (0: none)",
    )
    parser.add_argument(
        "--conditional", action="store_true", help="jaxart's models class-conditional (train --conditional)"
    )
    parser.add_argument(
        "--class-weight",
        type=float,
        help="with --conditional, the class loss's weight (train --class-weight; default: the model's)",
    )
    parser.add_argument(
        "--hidden-dim", type=int, help="jaxart's hidden width (train --hidden-dim; default: the model's)"
    )
    parser.add_argument("--torch-threads", type=int, default=1, help="the PyTorch seed's threads")
    parser.add_argument("--data", default="mnist")
    parser.add_argument("--out", required=True, help="JSON-lines file the records are appended to")
    parser.add_argument("--table", action="store_true", help="print the table of --out and stop")
    args = parser.parse_args()

    out = Path(args.out)
    if args.table:
        print(table([json.loads(line) for line in out.read_text().splitlines() if line.strip()]))
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    dataset = data.load(args.data)
    config = eval_config(args.num)
    judge, reference = load_judge_and_reference("mnist")
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    print(machine(), flush=True)

    def emit(model, seed, runs_together, epochs, steps, seconds, result):
        record = dict(model=model, seed=seed, epochs=epochs, steps=steps, seconds=round(seconds, 1))
        record |= dict(runs_together=runs_together, num=args.num, **result)
        with out.open("a") as f:
            f.write(json.dumps(record) + "\n")
        print(json.dumps(record), flush=True)

    run = GANConfig(
        ema_decay=args.ema_decay,
        conditional=args.conditional,
        class_weight=args.class_weight,
        hidden_dim=args.hidden_dim,
    )
    for model in args.models:
        epochs = sorted(args.dcgan_epochs if model == "dcgan" and args.dcgan_epochs else args.epochs)
        if model == "seed":
            train_seed(dataset.images, seeds, epochs, args.torch_threads, judge, reference, config, emit)
        else:
            together = args.together or len(seeds)
            for group in range(0, len(seeds), together):
                group_seeds = seeds[group : group + together]
                train_jaxart(model, dataset, group_seeds, epochs, run, judge, reference, config, emit)


if __name__ == "__main__":
    main()
