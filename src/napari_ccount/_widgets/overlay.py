"""Overlay widget: simulate a crystal with the counted (or typed) ion number and lay it on the
recording, green and additive, as in the insets of the paper's Figure 7.

Alignment: the simulation is rendered at the recording's pixel size and frame shape, turned so
that its trap axis lies along the recording's (from the crystal ellipse: its major axis when
the trap makes a prolate crystal, its minor axis when oblate), and shifted so that the trap
centre sits on the ellipse centre.
"""

from __future__ import annotations

import inspect
from typing import Any

import napari
import numpy as np
from magicgui.widgets import ComboBox, Container, FloatSpinBox, Label, PushButton, SpinBox

from ccount_core.errors import InputError
from napari_ccount._widgets._common import (
    LayerPicker,
    current_frame_index,
    fit_dock,
    layer_meta,
    layer_stack,
    pixel_size_um,
    status_label,
)
from napari_ccount._workers import Job, notify_error, start_job

OVERLAY_NAME = "simulated crystal overlay"


def _trap_defaults() -> dict[str, float]:
    from ccount_core.simulation import TrapSettings

    sig = inspect.signature(TrapSettings.from_lab_units)
    return {k: p.default for k, p in sig.parameters.items()
            if p.default is not inspect.Parameter.empty}


def trap_axis_angle(trap: Any, ellipse: Any) -> float:
    """Angle (deg, counter-clockwise as displayed) of the trap axis in the recording.

    A pure Ca+ crystal is prolate (long along the trap axis) when ω_z < ω_r, else oblate.
    """
    from ccount_core.simulation import get_species

    omega_r, omega_z = trap.angular_frequencies(get_species("Ca+"))
    angle = ellipse.angle_deg if omega_z <= omega_r else ellipse.angle_deg - 90.0
    return (angle + 90.0) % 180.0 - 90.0


def simulate_overlay(
    frame: np.ndarray,
    ellipse: Any | None,
    n_ca: int,
    dark_species: str,
    n_dark: int,
    trap_lab: dict[str, float],
    blur_um: float,
    dof_um: float,
    pixel_um: float,
    seed: int,
    mode: str,
    progress: Any = None,
) -> dict[str, Any]:
    """Simulate and render a crystal to lay over ``frame`` ``(rows, cols)``; runs in a worker.

    Fits the ellipse on ``frame`` when ``ellipse`` is None. Returns ``image`` ``(rows, cols)``
    float32, ``centre`` (row, col; px of the recording where the trap centre lies),
    ``rotation_deg``, ``ellipse`` and ``settings`` (lab units, for the layer metadata).
    """
    from ccount_core.simulation import IonGroup, SimulationSettings, TrapSettings, simulate
    from ccount_core.simulation.render import ImagingSettings

    trap = TrapSettings.from_lab_units(**trap_lab)
    ions = [IonGroup("Ca+", int(n_ca))]
    if n_dark > 0:
        ions.append(IonGroup(dark_species, int(n_dark)))
    settings = SimulationSettings(seed=int(seed), mode=mode)  # type: ignore[arg-type]
    if ellipse is None:
        from ccount_core.image.preprocess import fit_ellipse

        ellipse = fit_ellipse(np.asarray(frame))
    rotation = trap_axis_angle(trap, ellipse)
    imaging = ImagingSettings.from_lab_units(pixel_size_um=pixel_um, shape=frame.shape,
                                             blur_um=blur_um, dof_um=dof_um,
                                             rotation_deg=rotation)
    result = simulate(trap, ions, settings, imaging, progress=progress)
    return {
        "image": np.asarray(result.image, np.float32),
        "centre": (ellipse.center_row, ellipse.center_col),
        "rotation_deg": rotation,
        "ellipse": ellipse,
        "settings": {"n_ca": int(n_ca), "dark_species": dark_species, "n_dark": int(n_dark),
                     **trap.to_lab_units(), "blur_um": blur_um, "dof_um": dof_um,
                     "pixel_size_um": pixel_um, "seed": int(seed), "mode": mode,
                     "rotation_deg": rotation},
    }


class OverlayWidget(Container):
    """Ion numbers and trap settings in; a green, additive simulated crystal out."""

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__(labels=True)
        from ccount_core.simulation import SPECIES

        self.viewer = napari_viewer
        d = _trap_defaults()
        self.layer_picker = LayerPicker(napari_viewer, tooltip="the recorded crystal to match")
        self.n_ca = SpinBox(label="Ca⁺ ions", value=200, min=1, max=5000,
                            tooltip="number of laser-cooled (fluorescing) Ca⁺ ions")
        self.use_count = PushButton(text="Use counted number (current frame)")
        self.dark_species = ComboBox(label="dark species",
                                     choices=[s for s in SPECIES if s != "Ca+"],
                                     tooltip="sympathetically cooled, non-fluorescing ions")
        self.n_dark = SpinBox(label="dark ions", value=0, min=0, max=5000,
                              tooltip="number of dark ions of that species")
        self.v_rf = FloatSpinBox(label="V_RF (V)", value=200.0, min=1.0, max=5000.0, step=1.0,
                                 tooltip="RF amplitude on the rods (CCMD's V_rf), V")
        self.v_end = FloatSpinBox(label="V_end (V)", min=0.0, max=500.0, step=0.05,
                                  tooltip="DC voltage on the endcaps, V")
        self.v_end.native.setDecimals(4)
        self.v_end.value = 2.3375
        self.eta = FloatSpinBox(label="η", value=float(d.get("eta", 0.244)), min=0.0, max=1.0,
                                step=0.001, tooltip="geometric factor of the endcap potential")
        self.r0 = FloatSpinBox(label="r0 (µm)", value=float(d.get("r0_um", 3500.0)), min=1.0,
                               max=1e5, step=10.0, tooltip="trap-centre to electrode distance, µm")
        self.z0 = FloatSpinBox(label="z0 (µm)", value=float(d.get("z0_um", 2750.0)), min=1.0,
                               max=1e5, step=10.0, tooltip="half the endcap separation, µm")
        self.rf = FloatSpinBox(label="f_RF (MHz)", value=float(d.get("rf_mhz", 3.85)),
                               min=0.01, max=1000.0, step=0.01, tooltip="RF frequency, MHz")
        self.blur = FloatSpinBox(label="blur (µm)", value=5.0, min=0.1, max=100.0, step=0.5,
                                 tooltip="1/e radius of an in-focus ion's spot, µm")
        self.dof = FloatSpinBox(label="depth of field (µm)", value=50.0, min=1.0, max=1000.0,
                                step=5.0, tooltip="defocus at which the spot doubles, µm")
        self.pixel = Label(label="pixel size (µm)", value="from the layer (1 when unknown)")
        self.mode = ComboBox(label="field", choices=["rf", "pseudo"], value="rf",
                             tooltip="rf: time-dependent RF field with micromotion; pseudo: "
                             "pseudopotential (faster)")
        self.seed = SpinBox(label="seed", value=1, min=0, max=2**31 - 1)
        self.run_button = PushButton(text="Simulate and overlay")
        self.status = status_label()
        self.extend([self.layer_picker, self.n_ca, self.use_count, self.dark_species,
                     self.n_dark, self.v_rf, self.v_end, self.eta, self.r0, self.z0, self.rf,
                     self.blur, self.dof, self.pixel, self.mode, self.seed, self.run_button,
                     self.status])
        fit_dock(self)
        self.layer_picker.changed.connect(self.fill_from_metadata)
        self.fill_from_metadata()
        self.use_count.changed.connect(self.use_counted_number)
        self.run_button.changed.connect(self.run)
        self.job: Job | None = None
        self.overlay_layer: napari.layers.Image | None = None

    def trap_lab(self) -> dict[str, float]:
        return {"v_rf": float(self.v_rf.value), "v_end": float(self.v_end.value),
                "eta": float(self.eta.value), "r0_um": float(self.r0.value),
                "z0_um": float(self.z0.value), "rf_mhz": float(self.rf.value)}

    def fill_from_metadata(self, *_: Any) -> bool:
        """Take trap and optics settings from the layer's file metadata when it has them.

        ``ccount simulate`` TIFFs and the sample data record ``trap`` (V_rf_V, v_end_V, eta,
        r0_um, z0_um, rf_mhz) and ``imaging`` (blur_um, dof_um); returns True when any was set.
        """
        layer = self.layer_picker.value
        if not isinstance(layer, napari.layers.Image):
            return False
        meta = layer.metadata.get("ccount", {}).get("file_metadata") or {}
        fields = {("trap", "v_rf_V"): self.v_rf, ("trap", "v_end_V"): self.v_end,
                  ("trap", "eta"): self.eta, ("trap", "r0_um"): self.r0,
                  ("trap", "z0_um"): self.z0, ("trap", "rf_mhz"): self.rf,
                  ("imaging", "blur_um"): self.blur, ("imaging", "dof_um"): self.dof}
        found = False
        for (group, key), widget in fields.items():
            value = (meta.get(group) or {}).get(key)
            if isinstance(value, int | float):
                widget.value = float(value)
                found = True
        return found

    def use_counted_number(self) -> None:
        """Fill the Ca+ number from the counts stored on the layer (frame shown)."""
        try:
            layer = self.layer_picker.image_layer()
            rows = layer_meta(layer).get("counts")
            if not rows:
                raise InputError(f"layer '{layer.name}' has no counts yet: run Count ions first")
            frame = current_frame_index(self.viewer, layer)
            row = next((r for r in rows if r["frame"] == frame), None)
            if row is None:
                raise InputError(f"layer '{layer.name}': frame {frame} was not counted")
        except InputError as exc:
            notify_error(exc, "overlay")
            return
        self.n_ca.value = max(1, round(row["count"]))

    def _ellipse_for(self, layer: napari.layers.Image) -> Any | None:
        """The crystal ellipse: the user's edited shape, else the last fit, else None."""
        from napari_ccount._widgets.prepare import ELLIPSE_LAYER, corners_to_ellipse

        shapes = self.viewer.layers[ELLIPSE_LAYER] if ELLIPSE_LAYER in self.viewer.layers \
            else None
        if shapes is not None and len(shapes.data) and \
                shapes.metadata.get("ccount", {}).get("image") == layer.name:
            return corners_to_ellipse(shapes.data[-1])
        stored = layer_meta(layer).get("ellipse")
        if stored:
            from ccount_core.image.preprocess import Ellipse

            return Ellipse.from_dict(stored)
        return None

    def run(self) -> Job | None:
        """Simulate in a worker; the overlay layer appears when it is done."""
        if self.job is not None and not self.job.done:
            return None
        try:
            layer = self.layer_picker.image_layer()
            frame = np.asarray(layer_stack(layer)[current_frame_index(self.viewer, layer)])
            ellipse = self._ellipse_for(layer)
        except InputError as exc:
            notify_error(exc, "overlay")
            return None
        px = pixel_size_um(layer) or 1.0
        self.pixel.value = f"{px:g}"
        self.status.value = f"simulating {self.n_ca.value} Ca⁺ + {self.n_dark.value} dark…"
        self.run_button.enabled = False
        self.job = start_job(
            simulate_overlay, frame, ellipse, int(self.n_ca.value),
            str(self.dark_species.value), int(self.n_dark.value), self.trap_lab(),
            float(self.blur.value), float(self.dof.value), px, int(self.seed.value),
            str(self.mode.value), desc="simulate crystal",
            on_done=lambda out: self._show(layer, out),
            on_finish=lambda: setattr(self.run_button, "enabled", True),
            on_error=lambda exc: setattr(self.status, "value", "failed"),
        )
        return self.job

    def _show(self, image: napari.layers.Image, out: dict[str, Any]) -> None:
        sim = out["image"]
        rows, cols = sim.shape
        sim_centre = np.array([(rows - 1) / 2.0, (cols - 1) / 2.0])  # the trap centre
        scale = np.asarray(image.scale[-2:], float)
        offset = np.asarray(image.translate[-2:], float)
        translate = offset + scale * (np.asarray(out["centre"]) - sim_centre)
        hi = float(np.percentile(sim, 99.9)) if sim.any() else 1.0
        meta = {"ccount": {"overlay_of": image.name, "ellipse": out["ellipse"].to_dict(),
                           **out["settings"]}}
        if self.overlay_layer is not None and self.overlay_layer in self.viewer.layers:
            self.viewer.layers.remove(self.overlay_layer)
        self.overlay_layer = self.viewer.add_image(
            sim, name=OVERLAY_NAME, colormap="green", blending="additive",
            scale=tuple(scale), translate=tuple(translate), metadata=meta,
            contrast_limits=(0.0, max(hi, 1e-6)), opacity=0.8,
        )
        s = out["settings"]
        self.status.value = (f"{s['n_ca']} Ca⁺ + {s['n_dark']} {s['dark_species']}, "
                             f"trap axis at {out['rotation_deg']:.1f}°")

