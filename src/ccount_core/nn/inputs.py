"""Is a frame like the images a model was trained on? (issue 27, point 4)

:func:`input_statistics` measures a counted frame: the crystal's fitted outline (axis ratio,
length and width in µm, fit quality) and its prepared image (how much of its light sits in the
core: a dark core of non-fluorescing ions, which pure-Ca+ training sets never show; how bright
the ions at the crystal's tips are relative to those at its sides: a cooling beam narrower than
the crystal, which the training renders, lit evenly, never show).
A model card's ``input_ranges`` holds, per statistic, the range its training-like images span
(``scripts/input_ranges.py`` measures it on renders of the card's training specs and writes
it); :func:`range_warnings` names each statistic of a frame outside its range, with the fix.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from ccount_core.image.ellipse import Ellipse

#: What each statistic is, its unit, and what to do when a frame falls outside the range.
STATISTICS: dict[str, tuple[str, str]] = {
    "axis_ratio": (
        "crystal axis ratio (long/short)",
        "check the trap axis and that one whole crystal is in view",
    ),
    "length_um": ("crystal length along the trap axis (µm)", "check --pixel-size-um"),
    "width_um": ("crystal width across the trap axis (µm)", "check --pixel-size-um"),
    "fit_quality": (
        "ellipse fit quality",
        "check the crystal's outline (give an ellipse) and the image's focus and background",
    ),
    "core_light": (
        "light in the core relative to the outer layers",
        "a dark core (non-fluorescing ions): count with --model dark or ensemble",
    ),
    "tip_light": (
        "ion brightness at the crystal's tips relative to its sides (ratio)",
        "the cooling beam lights the ions unevenly (below the range: dimmer toward the tips, "
        "above: toward the sides): centre and widen the cooling beam, or expect the count to "
        "be off",
    ),
}

#: Ion spots: local maxima (3 x 3) above this share of the crystal's 99th-percentile pixel.
SPOT_LEVEL = 0.15
#: :func:`_tip_light` compares the spots beyond this normalised radius (the outer ring) ...
RING = 0.7
#: ... within this angle (°) of the trap axis (tips) and of its perpendicular (sides) ...
SECTOR_DEG = 37.0
#: ... by this quantile of their heights, the tips and the sides each needing MIN_SPOTS spots.
SPOT_QUANTILE = 0.75
MIN_SPOTS = 3


def input_statistics(prepared: np.ndarray, ellipse: Ellipse, pixel_size_um: float) -> dict:
    """The statistics of :data:`STATISTICS` for one frame: ``prepared`` (the model's input,
    trap axis vertical, crystal centred), its ``ellipse`` (input px, trap axis = major axis
    unless oblate) and the camera's ``pixel_size_um`` (µm)."""
    a, b = ellipse.semi_major, ellipse.semi_minor
    return {
        "axis_ratio": a / b,
        "length_um": 2.0 * a * pixel_size_um,
        "width_um": 2.0 * b * pixel_size_um,
        "fit_quality": ellipse.quality,
        "core_light": _core_light(prepared),
        "tip_light": _tip_light(prepared),
    }


def _light_moments(img: np.ndarray) -> tuple[float, float, float, float] | None:
    """Centre ``(row, col)`` (px) and standard deviations along rows and columns (px) of
    the positive light of ``img`` ``(rows, cols)`` (from its row and column sums); None
    without light."""
    w = np.clip(img, 0.0, None).astype(np.float64)
    by_row, by_col = w.sum(axis=1), w.sum(axis=0)
    total = by_row.sum()
    if total <= 0:
        return None
    rows, cols = np.arange(img.shape[0]), np.arange(img.shape[1])
    r0, c0 = (by_row * rows).sum() / total, (by_col * cols).sum() / total
    sr = math.sqrt((by_row * (rows - r0) ** 2).sum() / total)
    sc = math.sqrt((by_col * (cols - c0) ** 2).sum() / total)
    return r0, c0, sr, sc


def _core_light(img: np.ndarray) -> float:
    """Mean intensity within half the crystal's normalised radius over the mean between 0.5
    and 1 of it; the crystal's extent from the second moments of its light (a uniform
    ellipse's semi-axis is twice its standard deviation)."""
    m = _light_moments(img)
    if m is None:
        return math.nan
    r0, c0, sr, sc = m
    rows, cols = np.indices(img.shape, dtype=np.float64)
    w = np.clip(img, 0.0, None).astype(np.float64)
    rho2 = ((rows - r0) / (2.0 * sr)) ** 2 + ((cols - c0) / (2.0 * sc)) ** 2
    core, shell = w[rho2 < 0.25], w[(rho2 >= 0.25) & (rho2 < 1.0)]
    if core.size == 0 or shell.size == 0 or shell.mean() <= 0:
        return math.nan
    return float(core.mean() / shell.mean())


def _spots(img: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows, columns (px) and heights of the ion spots of ``img`` ``(rows, cols)``: pixels
    not below any of their 8 neighbours and above ``SPOT_LEVEL`` of the 99th percentile
    (lower) of the positive pixels."""
    positive = img[img > 0]
    if positive.size == 0:
        return np.empty(0, np.intp), np.empty(0, np.intp), np.empty(0, img.dtype)
    k = int(0.99 * (positive.size - 1))
    top = np.partition(positive, k)[k]
    padded = np.full((img.shape[0] + 2, img.shape[1] + 2), -np.inf, img.dtype)
    padded[1:-1, 1:-1] = img
    across = np.maximum(np.maximum(padded[:, :-2], padded[:, 1:-1]), padded[:, 2:])
    around = np.maximum(np.maximum(across[:-2], across[1:-1]), across[2:])
    r, c = np.nonzero((img >= around) & (img > SPOT_LEVEL * top))
    return r, c, img[r, c]


def _tip_light(img: np.ndarray) -> float:
    """How bright the ion spots at the crystal's tips are relative to those at its sides:
    the ``SPOT_QUANTILE`` of the spot heights in the outer ring (normalised radius above
    ``RING``) within ``SECTOR_DEG`` of the trap axis (``img``'s rows) over the same within
    ``SECTOR_DEG`` of its perpendicular; NaN with fewer than ``MIN_SPOTS`` spots in either.

    The crystal's centre and semi-axes come from the moments of its light (a uniformly
    filled ellipsoid's projection has semi-axes sqrt(5) times its standard deviations).
    Only the outer ring counts, where the line of sight grazes the outermost shell of
    fluorescing ions, so a dark core (non-fluorescing ions gathered on the axis) barely
    moves it unless it reaches the crystal's ends (then the tips read dim); a cooling beam
    narrower than the crystal dims the tips (ratio below the training range) or the sides
    (above)."""
    m = _light_moments(img)
    if m is None or min(m[2], m[3]) <= 0:
        return math.nan
    r0, c0, sr, sc = m
    r, c, h = _spots(img)
    u = np.abs(r - r0) / (math.sqrt(5.0) * sr)
    v = np.abs(c - c0) / (math.sqrt(5.0) * sc)
    ring = np.hypot(u, v) > RING
    slope = math.tan(math.radians(90.0 - SECTOR_DEG))
    tips, sides = h[ring & (u > slope * v)], h[ring & (v > slope * u)]
    if min(tips.size, sides.size) < MIN_SPOTS:
        return math.nan
    return _quantile(tips, SPOT_QUANTILE) / _quantile(sides, SPOT_QUANTILE)


def _quantile(values: np.ndarray, q: float) -> float:
    """``np.quantile(values, q)`` (linear interpolation) of a small 1-d array, without its
    overhead (tens of µs, more than the rest of :func:`_tip_light`)."""
    s = np.sort(values).astype(np.float64)
    x = q * (s.size - 1)
    i = int(x)
    j = min(i + 1, s.size - 1)
    return float(s[i] + (s[j] - s[i]) * (x - i))


def range_warnings(stats: Mapping[str, float], ranges: Mapping[str, Any]) -> list[str]:
    """One warning per statistic outside the card's ``input_ranges`` (``{name: {"min": ..,
    "max": ..}}``), naming the value, the range and the fix; none without ranges."""
    out = []
    for name, value in stats.items():
        r = ranges.get(name)
        if r is None or not math.isfinite(value):
            continue
        if not r["min"] <= value <= r["max"]:
            what, fix = STATISTICS[name]
            out.append(
                f"unlike the training images: {what} {value:.3g} outside {r['min']:.3g}-"
                f"{r['max']:.3g}; {fix}"
            )
    return out
