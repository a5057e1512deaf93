"""Find the outline of a Coulomb crystal in a fluorescence frame.

Conventions (shared with :mod:`ccount_core.image.preprocess`):

- A frame is a 2-D array ``(rows, cols)``; pixel ``(r, c)`` has its centre at coordinate
  ``(r, c)``; row 0 is the top of the displayed image.
- :class:`Ellipse` is in the frame's pixels. ``angle_deg`` is the direction of the semi-major
  axis measured from the +column direction (pointing right), positive **counter-clockwise as
  displayed** (row 0 at the top), in ``(-90, 90]``. The unit vector along the major axis is
  ``(d_row, d_col) = (-sin(angle), cos(angle))``; ``angle_deg = 0`` is a horizontal crystal,
  ``90`` a vertical one.
- The fitted ellipse passes through the **outermost shell of ion centres** (the ring of ions at
  the crystal's edge), so that f = 1 on that shell in the paper's outer-layer enhancement
  (eq. 2-3). The ions' spots reach a spot radius beyond it; masks add a margin.

Algorithm (:func:`fit_ellipse`): 5-point median (hot pixels), block-average the frame to
about 128 px on the long side, 5-point median again, subtract a robust plane fitted to the
border (background gradient), Gaussian smoothing, threshold at half the Otsu level, keep the
largest connected region and any other at least a quarter its size (a wide dark core splits
the bright shell into parts), fill its holes or take the parts' convex hull, and take the
second moments: a coarse ellipse. A crystal thinner than 8 px of that copy (small in a large
frame) is looked for again the same way on a crop around it. Two or more large parts that are
each solid and not thin bands (unlike the arcs of one split shell) give the ellipse a note:
several crystals or blobs. Then refine on the frame (block-averaged to about 40 px per
semi-minor axis, 5-point median): in 36 angular sectors of the coarse ellipse, average the
intensity in bins of normalised radius and take the outermost bright peak (the outer shell's
ring), fit an ellipse to those points by least squares (Halir-Flusser direct fit) and drop outliers.
The profiles are smoothed along the radius by [1, 2, 1] / 4; with ``footprint`` each pixel's
light and weight are instead spread over a Gaussian of half a pixel in radius (never narrower
than that kernel), so that coarse pixels, only a few to a sector, leave no empty bins and no
jagged edge whose outermost spike is taken for the shell; where that leaves fewer than 12
sectors with a ring (a crystal a few pixels across) the [1, 2, 1] / 4 profiles are used.
``benchmarks/fit_pixel_size.py`` (52 crystals of 80-350 ions): the median semi-minor axis goes
from 5 % inside the outermost ions at 0.5 µm pixels to 6.5 % outside at 5 µm without it, and
stays 4.6-5.3 % inside with it; one crystal's spread over 0.5-5 µm, median 13.6 % -> 2.6 %.

Accuracy (tests): on synthetic shell crystals with noise SNR 3, hot pixels, gradients, hollow
cores, dim outer shells, uneven brightness and flattened shapes, centre < 1 px, semi-axes
< 2 %, angle < 1°. On the project's CCMD-like renders (blur 5 µm, depth of field 50 µm) the
semi-axes come out 1-5 % inside the outer-shell ellipsoid of the ion positions (a shell seen
in projection peaks slightly inside its limb) and the centre within ~1.5 px along the axis
(ragged tips). Without a visible shell ring (very large blur or depth of field) the fit falls
back to the thresholded outline, several per cent larger, with ``quality`` <= 0.3.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, fields, replace

import numba as nb
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import ndimage as ndi
from skimage.morphology import convex_hull_image

from ccount_core.errors import InputError
from ccount_core.image.kernels import (
    block_mean,
    finite_range,
    gaussian_weights,
    median5,
    median5_block_mean,
    robust_plane,
    separable_smooth,
)

__all__ = ["Ellipse", "as_float_frame", "check_dtype", "fit_ellipse", "fit_float_frame"]

_SMALL_SIDE = 128  # px: the coarse search works on a frame block-averaged to about this size
_PART_FRACTION = 0.25  # bright parts at least this share of the largest belong to the crystal
_N_SECTORS = 36
_FOOTPRINT_PX = 0.5  # px: the Gaussian (σ) a pixel's light is spread over along the radius
_RHO_MIN, _RHO_MAX, _N_BINS = 0.55, 1.35, 64  # normalised-radius range and bins of the profiles
_CLIMB = round(0.15 / ((_RHO_MAX - _RHO_MIN) / _N_BINS))  # bins: a ring's dip lies within
_MIN_POINTS = 12  # sectors with a ring peak needed for the shell fit
_MIN_SIDE = 16  # px: smaller frames are refused
# A coarse crystal thinner than this (px of the block-averaged copy) is looked for again on
# a crop _ZOOM_WINDOW coarse semi-major axes around it, at a finer scale: a small crystal in
# a large frame is only a few px of the 128 px copy, blurred to a blob several times its size.
_ZOOM_MINOR = 8.0
_ZOOM_WINDOW = 3.0
# A bright part is a crystal (or blob) of its own when its hole-filled area covers this share
# of its convex hull and its semi-axes differ less than _BAND: the parts a wide dark core
# splits one shell into are thin curved arcs (sample "reaction_series": solidity 0.79-0.85,
# axis ratio ~8), whole crystals are solid (0.96-0.97, ratio 2-3).
_SOLID = 0.9
_BAND = 4.0


@dataclass(frozen=True)
class Ellipse:
    """An ellipse in a frame's pixel coordinates.

    Attributes:
        center_row, center_col: centre (px; pixel centres at integer coordinates).
        semi_major, semi_minor: semi-axes (px), ``semi_major >= semi_minor > 0``.
        angle_deg: direction of the semi-major axis (deg) from the +column direction,
            counter-clockwise as displayed (row 0 on top), in ``(-90, 90]``.
        quality: 0..1, how well the outline was determined (1 for a user-drawn ellipse).
        notes: what the fit noticed about the frame that makes a count doubtful (e.g. several
            crystals), one short phrase each; not part of the geometry (ignored by ``==`` and
            :meth:`to_dict`).
        pixel_noise, halo_light: the frame's pixel-to-pixel noise and the light just
            outside the crystal, relative to its crystal's light (dimensionless,
            ``ccount_core.image.preprocess.pixel_noise``, ``ccount_core.image.halo.halo_light``)
            as the preparation's camera checks measured them, NaN where not measured; not
            geometry either (counting corrects the count for them and widens its uncertainty
            with the noise: ``ccount_core.nn.calibration``, ``ccount_core.nn.count``).
    """

    center_row: float
    center_col: float
    semi_major: float
    semi_minor: float
    angle_deg: float
    quality: float = 1.0
    notes: tuple[str, ...] = field(default=(), compare=False)
    pixel_noise: float = field(default=math.nan, compare=False)
    halo_light: float = field(default=math.nan, compare=False)

    def __post_init__(self) -> None:
        vals = (
            self.center_row,
            self.center_col,
            self.semi_major,
            self.semi_minor,
            self.angle_deg,
            self.quality,
        )
        if not all(math.isfinite(float(v)) for v in vals):
            raise InputError(f"ellipse: all fields must be finite numbers, got {self}")
        if not self.semi_minor > 0:
            raise InputError(f"ellipse: semi-axes must be > 0 px, got {self.semi_minor}")
        if self.semi_major < self.semi_minor:
            raise InputError(
                f"ellipse: semi_major must be >= semi_minor ({self.semi_major} < {self.semi_minor})"
            )
        if not 0.0 <= self.quality <= 1.0:
            raise InputError(f"ellipse: quality must be in [0, 1], got {self.quality}")

    @classmethod
    def from_axes(
        cls,
        center_row: float,
        center_col: float,
        semi_axis_1: float,
        semi_axis_2: float,
        angle_1_deg: float,
        quality: float = 1.0,
    ) -> Ellipse:
        """Build from two semi-axes in any order; ``angle_1_deg`` is the direction of axis 1."""
        a1, a2 = float(semi_axis_1), float(semi_axis_2)
        ang = float(angle_1_deg)
        if a2 > a1:
            a1, a2, ang = a2, a1, ang + 90.0
        return cls(
            float(center_row),
            float(center_col),
            a1,
            a2,
            wrap_axis_angle(ang),
            float(np.clip(quality, 0.0, 1.0)),
        )

    @property
    def major_direction(self) -> tuple[float, float]:
        """Unit vector ``(d_row, d_col)`` along the semi-major axis."""
        t = math.radians(self.angle_deg)
        return (-math.sin(t), math.cos(t))

    def normalized_radius2(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """f = (u/a)^2 + (v/b)^2 at pixel coordinates (eq. 3 of the paper): 1 on the ellipse."""
        dr, dc = self.major_direction
        y = np.asarray(rows, dtype=np.float64) - self.center_row
        x = np.asarray(cols, dtype=np.float64) - self.center_col
        u = y * dr + x * dc  # along the major axis
        v = -y * dc + x * dr  # along the minor axis
        return (u / self.semi_major) ** 2 + (v / self.semi_minor) ** 2

    def half_extent(self, grow: float = 0.0) -> tuple[float, float]:
        """Half-height and half-width (px) of the axis-aligned bounding box of the ellipse
        with both semi-axes grown by ``grow`` (px)."""
        dr, dc = self.major_direction
        a, b = self.semi_major + grow, self.semi_minor + grow
        return (math.hypot(a * dr, b * dc), math.hypot(a * dc, b * dr))

    def box(self, shape: tuple[int, ...], grow: float = 0.0) -> tuple[int, int, int, int] | None:
        """``(r_lo, r_hi, c_lo, c_hi)``: the rows ``r_lo:r_hi`` and columns ``c_lo:c_hi`` of a
        frame of ``shape`` (rows, cols) that cover the ellipse grown by ``grow`` (px); None
        when none do."""
        hr, hc = self.half_extent(grow)
        r_lo = max(0, int(self.center_row - hr))
        r_hi = min(shape[0], int(self.center_row + hr) + 2)
        c_lo = max(0, int(self.center_col - hc))
        c_hi = min(shape[1], int(self.center_col + hc) + 2)
        if r_hi <= r_lo or c_hi <= c_lo:
            return None
        return r_lo, r_hi, c_lo, c_hi

    def to_dict(self) -> dict[str, float]:
        """Plain dict (JSON-ready) of the geometry and quality."""
        return {f.name: float(getattr(self, f.name)) for f in fields(self) if f.compare}

    @classmethod
    def from_dict(cls, data: dict) -> Ellipse:
        """Inverse of :meth:`to_dict`."""
        try:
            return cls(
                **{
                    k: float(data[k])
                    for k in ("center_row", "center_col", "semi_major", "semi_minor", "angle_deg")
                },
                quality=float(data.get("quality", 1.0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"ellipse: cannot read {data!r} ({exc})") from None


def wrap_axis_angle(deg: float) -> float:
    """Map an axis direction (deg, defined modulo 180) into (-90, 90]."""
    w = math.fmod(deg, 180.0)
    if w <= -90.0:
        w += 180.0
    elif w > 90.0:
        w -= 180.0
    return w


# ----------------------------------------------------------------------------------- checks


def as_float_frame(frame: object, name: str = "frame") -> np.ndarray:
    """Check one frame and return it as a C-contiguous float32 ``(rows, cols)`` array.

    Raises :class:`InputError` (one line naming ``name``) for: not 2-D, RGB/RGBA, a
    non-numeric or boolean dtype, a frame smaller than 16 px, NaN/inf, a constant frame.
    Any integer type is accepted (converted through float64, so uint32/int64 neither overflow
    nor wrap).
    """
    arr = np.asarray(frame)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        raise InputError(
            f"{name}: shape {arr.shape} looks like an RGB/RGBA image; "
            "convert it to one greyscale channel first"
        )
    if arr.ndim != 2:
        raise InputError(f"{name}: expected a 2-D (rows, cols) image, got shape {arr.shape}")
    check_dtype(arr.dtype, name)
    if min(arr.shape) < _MIN_SIDE:
        raise InputError(f"{name}: image {arr.shape} is too small (need >= {_MIN_SIDE} px a side)")
    if arr.dtype.kind in "iu" and arr.dtype.itemsize >= 4:
        arr = arr.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.ascontiguousarray(arr, dtype=np.float32)
    n_bad, lo, hi = finite_range(out)
    if n_bad:
        raise InputError(f"{name}: {n_bad} pixel(s) are NaN or infinite (or exceed float32)")
    if hi - lo <= 1e-6 * max(abs(lo), abs(hi), 1e-30):
        raise InputError(f"{name}: constant image (every pixel = {lo:g}); no crystal to find")
    return out


def check_dtype(dtype: np.dtype, name: str) -> None:
    """Raise :class:`InputError` naming ``name`` unless ``dtype`` is a real number type
    (integer or float, not boolean)."""
    if dtype.kind == "b":
        raise InputError(f"{name}: boolean images are not fluorescence images (dtype bool)")
    if dtype.kind not in "iuf":
        raise InputError(f"{name}: pixel type {dtype} is not a real number type")


@nb.njit(cache=True, nogil=True)
def _sector_profile(
    sub, row0, col0, k, plane, cr, cc, dr, dc, a, b, n_sec, rho_min, rho_max, n_bins
):  # pragma: no cover - numba
    """Sum and count of background-subtracted intensity per (angular sector, radius bin)."""
    sums = np.zeros((n_sec, n_bins))
    counts = np.zeros((n_sec, n_bins))
    scale = n_bins / (rho_max - rho_min)
    lo2, hi2 = rho_min * rho_min, rho_max * rho_max
    sec_per_rad = n_sec / (2.0 * np.pi)
    ia, ib = 1.0 / a, 1.0 / b
    for i in range(sub.shape[0]):
        r = row0 + k * i
        y = r - cr
        yu, yv = y * dr, -y * dc
        for j in range(sub.shape[1]):
            c = col0 + k * j
            x = c - cc
            u = (yu + x * dc) * ia
            v = (yv + x * dr) * ib
            rho2 = u * u + v * v
            if rho2 < lo2 or rho2 >= hi2:
                continue
            rb = min(int((np.sqrt(rho2) - rho_min) * scale), n_bins - 1)
            s = int((_atan2(v, u) + np.pi) * sec_per_rad) % n_sec
            sums[s, rb] += sub[i, j] - (plane[0] + plane[1] * r + plane[2] * c)
            counts[s, rb] += 1.0
    return sums, counts


@nb.njit(cache=True, nogil=True, inline="always")
def _atan2(y, x):  # pragma: no cover - numba
    """atan2 to within 1e-5 rad (a sector is 0.17 rad): octant reduction and an odd
    polynomial on [0, 1], several times faster than the library's."""
    ax, ay = abs(x), abs(y)
    big, small = max(ax, ay), min(ax, ay)
    if big == 0.0:
        return 0.0
    t = small / big
    t2 = t * t
    r = t * (
        0.99997726
        + t2
        * (
            -0.33262347
            + t2 * (0.19354346 + t2 * (-0.11643287 + t2 * (0.05265332 - 0.01172120 * t2)))
        )
    )
    if ay > ax:
        r = 0.5 * np.pi - r
    if x < 0.0:
        r = np.pi - r
    return -r if y < 0.0 else r


@nb.njit(cache=True, nogil=True)
def _outer_peaks(prof, frac, max_climb):  # pragma: no cover - numba
    """Per row of ``prof``: the (sub-bin) index of the outermost peak reaching ``frac`` of
    the row's maximum with a dip (< 95 %) within ``max_climb`` bins inside it; NaN when
    there is none within ``max_climb`` bins of the edge."""
    n_rows, n = prof.shape
    out = np.full(n_rows, np.nan)
    for s in range(n_rows):
        p = prof[s]
        pmax = p.max()
        if pmax <= 0:
            continue
        k = n - 1
        while k > 0 and p[k] < frac * pmax:
            k -= 1
        k0 = k
        while k > 0 and p[k - 1] >= p[k]:
            k -= 1
        if k0 - k > max_climb or k == 0 or k == n - 1:
            continue
        if p[max(k - max_climb, 0) : k].min() > 0.95 * p[k]:
            continue  # no dip inside: a flat edge, not a ring of ions
        den = p[k - 1] - 2 * p[k] + p[k + 1]
        d = 0.5 * (p[k - 1] - p[k + 1]) / den if den < 0 else 0.0
        out[s] = k + min(max(d, -0.5), 0.5)
    return out


def _otsu(img: np.ndarray, n_bins: int = 256) -> float:
    """Otsu's threshold of the values of ``img`` (maximum between-class variance)."""
    lo, hi = float(img.min()), float(img.max())
    hist = np.bincount(
        ((img - lo) * ((n_bins - 1) / (hi - lo))).astype(np.intp).ravel(), minlength=n_bins
    ).astype(np.float64)
    centres = lo + (np.arange(n_bins) + 0.5) * (hi - lo) / (n_bins - 1)
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres)
    with np.errstate(invalid="ignore", divide="ignore"):
        between = (m0[-1] * w0 / w0[-1] - m0) ** 2 / (w0 * w1)
    return float(centres[int(np.nanargmax(between[:-1]))])


@functools.lru_cache(maxsize=16)
def _border_ring(shape: tuple[int, int], width: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of the pixels within ``width`` of the frame's edge (cached,
    read-only)."""
    ring = np.zeros(shape, dtype=bool)
    ring[:width, :] = ring[-width:, :] = True
    ring[:, :width] = ring[:, -width:] = True
    rr, cc = np.nonzero(ring)
    rr.flags.writeable = cc.flags.writeable = False
    return rr, cc


def _fit_border_plane(img: np.ndarray, width: int) -> np.ndarray:
    """Robust plane ``(p0, p_row, p_col)`` through the border ring (3σ clipping, 3 rounds)."""
    rr, cc = _border_ring(img.shape, width)
    return robust_plane(
        img[rr, cc].astype(np.float64), rr.astype(np.float64), cc.astype(np.float64), 3, 10
    )


_SMOOTH_WEIGHTS = gaussian_weights(1.5)  # the coarse search's smoothing, σ = 1.5 px


# -------------------------------------------------------------------------------- fitting


def fit_ellipse(frame: np.ndarray, footprint: bool = False) -> Ellipse:
    """Find the crystal's outer-shell ellipse in one frame.

    Args:
        frame: ``(rows, cols)`` image, any real dtype (counts, arbitrary units).
        footprint: smooth the shell's radial profiles over each pixel's footprint, so that
            the outline does not depend on the pixel size (see the module docstring).

    Returns:
        :class:`Ellipse` in the frame's pixels; ``quality`` is the fraction of 36 angular
        sectors in which the outer shell was found and agrees with the fit, reduced by the
        RMS distance of those points from the ellipse (relative to 10 % of the semi-minor
        axis); a crystal found only coarsely (no shell ring) gets at most 0.3.

    Raises:
        InputError: bad frame (see :func:`as_float_frame`), no crystal found, or the crystal
            touches the image border.
    """
    img = as_float_frame(frame, "frame")
    return fit_float_frame(img, footprint)


def fit_float_frame(img: np.ndarray, footprint: bool = False) -> Ellipse:
    """:func:`fit_ellipse` on a frame already checked by :func:`as_float_frame` (float32,
    C-contiguous ``(rows, cols)``), so a caller that checked it once does not pay twice."""
    coarse, plane = _zoomed_coarse(img)
    return _refine(img, coarse, plane, footprint)


def _zoomed_coarse(img: np.ndarray) -> tuple[Ellipse, np.ndarray]:
    """:func:`_coarse` on the frame, then again on a crop around the crystal (up to twice)
    while the crystal is thinner than ``_ZOOM_MINOR`` px of the block-averaged copy. The
    notes are those of the whole frame (it alone sees every blob)."""
    coarse, plane = _coarse(img)
    notes = coarse.notes
    h, w = img.shape
    d = _block_factor((h, w))  # of the region the current outline was found in
    for _ in range(2):
        r_lo, r_hi, c_lo, c_hi = _window(coarse, _ZOOM_WINDOW * coarse.semi_major, h, w)
        d_crop = _block_factor((r_hi - r_lo, c_hi - c_lo))
        if coarse.semi_minor >= _ZOOM_MINOR * d or d_crop >= d:
            break
        try:
            sub, p = _coarse(img[r_lo:r_hi, c_lo:c_hi])
        except InputError:
            break  # keep the coarser outline (a crop too tight to hold the crystal)
        coarse = replace(sub, center_row=sub.center_row + r_lo, center_col=sub.center_col + c_lo)
        plane = np.array([p[0] - p[1] * r_lo - p[2] * c_lo, p[1], p[2]])
        d = d_crop
    return replace(coarse, notes=notes or coarse.notes), plane


def _block_factor(shape: tuple[int, int]) -> int:
    """Block size of the coarse search's copy of a frame of ``shape``."""
    return max(1, round(max(shape) / _SMALL_SIDE))


def _window(ell: Ellipse, half: float, h: int, w: int) -> tuple[int, int, int, int]:
    """Rows and columns ``(r_lo, r_hi, c_lo, c_hi)`` within ``half`` px of the ellipse's
    centre, clipped to an ``h`` x ``w`` frame."""
    return (
        max(0, int(ell.center_row - half)),
        min(h, int(ell.center_row + half) + 2),
        max(0, int(ell.center_col - half)),
        min(w, int(ell.center_col + half) + 2),
    )


def _coarse(img: np.ndarray) -> tuple[Ellipse, np.ndarray]:
    """Coarse ellipse from the thresholded, hole-filled largest region of a small copy."""
    h, w = img.shape
    d = _block_factor((h, w))
    hs, ws = h // d, w // d
    # hot pixels out before averaging
    small = median5(median5_block_mean(img, d) if d > 1 else median5(img))
    bw = max(2, min(hs, ws) // 32)
    p = _fit_border_plane(small, bw)
    rr = np.arange(hs, dtype=np.float32)[:, None]
    cc = np.arange(ws, dtype=np.float32)[None, :]
    small = small - (np.float32(p[0]) + np.float32(p[1]) * rr + np.float32(p[2]) * cc)
    smooth = separable_smooth(small, _SMOOTH_WEIGHTS)
    ring = smooth[_border_ring(smooth.shape, bw)]
    noise = 1.4826 * float(np.median(np.abs(ring - np.median(ring))))
    peak = float(np.percentile(smooth, 99.9))
    if not peak > 8.0 * noise or peak <= 0.0:
        raise InputError("frame: no crystal found (nothing stands out of the background noise)")
    t = max(0.5 * _otsu(smooth), 4.0 * noise)
    labels, n = ndi.label(smooth > t)
    if n == 0:
        raise InputError("frame: no crystal found (no region above the threshold)")
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    if sizes.max() < 12:
        raise InputError("frame: no crystal found (the brightest region is only a few pixels)")
    # A wide dark core (many light dark ions) can split the bright shell into separate parts,
    # e.g. the top and bottom rows of a hollow crystal: keep every large part, not only the
    # largest, and take their convex hull (a crystal is convex).
    parts = np.flatnonzero(sizes >= max(12.0, _PART_FRACTION * sizes.max()))
    crystal = np.isin(labels, parts)
    rs, cs = ndi.find_objects(crystal.view(np.uint8))[0]
    if rs.start == 0 or cs.start == 0 or rs.stop == hs or cs.stop == ws:
        raise InputError(
            "frame: the crystal touches the image border; it must lie wholly "
            "inside the frame (crop less or centre the crystal)"
        )
    if len(parts) == 1:
        region = ndi.binary_fill_holes(crystal[rs, cs])
    else:
        region = convex_hull_image(crystal[rs, cs])
    r, c = np.nonzero(region)
    r = r + rs.start
    c = c + cs.start
    r0, c0 = r.mean(), c.mean()
    cov = np.cov(np.vstack([r - r0, c - c0])) + np.eye(2) / 12.0  # + pixel size
    evals, evecs = np.linalg.eigh(cov)
    dr, dc = evecs[:, 1]
    angle = math.degrees(math.atan2(-dr, dc))
    a, b = 2.0 * math.sqrt(evals[1]), 2.0 * math.sqrt(max(evals[0], 1e-6))
    off = (d - 1) / 2.0
    ell = Ellipse.from_axes(r0 * d + off, c0 * d + off, a * d, b * d, angle, 0.3)
    n_blobs = _separate_blobs(labels, parts)
    if n_blobs > 1:
        ell = replace(
            ell,
            notes=(
                f"several crystals or bright blobs in the frame: {n_blobs} separate solid "
                "bright regions of comparable size, fitted and counted as one",
            ),
        )
    # The plane in full-resolution coordinates: small (i, j) <-> full (i*d + off, j*d + off).
    plane = np.array([p[0] - (p[1] + p[2]) * off / d, p[1] / d, p[2] / d])
    return ell, plane


def _separate_blobs(labels: np.ndarray, parts: np.ndarray) -> int:
    """How many of the labelled ``parts`` look like crystals of their own: solid (hole-filled
    area >= ``_SOLID`` of its convex hull) and not a thin band (semi-axis ratio <= ``_BAND``),
    unlike the arcs of one shell split by a dark core."""
    if len(parts) < 2:
        return len(parts)
    boxes = ndi.find_objects(labels)
    n = 0
    for k in parts:
        region = ndi.binary_fill_holes(labels[boxes[k - 1]] == k)
        r, c = np.nonzero(region)
        evals = np.linalg.eigvalsh(np.cov(np.vstack([r, c])) + np.eye(2) / 12.0)
        solid = region.sum() >= _SOLID * convex_hull_image(region).sum()
        n += bool(solid and evals[1] <= _BAND**2 * evals[0])
    return n


def _refine(img: np.ndarray, coarse: Ellipse, plane: np.ndarray, footprint: bool) -> Ellipse:
    """Fit the outer shell: outermost ring peak in angular sectors, then a direct LSQ fit
    (``footprint``: profiles smoothed over a pixel, see the module docstring)."""
    h, w = img.shape
    hr, hc = coarse.half_extent()
    r_lo = max(0, int(coarse.center_row - _RHO_MAX * hr) - 1)
    r_hi = min(h, int(coarse.center_row + _RHO_MAX * hr) + 2)
    c_lo = max(0, int(coarse.center_col - _RHO_MAX * hc) - 1)
    c_hi = min(w, int(coarse.center_col + _RHO_MAX * hc) + 2)
    # Large crystals: 2 x 2 (or more) block means first; ~40 px per semi-minor axis suffice.
    k = max(1, int(coarse.semi_minor // 40))
    r_hi -= (r_hi - r_lo) % k
    c_hi -= (c_hi - c_lo) % k
    sub = median5(block_mean(img[r_lo:r_hi, c_lo:c_hi], k))
    dr, dc = coarse.major_direction
    sums, counts = _sector_profile(
        sub,
        r_lo + (k - 1) / 2,
        c_lo + (k - 1) / 2,
        float(k),
        np.asarray(plane, np.float64),
        coarse.center_row,
        coarse.center_col,
        dr,
        dc,
        coarse.semi_major,
        coarse.semi_minor,
        _N_SECTORS,
        _RHO_MIN,
        _RHO_MAX,
        _N_BINS,
    )
    bin_w = (_RHO_MAX - _RHO_MIN) / _N_BINS
    peak_bin = _outer_peaks(_profile(sums, counts, coarse, k, bin_w, footprint), 0.25, _CLIMB)
    if footprint and np.isfinite(peak_bin).sum() < _MIN_POINTS:
        # a crystal only a few pixels across: spread over a pixel, its shells' dips are gone
        peak_bin = _outer_peaks(_profile(sums, counts, coarse, k, bin_w, False), 0.25, _CLIMB)
    ok = np.isfinite(peak_bin)
    rho_k = _RHO_MIN + (peak_bin[ok] + 0.5) * bin_w
    th = -np.pi + (np.nonzero(ok)[0] + 0.5) * (2 * np.pi / _N_SECTORS)
    uu = rho_k * np.cos(th) * coarse.semi_major
    vv = rho_k * np.sin(th) * coarse.semi_minor
    pts_r = coarse.center_row + uu * dr - vv * dc
    pts_c = coarse.center_col + uu * dc + vv * dr
    if pts_r.size < _MIN_POINTS:
        return coarse
    pr, pc = pts_r, pts_c
    keep = np.ones(pr.size, dtype=bool)
    ell = None
    rms = 0.0
    for _ in range(3):
        ell = _direct_fit(pr[keep], pc[keep])
        if ell is None:
            return coarse
        res = _radial_residual(ell, pr, pc)
        mad = 1.4826 * float(np.median(np.abs(res[keep])))
        new_keep = np.abs(res) <= max(3.0 * mad, 1.0)
        rms = float(np.sqrt(np.mean(res[keep] ** 2)))
        if new_keep.sum() < 10 or np.array_equal(new_keep, keep):
            break
        keep = new_keep
    assert ell is not None
    quality = keep.sum() / _N_SECTORS / (1.0 + (rms / (0.1 * ell.semi_minor)) ** 2)
    ratio = (ell.semi_major * ell.semi_minor) / (coarse.semi_major * coarse.semi_minor)
    if not 0.3 < ratio < 1.5:  # the shell should lie just inside the coarse outline
        return coarse
    _check_inside(ell, h, w)
    return Ellipse(
        ell.center_row,
        ell.center_col,
        ell.semi_major,
        ell.semi_minor,
        ell.angle_deg,
        float(np.clip(quality, 0.0, 1.0)),
        coarse.notes,
    )


def _profile(
    sums: np.ndarray, counts: np.ndarray, coarse: Ellipse, k: int, bin_w: float, footprint: bool
) -> np.ndarray:
    """Mean intensity per (sector, radius bin), ``(sectors, bins)``: smoothed along the radius
    by [1, 2, 1] / 4, or with ``footprint`` each pixel's sum and weight spread over a Gaussian
    of ``_FOOTPRINT_PX`` pixels of ``k`` frame pixels (at least that kernel's 0.71 bins)."""
    if not footprint:
        with np.errstate(invalid="ignore", divide="ignore"):
            prof = np.where(counts > 0, sums / counts, 0.0)
        prof = np.pad(prof, ((0, 0), (1, 1)), mode="edge")
        return 0.25 * prof[:, :-2] + 0.5 * prof[:, 1:-1] + 0.25 * prof[:, 2:]
    theta = -np.pi + (np.arange(_N_SECTORS) + 0.5) * (2 * np.pi / _N_SECTORS)
    # px per unit of normalised radius along each sector's centre line
    radius = np.hypot(coarse.semi_major * np.cos(theta), coarse.semi_minor * np.sin(theta))
    sigma = np.maximum(0.71, _FOOTPRINT_PX * k / (radius * bin_w))  # bins
    # one Gaussian per sector, cut at 4σ; its normalisation cancels in the ratio
    half = int(min(sums.shape[1] - 1, np.ceil(4.0 * sigma.max())))
    offsets = np.arange(-half, half + 1)
    kernel = np.exp(-0.5 * (offsets[None, :] / sigma[:, None]) ** 2)  # (sectors, 2 half + 1)

    def spread(a: np.ndarray) -> np.ndarray:
        windows = sliding_window_view(np.pad(a, ((0, 0), (half, half))), offsets.size, axis=1)
        return np.einsum("sbo,so->sb", windows, kernel)

    s, n = spread(sums), spread(counts)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 1e-9, s / n, 0.0)


def _check_inside(ell: Ellipse, h: int, w: int) -> None:
    hr, hc = ell.half_extent()
    if (
        ell.center_row - hr < 0
        or ell.center_row + hr > h - 1
        or ell.center_col - hc < 0
        or ell.center_col + hc > w - 1
    ):
        raise InputError(
            "frame: the crystal touches the image border; it must lie wholly "
            "inside the frame (crop less or centre the crystal)"
        )


def _radial_residual(ell: Ellipse, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Approximate signed distance (px) of points from the ellipse, along the centre ray."""
    f = ell.normalized_radius2(rows, cols)
    dist = np.hypot(rows - ell.center_row, cols - ell.center_col)
    rho = np.sqrt(np.maximum(f, 1e-12))
    return dist * (1.0 - 1.0 / rho)


def _direct_fit(rows: np.ndarray, cols: np.ndarray) -> Ellipse | None:
    """Least-squares ellipse through points (Halir & Flusser 1998 direct fit)."""
    r0, c0 = rows.mean(), cols.mean()
    scale = max(rows.std(), cols.std(), 1e-9)
    x = (cols - c0) / scale
    y = (rows - r0) / scale
    d1 = np.column_stack([x * x, x * y, y * y])
    d2 = np.column_stack([x, y, np.ones_like(x)])
    s1, s2, s3 = d1.T @ d1, d1.T @ d2, d2.T @ d2
    try:
        t = -np.linalg.solve(s3, s2.T)
    except np.linalg.LinAlgError:
        return None
    m = s1 + s2 @ t
    m = np.array([m[2] / 2.0, -m[1], m[0] / 2.0])
    _, evecs = np.linalg.eig(m)
    evecs = np.real(evecs)
    cond = 4 * evecs[0] * evecs[2] - evecs[1] ** 2
    good = np.nonzero(cond > 0)[0]
    if good.size == 0:
        return None
    a1 = evecs[:, good[0]]
    coef = np.concatenate([a1, t @ a1])  # A x^2 + B xy + C y^2 + D x + E y + F = 0
    A, B, C, D, E, F = coef
    q = np.array([[A, B / 2], [B / 2, C]])
    try:
        centre = np.linalg.solve(2 * q, [-D, -E])
    except np.linalg.LinAlgError:
        return None
    f0 = F + 0.5 * (D * centre[0] + E * centre[1])
    qe, qv = np.linalg.eigh(q)
    axes2 = -f0 / qe
    if not np.all(axes2 > 0):
        return None
    axes = np.sqrt(axes2) * scale
    # Eigenvector of the smaller eigenvalue is the major axis, in (x=col, y=row).
    vx, vy = qv[:, 0] if axes[0] >= axes[1] else qv[:, 1]
    angle = math.degrees(math.atan2(-vy, vx))
    return Ellipse.from_axes(
        r0 + centre[1] * scale,
        c0 + centre[0] * scale,
        float(axes.max()),
        float(axes.min()),
        angle,
        1.0,
    )
