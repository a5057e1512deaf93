"""Is a frame like the images a model was trained on? (issue 27, point 4)

:func:`input_statistics` measures a counted frame: the crystal's fitted outline (axis ratio,
length and width in µm, fit quality) and its prepared image (how much of its light sits in the
core: a dark core of non-fluorescing ions, which pure-Ca+ training sets never show; how bright
the ions at the crystal's tips are relative to those at its sides: a cooling beam narrower than
the crystal, which the training renders, lit evenly, never show; measured on the ion spots and,
where too few stand out, on the lit pixels of the fitted outline's outer band).
A model card's ``input_ranges`` holds, per statistic, the range its training-like images span
(``scripts/input_ranges.py`` measures it on renders of the card's training specs and writes
it); :func:`range_warnings` names each statistic of a frame outside its range, with the fix
(:func:`outside_ranges`: their names alone).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from ccount_core.image.ellipse import Ellipse
from ccount_core.image.preprocess import PreprocessConfig, frame_transform

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
    "band_light": (
        "light of the lit pixels in the crystal's outer band at its tips relative to its sides "
        "(ratio)",
        "the outer layers are lit unevenly: a cooling beam narrower than the crystal (below the "
        "range: dimmer toward the tips, above: toward the sides) or dark ions at the tips; "
        "centre and widen the cooling beam, or for dark ions count with --model dark or "
        "ensemble",
    ),
}

#: Ion spots: local maxima (3 x 3) above this share of the crystal's 99th-percentile pixel.
SPOT_LEVEL = 0.15
#: :func:`_tip_light` compares the spots beyond this normalised radius (the outer ring) ...
RING = 0.7
#: ... within this angle (°) of the trap axis (tips) and of its perpendicular (sides) ...
SECTOR_DEG = 37.0
_SLOPE = math.tan(math.radians(90.0 - SECTOR_DEG))  # |u| > _SLOPE |v|: within SECTOR_DEG of u
#: ... by this quantile of their heights, the tips and the sides each needing MIN_SPOTS spots.
SPOT_QUANTILE = 0.75
MIN_SPOTS = 3
#: :func:`_band_light` compares the pixels above LIT_LEVEL of the 99th percentile (lower) ...
LIT_LEVEL = 0.2
#: ... in this band of the fitted outline's normalised radius, tips and sides each needing
#: MIN_LIT of them (else that part is dark).
BAND = (0.7, 1.1)
MIN_LIT = 4


def input_statistics(
    prepared: np.ndarray, ellipse: Ellipse, pixel_size_um: float, outline: Ellipse
) -> dict:
    """The statistics of :data:`STATISTICS` for one frame: ``prepared`` (the model's input
    ``(rows, cols)``, trap axis along the rows, crystal centred), the crystal's ``ellipse`` in
    the camera frame (px of ``pixel_size_um`` µm; trap axis = major axis unless oblate) and
    its ``outline`` in ``prepared`` (px; :func:`prepared_outline`)."""
    a, b = ellipse.semi_major, ellipse.semi_minor
    top = _top(prepared)
    return {
        "axis_ratio": a / b,
        "length_um": 2.0 * a * pixel_size_um,
        "width_um": 2.0 * b * pixel_size_um,
        "fit_quality": ellipse.quality,
        "core_light": _core_light(prepared),
        "tip_light": _tip_light(prepared, top),
        "band_light": _band_light(prepared, outline, top),
    }


def prepared_outline(
    ellipse: Ellipse, cfg: PreprocessConfig, pixel_size_um: float, trap_axis: Any = "auto"
) -> Ellipse:
    """Where a crystal of ``ellipse`` (camera px of ``pixel_size_um`` µm) lies in the image
    ``cfg`` prepares from it (px), for the recording's ``trap_axis`` as the preparation had it."""
    return frame_transform(ellipse, cfg, pixel_size_um, trap_axis).output_ellipse


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


def _top(img: np.ndarray) -> float | None:
    """The 99th percentile (lower) of the positive pixels of ``img``; None without any."""
    positive = img[img > 0]
    if positive.size == 0:
        return None
    k = int(0.99 * (positive.size - 1))
    return float(np.partition(positive, k)[k])


def _spots(img: np.ndarray, top: float | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows, columns (px) and heights of the ion spots of ``img`` ``(rows, cols)``: pixels
    not below any of their 8 neighbours and above ``SPOT_LEVEL`` of ``top`` (:func:`_top`)."""
    if top is None:
        return np.empty(0, np.intp), np.empty(0, np.intp), np.empty(0, img.dtype)
    padded = np.full((img.shape[0] + 2, img.shape[1] + 2), -np.inf, img.dtype)
    padded[1:-1, 1:-1] = img
    across = np.maximum(np.maximum(padded[:, :-2], padded[:, 1:-1]), padded[:, 2:])
    around = np.maximum(np.maximum(across[:-2], across[1:-1]), across[2:])
    r, c = np.nonzero((img >= around) & (img > SPOT_LEVEL * top))
    return r, c, img[r, c]


def _tip_light(img: np.ndarray, top: float | None) -> float:
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
    r, c, h = _spots(img, top)
    u = np.abs(r - r0) / (math.sqrt(5.0) * sr)
    v = np.abs(c - c0) / (math.sqrt(5.0) * sc)
    ring = np.hypot(u, v) > RING
    tips, sides = h[ring & (u > _SLOPE * v)], h[ring & (v > _SLOPE * u)]
    if min(tips.size, sides.size) < MIN_SPOTS:
        return math.nan
    return _quantile(tips, SPOT_QUANTILE) / _quantile(sides, SPOT_QUANTILE)


def _band_light(img: np.ndarray, outline: Ellipse, top: float | None) -> float:
    """How bright the lit pixels at the crystal's tips are relative to those at its sides:
    the mean of the pixels of ``img`` ``(rows, cols)`` above ``LIT_LEVEL`` of its top
    (``top``, :func:`_top`) in the band of ``outline`` (its normalised radius in ``BAND``) within
    ``SECTOR_DEG`` of the trap axis (the rows) over the same within ``SECTOR_DEG`` of its
    perpendicular; ``inf`` when the sides have fewer than ``MIN_LIT`` such pixels and the tips
    have them, 0 the other way round, NaN when neither has.

    It measures what :func:`_tip_light` does where that one cannot: a cooling beam along the
    trap axis dims the outer layers until too few of their ions stand out as spots, and the
    light's own extent shrinks with them, while the fitted outline (from the outer shell's
    ring) stays. Dark ions in the band lower its lit share rather than its brightness, but
    where they fill the band at the tips or sides this ratio moves too, so the dark-ion
    models' ranges are wide."""
    hr, hc = outline.half_extent()
    if top is None or min(hr, hc) <= 0:
        return math.nan
    rows, cols = np.indices(img.shape, dtype=np.float64)
    u = np.abs(rows - outline.center_row) / hr
    v = np.abs(cols - outline.center_col) / hc
    rho2 = u * u + v * v
    lit = (img > LIT_LEVEL * top) & (rho2 > BAND[0] ** 2) & (rho2 < BAND[1] ** 2)
    tips, sides = img[lit & (u > _SLOPE * v)], img[lit & (v > _SLOPE * u)]
    if tips.size < MIN_LIT and sides.size < MIN_LIT:
        return math.nan
    if sides.size < MIN_LIT:
        return math.inf
    if tips.size < MIN_LIT:
        return 0.0
    return float(tips.mean() / sides.mean())


def _quantile(values: np.ndarray, q: float) -> float:
    """``np.quantile(values, q)`` (linear interpolation) of a small 1-d array, without its
    overhead (tens of µs, more than the rest of :func:`_tip_light`)."""
    s = np.sort(values).astype(np.float64)
    x = q * (s.size - 1)
    i = int(x)
    j = min(i + 1, s.size - 1)
    return float(s[i] + (s[j] - s[i]) * (x - i))


def outside_ranges(stats: Mapping[str, float], ranges: Mapping[str, Any]) -> list[str]:
    """The names of the statistics outside the card's ``input_ranges`` (``{name: {"min": ..,
    "max": ..}}``); none without ranges."""
    out = []
    for name, value in stats.items():
        r = ranges.get(name)
        if r is not None and not math.isnan(value) and not r["min"] <= value <= r["max"]:
            out.append(name)
    return out


def range_warnings(stats: Mapping[str, float], ranges: Mapping[str, Any]) -> list[str]:
    """One warning per statistic outside the card's ``input_ranges`` (:func:`outside_ranges`),
    naming the value, the range and the fix; none without ranges."""
    out = []
    for name in outside_ranges(stats, ranges):
        what, fix = STATISTICS[name]
        r, value = ranges[name], stats[name]
        out.append(
            f"unlike the training images: {what} {value:.3g} outside {r['min']:.3g}-"
            f"{r['max']:.3g}; {fix}"
        )
    return out
