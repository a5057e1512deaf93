"""The three widgets open from napari's Plugins menu (through the npe2 manifest)."""

from __future__ import annotations

import pytest

from napari_ccount._widgets.count import CountWidget
from napari_ccount._widgets.overlay import OverlayWidget
from napari_ccount._widgets.prepare import PrepareWidget

pytestmark = pytest.mark.gui


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("1. Prepare crystal images", PrepareWidget),
        ("2. Count ions", CountWidget),
        ("3. Overlay simulated crystal", OverlayWidget),
    ],
)
def test_widget_opens_from_plugins_menu(make_napari_viewer, name: str, cls: type) -> None:
    viewer = make_napari_viewer()
    (sample,) = viewer.open_sample("napari-ccount", "single_crystal")
    _, widget = viewer.window.add_plugin_dock_widget("napari-ccount", name)
    assert isinstance(widget, cls)
    assert widget.layer_picker.value is sample  # the image is picked for the user
    assert widget.native.maximumWidth() <= 440
