"""A matplotlib canvas for napari's dock: ion number against time with its uncertainty band."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from qtpy.QtWidgets import QCheckBox, QVBoxLayout, QWidget

# napari's default dark theme, so the plot sits in the viewer without a white box.
BACKGROUND = "#262930"
FOREGROUND = "#d6d0ce"
LINE = "#4aa3ff"
# further outputs of a model that also counts dark species, one colour each
OTHER_LINES = ("#ff7f50", "#7fd67f", "#d68fff")
FIT_LINE = "#ffffff"


class CountPlot(QWidget):
    """N(t) with a ±σ band and a marker at the frame the viewer shows; a model's further
    outputs (dark species) as dashed lines; a fitted curve when "fit kinetics" is ticked
    (its owner draws it with :meth:`show_fit`).

    Its artists are made once and updated in place, and the margins are fixed in pixels (no
    layout engine), so a redraw on the GUI thread costs little while rows stream in.
    """

    MARGINS_PX = (52, 10, 42, 24)  # left, right, bottom, top: room for ticks, labels, title

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.figure = Figure(figsize=(5, 3), facecolor=BACKGROUND)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.ax = self.figure.add_subplot(111)
        self.fit_box = QCheckBox("fit kinetics")
        self.fit_box.setChecked(True)
        self.fit_box.setToolTip(
            "after a count, fit N(t) = (N0 − c)·exp(−k t) + c to the Ca⁺ counts, weighted by "
            "their 1σ, and show the curve and k ± 1σ (s⁻¹); as ccount kinetics does"
        )
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.fit_box)
        layout.addWidget(self.canvas)
        self.setMinimumHeight(140)
        self.times = np.zeros(0)
        self.counts = np.zeros(0)
        self.sigmas = np.zeros(0)
        self.others: dict[str, np.ndarray] = {}
        self.fit_label = ""
        self._style()
        ax = self.ax
        (self._line,) = ax.plot([], [], "o-", color=LINE, markersize=3, label="Ca⁺ count")
        self._band = ax.fill_between([], [], [], color=LINE, alpha=0.3, linewidth=0, label="±1σ")
        self._other_lines: dict[str, Any] = {}
        self._marker = ax.axvline(np.nan, color="#ffb000", linewidth=1)
        (self._fit_line,) = ax.plot([], [], "-", color=FIT_LINE, linewidth=1.2, label="_fit")
        self._fit_note = ax.text(
            0.01, 0.02, "", transform=ax.transAxes, fontsize=7, color=FOREGROUND, wrap=True
        )
        ax.set_ylabel("ions")
        self._legend()
        self.canvas.mpl_connect("resize_event", self._fit_margins)
        self.canvas.draw_idle()

    def _style(self) -> None:
        ax = self.ax
        ax.set_facecolor(BACKGROUND)
        for spine in ax.spines.values():
            spine.set_color(FOREGROUND)
        ax.tick_params(colors=FOREGROUND)
        ax.xaxis.label.set_color(FOREGROUND)
        ax.yaxis.label.set_color(FOREGROUND)
        ax.title.set_color(FOREGROUND)

    def _legend(self) -> None:
        self.ax.legend(
            loc="best",
            fontsize=7,
            framealpha=0.6,
            facecolor=BACKGROUND,
            labelcolor=FOREGROUND,
            edgecolor=FOREGROUND,
        )

    def _fit_margins(self, _event: Any = None) -> None:
        width, height = self.canvas.get_width_height()
        left, right, bottom, top = self.MARGINS_PX
        if width > left + right and height > bottom + top:
            self.figure.subplots_adjust(
                left=left / width,
                right=1 - right / width,
                bottom=bottom / height,
                top=1 - top / height,
            )

    def set_data(
        self,
        times: np.ndarray,
        counts: np.ndarray,
        sigmas: np.ndarray,
        time_label: str = "time (s)",
        title: str = "",
        others: Mapping[str, np.ndarray] | None = None,
        band_label: str = "±1σ",
    ) -> None:
        """Plot ``counts`` ± ``sigmas`` (ions) against ``times`` (s, or frame numbers), and
        ``others``: species name -> counts (ions) of a model's further outputs.
        ``band_label``: the band's legend entry (what σ is made of)."""
        self.times = np.asarray(times, float)
        self.counts = np.asarray(counts, float)
        self.sigmas = np.nan_to_num(np.asarray(sigmas, float))
        self.others = {k: np.asarray(v, float) for k, v in (others or {}).items()}
        if self.fit_label:
            self._clear_fit()
        ax = self.ax
        self._line.set_data(self.times, self.counts)
        relabel = self._band.get_label() != band_label
        self._band.remove()
        low, high = self.counts - self.sigmas, self.counts + self.sigmas
        self._band = ax.fill_between(
            self.times, low, high, color=LINE, alpha=0.3, linewidth=0, label=band_label
        )
        if relabel or set(self.others) != set(self._other_lines):
            for line in self._other_lines.values():
                line.remove()
            self._other_lines = {
                name: ax.plot([], [], "s--", color=color, markersize=3, label=f"{name} count")[0]
                for name, color in zip(self.others, OTHER_LINES, strict=False)
            }
            self._legend()
        for name, line in self._other_lines.items():
            line.set_data(self.times, self.others[name])
        ax.set_xlabel(time_label)
        ax.set_title(title, fontsize=9)
        ax.relim()
        finite = np.isfinite(low) & np.isfinite(high)
        if finite.any():  # the band is no line: relim leaves it out
            ax.update_datalim(np.column_stack([self.times, low])[finite])
            ax.update_datalim(np.column_stack([self.times, high])[finite])
        ax.autoscale_view()
        self.canvas.draw_idle()

    def show_fit(
        self, label: str, times: np.ndarray | None = None, counts: np.ndarray | None = None
    ) -> None:
        """Add a fitted curve, ``counts`` (ions) against ``times`` (the x axis's unit), with
        ``label`` in the legend; without a curve, ``label`` alone in the corner (why there
        is no fit). ``set_data`` removes it."""
        if times is not None and counts is not None:
            self._fit_line.set_data(times, counts)
            self._fit_line.set_label(label)
            self._legend()
        else:
            self._fit_note.set_text(label)
        self.fit_label = label
        self.canvas.draw_idle()

    def _clear_fit(self) -> None:
        self._fit_line.set_data([], [])
        self._fit_line.set_label("_fit")
        self._fit_note.set_text("")
        self.fit_label = ""
        self._legend()

    def set_current(self, time: float) -> None:
        """Move the marker to ``time`` (same unit as the x axis); redrawn only when it moved."""
        if list(self._marker.get_xdata()) == [time, time]:
            return
        self._marker.set_xdata([time, time])
        self.canvas.draw_idle()

    def plotted(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The (times, counts, sigmas) now shown."""
        return self.times, self.counts, self.sigmas
