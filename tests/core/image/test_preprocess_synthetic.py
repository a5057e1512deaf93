"""Checks of the synthetic Coulomb-crystal generator (``synthetic_crystals.py``, given to the
image tests by ``conftest.py``): its truth ellipse is where its ions are."""

from __future__ import annotations

import numpy as np


def test_generator_truth_matches_ion_positions(ion_positions) -> None:
    """The outer-shell ions lie on the truth ellipse (within the jitter)."""
    rng = np.random.default_rng(3)
    xyz, shell = ion_positions(80.0, 45.0, 7.0, rng)
    outer = xyz[shell == 0]
    f = (outer[:, 0] / 80.0) ** 2 + (outer[:, 1] ** 2 + outer[:, 2] ** 2) / 45.0**2
    assert abs(np.median(np.sqrt(f)) - 1.0) < 0.02
    assert shell.max() >= 4  # several shells inside


def test_generator_places_crystal_at_centre_and_angle(synthetic_crystal) -> None:
    img, truth = synthetic_crystal(angle_deg=30.0, offset=0.0)
    rr, cc = np.mgrid[0 : img.shape[0], 0 : img.shape[1]]
    w = img / img.sum()
    assert abs((rr * w).sum() - 128.0) < 1.0 and abs((cc * w).sum() - 128.0) < 1.0
    assert truth.angle_deg == 30.0 and truth.semi_major == 80.0
