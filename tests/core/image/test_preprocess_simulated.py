"""The ellipse fit on a crystal from the project's own simulator and renderer (CCMD-like image).

Truth: an ellipsoid z²/A² + r²/B² = 1 fitted by least squares to the outer-shell ions of the
simulated positions (r = distance from the trap axis), independent of the image.
"""

from __future__ import annotations

import numpy as np
import pytest

from ccount_core.image.preprocess import PreprocessConfig, fit_ellipse, prepare_frame
from ccount_core.simulation import IonGroup, SimulationSettings, TrapSettings, simulate
from ccount_core.simulation.render import ImagingSettings


def test_fit_on_simulated_crystal_matches_outer_shell() -> None:
    trap = TrapSettings.from_lab_units(v_rf=200.0, v_end=2.3375)
    imaging = ImagingSettings(rotation_deg=8.0)  # 1 µm/px, 480 x 640, blur 5 µm, dof 50 µm
    res = simulate(trap, [IonGroup("Ca+", 200)], SimulationSettings(seed=2, mode="pseudo"), imaging)
    p = res.positions * 1e6  # µm = px
    z, r = np.abs(p[:, 2]), np.hypot(p[:, 0], p[:, 1])
    outer = np.hypot(z / z.max(), r / r.max()) > 0.85
    inv2, *_ = np.linalg.lstsq(
        np.column_stack([z[outer] ** 2, r[outer] ** 2]), np.ones(outer.sum()), rcond=None
    )
    a_true, b_true = 1 / np.sqrt(inv2)

    ell = fit_ellipse(res.image)
    # Trap centre = image centre; real crystals have ragged tips (a few ions), so along the
    # 300 µm axis the outline's centre is allowed 2 px (< 1 % of the length).
    assert abs(ell.center_row - 239.5) < 1.0 and abs(ell.center_col - 319.5) < 2.0
    assert abs(ell.angle_deg - 8.0) < 1.0
    # The ring of a shell seen in projection (dof 50 µm) peaks slightly inside its limb.
    assert ell.semi_major == pytest.approx(a_true, rel=0.03)
    assert ell.semi_minor == pytest.approx(b_true, rel=0.06)
    assert ell.quality > 0.5

    cfg = PreprocessConfig()
    out, _ = prepare_frame(res.image, cfg, camera_pixel_size_um=1.0)
    ys, xs = np.nonzero(out)
    # Vertical, centred, physical scale kept (3 µm/px): the crystal's length in rows.
    assert abs(ys.mean() - 159.5) < 2 and abs(xs.mean() - 95.5) < 2
    assert (ys.max() - ys.min()) * 3.0 == pytest.approx(2 * a_true, rel=0.1)


def test_hollow_core_split_in_two_still_fits_the_whole_crystal() -> None:
    """Late frames of the sample series: the Ca+ shell shows as two bright rows around a wide
    dark ND3+ core. The fit must span both rows, not latch onto one of them."""
    from ccount_core.dataset.samples import load_sample

    stack, _ = load_sample("reaction_series")
    first = fit_ellipse(stack[0])
    for i in range(len(stack)):
        ell = fit_ellipse(stack[i])
        assert abs(ell.center_row - first.center_row) < 2.0, i
        assert abs(ell.center_col - first.center_col) < 5.0, i
        assert ell.semi_minor == pytest.approx(first.semi_minor, rel=0.08), i
