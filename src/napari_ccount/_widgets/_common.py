"""Pieces the three widgets share: the image-layer picker, layer calibration and the crystal
ellipse drawn as a napari shape."""

from __future__ import annotations

import math
import threading
import time
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import napari
import numpy as np
from magicgui.widgets import ComboBox, Container, Label, ProgressBar
from qtpy.QtCore import QEvent, QObject, QTimer
from qtpy.QtWidgets import QDockWidget, QMainWindow, QWidget

from ccount_core.errors import InputError
from napari_ccount._widgets._forms import param

#: ``layer.metadata["ccount"]`` key of a layer the Prepare widget made: the recording's name.
PREPARED_FROM = "prepared_from"
#: ``layer.metadata["ccount"]`` key of the Overlay widget's simulated layer: the recording's name.
OVERLAY_OF = "overlay_of"


def prepared_source(layer: Any) -> str | None:
    """The name of the recording ``layer`` was prepared from, or None for any other layer."""
    source = getattr(layer, "metadata", {}).get("ccount", {}).get(PREPARED_FROM)
    return None if source is None else str(source)


def is_recording(layer: Any) -> bool:
    """Whether ``layer`` is an Image layer the ccount widgets did not make (a recording)."""
    if not isinstance(layer, napari.layers.Image):
        return False
    made = layer.metadata.get("ccount", {})
    return PREPARED_FROM not in made and OVERLAY_OF not in made


class LayerPicker(ComboBox):
    """A combo box of the viewer's layers that refreshes when layers come and go.

    Every layer is listed so that picking a wrong one gives a clear error rather than silence;
    :meth:`image_layer` checks it is a grey recording. By default the newest recording is
    chosen, never a layer the Prepare or Overlay widget made. ``prepared_reason``: why a
    prepared layer is refused (the end of the error line).
    """

    def __init__(
        self,
        viewer: napari.Viewer,
        label: str = "image",
        tooltip: str = "",
        prepared_reason: str = "the model prepares frames itself",
    ) -> None:
        self._viewer = viewer
        self._prepared_reason = prepared_reason
        super().__init__(label=label, choices=self._choices, tooltip=tooltip, nullable=True)
        for event in (
            viewer.layers.events.inserted,
            viewer.layers.events.removed,
            viewer.layers.events.moved,
        ):
            event.connect(lambda _e=None: self.reset_choices())
        self.reset_choices()
        self._select_default()

    def _choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        viewer = getattr(self, "_viewer", None)
        if viewer is None:
            return []
        return [(layer.name, layer) for layer in viewer.layers]

    def _select_default(self) -> None:
        recordings = [ly for ly in self._viewer.layers if is_recording(ly)]
        if recordings:
            self.value = recordings[-1]

    def reset_choices(self, *_: Any) -> None:
        super().reset_choices()
        if self.value is None:
            self._select_default()

    def image_layer(self) -> napari.layers.Image:
        """The chosen layer, checked: an Image layer of grey frames that is not a prepared
        layer; else InputError."""
        layer = self.value
        if layer is None:
            raise InputError(f"{self.label}: choose an image layer first")
        if not isinstance(layer, napari.layers.Image):
            raise InputError(
                f"{self.label}: layer '{layer.name}' is a "
                f"{type(layer).__name__} layer, not an image"
            )
        source = prepared_source(layer)
        if source is not None:
            raise InputError(
                f"{self.label}: layer '{layer.name}' is already prepared; choose the "
                f"recording '{source}' ({self._prepared_reason})"
            )
        if layer.rgb:
            raise InputError(
                f"{self.label}: layer '{layer.name}' is RGB; ccount needs grey fluorescence images"
            )
        if layer.ndim not in (2, 3):
            raise InputError(
                f"{self.label}: layer '{layer.name}' has {layer.ndim} dimensions; "
                "expected (frames, rows, cols) or (rows, cols)"
            )
        return layer


DOCK_WIDTH = 440  # px: the widest a widget's dock grows, so the canvas keeps its room
ELLIPSE_LAYER = "crystal ellipse"  # the Shapes layer that holds the (editable) crystal ellipse


def status_label() -> Label:
    """A word-wrapped status line (long messages wrap instead of widening the dock)."""
    label = Label(value="")
    label.native.setWordWrap(True)
    return label


def progress_bar() -> ProgressBar:
    """The widget's job progress (steps done of the job's total), beside its status line."""
    bar = ProgressBar(value=0, max=1)
    bar.native.setMaximumWidth(90)
    return bar


def status_row(status: Label, bar: ProgressBar) -> Container:
    """The progress bar and the status line in one row (the widgets stay short enough for
    a 1280 x 800 screen)."""
    row = Container(layout="horizontal", labels=False, widgets=[bar, status], label="status")
    row.margins = (0, 0, 0, 0)
    return row


def fit_dock(widget: Container) -> None:
    """Keep a dock widget narrow enough for the canvas; once docked, it becomes a tab beside
    the plugin's other docked widgets (:func:`tabify_with_ccount_docks`), so that the three
    do not stack into one column taller than the screen."""
    widget.native.setMaximumWidth(DOCK_WIDTH)
    widget.native.setProperty(CCOUNT_DOCK, True)
    _TabifyWhenDocked(widget.native)


def text_overlay(viewer: napari.Viewer) -> Any:
    """The canvas text overlay (``viewer.canvas.overlays["text"]`` from napari 0.9)."""
    canvas = getattr(viewer, "canvas", None)
    return canvas.overlays["text"] if canvas is not None else viewer.text_overlay


def canvas_text_font(viewer: napari.Viewer) -> Any | None:
    """The glyph cache of the canvas text (a vispy texture font: ``font[char]`` renders and
    stores one glyph), or None where napari's private vispy side is not that of 0.9."""
    try:
        with warnings.catch_warnings():  # napari 0.9 warns of private access from plugins
            warnings.simplefilter("ignore", FutureWarning)
            canvas = viewer.window._qt_viewer.canvas
            visuals = canvas._viewer_overlay_to_visual[text_overlay(viewer)]
            font = visuals[0].node._font
    except (AttributeError, KeyError, IndexError, TypeError):
        return None
    return font if hasattr(font, "__getitem__") else None


class GlyphWarmer(QObject):
    """Render the canvas text's glyphs for ``chars`` ahead of use, one per GUI-timer tick,
    once the thread ``after`` (the background import) has finished.

    A glyph is drawn on the GUI thread the first time the canvas shows it (tens of ms each
    with napari's CPU distance-field renderer): the first counted frame's text, with its
    digits, "±" and "⁺", froze the window for 0.2–0.4 s mid-count. One glyph per tick keeps
    each pause short, and waiting for the import keeps the glyphs' Python work from competing
    with it for the GIL."""

    TICK_MS = 20

    def __init__(
        self,
        viewer: napari.Viewer,
        chars: str,
        parent: QObject | None = None,
        after: threading.Thread | None = None,
    ) -> None:
        super().__init__(parent)
        self._viewer = viewer
        self._after = after
        self._font: Any = None
        self.pending = list(dict.fromkeys(c for c in chars if not c.isspace()))
        self._timer = QTimer(self)
        self._timer.setInterval(self.TICK_MS)
        self._timer.timeout.connect(self._next)
        self._timer.start()

    def _next(self) -> None:
        if self._after is not None and self._after.is_alive():
            return
        if self._font is None:
            self._font = canvas_text_font(self._viewer)
        font = self._font
        if font is None or not self.pending:
            self.pending.clear()
            self._timer.stop()
            return
        start = time.perf_counter()
        while self.pending and time.perf_counter() - start < 0.002:  # cached ones: no tick
            try:
                font[self.pending.pop(0)]
            except Exception:  # a glyph napari cannot render now: it is drawn when shown
                return


def layer_stack(layer: napari.layers.Image) -> Any:
    """The layer's data as ``(frames, rows, cols)`` (numpy or dask, not computed)."""
    data = layer.data
    return data[None] if data.ndim == 2 else data


def current_frame_index(viewer: napari.Viewer, layer: napari.layers.Image) -> int:
    """Index of the frame the viewer shows for ``layer`` (0 for a single image)."""
    if layer.ndim == 2:
        return 0
    world = viewer.dims.point
    data_pt = layer.world_to_data(world[-layer.ndim :] if len(world) >= layer.ndim else world)
    n = layer.data.shape[0]
    return int(np.clip(round(float(data_pt[0])), 0, n - 1))


def layer_meta(layer: napari.layers.Image) -> dict[str, Any]:
    """``layer.metadata["ccount"]``, created when missing."""
    return layer.metadata.setdefault("ccount", {})


def pixel_size_um(layer: napari.layers.Image) -> float | None:
    """Camera pixel size in µm from the layer's metadata, or its scale when that is not 1."""
    px = layer_meta(layer).get("pixel_size_um")
    if px:
        return float(px)
    sy, sx = (float(v) for v in layer.scale[-2:])
    return sx if sx != 1.0 and abs(sx - sy) < 1e-9 * max(sx, 1.0) else None


def trap_axis_deg(layer: napari.layers.Image) -> float | None:
    """The trap axis the layer's file states (deg counter-clockwise from +col), or None."""
    value = layer_meta(layer).get("trap_axis_deg")
    return None if value is None else float(value)


@dataclass(frozen=True)
class TrapAxisParams:
    """The trap axis in a recording, as the Count and Prepare forms ask for it."""

    trap_axis: Literal["auto", "horizontal", "vertical", "degrees"] = param(
        "auto",
        "the trap axis in the frames: auto (the crystal's long axis, as in every training "
        "crystal), horizontal, vertical, or an angle (degrees, below); set from the file "
        "when it states one (trap_axis_deg)",
    )
    trap_axis_deg: float = param(
        0.0,
        "the trap axis's angle, counter-clockwise from the columns axis as displayed; the "
        "crystal axis nearest it is taken",
        "°",
        label="trap axis angle",
        min=-180.0,
        max=180.0,
        step=1.0,
        decimals=1,
    )

    def value(self) -> str | float:
        """What ``trap_axis`` the core takes (``ccount_core.image.preprocess.parse_trap_axis``)."""
        return self.trap_axis_deg if self.trap_axis == "degrees" else self.trap_axis


def link_trap_axis(fields: dict[str, Any]) -> None:
    """Show the angle field of a form built from :class:`TrapAxisParams` only for "degrees"."""
    choice, angle = fields["trap_axis"], fields["trap_axis_deg"]

    def show(value: str) -> None:
        angle.visible = value == "degrees"

    choice.changed.connect(show)
    show(choice.value)


def use_layer_trap_axis(fields: dict[str, Any], layer: Any) -> None:
    """Set the trap-axis fields to the angle ``layer``'s file states (unchanged when none)."""
    if isinstance(layer, napari.layers.Image):
        deg = trap_axis_deg(layer)
        if deg is not None:
            fields["trap_axis"].value = "degrees"
            fields["trap_axis_deg"].value = deg


def frame_interval_s(layer: napari.layers.Image) -> float | None:
    value = layer_meta(layer).get("frame_interval_s")
    return float(value) if value else None


# --- the crystal ellipse as a napari shape ---------------------------------------------


def ellipse_to_corners(ellipse: Any) -> np.ndarray:
    """The 4 corners ``(4, 2)`` (row, col; px) of the ellipse's rotated bounding box."""
    t = math.radians(ellipse.angle_deg)
    u = np.array([-math.sin(t), math.cos(t)])  # along the major axis (row, col)
    v = np.array([math.cos(t), math.sin(t)])  # along the minor axis
    c = np.array([ellipse.center_row, ellipse.center_col])
    a, b = ellipse.semi_major, ellipse.semi_minor
    return np.array([c - a * u - b * v, c + a * u - b * v, c + a * u + b * v, c - a * u + b * v])


def corners_to_ellipse(corners: np.ndarray) -> Any:
    """The :class:`Ellipse` inscribed in a (possibly rotated) box of 4 corners (row, col; px)."""
    from ccount_core.image.preprocess import Ellipse

    pts = np.asarray(corners, dtype=float)[:, -2:]
    if pts.shape != (4, 2):
        raise InputError(f"ellipse shape: expected 4 corner points, got {pts.shape[0]}")
    centre = pts.mean(axis=0)
    e1, e2 = pts[1] - pts[0], pts[2] - pts[1]
    angle1 = math.degrees(math.atan2(-e1[0], e1[1]))
    return Ellipse.from_axes(
        centre[0], centre[1], np.hypot(*e1) / 2, np.hypot(*e2) / 2, angle1, quality=1.0
    )


# --- the plugin's widgets docked as tabs of one dock --------------------------------------

CCOUNT_DOCK = "ccount_dock"  # Qt property set on the plugin's tabbed widgets (see fit_dock)


class _TabifyWhenDocked(QObject):
    """Watches a widget; when it is put into a dock, tabifies that dock once the window has
    placed it (napari docks a plugin's widget after creating it, so the widget cannot ask)."""

    def __init__(self, widget: QWidget) -> None:
        super().__init__(widget)
        self._widget = widget
        widget.installEventFilter(self)

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if obj is self._widget and event.type() == QEvent.Type.ParentChange:
            QTimer.singleShot(0, self._tabify)
        return False

    def _tabify(self) -> None:
        tabify_with_ccount_docks(self._widget)


def _dock_of(widget: QWidget) -> QDockWidget | None:
    parent = widget.parentWidget()
    while parent is not None and not isinstance(parent, QDockWidget):
        parent = parent.parentWidget()
    return parent


def _holds_ccount(dock: QDockWidget) -> bool:
    inner = dock.widget()
    if inner is None:
        return False
    return bool(inner.property(CCOUNT_DOCK)) or any(
        child.property(CCOUNT_DOCK) for child in inner.findChildren(QWidget)
    )


def tabify_with_ccount_docks(widget: QWidget) -> bool:
    """Make the dock holding ``widget`` a tab of the plugin's docked widgets in the same
    dock area of the main window, and show it; False when it is not docked or alone there."""
    dock = _dock_of(widget)
    window = dock.parentWidget() if dock is not None else None
    if not isinstance(window, QMainWindow) or dock.isFloating():
        return False
    area = window.dockWidgetArea(dock)
    others = [
        other
        for other in window.findChildren(QDockWidget)
        if other is not dock
        and not other.isFloating()
        and window.dockWidgetArea(other) == area
        and _holds_ccount(other)
    ]
    if not others or dock in window.tabifiedDockWidgets(others[-1]):
        return False
    window.tabifyDockWidget(others[-1], dock)
    dock.show()
    dock.raise_()
    return True
