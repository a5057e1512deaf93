"""Sample data: the reaction series' truth, its dark core, and the shipped files."""

from __future__ import annotations

import numpy as np
import pytest

from ccount_core.dataset.samples import load_sample, reaction_numbers, reaction_series
from ccount_core.errors import InputError
from ccount_core.simulation import SimulationSettings
from ccount_core.simulation.render import ImagingSettings

SMALL = ImagingSettings.from_lab_units(pixel_size_um=2.0, shape=(96, 192), defocus_weighting="flux")
FAST = SimulationSettings(mode="pseudo", gather_periods=20, samples=20)


def test_reaction_numbers_decay_and_conserve_ions() -> None:
    ca = reaction_numbers(200, 5, 0.5)
    assert ca == [200, 121, 74, 45, 27]


def test_reaction_series_truth_and_dark_core() -> None:
    stack, meta = reaction_series(
        n_frames=2, n_initial=40, decay_per_frame=1.0, seed=5, imaging=SMALL, simulation=FAST
    )
    assert stack.shape == (2, 96, 192) and stack.dtype == np.float32
    truth = meta["true_counts"]
    assert truth == {"Ca+": [40, 15], "ND3+": [0, 25]}
    assert meta["pixel_size_um"] == 2.0 and meta["product"] == "ND3+"
    # Noise-free, flux-conserving images in ion exposures: the light is the Ca+ number.
    lit = stack.reshape(2, -1).sum(axis=1)
    assert lit == pytest.approx([40, 15], rel=0.01)
    # The dark ND3+ core: both frames hold 40 ions, but once the lighter product fills the
    # middle (frame 1) the Ca+ light comes from further off the axis than in the pure crystal.
    offset = np.arange(96)[:, None] - 47.5  # rows from the axis, px
    rms = [np.sqrt((stack[f] * offset**2).sum() / stack[f].sum()) for f in (0, 1)]
    assert rms[1] > 1.2 * rms[0]


def test_reaction_series_rejects_bad_input() -> None:
    with pytest.raises(InputError, match="product"):
        reaction_series(n_frames=1, product="Ca+", imaging=SMALL, simulation=FAST)
    with pytest.raises(InputError, match="n_frames"):
        reaction_series(n_frames=0)
    with pytest.raises(InputError, match="unknown sample"):
        load_sample("nope")


def test_shipped_reaction_series_has_truth_and_pixel_size() -> None:
    stack, meta = load_sample("reaction_series")
    assert stack.dtype == np.uint16 and stack.ndim == 3 and stack.shape[0] >= 12
    truth = meta["true_counts"]
    ca, dark = np.array(truth["Ca+"]), np.array(truth[meta["product"]])
    assert len(ca) == stack.shape[0] and np.all(np.diff(ca) <= 0) and np.all(np.diff(dark) >= 0)
    assert np.all(ca + dark == ca[0])
    assert meta["pixel_size_um"] > 0 and meta["imaging"]["rotation_deg"] != 0
    # Camera-like: a bias, shot-noise texture and a crystal well above the background.
    first = stack[0].astype(float)
    assert 50 < np.median(first) < 300 and first.max() > np.median(first) + 150


def test_shipped_single_crystal_opens_through_io() -> None:
    from importlib.resources import as_file, files

    from ccount_core.image.io import open_stack

    image, meta = load_sample("single_crystal")
    assert image.shape[0] == 1 and meta["true_counts"]["Ca+"] == [250]
    with as_file(files("ccount_core.data") / "single_crystal.tif") as path:
        stack = open_stack(path)
    assert stack.pixel_size_um == pytest.approx(meta["pixel_size_um"])
    np.testing.assert_array_equal(np.asarray(stack.data), image)
