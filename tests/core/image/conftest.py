"""Fixtures of the image tests: synthetic crystals of known geometry, whose truth comes from
the ion shells drawn (``synthetic_crystals.py``), not from the code under test."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import synthetic_crystals


@pytest.fixture(scope="session")
def synthetic_crystal() -> Callable[..., tuple]:
    """``synthetic_crystal(**geometry) -> (image, truth Ellipse)``: one rendered crystal."""
    return synthetic_crystals.synthetic_crystal


@pytest.fixture(scope="session")
def ion_positions() -> Callable[..., tuple]:
    """``ion_positions(a_t, a_r, spacing, rng) -> (xyz, shell)``: the ions it draws."""
    return synthetic_crystals.ion_positions
