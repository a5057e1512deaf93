"""``ccount evaluate``: the summary it prints (the evaluation itself is stood in for)."""

from __future__ import annotations

from typing import Any

import pytest

from ccount_core.cli import main


def test_the_written_figure_is_named_by_a_clean_path(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def fake(model: Any, data: Any, out: Any, **kwargs: Any) -> dict[str, Any]:
        overall = {"n": 4, "rms": 1.0, "rms_percent": 1.0, "mean_percent_error": 0.5, "exact": 0.5}
        return {"overall": overall, "paper_comparison": [], "other_labels": {}}

    monkeypatch.setattr("ccount_core.nn.evaluate.evaluate", fake)
    assert main(["evaluate", "default", "val.zarr", "-o", "eval/"]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert last == "wrote eval/figure3.png, metrics.json, predictions.csv"
