"""Overlay widget on the simulated sample crystal: a green, additive crystal laid on it."""

from __future__ import annotations

import numpy as np
import pytest

from ccount_core.image.preprocess import Ellipse
from ccount_core.simulation import TrapSettings
from napari_ccount._widgets.overlay import OVERLAY_NAME, OverlayWidget, trap_axis_angle

pytestmark = pytest.mark.gui


def _world_centroid(data: np.ndarray, scale, translate) -> np.ndarray:
    img = np.clip(np.asarray(data, float) - np.median(data), 0.0, None)
    rr, cc = np.indices(img.shape)
    centre = np.array([(rr * img).sum(), (cc * img).sum()]) / img.sum()
    return np.asarray(scale)[-2:] * centre + np.asarray(translate)[-2:]


def _principal_angle(data: np.ndarray) -> float:
    """Direction (deg, counter-clockwise as displayed) of the light's long axis."""
    img = np.clip(np.asarray(data, float) - np.median(data), 0.0, None)
    rr, cc = np.indices(img.shape)
    w = img / img.sum()
    r0, c0 = (rr * w).sum(), (cc * w).sum()
    crr = (w * (rr - r0) ** 2).sum()
    ccc = (w * (cc - c0) ** 2).sum()
    crc = (w * (rr - r0) * (cc - c0)).sum()
    evals, evecs = np.linalg.eigh([[crr, crc], [crc, ccc]])
    dr, dc = evecs[:, np.argmax(evals)]
    return float((np.degrees(np.arctan2(-dr, dc)) + 90) % 180 - 90)


def test_trap_axis_angle_follows_crystal_shape() -> None:
    ell = Ellipse(50.0, 60.0, 30.0, 10.0, 7.0)
    prolate = TrapSettings.from_lab_units(v_rf=200.0, v_end=2.0)  # weak axial confinement
    oblate = TrapSettings.from_lab_units(v_rf=60.0, v_end=60.0)  # strong axial confinement
    assert trap_axis_angle(prolate, ell) == pytest.approx(7.0)
    assert trap_axis_angle(oblate, ell) == pytest.approx(-83.0)


def test_overlay_is_aligned_green_and_additive(make_napari_viewer, qtbot, errors) -> None:
    viewer = make_napari_viewer()
    (image,) = viewer.open_sample("napari-ccount", "single_crystal")
    meta = image.metadata["ccount"]
    truth = meta["true_counts"]
    widget = OverlayWidget(viewer)
    viewer.window.add_dock_widget(widget)
    # The trap settings came from the sample's metadata.
    trap = meta["file_metadata"]["trap"]
    assert widget.params().v_end == pytest.approx(trap["v_end_V"])
    assert widget.params().v_rf == pytest.approx(trap["v_rf_V"])
    fields = widget.param_fields
    fields["n_ca"].value = truth["Ca+"][0]
    (dark,) = (s for s in truth if s != "Ca+")
    fields["dark_species"].value = dark
    fields["n_dark"].value = truth[dark][0]
    fields["mode"].value = "pseudo"
    job = widget.run()
    qtbot.waitUntil(lambda: job.done, timeout=120_000)
    assert job.error is None, job.error
    done, total = job.last_progress  # the simulator's progress reached the GUI
    assert done == total > 0
    overlay = viewer.layers[OVERLAY_NAME]
    assert overlay.colormap.name == "green"
    assert overlay.blending == "additive"
    np.testing.assert_allclose(overlay.scale, image.scale[-2:])
    made = overlay.metadata["ccount"]
    assert made["n_ca"] == truth["Ca+"][0] and made["overlay_of"] == image.name
    assert made["n_dark"] == truth[dark][0]
    # Centred on the recorded crystal within 3 px, and turned the same way.
    px = float(image.scale[-1])
    recorded = _world_centroid(image.data[0], image.scale, image.translate)
    simulated = _world_centroid(overlay.data, overlay.scale, overlay.translate)
    assert np.linalg.norm(simulated - recorded) < 3 * px
    assert abs(_principal_angle(overlay.data) - _principal_angle(image.data[0])) < 3.0
    assert errors == []


def test_use_counted_number_needs_counts(make_napari_viewer, errors) -> None:
    viewer = make_napari_viewer()
    layer = viewer.add_image(np.random.default_rng(0).random((3, 40, 50)), name="rec")
    widget = OverlayWidget(viewer)
    widget.use_counted_number()
    assert errors == ["overlay: layer 'rec' has no counts yet: run Count ions first"]
    layer.metadata["ccount"] = {
        "counts": [{"frame": f, "count": 100.0 + f, "uncertainty": 2.0} for f in range(3)]
    }
    viewer.dims.set_current_step(0, 2)
    widget.use_counted_number()
    assert widget.param_fields["n_ca"].value == 102


def test_use_counted_number_takes_the_counted_dark_species(make_napari_viewer, errors) -> None:
    viewer = make_napari_viewer()
    layer = viewer.add_image(np.random.default_rng(0).random((3, 40, 50)), name="rec")
    widget = OverlayWidget(viewer)
    assert widget.param_fields["dark_species"].value == "CaF+"  # the form's default
    layer.metadata["ccount"] = {
        "counts": [
            {"frame": 0, "count": 180.4, "uncertainty": 6.0, "count_ND3+": 41.6},
            {"frame": 1, "count": None, "uncertainty": None, "count_ND3+": None},
        ]
    }
    viewer.dims.set_current_step(0, 0)
    widget.use_counted_number()
    # rows of a model that counts ND3+ too (ccount_core.nn.counts_file.other_counts)
    assert widget.param_fields["n_ca"].value == 180
    assert widget.param_fields["dark_species"].value == "ND3+"
    assert widget.param_fields["n_dark"].value == 42
    assert widget.params().ions()[1].species.name == "ND3+"  # what is simulated
    viewer.dims.set_current_step(0, 1)  # a frame the model could not count
    widget.use_counted_number()
    assert errors == ["overlay: layer 'rec': frame 1 was not counted"]
    assert widget.param_fields["n_ca"].value == 180


def test_match_by_simulation_shows_the_match_and_its_residual(
    make_napari_viewer, qtbot, errors
) -> None:
    """A 40-ion crystal matched from a start of 46: the status and the layer's ``matches``
    hold a number within 3 ions of 40 and an interval around it; overlay and residual layers
    appear, the residual being the frame minus the match."""
    from ccount_core.simulation import IonGroup, SimulationSettings, simulate
    from ccount_core.simulation.render import ImagingSettings
    from napari_ccount._widgets.overlay import RESIDUAL_NAME

    trap = TrapSettings.from_lab_units(v_rf=200.0, v_end=2.3375)
    imaging = ImagingSettings.from_lab_units(pixel_size_um=1.5, shape=(96, 160))
    frame = simulate(trap, [IonGroup("Ca+", 40)], SimulationSettings(seed=11), imaging).image
    viewer = make_napari_viewer()
    image = viewer.add_image(frame * 1000 + 100, name="crystal", metadata={"ccount": {}})
    image.metadata["ccount"]["pixel_size_um"] = 1.5
    widget = OverlayWidget(viewer)
    widget.param_fields["n_ca"].value = 46
    widget.param_fields["v_end"].value = 2.3375
    job = widget.match()
    assert widget.cancel_button.enabled
    qtbot.waitUntil(lambda: job.done, timeout=120_000)
    assert job.error is None, job.error
    done, total = job.last_progress
    assert 0 < done <= total
    m = image.metadata["ccount"]["matches"][0]
    assert abs(m["n_ca"] - 40) <= 3
    assert m["n_ca_interval"][0] <= m["n_ca"] <= m["n_ca_interval"][1]
    assert "matched" in widget.status.value and not widget.cancel_button.enabled
    residual = viewer.layers[RESIDUAL_NAME].data
    best = viewer.layers[OVERLAY_NAME].data
    np.testing.assert_allclose(residual + best, image.data - np.median(job.result.image), atol=1e-2)
    assert errors == []
