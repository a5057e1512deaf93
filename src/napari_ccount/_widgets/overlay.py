"""Overlay widget: simulate a crystal with the counted (or typed) ion number and lay it on the
recording, green and additive, as in the insets of the paper's Figure 7.

Alignment: the simulation is rendered at the recording's pixel size and frame shape, turned so
that its trap axis lies along the recording's (from the crystal ellipse: its major axis when
the trap makes a prolate crystal, its minor axis when oblate), and shifted so that the trap
centre sits on the ellipse centre.
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass
from typing import Any, Literal

import napari
import numpy as np
from magicgui.widgets import Container, Label, PushButton

from ccount_core.errors import InputError
from ccount_core.nn.counts_file import other_counts
from ccount_core.simulation import (
    SPECIES,
    ImagingSettings,
    IonGroup,
    SimulationSettings,
    TrapSettings,
    get_species,
    simulate,
)
from napari_ccount._widgets._common import (
    ELLIPSE_LAYER,
    OVERLAY_OF,
    LayerPicker,
    corners_to_ellipse,
    current_frame_index,
    fit_dock,
    layer_meta,
    layer_stack,
    pixel_size_um,
    progress_bar,
    status_label,
    status_row,
)
from napari_ccount._widgets._forms import build_form, param, read_form
from napari_ccount._workers import Job, notify_error, start_job

OVERLAY_NAME = "simulated crystal overlay"
RESIDUAL_NAME = "match residual"
#: ``TrapSettings.from_lab_units``'s defaults (η, r0, z0, f_RF): the form starts at them.
_TRAP_DEFAULTS = {
    k: p.default
    for k, p in inspect.signature(TrapSettings.from_lab_units).parameters.items()
    if p.default is not inspect.Parameter.empty
}
#: Where ``ccount simulate`` TIFFs and the sample data record a parameter: (group, key).
FILE_KEYS = {
    "v_rf": ("trap", "v_rf_V"),
    "v_end": ("trap", "v_end_V"),
    "eta": ("trap", "eta"),
    "r0_um": ("trap", "r0_um"),
    "z0_um": ("trap", "z0_um"),
    "rf_mhz": ("trap", "rf_mhz"),
    "blur_um": ("imaging", "blur_um"),
    "dof_um": ("imaging", "dof_um"),
}


def dark_species() -> list[str]:
    """The species that can be dark ions: every known species but Ca+."""
    return [s for s in SPECIES if s != "Ca+"]


@dataclass(frozen=True)
class OverlayParams:
    """The overlay's simulation parameters in lab units, as its form shows them.

    Converted to the core's SI settings by :meth:`trap`, :meth:`ions`, :meth:`simulation` and
    :meth:`imaging`.
    """

    n_ca: int = param(
        200, "number of laser-cooled (fluorescing) Ca⁺ ions", label="Ca⁺ ions", min=1, max=5000
    )
    dark_species: str = param(
        "CaF+", "sympathetically cooled, non-fluorescing ions", choices=dark_species
    )
    n_dark: int = param(
        0, "number of dark ions of that species", label="dark ions", min=0, max=5000
    )
    v_rf: float = param(
        200.0,
        "RF amplitude on the rods (CCMD's V_rf), V",
        unit="V",
        label="V_RF",
        min=1.0,
        max=5000.0,
        step=1.0,
        decimals=2,
    )
    v_end: float = param(
        2.3375,
        "DC voltage on the endcaps, V",
        unit="V",
        label="V_end",
        min=0.0,
        max=500.0,
        step=0.05,
        decimals=4,
    )
    eta: float = param(
        _TRAP_DEFAULTS["eta"],
        "geometric factor of the endcap potential",
        label="η",
        min=0.0,
        max=1.0,
        step=0.001,
        decimals=3,
    )
    r0_um: float = param(
        _TRAP_DEFAULTS["r0_um"],
        "trap-centre to electrode distance, µm",
        unit="µm",
        min=1.0,
        max=1e5,
        step=10.0,
        decimals=2,
    )
    z0_um: float = param(
        _TRAP_DEFAULTS["z0_um"],
        "half the endcap separation, µm",
        unit="µm",
        min=1.0,
        max=1e5,
        step=10.0,
        decimals=2,
    )
    rf_mhz: float = param(
        _TRAP_DEFAULTS["rf_mhz"],
        "RF frequency, MHz",
        unit="MHz",
        label="f_RF",
        min=0.01,
        max=1000.0,
        step=0.01,
        decimals=2,
    )
    blur_um: float = param(
        5.0,
        "1/e radius of an in-focus ion's spot, µm",
        unit="µm",
        min=0.1,
        max=100.0,
        step=0.5,
        decimals=2,
    )
    dof_um: float = param(
        50.0,
        "defocus at which the spot doubles, µm",
        unit="µm",
        label="depth of field",
        min=1.0,
        max=1000.0,
        step=5.0,
        decimals=2,
    )
    mode: Literal["rf", "pseudo"] = param(
        "rf",
        "rf: time-dependent RF field with micromotion; pseudo: pseudopotential (faster)",
        label="field",
    )
    seed: int = param(
        1,
        "random seed of the simulation (equal inputs and seed: equal crystals)",
        min=0,
        max=2**31 - 1,
    )

    def trap_lab(self) -> dict[str, float]:
        """The trap's arguments to :meth:`TrapSettings.from_lab_units` (V, µm, MHz)."""
        return {k: getattr(self, k) for k in ("v_rf", "v_end", "eta", "r0_um", "z0_um", "rf_mhz")}

    def trap(self) -> TrapSettings:
        """The trap in SI units."""
        return TrapSettings.from_lab_units(**self.trap_lab())

    def ions(self) -> list[IonGroup]:
        """The Ca+ ions, then the dark ions when there are any."""
        groups = [IonGroup("Ca+", self.n_ca)]
        if self.n_dark > 0:
            groups.append(IonGroup(self.dark_species, self.n_dark))
        return groups

    def simulation(self) -> SimulationSettings:
        """The run's seed and field (RF or pseudopotential); the rest at the core's defaults."""
        return SimulationSettings(seed=self.seed, mode=self.mode)

    def imaging(
        self, pixel_um: float, shape: tuple[int, int], rotation_deg: float
    ) -> ImagingSettings:
        """The camera for a recording of ``shape`` (rows, cols) with ``pixel_um`` µm pixels,
        the trap axis at ``rotation_deg`` (deg, counter-clockwise as displayed)."""
        return ImagingSettings.from_lab_units(
            pixel_size_um=pixel_um,
            shape=shape,
            blur_um=self.blur_um,
            dof_um=self.dof_um,
            rotation_deg=rotation_deg,
        )


def trap_axis_angle(trap: TrapSettings, ellipse: Any) -> float:
    """Angle (deg, counter-clockwise as displayed) of the trap axis in the recording.

    A pure Ca+ crystal is prolate (long along the trap axis) when ω_z < ω_r, else oblate.
    """
    omega_r, omega_z = trap.angular_frequencies(get_species("Ca+"))
    angle = ellipse.angle_deg if omega_z <= omega_r else ellipse.angle_deg - 90.0
    return (angle + 90.0) % 180.0 - 90.0


def simulate_overlay(
    frame: np.ndarray,
    ellipse: Any | None,
    params: OverlayParams,
    pixel_um: float,
    progress: Any = None,
) -> dict[str, Any]:
    """Simulate and render a crystal to lay over ``frame`` ``(rows, cols)``; runs in a worker.

    Fits the ellipse on ``frame`` when ``ellipse`` is None. ``pixel_um``: the recording's
    pixel size (µm). Returns ``image`` ``(rows, cols)`` float32, ``centre`` (row, col; px of
    the recording where the trap centre lies), ``rotation_deg``, ``ellipse`` and ``settings``
    (lab units, for the layer metadata).
    """
    trap = params.trap()
    if ellipse is None:
        from ccount_core.image.preprocess import fit_ellipse

        ellipse = fit_ellipse(np.asarray(frame))
    rotation = trap_axis_angle(trap, ellipse)
    imaging = params.imaging(pixel_um, frame.shape, rotation)
    result = simulate(trap, params.ions(), params.simulation(), imaging, progress=progress)
    return {
        "image": np.asarray(result.image, np.float32),
        "centre": (ellipse.center_row, ellipse.center_col),
        "rotation_deg": rotation,
        "ellipse": ellipse,
        "settings": {
            **dataclasses.asdict(params),
            "pixel_size_um": pixel_um,
            "rotation_deg": rotation,
        },
    }


def run_match(
    frame: np.ndarray, params: OverlayParams, pixel_um: float, progress: Any = None
) -> Any:
    """:func:`ccount_core.analysis.match.match_frame` from the form's numbers (the start) and
    trap; the dark species is searched when the form has dark ions. Runs in a worker."""
    from ccount_core.analysis.match import MatchSettings, match_frame

    dark = params.dark_species if params.n_dark > 0 else None
    settings = MatchSettings(dark=dark, blur_um=params.blur_um, dof_um=params.dof_um)
    return match_frame(
        frame, pixel_um, params.trap(), params.n_ca, params.n_dark, settings, progress=progress
    )


class OverlayWidget(Container):
    """Ion numbers and trap settings in; a green, additive simulated crystal out."""

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self.layer_picker = LayerPicker(
            napari_viewer,
            tooltip="the recorded crystal to match",
            prepared_reason="the overlay is drawn on the recording's pixels",
        )
        self.param_fields = build_form(OverlayParams, OverlayParams())
        self.use_count = PushButton(text="Use counted number (current frame)")
        self.pixel = Label(label="pixel size (µm)", value="from the layer (1 when unknown)")
        self.run_button = PushButton(text="Simulate and overlay")
        self.match_button = PushButton(text="Match by simulation")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.status = status_label()
        self.progress = progress_bar()
        n_ca, *trap_and_optics, mode, seed = self.param_fields.values()
        self.extend(
            [
                self.layer_picker,
                n_ca,
                self.use_count,
                *trap_and_optics,
                self.pixel,
                mode,
                seed,
                self.run_button,
                self.match_button,
                self.cancel_button,
                status_row(self.status, self.progress),
            ]
        )
        fit_dock(self)
        self.layer_picker.changed.connect(self.fill_from_metadata)
        self.fill_from_metadata()
        self.use_count.changed.connect(self.use_counted_number)
        self.run_button.changed.connect(self.run)
        self.match_button.changed.connect(self.match)
        self.cancel_button.changed.connect(lambda: self.job is not None and self.job.cancel())
        self.job: Job | None = None
        self.overlay_layer: napari.layers.Image | None = None

    def params(self) -> OverlayParams:
        """The parameters the form shows."""
        return read_form(OverlayParams(), self.param_fields)

    def fill_from_metadata(self, *_: Any) -> bool:
        """Take trap and optics settings from the layer's file metadata when it has them.

        ``ccount simulate`` TIFFs and the sample data record them (:data:`FILE_KEYS`: ``trap``
        v_rf_V, v_end_V, eta, r0_um, z0_um, rf_mhz; ``imaging`` blur_um, dof_um); returns True
        when any was set.
        """
        layer = self.layer_picker.value
        if not isinstance(layer, napari.layers.Image):
            return False
        meta = layer.metadata.get("ccount", {}).get("file_metadata") or {}
        found = False
        for name, (group, key) in FILE_KEYS.items():
            value = (meta.get(group) or {}).get(key)
            if isinstance(value, int | float):
                self.param_fields[name].value = float(value)
                found = True
        return found

    def use_counted_number(self) -> None:
        """Fill the ion numbers from the counts stored on the layer (frame shown): Ca+, and
        the dark species and its number when the model counted one (``count_<species>``)."""
        try:
            layer = self.layer_picker.image_layer()
            rows = layer_meta(layer).get("counts")
            if not rows:
                raise InputError(f"layer '{layer.name}' has no counts yet: run Count ions first")
            frame = current_frame_index(self.viewer, layer)
            row = next((r for r in rows if r["frame"] == frame), None)
            if row is None or row["count"] is None:
                raise InputError(f"layer '{layer.name}': frame {frame} was not counted")
        except InputError as exc:
            notify_error(exc, "overlay")
            return
        self.param_fields["n_ca"].value = max(1, round(row["count"]))
        dark = [(s, row.get(k)) for s, k in other_counts(rows).items() if s in dark_species()]
        if dark and dark[0][1] is not None:
            species, n = dark[0]
            self.param_fields["dark_species"].value = species
            self.param_fields["n_dark"].value = max(0, round(n))

    def _ellipse_for(self, layer: napari.layers.Image) -> Any | None:
        """The crystal ellipse: the user's edited shape, else the last fit, else None."""
        shapes = self.viewer.layers[ELLIPSE_LAYER] if ELLIPSE_LAYER in self.viewer.layers else None
        if (
            shapes is not None
            and len(shapes.data)
            and shapes.metadata.get("ccount", {}).get("image") == layer.name
        ):
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
        params = self.params()
        self.pixel.value = f"{px:g}"
        self.status.value = f"simulating {params.n_ca} Ca⁺ + {params.n_dark} dark…"
        self.run_button.enabled = False
        self.job = start_job(
            simulate_overlay,
            frame,
            ellipse,
            params,
            px,
            desc="simulate crystal",
            on_done=lambda out: self._show(layer, out),
            on_finish=lambda: setattr(self.run_button, "enabled", True),
            on_error=lambda exc: setattr(self.status, "value", "failed"),
            bar=self.progress,
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
        meta = {
            "ccount": {
                OVERLAY_OF: image.name,
                "ellipse": out["ellipse"].to_dict(),
                **out["settings"],
            }
        }
        if self.overlay_layer is not None and self.overlay_layer in self.viewer.layers:
            self.viewer.layers.remove(self.overlay_layer)
        self.overlay_layer = self.viewer.add_image(
            sim,
            name=OVERLAY_NAME,
            colormap="green",
            blending="additive",
            scale=tuple(scale),
            translate=tuple(translate),
            metadata=meta,
            contrast_limits=(0.0, max(hi, 1e-6)),
            opacity=0.8,
        )
        s = out["settings"]
        self.status.value = (
            f"{s['n_ca']} Ca⁺ + {s['n_dark']} {s['dark_species']}, "
            f"trap axis at {out['rotation_deg']:.1f}°"
        )

    def match(self) -> Job | None:
        """Search the ion numbers from the form's (the start) in a worker; the best-match
        overlay and a residual layer appear when it is done."""
        if self.job is not None and not self.job.done:
            return None
        try:
            layer = self.layer_picker.image_layer()
            frame_index = current_frame_index(self.viewer, layer)
            frame = np.asarray(layer_stack(layer)[frame_index])
            params = self.params()
            params.trap().check_stable(get_species("Ca+"))
        except InputError as exc:
            notify_error(exc, "match")
            return None
        px = pixel_size_um(layer) or 1.0
        self.status.value = f"matching from {params.n_ca} Ca⁺ + {params.n_dark} dark…"
        self.run_button.enabled = self.match_button.enabled = False
        self.cancel_button.enabled = True

        def finish() -> None:
            self.run_button.enabled = self.match_button.enabled = True
            self.cancel_button.enabled = False

        self.job = start_job(
            run_match,
            frame,
            params,
            px,
            desc="match by simulation",
            on_done=lambda m: self._show_match(layer, frame_index, params, m),
            on_finish=finish,
            on_error=lambda exc: setattr(self.status, "value", "failed"),
            bar=self.progress,
        )
        return self.job

    def _show_match(
        self, image: napari.layers.Image, frame: int, params: OverlayParams, m: Any
    ) -> None:
        """The best match as the overlay, the residual (frame − match) as a layer, the numbers
        in the status line and in the layer's ``matches`` (by frame), which the Count
        widget's table shows beside the network's count."""
        scale, translate = tuple(image.scale[-2:]), tuple(image.translate[-2:])
        result = {
            "frame": frame,
            "n_ca": m.n_ca,
            "n_ca_interval": list(m.interval_ca),
            "n_dark": m.n_dark,
            "n_dark_interval": list(m.interval_dark) if m.interval_dark else None,
            "dark_species": params.dark_species if m.n_dark is not None else None,
            "residual_um": m.residual_um,
        }
        layer_meta(image).setdefault("matches", {})[frame] = result
        image.events.metadata()  # the Count widget's table shows the match
        meta = {"ccount": {OVERLAY_OF: image.name, "match": result}}
        for name, attr, data, kwargs in (
            (OVERLAY_NAME, "overlay_layer", m.image - np.median(m.image), {"colormap": "green"}),
            (RESIDUAL_NAME, "residual_layer", m.residual_image, {"colormap": "twilight"}),
        ):
            old = getattr(self, attr, None)
            if old is not None and old in self.viewer.layers:
                self.viewer.layers.remove(old)
            blending = "additive" if attr == "overlay_layer" else "translucent"
            new = self.viewer.add_image(
                data,
                name=name,
                scale=scale,
                translate=translate,
                metadata=meta,
                blending=blending,
                **kwargs,
            )
            setattr(self, attr, new)
        lo, hi = m.interval_ca
        text = f"matched {m.n_ca:.1f} Ca⁺ [{lo:.1f}, {hi:.1f}]"
        if m.n_dark is not None:
            dlo, dhi = m.interval_dark
            text += f", {m.n_dark:.1f} {params.dark_species} [{dlo:.1f}, {dhi:.1f}]"
        self.status.value = f"{text}; residual {m.residual_um:.2f} µm"
