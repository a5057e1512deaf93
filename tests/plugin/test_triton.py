"""Counting inside a running napari must not crash on torch's triton (Mesa LLVM clash)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.gui

SCRIPT = textwrap.dedent(
    """
    import sys
    import napari
    from napari_ccount._widgets.count import run_count
    from ccount_core.dataset.samples import load_sample

    viewer = napari.Viewer(show=False)   # OpenGL canvas first, as in a real session
    assert "torchvision" not in sys.modules
    stack, meta = load_sample("reaction_series")
    out = run_count(stack[:2], None, batch_size=2, tta=0, pixel_size_um=1.5,
                    frame_interval_s=10.0)
    print(len(out["rows"]), out["device"])
    """
)


def test_model_loads_after_the_canvas_exists() -> None:
    """The default model is loaded in a fresh process whose napari canvas already exists."""
    res = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr[-2000:]
    n_rows, device = res.stdout.split()[-2:]
    assert n_rows == "2"
    assert device in ("cpu", "cuda:0")
