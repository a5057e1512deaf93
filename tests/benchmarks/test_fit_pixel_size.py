"""benchmarks/fit_pixel_size.py on three real crystals at 2 and 5 µm pixels: it runs, keeps its
MD runs where it is told, and shows the footprint fit holding where the plain one moves."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_footprint_fit_stays_inside_the_outer_ions_at_coarse_pixels(tmp_path: Path) -> None:
    env = os.environ | {"PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT / 'benchmarks'}"}
    cmd = [sys.executable, str(ROOT / "benchmarks" / "fit_pixel_size.py"), "--crystals", "3"]
    cmd += ["--pixels", "2", "5", "--cache", str(tmp_path / "md")]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(list((tmp_path / "md").rglob("*.npy"))) == 3
    # | 5 | +8.0 / -3.8 | ... : the semi-minor axis against the outermost ions, without / with
    without, with_ = map(
        float, re.search(r"^\| 5 \| ([-+.\d]+) / ([-+.\d]+) \|", done.stdout, re.M).groups()
    )
    assert with_ < 0 < without
    spreads = dict(
        re.findall(r"^\| >= 80 ions \(\d+\) \| (with|without) \| ([.\d]+) /", done.stdout, re.M)
    )
    assert float(spreads["with"]) < float(spreads["without"])
