"""Counting widget: the model counts Ca+ ions in every frame of an image layer, in a worker.

Results: a docked table (one row per frame), a docked N(t) plot with its ±σ band, the rows in
``layer.metadata["ccount"]["counts"]``, the current frame's count on the canvas and a CSV export.
The GUI thread never waits: torch and the counting code are imported in the background when the
widget opens (``_workers.preload``), the result docks are made then too, and while a count runs
each batch's rows are appended to the table and the plot is redrawn at most once a second.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import napari
import numpy as np
from magicgui.widgets import ComboBox, Container, FileEdit, Label, PushButton
from napari.utils.notifications import show_info, show_warning
from qtpy.QtCore import Qt, QTimer
from qtpy.QtGui import QBrush, QColor
from qtpy.QtWidgets import (
    QDockWidget,
    QMainWindow,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from ccount_core.errors import InputError
from ccount_core.files import atomic_path
from ccount_core.nn.counts_file import (
    CountsWriter,
    counts_metadata,
    not_counted,
    other_counts,
    other_uncertainty,
)
from ccount_core.progress import ProgressCallback, report
from napari_ccount._plot import CountPlot
from napari_ccount._widgets._common import (
    GlyphWarmer,
    LayerPicker,
    TrapAxisParams,
    current_frame_index,
    fit_dock,
    frame_interval_s,
    layer_meta,
    layer_stack,
    link_trap_axis,
    pixel_size_um,
    progress_bar,
    status_label,
    status_row,
    text_overlay,
    use_layer_trap_axis,
)
from napari_ccount._widgets._forms import build_form, param, read_form
from napari_ccount._workers import Job, notify_error, preload, start_job

DEFAULT_MODEL = "default model"
MODEL_FILE = "model file…"
SHIPPED_PREFIX = "shipped: "
WARNED_COLOR = "#ffb000"  # a warned row's text in the counts table
TABLE_MIN_ROWS = 3  # the counts table's dock never shrinks below this many rows
TABLE_COLUMNS = ("frame", "time (s)", "Ca⁺ count", "± (1σ)", "ellipse", "warning")
#: Tooltip of a dark species' column: what its ± is.
DARK_SIGMA = (
    "{name} count ± its uncertainty (ions, 1σ): the model's RMS error on simulated "
    "validation images of about that many {name} ions; no ± where the model's card holds "
    "no {name} error"
)
PLOT_EVERY_MS = 1000  # while rows stream in, the plot is redrawn at most this often
# every character the canvas text shows during a count (see _on_step), rendered at open
OVERLAY_GLYPHS = "frame 0123456789: N(Ca⁺) = ± , N(ND3+) not counted"


SHORT_STACK_BATCHES = 4  # a short stack is counted in this many batches at least


def short_batch(batch_size: int, frames: int) -> int:
    """The batch size a count of ``frames`` frames runs with: at most ``batch_size``, and small
    enough for :data:`SHORT_STACK_BATCHES` batches, so a short count's progress moves and
    Cancel can act between its batches (with no test-time views the counts do not depend on
    it)."""
    return max(1, min(batch_size, math.ceil(frames / SHORT_STACK_BATCHES)))


def run_count(
    stack: Any,
    model_path: str | None,
    batch_size: int,
    tta: int,
    pixel_size_um: float | None,
    frame_interval_s: float | None,
    on_rows: Any = None,
    progress: ProgressCallback | None = None,
    phase: Callable[[str], None] | None = None,
    trap_axis: str | float = "auto",
) -> dict[str, Any]:
    """Count every frame of ``stack`` ``(frames, rows, cols)`` with the core; runs in a worker.

    ``model_path`` None is the default model; a path, a shipped name (``dark``, ``ensemble``)
    or an ensemble card works too. ``tta``: extra test-time views per frame. ``trap_axis``:
    as in :func:`ccount_core.nn.count.count_stack`.
    Returns ``{"rows": [core row dicts], "device": str, "model": str, "band": str}`` (rows as
    :func:`ccount_core.nn.count.count_stack` gives them: frame, time_s, count, uncertainty
    (ions), ellipse_*, warning; ``band``: what ±1σ is made of, for the plot's legend);
    ``on_rows`` gets each batch's rows as soon as they are known.
    ``progress`` counts loading the model (its first import included) as one step before the
    frames; ``phase`` is told ``loading model``, then ``counting`` (the first batch includes
    the core's warm-up). Batches: :func:`short_batch`.
    """
    from ccount_core.nn.count import count_stack, sigma_terms
    from ccount_core.nn.ensemble import load_counter, model_location

    frames = int(stack.shape[0])
    steps = frames + 1
    _say(phase, "loading model")
    report(progress, 0, steps)
    preload().join()  # torch loaded without holding the GIL long (the GUI keeps running)
    counter = load_counter(model_path)
    report(progress, 1, steps)
    _say(phase, f"counting {frames} frames")
    rows = count_stack(
        stack,
        counter,
        pixel_size_um,
        trap_axis=trap_axis,
        frame_interval_s=frame_interval_s,
        batch_size=short_batch(batch_size, frames),
        tta=tta,
        on_rows=on_rows,
        progress=lambda done, _total: report(progress, 1 + done, steps),
    )
    # chosen by the core: CUDA when available
    device = str(next(counter.members[0][0].parameters()).device)
    return {
        "rows": [_plain(r) for r in rows],
        "device": device,
        "model": str(model_location(model_path)),
        "band": sigma_terms(counter, tta),
        "metadata": counts_metadata(counter.card, "", pixel_size_um, tta),
    }


def _say(phase: Callable[[str], None] | None, text: str) -> None:
    if phase is not None:
        phase(text)


@dataclass(frozen=True)
class CountParams:
    """How the count runs (the form's fields besides the layer, the model and the trap axis)."""

    pixel_size_um: float = param(
        0.0,
        "camera µm per pixel in the object plane, filled from the layer's file (or its "
        "scale); 0: unknown, and counting refuses to start (the model counts from the "
        "crystal's size in µm)",
        "µm",
        label="pixel size",
        min=0.0,
        max=1000.0,
        step=0.1,
        decimals=3,
    )
    tta: int = param(
        0,
        "extra, mildly changed views of each frame (rotation, shift, flips): the count "
        "is their mean and their standard deviation joins the uncertainty, which is "
        "otherwise the model's RMS error on simulated images of that count (ions); "
        "each view costs one pass",
        label="test-time views",
        min=0,
        max=32,
    )
    batch_size: int = param(
        8,
        "frames per batch, at most (rows appear and Cancel acts per batch; a short stack "
        "runs in 4 batches or more)",
        min=1,
        max=256,
    )


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    """A core row with plain Python values (JSON-able for layer metadata)."""
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in row.items()}


def _share_width(widgets: list[QWidget], shares: tuple[float, ...]) -> None:
    """Give the docks of side-by-side docked widgets these shares of the window's width."""
    docks = []
    for w in widgets:
        while w is not None and not isinstance(w, QDockWidget):
            w = w.parentWidget()
        docks.append(w)
    window = docks[0].parentWidget() if docks[0] is not None else None
    if isinstance(window, QMainWindow) and all(d is not None for d in docks):
        sizes = [int(s * window.width()) for s in shares]
        window.resizeDocks(docks, sizes, Qt.Orientation.Horizontal)


def _show_rows(table: QTableWidget, rows: int) -> None:
    """Keep room for ``rows`` rows (header and horizontal scroll bar included)."""
    header = table.horizontalHeader().sizeHint().height()
    bar = table.horizontalScrollBar().sizeHint().height()
    frame = 2 * table.frameWidth()
    table.setMinimumHeight(
        header + rows * table.verticalHeader().defaultSectionSize() + bar + frame
    )


def _num(value: Any) -> float:
    return math.nan if value is None else float(value)


def _with_sigma(count: Any, sigma: Any, fmt: str) -> str:
    """``"n ± σ"`` (``fmt`` for both), or ``"n"`` where σ is not known."""
    pm = f" ± {_num(sigma):{fmt}}" if math.isfinite(_num(sigma)) else ""
    return f"{_num(count):{fmt}}{pm}"


def _matched_dark(matches: dict[int, dict[str, Any]]) -> list[str]:
    return sorted({m["dark_species"] for m in matches.values() if m.get("dark_species")})


def match_headers(matches: dict[int, dict[str, Any]]) -> list[str]:
    """Columns for the Overlay widget's matches (``layer.metadata["ccount"]["matches"]``,
    by frame): matched Ca⁺ and its interval (ions), and the dark species' when searched."""
    if not matches:
        return []
    dark = [h for d in _matched_dark(matches) for h in (f"matched {d}", "[lo, hi]")]
    return ["matched Ca⁺", "[lo, hi]", *dark]


def match_cells(matches: dict[int, dict[str, Any]], frame: int) -> list[str]:
    """The cells under :func:`match_headers` for one frame (empty where it was not matched)."""
    if not matches:
        return []
    m = matches.get(frame) or {}
    cells = [f"{m['n_ca']:.1f}", "[{:.1f}, {:.1f}]".format(*m["n_ca_interval"])] if m else ["", ""]
    for d in _matched_dark(matches):
        if m.get("dark_species") == d:
            cells += [f"{m['n_dark']:.1f}", "[{:.1f}, {:.1f}]".format(*m["n_dark_interval"])]
        else:
            cells += ["", ""]
    return cells


class CountWidget(Container):
    """Choose an image layer and a model; count in a worker; table, plot, CSV, canvas text."""

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self.layer_picker = LayerPicker(
            napari_viewer,
            tooltip="the recorded (raw) image stack; the model applies the "
            "preprocessing saved in its card",
        )
        from ccount_core.nn.ensemble import shipped_models

        others = [SHIPPED_PREFIX + n for n in shipped_models() if n != "default"]
        self.model_choice = ComboBox(
            label="model",
            choices=[DEFAULT_MODEL, *others, MODEL_FILE],
            value=DEFAULT_MODEL,
            tooltip="the model shipped with ccount; another shipped "
            "one (dark: also counts ND3+; ensemble: default and dark "
            "averaged, more accurate, half as fast); or a "
            ".safetensors file with its JSON card beside it, or an "
            "ensemble's .json card",
        )
        self.model_file = FileEdit(
            label="model file",
            filter="*.safetensors *.json",
            visible=False,
            tooltip="weights (.safetensors) with the model card (.json), "
            "or an ensemble card (.json)",
        )
        fields = build_form(CountParams, CountParams())
        self.pixel_size, self.tta, self.batch = (
            fields["pixel_size_um"],
            fields["tta"],
            fields["batch_size"],
        )
        self.axis_fields = build_form(TrapAxisParams, TrapAxisParams())
        link_trap_axis(self.axis_fields)
        self.device_label = Label(label="device", value="chosen by the core")
        self.run_button = PushButton(text="Count ions")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.export_button = PushButton(text="Export CSV…", enabled=False)
        self.status = status_label()
        self.progress = progress_bar()
        self.extend(
            [
                self.layer_picker,
                self.pixel_size,
                *self.axis_fields.values(),
                self.model_choice,
                self.model_file,
                self.tta,
                self.batch,
                self.device_label,
                self.run_button,
                self.cancel_button,
                self.export_button,
                status_row(self.status, self.progress),
            ]
        )
        fit_dock(self)
        loading = preload()  # torch and the counting code, in the background while the user chooses
        self.model_choice.changed.connect(self._on_model_choice)
        self.layer_picker.changed.connect(self._use_layer)
        self._use_layer(self.layer_picker.value)
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)
        self.export_button.changed.connect(self._export_dialog)

        self.table = QTableWidget(0, len(TABLE_COLUMNS))
        self.table.setHorizontalHeaderLabels(list(TABLE_COLUMNS))
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        self.table.cellClicked.connect(self._go_to_row)
        _show_rows(self.table, TABLE_MIN_ROWS)
        self.plot = CountPlot()
        self.plot.fit_box.toggled.connect(self._on_fit_box)
        self._plot_timer = QTimer(self.native)
        self._plot_timer.setSingleShot(True)
        self._plot_timer.setInterval(PLOT_EVERY_MS)
        self._plot_timer.timeout.connect(self._refresh_plot)
        self._docks: list[Any] = []
        self.job: Job | None = None
        self.rows: list[dict[str, Any]] = []
        self.band = "±1σ"  # the plot legend's name of the band (run_count's "band")
        self.count_metadata: dict[str, Any] = {}  # run_count's "metadata": the export's first line
        self.counted_layer: napari.layers.Image | None = None
        napari_viewer.dims.events.current_step.connect(self._on_step)
        # docked (and drawn) now, empty, so that no heavy first draw happens mid-count
        self._dock_results()
        self._show_overlay("ccount: choose a recording and count")
        self._glyphs = GlyphWarmer(napari_viewer, OVERLAY_GLYPHS, self.native, after=loading)

    # --- running ------------------------------------------------------------------------

    def _use_layer(self, layer: Any) -> None:
        """Fill the pixel size (0 when unknown) and the trap axis from the chosen layer."""
        if isinstance(layer, napari.layers.Image):
            self.pixel_size.value = pixel_size_um(layer) or 0.0
            use_layer_trap_axis(self.axis_fields, layer)

    def _pixel_size(self, layer: napari.layers.Image) -> float:
        """The pixel size field's value (µm); InputError while it is unknown (0)."""
        px = float(self.pixel_size.value)
        if px <= 0.0:
            raise InputError(
                f"pixel size: unknown for layer '{layer.name}' (its file does not say); "
                "enter the camera's µm per pixel in the object plane"
            )
        return px

    def _on_model_choice(self, value: str) -> None:
        self.model_file.visible = value == MODEL_FILE

    def _model_path(self) -> str | None:
        from ccount_core.nn.ensemble import is_ensemble

        choice = self.model_choice.value
        if choice == DEFAULT_MODEL:
            return None
        if choice.startswith(SHIPPED_PREFIX):
            return choice[len(SHIPPED_PREFIX) :]
        path = Path(self.model_file.value)
        if path.suffix == ".json" and path.is_file() and is_ensemble(path):
            return str(path)
        if not path.is_file() or path.suffix != ".safetensors":
            raise InputError(
                f"model file: {path} is not a .safetensors model file or an ensemble card"
            )
        if not path.with_suffix(".json").is_file():
            raise InputError(
                f"model file: the model card {path.with_suffix('.json').name} "
                "is missing beside the weights"
            )
        return str(path)

    def run(self) -> Job | None:
        """Start counting the chosen layer; returns the job (None when the input is bad)."""
        if self.job is not None and not self.job.done:
            show_info("ccount: a count is already running")
            return None
        try:
            layer = self.layer_picker.image_layer()  # refuses a prepared layer
            px = self._pixel_size(layer)
            axis = read_form(TrapAxisParams(), self.axis_fields).value()
            model_path = self._model_path()
            stack = layer_stack(layer)
        except InputError as exc:
            notify_error(exc, "count")
            return None
        self.counted_layer = layer
        layer.events.metadata.connect(self._on_metadata)  # once: napari drops repeats
        self.rows = []
        self._fill_table()
        self._dock_results()
        self.run_button.enabled = False
        self.cancel_button.enabled = True
        self.export_button.enabled = False
        self.status.value = f"counting {stack.shape[0]} frames…"
        self.job = start_job(
            run_count,
            stack,
            model_path,
            int(self.batch.value),
            int(self.tta.value),
            px,
            frame_interval_s(layer),
            trap_axis=axis,
            desc="count ions",
            on_done=self._on_done,
            on_finish=self._on_finish,
            on_partial=("on_rows", self._on_rows),
            on_phase=self._on_phase,
            on_error=lambda exc: setattr(self.status, "value", "failed"),
            bar=self.progress,
        )
        return self.job

    def cancel(self) -> None:
        if self.job is not None and not self.job.done:
            self.job.cancel()
            self.status.value = "cancelling after this batch…"

    def _on_phase(self, text: str) -> None:
        self.status.value = f"{text}…"

    def _on_rows(self, rows: list[dict[str, Any]]) -> None:
        """Rows of one batch, as soon as they are counted: appended to the table, the plot
        redrawn within :data:`PLOT_EVERY_MS`."""
        new = [_plain(r) for r in rows]
        if not self.rows:
            self.rows = new
            self._fill_table()  # the header gains the model's further species
        else:
            self.rows.extend(new)
            self._append_rows(new)
        if not self._plot_timer.isActive():
            self._plot_timer.start()
        self._on_step()

    def _on_finish(self) -> None:
        self.run_button.enabled = True
        self.cancel_button.enabled = False
        if self.job is not None and self.job.cancelled:
            self.status.value = f"cancelled: {len(self.rows)} frames counted"
            self._store()

    def _on_done(self, result: dict[str, Any]) -> None:
        streamed = len(self.rows)  # the same rows, batch by batch: the table holds them
        self.rows = result["rows"]
        self.device_label.value = result["device"]
        refused, reason = not_counted(self.rows)
        if refused == len(self.rows):
            self.status.value = f"no frame counted: {reason}"
            show_warning(f"count: no frame counted: {reason}")
        else:
            counted = len(self.rows) - refused
            self.status.value = (
                f"{counted} of {len(self.rows)} frames counted on {result['device']}"
            )
        self.band = result["band"]
        self.count_metadata = result["metadata"]
        self._store(result["model"])
        if streamed == len(self.rows):
            self.table.resizeColumnsToContents()
            self._refresh_plot()
            self._on_step()
        else:
            self._show()
        self._show_fit()

    def _store(self, model: str | None = None) -> None:
        """Keep the rows on the counted layer (``metadata["ccount"]["counts"]``)."""
        layer = self.counted_layer
        if layer is None or not self.rows:
            return
        meta = layer_meta(layer)
        meta["counts"] = list(self.rows)
        if model is not None:
            meta["count_model"] = model
        self.export_button.enabled = True

    # --- showing ------------------------------------------------------------------------

    def _dock_results(self) -> None:
        """Dock the table and the plot (once): both below the canvas, side by side, so the
        widgets' tabs keep the right column and the whole window fits a 1280 x 800 screen."""
        if self._docks:
            return
        self._docks = [
            self.viewer.window.add_dock_widget(
                self.table, name="ccount counts", area="bottom", tabify=False
            ),
            self.viewer.window.add_dock_widget(self.plot, name="ccount N(t)", area="bottom"),
        ]
        _share_width([self.table, self.plot], (0.45, 0.55))

    def _show(self) -> None:
        """Every row into the table, the plot and the canvas text."""
        if self.counted_layer is None:
            return
        self._fill_table()
        self._dock_results()
        self.counted_layer.events.metadata.connect(self._on_metadata)  # once: napari drops repeats
        self._refresh_plot()
        self._on_step()

    def _refresh_plot(self) -> None:
        self._plot_timer.stop()
        layer = self.counted_layer
        if layer is None:
            return
        interval = frame_interval_s(layer)
        frames = np.array([r["frame"] for r in self.rows], float)
        others = {
            name: [_num(r.get(k)) for r in self.rows] for name, k in other_counts(self.rows).items()
        }
        self.plot.set_data(
            frames * interval if interval else frames,
            [_num(r["count"]) for r in self.rows],
            [_num(r["uncertainty"]) for r in self.rows],
            time_label="time (s)" if interval else "frame",
            title=layer.name,
            others=others,
            band_label=self.band,
        )

    def _on_fit_box(self, checked: bool) -> None:
        if self.job is not None and not self.job.done:
            return  # a count running shows its fit when done
        if checked:
            self._show_fit()
        else:
            self._refresh_plot()  # redrawn without it

    def _show_fit(self) -> None:
        """The first-order kinetics fit of the Ca⁺ counts on the plot, when asked for (the
        core's ``fit_kinetics``: a few ms, on this thread); why not, when it cannot fit."""
        from ccount_core.analysis.kinetics import fit_kinetics, format_value, series_from_rows

        if not (self.plot.fit_box.isChecked() and self.rows):
            return
        try:
            fit = fit_kinetics(series_from_rows(self.rows))
        except InputError as exc:
            self.plot.show_fit(f"no kinetics fit: {exc}")
            return
        t = np.linspace(fit.series.times_s[0], fit.series.times_s[-1], 200)
        label = f"fit: k = {format_value(fit.k, fit.k_sigma)} s⁻¹"
        self.plot.show_fit(label, t, fit.curve(t)["Ca+"])

    def _on_metadata(self, event: Any) -> None:
        """The counted layer's metadata changed (the Overlay widget's match): refill."""
        if event.source is self.counted_layer:
            self._fill_table()

    def _fill_table(self) -> None:
        """The header (with a column per further species, and the Overlay widget's matches)
        and every row."""
        others = other_counts(self.rows)
        matches = layer_meta(self.counted_layer).get("matches", {}) if self.counted_layer else {}
        headers = [
            *TABLE_COLUMNS[:4],
            *(f"{name} count (± 1σ)" for name in others),
            *match_headers(matches),
            *TABLE_COLUMNS[4:],
        ]
        self.table.setColumnCount(len(headers))
        self.table.setHorizontalHeaderLabels(headers)
        for j, name in enumerate(others, start=4):
            self.table.horizontalHeaderItem(j).setToolTip(DARK_SIGMA.format(name=name))
        self.table.setRowCount(0)
        self._append_rows(self.rows)
        self.table.resizeColumnsToContents()

    def _append_rows(self, rows: list[dict[str, Any]]) -> None:
        """Add ``rows`` below the table's (the header already fits them)."""
        others = other_counts(self.rows)
        matches = layer_meta(self.counted_layer).get("matches", {}) if self.counted_layer else {}
        start = self.table.rowCount()
        self.table.setRowCount(start + len(rows))
        for i, row in enumerate(rows, start=start):
            ell = ""
            if row.get("ellipse_center_row") is not None:
                ell = (
                    f"({row['ellipse_center_row']:.0f}, {row['ellipse_center_col']:.0f}) "
                    f"{row['ellipse_semi_major']:.0f}×{row['ellipse_semi_minor']:.0f} px "
                    f"{row['ellipse_angle_deg']:.1f}°"
                )
            time = row.get("time_s")
            warning = row.get("warning") or ""
            cells = (
                str(row["frame"]),
                "" if time is None else f"{time:.1f}",
                f"{_num(row['count']):.1f}",
                f"{_num(row['uncertainty']):.1f}",
                *(
                    _with_sigma(row.get(k), row.get(other_uncertainty(n)), ".1f")
                    for n, k in others.items()
                ),
                *match_cells(matches, row["frame"]),
                ell,
                warning,
            )
            for j, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if warning:  # the whole row says why, in amber, however narrow the column
                    item.setToolTip(warning)
                    item.setForeground(QBrush(QColor(WARNED_COLOR)))
                self.table.setItem(i, j, item)

    def _go_to_row(self, row: int, _col: int = 0) -> None:
        layer = self.counted_layer
        if layer is None or layer.ndim != 3 or row >= len(self.rows):
            return
        step = list(self.viewer.dims.current_step)
        step[self.viewer.dims.ndim - layer.ndim] = self.rows[row]["frame"]
        self.viewer.dims.current_step = tuple(step)

    def _on_step(self, _event: Any = None) -> None:
        layer = self.counted_layer
        if layer is None or not self.rows or layer not in self.viewer.layers:
            return
        frame = current_frame_index(self.viewer, layer)
        row = next((r for r in self.rows if r["frame"] == frame), None)
        if row is None or row["count"] is None:
            self._show_overlay(f"frame {frame}: not counted")
            return
        dark = "".join(
            f", N({name}) = {_with_sigma(row.get(k), row.get(other_uncertainty(name)), '.0f')}"
            for name, k in other_counts(self.rows).items()
        )
        self._show_overlay(
            f"frame {frame}: N(Ca⁺) = {_with_sigma(row['count'], row['uncertainty'], '.0f')}{dark}"
        )
        interval = frame_interval_s(layer)
        self.plot.set_current(frame * interval if interval else frame)
        self.table.selectRow(self.rows.index(row))

    def _show_overlay(self, text: str) -> None:
        """``text`` in the canvas's top-left corner. Shown first when the widget opens, so
        the text's one-off GL set-up (shaders, glyph atlas: about half a second with Mesa's
        software OpenGL) happens then, not in the middle of a count."""
        overlay = text_overlay(self.viewer)
        if not overlay.visible:
            overlay.visible = True
            overlay.position = "top_left"
            overlay.font_size = 14
        overlay.text = text

    # --- export -------------------------------------------------------------------------

    def _export_dialog(self) -> None:
        from qtpy.QtWidgets import QFileDialog

        path, _ = QFileDialog.getSaveFileName(None, "Export counts", "counts.csv", "CSV (*.csv)")
        if path:
            self.export_csv(path)

    def export_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write the rows to ``path`` through a temporary file as ``ccount count`` writes
        them (``ccount_core.nn.counts_file``): the metadata line (the count's model and
        preparation, the layer as source), the column names, the rows; so ``ccount
        kinetics`` reads it."""
        target = Path(path)
        layer = self.counted_layer
        meta = {**self.count_metadata, "source": layer.name if layer is not None else ""}
        with atomic_path(target) as tmp, tmp.open("w", newline="") as fh:
            writer = CountsWriter(fh, other_counts(self.rows))
            writer.write_metadata(meta)
            writer.write_column_names()
            writer.write(self.rows)
        show_info(f"ccount: {len(self.rows)} counts written to {target}")
        return target
