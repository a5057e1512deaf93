"""scripts/count_calibration.py: the fitted map takes the counts to their truth, and a card
that carries it counts through it (the first label; the weights untouched)."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from ccount_core.dataset.samples import load_sample
from ccount_core.nn.calibration import apply_calibration
from ccount_core.nn.count import count_stack
from ccount_core.nn.ensemble import load_counter
from ccount_core.nn.model import default_model_path


def test_a_card_with_the_map_counts_through_it(tmp_path: Path, load_script) -> None:
    script = load_script("count_calibration")
    shipped = json.loads(default_model_path().with_suffix(".json").read_text())
    # A model that reads 8 % low and 2 ions high, over the card's range.
    truth = np.linspace(30.0, 350.0, 200)
    count = 0.92 * truth + 2.0
    args = argparse.Namespace(crystals=200, step=20.0, smooth=1.0)
    card = script.calibrated(shipped, count, truth, args)
    mapping = card["calibration"]["Ca+"]
    np.testing.assert_allclose(apply_calibration(count, mapping), truth, atol=0.5)
    assert card["calibration_data"]["renders"] == 200
    assert {k: v for k, v in card.items() if "calibration" not in k} == {
        k: v for k, v in shipped.items() if "calibration" not in k
    }

    # Counting with the card goes through the map.
    (tmp_path / "model.json").write_text(json.dumps(card))
    shutil.copyfile(default_model_path(), tmp_path / "model.safetensors")
    stack, meta = load_sample("single_crystal")
    px = meta["pixel_size_um"]
    raw = count_stack(stack[:2], load_counter("default"), px, bf16=False)
    mapped = count_stack(stack[:2], load_counter(str(tmp_path / "model.json")), px, bf16=False)
    for r, m in zip(raw, mapped, strict=True):  # (the camera's correction follows the map)
        expected = apply_calibration(np.array([r["count"]]), mapping)[0]
        assert m["count"] == pytest.approx(expected, rel=1e-3)
        assert m["count"] > r["count"] * 1.05  # the map raises counts read 8 % low
