"""``ccount demo``: the README's main job writes the simulated crystal and the counts."""

from __future__ import annotations

import csv
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest

from ccount_core.cli import main
from ccount_core.cli.demo import count_sample
from ccount_core.image.io import open_stack


@pytest.mark.slow
def test_demo_simulates_and_counts_every_frame(
    tmp_path: Path, model_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "-o", str(out), "--model", str(model_file)]) == 0
    printed = capsys.readouterr().out

    crystal = open_stack(out / "simulated_crystal.tif")
    image = np.asarray(crystal.data[0])
    assert crystal.pixel_size_um == pytest.approx(1.0)
    # A prolate crystal in the middle of the frame, its long axis along the columns.
    rows, cols = np.nonzero(image > 0.2 * image.max())
    assert abs(rows.mean() - image.shape[0] / 2) < 10
    assert abs(cols.mean() - image.shape[1] / 2) < 10
    assert np.ptp(cols) > 1.5 * np.ptp(rows)
    assert (out / "simulated_crystal.png").stat().st_size > 0

    with (out / "counts.csv").open() as fh:
        table = list(csv.DictReader(line for line in fh if not line.startswith("#")))
    assert [int(r["frame"]) for r in table] == list(range(16))
    assert all(np.isfinite(float(r["count"])) for r in table)
    assert all(np.isfinite(float(r["count_ND3+"])) for r in table)
    assert all(float(r["uncertainty"]) > 0 for r in table)  # test-time views differ
    assert (out / "counts.png").stat().st_size > 0
    assert "counted 16 frames" in printed
    sample = Path(str(files("ccount_core.data") / "reaction_series.tif"))
    assert f"counting the 16 frames of the bundled sample series {sample}\n" in printed
    assert printed.count("\n") > 16  # the table is printed, one line per frame
    assert "ND3+" in printed.split("counted 16 frames")[0]  # with the dark count's column


def test_demo_without_a_model_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(
        "ccount_core.nn.model.default_model_path", lambda: tmp_path / "none.safetensors"
    )
    assert count_sample(tmp_path, None) is None
    assert "no default model" in capsys.readouterr().out
    assert not (tmp_path / "counts.csv").exists()
