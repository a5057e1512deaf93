"""Lazy readers for recorded image stacks: TIFF (incl. OME/ImageJ), folders of frames, Zarr.

:func:`open_stack` returns a :class:`Stack` whose ``data`` is a dask array ``(frames, rows,
cols)`` with one chunk per frame: opening a stack of thousands of frames reads only headers,
and a frame's pixels are read when that frame is computed. The CLI and the napari plugin share
these readers. :func:`write_tiff` writes a stack with the pixel size and frame interval in a
JSON ImageDescription that :func:`open_stack` reads back.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import struct
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np

from ccount_core.errors import InputError
from ccount_core.files import atomic_path

TIFF_SUFFIXES = (".tif", ".tiff")
FRAME_SUFFIXES = (*TIFF_SUFFIXES, ".png", ".jpg", ".jpeg", ".bmp")
ZARR_MARKERS = (".zarray", ".zgroup", "zarr.json")
# Arrays looked for, in this order, inside a Zarr group (the dataset store names its images).
ZARR_ARRAY_NAMES = ("images", "image", "data", "0")
# ITU-R BT.601 luma weights for the optional RGB -> grey conversion.
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)

# Names of the numpy dtype kinds that are not real numbers, for the refusal.
_DTYPE_KINDS = {
    "c": "complex numbers",
    "U": "text",
    "S": "bytes",
    "T": "text",
    "O": "Python objects",
    "V": "records",
    "M": "dates",
    "m": "time spans",
}

_LENGTH_UNITS_UM = {
    "m": 1e6,
    "meter": 1e6,
    "cm": 1e4,
    "mm": 1e3,
    "um": 1.0,
    "µm": 1.0,
    "μm": 1.0,
    "micron": 1.0,
    "microns": 1.0,
    "micrometer": 1.0,
    "micrometre": 1.0,
    "\\u00b5m": 1.0,
    "nm": 1e-3,
    "nanometer": 1e-3,
}
_TIME_UNITS_S = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "ms": 1e-3,
    "msec": 1e-3,
    "µs": 1e-6,
    "us": 1e-6,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
}


@dataclass(frozen=True)
class Stack:
    """A lazily read image stack.

    ``data``: dask array ``(frames, rows, cols)``, the file's dtype, one chunk per frame.
    ``pixel_size_um``: camera pixel size in the object plane, µm, or None when unknown.
    ``frame_interval_s``: time between frames, s, or None when unknown.
    ``source``: the path read. ``metadata``: what else the file said (format, axes, ...).
    ``trap_axis_deg``: the trap axis in the frames, deg counter-clockwise from the +column
    axis as displayed (our JSON's ``trap_axis_deg``), or None when the file does not say.
    """

    data: da.Array
    pixel_size_um: float | None
    frame_interval_s: float | None
    source: str
    metadata: dict[str, Any] = field(default_factory=dict)
    trap_axis_deg: float | None = None

    @property
    def n_frames(self) -> int:
        return int(self.data.shape[0])


def open_stack(path: str | os.PathLike[str], *, rgb_to_gray: bool = False) -> Stack:
    """Open a TIFF / OME-TIFF / ImageJ TIFF, a single image, a folder of frames or a Zarr store.

    Nothing but headers is read. A 2-D image becomes one frame ``(1, rows, cols)``. RGB(A)
    data raise :class:`InputError` unless ``rgb_to_gray`` is set, which converts lazily to
    luminance (float32). Raises :class:`InputError` naming the path for anything unreadable.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"path: {p} does not exist")
    try:
        if p.is_dir():
            if _is_zarr(p):
                stack = _open_zarr(p, rgb_to_gray)
            else:
                stack = _open_folder(p, rgb_to_gray)
        elif p.suffix.lower() in TIFF_SUFFIXES:
            stack = _open_tiff(p, rgb_to_gray)
        elif p.suffix.lower() in FRAME_SUFFIXES:
            frame = _read_image_file(p)
            axes = "YX" if frame.ndim == 2 else "YXS"
            data = _frames_axis(da.from_array(frame, chunks=frame.shape), axes, p, rgb_to_gray)
            stack = Stack(data, None, None, str(p), {"format": p.suffix.lower().lstrip(".")})
        elif p.suffix.lower() == ".zarr" or p.name.endswith(".zarr.zip"):
            stack = _open_zarr(p, rgb_to_gray)
        else:
            raise InputError(
                f"path: {p} is not a supported image (TIFF, PNG/JPEG, a folder of frames "
                "or a Zarr store)"
            )
    except InputError:
        raise
    except Exception as exc:  # a corrupt or foreign file: say which, in one line
        raise InputError(f"path: cannot read {p}: {type(exc).__name__}: {exc}") from exc
    if stack.data.ndim != 3 or min(stack.data.shape[1:]) < 2 or stack.data.shape[0] < 1:
        raise InputError(f"path: {p} holds no image frames (shape {stack.data.shape})")
    return stack


def write_tiff(
    path: str | os.PathLike[str],
    stack: np.ndarray,
    *,
    pixel_size_um: float | None = None,
    frame_interval_s: float | None = None,
    trap_axis_deg: float | None = None,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write ``stack`` ``(frames, rows, cols)`` (or one ``(rows, cols)`` frame) as a TIFF.

    Pixel size (µm), frame interval (s) and trap axis (deg counter-clockwise from the +column
    axis as displayed) go into a JSON ImageDescription together with ``metadata``
    (JSON-serialisable); the resolution tags carry the pixel size too. The file is
    written under a temporary name and moved into place, so it is never half-written.
    """
    import tifffile

    target = Path(path)
    meta: dict[str, Any] = dict(metadata or {})
    if pixel_size_um is not None:
        meta["pixel_size_um"] = float(pixel_size_um)
    if frame_interval_s is not None:
        meta["frame_interval_s"] = float(frame_interval_s)
    if trap_axis_deg is not None:
        meta["trap_axis_deg"] = float(trap_axis_deg)
    kwargs: dict[str, Any] = {}
    if pixel_size_um:
        # Pixels per centimetre in the standard tags (ResolutionUnit 3 = cm).
        ppcm = 1e4 / float(pixel_size_um)
        kwargs.update(resolution=(ppcm, ppcm), resolutionunit=3)
    with atomic_path(target) as tmp:
        tifffile.imwrite(tmp, np.asarray(stack), photometric="minisblack", metadata=meta, **kwargs)
    return target


# --- TIFF -----------------------------------------------------------------------------------


def _open_tiff(p: Path, rgb_to_gray: bool) -> Stack:
    import tifffile

    with _quiet_tifffile(), tifffile.TiffFile(p) as tif:
        if not tif.series:
            raise InputError(f"path: {p} holds no image series")
        series = tif.series[0]
        axes = series.axes
        meta: dict[str, Any] = {"format": "tiff", "axes": axes, "dtype": str(series.dtype)}
        pixel_um, interval_s, axis_deg = None, None, None
        if tif.is_ome and tif.ome_metadata:
            meta["format"] = "ome-tiff"
            pixel_um, interval_s = _ome_calibration(tif.ome_metadata)
        elif tif.is_imagej and tif.imagej_metadata is not None:
            meta["format"] = "imagej-tiff"
            pixel_um, interval_s = _imagej_calibration(tif.imagej_metadata, tif.pages[0])
        if tif.shaped_metadata:
            own = dict(tif.shaped_metadata[0])
            own.pop("shape", None)
            meta["description"] = own
            pixel_um = _positive(own.get("pixel_size_um")) or pixel_um
            interval_s = _positive(own.get("frame_interval_s")) or interval_s
            axis_deg = _angle(own.get("trap_axis_deg"))
        if pixel_um is None:
            pixel_um = _resolution_tags_um(tif.pages[0])
        cut = _truncation(tif, series, p)
    if cut is not None:
        data, note = cut
        meta["warnings"] = [note]
        axes = "Q" + axes[axes.index("Y") :]
    else:
        data = _tiff_pixels(p)
    data = _frames_axis(data, axes, p, rgb_to_gray)
    return Stack(data, pixel_um, interval_s, str(p), meta, axis_deg)


def _tiff_pixels(p: Path) -> da.Array:
    """The first series of a TIFF as a lazy array (level 0 of a pyramid), the series' shape."""
    import tifffile
    import zarr

    with _quiet_tifffile():
        store = tifffile.imread(p, aszarr=True, series=0, level=0)
    arr = zarr.open(store, mode="r")
    if isinstance(arr, zarr.Group):  # pyramidal TIFF: level 0 is the full resolution
        arr = arr["0"]
    return da.from_zarr(arr)


@contextmanager
def _quiet_tifffile() -> Iterator[None]:
    """tifffile's log quiet while inside: a damaged file is reported in one line of ours."""
    log = logging.getLogger("tifffile")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(level)


def _truncation(tif: Any, series: Any, p: Path) -> tuple[da.Array, str] | None:
    """None for a whole file; for one cut short, ``(planes, warning)``: the complete planes
    ``(n, rows, cols[, samples])`` and one line saying how many of how many were lost.

    The declared planes are the series' or, where tifffile could not shape the series, those
    of our JSON description or ImageJ's ``images``. A plane is complete when its bytes lie
    inside the file; a page list that points past the end of the file declares more pages
    than are readable. Raises :class:`InputError` when no plane is complete.
    """
    lead = series.axes[: series.axes.index("Y")]
    plane = tuple(series.shape[len(lead) :])
    n_series = math.prod(series.shape[: len(lead)])
    plane_bytes = math.prod(plane) * series.dtype.itemsize
    size = tif.filehandle.size
    declared: int | None = max(n_series, _declared_planes(tif, math.prod(plane)))
    first = tif.pages[0]
    offset = series.dataoffset
    if declared > n_series:  # tifffile fell back to the first page: do its data run on?
        offset = first.dataoffsets[0] if first.is_contiguous and first.is_final else None
    if offset is not None:
        readable = min(declared, (size - offset) // plane_bytes)
    elif len(series.pages) == n_series:
        readable = next((i for i, pg in enumerate(series.pages) if _data_end(pg) > size), n_series)
    else:
        readable = n_series
    if declared == n_series and series.kind not in ("shaped", "imagej", "ome"):
        declared = None if _page_list_runs_on(tif) else declared
    if readable == declared:
        return None
    if "C" in lead and series.shape[lead.index("C")] > 1:
        raise InputError(f"path: {p} is truncated and has several channels")
    if readable == 0:
        raise InputError(f"path: {p} is truncated: not even its first frame is complete")
    if declared:
        note = (
            f"{p} is truncated: read the {readable} complete frame(s) of {declared} declared "
            f"({declared - readable} lost)"
        )
    else:
        note = f"{p} is truncated: read its {readable} complete frame(s); the frames after are lost"
    if readable <= n_series:
        data = _tiff_pixels(p).reshape((n_series, *plane))[:readable]
    else:
        dtype = series.dtype.newbyteorder(tif.byteorder)
        read = dask.delayed(_read_plane, pure=True)
        data = da.stack(
            [
                da.from_delayed(read(p, offset + i * plane_bytes, dtype, plane), plane, dtype)
                for i in range(readable)
            ]
        )
    return data, note


def _declared_planes(tif: Any, plane_size: int) -> int:
    """Planes that our JSON description (``shape``) or ImageJ (``images``) declare; 0: none."""
    if tif.shaped_metadata and "shape" in tif.shaped_metadata[0]:
        return math.prod(tif.shaped_metadata[0]["shape"]) // plane_size
    if tif.imagej_metadata:
        return int(tif.imagej_metadata.get("images", 0))
    return 0


def _data_end(page: Any) -> int:
    """The byte just past a page's last strip or tile."""
    return max(
        (o + c for o, c in zip(page.dataoffsets, page.databytecounts, strict=True)), default=0
    )


def _page_list_runs_on(tif: Any) -> bool:
    """Whether the last page tifffile could read points to a further page (which it could
    not read): a file cut short inside its list of pages."""
    last = tif.pages[len(tif.pages) - 1]
    fmt = tif.tiff
    fh = tif.filehandle
    fh.seek(last.offset)
    head = fh.read(fmt.tagnosize)
    if len(head) < fmt.tagnosize:
        return True
    (tagno,) = struct.unpack(fmt.tagnoformat, head)
    fh.seek(last.offset + fmt.tagnosize + tagno * fmt.tagsize)
    tail = fh.read(fmt.offsetsize)
    return len(tail) < fmt.offsetsize or struct.unpack(fmt.offsetformat, tail)[0] != 0


def _read_plane(p: Path, offset: int, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    """One uncompressed plane of ``shape`` at byte ``offset`` of ``p``, native byte order."""
    plane = np.fromfile(p, dtype=dtype, count=math.prod(shape), offset=offset)
    return plane.reshape(shape).astype(dtype.newbyteorder("="), copy=False)


def _ome_calibration(xml: str) -> tuple[float | None, float | None]:
    """Pixel size (µm) and time increment (s) from OME-XML, when present."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None, None
    pixels = next(
        (el for el in root.iter() if el.tag.endswith("}Pixels") or el.tag == "Pixels"), None
    )
    if pixels is None:
        return None, None
    size = _positive(pixels.get("PhysicalSizeX"))
    pixel_um = None
    if size is not None:
        factor = _LENGTH_UNITS_UM.get(pixels.get("PhysicalSizeXUnit", "µm").lower())
        pixel_um = size * factor if factor else None
    step = _positive(pixels.get("TimeIncrement"))
    interval_s = None
    if step is not None:
        factor = _TIME_UNITS_S.get(pixels.get("TimeIncrementUnit", "s").lower())
        interval_s = step * factor if factor else None
    return pixel_um, interval_s


def _imagej_calibration(ij: dict[str, Any], page: Any) -> tuple[float | None, float | None]:
    """Pixel size (µm) from the resolution tags and ImageJ's unit; frame interval (s)."""
    pixel_um = None
    factor = _LENGTH_UNITS_UM.get(str(ij.get("unit", "")).lower())
    per_unit = _x_resolution(page)
    if factor and per_unit:
        pixel_um = factor / per_unit
    interval_s = None
    step = _positive(ij.get("finterval"))
    if step is not None:
        tfactor = _TIME_UNITS_S.get(str(ij.get("tunit", "s")).lower())
        interval_s = step * tfactor if tfactor else None
    return pixel_um, interval_s


def _resolution_tags_um(page: Any) -> float | None:
    """Pixel size (µm) from XResolution when ResolutionUnit is inch (2) or cm (3)."""
    tag = page.tags.get("ResolutionUnit")
    unit = int(tag.value) if tag is not None else 1
    per_unit = _x_resolution(page)
    if per_unit is None or unit not in (2, 3):
        return None
    return (25400.0 if unit == 2 else 10000.0) / per_unit


def _x_resolution(page: Any) -> float | None:
    tag = page.tags.get("XResolution")
    if tag is None:
        return None
    num, den = tag.value
    if not den or not num:
        return None
    value = num / den
    return value if value > 1.0 + 1e-9 else None  # 1 pixel per unit is the "unset" default


# --- folders of frames and single images ----------------------------------------------------


def _natural_key(name: str) -> list[Any]:
    """Sort key that orders frame2 before frame10."""
    return [int(tok) if tok.isdigit() else tok.lower() for tok in re.split(r"(\d+)", name)]


def _read_image_file(p: Path) -> np.ndarray:
    if p.suffix.lower() in TIFF_SUFFIXES:
        import tifffile

        return tifffile.imread(p)
    import imageio.v3 as iio

    return np.asarray(iio.imread(p))


def _open_folder(p: Path, rgb_to_gray: bool) -> Stack:
    files = sorted(
        (
            f
            for f in p.iterdir()
            if f.is_file() and f.suffix.lower() in FRAME_SUFFIXES and not f.name.startswith(".")
        ),
        key=lambda f: _natural_key(f.name),
    )
    if not files:
        raise InputError(f"path: folder {p} holds no image files ({', '.join(FRAME_SUFFIXES)})")
    suffixes = {f.suffix.lower() for f in files}
    if len(suffixes - set(TIFF_SUFFIXES)) and len(suffixes) > 1:
        raise InputError(f"path: folder {p} mixes image formats {sorted(suffixes)}")
    first = _read_image_file(files[0])
    if first.ndim == 3 and first.shape[-1] in (3, 4):
        axes = "YXS"
    elif first.ndim == 2:
        axes = "YX"
    else:
        raise InputError(f"path: {files[0]} is not a single frame (shape {first.shape})")
    for f in files[1:]:  # headers only: a frame of another shape is refused before any work
        shape = _frame_shape(f)
        if shape != first.shape:
            raise InputError(f"path: {f} has shape {shape}, the folder's frames {first.shape}")
    pixel_um = interval_s = axis_deg = None
    if files[0].suffix.lower() in TIFF_SUFFIXES:
        head = _open_tiff(files[0], rgb_to_gray=True)
        pixel_um, interval_s = head.pixel_size_um, head.frame_interval_s
        axis_deg = head.trap_axis_deg
    read = dask.delayed(_read_checked, pure=True)
    frames = [
        da.from_delayed(read(f, first.shape, first.dtype), first.shape, first.dtype) for f in files
    ]
    data = _frames_axis(da.stack(frames), "Q" + axes, p, rgb_to_gray)
    meta = {"format": "folder", "files": [f.name for f in files], "dtype": str(first.dtype)}
    return Stack(data, pixel_um, interval_s, str(p), meta, axis_deg)


def _frame_shape(path: Path) -> tuple[int, ...]:
    """The shape of the image in ``path``, read from its header where the format allows."""
    if path.suffix.lower() in TIFF_SUFFIXES:
        import tifffile

        try:
            with tifffile.TiffFile(path) as tf:
                return tuple(tf.series[0].shape)
        except (OSError, ValueError, IndexError, tifffile.TiffFileError) as exc:
            raise InputError(f"path: cannot read {path}: {type(exc).__name__}: {exc}") from None
    import imageio.v3 as iio

    try:
        return tuple(iio.improps(path).shape)
    except (OSError, ValueError) as exc:
        raise InputError(f"path: cannot read {path}: {type(exc).__name__}: {exc}") from None


def _read_checked(path: Path, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    frame = _read_image_file(path)
    if frame.shape != shape:
        raise InputError(f"path: {path} has shape {frame.shape}, the folder's frames {shape}")
    return frame.astype(dtype, copy=False)


# --- Zarr -----------------------------------------------------------------------------------


def _is_zarr(p: Path) -> bool:
    return p.suffix.lower() == ".zarr" or any((p / m).exists() for m in ZARR_MARKERS)


def _open_zarr(p: Path, rgb_to_gray: bool) -> Stack:
    import zarr

    node = zarr.open(str(p), mode="r")
    attrs: dict[str, Any] = dict(node.attrs)
    pixel_um = _positive(attrs.get("pixel_size_um"))
    interval_s = _positive(attrs.get("frame_interval_s"))
    axis_deg = _angle(attrs.get("trap_axis_deg"))
    axes = None
    name = ""
    if isinstance(node, zarr.Group):
        arr, name, ngff = _pick_zarr_array(node, p)
        if ngff is not None:
            axes, ngff_pixel, ngff_interval = ngff
            pixel_um = pixel_um or ngff_pixel
            interval_s = interval_s or ngff_interval
        sub = dict(arr.attrs)
        pixel_um = _positive(sub.get("pixel_size_um")) or pixel_um
        interval_s = _positive(sub.get("frame_interval_s")) or interval_s
        axis_deg = _angle(sub.get("trap_axis_deg"), axis_deg)
    else:
        arr = node
    data = da.from_zarr(arr)
    if axes is None:
        if data.ndim == 2:
            axes = "YX"
        elif data.ndim == 3:
            axes = "QYX"
        elif data.ndim == 4 and data.shape[-1] in (3, 4):
            axes = "QYXS"
        else:
            raise InputError(
                f"path: Zarr array in {p} has shape {data.shape}; expected (frames, rows, cols)"
            )
    data = _frames_axis(data, axes, p, rgb_to_gray)
    meta = {"format": "zarr", "array": name, "attrs": _jsonable(attrs)}
    return Stack(data, pixel_um, interval_s, str(p), meta, axis_deg)


def _pick_zarr_array(group: Any, p: Path) -> tuple[Any, str, tuple[str, Any, Any] | None]:
    """The image array of a group: OME-NGFF level 0, a known name, or the only array."""
    multiscales = group.attrs.get("multiscales") or group.attrs.get("ome", {}).get("multiscales")
    if multiscales:
        ms = multiscales[0]
        ds = ms["datasets"][0]
        names = [ax["name"] if isinstance(ax, dict) else ax for ax in ms.get("axes", [])]
        units = {ax["name"]: ax.get("unit") for ax in ms.get("axes", []) if isinstance(ax, dict)}
        scale = next(
            (
                t["scale"]
                for t in ds.get("coordinateTransformations", [])
                if t.get("type") == "scale"
            ),
            None,
        )
        axes = (
            "".join({"t": "T", "c": "C", "z": "Z", "y": "Y", "x": "X"}.get(n, "Q") for n in names)
            or None
        )
        pixel = interval = None
        if scale and "x" in names:
            factor = _LENGTH_UNITS_UM.get(str(units.get("x") or "micrometer").lower())
            pixel = scale[names.index("x")] * factor if factor else None
        if scale and "t" in names:
            factor = _TIME_UNITS_S.get(str(units.get("t") or "second").lower())
            interval = scale[names.index("t")] * factor if factor else None
        return group[ds["path"]], ds["path"], (axes, _positive(pixel), _positive(interval))
    arrays = dict(group.arrays())
    for name in ZARR_ARRAY_NAMES:
        if name in arrays:
            return arrays[name], name, None
    images = {k: a for k, a in arrays.items() if a.ndim >= 2}
    if len(images) == 1:
        ((name, arr),) = images.items()
        return arr, name, None
    listed = ", ".join(sorted(arrays)) or "none"
    raise InputError(f"path: Zarr group {p} has no single image array (arrays: {listed})")


# --- shared ---------------------------------------------------------------------------------


def _frames_axis(data: da.Array, axes: str, p: Path, rgb_to_gray: bool) -> da.Array:
    """Bring data with tifffile-style ``axes`` to ``(frames, rows, cols)``, one chunk per frame.

    Samples (S, RGB) raise unless ``rgb_to_gray``; a channel axis C must have size 1; every
    other axis (T, Z, Q, ...) is flattened into frames in file order. Pixels that are not
    real numbers (complex, text, objects, ...) raise, before anything is cast.
    """
    _check_real(data.dtype, p)
    if len(axes) != data.ndim:
        axes = "Q" * (data.ndim - 2) + "YX"
    if "S" in axes:
        s = axes.index("S")
        n = data.shape[s]
        if not rgb_to_gray:
            raise InputError(
                f"path: {p} is RGB{'A' if n == 4 else ''} ({n} samples per pixel); ccount needs "
                "grey fluorescence images (convert to greyscale)"
            )
        data = da.moveaxis(data, s, -1)
        data = (data[..., :3].astype(np.float32) * LUMA).sum(axis=-1)
        axes = axes.replace("S", "")
    if "C" in axes:
        c = axes.index("C")
        if data.shape[c] != 1:
            raise InputError(
                f"path: {p} has {data.shape[c]} channels; ccount needs one fluorescence channel"
            )
        data = da.squeeze(data, axis=c)
        axes = axes.replace("C", "")
    if "Y" not in axes or "X" not in axes:
        raise InputError(f"path: {p} has axes {axes!r} without rows and columns (Y, X)")
    order = [i for i, a in enumerate(axes) if a not in "YX"] + [axes.index("Y"), axes.index("X")]
    data = da.transpose(data, order)
    rows, cols = data.shape[-2:]
    data = data.reshape((-1, rows, cols))
    return data.rechunk((1, rows, cols))


def _check_real(dtype: np.dtype, p: Path) -> None:
    """Raise :class:`InputError` naming ``p`` unless ``dtype`` holds real numbers (or bool)."""
    if dtype.kind not in "biuf":
        what = _DTYPE_KINDS.get(dtype.kind, "not numbers")
        raise InputError(
            f"path: {p} has pixels of type {dtype} ({what}); ccount reads real-valued "
            "(integer or floating-point) images only"
        )


def _angle(value: Any, default: float | None = None) -> float | None:
    """``value`` as a finite angle (deg), else ``default`` (absent or not a number)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    return float(value) if math.isfinite(value) else default


def _positive(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) and v > 0 else None


def _jsonable(obj: Any) -> Any:
    try:
        return json.loads(json.dumps(obj, default=str))
    except (TypeError, ValueError):
        return {}
