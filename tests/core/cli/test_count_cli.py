"""``ccount count``: what it says when a rerun finds nothing left to count."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ccount_core.cli import main


def test_a_rerun_says_every_frame_was_already_counted(
    tmp_path: Path, model_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import tifffile

    frames = np.random.default_rng(0).integers(0, 4000, (5, 48, 64), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "stack.tif", frames, photometric="minisblack")
    out = tmp_path / "counts.csv"
    argv = ["count", str(tmp_path / "stack.tif"), "-o", str(out), "--model", str(model_file)]
    argv += ["--pixel-size-um", "1.0", "--threads", "1"]
    assert main(argv) == 0
    assert "counted 5 frames" in capsys.readouterr().out
    written = out.read_text()
    assert main(argv) == 0
    assert capsys.readouterr().out.strip() == (
        f"all 5 frames were already counted in {out}; nothing to do"
    )
    assert out.read_text() == written
