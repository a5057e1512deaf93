"""``ccount count``: what it says about a run: frames counted, not counted, nothing left."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ccount_core.cli import main


def crystals(frames: int) -> np.ndarray:
    """``frames`` uint16 frames of a bright elliptical crystal of spots on a noisy background."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:64, :96]
    out = np.empty((frames, 64, 96), np.float32)
    for f in range(frames):
        image = rng.normal(100.0, 3.0, (64, 96))
        t, r = rng.uniform(0, 2 * np.pi, 40), np.sqrt(rng.uniform(0, 1, 40))
        for y, x in zip(32 + 10 * r * np.sin(t), 48 + 25 * r * np.cos(t), strict=True):
            image += 300.0 * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / 4.0)
        out[f] = image
    return out.astype(np.uint16)


def test_the_summary_counts_only_counted_frames_and_says_why_others_were_not(
    tmp_path: Path, model_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import tifffile

    frames = crystals(3)
    frames[1] = 7  # constant: not counted
    tifffile.imwrite(tmp_path / "stack.tif", frames, photometric="minisblack")
    out = tmp_path / "counts.csv"
    argv = ["count", str(tmp_path / "stack.tif"), "-o", str(out), "--model", str(model_file)]
    assert main([*argv, "--pixel-size-um", "1.0", "--threads", "1"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"counted 2 of 3 frames into {out}")
    assert line.endswith("; 1 not counted: constant image (every pixel = 7); no crystal to find")


def test_a_rerun_says_every_frame_was_already_counted(
    tmp_path: Path, model_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import tifffile

    frames = crystals(5)
    tifffile.imwrite(tmp_path / "stack.tif", frames, photometric="minisblack")
    out = tmp_path / "counts.csv"
    argv = ["count", str(tmp_path / "stack.tif"), "-o", str(out), "--model", str(model_file)]
    argv += ["--pixel-size-um", "1.0", "--threads", "1"]
    assert main(argv) == 0
    assert "counted 5 of 5 frames" in capsys.readouterr().out
    written = out.read_text()
    assert main(argv) == 0
    assert capsys.readouterr().out.strip() == (
        f"all 5 frames were already counted in {out}; nothing to do"
    )
    assert out.read_text() == written
