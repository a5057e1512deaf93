"""Evaluation metrics on known predictions, the paper table and the Figure 3 PNG."""

from __future__ import annotations

import numpy as np
import pytest

from ccount_core.errors import InputError
from ccount_core.nn.evaluate import bin_metrics, evaluate, figure3, paper_table


def test_bin_metrics_on_known_predictions():
    true = np.array([50, 50, 50, 50, 148, 150, 152])
    pred = np.array([49.0, 51.0, 50.0, 54.0, 150.0, 140.0, 152.0])
    m = bin_metrics(pred, true)
    b50, b150 = m["bins"]
    assert (b50["bin"], b50["n"], b150["bin"], b150["n"]) == (50, 4, 150, 3)
    assert b50["mean"] == pytest.approx(51.0)
    assert b50["std"] == pytest.approx(np.std([49, 51, 50, 54], ddof=1))
    assert b50["rms"] == pytest.approx(np.sqrt((1 + 1 + 0 + 16) / 4))
    assert b50["mean_percent_error"] == pytest.approx(100 * (1 + 1 + 0 + 4) / 4 / 50)
    assert b50["exact"] == pytest.approx(0.25) and b50["bias"] == pytest.approx(1.0)
    # 148 and 152 fall in the 150 bin; errors 2, -10, 0
    assert b150["rms"] == pytest.approx(np.sqrt((4 + 100 + 0) / 3))
    assert b150["exact"] == pytest.approx(1 / 3)
    o = m["overall"]
    assert o["n"] == 7
    assert o["rms"] == pytest.approx(np.sqrt((1 + 1 + 0 + 16 + 4 + 100 + 0) / 7))
    rel = np.array([1, 1, 0, 4, 2, 10, 0]) / true
    assert o["rms_percent"] == pytest.approx(100 * np.sqrt(np.mean(rel**2)))
    rows = {r["ions"]: r for r in paper_table(m)}
    assert b150["error_std"] == pytest.approx(np.std([2, -10, 0], ddof=1))
    assert rows[50]["paper_std"] == 0.9
    assert rows[50]["std"] == pytest.approx(np.std([-1, 1, 0, 4], ddof=1))
    assert rows[250]["n"] == 0 and rows[250]["std"] is None


def test_figure3_png(tmp_path):
    rng = np.random.default_rng(0)
    true = np.repeat(np.arange(30, 360, 10), 25)
    pred = true + rng.normal(0, 0.02 * true)
    m = bin_metrics(pred, true)
    figure3(pred, true, m, tmp_path / "f.png")
    data = (tmp_path / "f.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_bad_evaluation_input(tmp_path):
    with pytest.raises(InputError, match="predictions"):
        bin_metrics(np.zeros(3), np.zeros(2))
    with pytest.raises(InputError, match="split"):
        evaluate(None, tmp_path, tmp_path / "out", split="everything")
    with pytest.raises(InputError, match="no such data set"):
        evaluate(None, tmp_path / "missing.zarr", tmp_path / "out")
