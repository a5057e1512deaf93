"""The plugin's three widgets, opened from napari's Plugins menu, share one dock as tabs
(``_common.fit_dock``), so on a 1280 x 800 screen every run button stays inside the window."""

from __future__ import annotations

import pytest
from qtpy.QtWidgets import QPushButton

pytestmark = pytest.mark.gui

WIDGETS = ("1. Prepare crystal images", "2. Count ions", "3. Overlay simulated crystal")
RUN_BUTTONS = ("prepare_button", "run_button", "run_button")


def _open_all(viewer):
    """The three widgets, docked the way napari docks npe2 widget contributions."""
    return [viewer.window.add_plugin_dock_widget("napari-ccount", name) for name in WIDGETS]


def test_the_three_widgets_are_tabs_of_one_dock(make_napari_viewer, qtbot) -> None:
    viewer = make_napari_viewer()
    docks = [dock for dock, _ in _open_all(viewer)]
    window = viewer.window._qt_window
    first = docks[0]
    qtbot.waitUntil(lambda: set(window.tabifiedDockWidgets(first)) == set(docks[1:]))


def test_run_buttons_fit_a_1280x800_window(make_napari_viewer, qtbot, model_file) -> None:
    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    window.showNormal()
    window.resize(1280, 770)  # a 1280 x 800 screen less the title bar
    opened = _open_all(viewer)
    qtbot.wait(100)  # the dock layout settles in the event loop
    assert window.height() <= 800
    for (dock, widget), attr in zip(opened, RUN_BUTTONS, strict=True):
        dock.raise_()
        button = getattr(widget, attr).native
        qtbot.waitUntil(button.isVisible)
        assert isinstance(button, QPushButton)
        top_left = button.mapTo(window, button.rect().topLeft())
        bottom_right = button.mapTo(window, button.rect().bottomRight())
        assert window.rect().contains(top_left) and window.rect().contains(bottom_right), (
            dock.name,
            top_left,
            bottom_right,
            window.size(),
        )
    # after a count the table and the N(t) plot dock below the canvas: the window still fits
    from ccount_core.dataset.samples import load_sample
    from napari_ccount._widgets.count import MODEL_FILE

    stack, meta = load_sample("reaction_series")
    viewer.add_image(stack[:2], name="series", metadata={"ccount": meta})
    count_widget = opened[1][1]
    count_widget.layer_picker.reset_choices()
    count_widget.model_choice.value = MODEL_FILE
    count_widget.model_file.value = model_file
    job = count_widget.run()
    assert job is not None
    qtbot.waitUntil(lambda: job.done, timeout=180_000)
    assert job.error is None, job.error
    qtbot.wait(200)
    assert count_widget._docks and window.height() <= 800, window.size()
