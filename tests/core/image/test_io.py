"""ccount_core.image.io: lazy stacks from TIFF (plain, OME, ImageJ), frames, folders and Zarr."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import dask.array as da
import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
import zarr

from ccount_core.errors import InputError
from ccount_core.image.io import Stack, open_stack, write_tiff


def _ramp(frames: int, rows: int = 24, cols: int = 40) -> np.ndarray:
    """Distinct values in every frame: frame f holds f*1000 + flat pixel index (mod 2**16)."""
    base = np.arange(rows * cols, dtype=np.int64).reshape(rows, cols)
    return ((np.arange(frames)[:, None, None] * 1000 + base) % 65536).astype(np.uint16)


def test_own_tiff_roundtrip_keeps_calibration_and_values(tmp_path: Path) -> None:
    stack = _ramp(7)
    path = write_tiff(
        tmp_path / "run.tif",
        stack,
        pixel_size_um=1.25,
        frame_interval_s=2.0,
        metadata={"v_rf": 200.0},
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.tif"]  # no temp file left
    s = open_stack(path)
    assert isinstance(s, Stack) and isinstance(s.data, da.Array)
    assert s.data.shape == (7, 24, 40) and s.data.dtype == np.uint16
    assert s.data.chunks[0] == (1,) * 7
    assert s.pixel_size_um == pytest.approx(1.25)
    assert s.frame_interval_s == pytest.approx(2.0)
    assert s.metadata["description"]["v_rf"] == 200.0
    np.testing.assert_array_equal(s.data[3].compute(), stack[3])
    np.testing.assert_array_equal(s.data.compute(), stack)
    # Three frames are frames, not an RGB image.
    three = open_stack(write_tiff(tmp_path / "three.tif", stack[:3]))
    assert three.data.shape == (3, 24, 40)


def test_2000_frame_tiff_opens_lazily(tmp_path: Path) -> None:
    stack = _ramp(2000, 64, 64)  # 16 MB on disk
    path = tmp_path / "long.tif"
    tifffile.imwrite(path, stack)
    nbytes = stack.nbytes
    del stack
    tracemalloc.start()
    s = open_stack(path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # Opening read headers only: far less memory than the pixels, one dask chunk per frame.
    assert peak < nbytes / 20, peak
    assert s.data.shape == (2000, 64, 64)
    assert s.data.numblocks == (2000, 1, 1)
    assert s.n_frames == 2000
    frame = s.data[1234].compute()
    np.testing.assert_array_equal(frame, _ramp(1235, 64, 64)[1234])


def test_ome_tiff_calibration_with_units(tmp_path: Path) -> None:
    path = tmp_path / "a.ome.tif"
    tifffile.imwrite(
        path,
        _ramp(5),
        ome=True,
        metadata={
            "axes": "TYX",
            "PhysicalSizeX": 800.0,
            "PhysicalSizeXUnit": "nm",
            "PhysicalSizeY": 800.0,
            "PhysicalSizeYUnit": "nm",
            "TimeIncrement": 1500.0,
            "TimeIncrementUnit": "ms",
        },
    )
    s = open_stack(path)
    assert s.metadata["format"] == "ome-tiff"
    assert s.data.shape == (5, 24, 40)
    assert s.pixel_size_um == pytest.approx(0.8)
    assert s.frame_interval_s == pytest.approx(1.5)


def test_imagej_tiff_resolution_and_finterval(tmp_path: Path) -> None:
    path = tmp_path / "ij.tif"
    tifffile.imwrite(
        path,
        _ramp(6),
        imagej=True,
        resolution=(1 / 0.6, 1 / 0.6),
        metadata={"axes": "TYX", "unit": "um", "finterval": 2.0},
    )
    s = open_stack(path)
    assert s.metadata["format"] == "imagej-tiff"
    assert s.pixel_size_um == pytest.approx(0.6, rel=1e-4)
    assert s.frame_interval_s == pytest.approx(2.0)
    np.testing.assert_array_equal(s.data[5].compute(), _ramp(6)[5])


def test_plain_tiff_resolution_in_cm_and_compression(tmp_path: Path) -> None:
    path = tmp_path / "c.tif"
    tifffile.imwrite(
        path,
        _ramp(3),
        compression="zlib",
        photometric="minisblack",
        resolution=(5000.0, 5000.0),
        resolutionunit=3,
    )  # 5000 px/cm = 2 µm pixels
    s = open_stack(path)
    assert s.pixel_size_um == pytest.approx(2.0)
    assert s.frame_interval_s is None
    np.testing.assert_array_equal(s.data.compute(), _ramp(3))


def test_uncalibrated_tiff_has_no_pixel_size(tmp_path: Path) -> None:
    path = tmp_path / "u.tif"
    tifffile.imwrite(path, _ramp(2))
    s = open_stack(path)
    assert s.pixel_size_um is None and s.frame_interval_s is None


def test_single_frame_tiff_and_png_become_one_frame(tmp_path: Path) -> None:
    frame = _ramp(1)[0]
    tifffile.imwrite(tmp_path / "one.tif", frame)
    s = open_stack(tmp_path / "one.tif")
    assert s.data.shape == (1, 24, 40)
    np.testing.assert_array_equal(s.data[0].compute(), frame)
    small = (frame % 256).astype(np.uint8)
    iio.imwrite(tmp_path / "one.png", small)
    p = open_stack(tmp_path / "one.png")
    assert p.data.shape == (1, 24, 40)
    np.testing.assert_array_equal(p.data[0].compute(), small)


def test_rgb_is_refused_or_converted(tmp_path: Path) -> None:
    rgb = np.zeros((2, 10, 12, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 100, 50, 200
    path = tmp_path / "rgb.tif"
    tifffile.imwrite(path, rgb, photometric="rgb")
    with pytest.raises(InputError, match=r"rgb\.tif is RGB"):
        open_stack(path)
    s = open_stack(path, rgb_to_gray=True)
    assert s.data.shape == (2, 10, 12)
    expected = 0.299 * 100 + 0.587 * 50 + 0.114 * 200
    np.testing.assert_allclose(s.data.compute(), expected, rtol=1e-5)
    iio.imwrite(tmp_path / "rgba.png", np.zeros((8, 9, 4), np.uint8))
    with pytest.raises(InputError, match="RGBA"):
        open_stack(tmp_path / "rgba.png")


def test_multichannel_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ch.tif"
    tifffile.imwrite(
        path, np.zeros((3, 2, 10, 12), np.uint16), imagej=True, metadata={"axes": "TCYX"}
    )
    with pytest.raises(InputError, match="2 channels"):
        open_stack(path)


def test_folder_of_frames_sorted_naturally_and_lazy(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    stack = _ramp(12)
    for i, frame in enumerate(stack):
        tifffile.imwrite(folder / f"img_{i + 1}.tif", frame)  # img_1 .. img_12
    (folder / "notes.txt").write_text("not an image")
    s = open_stack(folder)
    assert s.data.shape == (12, 24, 40)
    assert s.metadata["files"][:3] == ["img_1.tif", "img_2.tif", "img_3.tif"]
    assert s.metadata["files"][-1] == "img_12.tif"
    # Lazy: a frame replaced after opening is read as it is now.
    tifffile.imwrite(folder / "img_10.tif", np.full((24, 40), 7, np.uint16))
    np.testing.assert_array_equal(s.data[9].compute(), 7)
    np.testing.assert_array_equal(s.data[10].compute(), stack[10])
    # A frame of a different size fails when read, naming the file.
    tifffile.imwrite(folder / "img_5.tif", np.zeros((5, 5), np.uint16))
    with pytest.raises(InputError, match=r"img_5\.tif"):
        s.data[4].compute()


def test_folder_of_pngs(tmp_path: Path) -> None:
    folder = tmp_path / "pngs"
    folder.mkdir()
    frames = (_ramp(3) % 256).astype(np.uint8)
    for i, f in enumerate(frames):
        iio.imwrite(folder / f"f{i:03d}.png", f)
    s = open_stack(folder)
    np.testing.assert_array_equal(s.data.compute(), frames)


def test_zarr_array_and_group(tmp_path: Path) -> None:
    stack = _ramp(4)
    arr = zarr.create_array(
        str(tmp_path / "a.zarr"), shape=stack.shape, dtype=stack.dtype, chunks=(2, 24, 40)
    )
    arr[:] = stack
    arr.attrs.update(pixel_size_um=0.9, frame_interval_s=3.0)
    s = open_stack(tmp_path / "a.zarr")
    assert s.data.shape == (4, 24, 40) and s.data.chunks[0] == (1, 1, 1, 1)
    assert s.pixel_size_um == pytest.approx(0.9) and s.frame_interval_s == pytest.approx(3.0)
    np.testing.assert_array_equal(s.data.compute(), stack)

    group = zarr.open_group(str(tmp_path / "store"), mode="w")
    group.attrs["pixel_size_um"] = 1.1
    group.create_array("labels", shape=(4, 2), dtype="f4")
    images = group.create_array("images", shape=stack.shape, dtype=stack.dtype)
    images[:] = stack
    g = open_stack(tmp_path / "store")
    assert g.metadata["array"] == "images"
    assert g.pixel_size_um == pytest.approx(1.1)
    np.testing.assert_array_equal(g.data[2].compute(), stack[2])


def test_ome_ngff_like_group_scale(tmp_path: Path) -> None:
    stack = _ramp(3)
    group = zarr.open_group(str(tmp_path / "ngff.zarr"), mode="w")
    group.attrs["multiscales"] = [
        {
            "axes": [
                {"name": "t", "type": "time", "unit": "second"},
                {"name": "y", "type": "space", "unit": "micrometer"},
                {"name": "x", "type": "space", "unit": "micrometer"},
            ],
            "datasets": [
                {
                    "path": "0",
                    "coordinateTransformations": [{"type": "scale", "scale": [2.5, 0.7, 0.7]}],
                }
            ],
        }
    ]
    group.create_array("0", shape=stack.shape, dtype=stack.dtype)[:] = stack
    s = open_stack(tmp_path / "ngff.zarr")
    assert s.pixel_size_um == pytest.approx(0.7)
    assert s.frame_interval_s == pytest.approx(2.5)
    np.testing.assert_array_equal(s.data.compute(), stack)


@pytest.mark.parametrize("name", ["notes.txt", "missing.tif"])
def test_unsupported_or_missing_path_names_it(tmp_path: Path, name: str) -> None:
    if name.endswith(".txt"):
        (tmp_path / name).write_text("hello")
    with pytest.raises(InputError, match=name.replace(".", r"\.")) as exc:
        open_stack(tmp_path / name)
    assert "\n" not in str(exc.value)


def test_corrupt_tiff_and_empty_folder_are_input_errors(tmp_path: Path) -> None:
    (tmp_path / "bad.tif").write_bytes(b"this is not a tiff at all")
    with pytest.raises(InputError, match=r"bad\.tif"):
        open_stack(tmp_path / "bad.tif")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no image files"):
        open_stack(tmp_path / "empty")


def _cut(path: Path, keep: float = 0.5) -> Path:
    """``path`` with only its first ``keep`` share of bytes (a recording cut short)."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


@pytest.mark.parametrize("writer", ["ours", "imagej", "pages"])
def test_truncated_tiff_reads_its_complete_frames_and_says_how_many_were_lost(
    tmp_path: Path, writer: str
) -> None:
    # io._truncation: 16 frames declared (our JSON shape, ImageJ images, or 16 pages), the
    # file cut to half its bytes: frames 0-7 (pages: 0-6, the 8th's strip is cut) are read.
    stack = _ramp(16, 24, 40)
    path = tmp_path / f"{writer}.tif"
    if writer == "ours":
        write_tiff(path, stack, pixel_size_um=2.0)
    elif writer == "imagej":
        tifffile.imwrite(path, stack, imagej=True, metadata={"axes": "TYX"})
    else:
        with tifffile.TiffWriter(path) as tif:
            for frame in stack:
                tif.write(frame, contiguous=False, metadata=None)
    s = open_stack(_cut(path))
    n = 7 if writer == "pages" else 8
    assert s.n_frames == n
    np.testing.assert_array_equal(s.data.compute(), stack[:n])
    (note,) = s.metadata["warnings"]
    assert str(path) in note and "truncated" in note and "\n" not in note
    expected = "frames after are lost" if writer == "pages" else "8 complete frame(s) of 16"
    assert expected in note
    assert "warnings" not in open_stack(write_tiff(tmp_path / "whole.tif", stack)).metadata


def test_tiff_cut_inside_its_page_list_is_not_a_whole_one_frame_file(tmp_path: Path) -> None:
    # A plain tifffile stack has no declared shape; its first page points to a second page
    # past the end of the cut file (io._page_list_runs_on).
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, _ramp(16, 24, 40), metadata=None)
    s = open_stack(_cut(path))
    assert s.n_frames == 1 and "truncated" in s.metadata["warnings"][0]
    with pytest.raises(InputError, match="not even its first frame"):
        open_stack(_cut(write_tiff(tmp_path / "tiny.tif", _ramp(4, 24, 40)), 0.05))


@pytest.mark.parametrize(("dtype", "what"), [("complex64", "complex numbers"), (str, "text")])
def test_non_real_zarr_is_refused_naming_file_and_dtype(tmp_path: Path, dtype, what) -> None:
    # io._check_real: never the real part of a complex array, never a cast of text.
    path = tmp_path / "odd.zarr"
    z = zarr.open(str(path), mode="w", shape=(2, 24, 24), dtype=dtype)
    z[:] = 1 + 2j if dtype == "complex64" else "7"
    with pytest.raises(InputError, match=rf"odd\.zarr has pixels of type .*\({what}") as exc:
        open_stack(path)
    assert "\n" not in str(exc.value)


def test_complex_tiff_is_refused(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "c.tif", np.ones((2, 24, 24), np.complex64))
    with pytest.raises(InputError, match=r"c\.tif has pixels of type complex64"):
        open_stack(tmp_path / "c.tif")
