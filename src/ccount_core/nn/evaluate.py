"""Evaluate a model on a split of a data set: the paper's Figure 3 and a JSON of metrics.

Images are binned by their true ion number (bins ``bin_width`` wide, centred on multiples of
it: the paper's 10-ion steps); a further species a model counts is binned by its own true
number (``other_bins``), which gives its counts their uncertainty. Per bin: the mean and
standard deviation of the inferred numbers, the standard deviation of the error, the RMS error
and mean percentage error against the truth, the bias and the share of images counted exactly
(rounded prediction equals the truth); the same over all images.

A long evaluation resumes: each network's predictions are written, a block of
``CHECKPOINT_IMAGES`` at a time, to ``OUT/.evaluate-partial/`` (kept while the evaluation
runs, removed when it has written its results). A rerun with the same networks, prepared
images and settings (the folder's ``key``) takes the finished blocks from there and gives the
numbers of an uninterrupted run; any other rerun starts afresh.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ccount_core.checks import check_integer
from ccount_core.errors import InputError
from ccount_core.progress import ProgressCallback, report

# Standard deviation of the inferred Ca+ number per true number (ions), paper section III A.
PAPER_STD = {50: 0.9, 150: 2.0, 250: 2.7, 350: 3.7}
N_OUTLIERS = 10
#: Predictions per checkpoint block (rounded up to whole batches).
CHECKPOINT_IMAGES = 1024
PARTIAL_DIR = ".evaluate-partial"


def bin_metrics(pred: np.ndarray, true: np.ndarray, bin_width: float = 10.0) -> dict[str, Any]:
    """Per-bin and overall metrics of predicted vs true counts (1-D arrays, ions)."""
    pred, true = np.asarray(pred, float).ravel(), np.asarray(true, float).ravel()
    if pred.shape != true.shape or pred.size == 0:
        raise InputError(
            f"predictions: need equal non-empty arrays, got {pred.shape} and {true.shape}"
        )
    centres = np.round(true / bin_width) * bin_width

    def stats(p: np.ndarray, t: np.ndarray) -> dict[str, float]:
        err = p - t
        return {
            "n": int(p.size),
            "true_mean": float(t.mean()),
            "mean": float(p.mean()),
            "std": float(p.std(ddof=1)) if p.size > 1 else 0.0,
            "error_std": float(err.std(ddof=1)) if p.size > 1 else 0.0,
            "rms": float(np.sqrt(np.mean(err**2))),
            "rms_percent": float(100 * np.sqrt(np.mean((err / np.maximum(t, 1)) ** 2))),
            "mean_percent_error": float(100 * np.mean(np.abs(err) / np.maximum(t, 1))),
            "bias": float(err.mean()),
            "exact": float(np.mean(np.round(p) == np.round(t))),
        }

    bins = []
    for c in np.unique(centres):
        sel = centres == c
        bins.append({"bin": float(c), **stats(pred[sel], true[sel])})
    return {"bin_width": bin_width, "overall": stats(pred, true), "bins": bins}


def paper_table(metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Rows comparing per-bin spread with the paper's (bins at 50, 150, 250, 350 ions).

    ``std`` is the standard deviation of the error (inferred − true): the paper's bins held one
    true number each, while a bin of randomly drawn numbers spans ``bin_width`` ions, whose
    spread would otherwise be counted as error.
    """
    by_bin = {round(b["bin"]): b for b in metrics["bins"]}
    rows = []
    for n, paper in PAPER_STD.items():
        b = by_bin.get(n)
        rows.append(
            {
                "ions": n,
                "paper_std": paper,
                "n": b["n"] if b else 0,
                "std": b["error_std"] if b else None,
                "rms": b["rms"] if b else None,
                "bias": b["bias"] if b else None,
            }
        )
    return rows


def figure3(
    pred: np.ndarray, true: np.ndarray, metrics: Mapping[str, Any], path: Path, title: str = ""
) -> None:
    """The paper's Figure 3: per-bin mean ± std boxes, the largest outliers, and y = x."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    pred, true = np.asarray(pred, float).ravel(), np.asarray(true, float).ravel()
    width = float(metrics["bin_width"])
    centres = np.round(true / width) * width
    fig = Figure(figsize=(6.5, 5.5), dpi=120)
    ax = fig.add_subplot()
    lo = min(true.min(), pred.min()) - width
    hi = max(true.max(), pred.max()) + width
    ax.plot([lo, hi], [lo, hi], color="0.4", lw=1, label="y = x")
    for b in metrics["bins"]:
        c, mean, std = b["bin"], b["mean"], b["std"]
        ax.add_patch(
            Rectangle(
                (c - 0.4 * width, mean - std),
                0.8 * width,
                max(2 * std, 0.5),
                facecolor="#f4a6c6",
                edgecolor="#c2185b",
                lw=0.6,
            )
        )
        sel = np.flatnonzero(centres == c)
        dev = pred[sel] - mean
        order = np.argsort(dev)
        out = np.concatenate(
            [
                sel[order[:N_OUTLIERS]][dev[order[:N_OUTLIERS]] < 0],
                sel[order[::-1][:N_OUTLIERS]][dev[order[::-1][:N_OUTLIERS]] > 0],
            ]
        )
        ax.scatter(
            np.full(out.size, c),
            pred[out],
            s=14,
            facecolors="none",
            edgecolors="black",
            linewidths=0.7,
        )
    ax.scatter(
        [],
        [],
        s=14,
        facecolors="none",
        edgecolors="black",
        label=f"{N_OUTLIERS} largest outliers above/below the mean",
    )
    ax.add_patch(
        Rectangle((0, 0), 0, 0, facecolor="#f4a6c6", edgecolor="#c2185b", label="bin mean ± std")
    )
    o = metrics["overall"]
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("true Ca$^+$ ion number")
    ax.set_ylabel("inferred Ca$^+$ ion number")
    ax.set_title(title or f"{o['n']} images: RMS {o['rms']:.1f} ions ({o['rms_percent']:.1f} %)")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    from ccount_core.files import atomic_write_bytes

    atomic_write_bytes(path, buf.getvalue())


def evaluate(
    model_path: Path | str | None,
    data: Path | str | Sequence[Path | str],
    out_dir: Path | str,
    split: str = "validation",
    batch_size: int = 64,
    limit: int | None = None,
    tta: int = 0,
    bf16: bool = False,
    progress: ProgressCallback | None = None,
    prepare_progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """Run a model on a split of one data set or several (joined); write ``metrics.json``,
    ``figure3.png`` and ``predictions.csv`` to ``out_dir``; return the metrics.

    ``model_path`` None: the default model; a shipped name or an ensemble card works too.
    The images are prepared with the model card's preprocessing configuration (for an
    ensemble, each member's own). ``limit``: at most this many images of the split.
    ``tta``: count each image as ``ccount count --tta`` does, the mean of the plain view and
    ``tta`` changed ones (0: the plain view only). ``bf16``: the networks run in bfloat16
    (packed, ``ccount_core.nn.cpu_inference``), as ``ccount count`` runs them on a CPU where
    that is faster; else float32.
    """
    from ccount_core.files import atomic_write_bytes
    from ccount_core.image.preprocess import PreprocessConfig
    from ccount_core.nn.ensemble import load_counter
    from ccount_core.nn.training_data import open_stores, prepare_splits

    if split not in ("train", "validation", "test"):
        raise InputError(f"split: must be train, validation or test, got {split!r}")
    if tta < 0:
        raise InputError(f"tta: must be 0 or more, got {tta}")
    check_integer("batch_size", batch_size, 1)
    if limit is not None:
        check_integer("limit", limit, 1)
    if bf16:
        from ccount_core.nn.cpu_inference import check_bf16_packable

        check_bf16_packable()
    out_dir = Path(out_dir)
    stores = open_stores(data)
    counter = load_counter(model_path)
    card = counter.card
    names = ", ".join(str(path) for path, _ in stores)
    labels = tuple(counter.label_names)
    # one preparation per distinct configuration; every member counts the images it wants
    splits: dict[str, Any] = {}
    for _, member in counter.members:
        cfg = PreprocessConfig.from_dict(member["preprocess"])
        if cfg.to_json() not in splits:
            splits[cfg.to_json()] = prepare_splits(
                stores, split, cfg, labels, limit, None, prepare_progress
            )
    if len(splits) > 1:  # the images every preparation could make
        common = functools.reduce(np.intersect1d, [s.ids for s in splits.values()])
        splits = {k: s.select(common) for k, s in splits.items()}
    prepared = next(iter(splits.values()))
    if len(prepared.images) == 0:
        raise InputError(f"split: no prepared images in the {split} split of {names}")
    member_images = [
        splits[PreprocessConfig.from_dict(member["preprocess"]).to_json()].images
        for _, member in counter.members
    ]
    settings = {"tta": tta, "bf16": bf16, "batch_size": batch_size, "ids": prepared.ids}
    partial = _open_partial(out_dir / PARTIAL_DIR, _run_key(counter, member_images, settings))
    outputs = []
    nets = counter.packed_for_cpu(bf16)
    for k, (net, images) in enumerate(zip(nets, member_images, strict=True)):
        p = _predict_blocks(net, images, batch_size, tta, partial / f"member{k}", progress)
        outputs.append((p, np.full_like(p, np.nan)))
    pred = counter.combine(outputs)[0]
    metrics = bin_metrics(pred[:, 0], prepared.labels[:, 0])
    metrics["paper_comparison"] = paper_table(metrics)
    metrics["split"] = split
    metrics["data"] = [str(path) for path, _ in stores]
    metrics["model"] = str(model_path) if model_path is not None else "default"
    metrics["label"] = card["label_names"][0]
    # a model that also counts dark species: each further output's overall figures, and its
    # figures per bin of its own true number (the uncertainty count gives that species)
    others = {
        name: bin_metrics(pred[:, j], prepared.labels[:, j])
        for j, name in enumerate(card["label_names"])
        if j > 0
    }
    metrics["other_labels"] = {name: m["overall"] for name, m in others.items()}
    metrics["other_bins"] = {name: m["bins"] for name, m in others.items()}
    metrics["tta"] = tta
    metrics["precision"] = "bfloat16" if bf16 else "float32"
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out_dir / "metrics.json", (json.dumps(metrics, indent=2) + "\n").encode())
    buf = io.StringIO()
    writer = csv.writer(buf)
    others = card["label_names"][1:]
    writer.writerow(
        [
            "true",
            "predicted",
            *(f"{kind}_{name}" for name in others for kind in ("true", "predicted")),
            "image",
        ]
    )
    pairs = np.stack([prepared.labels, pred], axis=2).reshape(len(pred), -1)  # true, pred, ...
    ids = prepared.ids if prepared.ids is not None else np.full(len(pred), -1)
    writer.writerows([*row, int(i)] for row, i in zip(pairs.tolist(), ids, strict=True))
    atomic_write_bytes(out_dir / "predictions.csv", buf.getvalue().encode())
    figure3(pred[:, 0], prepared.labels[:, 0], metrics, out_dir / "figure3.png")
    shutil.rmtree(partial)
    return metrics


def _run_key(counter: Any, images: Sequence[np.ndarray], settings: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of what the predictions depend on: each member's card and weights, the
    prepared images of each member and ``settings`` (JSON-able values or arrays)."""
    import torch

    h = hashlib.sha256()
    for net, card in counter.members:
        h.update(json.dumps(card, sort_keys=True, default=str).encode())
        for name, t in net.state_dict().items():
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    for block in images:
        h.update(np.ascontiguousarray(block, np.float32).data)
    for name, value in sorted(settings.items()):
        h.update(f"{name}={np.asarray(value).tolist()!r}".encode())
    return h.hexdigest()


def _open_partial(folder: Path, key: str) -> Path:
    """``folder`` holding the blocks of a run with ``key``; emptied when they are another's."""
    from ccount_core.files import atomic_write_bytes

    key_file = folder / "key"
    if folder.exists() and not (key_file.is_file() and key_file.read_text() == key):
        shutil.rmtree(folder)
    if not folder.exists():
        folder.mkdir(parents=True)
        atomic_write_bytes(key_file, key.encode())
    return folder


def _predict_blocks(
    net: Any,
    images: np.ndarray,
    batch_size: int,
    tta: int,
    stem: Path,
    progress: ProgressCallback | None,
) -> np.ndarray:
    """:func:`predict` on ``images`` ``(n, H, W)`` → ``(n, n_outputs)``, a block at a time:
    each block is read from ``<stem>.<first image>.npy`` when there, else counted and saved
    there (atomically). Blocks are whole batches, so the numbers are those of one call."""
    from ccount_core.files import atomic_write_bytes
    from ccount_core.nn.inference import predict

    n = len(images)
    size = batch_size * -(-CHECKPOINT_IMAGES // batch_size)
    parts = []
    for s in range(0, n, size):
        path = stem.with_name(f"{stem.name}.{s:010d}.npy")
        if path.is_file():
            part = np.load(path)
            report(progress, min(s + size, n), n)
        else:

            def shifted(done: int, _total: int, s: int = s) -> None:
                report(progress, s + done, n)

            part = predict(net, images[s : s + size], batch_size, tta=tta, seed=s, progress=shifted)
            buf = io.BytesIO()
            np.save(buf, part)
            atomic_write_bytes(path, buf.getvalue())
        parts.append(part)
    return np.concatenate(parts)
