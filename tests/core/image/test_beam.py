"""Evening out a cooling beam narrower than the crystal (ccount_core.image.beam)."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

from ccount_core.errors import InputError
from ccount_core.image.beam import (
    CORE_EXCESS,
    GATE,
    beam_curvature,
    beam_note,
    beam_shortfall,
    flatten_beam,
    noise_weight,
)
from ccount_core.image.ellipse import Ellipse
from ccount_core.image.preprocess import PreprocessConfig

#: A prepared frame's crystal: trap axis along the rows, centred in 96 x 48 px.
OUTLINE = Ellipse(47.5, 23.5, 36.0, 15.0, 90.0)
EDGE = math.log(0.3)  # the outline's edge at 30 % of the centre


def spots(height: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> np.ndarray:
    """Ion spots (Gaussian, σ 0.8 px) 3 px apart inside ``OUTLINE``, of heights
    ``height(u, v)`` at their normalised coordinates along and across the trap axis."""
    rows, cols = np.mgrid[0:96, 0:48].astype(np.float64)
    img = np.zeros((96, 48))
    for r in np.arange(13.0, 83.0, 3.0):
        for c in np.arange(9.0 + (r % 2), 39.0, 3.0):
            u, v = (r - OUTLINE.center_row) / 36.0, (c - OUTLINE.center_col) / 15.0
            if u * u + v * v <= 1.0:
                h = height(np.array(u), np.array(v))
                img += h * np.exp(-((rows - r) ** 2 + (cols - c) ** 2) / (2 * 0.8**2))
    return img.astype(np.float32)


def even(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.ones_like(u)


def test_the_curvature_reads_how_the_spots_dim_toward_the_outside() -> None:
    c_u, c_v = beam_curvature(spots(even), OUTLINE)
    assert abs(c_u) < 0.1 and abs(c_v) < 0.1
    # A beam along the trap axis dims the outer layers; one across it, the tips.
    c_u, c_v = beam_curvature(spots(lambda u, v: np.exp(EDGE * v * v)), OUTLINE)
    assert abs(c_u) < 0.1 and c_v == pytest.approx(EDGE, abs=0.15)
    c_u, c_v = beam_curvature(spots(lambda u, v: np.exp(EDGE * u * u)), OUTLINE)
    assert c_u == pytest.approx(EDGE, abs=0.15) and abs(c_v) < 0.1
    assert math.isnan(beam_curvature(np.zeros((96, 48), np.float32), OUTLINE)[0])


@pytest.mark.parametrize("axis", ["across", "along"])
def test_flattening_gives_back_the_evenly_lit_crystal(axis: str) -> None:
    def dim(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        return np.exp(EDGE * (v * v if axis == "across" else u * u))

    clean, img = spots(even), spots(dim)
    before = np.abs(img - clean)[clean > 0.5].mean()
    d_u, d_v = flatten_beam(img, OUTLINE, (0.0, 0.0))
    undone = d_v if axis == "across" else d_u
    assert undone == pytest.approx(EDGE, abs=0.15)
    assert (d_u if axis == "across" else d_v) == 0.0
    after = np.abs(img - clean)[clean > 0.5].mean()
    assert after < 0.25 * before
    assert max(abs(c) for c in beam_curvature(img, OUTLINE)) < 0.15


def test_an_evenly_lit_crystal_and_a_dark_core_are_left_alone() -> None:
    reference = beam_curvature(spots(even), OUTLINE)
    for height in (
        even,
        lambda u, v: np.exp(-0.5 * GATE[0] * v * v),  # within the gate: the renders' scatter
        lambda u, v: (u * u + v * v > 0.25).astype(float),  # dark ions fill the core
        # ... and reach toward the tips: the sides read brighter outside, the tips dimmer.
        lambda u, v: np.exp(EDGE * u * u) * np.where(np.abs(v) < 0.6, 0.2, 1.0),
    ):
        img = spots(height)
        copy = img.copy()
        assert flatten_beam(img, OUTLINE, reference) == (0.0, 0.0)
        assert np.array_equal(img, copy)


def test_the_shortfall_ramps_up_between_the_gate_s_ends() -> None:
    lo, hi = GATE
    assert beam_shortfall((-lo + 1e-9, -hi - 0.1), (0.0, 0.0)) == (0.0, -hi - 0.1)
    d, _ = beam_shortfall((-(lo + hi) / 2, 0.0), (0.0, 0.0))
    assert d == pytest.approx(-(lo + hi) / 4)
    assert beam_shortfall((1.0, math.nan), (0.0, 0.0)) == (0.0, 0.0)  # brighter outside
    assert beam_shortfall((-1.3, -0.2), (-0.3, -0.2)) == (-1.0, 0.0)  # relative to the reference
    assert beam_shortfall((-1.3, CORE_EXCESS + 0.01), (0.0, 0.0)) == (0.0, 0.0)  # a dark core


def test_noisy_frames_are_evened_out_less() -> None:
    assert noise_weight(0.1, 0.0) == 1.0
    assert noise_weight(math.nan, 0.1) == 1.0
    assert noise_weight(0.1, 0.1) == pytest.approx(0.5)
    img = spots(lambda u, v: np.exp(EDGE * v * v))
    whole = flatten_beam(img.copy(), OUTLINE, (0.0, 0.0))
    half = flatten_beam(img, OUTLINE, (0.0, 0.0), noise=0.05, noise_half=0.05)
    assert half[1] == pytest.approx(whole[1] / 2)


def test_the_note_says_which_part_was_dim_and_how_dim() -> None:
    assert beam_note((0.0, 0.0)) is None
    note = beam_note((0.0, math.log(0.3)))
    assert note.startswith("beam: ") and "outer layers at 30 %" in note and "tips" not in note
    assert "tips at 50 %" in beam_note((math.log(0.5), 0.0))
    assert "widen the cooling beam" in note


def test_the_config_keeps_the_beam_settings_and_refuses_bad_ones() -> None:
    plain = PreprocessConfig()
    assert "beam_reference" not in plain.to_dict() and "beam_noise" not in plain.to_dict()
    cfg = PreprocessConfig(beam_reference=(-0.3, -0.2), beam_noise=0.1)
    again = PreprocessConfig.from_json(cfg.to_json())
    assert again == cfg and again.beam_reference == (-0.3, -0.2)
    assert cfg.fingerprint() != plain.fingerprint()
    for bad in ({"beam_reference": (1.0,)}, {"beam_reference": ("a", 0)}, {"beam_noise": -0.1}):
        with pytest.raises(InputError, match="beam_"):
            PreprocessConfig(**bad)
