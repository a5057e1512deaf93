"""Even out a cooling beam narrower than the crystal (issue 27, point 2).

A cooling beam narrower than the crystal lights its outer layers (a beam along the trap axis)
or its tips (a beam across it) less than its centre; the shipped models, trained on evenly lit
renders, then count 8-15 % off (``benchmarks/robustness.py``). In a prepared frame (background
subtracted, crystal centred) the envelope of the ion spots' heights, each pixel's 3 x 3
maximum, goes as exp(c0 + c_u u² + c_v v²), u and v being the normalised coordinates along the
outline's major and minor axes (1 on the fitted outline): :func:`beam_curvature` fits
``(c_u, c_v)`` within 0.9 of the outline. Evenly lit crystals give curvatures near the card's
``PreprocessConfig.beam_reference`` (``scripts/beam_reference.py`` measures it on clean renders;
their scatter is about 0.13); a beam that leaves the outer layers at 30 % of the centre gives
one about 1 lower (ln 0.3 = -1.2 at the outline).

:func:`flatten_beam` multiplies the frame by exp(-d_u u² - d_v v²), u² and v² capped at
``REACH``², ``d`` being the shortfall below the reference (:func:`beam_shortfall`: none up to
``GATE[0]``, all of it from ``GATE[1]`` on, a linear ramp between). Only a shortfall is undone,
and none where an axis is much brighter toward the outside than the reference, which is what
a dark core (non-fluorescing ions on the axis) does. In a noisy frame less of it is undone
(:func:`noise_weight`, ``PreprocessConfig.beam_noise``): its dim outer layers are largely
noise. :func:`beam_note` names what was undone.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from ccount_core.image.ellipse import Ellipse

#: A shortfall (log curvature below the reference) up to GATE[0] is left alone (3 times the
#: evenly lit renders' scatter, and more than dark ions reaching toward the tips give); from
#: GATE[1] on it is undone whole, linearly between.
GATE = (0.4, 0.7)
#: An axis this much brighter toward the outside than the reference is a dark core.
CORE_EXCESS = 1.0
#: The fit uses the pixels within this normalised radius of the outline ...
FIT_RADIUS = 0.9
#: ... whose envelope is above this share of the brightest (the dark gaps between spots
#: are not part of the envelope, but its 3 x 3 maximum fills them).
ENVELOPE_FLOOR = 0.05
#: ... and needs at least this many of them.
MIN_PIXELS = 20
#: The gain stops growing at this normalised coordinate: beyond the outline (the mask margin)
#: it stays as there, so the noise and halo around the crystal are not raised further.
REACH = 1.0


def _coordinates(shape: tuple[int, int], outline: Ellipse) -> tuple[np.ndarray, np.ndarray]:
    """Normalised coordinates ``(u, v)`` of every pixel of a ``shape`` image along the
    outline's major and minor axes (1 on the outline)."""
    dr, dc = outline.major_direction
    y = np.arange(shape[0], dtype=np.float64)[:, None] - outline.center_row
    x = np.arange(shape[1], dtype=np.float64)[None, :] - outline.center_col
    return (y * dr + x * dc) / outline.semi_major, (-y * dc + x * dr) / outline.semi_minor


def beam_curvature(img: np.ndarray, outline: Ellipse) -> tuple[float, float]:
    """``(c_u, c_v)``: the curvatures of the log envelope of ``img``'s ion spots along the
    outline's major and minor axes (dimensionless; 0 = evenly lit, ln 0.3 = the outline's edge
    at 30 % of the centre) for a background-subtracted ``(rows, cols)`` image and the
    crystal's ``outline`` in it (px); NaN with fewer than ``MIN_PIXELS`` lit pixels."""
    dr, dc = outline.major_direction
    sums = _envelope_sums(
        np.ascontiguousarray(img, dtype=np.float32),
        outline.center_row,
        outline.center_col,
        dr,
        dc,
        outline.semi_major,
        outline.semi_minor,
    )
    if sums[0, 0] < MIN_PIXELS:
        return math.nan, math.nan
    try:  # least squares by the normal equations: 3 unknowns, well scaled
        coef = np.linalg.solve(sums[:, :3], sums[:, 3])
    except np.linalg.LinAlgError:  # e.g. every lit pixel on one line
        return math.nan, math.nan
    return float(coef[1]), float(coef[2])


@nb.njit(cache=True, nogil=True)
def _envelope_sums(img, cr, cc, dr, dc, a, b):  # pragma: no cover - numba
    """The normal equations ``[X'X | X'y]`` (3 x 4) of the fit log env = c0 + c_u u² + c_v v²
    over the pixels within ``FIT_RADIUS`` of the outline ``(cr, cc)``, ``(dr, dc)``, ``a``,
    ``b`` (px) whose envelope (3 x 3 maximum, edges clamped) is above ``ENVELOPE_FLOOR`` of the
    brightest there."""
    h, w = img.shape
    env = np.empty((h, w), np.float32)
    top = 0.0
    for i in range(h):
        for j in range(w):
            m = img[i, j]
            for di in range(max(i - 1, 0), min(i + 2, h)):
                for dj in range(max(j - 1, 0), min(j + 2, w)):
                    m = max(m, img[di, dj])
            env[i, j] = m
            y, x = i - cr, j - cc
            u, v = (y * dr + x * dc) / a, (-y * dc + x * dr) / b
            if u * u + v * v < FIT_RADIUS * FIT_RADIUS:
                top = max(top, m)
    out = np.zeros((3, 4))
    if not top > 0.0:
        return out
    level = ENVELOPE_FLOOR * top
    for i in range(h):
        for j in range(w):
            y, x = i - cr, j - cc
            u, v = (y * dr + x * dc) / a, (-y * dc + x * dr) / b
            uu, vv = u * u, v * v
            if uu + vv < FIT_RADIUS * FIT_RADIUS and env[i, j] > level:
                row = (1.0, uu, vv)
                z = math.log(env[i, j])
                for k in range(3):
                    for m in range(3):
                        out[k, m] += row[k] * row[m]
                    out[k, 3] += row[k] * z
    return out


def beam_shortfall(
    curvature: tuple[float, float], reference: tuple[float, float]
) -> tuple[float, float]:
    """The part of ``curvature`` below ``reference`` (:func:`beam_curvature`'s units) to undo,
    per axis: 0 for a shortfall up to ``GATE[0]`` or a NaN curvature, all of it from
    ``GATE[1]`` on, linearly between; never positive. Nothing is undone where either axis
    is more than ``CORE_EXCESS`` brighter toward the outside than the reference: that is dark
    ions in the core (their crystals also read dimmer toward the tips), not a beam, which
    leaves the other axis about as evenly lit crystals have it."""
    lo, hi = GATE
    excess = [c - ref for c, ref in zip(curvature, reference, strict=True)]
    if any(d > CORE_EXCESS for d in excess):
        return 0.0, 0.0
    out = [d * min(max((-d - lo) / (hi - lo), 0.0), 1.0) if d < 0 else 0.0 for d in excess]
    return out[0], out[1]


def flatten_beam(
    img: np.ndarray,
    outline: Ellipse,
    reference: tuple[float, float],
    noise: float = math.nan,
    noise_half: float = 0.0,
) -> tuple[float, float]:
    """In place: undo the shortfall of ``img``'s envelope curvature below ``reference``
    (:func:`beam_shortfall`), times :func:`noise_weight` of the frame's pixel ``noise``, by
    multiplying ``img`` with exp(-d_u min(u², REACH²) - d_v min(v², REACH²)). Returns the
    shortfall undone ``(d_u, d_v)`` ((0, 0): ``img`` untouched)."""
    d_u, d_v = beam_shortfall(beam_curvature(img, outline), reference)
    w = noise_weight(noise, noise_half)
    d_u, d_v = d_u * w, d_v * w
    if d_u == 0.0 and d_v == 0.0:
        return d_u, d_v
    u, v = _coordinates(img.shape, outline)
    reach = REACH * REACH
    img *= np.exp(-d_u * np.minimum(u * u, reach) - d_v * np.minimum(v * v, reach)).astype(
        img.dtype
    )
    return d_u, d_v


def noise_weight(noise: float, noise_half: float) -> float:
    """The share of a beam's shortfall to undo in a frame of pixel ``noise``
    (``ccount_core.image.preprocess.pixel_noise``, dimensionless): 1 / (1 + (noise /
    ``noise_half``)²); 1 when ``noise_half`` is 0 or ``noise`` NaN. A noisy frame's dim outer
    layers are largely noise, which evening them out would amplify and the models read as
    ions."""
    if not noise_half > 0.0 or not math.isfinite(noise):
        return 1.0
    return 1.0 / (1.0 + (noise / noise_half) ** 2)


def beam_note(shortfall: tuple[float, float]) -> str | None:
    """A note naming the uneven lighting :func:`flatten_beam` undid, else None."""
    d_u, d_v = shortfall
    if d_u == 0.0 and d_v == 0.0:
        return None
    parts = []
    if d_v < 0.0:
        parts.append(f"outer layers at {100 * math.exp(d_v):.0f} %")
    if d_u < 0.0:
        parts.append(f"tips at {100 * math.exp(d_u):.0f} %")
    return (
        f"beam: the cooling beam lights the crystal unevenly ({' and '.join(parts)} of the "
        "centre's brightness, relative to evenly lit crystals); the preparation evened it out, "
        "but centre and widen the cooling beam for a surer count"
    )


__all__ = ["beam_curvature", "beam_note", "beam_shortfall", "flatten_beam", "noise_weight"]
