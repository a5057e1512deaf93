"""A matplotlib canvas for napari's dock: ion number against time with its uncertainty band."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from qtpy.QtWidgets import QVBoxLayout, QWidget

# napari's default dark theme, so the plot sits in the viewer without a white box.
BACKGROUND = "#262930"
FOREGROUND = "#d6d0ce"
LINE = "#4aa3ff"
# further outputs of a model that also counts dark species, one colour each
OTHER_LINES = ("#ff7f50", "#7fd67f", "#d68fff")


class CountPlot(QWidget):
    """N(t) with a ±σ band and a marker at the frame the viewer shows; a model's further
    outputs (dark species) as dashed lines."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.figure = Figure(figsize=(5, 3), facecolor=BACKGROUND, layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.ax = self.figure.add_subplot(111)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.canvas)
        self.setMinimumHeight(140)
        self.times = np.zeros(0)
        self.counts = np.zeros(0)
        self.sigmas = np.zeros(0)
        self.others: dict[str, np.ndarray] = {}
        self._marker = None
        self._style()
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
        ax = self.ax
        ax.clear()
        self._style()
        ax.fill_between(
            self.times,
            self.counts - self.sigmas,
            self.counts + self.sigmas,
            color=LINE,
            alpha=0.3,
            linewidth=0,
            label=band_label,
        )
        ax.plot(self.times, self.counts, "o-", color=LINE, markersize=3, label="Ca⁺ count")
        for (name, values), color in zip(self.others.items(), OTHER_LINES, strict=False):
            ax.plot(self.times, values, "s--", color=color, markersize=3, label=f"{name} count")
        ax.set_xlabel(time_label)
        ax.set_ylabel("ions")
        if title:
            ax.set_title(title, fontsize=9)
        self._marker = ax.axvline(np.nan, color="#ffb000", linewidth=1)
        ax.legend(
            loc="best",
            fontsize=8,
            facecolor=BACKGROUND,
            labelcolor=FOREGROUND,
            edgecolor=FOREGROUND,
        )
        self.canvas.draw_idle()

    def set_current(self, time: float) -> None:
        """Move the marker to ``time`` (same unit as the x axis)."""
        if self._marker is None:
            return
        self._marker.set_xdata([time, time])
        self.canvas.draw_idle()

    def plotted(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The (times, counts, sigmas) now shown."""
        return self.times, self.counts, self.sigmas
