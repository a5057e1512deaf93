"""Train the counting network on a simulated data set, with checkpoints and exact resume.

``train(data, run_dir, ...)`` prepares the data set's images with the shared pipeline
(``ccount_core.nn.training_data``: ``prepare_stack`` and one ``PreprocessConfig``; the
prepared arrays are cached in the run directory), then runs ``fit(...)``: AdamW with a
one-cycle learning-rate schedule, augmentation (``ccount_core.nn.augment``), validation after
each epoch, a CSV log and a checkpoint every ``checkpoint_every`` steps and at each epoch's
end. A killed run started again with the same settings continues from its last checkpoint
and ends with the same weights as an uninterrupted run: the data order of an epoch and the
augmentation of a step are drawn from generators seeded by ``(seed, epoch)`` and
``(seed, step)``.

Run directory ``RUN/``:
``run.json`` (settings), ``checkpoint.pt`` (tensors and plain values only, read with
``weights_only=True``; once the run has ended only its step count, as nothing is left to
resume: a ResNet50's weights and AdamW moments are 280 MB), ``log.csv`` (one row per
epoch), ``model.safetensors`` + ``model.json`` (the model after the latest epoch, with its
card), ``prepared_*.npy`` (cache).
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ccount_core.checks import check_number
from ccount_core.errors import InputError
from ccount_core.files import atomic_write_bytes, remove_stale_temps
from ccount_core.nn.augment import AugmentConfig, augment
from ccount_core.nn.inference import amp_dtype, predict
from ccount_core.nn.model import (
    CountingNet,
    build_model,
    check_config,
    default_model_path,
    load_model,
    read_card,
    save_model,
)
from ccount_core.nn.training_data import (
    Split,
    data_summary,
    open_stores,
    prepare_splits,
    resolve_labels,
)
from ccount_core.progress import ProgressCallback, report

LOG_FIELDS = (
    "epoch",
    "step",
    "lr",
    "train_loss",
    "val_loss",
    "val_rmse",
    "val_rms_percent",
    "val_mae",
    "val_exact",
    "elapsed_s",
)


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run (everything that decides its result).

    epochs: number of epochs; batch_size: images per step.
    epoch_images: images per epoch (validation, log row, checkpoint and saved model at its
        end); None: one pass over the training split. Set it above the split's size on a fast
        GPU, where validating after every short pass would take a large share of the time.
        The data order does not depend on it: pass p is a permutation seeded by (seed, p).
    lr: peak learning rate of the one-cycle schedule; weight_decay: AdamW decay.
    seed: model initialisation, data order and augmentation.
    checkpoint_every: steps between checkpoints (also one at each epoch's end).
    max_train, max_val: use at most this many images of a split (None: all).
    labels: label names to learn (None: the first label, Ca+).
    amp: mixed precision: bfloat16 on a CPU and on a GPU that has it (Ampere and newer),
        float16 with loss scaling on an older GPU.
    loss_floor_ions: the loss is the squared error relative to ``count + loss_floor_ions``
        (ions); a small floor weighs every count as the goal's percentage error does, while
        keeping the weight of a count near zero bounded.
    init_weights: a torchvision ResNet50 ImageNet weights file to start from.
    init_model: a ccount model to fine-tune ("default": the shipped one): all its weights,
        head and label scale included; it must count the run's labels, or a first part of
        them (labels it lacks get fresh head rows), from images prepared with the run's
        preprocessing.
    new_preprocess: let ``init_model`` start a run that prepares images otherwise (e.g.
        ``stretch_to_fit`` or another pixel size): its weights are only a starting point,
        and its preprocessing is recorded in the card's ``training.started_from``.
    freeze_bn: batch normalisation uses its running statistics while training, as it does
        when counting, and does not update them (its scale and shift still learn). A batch
        of 32 normalised by its own statistics counts several ions off (the shipped `dark`:
        5.4 % RMS against 3.6 % with running statistics; `default`: 6.2 % against 3.8 %), so
        a run that fine-tunes a trained model with this flag learns the function that counts
        rather than a noisy neighbour. Only with ``init_model`` or ``init_weights``.
    augment: the augmentation ranges.
    """

    epochs: int = 10
    batch_size: int = 32
    epoch_images: int | None = None
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    checkpoint_every: int = 100
    max_train: int | None = None
    max_val: int | None = None
    labels: tuple[str, ...] | None = None
    amp: bool = False
    loss_floor_ions: float = 5.0
    init_weights: str | None = None
    init_model: str | None = None
    new_preprocess: bool = False
    freeze_bn: bool = False
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise InputError(f"{name}: must be at least 1, got {getattr(self, name)}")
        if self.epoch_images is not None and self.epoch_images < self.batch_size:
            raise InputError(
                f"epoch_images: must be at least batch_size ({self.batch_size}), "
                f"got {self.epoch_images}"
            )
        if not self.lr > 0:
            raise InputError(f"lr: must be positive, got {self.lr}")
        check_number("weight_decay", self.weight_decay, nonnegative=True)
        if not self.loss_floor_ions > 0:
            raise InputError(f"loss_floor_ions: must be positive, got {self.loss_floor_ions}")
        if self.init_weights is not None and self.init_model is not None:
            raise InputError("init_weights and init_model: give one starting point, not both")
        if self.new_preprocess and self.init_model is None:
            raise InputError("new_preprocess: only with init_model")
        if self.freeze_bn and self.init_model is None and self.init_weights is None:
            raise InputError(
                "freeze_bn: only when fine-tuning (init_model or init_weights): "
                "random weights have no batch-norm statistics to keep"
            )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["labels"] = list(self.labels) if self.labels is not None else None
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        d = {k: v for k, v in data.items() if k in known}
        if d.get("labels") is not None:
            d["labels"] = tuple(d["labels"])
        if isinstance(d.get("augment"), Mapping):
            d["augment"] = AugmentConfig.from_dict(d["augment"])
        return cls(**d)


def hardware() -> str:
    """A short description of the device training or inference runs on."""
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} (CUDA)"
    return (
        f"{platform.machine()} CPU ({platform.processor() or 'unknown'}), "
        f"{torch.get_num_threads()} threads"
    )


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _autocast(device: torch.device, enabled: bool):
    return torch.autocast(device_type=device.type, dtype=amp_dtype(device), enabled=enabled)


def _freeze_batchnorm(model: torch.nn.Module) -> None:
    """Put every batch-norm layer of ``model`` in eval mode: running statistics, not updated."""
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eval()


def _loss(
    scaled_pred: torch.Tensor, scaled_true: torch.Tensor, scaled_floor: torch.Tensor
) -> torch.Tensor:
    """Mean squared relative error (the goal is a percentage error), all in label-scale units;
    ``scaled_floor`` (``loss_floor_ions / label_scale``) bounds the weight of small counts."""
    rel = (scaled_pred.float() - scaled_true) / (scaled_true.abs() + scaled_floor)
    return rel.square().mean()


def summary_metrics(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """RMSE (ions), RMS percentage error, MAE, bias and exact-count accuracy of column 0."""
    p, t = np.asarray(pred, float)[:, 0], np.asarray(true, float)[:, 0]
    err = p - t
    rel = err / np.maximum(np.abs(t), 1.0)
    return {
        "rmse": float(np.sqrt(np.mean(err**2))),
        "rms_percent": float(100 * np.sqrt(np.mean(rel**2))),
        "mae": float(np.mean(np.abs(err))),
        "bias": float(np.mean(err)),
        "exact": float(np.mean(np.round(p) == np.round(t))),
    }


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def _epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n)


def fit(
    train: Split,
    val: Split,
    run_dir: Path | str,
    config: TrainConfig,
    card: Mapping[str, Any],
    progress: ProgressCallback | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[CountingNet, dict[str, Any]]:
    """Train on prepared arrays; resume from ``run_dir/checkpoint.pt`` when it exists (a run
    that has ended returns its saved model).

    ``card``: the model card's fixed part (``label_names``, ``preprocess``, data summary);
    the input shape, training summary and validation metrics are added. Returns the final
    model and its card; the model is also saved as ``run_dir/model.safetensors`` + ``.json``.
    Temporary files that killed writes left in ``run_dir`` (a checkpoint's: hundreds of MB)
    are removed first.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(run_dir)
    if len(train.images) == 0 or len(val.images) == 0:
        raise InputError(
            f"data: need training and validation images, got {len(train.images)} "
            f"and {len(val.images)}"
        )
    device = _device()
    ckpt_path, log_path = run_dir / "checkpoint.pt", run_dir / "log.csv"
    state = (
        torch.load(ckpt_path, map_location=device, weights_only=True)
        if ckpt_path.exists()
        else None
    )
    if state is not None and state.get("finished"):  # run again after its end: nothing to do
        model, saved_card = load_model(run_dir)
        return model.to(device), saved_card
    k = train.labels.shape[1]
    scale = np.maximum(np.abs(train.labels).max(axis=0), 1.0).astype(float)
    started_from = None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        if config.init_model is not None:
            model, started_from = _start_model(
                config.init_model, card, config.new_preprocess, train.labels.mean(axis=0), scale
            )
        else:
            model = build_model(k, config.init_weights, label_scale=scale.tolist())
            # Start the head at the mean count: the first steps learn structure, not offset.
            torch.nn.init.normal_(model.net.fc.weight, std=1e-3)
            with torch.no_grad():
                model.net.fc.bias.copy_(torch.from_numpy(train.labels.mean(axis=0) / scale))
    model = model.to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    bs = min(config.batch_size, len(train.images))
    per_pass = len(train.images) // bs
    per_epoch = config.epoch_images // bs if config.epoch_images else per_pass
    total = config.epochs * per_epoch
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=config.lr, total_steps=total, pct_start=0.15
    )
    use_amp = config.amp
    # Loss scaling only for float16; it also reads a flag from the GPU every step.
    scaler = torch.amp.GradScaler(
        device.type, enabled=use_amp and amp_dtype(device) == torch.float16
    )
    step, elapsed = 0, 0.0
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        step, elapsed = int(state["step"]), float(state["elapsed_s"])
        loss_sum, loss_n = float(state["loss_sum"]), int(state["loss_n"])
    else:
        loss_sum, loss_n = 0.0, 0
    # Summed on the device: reading the loss every step would wait for the GPU every step.
    loss_acc = torch.zeros((), device=device)
    _trim_log(log_path, step)

    def checkpoint() -> None:
        nonlocal loss_sum, loss_acc
        loss_sum, loss_acc = loss_sum + float(loss_acc), torch.zeros_like(loss_acc)
        if step == total:  # nothing left to resume: the weights are in model.safetensors
            _save_checkpoint(ckpt_path, {"finished": True, "step": step, "elapsed_s": elapsed})
            return
        _save_checkpoint(
            ckpt_path,
            {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "scaler": scaler.state_dict(),
                "step": step,
                "elapsed_s": elapsed,
                "loss_sum": loss_sum,
                "loss_n": loss_n,
            },
        )

    full_card = dict(card)
    full_card["input_shape"] = list(train.images.shape[1:])
    full_card["label_range"] = [float(train.labels[:, 0].min()), float(train.labels[:, 0].max())]
    full_card.setdefault("splits", {"train": len(train.images), "validation": len(val.images)})
    # On a GPU the whole split moves to it once (a few GB at most): no copy per step.
    x_train = torch.from_numpy(np.array(train.images, dtype=np.float32)).to(device)
    y_train = torch.from_numpy(np.ascontiguousarray(train.labels, dtype=np.float32)).to(device)
    scale_t = model.label_scale.detach().to(device)
    floor_t = config.loss_floor_ions / scale_t
    report(progress, step, total)
    order, order_pass = None, -1
    while step < total:
        t0 = time.perf_counter()
        p, i = divmod(step, per_pass)
        if p != order_pass:
            order = torch.from_numpy(_epoch_order(config.seed, p, len(train.images))).to(device)
            order_pass = p
        idx = order[i * bs : (i + 1) * bs]
        gen = torch.Generator(device=device).manual_seed(config.seed * 1_000_003 + step)
        x = augment(x_train[idx][:, None], config.augment, gen)
        x = x.contiguous(memory_format=torch.channels_last)
        y = y_train[idx] / scale_t
        model.train()
        if config.freeze_bn:
            _freeze_batchnorm(model)
        with _autocast(device, use_amp):
            loss = _loss(model.scaled(x), y, floor_t)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        sched.step()
        step += 1
        loss_acc += loss.detach()
        loss_n += 1
        elapsed += time.perf_counter() - t0
        if step % per_epoch == 0:
            train_loss = (loss_sum + float(loss_acc)) / loss_n
            row = _end_epoch(
                model,
                val,
                step // per_epoch,
                step,
                sched,
                train_loss,
                elapsed,
                use_amp,
                config.loss_floor_ions,
            )
            loss_sum, loss_n, loss_acc = 0.0, 0, torch.zeros_like(loss_acc)
            full_card["training"] = _training_summary(config, step, total, elapsed, device)
            if started_from is not None:
                full_card["training"]["started_from"] = started_from
            full_card["metrics"] = {
                "validation_last_epoch": {k2: row[k2] for k2 in LOG_FIELDS if k2.startswith("val_")}
            }
            save_model(run_dir, model, full_card)
            _append_log(log_path, row)
            checkpoint()
            if on_epoch is not None:
                on_epoch(row)
        elif step % config.checkpoint_every == 0:
            checkpoint()
        report(progress, step, total)
    model.eval()
    return model, full_card


def _start_model(
    init_model: str,
    card: Mapping[str, Any],
    new_preprocess: bool,
    label_mean: np.ndarray,
    label_scale: np.ndarray,
) -> tuple[CountingNet, dict[str, Any]]:
    """The model to fine-tune, and what its card says of its own training.

    A run may count more species than the model it starts from (e.g. add a dark species to a
    Ca+ model): the new outputs start as a fresh run's would (``label_mean`` and
    ``label_scale``, ions, one per label of ``card``), the others keep their head rows.
    """
    model, init_card = load_model(None if init_model == "default" else init_model)
    if not new_preprocess:
        check_config(init_card, card["preprocess"], where="init_model")
    old, new = list(init_card["label_names"]), list(card["label_names"])
    _check_labels(init_model, old, new)
    started = {
        "model": init_model,
        "training": init_card.get("training"),
        "data": init_card.get("data"),
        "preprocess": init_card.get("preprocess"),
    }
    if old == new:
        return model, started
    old_scale = model.label_scale.tolist()
    scale = [
        old_scale[old.index(n)] if n in old else float(label_scale[j]) for j, n in enumerate(new)
    ]
    wider = CountingNet(len(new), label_scale=scale)
    body = {
        k: v
        for k, v in model.state_dict().items()
        if not k.startswith("net.fc.") and k != "label_scale"
    }
    wider.load_state_dict(body, strict=False)
    fc_old, fc = model.net.fc, wider.net.fc
    with torch.no_grad():
        torch.nn.init.normal_(fc.weight, std=1e-3)
        for j, n in enumerate(new):
            if n in old:
                fc.weight[j] = fc_old.weight[old.index(n)]
                fc.bias[j] = fc_old.bias[old.index(n)]
            else:
                fc.bias[j] = float(label_mean[j]) / scale[j]
    return wider, {**started, "label_names": old}


def _training_summary(
    config: TrainConfig, step: int, total: int, elapsed: float, device: torch.device
) -> dict[str, Any]:
    return {
        "config": config.to_dict(),
        "steps": step,
        "total_steps": total,
        "time_s": round(elapsed, 1),
        "hardware": hardware(),
        "torch": torch.__version__,
    }


def _end_epoch(
    model: CountingNet,
    val: Split,
    epoch: int,
    step: int,
    sched,
    train_loss: float,
    elapsed: float,
    amp: bool,
    loss_floor_ions: float,
) -> dict[str, Any]:
    pred = predict(model, val.images, amp=amp)
    with torch.no_grad():
        scale = model.label_scale.cpu()
        val_loss = float(
            _loss(
                torch.from_numpy(pred) / scale,
                torch.from_numpy(val.labels) / scale,
                loss_floor_ions / scale,
            )
        )
    m = summary_metrics(pred, val.labels)
    return {
        "epoch": epoch,
        "step": step,
        "lr": sched.get_last_lr()[0],
        "train_loss": train_loss,
        "val_loss": val_loss,
        "val_rmse": m["rmse"],
        "val_rms_percent": m["rms_percent"],
        "val_mae": m["mae"],
        "val_exact": m["exact"],
        "elapsed_s": round(elapsed, 1),
    }


def _append_log(path: Path, row: Mapping[str, Any]) -> None:
    new = not path.exists()
    with path.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=LOG_FIELDS)
        if new:
            writer.writeheader()
        writer.writerow({k: row[k] for k in LOG_FIELDS})
        fh.flush()
        os.fsync(fh.fileno())


def _trim_log(path: Path, step: int) -> None:
    """Drop log rows written after the checkpoint a resumed run starts from."""
    if not path.exists():
        return
    with path.open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if int(r["step"]) <= step]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=LOG_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(path, buf.getvalue().encode())


def _check_labels(init_model: str, old: Sequence[str], new: Sequence[str]) -> None:
    """Refuse a run whose labels ``new`` drop or reorder the first of the model's ``old``."""
    if list(new[:1]) != list(old[:1]) or not set(old) <= set(new):
        raise InputError(
            f"init_model: {init_model} counts {list(old)}, this run learns {list(new)}; a "
            "run may add labels to the model's, not drop or reorder its first"
        )


def init_card(init_model: str) -> dict[str, Any]:
    """The card of the model a run fine-tunes ("default": the shipped one)."""
    return read_card(default_model_path() if init_model == "default" else init_model)


def _check_start(config: TrainConfig, preprocess: Any, labels: Sequence[str]) -> None:
    """Refuse a starting point that is not there or does not fit the run (its preprocessing,
    its labels), before the run directory is made."""
    if config.init_model is not None:
        card = init_card(config.init_model)  # one line naming a missing model or card
        if not config.new_preprocess:
            check_config(card, preprocess, where="init_model")
        _check_labels(config.init_model, card["label_names"], labels)
    if config.init_weights is not None and not Path(config.init_weights).is_file():
        raise InputError(f"init_weights: no such file: {config.init_weights}")


SMOKE_SPECS = ("small",)
"""Specs too small to learn from: a run on them tests the pipeline, not the model."""


def _notes(stores: Sequence[tuple[Path, Any]]) -> list[str]:
    """What a user should know of the data before the run: a smoke-test spec says so."""
    return [
        f"train: {path} holds the `{spec}` spec, a smoke test of the pipeline (minutes on a "
        "laptop), not a model: its validation error means nothing (the shipped default "
        "learnt from the default_model_v1-v3 specs, docs/MODEL.md)"
        for path, ds in stores
        if (spec := _spec_name(ds)) in SMOKE_SPECS
    ]


def _spec_name(ds: Any) -> str | None:
    spec = getattr(ds, "spec", None)
    return spec.get("name") if isinstance(spec, Mapping) else None


def _accept_settings(run_dir: Path, settings: dict[str, Any]) -> None:
    """Refuse a run directory that holds a run with other settings; one that never reached
    its first checkpoint (a start that failed or was killed early) takes the new ones."""
    run_json = run_dir / "run.json"
    if not run_json.exists() or not (run_dir / "checkpoint.pt").exists():
        return
    old = json.loads(run_json.read_text())
    if isinstance(old.get("train"), dict):  # a setting added since then has its default
        old["train"] = json.loads(json.dumps(TrainConfig.from_dict(old["train"]).to_dict()))
    if old != settings:
        diff = [k for k in settings if old.get(k) != settings[k]]
        raise InputError(
            f"run directory: {run_dir} holds a run with other settings "
            f"({', '.join(diff)}); choose a new -o to start afresh"
        )


def default_preprocess(config: TrainConfig, log: Callable[[str], None]) -> Any:
    """The preprocessing of a run that names none: its ``init_model``'s, else the default."""
    from ccount_core.image.preprocess import PreprocessConfig

    if config.init_model is None:
        return PreprocessConfig()
    pre = PreprocessConfig.from_dict(init_card(config.init_model)["preprocess"])
    log(f"train: preparing images as {config.init_model} does (its card's preprocessing)")
    return pre


def train(
    data: Path | str | Sequence[Path | str],
    run_dir: Path | str,
    config: TrainConfig | None = None,
    preprocess: Any = None,
    progress: ProgressCallback | None = None,
    prepare_progress: ProgressCallback | None = None,
    log: Callable[[str], None] | None = None,
) -> tuple[CountingNet, dict[str, Any]]:
    """Train on one data set made by ``ccount dataset generate`` (a Zarr store) or several
    (their splits are joined).

    ``preprocess``: the ``PreprocessConfig`` of the run (default: the ``init_model``'s when
    fine-tuning, else ``PreprocessConfig()``). A run directory remembers its settings in
    ``run.json``; starting again with the same settings resumes, different settings are
    refused once the run has a checkpoint. ``log`` receives notes for the user (one line
    each): the preprocessing taken from the model, a smoke-test data set.
    """
    config = config or TrainConfig()
    log = log or (lambda _line: None)
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise InputError(f"run directory: {run_dir} is a file")
    preprocess = preprocess or default_preprocess(config, log)
    stores = open_stores(data)
    names = list(resolve_labels(stores, config.labels))
    _check_start(config, preprocess, names)
    for line in _notes(stores):
        log(line)
    settings = {
        "data": [str(path.resolve()) for path, _ in stores],
        "train": config.to_dict(),
        "preprocess": preprocess.to_dict(),
    }
    settings = json.loads(json.dumps(settings))
    _accept_settings(run_dir, settings)
    run_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(run_dir)  # before the prepared images are cached there
    atomic_write_bytes(run_dir / "run.json", (json.dumps(settings, indent=2) + "\n").encode())
    tr = prepare_splits(
        stores, "train", preprocess, config.labels, config.max_train, run_dir, prepare_progress
    )
    va = prepare_splits(
        stores, "validation", preprocess, config.labels, config.max_val, run_dir, prepare_progress
    )
    card = {
        "label_names": names,
        "preprocess": preprocess.to_dict(),
        "data": [data_summary(ds, path) for path, ds in stores],
        "splits": {
            "train": len(tr.images),
            "validation": len(va.images),
            "test": sum(len(ds.indices("test")) for _, ds in stores),
        },
    }
    return fit(tr, va, run_dir, config, card, progress=progress)


__all__ = ["SMOKE_SPECS", "TrainConfig", "fit", "init_card", "summary_metrics", "train"]
