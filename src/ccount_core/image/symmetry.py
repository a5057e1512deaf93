"""Refine a fitted ellipse's centre and angle by the crystal's mirror symmetry.

A Coulomb crystal's image is symmetric about its trap axis and about the perpendicular
through its centre. The outline fit (:mod:`ccount_core.image.ellipse`) finds the centre and
the angle from edge points whose sampling depends on how the pixel grid lies under the
crystal: turning the camera moves them by up to 0.8 px and 0.7°, and the prepared image, hence
the count, by up to 1.5 % (docs/BENCHMARKS.md, "Orientation"). Here the centre ``c`` and angle
``θ`` are moved to where the frame best matches its own two mirror images,

    min over (c, θ) of  Σ_p [I(T(u, v)) − I(T(u, −v))]² + [I(T(u, v)) − I(T(−u, v))]²,
    T(u, v) = c + u·e_major(θ) + v·e_minor(θ),

over a grid of points ``(u, v)`` inside the ellipse laid out in the crystal's own frame, so
that the estimate turns with the crystal. Intensities are sampled bilinearly; a few
Gauss-Newton steps converge from the fit. Residuals far beyond the typical one (hot pixels)
are left out. A smooth brightness change (a cooling beam, a background gradient) moves the
estimate by about (relative gradient) × (spot size)², a few hundredths of a pixel, since the
ions' sharp spots carry the match. Round crystals (semi-axis ratio below the caller's
``round_ratio``) have no defined axis: only their centre is refined.
"""

from __future__ import annotations

import dataclasses
import math

import numba as nb
import numpy as np

from ccount_core.image.ellipse import Ellipse, wrap_axis_angle

__all__ = ["refine_by_symmetry"]

#: Grid points the sums run over (the grid step grows with the crystal).
GRID_POINTS = 3000
#: The grid covers the ellipse grown by this factor, so the outer ions' spots are in.
GRID_GROWTH = 1.15
#: Gauss-Newton steps at most, and the step (px, rad) below which it stops.
MAX_STEPS = 6
STEP_TOL = (0.02, 3.5e-4)
#: Residuals beyond this many robust standard deviations are left out (hot pixels).
OUTLIER_SIGMAS = 6.0
#: A match that moves the centre by more than this share of the semi-minor axis is not
#: trusted (the fitted ellipse is kept); one that turns the axis by more than
#: ``MAX_TURN_DEG`` (deg) keeps the fitted angle and refines the centre alone.
MAX_SHIFT = 0.15
MAX_TURN_DEG = 3.0


@nb.njit(cache=True, nogil=True, inline="always")
def _sample(img, r, c):  # pragma: no cover - numba
    """Bilinear value and gradient (d/drow, d/dcol) of ``img`` at ``(r, c)``; NaN outside."""
    h, w = img.shape
    if not (0.0 <= r <= h - 1.0 and 0.0 <= c <= w - 1.0):
        return np.nan, 0.0, 0.0
    r0 = min(int(r), h - 2)
    c0 = min(int(c), w - 2)
    fr, fc = r - r0, c - c0
    a, b = img[r0, c0], img[r0, c0 + 1]
    d, e = img[r0 + 1, c0], img[r0 + 1, c0 + 1]
    top = a + fc * (b - a)
    bot = d + fc * (e - d)
    return top + fr * (bot - top), bot - top, (1.0 - fr) * (b - a) + fr * (e - d)


@nb.njit(cache=True, nogil=True)
def _normal_equations(img, cr, cc, theta, us, vs, cut, fit_angle):  # pragma: no cover - numba
    """``(JᵀJ (3, 3), Jᵀr (3,), |r| of every residual (2N,), residuals used)`` for the two
    mirror residuals of each grid point ``(us[k], vs[k])`` about centre ``(cr, cc)`` (px) and
    angle ``theta`` (rad); residuals with ``|r| > cut`` are left out."""
    st, ct = math.sin(theta), math.cos(theta)
    mr, mc = -st, ct  # e_major in (row, col): the angle is counter-clockwise as displayed
    nr, nc = -ct, -st  # e_minor = d e_major / d theta
    jtj = np.zeros((3, 3))
    jtr = np.zeros(3)
    mags = np.full(2 * us.size, np.nan)
    used = 0
    for k in range(us.size):
        u, v = us[k], vs[k]
        pr, pc = cr + u * mr + v * nr, cc + u * mc + v * nc
        i0, g0r, g0c = _sample(img, pr, pc)
        if np.isnan(i0):
            continue
        for m in range(2):
            su, sv = (u, -v) if m == 0 else (-u, v)
            qr, qc = cr + su * mr + sv * nr, cc + su * mc + sv * nc
            i1, g1r, g1c = _sample(img, qr, qc)
            if np.isnan(i1):
                continue
            r = i0 - i1
            mags[2 * k + m] = abs(r)
            if abs(r) > cut:
                continue
            # dT/dtheta = u e_minor - v e_major at (u, v); at the mirror (su, sv) likewise
            j0 = g0r - g1r
            j1 = g0c - g1c
            j2 = 0.0
            if fit_angle:
                t0r, t0c = u * nr - v * mr, u * nc - v * mc
                t1r, t1c = su * nr - sv * mr, su * nc - sv * mc
                j2 = g0r * t0r + g0c * t0c - (g1r * t1r + g1c * t1c)
            jtr[0] += j0 * r
            jtr[1] += j1 * r
            jtr[2] += j2 * r
            jtj[0, 0] += j0 * j0
            jtj[0, 1] += j0 * j1
            jtj[0, 2] += j0 * j2
            jtj[1, 1] += j1 * j1
            jtj[1, 2] += j1 * j2
            jtj[2, 2] += j2 * j2
            used += 1
    jtj[1, 0], jtj[2, 0], jtj[2, 1] = jtj[0, 1], jtj[0, 2], jtj[1, 2]
    return jtj, jtr, mags, used


def _grid(ell: Ellipse) -> tuple[np.ndarray, np.ndarray]:
    """Grid points ``(u, v)`` (px, along the major and minor axis) inside the grown ellipse,
    symmetric under both mirrors, about ``GRID_POINTS`` of them."""
    a, b = GRID_GROWTH * ell.semi_major, GRID_GROWTH * ell.semi_minor
    step = max(0.5, math.sqrt(math.pi * a * b / GRID_POINTS))
    nu, nv = int(a / step), int(b / step)
    u, v = np.meshgrid(np.arange(-nu, nu + 1) * step, np.arange(-nv, nv + 1) * step)
    inside = (u / a) ** 2 + (v / b) ** 2 <= 1.0
    return u[inside].astype(np.float64), v[inside].astype(np.float64)


def _match(frame: np.ndarray, ell: Ellipse, fit_angle: bool) -> tuple[float, float, float] | None:
    """Gauss-Newton from ``ell``: the best-matching ``(centre row, centre col (px), angle
    (rad))``, the angle kept unless ``fit_angle``; None when too few points are in the frame
    or the normal equations are singular."""
    us, vs = _grid(ell)
    cr, cc, theta = ell.center_row, ell.center_col, math.radians(ell.angle_deg)
    cut = np.inf
    for _ in range(MAX_STEPS):
        jtj, jtr, mags, used = _normal_equations(frame, cr, cc, theta, us, vs, cut, fit_angle)
        if used < 50:
            return None
        if not np.isfinite(cut):  # set once, from the fit's residuals, so the sum stays fixed
            cut = OUTLIER_SIGMAS * 1.4826 * max(float(np.median(mags[np.isfinite(mags)])), 1e-12)
        if not fit_angle:
            jtj[2, 2] = 1.0
        try:
            step = -np.linalg.solve(jtj, jtr)
        except np.linalg.LinAlgError:
            return None
        cr, cc, theta = cr + step[0], cc + step[1], theta + step[2]
        if math.hypot(step[0], step[1]) < STEP_TOL[0] and abs(step[2]) < STEP_TOL[1]:
            break
    return cr, cc, theta


def refine_by_symmetry(img: np.ndarray, ell: Ellipse, round_ratio: float) -> Ellipse:
    """``ell`` with its centre (px) and angle (deg) moved to where ``img`` ``(rows, cols)``
    best matches its mirror images about the ellipse's axes (module docstring); semi-axes,
    quality and notes unchanged.

    The angle stays as fitted when ``semi_major / semi_minor < round_ratio`` or when the
    match would turn it by more than ``MAX_TURN_DEG`` (a nearly round crystal of a few ions);
    ``ell`` is returned as it is when the centre would move by more than ``MAX_SHIFT`` of the
    semi-minor axis or the match fails.
    """
    frame = np.ascontiguousarray(img, dtype=np.float32)
    fit_angle = ell.semi_major / ell.semi_minor >= round_ratio
    found = _match(frame, ell, fit_angle)
    if found is not None and fit_angle:
        if abs(wrap_axis_angle(math.degrees(found[2]) - ell.angle_deg)) > MAX_TURN_DEG:
            found = _match(frame, ell, False)
    if found is None:
        return ell
    cr, cc, theta = found
    if math.hypot(cr - ell.center_row, cc - ell.center_col) > MAX_SHIFT * ell.semi_minor:
        return ell
    return dataclasses.replace(
        ell,
        center_row=float(cr),
        center_col=float(cc),
        angle_deg=wrap_axis_angle(math.degrees(theta)),
    )
