"""``ccount train DATA.zarr -o RUN/``: train the counting network (resumes a killed run)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ccount_core.cli._threads import add_threads_argument, apply_threads


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``ccount train``."""
    p = subparsers.add_parser(
        "train",
        help="train the ResNet50 counter on a simulated data set",
        description="Train on the training split of DATA (made by `ccount dataset generate`; "
        "several stores are joined), validate after every epoch and checkpoint "
        "to RUN. Running the same command again resumes a killed run from its "
        "last checkpoint.",
    )
    p.add_argument("data", nargs="+", help="data-set store(s) (.zarr)")
    p.add_argument("-o", "--output", required=True, help="run directory (checkpoints, log, model)")
    p.add_argument(
        "--epochs",
        type=int,
        default=10,
        help="epochs (default 10; an epoch is one pass unless --epoch-images)",
    )
    p.add_argument(
        "--epoch-images",
        type=int,
        default=None,
        help="images per epoch, between validations (default: one pass)",
    )
    p.add_argument("--batch-size", type=int, default=32, help="images per step (default 32)")
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (one-cycle)")
    p.add_argument("--weight-decay", type=float, default=1e-4, help="AdamW weight decay")
    p.add_argument("--seed", type=int, default=0, help="seed of init, data order, augmentation")
    p.add_argument("--checkpoint-every", type=int, default=100, help="steps between checkpoints")
    p.add_argument("--max-train", type=int, default=None, help="use at most N training images")
    p.add_argument("--max-val", type=int, default=None, help="use at most N validation images")
    p.add_argument(
        "--labels", nargs="+", default=None, help="label names to learn (default: the first, Ca+)"
    )
    p.add_argument(
        "--amp", action="store_true", help="mixed precision (bfloat16; float16 on GPUs without it)"
    )
    p.add_argument(
        "--loss-floor-ions",
        type=float,
        default=5.0,
        help="relative-error loss: error / (count + this) (default 5 ions)",
    )
    p.add_argument(
        "--init-weights",
        default=None,
        help="torchvision ResNet50 ImageNet weights file you already have",
    )
    p.add_argument(
        "--init-model",
        default=None,
        help="fine-tune this ccount model ('default': the shipped one) instead of "
        "starting from random weights",
    )
    p.add_argument(
        "--new-preprocess",
        action="store_true",
        help="let --init-model start a run whose preprocessing differs from the "
        "model's (its weights are only a starting point)",
    )
    p.add_argument(
        "--freeze-bn",
        action="store_true",
        help="batch norm keeps its running statistics while training, as when "
        "counting (for fine-tuning a trained model)",
    )
    p.add_argument(
        "--augment",
        choices=("default", "camera"),
        default="default",
        help="augmentation preset: 'default' (as the shipped models were trained) or "
        "'camera' (adds cooling-beam profiles, background gradients, hot pixels and "
        "more noise; ccount_core.nn.augment.PRESETS)",
    )
    p.add_argument(
        "--preprocess",
        default=None,
        help="JSON file of a PreprocessConfig (default: PreprocessConfig())",
    )
    p.add_argument(
        "--pixel-size-um",
        type=float,
        default=None,
        help="model pixel size, µm (overrides the preprocessing config)",
    )
    p.add_argument(
        "--input-shape",
        type=int,
        nargs=2,
        default=None,
        metavar=("ROWS", "COLS"),
        help="model input shape, px (overrides the preprocessing config)",
    )
    add_threads_argument(p)
    p.set_defaults(func=_run)


SMALL_MACHINE_CORES = 2
"""Up to this many cores ``ccount train`` uses one torch thread. A step of the `small` spec on
a shared 2-core machine: 22-28 s with one thread against 35-60 s with two when other work
loads the cores (OpenMP threads then wait on each other at every layer), 11-13 s against
6-17 s (mean 11) when they are nearly free: one thread is never far from the best."""


def _cores() -> int:
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def default_threads() -> int | None:
    """Torch threads when --threads is not given: 1 on a small machine, else torch's choice."""
    return 1 if _cores() <= SMALL_MACHINE_CORES else None


def _run(args: argparse.Namespace) -> int:
    import dataclasses

    from tqdm import tqdm  # its write() keeps notes out of the bars

    from ccount_core.errors import InputError
    from ccount_core.image.preprocess import PreprocessConfig
    from ccount_core.nn.augment import PRESETS
    from ccount_core.nn.train import TrainConfig, default_preprocess, train
    from ccount_core.progress import tqdm_progress

    threads = args.threads if args.threads is not None else default_threads()
    apply_threads(threads)
    cfg = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        epoch_images=args.epoch_images,
        lr=args.lr,
        weight_decay=args.weight_decay,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        max_train=args.max_train,
        max_val=args.max_val,
        labels=tuple(args.labels) if args.labels else None,
        amp=args.amp,
        loss_floor_ions=args.loss_floor_ions,
        init_weights=args.init_weights,
        init_model=args.init_model,
        new_preprocess=args.new_preprocess,
        freeze_bn=args.freeze_bn,
        augment=PRESETS[args.augment],
    )
    if args.preprocess:
        path = Path(args.preprocess)
        if not path.is_file():
            raise InputError(f"--preprocess: no such file: {path}")
        pre = PreprocessConfig.from_json(path.read_text())
    else:  # fine-tuning prepares images as the model did
        pre = default_preprocess(cfg, print)
    changes = {}
    if args.pixel_size_um is not None:
        changes["model_pixel_size_um"] = args.pixel_size_um
    if args.input_shape is not None:
        changes["output_shape"] = tuple(args.input_shape)
    pre = dataclasses.replace(pre, **changes)
    if args.threads is None and threads is not None:
        print(f"train: {threads} torch thread on {_cores()} cores (--threads N to change)")
    with tqdm_progress("prepare", unit="img") as prep, tqdm_progress("train", unit="step") as bar:
        _, card = train(
            args.data, args.output, cfg, pre, progress=bar, prepare_progress=prep, log=tqdm.write
        )
    m = card.get("metrics", {}).get("validation_last_epoch", {})
    rmse, pct = m.get("val_rmse", float("nan")), m.get("val_rms_percent", float("nan"))
    print(
        f"model: {Path(args.output) / 'model.safetensors'}  validation RMSE {rmse:.2f} ions "
        f"({pct:.1f} %)"
    )
    return 0
