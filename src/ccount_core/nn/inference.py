"""Run a counting network on prepared images: one batch (:func:`infer`) or many (:func:`predict`).

Both run in inference mode on the network's device and give ion numbers (float32). With
``tta=K`` each image is also seen in K mildly changed views (``ccount_core.nn.augment.tta_views``)
and its count is the mean over the K + 1 predictions. :func:`predict` is the one batched loop
that training's validation and ``evaluate`` run; ``count_stack`` calls :func:`infer` per batch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ccount_core.nn.cpu_inference import PackedCpuNet
from ccount_core.progress import ProgressCallback, report


def amp_dtype(device: torch.device) -> torch.dtype:
    """The mixed-precision dtype on ``device``: bfloat16 where the device has it; float16
    (which needs loss scaling when training) on an older GPU."""
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def infer(
    model: Any, images: np.ndarray, tta: int = 0, seed: int = 0, bf16: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """``(counts (B, k), spread (B, k))`` for prepared images ``(B, H, W)``, in one pass.

    Runs on the model's device. Without TTA the spread is NaN; with ``tta=K`` the count
    is the mean of the plain and K changed views (drawn from ``seed``) and the spread their
    standard deviation (ions). ``bf16``: bfloat16 autocast (a packed network runs in its own
    precision, ``ccount_core.nn.cpu_inference``).
    """
    from ccount_core.nn.augment import tta_views

    device = next(model.parameters()).device
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))[:, None]
    if tta > 0:
        x = torch.cat([x[None], tta_views(x, tta, seed)]).flatten(0, 1)
    x = x.to(device)
    bf16 = bf16 and not isinstance(model, PackedCpuNet)
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        if bf16:
            x = x.contiguous(memory_format=torch.channels_last)
        y = model(x).float().cpu().numpy()
    if tta <= 0:
        return y, np.full_like(y, np.nan)
    y = y.reshape(tta + 1, len(images), -1)
    return y.mean(axis=0), y.std(axis=0, ddof=1)


def predict(
    model: Any,
    images: np.ndarray,
    batch_size: int = 64,
    *,
    tta: int = 0,
    seed: int = 0,
    amp: bool = False,
    progress: ProgressCallback | None = None,
) -> np.ndarray:
    """Ion numbers ``(n, n_outputs)`` float32 for prepared images ``(n, H, W)``, counted
    ``batch_size`` at a time in order (the model is put in eval mode).

    ``tta=K``: each count is the mean over the plain and K changed views (:func:`infer`; the
    views of the batch that starts at image ``s`` are drawn from seed ``seed + s``: the images
    from ``s0`` on, given with ``seed=s0``, count as in a call on all). ``amp``: mixed
    precision (:func:`amp_dtype`) on a GPU, for the plain view; ignored on a CPU.
    """
    device = next(model.parameters()).device
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        batch = np.asarray(images[start : start + batch_size], np.float32)
        if tta > 0:
            out.append(infer(model, batch, tta, seed=seed + start)[0])
        else:
            out.append(_plain(model, batch, device, amp and device.type == "cuda"))
        report(progress, min(start + batch_size, len(images)), len(images))
    return np.concatenate(out) if out else np.zeros((0, model.n_outputs), np.float32)


def _plain(model: Any, batch: np.ndarray, device: torch.device, amp: bool) -> np.ndarray:
    """The model's output ``(B, n_outputs)`` float32 for a batch ``(B, H, W)`` float32, its
    input in channels-last order, under autocast to :func:`amp_dtype` when ``amp``."""
    x = torch.from_numpy(batch)[:, None].to(device).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), torch.autocast(device.type, dtype=amp_dtype(device), enabled=amp):
        return model(x).float().cpu().numpy()


__all__ = ["amp_dtype", "infer", "predict"]
