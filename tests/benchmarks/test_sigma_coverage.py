"""A data-set store as a fit or check set of the σ and input-range scripts: its images at each
camera pixel size, with their true Ca+ numbers (benchmarks/sigma_coverage.py ``store_set``)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ccount_core.dataset import open_dataset
from ccount_core.image.preprocess import PreprocessConfig

ROOT = Path(__file__).resolve().parents[2]
SPEC = {
    "name": "two-pixel-sizes",
    "seed": 5,
    "imaging": {"shape": [64, 112], "pixel_size_um": 2.0},
    "parameters": {
        "n_ions": [20, 30, 40, 50],
        "v_rf": [190, 210],
        "v_end": [2.0],
        "eta": 0.244,
        "seeds": [1, 2],
    },
    "renders": {"focal_offset_um": [0], "pixel_size_um": [2, 5]},
    "store": {"chunk": 8},
}


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location(
        "sigma_coverage", ROOT / "benchmarks/sigma_coverage.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, spot_store) -> Path:
    return spot_store(SPEC, tmp_path_factory.mktemp("store") / "s.zarr")


def test_store_set_gives_each_pixel_size_its_images_and_truth(bench, store: Path) -> None:
    ds = open_dataset(store)
    idx = ds.indices("all")
    parts = bench.store_set(store, "all", 2, 9)
    assert [px for _, _, px in parts] == [2.0, 5.0]
    want = idx[2:11]
    sizes = ds.table["pixel_size_um"][want]
    for frames, truth, px in parts:
        rows = want[sizes == px]
        assert len(frames) == len(truth) == len(rows) > 0
        np.testing.assert_array_equal(truth, ds.labels[rows, 0])
        np.testing.assert_array_equal(frames, np.stack([np.asarray(ds.images[r]) for r in rows]))
    with pytest.raises(SystemExit, match="no finished test images from number 100"):
        bench.store_set(store, "test", 100, 5)


def test_input_ranges_script_measures_a_store(store: Path, tmp_path: Path, write_model) -> None:
    pre = PreprocessConfig(model_pixel_size_um=4.0, output_shape=(32, 16))
    weights = write_model(tmp_path / "m.safetensors", preprocess=pre)
    card = weights.with_suffix(".json")
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts/input_ranges.py"),
            str(card),
            "--crystals",
            "0",
            "--store",
            str(store),
            "--store-split",
            "all",
            "--store-images",
            "16",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    ranges = json.loads(card.read_text())["input_ranges"]
    assert "16 all images 0+ of s.zarr" in ranges["source"]
    # the spot crystals span 20-50 ions: their widths differ, so the range is not a point
    assert ranges["width_um"]["min"] < ranges["width_um"]["max"]
    # every range written is a finite interval (a statistic no image gives has none)
    for name, r in ranges.items():
        if name != "source":
            assert np.isfinite(r["min"]) and np.isfinite(r["max"]) and r["min"] <= r["max"], name


def test_a_render_cache_serves_only_the_seeds_it_holds(bench, tmp_path: Path) -> None:
    """A cache records its first seed: the calibration renders (940000+) are never handed out
    as the coverage set (900000+), and a cache from before, without the record, holds the
    default's."""
    frames, truth = np.zeros((3, 4, 4), np.float32), np.array([30, 40, 50])
    calibration = tmp_path / "calibration.npz"
    np.savez_compressed(calibration, frames=frames, truth=truth, seed0=940_000)
    got, t = bench.clean_set(3, calibration, seed0=940_000)
    assert got.shape == (3, 4, 4) and t.tolist() == [30, 40, 50]
    with pytest.raises(SystemExit, match="seeds 940000\\+, not 900000\\+"):
        bench.clean_set(3, calibration)
    legacy = tmp_path / "coverage.npz"
    np.savez_compressed(legacy, frames=frames, truth=truth)
    assert bench.clean_set(2, legacy)[1].tolist() == [30, 40]
    with pytest.raises(SystemExit, match="seeds 900000\\+, not 940000\\+"):
        bench.clean_set(2, legacy, seed0=940_000)
