"""Random augmentation of batches of prepared images (torch, seeded, on any device).

Geometry as in the paper (rotation, shift off centre, enlarging and shrinking) plus what makes
simulated images robust to real cameras (blur, brightness and gamma, Gaussian and shot noise).
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

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> AugmentConfig:
        return cls(**data)


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
    gain = (1.0 + _uniform(b, cfg.gain, gen, device)).view(b, 1, 1, 1)
    return rel * peak * gain


def tta_views(x: torch.Tensor, k: int, seed: int = 0) -> torch.Tensor:
    """``k`` mildly changed views of each image for test-time augmentation.

    ``x`` ``(B, 1, H, W)`` -> ``(k, B, 1, H, W)``: small rotations (±3°), shifts (±2% of the
    side) and random flips, drawn from ``seed``; never a change of size, which training does
    not make either (``AugmentConfig.scale = 0``).
    """
    gen = torch.Generator(device=x.device).manual_seed(seed)
    return torch.stack(
        [
            geometric(x, gen, rotation_deg=3.0, shift_frac=0.02, scale=0.0, flip=True)
            for _ in range(k)
        ]
    )
