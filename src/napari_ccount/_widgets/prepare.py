"""Preparation widget: fit the crystal's ellipse, let the user edit it, preview and prepare.

The fitted :class:`~ccount_core.image.preprocess.Ellipse` is drawn as an editable ellipse in a
Shapes layer ("crystal ellipse") on the image's pixel grid; the widget reads the edited shape
back. The preprocessing form is built from :class:`PreprocessConfig`'s fields and their
metadata (unit, help) and starts at the chosen model's preparation (its card's ``preprocess``),
so the preview is what that network sees. The prepared stack is a new Image layer computed
lazily (one frame when napari shows it), placed to the right of the recording.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dask.array as da
import napari
import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, Label, PushButton

from ccount_core.errors import InputError
from napari_ccount._widgets._common import (
    ELLIPSE_LAYER,
    PREPARED_FROM,
    LayerPicker,
    TrapAxisParams,
    corners_to_ellipse,
    current_frame_index,
    ellipse_to_corners,
    fit_dock,
    layer_meta,
    layer_stack,
    link_trap_axis,
    pixel_size_um,
    progress_bar,
    status_label,
    status_row,
    use_layer_trap_axis,
)
from napari_ccount._widgets._forms import build_form, read_form
from napari_ccount._widgets.count import DEFAULT_MODEL, MODEL_FILE, SHIPPED_PREFIX
from napari_ccount._workers import Job, notify_error, start_job

GAP_PX = 20  # gap between the recording and the prepared images placed to its right


# --- the model's preparation -----------------------------------------------------------------


def model_preparation(model: str | None) -> Any:
    """The PreprocessConfig the model prepares frames with: its card's ``preprocess``.

    ``model``: None (the default model), a shipped name (``dark``, ``ensemble``) or the path of
    a ``.safetensors`` model (its ``.json`` card beside it) or of a card. Reads the JSON card
    only (no torch import, so it is quick enough for the GUI thread); InputError when the card
    is missing, unreadable or holds no valid preparation.
    """
    from ccount_core.image.preprocess import PreprocessConfig
    from ccount_core.nn.ensemble import model_location

    card_path = model_location(model).with_suffix(".json")
    if not card_path.is_file():
        raise InputError(f"model: card {card_path} is missing")
    try:
        card = json.loads(card_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"model: card {card_path} is not JSON ({exc})") from exc
    if not isinstance(card, dict) or not isinstance(card.get("preprocess"), dict):
        raise InputError(f"model: card {card_path} holds no preprocessing ('preprocess')")
    return PreprocessConfig.from_dict(card["preprocess"])


# --- the core calls, run in workers -----------------------------------------------------------


def fit_frame(frame: Any, config: Any, progress: Any = None) -> Any:
    """Fit the crystal's ellipse in one frame ``(rows, cols)`` as a preparation with
    ``config`` fits it; returns an Ellipse."""
    from ccount_core.image.preprocess import fit_crystal

    if progress is not None:
        progress(0, 1)
    ellipse = fit_crystal(np.asarray(frame), config)
    if progress is not None:
        progress(1, 1)
    return ellipse


def preview_frame(
    frame: Any,
    config: Any,
    ellipse: Any,
    pixel_um: float | None,
    trap_axis: str | float = "auto",
    progress: Any = None,
) -> tuple[np.ndarray, Any]:
    """Prepare one frame ``(rows, cols)`` with ``config`` and the recording's ``trap_axis``;
    returns (prepared image, ellipse)."""
    from ccount_core.image.preprocess import prepare_frame

    if progress is not None:
        progress(0, 1)
    out = prepare_frame(
        np.asarray(frame),
        config,
        ellipse=ellipse,
        camera_pixel_size_um=pixel_um,
        trap_axis=trap_axis,
    )
    if progress is not None:
        progress(1, 1)
    return out


def lazy_prepared(
    stack: Any,
    config: Any,
    ellipse: Any | None,
    pixel_um: float | None,
    trap_axis: str | float = "auto",
) -> tuple[da.Array, np.ndarray]:
    """The prepared stack as a lazy dask array (:func:`prepare_stack` on dask) and its frame 0.

    ``ellipse`` None fits every frame's own ellipse; otherwise it is used for every frame.
    Frames are prepared when napari shows them; frame 0 is prepared here for contrast limits.
    """
    from ccount_core.image.preprocess import prepare_stack

    src = stack if isinstance(stack, da.Array) else da.from_array(stack)
    src = src.rechunk((1, *src.shape[1:]))
    out = prepare_stack(
        src, config, ellipses=ellipse, camera_pixel_size_um=pixel_um, trap_axis=trap_axis
    )
    return out.images, np.asarray(out.images[0])


# --- the widget -----------------------------------------------------------------------------


class PrepareWidget(Container):
    """Fit and edit the crystal ellipse, set the preprocessing, preview, prepare lazily."""

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__(labels=True)
        from ccount_core.image.preprocess import PreprocessConfig

        self.viewer = napari_viewer
        self.base_config = PreprocessConfig()
        self.model_config: Any = None  # the chosen model's preparation, once read
        self.model_name = ""
        self.layer_picker = LayerPicker(
            napari_viewer,
            tooltip="the recorded image stack",
            prepared_reason="it would be prepared twice",
        )
        from ccount_core.nn.ensemble import shipped_models

        others = [SHIPPED_PREFIX + n for n in shipped_models() if n != "default"]
        self.model_choice = ComboBox(
            label="model",
            choices=[DEFAULT_MODEL, *others, MODEL_FILE],
            value=DEFAULT_MODEL,
            tooltip="the model whose preparation the form starts at (as in 2. Count ions), "
            "so the preview is what that network sees",
        )
        self.model_file = FileEdit(
            label="model file",
            filter="*.safetensors *.json",
            visible=False,
            tooltip="weights (.safetensors) with the model card (.json), or an ensemble card",
        )
        self.model_label = Label(value="")
        self.model_label.tooltip = "the preprocessing below: hover a field for its help"
        self.fit_button = PushButton(text="Fit ellipse on current frame")
        self.per_frame = CheckBox(
            value=False,
            label="fit every frame",
            tooltip="fit each frame's own ellipse when preparing the stack; off: use the "
            "drawn (edited) ellipse for every frame",
        )
        self.axis_fields = build_form(TrapAxisParams, TrapAxisParams())
        link_trap_axis(self.axis_fields)
        self.config_fields = build_form(PreprocessConfig, self.base_config)
        self.preview_button = PushButton(text="Preview current frame")
        self.prepare_button = PushButton(text="Prepare stack (lazy layer)")
        self.status = status_label()
        self.progress = progress_bar()
        # side by side: the dock then fits a 1280 x 800 screen with the count's docks below
        self._button_row = Container(
            widgets=[self.preview_button, self.prepare_button], layout="horizontal", labels=False
        )
        self._button_row.margins = (0, 0, 0, 0)
        self.extend(
            [
                self.layer_picker,
                *self.axis_fields.values(),
                self.fit_button,
                self.per_frame,
                self.model_choice,
                self.model_file,
                self.model_label,
                *self.config_fields.values(),
                self._button_row,
                status_row(self.status, self.progress),
            ]
        )
        fit_dock(self)
        self.fit_button.changed.connect(self.fit)
        self.preview_button.changed.connect(self.preview)
        self.prepare_button.changed.connect(self.prepare)
        self.model_choice.changed.connect(self.use_model)
        self.model_file.changed.connect(self.use_model)
        self.layer_picker.changed.connect(self._use_layer)
        self._use_layer(self.layer_picker.value)
        for field in self.config_fields.values():
            field.changed.connect(self._show_model_label)
        self.use_model()
        self.job: Job | None = None
        self.ellipse_layer: napari.layers.Shapes | None = None
        self.fitted: Any = None
        self.preview_layer: napari.layers.Image | None = None
        self.prepared_layer: napari.layers.Image | None = None

    # --- the model's preparation ------------------------------------------------------------

    def _model(self) -> tuple[str | None, str] | None:
        """(model argument, name shown) of the choice; None while no file is chosen."""
        choice = self.model_choice.value
        if choice == DEFAULT_MODEL:
            return None, "default"
        if choice.startswith(SHIPPED_PREFIX):
            name = choice[len(SHIPPED_PREFIX) :]
            return name, name
        path = Path(self.model_file.value)
        return (str(path), path.name) if path.is_file() else None

    def use_model(self, *_: Any) -> None:
        """Fill the form with the chosen model's preparation (one-line error when unreadable:
        the form keeps its values)."""
        self.model_file.visible = self.model_choice.value == MODEL_FILE
        chosen = self._model()
        if chosen is None:
            return
        model, name = chosen
        try:
            cfg = model_preparation(model)
        except InputError as exc:
            notify_error(exc, "prepare")
            return
        self.model_name, self.model_config, self.base_config = name, cfg, cfg
        for key, widget in self.config_fields.items():
            value = getattr(cfg, key)
            widget.value = ", ".join(map(str, value)) if isinstance(value, tuple) else value
        self._show_model_label()

    def _show_model_label(self, *_: Any) -> None:
        """Which model's preparation the form holds, and "edited" once it differs."""
        if self.model_config is None:
            self.model_label.value = "preparation: ccount's defaults (no model card read)"
            return
        try:
            edited = self.config() != self.model_config
        except InputError:
            edited = True
        suffix = ", edited" if edited else ""
        self.model_label.value = f"preparation of model '{self.model_name}'{suffix}"

    # --- inputs -------------------------------------------------------------------------

    def _use_layer(self, layer: Any) -> None:
        use_layer_trap_axis(self.axis_fields, layer)

    def trap_axis(self) -> str | float:
        """The trap axis the fields state (``parse_trap_axis``'s input)."""
        return read_form(TrapAxisParams(), self.axis_fields).value()

    def config(self) -> Any:
        """The PreprocessConfig the fields describe (InputError when a value is invalid)."""
        return read_form(self.base_config, self.config_fields)

    def ellipse(self) -> Any | None:
        """The ellipse drawn in the "crystal ellipse" layer (after the user's edits), or None."""
        layer = self.ellipse_layer
        if layer is None or layer not in self.viewer.layers or len(layer.data) == 0:
            return None
        shapes = [d for d, t in zip(layer.data, layer.shape_type, strict=True) if t == "ellipse"]
        if not shapes:
            raise InputError(f"layer '{layer.name}': draw one ellipse around the crystal")
        return corners_to_ellipse(shapes[-1])

    def _current(self) -> tuple[napari.layers.Image, int, np.ndarray]:
        layer = self.layer_picker.image_layer()
        index = current_frame_index(self.viewer, layer)
        return layer, index, np.asarray(layer_stack(layer)[index])

    def _busy(self) -> bool:
        return self.job is not None and not self.job.done

    # --- actions ------------------------------------------------------------------------

    def fit(self) -> Job | None:
        """Fit the ellipse on the frame shown (worker) and draw it as an editable shape."""
        if self._busy():
            return None
        try:
            layer, index, frame = self._current()
            cfg = self.config()
        except InputError as exc:
            notify_error(exc, "fit ellipse")
            return None
        self.status.value = f"fitting frame {index}…"
        self.job = start_job(
            fit_frame,
            frame,
            cfg,
            desc="fit ellipse",
            on_done=lambda ell: self._show_ellipse(layer, ell),
            bar=self.progress,
        )
        return self.job

    def _show_ellipse(self, image: napari.layers.Image, ellipse: Any) -> None:
        self.fitted = ellipse
        corners = ellipse_to_corners(ellipse)
        scale, translate = tuple(image.scale[-2:]), tuple(image.translate[-2:])
        layer = self.ellipse_layer
        if layer is None or layer not in self.viewer.layers:
            layer = self.viewer.add_shapes(
                [corners],
                shape_type="ellipse",
                name=ELLIPSE_LAYER,
                edge_color="yellow",
                face_color="transparent",
                edge_width=2 * float(scale[-1]),
                scale=scale,
                translate=translate,
                opacity=0.9,
            )
            self.ellipse_layer = layer
        else:
            layer.data = []
            layer.scale, layer.translate = scale, translate
            layer.add(
                [corners], shape_type="ellipse", edge_color="yellow", face_color="transparent"
            )
        layer.metadata["ccount"] = {"fitted": ellipse.to_dict(), "image": image.name}
        layer.mode = "select"
        layer.selected_data = {len(layer.data) - 1}
        self.viewer.layers.selection.active = layer
        layer_meta(image)["ellipse"] = ellipse.to_dict()
        self.fit_button.text = "Re-fit ellipse on current frame"
        self.status.value = (
            f"ellipse: centre ({ellipse.center_row:.1f}, "
            f"{ellipse.center_col:.1f}) px, {ellipse.semi_major:.1f} × "
            f"{ellipse.semi_minor:.1f} px, {ellipse.angle_deg:.1f}°, "
            f"quality {ellipse.quality:.2f}"
        )

    def preview(self) -> Job | None:
        """Prepare the frame shown with the drawn ellipse (worker); show it beside the image."""
        if self._busy():
            return None
        try:
            layer, index, frame = self._current()
            cfg, ellipse, axis = self.config(), self.ellipse(), self.trap_axis()
        except InputError as exc:
            notify_error(exc, "preview")
            return None
        self.status.value = f"preparing frame {index}…"
        self.job = start_job(
            preview_frame,
            frame,
            cfg,
            ellipse,
            pixel_size_um(layer),
            axis,
            desc="prepare frame",
            on_done=lambda out: self._show_preview(layer, index, cfg, out, axis),
            bar=self.progress,
        )
        return self.job

    def _placement(
        self, image: napari.layers.Image, cfg: Any, ellipse: Any = None, axis: Any = "auto"
    ) -> tuple[tuple[float, float], tuple[float, float]]:
        """Scale and translate (world, 2-D) that put a prepared image right of ``image``.

        A prepared pixel is ``cfg.model_pixel_size_um`` (the camera's pixel when that is
        unknown, as the pipeline then does not resample), so both show at their true size.
        With ``stretch_to_fit`` each crystal has its own zoom: that of ``ellipse`` (input px)
        when given (with the trap axis ``axis``), else one prepared pixel per camera pixel.
        """
        sy, sx = (float(v) for v in image.scale[-2:])
        ty, tx = (float(v) for v in image.translate[-2:])
        camera = pixel_size_um(image)
        if cfg.stretch_to_fit:
            from ccount_core.image.preprocess import frame_transform, parse_trap_axis

            zoom = (
                1.0
                if ellipse is None
                else 1.0 / frame_transform(ellipse, cfg, camera, parse_trap_axis(axis)).zoom
            )
        else:
            zoom = cfg.model_pixel_size_um / camera if camera else 1.0
        width = image.data.shape[-1] * sx
        return (sy * zoom, sx * zoom), (ty, tx + width + GAP_PX * sx)

    def _show_preview(
        self, image: napari.layers.Image, index: int, cfg: Any, out: Any, axis: Any
    ) -> None:
        prepared, ellipse = out
        scale, translate = self._placement(image, cfg, ellipse, axis)
        meta = {
            "ccount": {
                PREPARED_FROM: image.name,
                "frame": index,
                "config": cfg.to_dict(),
                "ellipse": None if ellipse is None else ellipse.to_dict(),
            }
        }
        if self.preview_layer is None or self.preview_layer not in self.viewer.layers:
            self.preview_layer = self.viewer.add_image(
                np.asarray(prepared, np.float32),
                name="prepared preview",
                colormap="gray",
                scale=scale,
                translate=translate,
                metadata=meta,
            )
        else:
            self.preview_layer.data = np.asarray(prepared, np.float32)
            self.preview_layer.scale, self.preview_layer.translate = scale, translate
            self.preview_layer.metadata = meta
            self.preview_layer.reset_contrast_limits()
        self.status.value = f"preview of frame {index}: {prepared.shape[0]}×{prepared.shape[1]} px"

    def prepare(self) -> Job | None:
        """Add the prepared stack as a lazily computed Image layer (frame 0 checked in a worker)."""
        if self._busy():
            return None
        try:
            layer = self.layer_picker.image_layer()
            cfg, axis = self.config(), self.trap_axis()
            ellipse = None if self.per_frame.value else self.ellipse()
            if ellipse is None and not self.per_frame.value:
                raise InputError(
                    "ellipse: fit or draw the crystal ellipse first (or tick 'fit every frame')"
                )
        except InputError as exc:
            notify_error(exc, "prepare")
            return None
        stack = layer_stack(layer)
        self.status.value = "preparing (lazy)…"
        self.job = start_job(
            _lazy_job,
            stack,
            cfg,
            ellipse,
            pixel_size_um(layer),
            axis,
            desc="prepare stack",
            on_done=lambda data: self._show_prepared(layer, cfg, ellipse, data, axis),
            bar=self.progress,
        )
        return self.job

    def _show_prepared(
        self,
        image: napari.layers.Image,
        cfg: Any,
        ellipse: Any,
        out: tuple[da.Array, tuple[float, float]],
        axis: Any,
    ) -> None:
        data, limits = out
        scale, translate = self._placement(image, cfg, ellipse, axis)
        meta = {
            "ccount": {
                PREPARED_FROM: image.name,
                "config": cfg.to_dict(),
                "ellipse": None if ellipse is None else ellipse.to_dict(),
                "frame_interval_s": layer_meta(image).get("frame_interval_s"),
            }
        }
        name = f"{image.name} prepared"
        if name in self.viewer.layers:
            self.viewer.layers.remove(name)
        self.prepared_layer = self.viewer.add_image(
            data,
            name=name,
            colormap="gray",
            scale=(float(image.scale[0]), *scale),
            translate=(float(image.translate[0]), *translate),
            metadata=meta,
            contrast_limits=limits,
        )
        self.status.value = (
            f"prepared stack: {data.shape[0]} frames of "
            f"{data.shape[1]}×{data.shape[2]} px, computed as shown"
        )


def _lazy_job(
    stack: Any,
    cfg: Any,
    ellipse: Any,
    pixel_um: float | None,
    trap_axis: str | float,
    progress: Any = None,
) -> tuple[da.Array, tuple[float, float]]:
    """The lazy prepared stack and contrast limits from its frame 0 (prepared here, once)."""
    if progress is not None:
        progress(0, 1)
    data, first = lazy_prepared(stack, cfg, ellipse, pixel_um, trap_axis)
    if progress is not None:
        progress(1, 1)
    lo, hi = float(first.min()), float(first.max())
    return data, (lo, hi if hi > lo else lo + 1.0)
