"""Train a counting model on a lent GPU machine from split archives, inside a budget.

A split archive (``ccount_core.nn.split_archive``) holds one prepared split in a compact file.

The GPU machine has neither the data-set stores nor a network, and one command may run for
minutes only. Three steps:

Here, next to the stores (prepares with the shared pipeline, reusing a run's cached arrays):

    python scripts/train_gpu.py pack v1.zarr v2.zarr v3.zarr -o .pack --cache RUN/ \
        --pixel-size-um 6 --input-shape 96 48

There (``PYTHONPATH=src python3 scripts/train_gpu.py ...``):

    fit .pack -o /tmp/run --budget-s 420 --batch-size 256 --lr 2e-3 --seed 4
    export /tmp/run $OUT

``pack --preprocess stretch.json --labels Ca+ ND3+`` packs another preparation and a
dark-ion output (a pure store counts 0 ND3+); ``fit --init-model M --new-preprocess`` then
starts from a model prepared otherwise, or counting fewer labels.

``fit`` times 40 training steps and one epoch's end with ``ccount_core.nn.train.fit`` itself,
sizes the one-cycle schedule so that the run ends inside the budget (counted from the
script's start), and trains: ``--epochs`` equal epochs, each ending in validation and a
saved model. ``export`` writes the model as float16 in pieces under 16 MiB with its card and
log; here, ``cat model.safetensors.part* > model.safetensors`` joins them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from ccount_core.errors import InputError
from ccount_core.nn.model import load_model, save_model
from ccount_core.nn.split_archive import load_split_archive, save_split_archive
from ccount_core.nn.train import TrainConfig, fit
from ccount_core.nn.training_data import Split

START = time.monotonic()
PART_BYTES = 15 * 2**20
SPLITS = ("train", "validation")


def pack(args: argparse.Namespace) -> None:
    import dataclasses

    from ccount_core.image.preprocess import PreprocessConfig
    from ccount_core.nn.training_data import (
        data_summary,
        open_stores,
        prepare_splits,
        resolve_labels,
    )
    from ccount_core.progress import tqdm_progress

    if args.preprocess:
        pre = PreprocessConfig.from_dict(json.loads(Path(args.preprocess).read_text()))
    else:
        pre = dataclasses.replace(
            PreprocessConfig(),
            model_pixel_size_um=args.pixel_size_um,
            output_shape=tuple(args.input_shape),
        )
    stores = open_stores(args.data)
    labels = resolve_labels(stores, args.labels)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    meta = {
        "preprocess": pre.to_dict(),
        "label_names": list(labels),
        "data": [data_summary(ds, path) for path, ds in stores],
        "test": sum(len(ds.indices("test")) for _, ds in stores),
    }
    for split in SPLITS:
        with tqdm_progress(f"prepare {split}", unit="img") as bar:
            part = prepare_splits(stores, split, pre, labels, None, cache, bar)
        path = save_split_archive(out / f"{split}.npz.xz", part, meta)
        print(f"{path}: {len(part.images)} images, {path.stat().st_size / 2**20:.1f} MiB")


def _loaded(folder: Path, limit: int | None) -> tuple[Split, Split, dict]:
    (train, meta), (val, meta_val) = (load_split_archive(folder / f"{s}.npz.xz") for s in SPLITS)
    if meta_val["preprocess"] != meta["preprocess"]:
        raise InputError("packs: train and validation were prepared differently")
    if limit:
        train = Split(train.images[:limit], train.labels[:limit])
        val = Split(val.images[:limit], val.labels[:limit])
    return train, val, meta


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _timings(train: Split, val: Split, card: dict, config: TrainConfig) -> tuple[float, float]:
    """(seconds per step, seconds per epoch end) of ``fit`` on this machine: 40 steps, the
    last of which ends the epoch (validation, saved model, checkpoint), in a throwaway run."""
    marks: dict[int, float] = {}

    def clock(done: int, total: int) -> None:
        if done in (10, 39):
            _sync()
            marks[done] = time.perf_counter()

    probe = replace(config, epochs=1, epoch_images=40 * config.batch_size)
    with tempfile.TemporaryDirectory() as tmp:
        fit(train, val, tmp, probe, card, progress=clock)
        _sync()
        end = time.perf_counter()
    step_s = (marks[39] - marks[10]) / 29
    return step_s, max(end - marks[39] - step_s, 0.0)


def fit_in_budget(args: argparse.Namespace) -> None:
    torch.backends.cudnn.benchmark = True
    train, val, meta = _loaded(Path(args.packs), args.limit)
    card = {
        "label_names": meta["label_names"],
        "preprocess": meta["preprocess"],
        "data": meta["data"],
        "splits": {"train": len(train.images), "validation": len(val.images), "test": meta["test"]},
    }
    base = TrainConfig(
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        amp=True,
        weight_decay=args.weight_decay,
        checkpoint_every=10**9,
        init_model=args.init_model,
        new_preprocess=args.new_preprocess,
    )
    step_s, end_s = _timings(train, val, card, base)
    left = args.budget_s - (time.monotonic() - START)
    steps = int(0.97 * (left - args.epochs * end_s - args.reserve_s) / step_s)
    per_epoch = steps // args.epochs
    if per_epoch < 1:
        raise InputError(f"budget: {left:.0f} s left, one step takes {step_s:.3f} s")
    config = replace(base, epochs=args.epochs, epoch_images=per_epoch * args.batch_size)
    print(
        f"{len(train.images)} training images; {step_s * 1e3:.1f} ms per step of "
        f"{args.batch_size} ({args.batch_size / step_s:.0f} img/s), {end_s:.1f} s per epoch "
        f"end; {args.epochs} epochs of {per_epoch} steps = "
        f"{args.epochs * per_epoch * args.batch_size / len(train.images):.0f} passes in "
        f"{left:.0f} s left",
        flush=True,
    )

    def show(row: dict) -> None:
        print(
            json.dumps({k: round(v, 5) if isinstance(v, float) else v for k, v in row.items()}),
            flush=True,
        )

    fit(train, val, args.output, config, card, on_epoch=show)
    print(f"done after {time.monotonic() - START:.0f} s", flush=True)


def export(args: argparse.Namespace) -> None:
    run, out = Path(args.run), Path(args.out)
    model, card = load_model(run)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        weights, card_path = save_model(Path(tmp) / "model.safetensors", model, card, half=True)
        data = weights.read_bytes()
        for i in range(0, len(data), PART_BYTES):
            (out / f"model.safetensors.part{i // PART_BYTES}").write_bytes(data[i : i + PART_BYTES])
        shutil.copyfile(card_path, out / "model.json")
    shutil.copyfile(run / "log.csv", out / "log.csv")
    print(f"exported {len(data) / 2**20:.1f} MiB in {-(-len(data) // PART_BYTES)} parts")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(required=True)
    p = sub.add_parser("pack", help="prepare the train and validation splits into split archives")
    p.add_argument("data", nargs="+")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--cache", required=True, help="folder of prepared arrays (reused)")
    p.add_argument("--pixel-size-um", type=float, default=6.0)
    p.add_argument("--input-shape", type=int, nargs=2, default=(96, 48))
    p.add_argument(
        "--preprocess",
        default=None,
        help="a PreprocessConfig JSON (instead of the two options above)",
    )
    p.add_argument(
        "--labels",
        nargs="+",
        default=None,
        help="labels to learn (default: the first); a store without a label's "
        "species counts 0 of it",
    )
    p.set_defaults(func=pack)
    p = sub.add_parser("fit", help="train inside a time budget")
    p.add_argument("packs")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--budget-s", type=float, required=True)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=4)
    p.add_argument(
        "--reserve-s",
        type=float,
        default=15.0,
        help="seconds kept for the run's start and last save",
    )
    p.add_argument("--limit", type=int, default=None, help="at most N images (a dry run)")
    p.add_argument("--init-model", default=None, help="a ccount model to fine-tune")
    p.add_argument(
        "--new-preprocess",
        action="store_true",
        help="let --init-model start packs prepared otherwise than it was",
    )
    p.set_defaults(func=fit_in_budget)
    p = sub.add_parser("export", help="float16 model in pieces, card and log")
    p.add_argument("run")
    p.add_argument("out")
    p.set_defaults(func=export)
    args = ap.parse_args()
    try:
        args.func(args)
    except InputError as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
