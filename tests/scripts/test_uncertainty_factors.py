"""scripts/uncertainty_factors.py: ``scale`` makes each fit set meet both targets, an
ensemble's spread counted at ±2σ twice; --notes-only fits the camera factors on their frames
and keeps the card's other factors."""

from __future__ import annotations

import argparse
import json
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from ccount_core.image.preprocess import PreprocessConfig
from ccount_core.nn.count import count_stack, validation_error
from ccount_core.nn.ensemble import load_counter

BINS = [{"true_mean": 50.0, "rms": 2.0, "n": 10}, {"true_mean": 400.0, "rms": 8.0, "n": 10}]


def spots_frame(noise: float, seed: int) -> np.ndarray:
    """A 160 x 240 frame of Gaussian spots (peak 1000) 5 px apart in an ellipse of 80 x 30
    px on a background of 100, plus Gaussian pixel noise of ``noise`` times the peak."""
    rows, cols = np.indices((160, 240), dtype=np.float64)
    img = np.full(rows.shape, 100.0)
    for r in range(52, 109, 5):
        for c in range(42, 199, 5):
            if ((r - 80) / 30) ** 2 + ((c - 120) / 80) ** 2 <= 1.0:
                img += 1000.0 * np.exp(-((rows - r) ** 2 + (cols - c) ** 2) / 4.5)
    return (img + np.random.default_rng(seed).normal(0.0, noise * 1000.0, img.shape)).astype(
        np.float32
    )


def test_a_spread_doubles_at_two_sigma(load_script) -> None:
    """σ = sqrt((scale·v)² + d²): an error of 2d lies within ±2σ at any scale, but needs
    sqrt(3)·d/v at ±1σ; with no spread the ±2σ need is half the ±1σ one."""
    needs = load_script("uncertainty_factors").needs
    v = np.array([2.0, 2.0])
    need = needs(np.array([6.0, 6.0]), np.array([3.0, 0.0]), v)
    np.testing.assert_allclose(need[0], [np.sqrt(27.0) / 2.0, 0.0])
    np.testing.assert_allclose(need[1], [3.0, 1.5])


def test_scale_lets_each_fit_set_meet_both_targets(tmp_path, write_model, load_script) -> None:
    """Two fit sets, the second's errors twice the first's: ``scale`` is the smallest with
    which each set meets both targets, so the second decides it (the union would let the
    second fall short)."""
    script = load_script("uncertainty_factors")
    pre = PreprocessConfig(model_pixel_size_um=6.0, output_shape=(96, 48))
    card_fields = {"metrics": {"ccount_evaluate": {"bins": BINS}}}
    weights = write_model(tmp_path / "m.safetensors", preprocess=pre, card=card_fields)
    frames = np.tile(np.stack([spots_frame(0.02, s) for s in range(20)]), (10, 1, 1))
    counter = load_counter(str(weights))
    count = np.array([r["count"] for r in count_stack(frames, counter, 2.0, bf16=False)])
    v = validation_error(counter.card, count)
    k = np.random.default_rng(3).normal(0.0, 1.0, 200)  # errors of about 1 v and 2 v
    truths = {"clean": count + k * v, "dark": count + 2.0 * k * v}
    bench = SimpleNamespace(
        clean_set=lambda n, cache, dark=False: (frames, truths["dark" if dark else "clean"]),
        store_note=lambda *a: "",
        SEED0=0,
        DARK_SEED0=1,
    )
    args = argparse.Namespace(
        fit_clean=200, fit_dark=200, cache=None, dark_cache=None, store=None, store_split="",
        store_from=0,
        scale_sets=["clean", "dark"], target=0.68, target2=0.94,
    )  # fmt: skip
    scale = script.fit_factors(args, bench, counter)["scale"]

    def cover(name: str, s: float) -> tuple[float, float]:
        z = np.abs(truths[name] - count) / (s * v)
        return float(np.mean(z <= 1.0)), float(np.mean(z <= 2.0))

    for name in truths:  # both sets meet both targets (to one frame in 200)...
        one, two = cover(name, scale)
        assert one >= 0.68 - 1 / 200 and two >= 0.94 - 1 / 200
    one, two = cover("dark", 0.97 * scale)  # ... and a smaller scale fails the second
    assert one < 0.68 - 1 / 200 or two < 0.94 - 1 / 200
    assert min(cover("clean", 0.5 * scale)) >= 0.68 - 1 / 200  # the first would take half


def test_camera_factors_are_fitted_on_their_frames(
    tmp_path, write_model, monkeypatch, load_script
) -> None:
    """``noise_n0`` is fitted so that, counted again with the written card, ±1σ holds the truth
    on 68 % of the noise set's frames and ±2σ on at least 94 %; the halo factor on the frames
    noted "halo" alone; the card's other factors are kept."""
    script = load_script("uncertainty_factors")
    pre = PreprocessConfig(model_pixel_size_um=6.0, output_shape=(96, 48))
    old = {"scale": 0.9, "unlike_scale": 4.0, "source": "fitted before"}
    card_fields = {"metrics": {"ccount_evaluate": {"bins": BINS}}, "uncertainty": old}
    weights = write_model(tmp_path / "m.safetensors", preprocess=pre, card=card_fields)
    # 50 frames from quiet to noisy (pixel noise about 0.03-0.35), none noted "halo".
    frames = np.stack([spots_frame(0.05 + 0.01 * s, s) for s in range(50)])
    counter = load_counter(str(weights))
    counter.card.pop("uncertainty")
    rows = count_stack(frames, counter, 2.0, bf16=False)
    assert not any("halo" in r["warning"] for r in rows)
    count = np.array([r["count"] for r in rows])
    # Each frame's truth lies k of its (scaled, unwidened) σ away, k growing with the noise.
    k = np.linspace(0.2, 8.0, 50)
    truth = count + k * 0.9 * validation_error(counter.card, count)
    monkeypatch.setattr(script, "camera_sets", lambda n: [("spots", frames, truth, 2.0, "noise")])
    card = weights.with_suffix(".json")
    argv = [str(weights), "--card", str(card), "--fit-clean", "0", "--fit-dark", "0"]
    monkeypatch.setattr(sys, "argv", ["uncertainty_factors.py", *argv, "--camera-crystals", "1"])
    with pytest.raises(SystemExit, match="no set to fit scale on"):  # it would fit scale too
        script.main()
    monkeypatch.setattr(sys, "argv", [*sys.argv, "--notes-only"])
    script.main()
    factors = json.loads(card.read_text())["uncertainty"]
    assert {key: factors[key] for key in old} == old
    assert factors["note_scales"] == {}  # no frame noted "halo"
    assert "from 50 of" in factors["note_source"] and "halo note 0" in factors["note_source"]
    rows = count_stack(frames, load_counter(str(weights)), 2.0, bf16=False)
    z = np.abs(np.array([r["count"] for r in rows]) - truth) / [r["uncertainty"] for r in rows]
    assert np.mean(z <= 1.0) == pytest.approx(0.68, abs=0.03)
    assert np.mean(z <= 2.0) >= 0.94
    # σ over its unwidened value grows with the frames' noise.
    sigma = np.array([r["uncertainty"] for r in rows])
    widened = sigma / (0.9 * validation_error(counter.card, np.array([r["count"] for r in rows])))
    assert widened[0] < 1.1 and widened[-1] > 2.0 and np.all(np.diff(widened[::10]) > 0)


def test_the_statistics_a_warning_names_are_read_back(load_script) -> None:
    """The beam factor is fitted on the frames warned for band_light or tip_light alone: the
    script reads the statistics back from the row's warning."""
    from ccount_core.nn.inputs import range_warnings

    script = load_script("uncertainty_factors")
    ranges = {name: {"min": 0.9, "max": 1.1} for name in ("band_light", "tip_light", "core_light")}
    stats = {"band_light": 1.5, "tip_light": 1.0, "core_light": 0.5}
    warning = "; ".join(["halo: 2 % ...", *range_warnings(stats, ranges)])
    assert script.unlike_statistics(warning) == {"band_light", "core_light"}
    assert script.unlike_statistics("halo: 2 % ...") == set()


def test_a_card_without_validation_bins_is_refused(
    tmp_path, write_model, monkeypatch, load_script
) -> None:
    """A card with no validation error per count (a fresh run's) has nothing to scale: one
    line naming what is missing, and the card is left as it was (it once got a NaN scale)."""
    script = load_script("uncertainty_factors")
    pre = PreprocessConfig(model_pixel_size_um=6.0, output_shape=(96, 48))
    weights = write_model(tmp_path / "m.safetensors", preprocess=pre)
    card = weights.with_suffix(".json")
    before = card.read_text()
    argv = ["uncertainty_factors.py", str(weights), "--card", str(card)]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit, match="no validation error per count"):
        script.main()
    assert card.read_text() == before
