"""Counting widget on the simulated reaction series: worker, table, plot, metadata, CSV, cancel."""

from __future__ import annotations

import copy
import threading
from pathlib import Path

import numpy as np
import pytest

from ccount_core.nn.counts_file import read_counts
from napari_ccount._widgets._common import text_overlay
from napari_ccount._widgets.count import MODEL_FILE, CountWidget, run_count, short_batch

pytestmark = pytest.mark.gui


@pytest.fixture
def series(make_napari_viewer):
    """A viewer with the first 4 frames of the sample reaction series (metadata kept)."""
    viewer = make_napari_viewer()
    (sample,) = viewer.open_sample("napari-ccount", "reaction_series")
    meta = copy.deepcopy(sample.metadata)
    viewer.layers.remove(sample)
    layer = viewer.add_image(sample.data[:4], name="series", scale=sample.scale, metadata=meta)
    return viewer, layer


def _use_model(widget: CountWidget, path: Path) -> None:
    widget.model_choice.value = MODEL_FILE
    widget.model_file.value = path


def test_count_series_fills_table_plot_metadata_and_csv(
    series, model_file, qtbot, errors, tmp_path: Path, monkeypatch
) -> None:
    import ccount_core.nn.count

    # float32 on every CPU: the random test network magnifies bfloat16 rounding by far more
    # than the tolerance below, and the point here is that the GUI gives the core's numbers
    monkeypatch.setattr(ccount_core.nn.count, "native_bf16", lambda: False)
    viewer, layer = series
    n_frames = layer.data.shape[0]
    widget = CountWidget(viewer)
    viewer.window.add_dock_widget(widget)
    _use_model(widget, model_file)
    widget.batch.value = 2
    widget.tta.value = 1
    job = widget.run()
    assert widget.cancel_button.enabled and not widget.run_button.enabled
    qtbot.waitUntil(lambda: job.done, timeout=180_000)
    assert job.error is None, job.error
    assert errors == []
    assert job.last_progress == (n_frames + 1, n_frames + 1)  # loading the model is a step
    assert widget.progress.value == widget.progress.max == n_frames + 1  # the widget's own bar

    rows = layer.metadata["ccount"]["counts"]
    assert [r["frame"] for r in rows] == list(range(n_frames))
    # The numbers are the core's: the same call outside the GUI gives the same counts.
    meta = layer.metadata["ccount"]
    direct = run_count(
        np.asarray(layer.data),
        str(model_file),
        2,
        1,
        meta["pixel_size_um"],
        meta["frame_interval_s"],
    )["rows"]
    np.testing.assert_allclose([r["count"] for r in rows], [r["count"] for r in direct], rtol=1e-4)
    np.testing.assert_allclose(
        [r["uncertainty"] for r in rows], [r["uncertainty"] for r in direct], rtol=1e-3, atol=1e-3
    )
    assert all(r["uncertainty"] >= 0 for r in rows)
    # The ellipse of each frame is the core's fit, near the crystal's centre.
    assert all(abs(r["ellipse_center_row"] - layer.data.shape[1] / 2) < 20 for r in rows)
    assert widget.device_label.value == "cpu"

    assert widget.table.rowCount() == n_frames
    assert widget.table.item(1, 2).text() == f"{rows[1]['count']:.1f}"
    assert widget.table.item(1, 3).text() == f"{rows[1]['uncertainty']:.1f}"
    assert widget.table.horizontalHeaderItem(4).text() == "ND3+ count (± 1σ)"
    # the tiny model's card holds no ND3+ error: its ± is the spread of the test-time views
    nd3, sigma = rows[1]["count_ND3+"], rows[1]["uncertainty_ND3+"]
    assert sigma > 0
    assert widget.table.item(1, 4).text() == f"{nd3:.1f} ± {sigma:.1f}"
    times, counts, sigmas = widget.plot.plotted()
    interval = meta["frame_interval_s"]
    np.testing.assert_allclose(times, np.arange(n_frames) * interval)
    np.testing.assert_allclose(counts, [r["count"] for r in rows])
    np.testing.assert_allclose(sigmas, [r["uncertainty"] for r in rows])
    # the model's dark-species output is plotted beside the Ca+ count
    assert list(widget.plot.others) == ["ND3+"]
    np.testing.assert_allclose(widget.plot.others["ND3+"], [r["count_ND3+"] for r in rows])

    # The canvas shows the count of the frame on screen; a table click goes to its frame.
    viewer.dims.set_current_step(0, n_frames - 1)
    assert text_overlay(viewer).visible
    last = rows[-1]
    assert text_overlay(viewer).text == (
        f"frame {n_frames - 1}: N(Ca⁺) = {last['count']:.0f} "
        f"± {last['uncertainty']:.0f}, "
        f"N(ND3+) = {last['count_ND3+']:.0f} ± {last['uncertainty_ND3+']:.0f}"
    )
    widget._go_to_row(1)
    assert viewer.dims.current_step[0] == 1
    assert text_overlay(viewer).text.startswith(f"frame 1: N(Ca⁺) = {rows[1]['count']:.0f}")

    out = widget.export_csv(tmp_path / "counts.csv")
    meta, table = read_counts(out)  # a counts file as ccount count writes it
    assert meta["source"] == layer.name and meta["label_names"] == ["Ca+", "ND3+"]
    assert len(table) == n_frames
    # written to 0.01 ion, 0.01 px and 1 µs (counts_file.DECIMALS)
    assert float(table[2]["count"]) == pytest.approx(rows[2]["count"], abs=0.005)
    assert float(table[2]["time_s"]) == pytest.approx(2 * interval, abs=5e-7)
    assert float(table[2]["ellipse_semi_major"]) == pytest.approx(
        rows[2]["ellipse_semi_major"], abs=0.005
    )
    assert float(table[2]["count_ND3+"]) == pytest.approx(rows[2]["count_ND3+"], abs=0.005)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["counts.csv"]


def test_cancel_keeps_the_frames_counted_so_far(series, model_file, qtbot, errors) -> None:
    viewer, layer = series
    widget = CountWidget(viewer)
    _use_model(widget, model_file)
    widget.batch.value = 1
    widget.tta.value = 0
    job = widget.run()
    widget.cancel()
    qtbot.waitUntil(lambda: job.done, timeout=180_000)
    assert job.cancelled and errors == []
    counted = [r["frame"] for r in widget.rows]
    assert counted == list(range(len(counted))) and len(counted) < layer.data.shape[0]
    assert widget.status.value == f"cancelled: {len(counted)} frames counted"
    assert [r["frame"] for r in layer.metadata["ccount"].get("counts", [])] == counted
    assert widget.run_button.enabled and not widget.cancel_button.enabled


def test_count_click_returns_while_the_model_loads_and_cancel_acts_then(
    series, model_file, qtbot, errors, monkeypatch
) -> None:
    """The model is loaded in the worker (``run_count``), named as a phase, and a Cancel
    pressed meanwhile stops the job before any frame is counted."""
    import ccount_core.nn.ensemble

    real_load = ccount_core.nn.ensemble.load_counter
    started, release, loaded = threading.Event(), threading.Event(), threading.Event()

    def slow_load(*args, **kwargs):
        started.set()
        release.wait(60)
        counter = real_load(*args, **kwargs)
        loaded.set()
        return counter

    monkeypatch.setattr(ccount_core.nn.ensemble, "load_counter", slow_load)
    viewer, layer = series
    widget = CountWidget(viewer)
    _use_model(widget, model_file)
    widget.run_button.native.click()  # the click handler returns while the load waits
    assert not loaded.is_set()
    job = widget.job
    assert job is not None and not job.done
    qtbot.waitUntil(lambda: started.is_set() and job.phase == "loading model")
    assert widget.status.value == "loading model…"
    assert job.last_progress == (0, layer.data.shape[0] + 1)
    widget.cancel()
    release.set()
    qtbot.waitUntil(lambda: job.done, timeout=180_000)
    assert loaded.is_set() and job.cancelled and errors == []
    assert widget.rows == [] and "counts" not in layer.metadata["ccount"]


def test_progress_moves_on_a_three_frame_stack(series, model_file, qtbot, errors, monkeypatch):
    """Loading the model is a step, and a stack shorter than a batch still runs in several
    batches (``short_batch``): the bar shows values between 0 and its total."""
    from napari_ccount import _workers

    seen: list[tuple[int, int]] = []
    phases: list[str] = []
    on_progress, on_phase = _workers.Job._on_progress, _workers.Job._on_phase
    monkeypatch.setattr(
        _workers.Job,
        "_on_progress",
        lambda job, d, t: (seen.append((d, t)), on_progress(job, d, t)),
    )
    monkeypatch.setattr(
        _workers.Job, "_on_phase", lambda job, text: (phases.append(text), on_phase(job, text))
    )
    viewer, series_layer = series
    layer = viewer.add_image(series_layer.data[:3], name="three", scale=series_layer.scale)
    widget = CountWidget(viewer)
    widget.layer_picker.value = layer
    _use_model(widget, model_file)
    assert widget.batch.value == 8  # the default: one batch would hold the whole stack
    job = widget.run()
    qtbot.waitUntil(lambda: job.done, timeout=180_000)
    assert job.error is None and errors == []
    assert seen[0] == (0, 4) and seen[-1] == (4, 4)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert {d for d, t in seen if 0 < d < t} == {1, 2, 3}
    assert phases == ["loading model", "counting 3 frames"]
    assert [r["frame"] for r in layer.metadata["ccount"]["counts"]] == [0, 1, 2]


def test_short_batch_splits_a_short_stack_and_keeps_a_long_one() -> None:
    assert [short_batch(8, n) for n in (1, 3, 8, 20, 32, 100)] == [1, 1, 2, 5, 8, 8]
    assert short_batch(1, 100) == 1


def test_default_model_counts_or_says_why_not(series, qtbot, errors) -> None:
    from ccount_core.nn.model import default_model_path

    viewer, layer = series
    widget = CountWidget(viewer)
    widget.tta.value = 0
    job = widget.run()
    qtbot.waitUntil(lambda: job.done, timeout=180_000)
    if default_model_path().exists():
        assert job.error is None and errors == []
        truth = np.array(layer.metadata["ccount"]["true_counts"]["Ca+"][:4], float)
        counts = np.array([r["count"] for r in layer.metadata["ccount"]["counts"]])
        assert np.abs(counts - truth).mean() < 0.15 * truth.mean()
    else:
        assert len(errors) == 1 and errors[0].startswith("count ions: model:")
        assert "counts" not in layer.metadata["ccount"]


def test_shipped_ensemble_is_offered_and_counts_both_species(series, qtbot, errors) -> None:
    from ccount_core.nn.ensemble import shipped_models

    if "ensemble" not in shipped_models():
        pytest.skip("no shipped ensemble")
    viewer, layer = series
    widget = CountWidget(viewer)
    assert {"shipped: dark", "shipped: ensemble"} <= set(widget.model_choice.choices)
    widget.model_choice.value = "shipped: ensemble"
    assert not widget.model_file.visible
    widget.tta.value = 0
    job = widget.run()
    qtbot.waitUntil(lambda: job.done, timeout=180_000)
    assert job.error is None and errors == []
    rows = layer.metadata["ccount"]["counts"]
    truth = np.array(layer.metadata["ccount"]["true_counts"]["Ca+"][:4], float)
    counts = np.array([r["count"] for r in rows])
    assert np.abs(counts - truth).mean() < 0.15 * truth.mean()
    assert all(r["count_ND3+"] is not None for r in rows)  # the dark member's second output
    assert all(r["uncertainty_ND3+"] > 0 for r in rows)  # and its ND3+ error, from its card


def test_file_that_is_not_a_model_is_one_line_error(series, qtbot, errors, tmp_path: Path) -> None:
    viewer, layer = series
    widget = CountWidget(viewer)
    bogus = tmp_path / "weights.safetensors"
    bogus.write_bytes(b"not a model")
    bogus.with_suffix(".json").write_text("{not json")
    _use_model(widget, bogus)
    job = widget.run()
    qtbot.waitUntil(lambda: job.done, timeout=60_000)
    assert job.error is not None and widget.status.value == "failed"
    assert len(errors) == 1 and errors[0].startswith("count ions: model")
    assert "\n" not in errors[0]
    assert "counts" not in layer.metadata["ccount"]


def test_bad_model_file_and_prepared_layer_are_one_line_errors(
    series, errors, tmp_path: Path
) -> None:
    viewer, _ = series
    widget = CountWidget(viewer)
    bogus = tmp_path / "weights.safetensors"
    bogus.write_bytes(b"not a model")
    _use_model(widget, bogus)
    assert widget.run() is None
    assert errors == [
        "count: model file: the model card weights.json is missing beside the weights"
    ]
    (tmp_path / "notes.txt").write_text("x")
    widget.model_file.value = tmp_path / "notes.txt"
    assert widget.run() is None
    assert "is not a .safetensors model file" in errors[1]
    prepared = viewer.add_image(
        np.zeros((2, 32, 32)), name="p", metadata={"ccount": {"prepared_from": "series"}}
    )
    widget.layer_picker.value = prepared
    assert widget.run() is None
    assert "layer 'p' is already prepared; choose the recording 'series'" in errors[2]


def test_dark_species_count_shows_its_sigma_in_the_table_and_on_the_canvas(series) -> None:
    # Rows as count_stack gives them for a model that counts ND3+ too, each count with its
    # uncertainty (ccount_core.nn.count: ``uncertainty_<label>``); frame 3's card had none.
    viewer, layer = series
    widget = CountWidget(viewer)
    widget.counted_layer = layer
    widget.rows = [
        {
            "frame": f,
            "time_s": None,
            "count": 150.0 - f,
            "uncertainty": 6.2,
            "count_ND3+": 20.0 + f,
            "uncertainty_ND3+": 1.6 if f < 3 else None,
        }
        for f in range(4)
    ]
    widget._show()
    viewer.dims.set_current_step(0, 2)
    assert text_overlay(viewer).text == "frame 2: N(Ca⁺) = 148 ± 6, N(ND3+) = 22 ± 2"
    viewer.dims.set_current_step(0, 3)
    assert text_overlay(viewer).text == "frame 3: N(Ca⁺) = 147 ± 6, N(ND3+) = 23"
    header = widget.table.horizontalHeaderItem(4)
    assert header.text() == "ND3+ count (± 1σ)"
    assert "RMS error" in header.toolTip()
    assert widget.table.item(2, 4).text() == "22.0 ± 1.6"
    assert widget.table.item(3, 4).text() == "23.0"


def _fit_lines(widget: CountWidget) -> list:
    return [ln for ln in widget.plot.ax.lines if ln.get_label().startswith("fit: k =")]


def test_the_plot_shows_the_kinetics_fit_after_a_count(series) -> None:
    """After a count, N(t) holds the first-order fit of the Ca⁺ counts with k ± 1σ (the
    core's fit); unticking "fit kinetics" removes it; a series it cannot fit says why."""
    from ccount_core.analysis.kinetics import fit_kinetics, format_value, series_from_rows

    viewer, layer = series
    widget = CountWidget(viewer)
    widget.counted_layer = layer
    rng = np.random.default_rng(0)
    rows = [
        {
            "frame": f,
            "time_s": 10.0 * f,
            "count": 40.0 + 260.0 * np.exp(-0.1 * f) + rng.normal(0, 5),
            "uncertainty": 5.0,
            "warning": "",
        }
        for f in range(12)
    ]
    widget._on_done({"rows": rows, "device": "cpu", "model": "m", "band": "±1σ", "metadata": {}})
    core = fit_kinetics(series_from_rows(rows))
    assert widget.plot.fit_label == f"fit: k = {format_value(core.k, core.k_sigma)} s⁻¹"
    (line,) = _fit_lines(widget)
    t, n = line.get_data()
    assert t[0] == 0.0 and t[-1] == 110.0
    np.testing.assert_allclose(n, core.curve(t)["Ca+"])
    assert abs(core.k - 0.01) < 3 * core.k_sigma

    widget.plot.fit_box.setChecked(False)
    assert widget.plot.fit_label == "" and _fit_lines(widget) == []
    widget.plot.fit_box.setChecked(True)
    assert len(_fit_lines(widget)) == 1

    flat = [r | {"count": 200.0 + rng.normal(0, 5)} for r in rows]
    widget._on_done({"rows": flat, "device": "cpu", "model": "m", "band": "±1σ", "metadata": {}})
    assert widget.plot.fit_label.startswith("no kinetics fit: the series is flat")
    assert _fit_lines(widget) == []


def test_result_docks_exist_before_the_first_rows_and_rows_are_appended(series) -> None:
    """The table and plot are docked (empty, with headers) when the widget opens, so a count
    draws nothing heavy for the first time; a batch's rows are appended, the plot redrawn
    later (a timer)."""
    viewer, layer = series
    widget = CountWidget(viewer)
    assert len(widget._docks) == 2 and widget.table.rowCount() == 0
    assert widget.table.horizontalHeaderItem(2).text() == "Ca⁺ count"
    widget.counted_layer = layer
    batch = [{"frame": f, "time_s": None, "count": 150.0, "uncertainty": 6.0} for f in (0, 1)]
    widget._on_rows(batch)
    first = widget.table.item(0, 0)
    widget._on_rows([{**r, "frame": r["frame"] + 2} for r in batch])
    assert widget.table.rowCount() == 4 and widget.table.item(0, 0) is first  # not rebuilt
    assert widget._plot_timer.isActive() and len(widget.plot.plotted()[0]) == 0
    widget._plot_timer.timeout.emit()
    interval = layer.metadata["ccount"]["frame_interval_s"]
    np.testing.assert_allclose(widget.plot.plotted()[0], np.arange(4) * interval)


def test_overlay_match_appears_in_the_counts_table_beside_the_count(series) -> None:
    """The Overlay widget's match of frame 2 (Ca+ and ND3+, with intervals) fills the counts
    table's "matched" columns of that row when it finishes; the other rows stay empty."""
    from types import SimpleNamespace

    from napari_ccount._widgets.overlay import OverlayWidget

    viewer, layer = series
    widget = CountWidget(viewer)
    widget.counted_layer = layer
    widget.rows = [
        {"frame": f, "time_s": None, "count": 150.0 - f, "uncertainty": 6.2, "count_ND3+": 20.0}
        for f in range(4)
    ]
    widget._show()
    assert widget.table.columnCount() == 7  # nothing matched yet: no match columns
    overlay = OverlayWidget(viewer)
    overlay.param_fields["dark_species"].value = "ND3+"
    blank = np.zeros(layer.data.shape[1:], np.float32)
    m = SimpleNamespace(
        n_ca=147.34,
        interval_ca=(140.06, 154.62),
        n_dark=21.25,
        interval_dark=(18.0, 24.44),
        residual_um=0.8,
        image=blank,
        residual_image=blank,
    )
    overlay._show_match(layer, 2, overlay.params(), m)
    headers = [widget.table.horizontalHeaderItem(j).text() for j in range(9)]
    assert headers[2:9] == [
        "Ca⁺ count",
        "± (1σ)",
        "ND3+ count (± 1σ)",
        "matched Ca⁺",
        "[lo, hi]",
        "matched ND3+",
        "[lo, hi]",
    ]
    cells = [widget.table.item(2, j).text() for j in range(2, 9)]
    assert cells == ["148.0", "6.2", "20.0", "147.3", "[140.1, 154.6]", "21.2", "[18.0, 24.4]"]
    assert [widget.table.item(0, j).text() for j in range(5, 9)] == ["", "", "", ""]


def test_pixel_size_field_is_filled_from_the_layer_and_an_unknown_one_refuses_to_start(
    series, errors
) -> None:
    viewer, layer = series
    widget = CountWidget(viewer)
    assert widget.pixel_size.value == pytest.approx(layer.metadata["ccount"]["pixel_size_um"])
    bare = viewer.add_image(np.asarray(layer.data), name="no calibration")
    widget.layer_picker.value = bare
    assert widget.pixel_size.value == 0.0
    assert widget.run() is None
    assert errors == [
        "count: pixel size: unknown for layer 'no calibration' (its file does not say); "
        "enter the camera's µm per pixel in the object plane"
    ]
    assert "counts" not in bare.metadata.get("ccount", {})


def test_trap_axis_field_reaches_the_core_and_comes_from_the_file(
    series, model_file, qtbot, errors, monkeypatch
) -> None:
    import ccount_core.nn.count

    monkeypatch.setattr(ccount_core.nn.count, "native_bf16", lambda: False)
    viewer, layer = series
    # The recording turned a quarter turn: its trap axis is vertical.
    turned = np.ascontiguousarray(np.rot90(np.asarray(layer.data[:2]), axes=(1, 2)))
    meta = {"ccount": {**layer.metadata["ccount"], "trap_axis_deg": 90.0}}
    upright = viewer.add_image(turned, name="upright", metadata=meta)
    widget = CountWidget(viewer)
    widget.layer_picker.value = upright
    _use_model(widget, model_file)
    assert widget.axis_fields["trap_axis"].value == "degrees"
    assert not widget.axis_fields["trap_axis_deg"].native.isHidden()
    assert widget.axis_fields["trap_axis_deg"].value == 90.0
    widget.axis_fields["trap_axis"].value = "vertical"
    assert widget.axis_fields["trap_axis_deg"].native.isHidden()
    job = widget.run()
    qtbot.waitUntil(lambda: job.done, timeout=180_000)
    assert job.error is None and errors == []
    px = meta["ccount"]["pixel_size_um"]
    direct = run_count(turned, str(model_file), 8, 0, px, None, trap_axis=90.0)["rows"]
    np.testing.assert_allclose(
        [r["count"] for r in widget.rows], [r["count"] for r in direct], rtol=1e-4
    )
    # A trap axis stated far from both of the crystal's axes is noted in the row's warning.
    stated_off = run_count(turned, str(model_file), 8, 0, px, None, trap_axis=45.0)["rows"]
    assert all("from the stated trap axis (45°)" in r["warning"] for r in stated_off)


def test_a_run_that_counts_nothing_says_why(series, model_file, qtbot, errors, monkeypatch) -> None:
    shown: list[str] = []
    monkeypatch.setattr("napari_ccount._widgets.count.show_warning", shown.append)
    viewer, layer = series
    blank = viewer.add_image(np.zeros((3, 64, 64), np.float32), name="blank", scale=layer.scale)
    widget = CountWidget(viewer)
    widget.layer_picker.value = blank
    _use_model(widget, model_file)
    job = widget.run()
    qtbot.waitUntil(lambda: job.done, timeout=180_000)
    assert job.error is None and errors == []
    assert widget.status.value.startswith("no frame counted: ")
    assert "frames counted" not in widget.status.value
    reason = widget.rows[0]["warning"].removeprefix("not counted: ")
    assert widget.status.value == f"no frame counted: {reason}"
    assert shown == [f"count: no frame counted: {reason}"]


def test_warned_rows_show_their_warning_and_the_legend_names_the_band(series) -> None:
    viewer, layer = series
    widget = CountWidget(viewer)
    widget.counted_layer = layer
    note = "unlike the training images: light in the core 0.8 outside 1.07-1.3; use dark"
    widget.rows = [
        {"frame": f, "time_s": None, "count": 150.0, "uncertainty": 6.0, "warning": w}
        for f, w in enumerate(["", note])
    ]
    widget.band = "±1σ: 0.8 × validation RMS near N, ×3 if unlike training"
    widget._show()
    last = widget.table.columnCount() - 1
    assert widget.table.horizontalHeaderItem(last).text() == "warning"
    assert widget.table.item(1, last).text() == note
    assert widget.table.item(1, 2).toolTip() == note  # the count cell says it too
    assert widget.table.item(0, 2).toolTip() == ""
    assert widget.table.item(1, 2).foreground().color().name() != (
        widget.table.item(0, 2).foreground().color().name()
    )
    legend = [t.get_text() for t in widget.plot.ax.get_legend().get_texts()]
    assert widget.band in legend


def test_the_band_is_named_from_the_card(model_file) -> None:
    from ccount_core.nn.count import sigma_terms
    from ccount_core.nn.ensemble import load_counter

    tiny = load_counter(str(model_file))
    assert run_count(np.zeros((1, 32, 32)), str(model_file), 1, 2, 1.0, None)["band"] == (
        "±1σ: validation RMS near N ⊕ view spread"
    )
    tiny.card["uncertainty"] = {"scale": 0.8, "unlike_scale": 3.0}
    assert sigma_terms(tiny) == "±1σ: 0.8 × validation RMS near N, ×3 if unlike training"
    tiny.card["uncertainty"] = {
        "scale": 0.968,
        "unlike_scale": 6.03,
        "unlike_scales": {"band_light": 3.92, "tip_light": 3.92},
        "note_scales": {"halo": 1.5},
        "noise_n0": 0.0584,
    }
    assert sigma_terms(tiny) == (
        "±1σ: 0.97 × validation RMS near N, ×6 if unlike training, ×3.9 if band_light or "
        "tip_light unlike, ×1.5 if halo, ×√(1+(pixel noise/0.058)⁴)"
    )


def test_canvas_glyphs_are_rendered_before_the_first_count(series, qtbot) -> None:
    """The digits, "±" and "⁺" of a counted frame's canvas text are rendered after the
    widget's background import, not on the GUI thread in the middle of the first count."""
    from napari_ccount._widgets._common import canvas_text_font
    from napari_ccount._widgets.count import OVERLAY_GLYPHS
    from napari_ccount._workers import preload

    viewer, _layer = series
    widget = CountWidget(viewer)
    viewer.window.add_dock_widget(widget)
    font = canvas_text_font(viewer)
    assert font is not None  # napari's private vispy side changed: the warm-up does nothing
    qtbot.waitUntil(lambda: not preload().is_alive(), timeout=120_000)
    qtbot.waitUntil(lambda: not widget._glyphs.pending, timeout=60_000)
    wanted = {c for c in OVERLAY_GLYPHS if not c.isspace()}
    assert {"±", "⁺", "7"} <= wanted
    assert wanted <= set(font._glyphs)
