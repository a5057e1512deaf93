"""The batched torch simulator against the Numba one (``simulate``) and ``render``."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from ccount_core.errors import InputError
from ccount_core.simulation import CameraModel, IonGroup, SimulationSettings, TrapSettings, simulate
from ccount_core.simulation.batch import CrystalSpec, _normals, simulate_batch
from ccount_core.simulation.batch_render import render_batch
from ccount_core.simulation.render import ImagingSettings, render

TRAP = TrapSettings.from_lab_units(v_rf=200.0, v_end=2.3375, eta=0.244)
SHORT = SimulationSettings(equilibrate_periods=20, gather_periods=20, samples=20)


def _short(**changes: float) -> SimulationSettings:
    fields = {"equilibrate_periods": 20, "gather_periods": 20, "samples": 20} | changes
    return SimulationSettings(**fields)


def test_at_zero_temperature_the_batch_follows_the_numba_trajectory() -> None:
    """No noise: start, FIRE, RF maps, two species and sampling agree with simulate()
    to rounding."""
    ions = [IonGroup("Ca+", 30), IonGroup("ND3+", 10)]
    settings = _short(seed=5, temperature=0.0)
    ref = simulate(TRAP, ions, settings)
    got = simulate_batch([CrystalSpec(TRAP, ions, seed=5)], settings, keep_samples=True)
    scale = np.abs(ref.positions).max()
    assert np.abs(got.positions[0].numpy() - ref.positions).max() < 1e-9 * scale
    assert np.abs(got.samples[0].numpy() - ref.samples).max() < 1e-9 * scale
    np.testing.assert_array_equal(got.species_index[0].numpy(), ref.species_index)
    assert int(got.relax_iterations[0]) == ref.info["steps"]["relax"]


def test_a_mixed_batch_equals_its_crystals_run_one_by_one() -> None:
    """Different ion numbers, species and traps in one batch (padding) give each crystal
    the trajectory it has alone: the noise is keyed by the crystal's seed."""
    other = TrapSettings.from_lab_units(v_rf=240.0, v_end=3.0, eta=0.2)
    specs = [
        CrystalSpec(TRAP, [IonGroup("Ca+", 25)], seed=1),
        CrystalSpec(other, [IonGroup("Ca+", 12), IonGroup("CaF+", 6)], seed=2),
        CrystalSpec(other, [IonGroup("Ca+", 8)], seed=3),
    ]
    settings = _short()
    batch = simulate_batch(specs, settings)
    for b, spec in enumerate(specs):
        alone = simulate_batch([spec], settings)
        n = int(alone.mask.sum())
        got = batch.positions[b, :n].numpy()
        np.testing.assert_allclose(got, alone.positions[0].numpy(), rtol=0, atol=1e-6 * 1e-4)
        assert not bool(batch.escaped[b])


def test_padded_ions_stay_inert() -> None:
    specs = [
        CrystalSpec(TRAP, [IonGroup("Ca+", 20)], 1),
        CrystalSpec(TRAP, [IonGroup("Ca+", 5)], 2),
    ]
    result = simulate_batch(specs, _short(), ImagingSettings.from_lab_units(shape=(60, 80)))
    pad = ~result.mask[1]
    assert int(pad.sum()) == 15
    assert torch.all(result.velocities[1][pad] == 0)
    np.testing.assert_array_equal(result.positions[1][pad][:, 0].numpy(), 10.0 + np.arange(5, 20))
    assert torch.all(result.species_index[1][pad] == -1)
    assert not bool(result.fluorescing[1][pad].any())
    assert float(result.images[1].sum()) > 0


def test_a_light_dark_species_forms_the_core() -> None:
    """Ca+ with ND3+ (20 u, dark): the dark ions gather nearer the axis and do not shine."""
    spec = CrystalSpec(TRAP, [IonGroup("Ca+", 40), IonGroup("ND3+", 20)], seed=4)
    result = simulate_batch([spec], _short())
    pos, index = result.positions[0].numpy(), result.species_index[0].numpy()
    radius = np.hypot(pos[:, 0], pos[:, 1])
    assert radius[index == 1].max() < radius[index == 0].mean()
    np.testing.assert_array_equal(result.fluorescing[0].numpy(), index == 0)


@pytest.mark.slow
def test_geometry_matches_the_numba_path_within_scatter() -> None:
    """50 Ca+ ions, default schedule, 3 seeds each: rms radial and axial sizes agree within
    1.5 % (seed-to-seed scatter at 10 mK is ≈ 1 %)."""
    settings = SimulationSettings()
    ions = [IonGroup("Ca+", 50)]
    ref, got = [], []
    specs = [CrystalSpec(TRAP, ions, seed=s) for s in range(3)]
    batch = simulate_batch(specs, settings, keep_samples=True)
    for s in range(3):
        r = simulate(TRAP, ions, SimulationSettings(seed=s))
        ref.append(np.sqrt((r.samples**2).mean((0, 1))))
        got.append(np.sqrt((batch.samples[s].numpy() ** 2).mean((0, 1))))
    ref_r, got_r = np.mean(ref, 0), np.mean(got, 0)
    assert abs(np.hypot(*got_r[:2]) / np.hypot(*ref_r[:2]) - 1) < 0.015
    assert abs(got_r[2] / ref_r[2] - 1) < 0.015


@pytest.mark.parametrize(
    "imaging",
    [
        ImagingSettings.from_lab_units(pixel_size_um=2.0, shape=(60, 90)),
        ImagingSettings.from_lab_units(
            pixel_size_um=1.5,
            shape=(70, 64),
            rotation_deg=20.0,
            focal_offset_um=12.0,
            view_azimuth_deg=0.0,
            defocus_weighting="flux",
        ),
    ],
)
def test_render_batch_equals_render(imaging: ImagingSettings) -> None:
    """Two crystals of different sizes (padding), some ions dark, some outside the frame."""
    rng = np.random.default_rng(0)
    a = rng.normal(0, [25e-6, 25e-6, 60e-6], size=(6, 40, 3))
    b = rng.normal(0, [15e-6, 15e-6, 30e-6], size=(6, 40, 3))
    lit = np.ones((2, 40), bool)
    lit[0, ::5] = False
    lit[1, 25:] = False
    b[:, 25:] = np.nan  # padding: never looked at
    samples = torch.from_numpy(np.stack([a, b]))
    got = render_batch(samples, torch.from_numpy(lit), imaging).numpy()
    for k, pts in enumerate((a, b)):
        ref = render(np.nan_to_num(pts), lit[k], imaging)
        assert np.abs(got[k] - ref).max() <= 1e-6 * ref.max()


def test_render_batch_with_float32_positions() -> None:
    imaging = ImagingSettings.from_lab_units(pixel_size_um=2.0, shape=(60, 90))
    pts = np.random.default_rng(1).normal(0, [20e-6, 20e-6, 50e-6], size=(1, 8, 30, 3))
    ref = render(pts[0], np.ones(30, bool), imaging)
    got = render_batch(torch.from_numpy(pts).float(), torch.ones(1, 30, dtype=torch.bool), imaging)
    assert got.dtype == torch.float32
    # float32 positions may move a point on a pixel edge: compare the light, not each pixel
    assert abs(float(got.sum()) - ref.sum()) < 1e-4 * ref.sum()
    assert np.abs(got[0].numpy() - ref).mean() < 1e-3 * ref.max()


def test_noise_is_standard_normal() -> None:
    lanes = torch.arange(4 * 5000).view(1, 4, 5000)
    keys = torch.tensor([12345])
    draws = torch.cat([_normals(lanes, keys, s, torch.float64).flatten() for s in range(5)])
    assert abs(float(draws.mean())) < 0.01
    assert abs(float(draws.std()) - 1) < 0.01
    assert abs(float((draws**4).mean()) - 3) < 0.1
    other = _normals(lanes, keys, 1, torch.float64)
    assert not torch.equal(_normals(lanes, keys, 0, torch.float64), other)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"crystals": []}, "crystals"),
        ({"crystals": [CrystalSpec(TRAP, [("Ca+", -1)])]}, "must not be negative"),
        (
            {"crystals": [CrystalSpec(TrapSettings(v_rf=200.0, v_end=-1.0), [IonGroup("Ca+", 5)])]},
            "crystals[0]: v_end",
        ),
        ({"settings": SimulationSettings(mode="pseudo")}, "RF field only"),
        ({"dtype": torch.float16}, "dtype"),
        (
            {"imaging": ImagingSettings(camera=CameraModel())},
            "camera",
        ),
    ],
)
def test_bad_input_is_one_line(kwargs: dict, words: str) -> None:
    args = {"crystals": [CrystalSpec(TRAP, [IonGroup("Ca+", 5)])], "settings": SHORT} | kwargs
    with pytest.raises(InputError) as err:
        simulate_batch(**args)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_the_simulation_package_stays_torch_free() -> None:
    """Only batch.py and batch_render.py import torch; `import ccount_core.simulation` does not."""
    code = "import sys, ccount_core.simulation; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
