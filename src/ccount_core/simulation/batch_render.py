"""Sampled positions of many crystals → their images, in torch on any device.

The formulas of :mod:`ccount_core.simulation.render` (``_render_light``), crystal by crystal
and batched: the same view and rotation, depth slices one pixel thick keyed by |Δ|, the same
padding, the same bounding-box region, and the same cascade of Gaussian blurs (scipy's
kernels: radius int(4σ + 0.5), normalised, zero outside) from the most defocused slice
inwards, skipping a crystal's empty slices as ``render`` does. A test checks that the images
equal ``render``'s noise-free ones within float32 rounding.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ccount_core.errors import InputError
from ccount_core.simulation.render import _MAX_PAD_PX, _TRUNCATE, ImagingSettings


def _sigma_px(imaging: ImagingSettings, key: torch.Tensor) -> torch.Tensor:
    """σ in pixels (float64) of the slices ``key`` (|Δ| = (key + ½) pixels)."""
    defocus = (key.to(torch.float64) + 0.5) * imaging.pixel_size
    w0 = imaging.blur / imaging.pixel_size
    return w0 / math.sqrt(2.0) * (1.0 + defocus.abs() / imaging.depth_of_field)


def _blur(acc: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Each image of acc (B, H, W) blurred by its own Gaussian σ (B,) px (float64; σ ≤ 1e-15
    leaves it unchanged), scipy's ``gaussian_filter`` with truncate 4, mode "constant"."""
    radius = torch.where(sigma > 1e-15, torch.floor(_TRUNCATE * sigma + 0.5), 0.0)
    r_max = int(radius.max())
    if r_max == 0:
        return acc
    x = torch.arange(-r_max, r_max + 1, device=acc.device, dtype=torch.float64)
    s2 = torch.where(sigma > 1e-15, sigma, 1.0)[:, None] ** 2
    w = torch.exp(-0.5 * x**2 / s2) * (x.abs() <= radius[:, None])
    w = (w / w.sum(1, keepdim=True)).to(acc.dtype)
    b = acc.shape[0]
    out = F.conv2d(acc[None], w.view(b, 1, -1, 1), padding=(r_max, 0), groups=b)
    return F.conv2d(out, w.view(b, 1, 1, -1), padding=(0, r_max), groups=b)[0]


def _render_chunk(
    samples: torch.Tensor, lit: torch.Tensor, imaging: ImagingSettings
) -> torch.Tensor:
    """Images (B, rows, cols) of samples (B, S, N, 3) m where lit (B, N)."""
    dtype, device = samples.dtype, samples.device
    b_count, s_count = samples.shape[:2]
    rows, cols = imaging.shape
    p = imaging.pixel_size
    valid = lit[:, None, :].expand(samples.shape[:3]).reshape(b_count, -1)
    pts = torch.where(valid[..., None], samples.reshape(b_count, -1, 3), 0.0)
    theta, phi = math.radians(imaging.rotation_deg), math.radians(imaging.view_azimuth_deg)
    x = pts[..., 0] * math.cos(phi) - pts[..., 1] * math.sin(phi)
    y = pts[..., 0] * math.sin(phi) + pts[..., 1] * math.cos(phi)
    z = pts[..., 2]
    u = z * math.cos(theta) + x * math.sin(theta)
    v = -z * math.sin(theta) + x * math.cos(theta)
    slice_index = torch.floor((y - imaging.focal_offset) / p).to(torch.int64)
    key = torch.where(slice_index >= 0, slice_index, -slice_index - 1)
    key_max = torch.where(valid, key, -1).amax(1)
    pad = torch.clamp(torch.ceil(_TRUNCATE * _sigma_px(imaging, key_max)) + 1, max=_MAX_PAD_PX)
    pad = pad.to(torch.int64)[:, None]
    col = torch.floor(u / p + cols / 2).to(torch.int64) + pad
    row = torch.floor(v / p + rows / 2).to(torch.int64) + pad
    valid &= (row >= 0) & (row < rows + 2 * pad) & (col >= 0) & (col < cols + 2 * pad)
    out = torch.zeros((b_count, rows, cols), dtype=dtype, device=device)
    any_point = valid.any(1)
    if not bool(any_point.any()):
        return out
    big = torch.iinfo(torch.int64).max
    r0 = torch.clamp(torch.where(valid, row, big).amin(1, keepdim=True) - pad, min=0)
    r1 = torch.minimum(torch.where(valid, row, -1).amax(1, keepdim=True) + pad + 1, rows + 2 * pad)
    c0 = torch.clamp(torch.where(valid, col, big).amin(1, keepdim=True) - pad, min=0)
    c1 = torch.minimum(torch.where(valid, col, -1).amax(1, keepdim=True) + pad + 1, cols + 2 * pad)
    p_all = int(torch.where(any_point[:, None], pad, 0).max())
    shift = p_all - pad  # a crystal's canvas sits at this offset in the common canvas
    height, width = rows + 2 * p_all, cols + 2 * p_all
    ar_h = torch.arange(height, device=device)
    ar_w = torch.arange(width, device=device)
    region = ((ar_h >= r0 + shift) & (ar_h < r1 + shift))[:, :, None] & (
        (ar_w >= c0 + shift) & (ar_w < c1 + shift)
    )[:, None, :]
    batch_id = torch.arange(b_count, device=device)[:, None].expand_as(row)
    flat = (batch_id * height + row + shift) * width + col + shift
    flat, key = flat[valid], key[valid]
    n_keys = int(key.max()) + 1
    counts = torch.bincount(batch_id[valid] * n_keys + key, minlength=b_count * n_keys)
    counts = counts.view(b_count, n_keys)
    order = torch.argsort(key, descending=True)
    flat = flat[order]
    ends = torch.cumsum(counts.sum(0).flip(0), 0).tolist()  # keys n_keys-1 .. 0
    sigma_focus = float(imaging.sigma_px(0.0))
    acc = torch.zeros((b_count, height, width), dtype=dtype, device=device)
    prev = torch.zeros(b_count, dtype=torch.float64, device=device)
    has_prev = torch.zeros(b_count, dtype=torch.bool, device=device)
    start = 0
    for i, end in enumerate(ends):
        if end == start:
            continue
        k = n_keys - 1 - i
        sigma = float(imaging.sigma_px((k + 0.5) * p))
        here = counts[:, k] > 0
        step = torch.where(here & has_prev, torch.sqrt(torch.clamp(prev**2 - sigma**2, min=0)), 0.0)
        acc = _blur(acc, step) * region
        scale = 1.0 / s_count
        if imaging.defocus_weighting == "ccmd":
            scale *= (sigma_focus / sigma) ** 2
        weights = torch.full((end - start,), scale, dtype=dtype, device=device)
        acc.view(-1).index_add_(0, flat[start:end], weights)
        prev = torch.where(here, sigma, prev)
        has_prev |= here
        start = end
    acc = _blur(acc, torch.where(has_prev, prev, 0.0)) * region
    return acc[:, p_all : p_all + rows, p_all : p_all + cols].contiguous()


def render_batch(
    samples: torch.Tensor,
    fluorescing: torch.Tensor,
    imaging: ImagingSettings,
    chunk: int = 128,
) -> torch.Tensor:
    """Noise-free images of many crystals, as :func:`ccount_core.simulation.render.render`
    makes each one without a camera.

    Args:
        samples: (B, S, N, 3) positions x, y, z in m (padding allowed where not fluorescing).
        fluorescing: (B, N) bool, the ions that appear.
        imaging: the optics and frame (its camera is not applied).
        chunk: crystals rendered together (bounds the memory of the common canvas).

    Returns:
        (B, rows, cols) in ion exposures, samples' dtype and device.
    """
    if not isinstance(imaging, ImagingSettings):
        raise InputError("imaging: expected ImagingSettings")
    if samples.ndim != 4 or samples.shape[-1] != 3:
        raise InputError(f"samples: must have shape (B, S, N, 3) in m, got {tuple(samples.shape)}")
    if fluorescing.shape != (samples.shape[0], samples.shape[2]):
        raise InputError(
            f"fluorescing: must have shape (B, N) = {(samples.shape[0], samples.shape[2])},"
            f" got {tuple(fluorescing.shape)}"
        )
    lit = fluorescing.to(torch.bool)
    finite = torch.isfinite(samples).all(-1).all(1)
    if not bool((finite | ~lit).all()):
        raise InputError("samples: NaN or infinite positions of fluorescing ions")
    parts = [
        _render_chunk(samples[i : i + chunk], lit[i : i + chunk], imaging)
        for i in range(0, samples.shape[0], chunk)
    ]
    return torch.cat(parts)
