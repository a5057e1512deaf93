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
#: The gain stops growing beyond this normalised coordinate (the mask margin's spots).
REACH = 1.0


def _coordinates(shape: tuple[int, int], outline: Ellipse) -> tuple[np.ndarray, np.ndarray]:
    """Normalised coordinates ``(u, v)`` of every pixel of a ``shape`` image along the
    outline's major and minor axes (1 on the outline)."""
    rows, cols = np.indices(shape, dtype=np.float64)
    dr, dc = outline.major_direction
    y, x = rows - outline.center_row, cols - outline.center_col
    return (y * dr + x * dc) / outline.semi_major, (-y * dc + x * dr) / outline.semi_minor


def _envelope(img: np.ndarray) -> np.ndarray:
    """Each pixel's maximum over its 3 x 3 neighbourhood (float64)."""
    padded = np.pad(np.asarray(img, np.float64), 1, mode="edge")
    across = np.maximum(np.maximum(padded[:, :-2], padded[:, 1:-1]), padded[:, 2:])
    return np.maximum(np.maximum(across[:-2], across[1:-1]), across[2:])


def beam_curvature(img: np.ndarray, outline: Ellipse) -> tuple[float, float]:
    """``(c_u, c_v)``: the curvatures of the log envelope of ``img``'s ion spots along the
    outline's major and minor axes (dimensionless; 0 = evenly lit, ln 0.3 = the outline's edge
    at 30 % of the centre) for a background-subtracted ``(rows, cols)`` image and the
    crystal's ``outline`` in it (px); NaN with fewer than ``MIN_PIXELS`` lit pixels."""
    env = _envelope(img)
    u, v = _coordinates(img.shape, outline)
    inside = u * u + v * v < FIT_RADIUS**2
    top = env[inside].max() if inside.any() else 0.0
    use = inside & (env > ENVELOPE_FLOOR * top)
    if not top > 0 or use.sum() < MIN_PIXELS:
        return math.nan, math.nan
    design = np.stack([np.ones(use.sum()), u[use] ** 2, v[use] ** 2], axis=1)
    coef, *_ = np.linalg.lstsq(design, np.log(env[use]), rcond=None)
    return float(coef[1]), float(coef[2])


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
