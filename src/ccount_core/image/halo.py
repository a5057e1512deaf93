"""Light around a crystal, beyond its outline: a PSF with wide wings (issue 27, point 4).

A laboratory objective's point-spread function often has wings far wider than its core
(scattered light, aberrations, a dirty window): each ion then spreads some of its light tens
of µm out. The training renders have none (a Gaussian blur of a few µm), and the default model
counts such frames high (``benchmarks/psf_wings.py``). None of the prepared image's statistics
sees it (the preparation masks the frame 10 µm outside the crystal), so it is measured on the
camera frame: :func:`halo_light` compares the light in a ring 15-40 µm outside the fitted
outline with the crystal's own, against the background 60-100 µm out (a linear background
gradient averages out over rings centred on the crystal), and :func:`halo_note` warns above
:data:`HALO_LIMIT`.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from ccount_core.image.ellipse import Ellipse

#: The halo ring and the background ring, µm outside the fitted outline (each semi-axis grown
#: by that much).
HALO_RING_UM = (15.0, 40.0)
BACKGROUND_RING_UM = (60.0, 100.0)
#: Pixels are sampled on a grid no finer than this (µm), so the time does not grow with the
#: camera's resolution (the background ring on every second row and column of it).
SAMPLE_UM = 2.0
#: Standard errors of the noise taken off the measured halo, so a noisy frame without wings
#: reads 0, not a positive fluctuation.
NOISE_SIGMAS = 3.0
#: Most samples a ring's mean takes (more are thinned evenly: their noise is already small).
MAX_SAMPLES = 4096
#: Fewest samples in each ring for a value (else NaN; each must also lie at least half in the
#: frame).
MIN_SAMPLES = 16
#: :func:`halo_light` above which a frame is noted. From ``benchmarks/psf_wings.py``
#: (docs/BENCHMARKS.md; 120 crystals, PSFs with 0-30 % of the light in Moffat wings of 10 µm,
#: β 1.5): 10 % wings read at most 0.0105 and move the default model's count by +1.3 % (against
#: no wings); 15 %: 0.007-0.016, +2.0 %; 20 %: 0.010-0.021, +2.9 %, 4 frames off by more than
#: 10 %; 30 %: from 0.015, +5.0 %, 11 frames off. The training renders read 0, noisy cameras
#: without wings (sCMOS-like, EMCCD at gain 300, 8-bit) at most 0.002.
HALO_LIMIT = 0.012


def halo_light(img: np.ndarray, ellipse: Ellipse, pixel_size_um: float) -> float:
    """The light 15-40 µm outside ``ellipse`` (the crystal's outline in ``img`` ``(rows,
    cols)``, px of ``pixel_size_um`` µm) relative to the crystal's: (mean of that ring −
    background) / (mean inside the outline − background), the background being the mean
    60-100 µm out (both means of the rings' middle halves, :func:`_middle_mean`), less
    :data:`NOISE_SIGMAS` standard errors of their difference (from the background ring's
    noise) and, for integer data with less noise than a grey level, half a level; 0 when that
    is negative, NaN when less than half of either ring lies in the frame or the crystal is not
    above the background. Dimensionless."""
    step = max(1, int(SAMPLE_UM / pixel_size_um))
    grow = np.array([*HALO_RING_UM, *BACKGROUND_RING_UM]) / pixel_size_um
    bounds = ellipse.box(img.shape, grow[-1])
    if bounds is None:
        return math.nan
    r_lo, r_hi, c_lo, c_hi = bounds
    dr, dc = ellipse.major_direction
    box = np.ascontiguousarray(img[r_lo:r_hi:step, c_lo:c_hi:step], dtype=np.float32)
    return float(
        _halo(
            box,
            (ellipse.center_row - r_lo) / step,
            (ellipse.center_col - c_lo) / step,
            dr,
            dc,
            ellipse.semi_major / step,
            ellipse.semi_minor / step,
            grow / step,
        )
    )


def halo_note(halo: float) -> str | None:
    """A warning when a frame's ``halo`` (:func:`halo_light`) is above :data:`HALO_LIMIT`,
    else None."""
    if not halo > HALO_LIMIT:
        return None
    return (
        f"halo: {100 * halo:.1f} % of the crystal's brightness 15-40 µm outside its "
        f"outline (the models were checked to count well up to {100 * HALO_LIMIT:.1f} %): a "
        "point-spread function with wide wings (scattered light, a dirty or misaligned "
        "objective) or another light source nearby; the count reads high: refocus or clean "
        "the optics, or expect it to be off"
    )


@nb.njit(cache=True, nogil=True)
def _halo(box, cr, cc, dr, dc, a, b, grow):  # pragma: no cover - numba
    """:func:`halo_light` on ``box`` (the sampled pixels around the crystal), the outline's
    centre ``(cr, cc)``, major direction ``(dr, dc)`` and semi-axes ``a``, ``b``, and the
    rings' growths ``grow`` (4,), all in box pixels."""
    rows, cols = box.shape
    ring = np.empty(rows * cols, np.float32)
    back = np.empty(rows * cols, np.float32)
    # 1 / semi-axis² of the outline (0) and of each ring's edges (1-4), along and across
    ia = np.empty(5)
    ib = np.empty(5)
    ia[0], ib[0] = 1.0 / (a * a), 1.0 / (b * b)
    for k in range(4):
        ia[k + 1], ib[k + 1] = 1.0 / (a + grow[k]) ** 2, 1.0 / (b + grow[k]) ** 2
    n_ring = n_back = n_core = 0
    core = 0.0
    for i in range(rows):
        y = i - cr
        for j in range(cols):
            x = j - cc
            u = x * dc + y * dr  # along the major axis
            v = x * dr - y * dc
            u2, v2 = u * u, v * v
            if u2 * ia[4] + v2 * ib[4] >= 1.0:
                continue  # beyond the background ring
            if u2 * ia[0] + v2 * ib[0] < 1.0:
                core += box[i, j]
                n_core += 1
            elif u2 * ia[2] + v2 * ib[2] < 1.0:
                if u2 * ia[1] + v2 * ib[1] >= 1.0:
                    ring[n_ring] = box[i, j]
                    n_ring += 1
            elif i % 2 == 0 and j % 2 == 0 and u2 * ia[3] + v2 * ib[3] >= 1.0:
                back[n_back] = box[i, j]
                n_back += 1
    # each ring at least half in the frame (its area: that of the outer ellipse less the
    # inner's; the background ring is sampled on every second row and column)
    area_ring = math.pi * ((a + grow[1]) * (b + grow[1]) - (a + grow[0]) * (b + grow[0]))
    area_back = math.pi * ((a + grow[3]) * (b + grow[3]) - (a + grow[2]) * (b + grow[2]))
    if n_ring < max(MIN_SAMPLES, 0.5 * area_ring) or n_core == 0:
        return np.nan
    if n_back < max(MIN_SAMPLES, 0.125 * area_back):
        return np.nan
    # a ring of more than MAX_SAMPLES pixels is thinned evenly to about that many
    ring_s = ring[: n_ring : max(1, n_ring // MAX_SAMPLES)]
    back_s = back[: n_back : max(1, n_back // MAX_SAMPLES)]
    whole = True  # integer camera data: grey levels of 1
    for values in (ring_s, back_s):
        for value in values:
            whole = whole and value == math.floor(value)
    bg, noise = _middle_mean(back_s)
    light = core / n_core - bg
    if not light > 0.0:
        return np.nan
    halo = _middle_mean(ring_s)[0] - bg
    # the means' standard error; where the noise is below a grey level, rounding can move a
    # mean by up to half of one
    margin = NOISE_SIGMAS * noise * math.sqrt(1.0 / ring_s.size + 1.0 / back_s.size)
    if whole and noise < 1.0:
        margin += 0.5
    return max(halo - margin, 0.0) / light


@nb.njit(cache=True, nogil=True)
def _middle_mean(x):  # pragma: no cover - numba
    """``(mean, spread)`` of the values of ``x`` between its lower and upper quartile: a mean
    robust to hot pixels and to ions in a ring, yet of many values, so integer data's grey
    levels average out under noise; the spread is the interquartile range over 1.349 (a
    Gaussian's standard deviation)."""
    quarter = x.size // 4
    upper = np.partition(x, quarter)[quarter:]  # from the lower quartile up
    middle = np.partition(upper, upper.size - 1 - quarter)[: upper.size - quarter]
    return middle.mean(), (middle.max() - middle.min()) / 1.349
