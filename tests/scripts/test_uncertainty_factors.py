"""scripts/uncertainty_factors.py --notes-only: a camera note's σ factor is fitted on the
frames that carry the note, and the card's other factors are kept."""

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


def test_a_note_factor_is_fitted_on_its_noted_frames(tmp_path, write_model, monkeypatch) -> None:
    spec = importlib.util.spec_from_file_location(
        "factors", ROOT / "scripts/uncertainty_factors.py"
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    pre = PreprocessConfig(model_pixel_size_um=6.0, output_shape=(96, 48))
    old = {"scale": 0.9, "unlike_scale": 4.0, "source": "fitted before"}
    card_fields = {"metrics": {"ccount_evaluate": {"bins": BINS}}, "uncertainty": old}
    weights = write_model(tmp_path / "m.safetensors", preprocess=pre, card=card_fields)
    noisy = np.stack([spots_frame(0.55, s) for s in range(24)])
    quiet = np.stack([spots_frame(0.05, s) for s in range(6)])
    frames = np.concatenate([noisy, quiet])
    counter = load_counter(str(weights))
    counter.card.pop("uncertainty")
    rows = count_stack(frames, counter, 2.0, bf16=False)
    assert all(r["warning"].startswith("noisy: ") for r in rows[:24])
    assert not any(r["warning"] for r in rows[24:])
    count = np.array([r["count"] for r in rows])
    # Each noisy frame's truth lies k of its (scaled) σ away; the quiet frames' far off.
    k = np.linspace(0.2, 3.0, 24)
    v = validation_error(counter.card, count)
    truth = count + np.concatenate([k * 0.9 * v[:24], 50.0 * v[24:]])
    monkeypatch.setattr(script, "camera_sets", lambda n: [("spots", frames, truth, 2.0)])
    card = weights.with_suffix(".json")
    argv = [str(weights), "--card", str(card), "--fit-clean", "0", "--fit-dark", "0"]
    monkeypatch.setattr(sys, "argv", ["uncertainty_factors.py", *argv, "--camera-crystals", "1"])
    with pytest.raises(SystemExit, match="no set to fit scale on"):  # it would fit scale too
        script.main()
    monkeypatch.setattr(sys, "argv", [*sys.argv, "--notes-only"])
    script.main()
    factors = json.loads(card.read_text())["uncertainty"]
    assert {key: factors[key] for key in old} == old
    want = max(np.quantile(k, 0.68), np.quantile(k, 0.94) / 2.0)
    assert factors["note_scales"] == {"noisy": pytest.approx(want, abs=0.006)}
    assert "noisy 24, halo 0" in factors["note_source"]
