"""Random augmentation of batches of prepared images (torch, seeded, on any device).

Geometry as in the paper (rotation, shift off centre, enlarging and shrinking) plus what makes
simulated images robust to real cameras (blur, brightness and gamma, Gaussian and shot noise)
and, off by default, what laboratory cameras leave in a prepared image (a cooling-beam
profile, a residual background gradient, hot pixels), with the definitions of
:mod:`ccount_core.simulation.camera`. ``PRESETS["camera"]`` switches them on.
All draws come from an explicit ``torch.Generator`` so that a step of training can be replayed
exactly (``seed`` and step number give the generator).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random changes; every change is drawn uniformly per image.

    rotation_deg: ± rotation about the image centre (degrees).
    shift_frac: ± shift as a fraction of the image side.
    scale: ± relative change of size (0.1: 0.9-1.1). A uniform resize is the image of a crystal
        with the same ions at another density (the count goes as (size / spacing)³), so the
        label stays right; off by default because the training set already spans the trap's
        densities and the prepared image keeps the physical scale. Set it to stand for an
        uncertain pixel-size calibration.
    flip: random vertical and horizontal flips (the crystal is symmetric under both).
    blur_sigma_px: Gaussian blur sigma drawn in [0, blur_sigma_px] (pixels).
    gain: ± relative brightness change; gamma: ± change of the gamma exponent.
    noise: Gaussian noise sigma drawn in [0, noise] times the image's maximum.
    shot_noise: Poisson-like noise strength drawn in [0, shot_noise] (relative).
    profile: a Gaussian cooling beam (``simulation.camera.LaserProfile``: exp(-2 d²/w²)),
        along the trap axis (2 images in 3: the crystal's sides dim) or across it (its tips
        dim), centred within ±20 % of the crystal's half-size; the waist puts the crystal's
        edge at 1 - u·profile of the centre, u uniform in [0, 1] (0.7: down to 30 %).
    background: a residual background plane inside the crystal's mask, rising from 0 to
        u·background × the image's peak across the image in a random direction.
    hot_pixels: a share u·hot_pixels of the pixels inside the mask gain up to the peak.
    """

    rotation_deg: float = 5.0
    shift_frac: float = 0.05
    scale: float = 0.0
    flip: bool = True
    blur_sigma_px: float = 1.0
    gain: float = 0.3
    gamma: float = 0.25
    noise: float = 0.04
    shot_noise: float = 0.05
    profile: float = 0.0
    background: float = 0.0
    hot_pixels: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> AugmentConfig:
        return cls(**data)


PRESETS = {
    "default": AugmentConfig(),
    "camera": AugmentConfig(
        blur_sigma_px=1.5, noise=0.06, shot_noise=0.1, profile=0.7, background=0.15, hot_pixels=1e-3
    ),
}
"""Named augmentations (``ccount train --augment NAME``): ``default`` as the shipped models
were trained; ``camera`` adds the cooling-beam profile, background gradients and hot pixels
and doubles the noise (EMCCD gain noise doubles the shot-noise variance)."""


def _uniform(n: int, half_width: float, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    return (torch.rand(n, generator=gen, device=device) * 2 - 1) * half_width


def geometric(
    x: torch.Tensor,
    gen: torch.Generator,
    rotation_deg: float,
    shift_frac: float,
    scale: float,
    flip: bool,
) -> torch.Tensor:
    """Rotate, shift, scale and flip each image of ``x`` ``(B, 1, H, W)``; zeros fill in."""
    b, device = x.shape[0], x.device
    theta = torch.deg2rad(_uniform(b, rotation_deg, gen, device))
    zoom = 1.0 + _uniform(b, scale, gen, device)
    # affine_grid maps output to input coordinates: enlarging the crystal by `zoom` samples
    # the input on a grid shrunk by 1/zoom.
    cos, sin = torch.cos(theta) / zoom, torch.sin(theta) / zoom
    sx = torch.ones(b, device=device)
    sy = torch.ones(b, device=device)
    if flip:
        sx = torch.where(torch.rand(b, generator=gen, device=device) < 0.5, -sx, sx)
        sy = torch.where(torch.rand(b, generator=gen, device=device) < 0.5, -sy, sy)
    tx = _uniform(b, 2 * shift_frac, gen, device)
    ty = _uniform(b, 2 * shift_frac, gen, device)
    mat = torch.stack(
        [torch.stack([cos * sx, -sin * sy, tx], 1), torch.stack([sin * sx, cos * sy, ty], 1)], 1
    )
    grid = F.affine_grid(mat.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def blur(x: torch.Tensor, sigma: torch.Tensor, max_sigma: float | None = None) -> torch.Tensor:
    """Gaussian blur of each image ``(B, 1, H, W)`` with its own sigma ``(B,)`` (pixels).

    ``max_sigma``: a bound on ``sigma`` (pixels) that sets the kernel's radius; give it on a
    GPU, where reading ``sigma.max()`` waits for the device.
    """
    b = x.shape[0]
    bound = float(sigma.max()) if max_sigma is None else max_sigma
    radius = max(1, math.ceil(3 * bound))
    offsets = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    s = sigma.clamp_min(1e-3).to(x.dtype)[:, None]
    kernel = torch.exp(-0.5 * (offsets[None, :] / s) ** 2)
    kernel = kernel / kernel.sum(dim=1, keepdim=True)  # (B, K)
    # One group per image: (1, B, H, W) convolved with B separable kernels.
    y = x.transpose(0, 1)
    y = F.conv2d(
        F.pad(y, (radius, radius, 0, 0), mode="replicate"), kernel[:, None, None, :], groups=b
    )
    y = F.conv2d(
        F.pad(y, (0, 0, radius, radius), mode="replicate"), kernel[:, None, :, None], groups=b
    )
    return y.transpose(0, 1)


def augment(x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    """A randomly changed copy of a batch of prepared images ``(B, 1, H, W)`` float32."""
    b, device = x.shape[0], x.device
    x = geometric(x, gen, cfg.rotation_deg, cfg.shift_frac, cfg.scale, cfg.flip)
    if cfg.blur_sigma_px > 0:
        sigma = torch.rand(b, generator=gen, device=device) * cfg.blur_sigma_px
        x = blur(x, sigma, max_sigma=cfg.blur_sigma_px)
    peak = x.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)
    rel = (x / peak).clamp_min(0)
    if cfg.gamma > 0:
        rel = rel ** (1.0 + _uniform(b, cfg.gamma, gen, device)).view(b, 1, 1, 1)
    if cfg.shot_noise > 0:
        k = (torch.rand(b, generator=gen, device=device) * cfg.shot_noise).view(b, 1, 1, 1)
        rel = rel + k * rel.sqrt() * torch.randn(x.shape, generator=gen, device=device)
    if cfg.noise > 0:
        s = (torch.rand(b, generator=gen, device=device) * cfg.noise).view(b, 1, 1, 1)
        rel = rel + s * torch.randn(x.shape, generator=gen, device=device)
    inside = x > 0  # the crystal's mask (the preparation zeroes everything outside)
    if cfg.profile > 0:
        rel = rel * beam_profile(inside, cfg.profile, gen)
    if cfg.background > 0:
        rel = rel + inside * gradient_plane(x.shape, cfg.background, gen, device)
    if cfg.hot_pixels > 0:
        share = (torch.rand(b, generator=gen, device=device) * cfg.hot_pixels).view(b, 1, 1, 1)
        hot = torch.rand(x.shape, generator=gen, device=device) < share
        rel = rel + (hot & inside) * torch.rand(x.shape, generator=gen, device=device)
    gain = (1.0 + _uniform(b, cfg.gain, gen, device)).view(b, 1, 1, 1)
    return rel * peak * gain


def beam_profile(inside: torch.Tensor, depth: float, gen: torch.Generator) -> torch.Tensor:
    """Relative intensity ``(B, 1, H, W)`` of a Gaussian beam per image of the mask ``inside``
    (``AugmentConfig.profile``); the trap axis runs along the rows (prepared images)."""
    b, _, h, w = inside.shape
    device = inside.device
    rows = torch.arange(h, device=device, dtype=torch.float32)
    cols = torch.arange(w, device=device, dtype=torch.float32)
    along = torch.rand(b, generator=gen, device=device) < 2.0 / 3.0
    level = 1.0 - torch.rand(b, generator=gen, device=device) * depth
    shift = _uniform(b, 0.2, gen, device)
    # a beam along the trap axis dims across it (columns), one across it along the rows
    on_cols, on_rows = inside[:, 0].any(dim=1), inside[:, 0].any(dim=2)  # (B, W), (B, H)
    c0, c1 = _extent(on_cols)
    r0, r1 = _extent(on_rows)
    lo, hi = torch.where(along, c0, r0), torch.where(along, c1, r1)
    centre, half = (lo + hi) / 2, ((hi - lo) / 2).clamp_min(1.0)
    w2 = 2.0 * half**2 / torch.log(1.0 / level.clamp_min(1e-3))
    d_cols = cols[None, :] - (centre + shift * half)[:, None]  # (B, W)
    d_rows = rows[None, :] - (centre + shift * half)[:, None]  # (B, H)
    prof_cols = torch.exp(-2.0 * d_cols**2 / w2[:, None])[:, None, :].expand(b, h, w)
    prof_rows = torch.exp(-2.0 * d_rows**2 / w2[:, None])[:, :, None].expand(b, h, w)
    return torch.where(along[:, None, None], prof_cols, prof_rows)[:, None]


def _extent(on: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """First and last index (float) where each row of ``on`` ``(B, n)`` is True (0, n - 1
    when none is)."""
    n = on.shape[1]
    idx = torch.arange(n, device=on.device, dtype=torch.float32)
    first = torch.where(on, idx, float(n)).amin(dim=1)
    last = torch.where(on, idx, -1.0).amax(dim=1)
    empty = ~on.any(dim=1)
    return torch.where(empty, 0.0, first), torch.where(empty, float(n - 1), last)


def gradient_plane(
    shape: torch.Size, strength: float, gen: torch.Generator, device: torch.device
) -> torch.Tensor:
    """``(B, 1, H, W)`` planes rising from 0 to u·``strength`` across each image in a random
    direction (``simulation.camera.Background``'s gradient, relative to the peak)."""
    b, _, h, w = shape
    angle = torch.rand(b, generator=gen, device=device) * (2 * math.pi)
    amp = torch.rand(b, generator=gen, device=device) * strength
    rows = torch.arange(h, device=device, dtype=torch.float32).view(1, h, 1)
    cols = torch.arange(w, device=device, dtype=torch.float32).view(1, 1, w)
    proj = cols * torch.cos(angle).view(b, 1, 1) - rows * torch.sin(angle).view(b, 1, 1)
    lo = proj.amin(dim=(1, 2), keepdim=True)
    span = (proj.amax(dim=(1, 2), keepdim=True) - lo).clamp_min(1e-6)
    return ((proj - lo) / span * amp.view(b, 1, 1))[:, None]


def tta_views(x: torch.Tensor, k: int, seed: int = 0) -> torch.Tensor:
    """``k`` changed views of each image for test-time augmentation.

    ``x`` ``(B, 1, H, W)`` -> ``(k, B, 1, H, W)``. The first view is the image turned by 180°
    about its centre: a crystal's frame and its 180° turn prepare as turns of each other, and
    a network counts the two apart (the shipped default by up to 5 %), so with it the count
    does not depend on which way up the camera sees the crystal. The others are small
    rotations (±3°), shifts (±2% of the side) and random flips, drawn from ``seed``; never a
    change of size, which training does not make either (``AugmentConfig.scale = 0``).
    """
    gen = torch.Generator(device=x.device).manual_seed(seed)
    views = [torch.flip(x, dims=(-2, -1))][:k]
    views += [
        geometric(x, gen, rotation_deg=3.0, shift_frac=0.02, scale=0.0, flip=True)
        for _ in range(k - 1)
    ]
    return torch.stack(views) if views else x.new_zeros((0, *x.shape))
