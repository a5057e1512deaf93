"""Bad-input corpus of the napari reader (``napari_ccount._reader``): what napari's File > Open
gets for files that are not image stacks.

Classes: ``none`` (``get_reader`` returns None: not ours, napari tries another reader);
``layer`` (``read_stack`` returns one 3-D image layer); ``warning`` (a layer, and a
``show_warning`` that names the file); ``error`` (``read_stack`` raises ``InputError`` whose
message is one non-empty line naming the file, which napari shows as a notification).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

from ccount_core.errors import InputError
from ccount_core.image.io import write_tiff
from napari_ccount._reader import get_reader, read_stack

pytestmark = pytest.mark.gui

Maker = Callable[[Path], object]


def tif(array: np.ndarray) -> Maker:
    return lambda p: write_tiff(p, array)


def rgb(p: Path) -> None:
    tifffile.imwrite(p, np.zeros((32, 48, 3), np.uint8), photometric="rgb")


def zarr_array(array: np.ndarray) -> Maker:
    def make(p: Path) -> None:
        z = zarr.create_array(str(p), shape=array.shape, dtype=array.dtype, chunks=array.shape)
        z[...] = array

    return make


def frames(n: int = 2) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 4000, (n, 32, 48), dtype=np.uint16)


# fmt: off
CASES = [
    # not ours: napari goes on to other readers
    pytest.param("notes.txt", lambda p: p.write_text("x"), "none", id="text-file"),
    pytest.param("empty", Path.mkdir, "none", id="folder-without-frames"),
    # ours, and read
    pytest.param("a.tif", tif(frames()), "layer", id="stack"),
    pytest.param("a.tif", tif(np.full((2, 32, 48), np.nan, np.float32)), "layer", id="nan"),
    pytest.param("a.tif", tif(frames() > 2000), "layer", id="bool"),
    pytest.param("a.tif", rgb, "warning", id="rgb"),
    # ours by name, but refused with one line naming the file
    pytest.param("missing.tif", None, "error", id="missing"),
    pytest.param("a.tif", lambda p: p.write_bytes(b""), "error", id="empty-file"),
    pytest.param("a.tif", lambda p: p.write_text("not a tiff"), "error", id="text-as-tiff"),
    pytest.param("a.png", lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n"), "error",
                 id="garbage-png"),
    pytest.param("a.tif", tif(np.ones((2, 1, 48), np.uint16)), "error", id="line-frames"),
    pytest.param("a.zarr", lambda p: zarr.open_group(str(p), mode="w"), "error",
                 id="zarr-group-without-arrays"),
    pytest.param("a.zarr", zarr_array(np.arange(48, dtype=np.uint16)), "error", id="zarr-1d"),
    pytest.param("a.zarr", zarr_array(np.full((2, 32, 48), "x", dtype="<U1")), "error",
                 id="zarr-strings"),
]
# fmt: on


@pytest.mark.parametrize(("name", "make", "expect"), CASES)
def test_reader_case(
    name: str,
    make: Maker | None,
    expect: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each file gives its class; never an exception other than a named ``InputError``."""
    warned: list[str] = []
    monkeypatch.setattr("napari_ccount._reader.show_warning", warned.append)
    path = tmp_path / name
    if make is not None:
        make(path)
    reader = get_reader(str(path))
    if expect == "none":
        assert reader is None
        return
    assert reader is read_stack
    if expect == "error":
        with pytest.raises(InputError) as info:
            reader(str(path))
        message = str(info.value)
        assert message.strip() and "\n" not in message and name in message, message
        return
    ((data, kwargs, kind),) = reader(str(path))
    assert kind == "image" and data.ndim == 3 and kwargs["name"] == name
    assert np.asarray(data[0]).shape == data.shape[1:]
    assert [w for w in warned if name in w] == ([] if expect == "layer" else warned)
    assert bool(warned) == (expect == "warning")
