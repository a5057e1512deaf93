"""Count calibration: a smooth increasing map from a model's count to the expected true count,
fitted on held-out images (a data set's test split, never its training or validation split).

A regression network is pulled toward the middle of its training range: the shipped ensemble
reads 30-ion crystals about one ion high and 350-ion crystals about seven low (docs/MODEL.md).
The map ``g`` is piecewise linear in the count, with knots every ``step`` ions across the
range, fitted by least squares with a penalty on its curvature, and made non-decreasing, so it
can only move counts toward where the held-out images say they belong and never reorder two
frames. Outside its knots it keeps the last offset (slope 1).

A card carries it as ``calibration: {label: {"knots": [...], "values": [...]}}`` (ions);
:meth:`ccount_core.nn.ensemble.IonCounter.combine` applies it to the counts it returns.

The camera moves a count too. Pixel noise pulls the shipped default down (5 % at pixel noise
0.10, ``ccount_core.image.preprocess.pixel_noise``, 10 % at 0.15) and light in a PSF's wide
wings pushes it up (4 % at a halo of 0.025, ``ccount_core.image.halo.halo_light``). A card's
``camera_calibration: {"noise_b": b, "halo_a": a}`` says that a count reads
exp(b·noise² + a·halo) times the count of the same crystal through a clean camera;
``count_stack`` divides the first label's count by it (:func:`camera_calibration_factor`),
with each exponent fitted on pairs of renders of the same crystal with and without the
imperfection (:func:`fit_exponent`, ``scripts/camera_calibration.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ccount_core.errors import InputError


def fit_calibration(
    pred: np.ndarray,
    true: np.ndarray,
    lo: float,
    hi: float,
    step: float = 10.0,
    smooth: float = 1.0,
    relative: bool = True,
) -> dict[str, list[float]]:
    """``{"knots", "values"}`` (ions) of the map from ``pred`` to ``true`` (both ``(n,)``,
    ions) with knots every ``step`` ions from ``lo - step`` to ``hi + step``.

    ``relative``: each image's squared error is weighed by 1 / true², so the fit minimises
    the RMS percentage error (the goal's measure); else the RMS error in ions. ``smooth``:
    weight of the squared second differences of the values against the (weighted) squared
    errors, in units of one average image's; larger is straighter.
    """
    pred = np.asarray(pred, np.float64)
    true = np.asarray(true, np.float64)
    ok = np.isfinite(pred) & np.isfinite(true)
    pred, true = pred[ok], true[ok]
    if step <= 0 or not hi > lo:
        raise InputError(f"calibration: needs lo < hi and step > 0, got {lo}, {hi}, {step}")
    knots = np.arange(lo - step, hi + step + step / 2, step)
    if len(pred) < 4 * len(knots):
        raise InputError(f"calibration: {len(pred)} images are too few for {len(knots)} knots")
    weight = 1 / np.maximum(np.abs(true), 1) ** 2 if relative else np.ones_like(true)
    weight /= weight.mean()
    basis = _hat_basis(pred, knots)
    curve = np.diff(np.eye(len(knots)), n=2, axis=0)
    lhs = basis.T @ (weight[:, None] * basis) + smooth * curve.T @ curve
    # beyond the end knots the map has slope 1: there an image's target is its true count
    # less its distance past the knot. The small ridge keeps a knot no image reaches in place.
    target = true - (pred - np.clip(pred, knots[0], knots[-1]))
    ridge = 1e-6 * np.trace(lhs) / len(knots)
    values = np.linalg.solve(
        lhs + ridge * np.eye(len(knots)), basis.T @ (weight * target) + ridge * knots
    )
    values = np.maximum.accumulate(values)  # never reorder two counts
    return {"knots": knots.tolist(), "values": values.tolist()}


def apply_calibration(counts: np.ndarray, calibration: Mapping[str, Any]) -> np.ndarray:
    """``counts`` (any shape, ions) through the map, as floats of the counts' precision
    (float64 for integer counts); NaN stays NaN."""
    knots = np.asarray(calibration["knots"], np.float64)
    values = np.asarray(calibration["values"], np.float64)
    c = np.asarray(counts, np.float64)
    out = np.interp(c, knots, values)
    out = np.where(c < knots[0], c + (values[0] - knots[0]), out)
    out = np.where(c > knots[-1], c + (values[-1] - knots[-1]), out)
    return out.astype(np.result_type(np.asarray(counts).dtype, np.float32), copy=False)


#: The terms of a ``camera_calibration``: (card key, the ``Ellipse`` reading it multiplies,
#: the power the reading is raised to).
CAMERA_TERMS = (("noise_b", "pixel_noise", 2), ("halo_a", "halo_light", 1))


def camera_calibration_factor(
    readings: Mapping[str, np.ndarray], calibration: Mapping[str, Any]
) -> np.ndarray:
    """exp(-(noise_b·noise² + halo_a·halo)): what the counts of frames with the camera
    ``readings`` (``{"pixel_noise": (n,), "halo_light": (n,)}``, dimensionless) are multiplied
    by, the exponents from the card's ``calibration`` (a missing one is 0; a NaN reading
    counts as 0)."""
    exponent = 0.0
    for key, reading, power in CAMERA_TERMS:
        if key in calibration:
            x = np.nan_to_num(np.asarray(readings[reading], np.float64)) ** power
            exponent = exponent + float(calibration[key]) * x
    return np.exp(-np.asarray(exponent, np.float64))


def fit_exponent(ratio: np.ndarray, x: np.ndarray) -> float:
    """``k`` of ratio = exp(k·x), by least squares on log(``ratio``) through the origin:
    ``ratio`` ``(n,)`` is each frame's count over the count of the same crystal without the
    imperfection, ``x`` ``(n,)`` the imperfection's measure (e.g. pixel noise², halo); pairs
    with a non-finite part are left out."""
    y = np.log(np.asarray(ratio, np.float64))
    x = np.asarray(x, np.float64)
    ok = np.isfinite(y) & np.isfinite(x)
    if not np.any(x[ok] != 0):
        raise InputError("camera calibration: no frame with the imperfection to fit on")
    return float(np.sum(x[ok] * y[ok]) / np.sum(x[ok] ** 2))


def check_camera_calibration(calibration: Any, where: str) -> None:
    """Raise InputError unless ``calibration`` holds a finite number for at least one of the
    terms (``noise_b``, ``halo_a``) and nothing but numbers for them."""
    keys = [key for key, _, _ in CAMERA_TERMS]
    if not isinstance(calibration, Mapping) or not any(k in calibration for k in keys):
        raise InputError(f"{where}: camera_calibration needs {' or '.join(keys)}")
    for k in keys:
        v = calibration.get(k, 0.0)
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not np.isfinite(v):
            raise InputError(f"{where}: camera_calibration {k} must be a finite number")


def check_calibration(calibration: Any, labels: list[str], where: str) -> None:
    """Raise InputError unless ``calibration`` maps some of ``labels`` to increasing knots
    with as many values."""
    if not isinstance(calibration, Mapping) or not calibration:
        raise InputError(f"{where}: calibration must map a label to knots and values")
    for label, cal in calibration.items():
        if label not in labels:
            raise InputError(f"{where}: calibration of {label!r}, which it does not count")
        knots = np.asarray(cal.get("knots", []) if isinstance(cal, Mapping) else [], float)
        values = np.asarray(cal.get("values", []) if isinstance(cal, Mapping) else [], float)
        if (
            knots.ndim != 1
            or len(knots) < 2
            or knots.shape != values.shape
            or not np.all(np.diff(knots) > 0)
            or not np.all(np.isfinite(values))
        ):
            raise InputError(
                f"{where}: calibration of {label!r} needs two or more increasing "
                "knots and as many finite values"
            )


def _hat_basis(x: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """``(n, k)`` weights of each knot in the linear interpolation at ``x`` (clamped)."""
    xc = np.clip(x, knots[0], knots[-1])
    j = np.clip(np.searchsorted(knots, xc, side="right") - 1, 0, len(knots) - 2)
    t = (xc - knots[j]) / (knots[j + 1] - knots[j])
    basis = np.zeros((len(x), len(knots)))
    rows = np.arange(len(x))
    basis[rows, j] = 1 - t
    basis[rows, j + 1] = t
    return basis
