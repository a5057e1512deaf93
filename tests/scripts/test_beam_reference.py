"""scripts/beam_reference.py: the reference is the clean renders' mean envelope curvature as the
card's pipeline prepares them, and beam_noise the grid value with the least error; both are
written into the card's preprocess, the rest of the card kept."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from ccount_core.image.beam import beam_curvature
from ccount_core.image.preprocess import PreprocessConfig, prepare_frame
from ccount_core.nn.inputs import prepared_outline

ROOT = Path(__file__).resolve().parents[2]


def load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def script():
    return load("beam_reference", ROOT / "scripts/beam_reference.py")


def crystals(n: int) -> np.ndarray:
    """``n`` synthetic evenly lit crystals, 240 x 320 px (trap axis horizontal)."""
    synthetic = load("synthetic_crystals", ROOT / "tests/core/image/synthetic_crystals.py")
    return np.stack(
        [
            synthetic.synthetic_crystal((240, 320), (120.0, 160.0), a_t=70.0 + 5 * i, seed=i)[0]
            for i in range(n)
        ]
    )


def test_the_reference_is_the_clean_frames_mean_curvature(
    script, tmp_path, write_model, monkeypatch, capsys
) -> None:
    frames = crystals(6)
    cache = tmp_path / "clean.npz"
    np.savez(cache, frames=frames, truth=np.full(6, 100))
    weights = write_model(tmp_path / "m.safetensors")
    card = weights.with_suffix(".json")
    cfg = PreprocessConfig.from_dict(json.loads(card.read_text())["preprocess"])
    argv = ["x", "--card", str(card), "--crystals", "4", "--check", "2", "--cache", str(cache)]
    monkeypatch.setattr(sys, "argv", argv)
    script.main()
    written = json.loads(card.read_text())
    ref = PreprocessConfig.from_dict(written["preprocess"]).beam_reference
    expected = []
    for frame in frames[:4]:
        img, ell = prepare_frame(frame, cfg, camera_pixel_size_um=2.0)
        expected.append(beam_curvature(img, prepared_outline(ell, cfg, 2.0)))
    assert ref == pytest.approx(tuple(np.mean(expected, axis=0)), abs=1e-3)
    assert "beam_noise" not in written["preprocess"]  # not asked for
    assert written["label_names"] == ["Ca+"]  # the rest of the card kept
    assert "held out: 0 of 2 would be flattened" in capsys.readouterr().out


def test_beam_noise_is_the_grid_value_with_the_least_error(
    script, tmp_path, write_model, monkeypatch
) -> None:
    weights = write_model(tmp_path / "m.safetensors")
    truth = np.full(4, 100.0)
    monkeypatch.setattr(script, "noise_set", lambda n: (np.zeros((4, 8, 8)), truth))
    seen = []

    def count_stack(frames, counter, px, batch_size):
        value = counter.card["preprocess"].get("beam_noise", 0.0)
        assert all(c["preprocess"] == counter.card["preprocess"] for _, c in counter.members)
        seen.append(value)
        return [{"count": 100.0 * (1.0 + abs(value - 0.07))} for _ in truth]

    monkeypatch.setattr(script, "count_stack", count_stack)
    preprocess = {**json.loads(weights.with_suffix(".json").read_text())["preprocess"]}
    assert script.fit_beam_noise(weights.with_suffix(".json"), preprocess, 4) == 0.07
    assert seen == list(script.GRID)
