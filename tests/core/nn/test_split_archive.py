"""Split archives: a round trip within the 8-bit step, and a clear refusal of junk."""

from __future__ import annotations

import numpy as np
import pytest

from ccount_core.errors import InputError
from ccount_core.nn.split_archive import load_split_archive, save_split_archive
from ccount_core.nn.training_data import Split


def test_round_trip_within_one_level(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.gamma(0.3, 1.0, (5, 12, 8)).astype(np.float32)
    images[2] = 0.7  # a flat image has no range: it must come back as it was
    labels = rng.uniform(30, 350, (5, 2)).astype(np.float32)
    meta = {"preprocess": {"model_pixel_size_um": 6.0}, "label_names": ["Ca+", "dark"]}
    path = save_split_archive(tmp_path / "train.npz.xz", Split(images, labels), meta)
    split, back = load_split_archive(path)
    step = (images.max(axis=(1, 2)) - images.min(axis=(1, 2))) / 255
    err = np.abs(split.images - images).max(axis=(1, 2))
    assert np.all(err <= step / 2 + 1e-6) and err.max() > 0
    np.testing.assert_array_equal(split.images[2], images[2])
    np.testing.assert_array_equal(split.labels, labels)
    assert back == meta and split.images.dtype == np.float32


def test_not_a_split_archive(tmp_path):
    junk = tmp_path / "junk.npz.xz"
    junk.write_bytes(b"not lzma at all")
    with pytest.raises(InputError, match=r"junk\.npz\.xz is not one"):
        load_split_archive(junk)
    with pytest.raises(InputError, match="no such file"):
        load_split_archive(tmp_path / "missing.npz.xz")
