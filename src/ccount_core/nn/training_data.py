"""The data a run trains and is measured on: data-set stores, their labels, prepared splits.

``open_stores`` opens one store made by ``ccount dataset generate`` or several that count the
same species; ``resolve_labels`` picks the species a run learns; ``prepare_splits`` prepares
one split of them with the shared pipeline (``ccount_core.image.preprocess.prepare_stack``),
cached in the run directory, into a :class:`Split` of images, labels (ions) and image ids.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ccount_core.errors import InputError
from ccount_core.files import atomic_write_bytes
from ccount_core.progress import ProgressCallback


@dataclass
class Split:
    """Prepared images ``(n, H, W)`` float32 and labels ``(n, k)`` float32 (ions); ``ids``
    ``(n,)`` int64, when known, names each image (its index in its data set, plus the store's
    number times ``STORE_ID``), so two preparations of one split can be matched."""

    images: np.ndarray
    labels: np.ndarray
    ids: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.images.ndim != 3 or self.labels.ndim != 2 or len(self.images) != len(self.labels):
            raise InputError(
                f"split: images {self.images.shape} and labels {self.labels.shape} do not match"
            )
        if self.ids is not None and len(self.ids) != len(self.labels):
            raise InputError(f"split: {len(self.ids)} ids for {len(self.labels)} images")

    def select(self, ids: np.ndarray) -> Split:
        """The images whose ids are in ``ids``, in this split's order."""
        if self.ids is None:
            raise InputError("split: its images carry no ids")
        keep = np.isin(self.ids, ids)
        return Split(self.images[keep], self.labels[keep], self.ids[keep])


STORE_ID = 1 << 40
"""Image ids of the n-th joined store start at ``n * STORE_ID``."""


def _pixel_sizes_um(ds: Any, idx: np.ndarray) -> np.ndarray:
    """Camera pixel size (µm) of each selected row (the store's ``pixel_size_um`` column)."""
    column = ds.table.get("pixel_size_um") if hasattr(ds.table, "get") else None
    if column is None:
        raise InputError("data: the data set has no pixel_size_um column")
    return np.asarray(column, dtype=float)[idx]


def prepare_split(
    ds: Any,
    split: str,
    preprocess: Any,
    labels: tuple[str, ...] | None,
    limit: int | None,
    cache_dir: Path | None,
    progress: ProgressCallback | None = None,
    cache_tag: str = "",
) -> Split:
    """Prepared images and labels of one split of an opened data set (cached when asked, in
    ``cache_dir/prepared_{split}{cache_tag}.npy`` and ``.json``).

    Frames the pipeline cannot prepare (``bad_frames``) are left out. A wanted label the data
    set lacks is a species its spec does not hold: its count is 0 in every image (so a model
    that also counts dark ions learns from, and is measured on, pure crystals too).
    """
    import dask.array as da

    from ccount_core.image.preprocess import prepare_stack

    names = list(ds.label_names)
    wanted = list(labels) if labels else names[:1]
    idx = np.sort(np.asarray(ds.indices(split), dtype=np.int64))
    if limit is not None:
        idx = idx[:limit]
    store = getattr(ds, "path", None)
    store = str(Path(store).resolve()) if store else ""
    key = json.dumps(
        {
            "store": store,
            "split": split,
            "n": len(idx),
            "first": idx[:1].tolist(),
            "last": idx[-1:].tolist(),
            "labels": wanted,
            "preprocess": preprocess.to_dict(),
        },
        sort_keys=True,
    )
    if cache_dir is not None:
        img_path = cache_dir / f"prepared_{split}{cache_tag}.npy"
        meta_path = cache_dir / f"prepared_{split}{cache_tag}.json"
        if img_path.exists() and meta_path.exists():
            meta = json.loads(meta_path.read_text())
            if meta.get("key") == key:
                left_out = {int(k) for k in meta.get("bad_frames", {})}
                return Split(
                    np.load(img_path, mmap_mode="r"),
                    np.asarray(meta["labels"], np.float32),
                    np.asarray([i for i in idx if int(i) not in left_out], np.int64),
                )
    held = np.asarray(ds.labels, dtype=np.float32)[idx]
    labels_all = np.zeros((len(idx), len(wanted)), np.float32)
    for j, w in enumerate(wanted):
        if w in names:
            labels_all[:, j] = held[:, names.index(w)]
    if len(idx) == 0:
        return Split(np.zeros((0, 1, 1), np.float32), labels_all, idx)
    stack = da.from_zarr(ds.images) if not isinstance(ds.images, np.ndarray) else ds.images
    sizes = _pixel_sizes_um(ds, idx)
    images = np.zeros((len(idx), *preprocess.output_shape), np.float32)
    bad: dict[int, str] = {}
    for size in np.unique(sizes):
        rows = np.flatnonzero(sizes == size)
        out = prepare_stack(
            stack[idx[rows]], preprocess, camera_pixel_size_um=float(size), progress=progress
        ).compute()
        images[rows] = out.images
        bad.update({int(rows[i]): reason for i, reason in out.bad_frames.items()})
    keep = np.array([i not in bad for i in range(len(idx))], dtype=bool)
    images = images[keep]
    result = Split(images, labels_all[keep], idx[keep])
    if cache_dir is not None:
        buf = io.BytesIO()
        np.save(buf, images)
        atomic_write_bytes(img_path, buf.getvalue())
        atomic_write_bytes(
            meta_path,
            json.dumps(
                {
                    "key": key,
                    "labels": result.labels.tolist(),
                    "bad_frames": {str(int(idx[i])): r for i, r in bad.items()},
                }
            ).encode(),
        )
    return result


def data_summary(ds: Any, path: Path) -> dict[str, Any]:
    """What a model card records of the opened data set ``ds`` at ``path``: its path, number
    of images, label names and spec."""
    summary: dict[str, Any] = {
        "path": str(path),
        "n_images": len(ds.labels),
        "label_names": list(ds.label_names),
    }
    spec = getattr(ds, "spec", None)
    if spec is not None:
        summary["spec"] = spec.to_dict() if hasattr(spec, "to_dict") else spec
    return summary


def open_stores(data: Path | str | Sequence[Path | str]) -> list[tuple[Path, Any]]:
    """``[(path, opened data set), ...]`` for one store or several that count the same
    (laser-cooled, first-label) species; their dark species may differ."""
    from ccount_core.dataset import open_dataset

    paths = [Path(data)] if isinstance(data, (str, Path)) else [Path(d) for d in data]
    if not paths:
        raise InputError("data: give at least one data set")
    for path in paths:
        if not path.exists():
            raise InputError(f"data: no such data set: {path}")
    if len({p.resolve() for p in paths}) != len(paths):
        raise InputError("data: the same data set is given twice")
    stores = [(path, open_dataset(path)) for path in paths]
    cooled = stores[0][1].label_names[0]
    for path, ds in stores[1:]:
        if ds.label_names[0] != cooled:
            raise InputError(f"data: {path} counts {ds.label_names[0]}, {paths[0]} counts {cooled}")
    return stores


def resolve_labels(
    stores: Sequence[tuple[Path, Any]], labels: Sequence[str] | None
) -> tuple[str, ...]:
    """The labels a run learns: ``labels``, each held by at least one of ``stores`` (the
    others count 0 of it), or by default the counted (first) label."""
    held = {name for _, ds in stores for name in ds.label_names}
    unknown = [w for w in labels or () if w not in held]
    if unknown:
        raise InputError(
            f"labels: {unknown[0]!r} is not a species of the data set(s); they hold {sorted(held)}"
        )
    return tuple(labels) if labels else (stores[0][1].label_names[0],)


def prepare_splits(
    stores: Sequence[tuple[Path, Any]],
    split: str,
    preprocess: Any,
    labels: tuple[str, ...] | None,
    limit: int | None,
    cache_dir: Path | None,
    progress: ProgressCallback | None = None,
) -> Split:
    """One split of several data sets, prepared and joined in the order given; ``limit``
    counts over all of them. Each store's arrays are cached apart (``prepared_{split}.{i}``).
    A store without a label's species counts 0 of it."""
    parts: list[Split] = []
    left = limit
    for i, (_path, ds) in enumerate(stores):
        tag = "" if len(stores) == 1 else f".{i}"
        part = prepare_split(ds, split, preprocess, labels, left, cache_dir, progress, tag)
        parts.append(Split(part.images, part.labels, part.ids + i * STORE_ID))
        if left is not None:
            left = max(left - len(part.images), 0)
    if len(parts) == 1:
        return parts[0]
    shaped = [p for p in parts if len(p.images)] or parts[:1]
    return Split(
        np.concatenate([p.images for p in shaped]),
        np.concatenate([p.labels for p in shaped]),
        np.concatenate([p.ids for p in shaped]),
    )


__all__ = [
    "STORE_ID",
    "Split",
    "data_summary",
    "open_stores",
    "prepare_split",
    "prepare_splits",
    "resolve_labels",
]
