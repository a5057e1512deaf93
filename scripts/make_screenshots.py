"""Regenerate the README's napari screenshots from a real viewer: docs/images/napari_*.png.

Runs the plugin's workflow on the simulated reaction series (File > Open Sample): fit and
prepare, count every frame with the default model (or ``--model FILE.safetensors``), overlay a
crystal simulated with the counted number. Needs a display; headless:

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/make_screenshots.py

Without a model (none shipped yet, no ``--model``) the count screenshot is skipped and the
overlay uses the sample's true Ca+ number.

``--docked``: only the check that the three widgets, opened from the Plugins menu, fit a
1280 x 800 screen as tabs, with the counts table under them (napari_docked_1280x800.png):

    xvfb-run -a -s "-screen 0 1280x800x24" .venv/bin/python scripts/make_screenshots.py --docked
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import napari
from qtpy.QtWidgets import QApplication

from napari_ccount._widgets._common import text_overlay
from napari_ccount._widgets.count import MODEL_FILE, CountWidget
from napari_ccount._widgets.overlay import OverlayWidget
from napari_ccount._widgets.prepare import PrepareWidget

OUT = Path(__file__).resolve().parents[1] / "docs" / "images"
SIZE = (1600, 950)


def wait(job, timeout_s: float = 600.0) -> None:
    """Let Qt run until ``job`` is done (the workers report through the event loop)."""
    app = QApplication.instance()
    start = time.monotonic()
    while not job.done:
        app.processEvents()
        time.sleep(0.02)
        if time.monotonic() - start > timeout_s:
            raise TimeoutError(job.desc)
    for _ in range(20):
        app.processEvents()
        time.sleep(0.01)
    if job.error is not None:
        raise RuntimeError(f"{job.desc}: {job.error}")


def settle(viewer: napari.Viewer) -> None:
    app = QApplication.instance()
    for _ in range(30):
        app.processEvents()
        time.sleep(0.02)


def shoot(viewer: napari.Viewer, name: str, canvas_only: bool = False) -> None:
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
        toast.close()  # start-up toasts (e.g. the PyQt5 deprecation) would cover the canvas
    settle(viewer)
    path = OUT / name
    viewer.screenshot(str(path), canvas_only=canvas_only, flash=False)
    print(f"wrote {path.relative_to(OUT.parent.parent)}")


DOCKED = ("1. Prepare crystal images", "2. Count ions", "3. Overlay simulated crystal")


def docked(model: Path | None) -> None:
    """The three widgets docked in a 1280 x 800 window, the count tab in front after counting
    8 frames (the counts table docked below)."""
    viewer = napari.Viewer(title="ccount", show=True)
    viewer.window._qt_window.resize(1280, 770)  # a 1280 x 800 screen less the title bar
    (sample,) = viewer.open_sample("napari-ccount", "reaction_series")
    image = viewer.add_image(sample.data[:8], name="series", scale=sample.scale)
    image.metadata["ccount"] = dict(sample.metadata["ccount"])
    viewer.layers.remove(sample)
    opened = [viewer.window.add_plugin_dock_widget("napari-ccount", name) for name in DOCKED]
    settle(viewer)
    dock, count = opened[1]
    dock.raise_()
    if model is not None:
        count.layer_picker.value = image
        count.model_choice.value = MODEL_FILE
        count.model_file.value = model
        wait(count.run())
    shoot(viewer, "napari_docked_1280x800.png")
    viewer.close()


def main() -> None:
    from ccount_core.nn.model import default_model_path

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="model .safetensors (default: shipped)")
    parser.add_argument("--docked", action="store_true", help="only the 1280 x 800 dock check")
    args = parser.parse_args()
    model = args.model or (default_model_path() if default_model_path().exists() else None)
    OUT.mkdir(parents=True, exist_ok=True)
    if args.docked:
        docked(model)
        return
    viewer = napari.Viewer(title="ccount", show=True)
    viewer.window._qt_window.resize(*SIZE)
    (image,) = viewer.open_sample("napari-ccount", "reaction_series")

    # 1. Prepare: fitted (editable) ellipse, prepared stack beside the recording.
    prepare = PrepareWidget(viewer)
    dock = viewer.window.add_dock_widget(prepare, name="1. Prepare crystal images")
    viewer.dims.set_current_step(0, 0)
    wait(prepare.fit())
    wait(prepare.prepare())
    viewer.layers.selection.active = viewer.layers["crystal ellipse"]
    viewer.reset_view()
    shoot(viewer, "napari_prepare.png")
    viewer.window.remove_dock_widget(dock)

    # 2. Count: every frame in a worker; table and N(t) plot docked, count on the canvas.
    if model is not None:
        count = CountWidget(viewer)
        count.layer_picker.value = image
        if args.model:
            count.model_choice.value = MODEL_FILE
            count.model_file.value = args.model
        docks = [viewer.window.add_dock_widget(count, name="2. Count ions")]
        wait(count.run())
        viewer.dims.set_current_step(0, image.data.shape[0] - 1)
        viewer.reset_view()
        shoot(viewer, "napari_count.png")
        for dock in [*docks, *count._docks]:
            viewer.window.remove_dock_widget(dock)
    else:
        print("no model: napari_count.png not made (pass --model FILE.safetensors)")

    # 3. Overlay: a crystal simulated with the counted number, green on the recording.
    for layer in list(viewer.layers):
        if layer is not image:
            viewer.layers.remove(layer)
    text_overlay(viewer).visible = False
    overlay = OverlayWidget(viewer)
    overlay.layer_picker.value = image
    viewer.window.add_dock_widget(overlay, name="3. Overlay simulated crystal")
    viewer.dims.set_current_step(0, 0)
    truth = image.metadata["ccount"]["true_counts"]
    if model is not None:
        overlay.use_counted_number()
    else:
        overlay.param_fields["n_ca"].value = truth["Ca+"][0]
    dark = next(s for s in truth if s != "Ca+")
    overlay.param_fields["dark_species"].value = dark
    overlay.param_fields["n_dark"].value = truth[dark][0]
    wait(overlay.run())
    ell = overlay.overlay_layer.metadata["ccount"]["ellipse"]
    px = float(image.scale[-1])
    viewer.reset_view()
    camera = getattr(viewer, "scene", viewer).camera
    camera.center = (ell["center_row"] * px, ell["center_col"] * px)
    camera.zoom *= 1.3
    shoot(viewer, "napari_overlay.png")
    viewer.close()


if __name__ == "__main__":
    main()
