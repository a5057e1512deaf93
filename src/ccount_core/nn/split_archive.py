"""Split archives: prepared splits in one compact file, to train where the data set's store
is not.

A GPU machine that cannot reach the raw store (gigabytes of 240 × 320 float32 frames) needs
only the prepared images. ``save_split_archive`` stores each image as 8-bit levels between its own
minimum and maximum (a quantisation step of 1/255 of its range, far below the noise training
adds), with the labels and a JSON ``meta`` (the preprocessing configuration, label names,
data summary), LZMA-compressed: about 0.7 kB per 96 × 48 prepared image instead of 18 kB.
``load_split_archive`` returns the split as float32 and ``meta``. The file is a ``.npz`` inside an
``.xz`` stream, read without pickle.
"""

from __future__ import annotations

import io
import json
import lzma
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ccount_core.errors import InputError
from ccount_core.files import atomic_write_bytes
from ccount_core.nn.training_data import Split

FORMAT = "ccount-packed-split"
"""Written in every archive; unchanged since the first ones, so that those still load."""
VERSION = 1


def quantise(images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(levels uint8 (n, H, W), low (n,), high (n,))`` of images ``(n, H, W)``."""
    x = np.asarray(images, np.float32)
    low = x.min(axis=(1, 2)) if len(x) else np.zeros(0, np.float32)
    high = x.max(axis=(1, 2)) if len(x) else np.zeros(0, np.float32)
    span = np.where(high > low, high - low, 1.0).astype(np.float32)
    levels = np.rint((x - low[:, None, None]) * (255.0 / span)[:, None, None])
    return levels.astype(np.uint8), low.astype(np.float32), high.astype(np.float32)


def dequantise(levels: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Images ``(n, H, W)`` float32 from :func:`quantise`'s output."""
    step = ((high - low) / 255.0).astype(np.float32)
    return levels.astype(np.float32) * step[:, None, None] + low[:, None, None]


def save_split_archive(path: Path | str, split: Split, meta: Mapping[str, Any]) -> Path:
    """Write ``split`` and ``meta`` (plain JSON values) to ``path`` (atomically)."""
    levels, low, high = quantise(split.images)
    header = {"format": FORMAT, "version": VERSION, "meta": dict(meta)}
    buf = io.BytesIO()
    np.savez(
        buf,
        levels=levels,
        low=low,
        high=high,
        labels=np.asarray(split.labels, np.float32),
        header=np.frombuffer(json.dumps(header).encode(), np.uint8),
    )
    path = Path(path)
    atomic_write_bytes(path, lzma.compress(buf.getvalue(), preset=6))
    return path


def load_split_archive(path: Path | str) -> tuple[Split, dict[str, Any]]:
    """The split (float32 images, labels) and ``meta`` stored by :func:`save_split_archive`."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"split archive: no such file: {path}")
    try:
        raw = lzma.decompress(path.read_bytes())
        with np.load(io.BytesIO(raw), allow_pickle=False) as z:
            header = json.loads(bytes(z["header"]).decode())
            levels, low, high, labels = z["levels"], z["low"], z["high"], z["labels"]
    except (lzma.LZMAError, ValueError, KeyError, OSError) as exc:
        raise InputError(f"split archive: {path} is not one ({exc})") from None
    if header.get("format") != FORMAT:
        raise InputError(f"split archive: {path} is not one (format {header.get('format')!r})")
    return Split(dequantise(levels, low, high), labels), header["meta"]


__all__ = ["dequantise", "load_split_archive", "quantise", "save_split_archive"]
