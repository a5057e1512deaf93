"""scripts/uncertainty_factors.py --notes-only: the camera factors are fitted on their frames,
and the card's other factors are kept."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from ccount_core.image.preprocess import PreprocessConfig
from ccount_core.nn.count import count_stack, validation_error
from ccount_core.nn.ensemble import load_counter

ROOT = Path(__file__).resolve().parents[2]
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


def test_camera_factors_are_fitted_on_their_frames(tmp_path, write_model, monkeypatch) -> None:
    """``noise_n0`` is fitted so that, counted again with the written card, ±1σ holds the truth
    on 68 % of the noise set's frames and ±2σ on at least 94 %; the halo factor on the frames
    noted "halo" alone; the card's other factors are kept."""
    spec = importlib.util.spec_from_file_location(
        "factors", ROOT / "scripts/uncertainty_factors.py"
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
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
    assert "from 50 of" in factors["note_source"] and "halo 0" in factors["note_source"]
    rows = count_stack(frames, load_counter(str(weights)), 2.0, bf16=False)
    z = np.abs(np.array([r["count"] for r in rows]) - truth) / [r["uncertainty"] for r in rows]
    assert np.mean(z <= 1.0) == pytest.approx(0.68, abs=0.03)
    assert np.mean(z <= 2.0) >= 0.94
    # σ over its unwidened value grows with the frames' noise.
    sigma = np.array([r["uncertainty"] for r in rows])
    widened = sigma / (0.9 * validation_error(counter.card, np.array([r["count"] for r in rows])))
    assert widened[0] < 1.1 and widened[-1] > 2.0 and np.all(np.diff(widened[::10]) > 0)


def test_the_statistics_a_warning_names_are_read_back() -> None:
    """The beam factor is fitted on the frames warned for band_light or tip_light alone: the
    script reads the statistics back from the row's warning."""
    from ccount_core.nn.inputs import range_warnings

    spec = importlib.util.spec_from_file_location(
        "factors", ROOT / "scripts/uncertainty_factors.py"
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    ranges = {name: {"min": 0.9, "max": 1.1} for name in ("band_light", "tip_light", "core_light")}
    stats = {"band_light": 1.5, "tip_light": 1.0, "core_light": 0.5}
    warning = "; ".join(["halo: 2 % ...", *range_warnings(stats, ranges)])
    assert script.unlike_statistics(warning) == {"band_light", "core_light"}
    assert script.unlike_statistics("halo: 2 % ...") == set()
