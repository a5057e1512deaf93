"""scripts/noise_calibration.py: b is fitted on each noisy count over its crystal's noiseless
one and written into the card, with the model's own (uncalibrated) counts."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_b_is_fitted_on_pairs_and_written(tmp_path, write_model, monkeypatch) -> None:
    spec = importlib.util.spec_from_file_location("calib", ROOT / "scripts/noise_calibration.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    weights = write_model(tmp_path / "m.safetensors", card={"noise_calibration": {"b": 9.0}})
    card = weights.with_suffix(".json")
    rng = np.random.default_rng(1)
    clean = rng.uniform(30.0, 350.0, 40)
    noise = rng.uniform(0.05, 0.2, (5, 40))
    noisy = clean * np.exp(-3.0 * noise**2)  # the model reads 3 % low at noise 0.1
    seen = []

    def fake(counter, n):
        seen.append((n, "noise_calibration" in counter.card))
        return clean, noisy, noise

    monkeypatch.setattr(script, "counts_and_noise", fake)
    monkeypatch.setattr(sys, "argv", ["x", str(weights), "--card", str(card), "--crystals", "40"])
    script.main()
    written = json.loads(card.read_text())
    assert written["noise_calibration"]["b"] == pytest.approx(-3.0, abs=1e-3)
    assert "200 frames" in written["noise_calibration"]["source"]
    assert seen == [(40, False)]  # counted without the card's old calibration
    assert written["label_names"] == ["Ca+"]  # the rest of the card kept
