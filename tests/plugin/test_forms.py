"""The widgets' parameter forms are built from dataclass field metadata, and only from it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ccount_core.errors import InputError
from ccount_core.image.preprocess import PreprocessConfig
from napari_ccount._widgets._common import TrapAxisParams
from napari_ccount._widgets._forms import build_form, field_label, form_fields, read_form
from napari_ccount._widgets.count import MODEL_FILE, CountParams, CountWidget
from napari_ccount._widgets.overlay import OverlayParams, OverlayWidget
from napari_ccount._widgets.prepare import PrepareWidget

pytestmark = pytest.mark.gui

PARAMS = [PreprocessConfig, OverlayParams, CountParams, TrapAxisParams]
#: Fields a model's card sets and the Prepare form keeps as the card has them.
CARD_ONLY = {
    "rotation_deg",
    "resampling",
    "canonical_turn",
    "symmetry_refine",
    "fit_footprint",
    "beam_reference",
    "beam_noise",
}


@pytest.mark.parametrize("cls", PARAMS, ids=lambda c: c.__name__)
def test_every_shown_field_has_help_and_unit(cls: type) -> None:
    shown = form_fields(cls)
    assert shown
    hidden = {f.name for f in dataclasses.fields(cls)} - {f.name for f in shown}
    assert hidden == (CARD_ONLY if cls is PreprocessConfig else set())
    for f in dataclasses.fields(cls):  # hidden fields are described too
        assert f.metadata["help"].strip(), f.name
        assert isinstance(f.metadata["unit"], str), f.name


@pytest.mark.parametrize("cls", PARAMS, ids=lambda c: c.__name__)
def test_widgets_show_the_metadata(cls: type) -> None:
    widgets = build_form(cls, cls())
    assert list(widgets) == [f.name for f in form_fields(cls)]
    for f in form_fields(cls):
        w, meta = widgets[f.name], f.metadata
        assert w.name == f.name
        assert w.tooltip.removesuffix(" (comma-separated)") == meta["help"]
        assert w.label == field_label(f)
        if meta["unit"]:
            assert w.label.endswith(f" ({meta['unit']})")
        for key in ("min", "max", "step"):
            if key in meta:
                assert getattr(w, key) == meta[key], (f.name, key)
        if "decimals" in meta:
            assert w.native.decimals() == meta["decimals"]
    assert read_form(cls(), widgets) == cls()  # every form starts at the defaults


def test_labels_and_units_as_shown() -> None:
    prep = build_form(PreprocessConfig, PreprocessConfig())
    assert prep["model_pixel_size_um"].label == "model pixel size (µm)"
    assert prep["output_shape"].label == "output shape (px)"
    assert prep["enhance_amplitude"].label == "enhance amplitude"
    overlay = build_form(OverlayParams, OverlayParams())
    assert [w.label for w in overlay.values()] == [
        "Ca⁺ ions",
        "dark species",
        "dark ions",
        "V_RF (V)",
        "V_end (V)",
        "η",
        "r0 (µm)",
        "z0 (µm)",
        "f_RF (MHz)",
        "blur (µm)",
        "depth of field (µm)",
        "field",
        "seed",
    ]
    assert overlay["v_end"].value == 2.3375  # shown to 4 decimals, not rounded
    assert list(overlay["mode"].choices) == ["rf", "pseudo"]
    assert "Ca+" not in overlay["dark_species"].choices


def test_widgets_use_the_built_forms(make_napari_viewer) -> None:
    viewer = make_napari_viewer()
    prepare, overlay, count = PrepareWidget(viewer), OverlayWidget(viewer), CountWidget(viewer)
    for container, widgets, cls in (
        (prepare, prepare.config_fields, PreprocessConfig),
        (overlay, overlay.param_fields, OverlayParams),
    ):
        assert list(widgets) == [f.name for f in form_fields(cls)]
        assert all(w in container for w in widgets.values())
    by_name = {f.name: f for f in form_fields(CountParams)}
    assert count.tta in count and count.batch in count
    assert count.tta.tooltip == by_name["tta"].metadata["help"]
    assert count.batch.label == field_label(by_name["batch_size"])
    overlay.param_fields["v_rf"].value = 150.0
    assert overlay.params().trap().v_rf == pytest.approx(150.0)
    assert overlay.params().trap() == OverlayParams(v_rf=150.0).trap()


def test_a_field_without_metadata_is_refused() -> None:
    @dataclass(frozen=True)
    class Bare:
        gain: float = 1.0

    @dataclass(frozen=True)
    class NoUnit:
        gain: float = field(default=1.0, metadata={"help": "amplifier gain"})

    @dataclass(frozen=True)
    class Hidden:
        gain: float = field(default=1.0, metadata={"help": "gain", "unit": "", "form": False})

    for cls in (Bare, NoUnit):
        with pytest.raises(TypeError, match="gain: a form field needs 'help' and 'unit'"):
            build_form(cls, cls())
    assert build_form(Hidden, Hidden()) == {}


def test_tuple_fields_read_back_or_give_one_line_errors() -> None:
    widgets = build_form(PreprocessConfig, PreprocessConfig())
    widgets["output_shape"].value = "256; 160"
    assert read_form(PreprocessConfig(), widgets).output_shape == (256, 160)
    widgets["output_shape"].value = "256"
    with pytest.raises(InputError, match="output_shape: expected 2 comma-separated numbers"):
        read_form(PreprocessConfig(), widgets)


def test_the_prepare_form_keeps_the_card_only_options_of_the_model(
    make_napari_viewer, tmp_path: Path
) -> None:
    import json

    from ccount_core.nn.model import default_model_path, read_card

    widget = PrepareWidget(make_napari_viewer())
    card = read_card(default_model_path())
    assert widget.config() == PreprocessConfig.from_dict(card["preprocess"])
    # every shipped model prepares with version 1's steps, as it was trained (the default's
    # "bilinear-area" is version 1's wherever camera pixels are at most half its own)
    cfg = widget.config()
    assert (cfg.resampling, cfg.canonical_turn, cfg.symmetry_refine) == (
        "bilinear-area",
        False,
        False,
    )
    # a model trained with the later options keeps them, though the form does not show them
    weights = tmp_path / "opted.safetensors"
    weights.symlink_to(default_model_path())
    card["preprocess"] |= {"resampling": "area", "canonical_turn": True, "symmetry_refine": True}
    weights.with_suffix(".json").write_text(json.dumps(card))
    widget.model_choice.value = MODEL_FILE
    widget.model_file.value = weights
    cfg = widget.config()
    assert (cfg.resampling, cfg.canonical_turn, cfg.symmetry_refine) == ("area", True, True)
    widget.model_choice.value = "shipped: dark"
    assert (widget.config().resampling, widget.config().canonical_turn) == ("bilinear", False)
