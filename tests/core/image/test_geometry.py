"""Crystal sizes against CCMD (two small rows of its table) and the measurement itself.

The full comparison is benchmarks/ccmd_geometry.py (docs/CCMD_COMPARISON.md)."""

from __future__ import annotations

import numpy as np
import pytest

from ccount_core.errors import InputError
from ccount_core.image.geometry import measure_crystal_size, to_ccmd_8bit
from ccount_core.simulation import IonGroup, SimulationSettings, TrapSettings, simulate
from ccount_core.simulation.render import ImagingSettings

# Rows of benchmarks/data/ccmd_crystal_geometry.csv (CCMD, pure Ca+; data rows counted from 0,
# the header not counted; benchmarks/data/README.md says how CCMD made them):
# (row, eta, V_RF V, V_end V, Ca+, length µm, width µm)
CCMD_ROWS = [
    (560, 0.1, 180.0, 4.0, 50, 228.10, 78.77),
    (4692, 0.2, 240.0, 4.6, 100, 213.88, 94.86),
]


@pytest.mark.parametrize(("row", "eta", "vrf", "vend", "n", "length", "width"), CCMD_ROWS)
def test_crystal_size_matches_ccmd_within_5_percent(
    row: int, eta: float, vrf: float, vend: float, n: int, length: float, width: float
) -> None:
    trap = TrapSettings.from_lab_units(v_rf=vrf, v_end=vend, eta=eta)
    result = simulate(
        trap, [IonGroup("Ca+", n)], SimulationSettings(seed=row), ImagingSettings()
    )  # CCMD's imaging: 1 px/µm, 5 µm, 50 µm, 640 × 480
    size = measure_crystal_size(result.image)
    assert size.length_um == pytest.approx(length, rel=0.05)
    assert size.width_um == pytest.approx(width, rel=0.05)


def test_measurement_recovers_a_drawn_ellipse() -> None:
    rows, cols = np.indices((480, 640))
    a, b = 180.0, 55.0  # semi-axes, px
    img = (((cols - 320) / a) ** 2 + ((rows - 240) / b) ** 2 <= 1.0).astype(float)
    size = measure_crystal_size(img, pixel_size_um=1.5)
    # The outline is the innermost ring of mask pixels: ~0.5 px inside the true edge.
    assert size.length_um == pytest.approx(2 * a * 1.5, rel=0.01)
    assert size.width_um == pytest.approx(2 * b * 1.5, rel=0.02)
    assert size.centre_px == pytest.approx((240, 320), abs=0.5)


def test_threshold_is_ccmds_8bit_level_5() -> None:
    img = np.array([[0.0, 5.9 / 254, 6.0 / 254, 1.0]])
    assert to_ccmd_8bit(img).tolist() == [[0, 5, 6, 254]]
    with pytest.raises(InputError, match="no crystal"):
        measure_crystal_size(np.zeros((480, 640)))
