"""Frames unlike the training images are named, and their σ widened (issue 27, points 4-5)."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import numpy as np
import pytest

from ccount_core.dataset.samples import load_sample
from ccount_core.image.ellipse import Ellipse
from ccount_core.image.preprocess import PreprocessConfig, prepare_frame, prepare_stack
from ccount_core.nn.count import model_error, noise_widening, validation_error
from ccount_core.nn.inputs import (
    STATISTICS,
    input_statistics,
    outside_ranges,
    prepared_outline,
    range_warnings,
)
from ccount_core.nn.model import default_model_path, read_card
from ccount_core.simulation import IonGroup, SimulationSettings, TrapSettings, simulate
from ccount_core.simulation.camera import CameraEffects, HotPixels, LaserProfile
from ccount_core.simulation.render import CameraModel, ImagingSettings, render

TRAP = TrapSettings.from_lab_units(v_rf=220.0, v_end=2.5, eta=0.28)
CAMERA = CameraModel(photons_per_ion=2000.0, background=2.0, read_noise=2.0, offset=100.0)
EMCCD = CameraModel(photons_per_ion=300.0, background=1.0, em_gain=300.0, read_noise=30.0)
EDGE_LEVEL = 0.3  # a narrow cooling beam leaves the outermost ions at this share of the centre


def test_a_dark_core_is_seen_and_named_with_its_fix() -> None:
    card = read_card(default_model_path())
    series, meta = load_sample("reaction_series")
    px = meta["pixel_size_um"]
    cfg = PreprocessConfig.from_dict(card["preprocess"])
    out = prepare_stack(series[[0, 15]], cfg, None, px)
    pure, dark = (
        input_statistics(out.images[i], e, px, prepared_outline(e, cfg, px))
        for i, e in enumerate(out.ellipses)
    )
    # Frame 15 has 245 of its 350 ions dark in the core: less light there than in frame 0.
    assert dark["core_light"] < pure["core_light"] - 0.2
    assert range_warnings(pure, card["input_ranges"]) == []
    warnings = range_warnings(dark, card["input_ranges"])
    # The core, and the band's tips, which the dark core reaches: both name the fix.
    assert len(warnings) == 2
    assert warnings[0].startswith("unlike the training images: light in the core")
    assert warnings[1].startswith("unlike the training images: light of the lit pixels")
    assert all(w.endswith("count with --model dark or ensemble") for w in warnings)
    assert outside_ranges(dark, card["input_ranges"]) == ["core_light", "band_light"]
    assert range_warnings(dark, {}) == []  # a card without ranges warns of nothing


def test_model_error_scales_the_validation_rms_and_widens_unlike_frames() -> None:
    card = read_card(default_model_path())
    counts = np.array([100.0, 200.0, 300.0])
    base = validation_error(card, counts)
    f = card["uncertainty"]
    got = model_error(card, counts, {1: ["unlike: ..."], 2: []}, 3)
    assert got == pytest.approx(base * f["scale"] * np.array([1.0, f["unlike_scale"], 1.0]))
    bare = {k: v for k, v in card.items() if k != "uncertainty"}
    assert model_error(bare, counts, {1: ["x"]}, 3) == pytest.approx(base)
    # A camera note widens by its own factor; several reasons' extra errors add in quadrature.
    noted = {**card, "uncertainty": {**f, "note_scales": {"noisy": 2.0, "halo": 9.0}}}
    notes = {0: ("noisy: pixel noise 12 % ...",), 1: ("noisy: ...",), 2: ("several crystals",)}
    got = model_error(noted, counts, {1: ["unlike: ..."]}, 3, notes=notes)
    both = np.sqrt(1.0 + (2.0**2 - 1.0) + (f["unlike_scale"] ** 2 - 1.0))
    assert got == pytest.approx(base * f["scale"] * np.array([2.0, both, 1.0]))
    notes = {0: ("halo: 2 % ...", "noisy: ...")}
    assert model_error(noted, counts, {}, 3, notes=notes)[0] == pytest.approx(
        base[0] * f["scale"] * np.sqrt(1.0 + 3.0 + 80.0)
    )
    # A statistic with its own factor takes it; of one reason's statistics, the largest counts.
    own = {**card, "uncertainty": {"scale": 1.0, "unlike_scale": 6.0, "unlike_scales": {"a": 2.0}}}
    got = model_error(own, counts, {0: ["a"], 1: ["a", "b"], 2: []}, 3)
    assert got == pytest.approx(base * np.array([2.0, 6.0, 1.0]))


def test_model_error_widens_with_pixel_noise() -> None:
    """σ widens by sqrt(1 + (noise / noise_n0)⁴): √2 at noise_n0, 1 for a noiseless or
    unmeasured frame; a frame also unlike the training adds that factor in quadrature."""
    card = read_card(default_model_path())
    counts = np.array([100.0, 200.0, 300.0, 150.0])
    f = {"scale": 1.0, "unlike_scale": 3.0, "noise_n0": 0.05}
    base = validation_error(card, counts)
    noise = {0: 0.05, 1: 0.1, 2: float("nan"), 3: 0.1}
    got = model_error({**card, "uncertainty": f}, counts, {3: ["unlike: ..."]}, 4, noise=noise)
    assert got == pytest.approx(base * np.array([np.sqrt(2.0), np.sqrt(17.0), 1.0, 5.0]))
    assert noise_widening(0.0, 0.05) == 1.0 and noise_widening(0.02, 0.05) == pytest.approx(
        np.sqrt(1.0 + 0.4**4)
    )
    # A card without noise_n0 does not widen with noise.
    bare = {**card, "uncertainty": {"scale": 1.0}}
    assert model_error(bare, counts, {}, 4, noise=noise) == pytest.approx(base)


def spots(heights: np.ndarray) -> np.ndarray:
    """A prepared-like 96 x 48 image: Gaussian spots (σ 0.8 px) on a grid 3 px apart inside
    an ellipse of semi-axes 30 x 12 px, spot (i, j)'s height ``heights(u, v)`` of its
    normalised offsets along (u) and across (v) the trap axis."""
    img = np.zeros((96, 48), np.float32)
    rows, cols = np.indices(img.shape)
    for r in range(48 - 30, 48 + 31, 3):
        for c in range(24 - 12, 24 + 13, 3):
            u, v = (r - 48) / 30, (c - 24) / 12
            if u * u + v * v <= 1.0:
                img += heights(u, v) * np.exp(-((rows - r) ** 2 + (cols - c) ** 2) / 1.28)
    return img


def light_ratios(img: np.ndarray) -> tuple[float, float]:
    """``tip_light`` and ``band_light`` of a :func:`spots` image."""
    outline = Ellipse(48.0, 24.0, 30.0, 12.0, 90.0)
    stats = input_statistics(img, outline, 6.0, outline)
    return stats["tip_light"], stats["band_light"]


def tip_light(img: np.ndarray) -> float:
    return light_ratios(img)[0]


def test_tip_light_compares_the_spots_at_the_tips_with_those_at_the_sides() -> None:
    assert tip_light(spots(lambda u, v: 1.0)) == pytest.approx(1.0, abs=0.05)
    dim_tips = tip_light(spots(lambda u, v: math.exp(-1.2 * u * u)))  # tips at 30 %
    dim_sides = tip_light(spots(lambda u, v: math.exp(-1.2 * v * v)))
    assert 0.3 < dim_tips < 0.6
    assert 1.6 < dim_sides < 3.4
    # A dark core (no spots within half the radius) leaves the outer ring as it was.
    assert tip_light(spots(lambda u, v: float(u * u + v * v > 0.25))) == pytest.approx(1.0, 0.05)
    few = np.zeros((96, 48), np.float32)
    few[48, 24] = few[20, 24] = 1.0  # two spots: not enough to compare
    assert math.isnan(tip_light(few))


def test_band_light_compares_the_lit_pixels_at_the_tips_with_those_at_the_sides() -> None:
    def band(heights: Any) -> float:
        return light_ratios(spots(heights))[1]

    even = band(lambda u, v: 1.0)
    assert 0.85 < even < 1.2  # a grid of spots: the band samples tips and sides alike
    # Tips (sides) at 30 %: the band's tip (side) sector spans 37° of the (u, v) plane, so
    # it holds pixels dimmed less than its end, and the ratio moves less than the heights.
    assert 0.55 < band(lambda u, v: math.exp(-1.2 * u * u)) / even < 0.8
    assert 1.2 < band(lambda u, v: math.exp(-1.2 * v * v)) / even < 1.6
    # A dark core (no light within half the radius) leaves the outer band as it was.
    assert band(lambda u, v: float(u * u + v * v > 0.25)) == pytest.approx(even, 0.05)
    # Where one part is dark it has no ratio to give, but says which part is dark.
    assert band(lambda u, v: float(abs(v) < 0.3)) == math.inf  # only the axis is lit
    assert band(lambda u, v: float(abs(u) < 0.3)) == 0.0  # only the waist is lit
    assert range_warnings({"band_light": math.inf}, {"band_light": {"min": 0.7, "max": 1.3}})
    assert math.isnan(light_ratios(np.zeros((96, 48), np.float32))[1])


@pytest.fixture(scope="module")
def crystal() -> tuple[np.ndarray, np.ndarray]:
    """200 Ca+ ions: MD samples (S, N, 3) m and which ions fluoresce (N,)."""
    res = simulate(TRAP, [IonGroup("Ca+", 200)], SimulationSettings(seed=27), None)
    return res.samples, res.fluorescing


def frame_statistics(
    samples: np.ndarray,
    lit: np.ndarray,
    card: dict,
    effects: CameraEffects | None = None,
    camera: CameraModel | None = None,
    flatten: bool = True,
) -> dict:
    """:func:`input_statistics` of the crystal rendered like the training images (2 µm
    pixels, 240 x 320) through ``effects`` and ``camera`` and prepared for ``card`` (without
    its beam flattening unless ``flatten``), with the preparation's ``notes``."""
    imaging = ImagingSettings.from_lab_units(pixel_size_um=2.0, shape=(240, 320), camera=camera)
    frame = render(samples, lit, imaging, 1, effects)
    cfg = PreprocessConfig.from_dict(card["preprocess"])
    if not flatten:
        cfg = dataclasses.replace(cfg, beam_reference=None)
    prepared, ellipse = prepare_frame(frame, cfg, camera_pixel_size_um=2.0)
    stats = input_statistics(prepared, ellipse, 2.0, prepared_outline(ellipse, cfg, 2.0))
    return {**stats, "notes": ellipse.notes}


def narrow_beam(samples: np.ndarray, along_axis: bool) -> CameraEffects:
    """A cooling beam along the trap axis (the outer layers at ``EDGE_LEVEL``) or across it
    (the tips at ``EDGE_LEVEL``), as ``benchmarks/robustness.py`` makes it."""
    mean = samples.mean(axis=0)
    half = (
        float(np.abs(mean[:, 0] - mean[:, 1]).max() / math.sqrt(2.0))  # radial, 45° view
        if along_axis
        else float(np.abs(mean[:, 2]).max())
    )
    return CameraEffects(
        profile=LaserProfile(half * math.sqrt(2.0 / math.log(1.0 / EDGE_LEVEL)), 0.0, along_axis)
    )


@pytest.mark.parametrize("model", ["default", "dark", "ensemble"])
def test_a_narrow_cooling_beam_is_named_with_its_fix_and_a_clean_crystal_is_not(
    crystal: tuple[np.ndarray, np.ndarray], model: str
) -> None:
    card = json.loads(default_model_path().with_name(f"{model}.json").read_text())
    r = card["input_ranges"]["tip_light"]
    samples, lit = crystal
    clean = frame_statistics(samples, lit, card, flatten=False)
    along = frame_statistics(samples, lit, card, narrow_beam(samples, True), flatten=False)
    across = frame_statistics(samples, lit, card, narrow_beam(samples, False), flatten=False)
    assert 0.85 < clean["tip_light"] < 1.1
    assert range_warnings(clean, card["input_ranges"]) == []
    assert along["tip_light"] > max(r["max"], 1.5 * clean["tip_light"])  # the sides dim
    assert across["tip_light"] < min(r["min"], 0.7 * clean["tip_light"])  # the tips dim
    what, fix = STATISTICS["tip_light"]
    for stats in (along, across):
        named = [w for w in range_warnings(stats, card["input_ranges"]) if what in w]
        assert len(named) == 1
        assert named[0].startswith(f"unlike the training images: {what} ")
        assert named[0].endswith(fix)
    band = card["input_ranges"]["band_light"]
    assert band["min"] < clean["band_light"] < band["max"]
    assert along["band_light"] > 1.3 * clean["band_light"]
    assert across["band_light"] < 0.75 * clean["band_light"]
    if model == "default":  # trained on pure, evenly lit crystals: its range is narrow
        assert along["band_light"] > band["max"] and across["band_light"] < band["min"]


@pytest.mark.parametrize("model", ["default", "dark", "ensemble"])
def test_the_shipped_preparations_even_out_a_narrow_beam_and_note_it(
    crystal: tuple[np.ndarray, np.ndarray], model: str
) -> None:
    card = json.loads(default_model_path().with_name(f"{model}.json").read_text())
    samples, lit = crystal
    clean = frame_statistics(samples, lit, card)
    assert clean == frame_statistics(samples, lit, card, flatten=False)  # left alone
    assert not any(n.startswith("beam: ") for n in clean["notes"])
    for along in (True, False):
        raw = frame_statistics(samples, lit, card, narrow_beam(samples, along), flatten=False)
        even = frame_statistics(samples, lit, card, narrow_beam(samples, along))
        assert (
            [n for n in even["notes"] if n.startswith("beam: ")]
            == [n for n in even["notes"] if ("outer layers" if along else "tips") in n]
            != []
        )
        # The evened-out frame's beam statistics are back near the clean crystal's.
        for name in ("tip_light", "band_light"):
            assert abs(even[name] - clean[name]) < 0.5 * abs(raw[name] - clean[name])
        if model == "default":
            assert range_warnings(even, card["input_ranges"]) == []


@pytest.mark.parametrize(
    ("camera", "effects"),
    [
        (CAMERA, CameraEffects(hot_pixels=HotPixels(1e-3, 1.0), exposure=0.6)),
        (EMCCD, CameraEffects(exposure=0.6)),
    ],
    ids=["16-bit, hot pixels", "EMCCD"],
)
def test_camera_noise_and_hot_pixels_leave_tip_light_in_range(
    crystal: tuple[np.ndarray, np.ndarray], camera: CameraModel, effects: CameraEffects
) -> None:
    card = read_card(default_model_path())
    r = card["input_ranges"]["tip_light"]
    samples, lit = crystal
    noisy = frame_statistics(samples, lit, card, effects, camera)["tip_light"]
    assert r["min"] < noisy < r["max"]


def test_a_dark_core_alone_does_not_trip_tip_light() -> None:
    card = read_card(default_model_path())
    res = simulate(
        TRAP, [IonGroup("Ca+", 300), IonGroup("ND3+", 100)], SimulationSettings(seed=27), None
    )
    stats = frame_statistics(res.samples, res.fluorescing, card)
    ranges = card["input_ranges"]
    assert stats["core_light"] < ranges["core_light"]["min"]  # a dark core the card never saw
    assert ranges["tip_light"]["min"] < stats["tip_light"] < ranges["tip_light"]["max"]
    # Named for the dark core, and by band_light for the dark tips it reaches, whose fix
    # names the dark-ion models too; tip_light, on the lit ions' spots, stays in range.
    warnings = range_warnings(stats, ranges)
    assert warnings[0].endswith(STATISTICS["core_light"][1])
    assert all(w.endswith("count with --model dark or ensemble") for w in warnings)
