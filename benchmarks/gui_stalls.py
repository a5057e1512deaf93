"""How long the napari GUI thread stalls during a first count (issue 26: "never block").

In a fresh process (run it under Xvfb: ``xvfb-run -a -s "-screen 0 1280x1024x24"``) this opens
a napari viewer, adds the first frames of the sample reaction series, docks the Count widget
(which starts importing torch and loading the pipeline's kernels in the background, then renders
the canvas text's glyphs), waits for both, as a user reading the form does, then clicks "Count
ions", with a 10 ms QTimer ticking on the GUI thread throughout. It prints the longest gap
between ticks (what a user feels as a frozen window) while the import ran and during the count,
the next longest with what the widget was doing then, and the time from the click until the
worker finished.

    xvfb-run -a -s "-screen 0 1280x1024x24" python benchmarks/gui_stalls.py [--model dark]
"""

from __future__ import annotations

import argparse
import copy
import itertools
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=8, help="frames of the sample to count")
    parser.add_argument("--model", default="default", help="default, dark or ensemble")
    parser.add_argument("--tick-ms", type=int, default=10, help="timer interval (ms)")
    args = parser.parse_args()

    t0 = time.perf_counter()
    import napari
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    from napari_ccount._widgets.count import SHIPPED_PREFIX, CountWidget
    from napari_ccount._workers import preload

    viewer = napari.Viewer(show=True)
    (sample,) = viewer.open_sample("napari-ccount", "reaction_series")
    meta = copy.deepcopy(sample.metadata)
    viewer.layers.remove(sample)
    viewer.add_image(sample.data[: args.frames], name="series", scale=sample.scale, metadata=meta)
    t_widget = time.perf_counter()
    widget = CountWidget(viewer)
    viewer.window.add_dock_widget(widget, name="ccount count")
    widget_s = time.perf_counter() - t_widget
    if args.model != "default":
        widget.model_choice.value = SHIPPED_PREFIX + args.model
    app = QApplication.instance()
    settle = time.perf_counter() + 1.0
    while time.perf_counter() < settle:  # let the window draw before timing
        app.processEvents()
    print(
        f"viewer + sample ready in {t_widget - t0:.2f} s; widget created and docked in "
        f"{widget_s:.3f} s (GUI thread, before the click)"
    )

    ticks: list[tuple[float, str]] = []

    def tick() -> None:
        job = widget.job
        ticks.append((time.perf_counter(), job.phase if job is not None else "before click"))

    timer = QTimer()
    timer.setInterval(args.tick_ms)
    timer.timeout.connect(tick)
    timer.start()
    t_wait = time.perf_counter()
    loading = preload()  # the background import the widget started
    while loading.is_alive() or time.perf_counter() < t_wait + 0.3:
        app.processEvents()
        time.sleep(0.001)
    t_loaded = time.perf_counter()
    while widget._glyphs.pending:  # then the canvas text's glyphs, one per GUI-timer tick
        app.processEvents()
        time.sleep(0.001)
    glyphs_s = time.perf_counter() - t_loaded
    before = [t for t, _ in ticks]
    stall = max(b - a for a, b in itertools.pairwise(before))
    print(
        f"background import finished {t_loaded - t_wait:.2f} s after the widget opened, the "
        f"canvas text's glyphs {glyphs_s:.2f} s later; longest GUI stall meanwhile {stall:.3f} s"
    )
    t_click = time.perf_counter()
    widget.run_button.native.click()
    while widget.job is None or not widget.job.done:
        app.processEvents()
        time.sleep(0.001)
    t_end = time.perf_counter()
    timer.stop()
    if widget.job.error is not None:
        raise SystemExit(f"the count failed: {widget.job.error}")

    during = [(t, p) for t, p in ticks if t >= t_click]
    times = [t_click] + [t for t, _ in during] + [t_end]
    phases = ["click"] + [p for _, p in during] + ["done"]
    gaps = sorted(
        ((times[i + 1] - times[i], phases[i + 1]) for i in range(len(times) - 1)), reverse=True
    )
    print(
        f"count of {args.frames} frames with {args.model!r}: {t_end - t_click:.2f} s from the "
        f"click until the worker finished, {len(during)} ticks of {args.tick_ms} ms"
    )
    print(f"longest GUI stall: {gaps[0][0]:.3f} s (ending in phase {gaps[0][1]!r})")
    print("next: " + ", ".join(f"{g:.3f} s ({p!r})" for g, p in gaps[1:6]))
    print(
        f"stalls over 0.1 s: {sum(g > 0.1 for g, _ in gaps)}, their total "
        f"{sum(g for g, _ in gaps if g > 0.1):.2f} s"
    )
    viewer.close()


if __name__ == "__main__":
    main()
