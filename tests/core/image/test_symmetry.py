"""The symmetry refinement of a fitted ellipse (ccount_core.image.symmetry): its centre and
angle turn with the crystal (issue 27, point 1), hold against camera defects, and a match
far from the fit is not trusted."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from ccount_core.image import symmetry
from ccount_core.image.ellipse import fit_ellipse
from ccount_core.image.preprocess import PreprocessConfig, prepare_frame, prepare_stack
from ccount_core.image.symmetry import refine_by_symmetry

GEOMETRY = dict(shape=(256, 256), center=(128.3, 127.6), a_t=80.0, a_r=32.0, spot_sigma=1.6)


def _in_crystal_frame(ell, truth, angle: float) -> tuple[float, float, float]:
    """``ell``'s centre offset from ``truth``'s along and across the crystal drawn at
    ``angle`` (deg; the ellipse's own angle is only known modulo 180°), in px, and its angle
    offset (deg)."""
    t = math.radians(angle)
    dr, dc = ell.center_row - truth.center_row, ell.center_col - truth.center_col
    along = -dr * math.sin(t) + dc * math.cos(t)
    across = dr * math.cos(t) + dc * math.sin(t)
    turn = (ell.angle_deg - truth.angle_deg + 90.0) % 180.0 - 90.0
    return along, across, turn


def test_the_refined_centre_and_angle_turn_with_the_crystal(synthetic_crystal) -> None:
    fitted, refined = [], []
    for angle in range(0, 360, 30):
        img, truth = synthetic_crystal(**GEOMETRY, angle_deg=float(angle), seed=3)
        ell = fit_ellipse(img)
        fitted.append(_in_crystal_frame(ell, truth, angle))
        refined.append(_in_crystal_frame(refine_by_symmetry(img, ell, 1.05), truth, angle))
    fitted, refined = np.array(fitted), np.array(refined)
    # In the crystal's own frame the refined offsets are the same at every angle (the same
    # ions are drawn at each); the outline fit's scatter several times more.
    spread = refined.max(axis=0) - refined.min(axis=0)
    assert spread[0] < 0.1 and spread[1] < 0.1, refined
    assert spread[2] < 0.1, refined
    fit_spread = fitted.max(axis=0) - fitted.min(axis=0)
    assert max(fit_spread[:2]) > 2 * max(spread[:2]), (fitted, refined)
    # and they sit on the crystal's axis of symmetry (the drawn ions' jitter aside)
    assert np.abs(refined[:, :2]).max() < 0.5 and np.abs(refined[:, 2]).max() < 0.5, refined


def test_hot_pixels_noise_and_a_gradient_barely_move_it(synthetic_crystal) -> None:
    clean, _ = synthetic_crystal(**GEOMETRY, angle_deg=20.0, seed=5)
    dirty, _ = synthetic_crystal(
        **GEOMETRY, angle_deg=20.0, seed=5, snr=20.0, hot_pixels=40, gradient=0.15
    )
    a = refine_by_symmetry(clean, fit_ellipse(clean), 1.05)
    # the same start for both, so only the frame differs
    b = refine_by_symmetry(dirty, fit_ellipse(clean), 1.05)
    # each alone moves it by under 0.03 px and 0.01°; together (other hot pixels) 0.10 px, 0.14°
    assert math.hypot(a.center_row - b.center_row, a.center_col - b.center_col) < 0.15, (a, b)
    assert abs(a.angle_deg - b.angle_deg) < 0.2, (a, b)


def test_a_round_crystal_keeps_its_fitted_angle(synthetic_crystal) -> None:
    img, truth = synthetic_crystal(**{**GEOMETRY, "a_t": 40.0, "a_r": 40.0}, seed=2)
    ell = dataclasses.replace(fit_ellipse(img), center_row=truth.center_row + 0.7)
    out = refine_by_symmetry(img, ell, 1.05 * ell.semi_major / ell.semi_minor)
    assert out.angle_deg == ell.angle_deg
    assert abs(out.center_row - truth.center_row) < 0.3  # the centre is refined


def test_a_start_a_few_pixels_off_comes_back(synthetic_crystal) -> None:
    img, truth = synthetic_crystal(**GEOMETRY, seed=4)
    ell = fit_ellipse(img)
    for off in (2.0, 4.0):  # px along the trap axis; the outline fit is within 1 px
        out = refine_by_symmetry(
            img, dataclasses.replace(ell, center_col=ell.center_col + off), 1.05
        )
        assert (
            math.hypot(out.center_row - truth.center_row, out.center_col - truth.center_col) < 0.2
        )


def test_a_turn_beyond_the_limit_keeps_the_fitted_angle(synthetic_crystal, monkeypatch) -> None:
    img, truth = synthetic_crystal(**GEOMETRY, seed=4)
    ell = dataclasses.replace(fit_ellipse(img), center_row=truth.center_row + 1.0, angle_deg=1.0)
    assert abs(refine_by_symmetry(img, ell, 1.05).angle_deg) < 0.3  # turned back to ~0°
    monkeypatch.setattr(symmetry, "MAX_TURN_DEG", 0.5)
    out = refine_by_symmetry(img, ell, 1.05)
    assert out.angle_deg == ell.angle_deg
    assert abs(out.center_row - truth.center_row) < 0.3  # the centre is still refined
    monkeypatch.setattr(symmetry, "MAX_SHIFT", 0.01)  # a move beyond it is not trusted
    assert refine_by_symmetry(img, ell, 1.05) is ell


def test_the_pipeline_refines_a_fitted_ellipse_but_not_a_given_one(synthetic_crystal) -> None:
    img, truth = synthetic_crystal(**GEOMETRY, angle_deg=35.0, seed=6)
    cfg = PreprocessConfig(model_pixel_size_um=2.0, output_shape=(240, 96))
    on = dataclasses.replace(cfg, symmetry_refine=True)
    _, fitted = prepare_frame(img, cfg, camera_pixel_size_um=1.0)
    _, refined = prepare_frame(img, on, camera_pixel_size_um=1.0)
    assert refined == refine_by_symmetry(img, fitted, 1.05)
    assert refined != fitted
    stack = prepare_stack(img[None], on, camera_pixel_size_um=1.0)  # the path counting takes
    assert stack.ellipses == [refined]
    _, given = prepare_frame(img, on, ellipse=truth, camera_pixel_size_um=1.0)
    assert given == truth
    # a card without the option prepares as before (version 1) and says nothing of it
    assert "symmetry_refine" not in cfg.to_dict()
    assert PreprocessConfig.from_dict(on.to_dict()) == on
