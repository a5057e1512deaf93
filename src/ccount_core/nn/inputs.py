"""Is a frame like the images a model was trained on? (issue 27, point 4)

:func:`input_statistics` measures a counted frame: the crystal's fitted outline (axis ratio,
length and width in µm, fit quality) and its prepared image (how much of its light sits in the
core: a dark core of non-fluorescing ions, which pure-Ca+ training sets never show).
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
}


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
    }


def _core_light(img: np.ndarray) -> float:
    """Mean intensity within half the crystal's normalised radius over the mean between 0.5
    and 1 of it; the crystal's extent from the second moments of its light (a uniform
    ellipse's semi-axis is twice its standard deviation)."""
    rows, cols = np.indices(img.shape, dtype=np.float64)
    w = np.clip(img, 0.0, None).astype(np.float64)
    total = w.sum()
    if total <= 0:
        return math.nan
    r0, c0 = (w * rows).sum() / total, (w * cols).sum() / total
    sr = 2.0 * math.sqrt((w * (rows - r0) ** 2).sum() / total)
    sc = 2.0 * math.sqrt((w * (cols - c0) ** 2).sum() / total)
    rho2 = ((rows - r0) / sr) ** 2 + ((cols - c0) / sc) ** 2
    core, shell = w[rho2 < 0.25], w[(rho2 >= 0.25) & (rho2 < 1.0)]
    if core.size == 0 or shell.size == 0 or shell.mean() <= 0:
        return math.nan
    return float(core.mean() / shell.mean())


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
