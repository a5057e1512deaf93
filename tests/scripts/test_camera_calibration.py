"""scripts/camera_calibration.py: each term's exponent is fitted on each imperfect count over
its crystal's clean one and written into the card, with the model's own (uncalibrated) counts."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest


def test_the_exponents_are_fitted_on_pairs_and_written(
    tmp_path, write_model, monkeypatch, load_script
) -> None:
    script = load_script("camera_calibration")
    old = {"camera_calibration": {"noise_b": 9.0}}
    weights = write_model(tmp_path / "m.safetensors", card=old)
    card = weights.with_suffix(".json")
    rng = np.random.default_rng(1)
    measure = {"noise": rng.uniform(0.05, 0.2, (5, 40)) ** 2, "halo": rng.uniform(0, 0.03, (3, 40))}
    truth = {"noise": -3.0, "halo": 2.0}  # 3 % low at noise 0.1, 2 % high at halo 0.01
    seen = []

    def fake(counter, term, n):
        seen.append((term, n, "camera_calibration" in counter.card))
        return np.exp(truth[term] * measure[term]), measure[term]

    monkeypatch.setattr(script, "ratios", fake)
    argv = ["x", str(weights), "--card", str(card), "--crystals", "40"]
    monkeypatch.setattr(sys, "argv", argv)
    script.main()
    written = json.loads(card.read_text())
    cal = written["camera_calibration"]
    assert cal["noise_b"] == pytest.approx(-3.0, abs=1e-3)
    assert cal["halo_a"] == pytest.approx(2.0, abs=1e-3)
    assert "noise 200, halo 120 frames" in cal["source"]
    assert seen == [("noise", 40, False), ("halo", 40, False)]  # without the old calibration
    assert written["label_names"] == ["Ca+"]  # the rest of the card kept
    # One term alone: the other is not written.
    monkeypatch.setattr(sys, "argv", [*argv, "--terms", "halo"])
    script.main()
    assert set(json.loads(card.read_text())["camera_calibration"]) == {"halo_a", "source"}
