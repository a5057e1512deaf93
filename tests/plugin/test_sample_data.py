"""Sample data in File > Open Sample: the shipped simulated crystals with their true numbers."""

from __future__ import annotations

import numpy as np
import pytest

from ccount_core.dataset.samples import load_sample

pytestmark = pytest.mark.gui


def test_single_crystal_sample(make_napari_viewer) -> None:
    viewer = make_napari_viewer()
    (layer,) = viewer.open_sample("napari-ccount", "single_crystal")
    stack, meta = load_sample("single_crystal")
    np.testing.assert_array_equal(layer.data, stack)
    assert layer.data.shape[0] == 1
    ccount = layer.metadata["ccount"]
    assert ccount["true_counts"] == meta["true_counts"]
    assert ccount["true_counts"]["Ca+"][0] > 0
    px = meta["pixel_size_um"]
    np.testing.assert_allclose(layer.scale, (1.0, px, px))
    assert ccount["pixel_size_um"] == px


def test_reaction_series_sample(make_napari_viewer) -> None:
    viewer = make_napari_viewer()
    (layer,) = viewer.open_sample("napari-ccount", "reaction_series")
    n_frames = layer.data.shape[0]
    assert n_frames > 1
    truth = layer.metadata["ccount"]["true_counts"]
    ca = np.array(truth["Ca+"])
    (product,) = (s for s in truth if s != "Ca+")
    dark = np.array(truth[product])
    assert len(ca) == len(dark) == n_frames
    # Ca+ is lost while the dark product grows; the total is conserved.
    assert ca[-1] < ca[0] and dark[-1] > dark[0]
    assert np.all(ca + dark == ca[0] + dark[0])
    assert layer.metadata["ccount"]["frame_interval_s"] > 0
