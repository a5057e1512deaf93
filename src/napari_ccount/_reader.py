"""npe2 reader: image stacks as lazy napari Image layers (:func:`ccount_core.image.io.open_stack`).

The layer's scale is the pixel size in µm when the file gives it (frame axis: 1 per frame);
``metadata["ccount"]`` holds ``pixel_size_um``, ``frame_interval_s``, ``source``, the
file's format and ``file_metadata`` (our JSON description: e.g. the trap and imaging settings
of a ``ccount simulate`` TIFF), which the widgets read back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from napari.utils.notifications import show_warning

from ccount_core.errors import InputError
from ccount_core.image.io import FRAME_SUFFIXES, ZARR_MARKERS, Stack, open_stack

LayerData = tuple[Any, dict[str, Any], str]


def get_reader(path: str | list[str]):
    """Return :func:`read_stack` when ``path`` looks like something ccount reads, else None."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    p = Path(path)
    if p.is_dir():
        if p.suffix.lower() == ".zarr" or any((p / m).exists() for m in ZARR_MARKERS):
            return read_stack
        has_frames = any(f.suffix.lower() in FRAME_SUFFIXES for f in p.iterdir() if f.is_file())
        return read_stack if has_frames else None
    if p.suffix.lower() in FRAME_SUFFIXES or p.suffix.lower() == ".zarr":
        return read_stack
    return None


def read_stack(path: str | list[str]) -> list[LayerData]:
    """Open ``path`` lazily as one Image layer; RGB is converted to grey with a warning, and
    what the reader noticed (e.g. a truncated file: frames lost) is shown as a warning."""
    if isinstance(path, list):
        path = path[0]
    try:
        stack = open_stack(path)
    except InputError as exc:
        if "RGB" not in str(exc):
            raise
        show_warning(f"ccount: {Path(path).name} is RGB; opened as grey (luminance)")
        stack = open_stack(path, rgb_to_gray=True)
    for note in stack.metadata.get("warnings", []):
        show_warning(f"ccount: {note}")
    return [stack_layer_data(stack)]


def stack_layer_data(
    stack: Stack, name: str | None = None, extra: dict[str, Any] | None = None
) -> LayerData:
    """``(data, kwargs, "image")`` for a :class:`Stack`: scale in µm, calibration in metadata."""
    px = stack.pixel_size_um
    scale = (1.0, px, px) if px else (1.0, 1.0, 1.0)
    meta = {
        "ccount": {
            "pixel_size_um": px,
            "frame_interval_s": stack.frame_interval_s,
            "trap_axis_deg": stack.trap_axis_deg,
            "source": stack.source,
            "format": stack.metadata.get("format"),
            "file_metadata": stack.metadata.get("description", {}),
            **(extra or {}),
        }
    }
    kwargs: dict[str, Any] = {
        "name": name or Path(stack.source).name,
        "scale": scale,
        "metadata": meta,
        "colormap": "gray",
        "axis_labels": ("frame", "y", "x"),
    }
    return stack.data, kwargs, "image"
