"""A small synthetic Coulomb-crystal generator with known geometry.

The image tests get it as the ``synthetic_crystal`` and ``ion_positions`` fixtures
(``conftest.py`` here); benchmarks/bench_preprocess.py imports it. Its own checks are in
``test_preprocess_synthetic.py``.

The crystal is a spheroid (semi-axis ``a_t`` along the trap axis, ``a_r`` radially) filled
with concentric ellipsoidal shells of ions (as real crystals are), shell spacing ``spacing``
px, ions spaced about ``spacing`` apart on each shell with a jitter of 0.1 spacing. The
camera looks perpendicular to the trap axis; ions are weighted by a Gaussian depth of field
and drawn as Gaussian spots. Truth: the ellipse of the outermost shell's ion centres.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi

from ccount_core.image.ellipse import Ellipse


def ion_positions(
    a_t: float, a_r: float, spacing: float, rng: np.random.Generator, hollow: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Ion positions ``(N, 3)`` px as (along trap axis, radial in image, depth) and shell index.

    ``hollow``: fraction of the radial semi-axis inside which there are no bright ions.
    """
    pts, shell_idx = [], []
    n_shells = int(a_r / spacing)
    golden = math.pi * (3.0 - math.sqrt(5.0))
    for j in range(n_shells):
        s = 1.0 - j * spacing / a_r
        if s * a_r < max(hollow * a_r, 0.5 * spacing):
            break
        at, ar = s * a_t, s * a_r
        # Surface area of the spheroid (approximate, Knud Thomsen) -> number of ions.
        p = 1.6075
        area = 4 * math.pi * (((at * ar) ** p * 2 + (ar * ar) ** p) / 3) ** (1 / p)
        n = max(1, round(area / spacing**2 * 1.15))
        k = np.arange(n) + 0.5
        z = 1 - 2 * k / n
        r = np.sqrt(1 - z * z)
        phi = golden * k + rng.uniform(0, 2 * math.pi)
        unit = np.column_stack([z, r * np.cos(phi), r * np.sin(phi)])
        xyz = unit * np.array([at, ar, ar])
        xyz += rng.normal(0, 0.1 * spacing, xyz.shape)
        pts.append(xyz)
        shell_idx.append(np.full(n, j))
    return np.vstack(pts), np.concatenate(shell_idx)


def synthetic_crystal(
    shape: tuple[int, int] = (256, 256),
    center: tuple[float, float] = (128.0, 128.0),
    a_t: float = 80.0,
    a_r: float = 45.0,
    angle_deg: float = 0.0,
    spacing: float = 7.0,
    spot_sigma: float = 1.3,
    depth_of_field: float = 10.0,
    peak: float = 1000.0,
    seed: int = 0,
    snr: float | None = None,
    hot_pixels: int = 0,
    gradient: float = 0.0,
    hollow: float = 0.0,
    dim_outer: float = 1.0,
    uneven: float = 0.0,
    offset: float = 100.0,
) -> tuple[np.ndarray, Ellipse]:
    """Render one crystal; returns ``(image (rows, cols) float32, truth Ellipse)``.

    ``angle_deg``: trap-axis direction from +col, counter-clockwise as displayed. ``snr``:
    ``peak`` over the Gaussian noise σ. ``gradient``: background rise across the frame, as a
    fraction of ``peak``. ``dim_outer``: brightness factor of the outer shell. ``uneven``:
    brightness falls linearly by this fraction from one end of the trap axis to the other.
    """
    rng = np.random.default_rng(seed)
    xyz, shell = ion_positions(a_t, a_r, spacing, rng, hollow)
    weight = np.exp(-0.5 * (xyz[:, 2] / depth_of_field) ** 2)
    weight[shell == 0] *= dim_outer
    weight *= 1.0 - uneven * (xyz[:, 0] / a_t + 1.0) / 2.0
    t = math.radians(angle_deg)
    tr, tc = -math.sin(t), math.cos(t)  # trap axis in (row, col)
    nr, nc = tc, -tr  # radial image axis (perpendicular)
    rows = center[0] + xyz[:, 0] * tr + xyz[:, 1] * nr
    cols = center[1] + xyz[:, 0] * tc + xyz[:, 1] * nc
    img = np.zeros(shape, dtype=np.float64)
    r0, c0 = np.floor(rows).astype(int), np.floor(cols).astype(int)
    fr, fc = rows - r0, cols - c0
    for dr, dc, wgt in (
        (0, 0, (1 - fr) * (1 - fc)),
        (1, 0, fr * (1 - fc)),
        (0, 1, (1 - fr) * fc),
        (1, 1, fr * fc),
    ):
        rr, cc = r0 + dr, c0 + dc
        ok = (rr >= 0) & (rr < shape[0]) & (cc >= 0) & (cc < shape[1])
        np.add.at(img, (rr[ok], cc[ok]), (weight * wgt)[ok])
    img = ndi.gaussian_filter(img, spot_sigma) * (2 * math.pi * spot_sigma**2) * peak
    img += offset
    if gradient:
        rr, cc = np.mgrid[0 : shape[0], 0 : shape[1]]
        img += gradient * peak * (0.6 * rr / shape[0] + 0.8 * cc / shape[1])
    if snr is not None:
        img += rng.normal(0.0, peak / snr, shape)
    if hot_pixels:
        flat = rng.choice(img.size, hot_pixels, replace=False)
        img.ravel()[flat] = 30.0 * peak
    truth = Ellipse.from_axes(center[0], center[1], a_t, a_r, angle_deg)
    return img.astype(np.float32), truth
