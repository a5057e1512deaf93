"""The npe2 reader and manifest: lazy Image layers with calibration, through napari's own open."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import tifffile

from ccount_core.image.io import write_tiff
from napari_ccount._reader import get_reader, read_stack


def _stack(frames: int = 5) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 4000, size=(frames, 32, 48), dtype=np.uint16)


def test_reader_accepts_stacks_folders_and_zarr_only(tmp_path: Path) -> None:
    tif = write_tiff(tmp_path / "a.tif", _stack())
    (tmp_path / "notes.txt").write_text("x")
    frames = tmp_path / "frames"
    frames.mkdir()
    tifffile.imwrite(frames / "f1.tif", _stack(1)[0])
    (tmp_path / "empty").mkdir()
    assert get_reader(str(tif)) is read_stack
    assert get_reader([str(tif)]) is read_stack
    assert get_reader(str(frames)) is read_stack
    assert get_reader(str(tmp_path / "notes.txt")) is None
    assert get_reader(str(tmp_path / "empty")) is None
    assert get_reader([str(tif), str(tif)]) is None


def test_read_stack_layer_is_lazy_and_calibrated(tmp_path: Path) -> None:
    stack = _stack(6)
    path = write_tiff(tmp_path / "run.tif", stack, pixel_size_um=0.75, frame_interval_s=2.0)
    ((data, kwargs, kind),) = read_stack(str(path))
    assert kind == "image"
    assert isinstance(data, da.Array) and data.numblocks == (6, 1, 1)
    assert kwargs["scale"] == (1.0, 0.75, 0.75)
    meta = kwargs["metadata"]["ccount"]
    assert meta["pixel_size_um"] == 0.75 and meta["frame_interval_s"] == 2.0
    assert meta["source"] == str(path)
    np.testing.assert_array_equal(np.asarray(data[4]), stack[4])


def test_rgb_file_is_opened_as_grey_with_a_warning(tmp_path: Path) -> None:
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[..., 1] = 100
    path = tmp_path / "rgb.tif"
    tifffile.imwrite(path, rgb, photometric="rgb")
    ((data, _, _),) = read_stack(str(path))
    assert data.shape == (1, 20, 30)
    np.testing.assert_allclose(np.asarray(data), 58.7, rtol=1e-5)


def test_npe2_validate_passes() -> None:
    npe2 = Path(sys.executable).with_name("npe2")
    out = subprocess.run([str(npe2), "validate", "napari_ccount"], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.gui
def test_viewer_open_uses_the_plugin(make_napari_viewer, tmp_path: Path) -> None:
    stack = _stack(4)
    path = write_tiff(tmp_path / "run.tif", stack, pixel_size_um=1.5, frame_interval_s=3.0)
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(path), plugin="napari-ccount")
    assert layer.data.shape == (4, 32, 48)
    assert isinstance(layer.data, da.Array)
    np.testing.assert_allclose(layer.scale, (1.0, 1.5, 1.5))
    assert layer.metadata["ccount"]["frame_interval_s"] == 3.0
    np.testing.assert_array_equal(np.asarray(layer.data[2]), stack[2])


def test_truncated_tiff_opens_its_complete_frames_with_a_notification(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # _reader.read_stack shows io.open_stack's warnings: never a silent 1-frame layer.
    import napari_ccount._reader as reader

    shown: list[str] = []
    monkeypatch.setattr(reader, "show_warning", shown.append)
    path = tmp_path / "cut.tif"
    tifffile.imwrite(path, _stack(16), imagej=True, metadata={"axes": "TYX"})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    ((layer, _, _),) = read_stack(str(path))
    assert layer.shape == (8, 32, 48)
    (note,) = shown
    assert "cut.tif is truncated" in note and "8 complete frame(s) of 16" in note


def test_complex_or_text_zarr_is_one_line_naming_file_and_dtype(tmp_path: Path) -> None:
    import zarr

    from ccount_core.errors import InputError

    z = zarr.open(str(tmp_path / "words.zarr"), mode="w", shape=(2, 20, 20), dtype=str)
    z[:] = "x"
    with pytest.raises(InputError, match=r"words\.zarr has pixels of type .*\(text\)"):
        read_stack(str(tmp_path / "words.zarr"))
