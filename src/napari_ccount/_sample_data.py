"""napari's File > Open Sample: simulated crystals from :mod:`ccount_core.dataset.samples`.

``metadata["ccount"]`` holds the calibration, ``true_counts`` (``{species: [per frame]}``,
the ion numbers the simulation used) and ``file_metadata`` (every simulation input, lab units).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_ccount._reader import LayerData


def _sample(name: str, title: str) -> list[LayerData]:
    from ccount_core.dataset.samples import load_sample

    stack, metadata = load_sample(name)
    stack = np.asarray(stack)
    if stack.ndim == 2:
        stack = stack[None]
    px = metadata.get("pixel_size_um")
    interval = metadata.get("frame_interval_s")
    ccount_meta = {
        "pixel_size_um": float(px) if px else None,
        "frame_interval_s": float(interval) if interval else None,
        "source": f"ccount sample: {name}",
        "format": "sample",
        "true_counts": metadata.get("true_counts", {}),
        "file_metadata": metadata,
    }
    kwargs: dict[str, Any] = {
        "name": title,
        "scale": (1.0, float(px), float(px)) if px else (1.0, 1.0, 1.0),
        "metadata": {"ccount": ccount_meta},
        "colormap": "gray",
        "axis_labels": ("frame", "y", "x"),
    }
    return [(stack, kwargs, "image")]


def single_crystal() -> list[LayerData]:
    """One simulated crystal (Ca+ around a dark core), with its true ion numbers."""
    return _sample("single_crystal", "sample: simulated crystal")


def reaction_series() -> list[LayerData]:
    """A simulated reaction: Ca+ lost while a dark core of product ions grows, frame by frame."""
    return _sample("reaction_series", "sample: simulated reaction series")
