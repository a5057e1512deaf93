"""The count calibrations, by count and by camera (pixel noise, halo): fitted on held-out
counts, applied by every IonCounter carrying one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ccount_core.dataset.samples import load_sample
from ccount_core.errors import InputError
from ccount_core.image.preprocess import PreprocessConfig, prepare_stack
from ccount_core.nn.calibration import (
    apply_calibration,
    camera_calibration_factor,
    check_calibration,
    fit_calibration,
    fit_exponent,
)
from ccount_core.nn.count import count_stack
from ccount_core.nn.ensemble import IonCounter, ensemble_card, load_counter


def _shrunk(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """True counts 30-350 and a network's reading of them: pulled 10 % toward 190 ions,
    with 2 % noise and a ceiling at 345."""
    rng = np.random.default_rng(seed)
    true = rng.integers(30, 351, n).astype(float)
    pred = 190 + 0.9 * (true - 190) + rng.normal(0, 0.02 * true)
    return np.minimum(pred, 345.0), true


def _rms_percent(pred: np.ndarray, true: np.ndarray) -> float:
    return float(100 * np.sqrt(np.mean(((pred - true) / true) ** 2)))


def test_fitted_map_removes_the_pull_toward_the_middle_on_new_counts():
    pred, true = _shrunk(20000, 0)
    cal = fit_calibration(pred, true, 30, 350)
    new_pred, new_true = _shrunk(20000, 1)  # other images than those it was fitted on
    fixed = apply_calibration(new_pred, cal)
    assert _rms_percent(new_pred, new_true) > 4.0
    assert _rms_percent(fixed, new_true) < 0.75 * _rms_percent(new_pred, new_true)
    assert abs(np.mean(fixed - new_true)) < 0.2
    assert np.all(np.diff(cal["values"]) >= 0)  # never reorders two counts
    # the map is close to the inverse of the pull inside the range
    mid = apply_calibration(np.array([190 + 0.9 * (100 - 190)]), cal)[0]
    assert mid == pytest.approx(100, abs=1.0)


def test_map_keeps_nan_and_has_slope_one_outside_its_knots():
    cal = {"knots": [20.0, 30.0, 360.0], "values": [25.0, 33.0, 350.0]}
    out = apply_calibration(np.array([np.nan, 10.0, 25.0, 400.0], np.float32), cal)
    assert out.dtype == np.float32 and np.isnan(out[0])
    np.testing.assert_allclose(out[1:], [15.0, 29.0, 390.0])
    # integer counts come back as floats, not truncated
    np.testing.assert_allclose(apply_calibration(np.array([26, 400]), cal), [29.8, 390.0])


def test_identity_counts_get_an_identity_map():
    true = np.random.default_rng(2).uniform(30, 350, 5000)
    cal = fit_calibration(true, true, 30, 350)
    np.testing.assert_allclose(cal["values"], cal["knots"], atol=1e-3)


def test_bad_fits_and_bad_maps_are_one_line_errors():
    with pytest.raises(InputError, match="too few"):
        fit_calibration(np.arange(10.0), np.arange(10.0), 30, 350)
    with pytest.raises(InputError, match="lo < hi"):
        fit_calibration(np.arange(1000.0), np.arange(1000.0), 350, 30)
    with pytest.raises(InputError, match="does not count"):
        check_calibration({"K+": {"knots": [0, 1], "values": [0, 1]}}, ["Ca+"], "card")
    for bad in (
        {"knots": [1, 0], "values": [0, 1]},
        {"knots": [0, 1], "values": [0]},
        {"knots": [0, 1]},
        [0, 1],
    ):
        with pytest.raises(InputError, match="increasing knots"):
            check_calibration({"Ca+": bad}, ["Ca+"], "card")


def test_counter_applies_its_cards_calibration():
    cal = {"knots": [0.0, 100.0, 400.0], "values": [0.0, 90.0, 390.0]}
    cards = [{"label_names": ["Ca+"]}, {"label_names": ["Ca+", "ND3+"]}]
    counter = IonCounter(
        [(None, cards[0]), (None, cards[1])],
        {"label_names": ["Ca+", "ND3+"], "calibration": {"Ca+": cal}},
    )
    a = (np.array([[100.0], [50.0]]), np.full((2, 1), np.nan))
    b = (np.array([[110.0, 7.0], [50.0, 3.0]]), np.full((2, 2), np.nan))
    counts, spread = counter.combine([a, b])
    np.testing.assert_allclose(counts, [[95.0, 7.0], [45.0, 3.0]])  # ND3+ not calibrated
    np.testing.assert_allclose(spread[:, 0], [np.sqrt(50.0), 0.0])
    with pytest.raises(InputError, match="model 'x': calibration of 'Ca\\+' needs"):
        IonCounter(
            [(None, cards[0])],
            {
                "label_names": ["Ca+"],
                "name": "x",
                "calibration": {"Ca+": {"knots": [0], "values": [0]}},
            },
        )


def test_a_calibrated_ensemble_card_counts_through_its_map(tmp_path: Path, one_torch_thread):
    card = ensemble_card(["default", "dark"], tmp_path / "e.json", name="pair")
    (tmp_path / "e.json").write_text(json.dumps(card))
    # a map that adds 7 ions everywhere
    (tmp_path / "c.json").write_text(
        json.dumps({**card, "calibration": {"Ca+": {"knots": [0, 1000], "values": [7, 1007]}}})
    )
    stack, meta = load_sample("reaction_series")
    kw = {"pixel_size_um": meta["pixel_size_um"], "batch_size": 2, "threads": 1, "bf16": False}
    plain = count_stack(stack[:2], load_counter(tmp_path / "e.json"), **kw)
    moved = count_stack(stack[:2], load_counter(tmp_path / "c.json"), **kw)
    assert all(r["count"] > 30 for r in plain)
    np.testing.assert_allclose(
        [m["count"] - p["count"] for p, m in zip(plain, moved, strict=True)], 7.0, atol=1e-3
    )
    # the dark count is the dark member's alone, not calibrated
    assert [m["count_ND3+"] for m in moved] == [p["count_ND3+"] for p in plain]


def test_the_camera_calibration_is_fitted_on_pairs_and_refuses_bad_input():
    rng = np.random.default_rng(0)
    noise = rng.uniform(0.0, 0.2, 400)
    ratio = np.exp(-4.0 * noise**2) * np.exp(rng.normal(0.0, 0.01, 400))
    ratio[:5] = np.nan  # a frame not counted
    assert fit_exponent(ratio, noise**2) == pytest.approx(-4.0, abs=0.15)
    readings = {"pixel_noise": np.array([0.0, 0.1, np.nan]), "halo_light": np.array([0.02, 0, 0])}
    np.testing.assert_allclose(
        camera_calibration_factor(readings, {"noise_b": -4.0, "halo_a": 2.0}),
        [np.exp(-0.04), np.exp(0.04), 1.0],
    )
    only_halo = camera_calibration_factor(readings, {"halo_a": 2.0})
    np.testing.assert_allclose(only_halo, [np.exp(-0.04), 1.0, 1.0])
    with pytest.raises(InputError, match="no frame with the imperfection"):
        fit_exponent(np.ones(3), np.zeros(3))
    for bad, message in (({"noise_b": "low"}, "noise_b must be a finite"), ({}, "needs noise_b")):
        card = {"label_names": ["Ca+"], "name": "x", "camera_calibration": bad}
        with pytest.raises(InputError, match=f"model 'x': camera_calibration {message}"):
            IonCounter([(None, {"label_names": ["Ca+"]})], card)


def test_count_stack_divides_by_what_the_camera_makes_the_model_read(one_torch_thread):
    """The shipped default reads low through pixel noise (noise_b < 0) and high through a halo
    (halo_a > 0); its count of a frame is the uncalibrated count times
    exp(-(noise_b·noise² + halo_a·halo)), noise and halo as the preparation measures them."""
    stack, meta = load_sample("reaction_series")
    kw = {"pixel_size_um": meta["pixel_size_um"], "batch_size": 3, "threads": 1, "bf16": False}
    counter, plain = load_counter("default"), load_counter("default")
    cal = counter.card["camera_calibration"]
    assert cal["noise_b"] < 0 < cal["halo_a"]
    plain.card.pop("camera_calibration")
    got = [r["count"] for r in count_stack(stack[:3], counter, **kw)]
    raw = [r["count"] for r in count_stack(stack[:3], plain, **kw)]
    cfg = PreprocessConfig.from_dict(counter.card["preprocess"])
    ellipses = prepare_stack(stack[:3], cfg, camera_pixel_size_um=meta["pixel_size_um"]).ellipses
    noise = np.array([e.pixel_noise for e in ellipses])
    halo = np.array([e.halo_light for e in ellipses])
    assert np.all(noise > 0.03) and np.all(np.isfinite(halo))  # the series reads 0.07-0.08
    want = np.exp(-(cal["noise_b"] * noise**2 + cal["halo_a"] * halo))
    np.testing.assert_allclose(np.divide(got, raw), want, rtol=1e-5)


@pytest.mark.parametrize(
    ("factors", "message"),
    [
        ({"scale": "wide"}, "uncertainty scale must be a positive number"),
        ({"noise_n0": 0}, "uncertainty noise_n0 must be a positive number"),
        ({"unlike_scales": {"band_light": None}}, "uncertainty unlike_scales must map"),
        ({"note_scales": ["halo"]}, "uncertainty note_scales must map"),
        ([], "uncertainty must map factor names"),
    ],
)
def test_a_cards_bad_uncertainty_factors_are_one_line_errors(factors, message):
    card = {"label_names": ["Ca+"], "name": "x", "uncertainty": factors}
    with pytest.raises(InputError, match=f"model 'x': {message}"):
        IonCounter([(None, {"label_names": ["Ca+"]})], card)
    # a member's card is checked too
    with pytest.raises(InputError, match=message):
        IonCounter([(None, card)], {"label_names": ["Ca+"], "name": "x"})
