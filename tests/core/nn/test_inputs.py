"""Frames unlike the training images are named, and their σ widened (issue 27, points 4-5)."""

from __future__ import annotations

import numpy as np
import pytest

from ccount_core.dataset.samples import load_sample
from ccount_core.image.preprocess import PreprocessConfig, prepare_stack
from ccount_core.nn.count import model_error, validation_error
from ccount_core.nn.inputs import input_statistics, range_warnings
from ccount_core.nn.model import default_model_path, read_card


def test_a_dark_core_is_seen_and_named_with_its_fix() -> None:
    card = read_card(default_model_path())
    series, meta = load_sample("reaction_series")
    px = meta["pixel_size_um"]
    out = prepare_stack(series[[0, 15]], PreprocessConfig.from_dict(card["preprocess"]), None, px)
    pure, dark = (input_statistics(out.images[i], out.ellipses[i], px) for i in (0, 1))
    # Frame 15 has 245 of its 350 ions dark in the core: less light there than in frame 0.
    assert dark["core_light"] < pure["core_light"] - 0.2
    assert range_warnings(pure, card["input_ranges"]) == []
    (warning,) = range_warnings(dark, card["input_ranges"])
    assert warning.startswith("unlike the training images: light in the core")
    assert warning.endswith("count with --model dark or ensemble")
    assert range_warnings(dark, {}) == []  # a card without ranges warns of nothing


def test_model_error_scales_the_validation_rms_and_widens_unlike_frames() -> None:
    card = read_card(default_model_path())
    counts = np.array([100.0, 200.0, 300.0])
    base = validation_error(card, counts)
    f = card["uncertainty"]
    got = model_error(card, counts, {1: ["unlike: ..."], 2: []}, 3)
    assert got == pytest.approx(base * f["scale"] * np.array([1.0, f["unlike_scale"], 1.0]))
    bare = {k: v for k, v in card.items() if k != "uncertainty"}
    assert model_error(bare, counts, {1: ["x"]}, 3) == pytest.approx(base)
