"""napari draws off-screen under Xvfb + Mesa: a viewer shows an image in its screenshot."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gui


def test_viewer_screenshot_shows_the_image(make_napari_viewer) -> None:
    viewer = make_napari_viewer(show=True)
    yy, xx = np.mgrid[0:128, 0:256]
    image = np.where((xx - 128) ** 2 / 90**2 + (yy - 64) ** 2 / 40**2 < 1, 1.0, 0.0)
    viewer.add_image(image.astype(np.float32), colormap="gray", contrast_limits=(0, 1))
    viewer.reset_view()
    shot = viewer.screenshot(canvas_only=True, flash=False)
    assert shot.ndim == 3 and shot.shape[2] == 4
    grey = shot[..., :3].mean(axis=2)
    # A white ellipse on black: both clearly present, not a blank (uniform) canvas.
    assert grey.max() > 200
    assert grey.min() < 30
    bright = (grey > 128).mean()
    expected = np.pi * 90 * 40 / (128 * 256)  # ellipse's share of the image
    assert 0.1 * expected < bright < 1.0
