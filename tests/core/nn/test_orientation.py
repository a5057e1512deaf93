"""A crystal's count does not depend on how the camera is turned or where the crystal sits
(issue 27, point 1): the shipped default model on one simulated crystal at twelve angles."""

from __future__ import annotations

import numpy as np
import pytest

from ccount_core.nn.count import count_stack
from ccount_core.nn.ensemble import load_counter
from ccount_core.simulation import IonGroup, SimulationSettings, TrapSettings, simulate
from ccount_core.simulation.render import ImagingSettings, render

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]

ANGLES = range(0, 360, 30)  # deg, counter-clockwise as displayed


def test_any_angle_and_an_off_centre_crystal_give_the_same_count() -> None:
    trap = TrapSettings.from_lab_units(v_rf=200.0, v_end=2.3375)
    md = simulate(trap, [IonGroup("Ca+", 150)], SimulationSettings(seed=123), None)
    lit = np.ones(md.samples.shape[1], bool)

    def frame(angle: float, shape: tuple[int, int] = (400, 400)) -> np.ndarray:
        imaging = ImagingSettings.from_lab_units(pixel_size_um=1.5, shape=shape, rotation_deg=angle)
        return 1000.0 * render(md.samples, lit, imaging)

    frames = [frame(a) for a in ANGLES]
    # Off centre: the crystal 40 px up and 55 px left of the frame's centre, at two angles.
    frames += [frame(a, (480, 510))[:400, :400] for a in (0.0, 75.0)]
    rows = count_stack(np.stack(frames), load_counter("default"), 1.5, bf16=False)
    counts = np.array([r["count"] for r in rows], dtype=float)
    assert np.all(np.isfinite(counts)), [r["warning"] for r in rows]
    # Within 3.5 % of their mean (before issue 27: 20 % off or refused at a vertical axis).
    # Measured: 3.1 % with the preparation the shipped model was trained with, 1.8 % with the
    # area resampling and canonical turn a retrained model can opt into (docs/BENCHMARKS.md,
    # "Orientation"); the goal, 1 %, is not reached by the shipped model: the rest is
    # the fit's centre and angle moving with the pixel grid, and, without the canonical turn,
    # the model counting a frame and its 180° turn apart. A model trained with the turn and the
    # symmetry refinement (run_c4, not shipped) spreads 0.24 % on this crystal.
    assert np.abs(counts / counts.mean() - 1.0).max() <= 0.035, counts
    # With one test-time view, the prepared image turned by 180°, both turns are counted and
    # averaged: measured 0.99 % (a random view instead: 2.1 %).
    rows = count_stack(np.stack(frames), load_counter("default"), 1.5, tta=1, bf16=False)
    counts = np.array([r["count"] for r in rows], dtype=float)
    assert np.abs(counts / counts.mean() - 1.0).max() <= 0.015, counts
