"""Preparation widget end to end on the simulated sample crystal: fit, edit, preview, prepare."""

from __future__ import annotations

from dataclasses import replace

import dask.array as da
import numpy as np
import pytest

from ccount_core.errors import InputError
from ccount_core.image.preprocess import (
    Ellipse,
    PreprocessConfig,
    fit_ellipse,
    frame_transform,
    prepare_frame,
)
from napari_ccount._widgets._common import (
    ELLIPSE_LAYER,
    corners_to_ellipse,
    ellipse_to_corners,
)
from napari_ccount._widgets.count import MODEL_FILE, CountWidget
from napari_ccount._widgets.overlay import OverlayWidget
from napari_ccount._widgets.prepare import PrepareWidget

pytestmark = pytest.mark.gui


def _card_preparation(model=None) -> PreprocessConfig:
    """The preparation in a model's card, read by the core (None: the default model)."""
    from ccount_core.nn.model import default_model_path, read_card

    card = read_card(default_model_path() if model is None else model)
    return PreprocessConfig.from_dict(card["preprocess"])


@pytest.mark.parametrize("angle", [-60.0, -5.0, 0.0, 12.5, 90.0])
def test_ellipse_shape_round_trip(angle: float) -> None:
    ell = Ellipse(40.0, 70.0, 30.0, 12.0, angle)
    back = corners_to_ellipse(ellipse_to_corners(ell))
    assert back.center_row == pytest.approx(40.0)
    assert back.center_col == pytest.approx(70.0)
    assert back.semi_major == pytest.approx(30.0)
    assert back.semi_minor == pytest.approx(12.0)
    assert (back.angle_deg - angle + 90) % 180 - 90 == pytest.approx(0.0, abs=1e-9)


def _crystal_centroid(frame: np.ndarray) -> np.ndarray:
    img = np.clip(frame - np.median(frame), 0, None)
    rr, cc = np.indices(img.shape)
    return np.array([(rr * img).sum(), (cc * img).sum()]) / img.sum()


def test_fit_edit_preview_and_lazy_prepare(make_napari_viewer, qtbot, errors) -> None:
    viewer = make_napari_viewer()
    (image,) = viewer.open_sample("napari-ccount", "single_crystal")
    widget = PrepareWidget(viewer)
    viewer.window.add_dock_widget(widget)
    frame = np.asarray(image.data[0], np.float32)

    job = widget.fit()
    qtbot.waitUntil(lambda: job.done, timeout=60_000)
    assert job.error is None
    fitted = widget.fitted
    # The core's fit, and the crystal where its light is (independent of the fit).
    assert fitted == fit_ellipse(frame)
    np.testing.assert_allclose(
        [fitted.center_row, fitted.center_col], _crystal_centroid(frame), atol=3.0
    )
    tilt = image.metadata["ccount"]["file_metadata"]["imaging"]["rotation_deg"]
    assert fitted.angle_deg == pytest.approx(tilt, abs=1.5)  # the camera's tilt of the trap axis
    shapes = viewer.layers[ELLIPSE_LAYER]
    assert list(shapes.shape_type) == ["ellipse"]
    np.testing.assert_allclose(shapes.scale, image.scale[-2:])
    drawn = widget.ellipse()
    assert drawn.center_col == pytest.approx(fitted.center_col, abs=1e-3)
    assert drawn.semi_major == pytest.approx(fitted.semi_major, rel=1e-4)

    # The user moves the ellipse 6 px right and widens it: the widget reads the edit back.
    corners = shapes.data[0].copy()
    centre = corners.mean(axis=0)
    corners = centre + (corners - centre) * 1.1 + np.array([0.0, 6.0])
    shapes.data = [corners]
    edited = widget.ellipse()
    assert edited.center_col == pytest.approx(fitted.center_col + 6.0, abs=1e-3)
    assert edited.semi_major == pytest.approx(1.1 * fitted.semi_major, rel=1e-4)
    shapes.data = [ellipse_to_corners(fitted)]

    widget.config_fields["median_size"].value = 1
    job = widget.preview()
    qtbot.waitUntil(lambda: job.done, timeout=60_000)
    assert job.error is None
    cfg = replace(_card_preparation(), median_size=1)  # the form starts at the model's
    px = image.metadata["ccount"]["pixel_size_um"]
    expected, _ = prepare_frame(frame, cfg, ellipse=widget.ellipse(), camera_pixel_size_um=px)
    preview = widget.preview_layer.data
    assert preview.shape == cfg.output_shape
    np.testing.assert_allclose(preview, expected, rtol=1e-5, atol=1e-6)
    # Trap axis vertical after preparation: the light spreads further along rows.
    rr, cc = np.nonzero(preview > 0)
    assert rr.std() > 1.3 * cc.std()
    # Shown right of the recording, at the model's pixel size.
    assert widget.preview_layer.translate[-1] > image.translate[-1] + image.data.shape[-1] * px
    np.testing.assert_allclose(widget.preview_layer.scale, [cfg.model_pixel_size_um] * 2)
    # Stretched to fit, a prepared pixel is the crystal's own: still shown at its true size.
    widget.config_fields["stretch_to_fit"].value = True
    job = widget.preview()
    qtbot.waitUntil(lambda: job.done, timeout=60_000)
    assert job.error is None
    zoom = frame_transform(widget.ellipse(), replace(cfg, stretch_to_fit=True), px).zoom
    assert zoom != pytest.approx(px / cfg.model_pixel_size_um)
    np.testing.assert_allclose(widget.preview_layer.scale, [px / zoom] * 2)
    widget.config_fields["stretch_to_fit"].value = False

    job = widget.prepare()
    qtbot.waitUntil(lambda: job.done, timeout=60_000)
    assert job.error is None
    prepared = widget.prepared_layer
    assert isinstance(prepared.data, da.Array)
    assert prepared.data.shape == (image.data.shape[0], *cfg.output_shape)
    np.testing.assert_allclose(np.asarray(prepared.data[0]), expected, rtol=1e-5, atol=1e-6)
    assert prepared.metadata["ccount"]["config"] == cfg.to_dict()
    assert prepared.metadata["ccount"]["ellipse"] == widget.ellipse().to_dict()

    # "fit every frame": each frame gets its own fitted ellipse, as prepare_frame alone does.
    widget.per_frame.value = True
    job = widget.prepare()
    qtbot.waitUntil(lambda: job.done, timeout=60_000)
    own, _ = prepare_frame(frame, cfg, camera_pixel_size_um=px)
    np.testing.assert_allclose(np.asarray(widget.prepared_layer.data[0]), own, rtol=1e-5, atol=1e-6)
    assert widget.prepared_layer.metadata["ccount"]["ellipse"] is None
    assert len(viewer.layers) == 4  # recording, ellipse, preview, one prepared stack
    assert errors == []


def test_fit_follows_the_preparations_fit_options(make_napari_viewer, qtbot) -> None:
    """A model card with ``fit_footprint`` gets that fit from the Fit button, as its counts do."""
    viewer = make_napari_viewer()
    (image,) = viewer.open_sample("napari-ccount", "single_crystal")
    widget = PrepareWidget(viewer)
    widget.base_config = replace(widget.base_config, fit_footprint=True)
    frame = np.asarray(image.data[0], np.float32)
    job = widget.fit()
    qtbot.waitUntil(lambda: job.done, timeout=60_000)
    assert job.error is None
    assert widget.fitted.semi_minor == fit_ellipse(frame, footprint=True).semi_minor
    assert widget.fitted.semi_minor != fit_ellipse(frame).semi_minor


def test_config_fields_have_units_and_tooltips(make_napari_viewer) -> None:
    widget = PrepareWidget(make_napari_viewer())
    fields = widget.config_fields
    assert fields["mask_margin_um"].label == "mask margin (µm)"
    assert fields["model_pixel_size_um"].label == "model pixel size (µm)"
    assert "outer shell" in fields["mask_margin_um"].tooltip
    assert "plane" in fields["background"].tooltip
    assert list(fields["background"].choices) == ["none", "constant", "plane"]
    fields["output_shape"].value = "256, 160"
    fields["mask"].value = False
    assert widget.config() == replace(_card_preparation(), output_shape=(256, 160), mask=False)


def test_bad_layer_and_bad_field_are_one_line_errors(make_napari_viewer, errors) -> None:
    viewer = make_napari_viewer()
    viewer.add_points([[1, 2]], name="points")
    viewer.add_image(np.zeros((20, 30, 3), np.uint8), name="colour", rgb=True)
    widget = PrepareWidget(viewer)
    widget.layer_picker.value = viewer.layers["points"]
    assert widget.fit() is None
    widget.layer_picker.value = viewer.layers["colour"]
    assert widget.fit() is None
    widget.config_fields["output_shape"].value = "320, x"
    viewer.add_image(np.ones((40, 40), np.float32), name="flat")
    widget.layer_picker.value = viewer.layers["flat"]
    assert widget.preview() is None
    assert len(errors) == 3
    assert "'points' is a Points layer, not an image" in errors[0]
    assert "'colour' is RGB" in errors[1]
    assert "output_shape" in errors[2]
    assert all("\n" not in e for e in errors)


def test_form_starts_at_the_chosen_models_preparation(
    make_napari_viewer, model_file, errors, tmp_path
) -> None:
    widget = PrepareWidget(make_napari_viewer())
    default = _card_preparation()
    # The default model's preparation (6 µm, 96 × 48), not PreprocessConfig()'s (3 µm).
    assert widget.config() == default != PreprocessConfig()
    assert widget.model_label.value == "preparation of model 'default'"
    widget.config_fields["median_size"].value = 5
    assert widget.model_label.value == "preparation of model 'default', edited"
    widget.config_fields["median_size"].value = default.median_size
    assert widget.model_label.value == "preparation of model 'default'"

    # A model file: its card's preparation.
    assert MODEL_FILE in widget.model_choice.choices
    widget.model_choice.value = MODEL_FILE
    assert not widget.model_file.native.isHidden()  # shown (the viewer itself is not)
    widget.model_file.value = model_file
    assert widget.config() == _card_preparation(model_file)
    assert widget.model_label.value == f"preparation of model '{model_file.name}'"

    # A file without a card: one line, and the form keeps the last model's preparation.
    lone = tmp_path / "lone.safetensors"
    lone.write_bytes(b"x")
    widget.model_file.value = lone
    assert widget.config() == _card_preparation(model_file)
    assert len(errors) == 1 and errors[0].startswith("prepare: model: card ")
    assert "lone.json is missing" in errors[0] and "\n" not in errors[0]

    if "shipped: dark" in widget.model_choice.choices:  # stretched to fit, as its card says
        widget.model_choice.value = "shipped: dark"
        assert widget.config().stretch_to_fit
        assert widget.model_label.value == "preparation of model 'dark'"


def test_after_prepare_count_and_overlay_take_the_recording(
    make_napari_viewer, qtbot, errors
) -> None:
    viewer = make_napari_viewer()
    (image,) = viewer.open_sample("napari-ccount", "single_crystal")
    prepare = PrepareWidget(viewer)
    job = prepare.preview()
    qtbot.waitUntil(lambda: job.done, timeout=60_000)
    prepare.per_frame.value = True
    job = prepare.prepare()
    qtbot.waitUntil(lambda: job.done, timeout=60_000)
    assert job.error is None and errors == []
    prepared = viewer.layers[f"{image.name} prepared"]
    assert viewer.layers[-1] is prepared

    count, overlay = CountWidget(viewer), OverlayWidget(viewer)
    assert count.layer_picker.value is image
    assert overlay.layer_picker.value is image
    assert prepare.layer_picker.value is image

    # Picking the prepared layer and clicking is refused in one line naming the recording.
    count.layer_picker.value = prepared
    count.run_button.native.click()
    overlay.layer_picker.value = prepare.preview_layer
    overlay.run_button.native.click()
    assert count.job is None and overlay.job is None
    assert errors == [
        f"count: image: layer '{prepared.name}' is already prepared; choose the recording "
        f"'{image.name}' (the model prepares frames itself)",
        f"overlay: image: layer 'prepared preview' is already prepared; choose the recording "
        f"'{image.name}' (the overlay is drawn on the recording's pixels)",
    ]


def test_trap_axis_field_prepares_a_turned_recording_as_the_core_does(
    make_napari_viewer, qtbot, errors
) -> None:
    viewer = make_napari_viewer()
    (image,) = viewer.open_sample("napari-ccount", "single_crystal")
    frame = np.asarray(image.data[0], np.float32)
    turned = np.ascontiguousarray(np.rot90(frame))  # trap axis now near vertical
    meta = {"ccount": dict(image.metadata["ccount"])}
    layer = viewer.add_image(turned[None], name="upright", scale=image.scale, metadata=meta)
    widget = PrepareWidget(viewer)
    widget.layer_picker.value = layer
    assert widget.axis_fields["trap_axis"].value == "auto"
    assert widget.axis_fields["trap_axis_deg"].native.isHidden()
    widget.axis_fields["trap_axis"].value = "degrees"
    widget.axis_fields["trap_axis_deg"].value = 90.0
    assert widget.trap_axis() == 90.0
    job = widget.fit()
    qtbot.waitUntil(lambda: job.done, timeout=60_000)
    job = widget.preview()
    qtbot.waitUntil(lambda: job.done, timeout=60_000)
    assert job.error is None and errors == []
    px = meta["ccount"]["pixel_size_um"]
    want, _ = prepare_frame(
        turned, widget.config(), ellipse=widget.ellipse(), camera_pixel_size_um=px, trap_axis=90.0
    )
    np.testing.assert_allclose(widget.preview_layer.data, want, rtol=1e-5, atol=1e-6)
    # The same crystal shown with its axis horizontal prepares alike, up to a half turn (a
    # stated angle picks the axis, not its direction); a wrong stated axis is refused here.
    upright, _ = prepare_frame(frame, widget.config(), camera_pixel_size_um=px, trap_axis=0.0)
    alike = max(np.corrcoef(u.ravel(), want.ravel())[0, 1] for u in (upright, upright[::-1, ::-1]))
    assert alike > 0.9
    with pytest.raises(InputError, match="does not fit"):
        prepare_frame(turned, widget.config(), camera_pixel_size_um=px, trap_axis=0.0)
