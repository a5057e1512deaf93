"""Crystal length and width from an image, measured the way the CCMD reference table was.

The reference table (shared/reference/ccmd_crystal_geometry.csv, from the public scripts of
sgkstev2/Coulomb-Crystal-Geometry-Scripts) measured CCMD's ``Calcium_image.png`` like this:

1. the image as 8-bit greyscale, CCMD-style: normalised to its maximum, times 254, truncated;
2. pixels above 5 are the crystal; the outline is the mask minus its binary erosion;
3. outline points more than 1.65 standard deviations from the mean in x or in y are dropped,
   and so are points within the script's frame margins (CCMD's PNG carries one blank row and
   column, and the script kept x in [10, 640], y in [10, 450] of the image turned upright:
   for a (rows, cols) frame here, cols >= 9 and rows 29 .. rows - 11);
4. an axis-aligned ellipse ((x-u)/a)² + ((y-w)/b)² = 1 is fitted by least squares
   (scipy ``least_squares``, started from the outline's bounding box, a and b bounded to
   0.5-1.5 of it and the centre to ±10 %);
5. length = 2a along the trap axis (columns), width = 2b (rows).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import binary_erosion
from scipy.optimize import least_squares

from ccount_core.errors import InputError


@dataclass(frozen=True)
class CrystalSize:
    """Fitted ellipse of a crystal outline.

    Attributes:
        length_um: full length along the trap axis (image columns), µm.
        width_um: full radial width (image rows), µm.
        centre_px: ellipse centre (row, col), pixels.
        n_points: outline points used in the fit.
    """

    length_um: float
    width_um: float
    centre_px: tuple[float, float]
    n_points: int


def to_ccmd_8bit(image: np.ndarray) -> np.ndarray:
    """CCMD's PNG conversion: ``uint8(image / max * 254)`` (truncating), (rows, cols)."""
    arr = np.asarray(image, dtype=np.float64)
    peak = arr.max() if arr.size else 0.0
    if not np.isfinite(peak) or peak <= 0:
        return np.zeros(arr.shape, np.uint8)
    return np.floor(np.clip(arr / peak, 0.0, 1.0) * 254.0).astype(np.uint8)


def measure_crystal_size(
    image: np.ndarray,
    pixel_size_um: float = 1.0,
    threshold: int = 5,
    outlier_sigma: float = 1.65,
) -> CrystalSize:
    """Length and width of the crystal in a noise-free rendered image (rows, cols).

    The crystal axis must run along the columns. Raises InputError when no crystal is found.
    """
    arr = np.asarray(image)
    if arr.ndim != 2:
        raise InputError(f"image must be 2-D (rows, cols), got shape {arr.shape}")
    if not pixel_size_um > 0:
        raise InputError(f"pixel_size_um must be positive, got {pixel_size_um!r}")
    mask = to_ccmd_8bit(arr) > threshold
    outline = mask ^ binary_erosion(mask)
    rows_idx, cols_idx = np.nonzero(outline)
    if rows_idx.size < 5:
        raise InputError("image: no crystal outline found (fewer than 5 outline pixels)")
    x = cols_idx.astype(np.float64)
    y = rows_idx.astype(np.float64)
    n_rows = arr.shape[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        zx = (x - x.mean()) / x.std()
        zy = (y - y.mean()) / y.std()
    keep = (
        (np.abs(zx) < outlier_sigma)
        & (np.abs(zy) < outlier_sigma)
        & (x >= 9)
        & (y >= 29)
        & (y <= n_rows - 11)
    )
    x, y = x[keep], y[keep]
    if x.size < 5:
        raise InputError("image: too few crystal outline points inside the measuring window")
    a, b, u, w = _fit_axis_aligned_ellipse(x, y)
    return CrystalSize(
        length_um=2.0 * a * pixel_size_um,
        width_um=2.0 * b * pixel_size_um,
        centre_px=(float(w), float(u)),
        n_points=int(x.size),
    )


def _fit_axis_aligned_ellipse(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float]:
    """Least-squares ((x-u)/a)² + ((y-w)/b)² - 1 = 0; returns a, b, u, w (pixels)."""
    u0 = (x.max() + x.min()) / 2
    w0 = (y.max() + y.min()) / 2
    a0 = max((x.max() - x.min()) / 2, 0.5)
    b0 = max((y.max() - y.min()) / 2, 0.5)
    init = np.array([a0, b0, u0, w0])
    lower = np.array([0.5 * a0, 0.5 * b0, 0.9 * u0, 0.9 * w0])
    upper = np.array([1.5 * a0, 1.5 * b0, 1.1 * u0, 1.1 * w0])

    def residuals(p: np.ndarray) -> np.ndarray:
        a, b, u, w = p
        return ((x - u) / a) ** 2 + ((y - w) / b) ** 2 - 1.0

    result = least_squares(residuals, init, bounds=(lower, upper), max_nfev=5000)
    a, b, u, w = result.x
    return float(a), float(b), float(u), float(w)
