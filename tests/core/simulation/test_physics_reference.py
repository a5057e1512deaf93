"""The simulator against independent physics, each within 1% (docs/PHYSICS.md, section 6).

Reference values from the literature: the equilibrium positions of ions in a linear chain
(D. F. V. James, Appl. Phys. B 66, 181 (1998)), the linear-to-zigzag thresholds of the radial
to axial trap frequency ratio (J. P. Schiffer, Phys. Rev. Lett. 70, 818 (1993); N = 3 is
√(12/5) exactly), and the ground-state energies per ion of spherical Coulomb clusters in an
isotropic harmonic trap, E = Σ r_i² + Σ_{i<j} 1/r_ij in dimensionless units.
"""

from __future__ import annotations

import numpy as np
import pytest

from ccount_core.simulation import IonGroup, SimulationSettings, TrapSettings, get_species, simulate
from ccount_core.simulation.equilibrium import (
    chain_positions,
    ground_state,
    length_unit,
    zigzag_threshold,
)
from ccount_core.simulation.integrate import IonSystem, Thermostat, run_steps

JAMES = {
    2: [0.62996],
    3: [0, 1.07722],
    4: [0.45438, 1.43680],
    5: [0, 0.82210, 1.74290],
    6: [0.36992, 1.13613, 2.01227],
    7: [0, 0.68694, 1.41292, 2.25454],
    8: [0.31802, 0.96701, 1.66206, 2.47582],
    9: [0, 0.59958, 1.21947, 1.88970, 2.68026],
    10: [0.28210, 0.85378, 1.45038, 2.10003, 2.87083],
}
ZIGZAG = {3: 1.549, 4: 2.038, 5: 2.498, 10: 4.596}
CLUSTER_E_PER_ION = {
    2: 0.75,
    3: 1.310371,
    4: 1.785826,
    5: 2.245187,
    10: 4.164990,
    12: 4.838966,
    13: 5.166798,
    20: 7.247181,
    30: 9.838965,
}


def _full_chain(n: int) -> np.ndarray:
    half = np.asarray(JAMES[n])
    return np.sort(np.concatenate([-half[half > 0], half]))


@pytest.mark.parametrize("n", range(2, 11))
def test_james_chain_from_energy_minimum(n: int) -> None:
    z = chain_positions(n)
    assert z == pytest.approx(_full_chain(n), abs=0.01 * 0.5)  # 1% of the smallest spacing


@pytest.mark.parametrize("n", [2, 5, 10])
def test_james_chain_from_molecular_dynamics_in_the_rf_trap(n: int) -> None:
    # tight radially (q 0.27), weak axially: a linear chain; T = 0 and axial cooling
    trap = TrapSettings.from_lab_units(v_rf=400.0, v_end=0.5)
    ca = get_species("Ca+")
    f_r, f_z = trap.secular_frequencies(ca)
    assert f_r / f_z > 1.5 * ZIGZAG[10]
    settings = SimulationSettings(
        temperature=0.0,
        cooling_rate=2 * np.pi * f_z * 2,
        seed=n,
        equilibrate_periods=600,
        gather_periods=20,
        samples=10,
    )
    res = simulate(trap, [IonGroup(ca, n)], settings)
    ell = length_unit(ca, 2 * np.pi * f_z)
    z = np.sort(res.positions[:, 2]) / ell
    assert z == pytest.approx(_full_chain(n), abs=0.01 * 0.5)
    assert np.abs(res.positions[:, :2]).max() < 0.01 * ell


@pytest.mark.parametrize("n", sorted(ZIGZAG))
def test_linear_to_zigzag_threshold(n: int) -> None:
    assert zigzag_threshold(n) == pytest.approx(ZIGZAG[n], rel=0.01)


def test_spherical_cluster_ground_states() -> None:
    rng = np.random.default_rng(7)
    for n, e_ref in CLUSTER_E_PER_ION.items():
        pos, e = ground_state(n, (2.0, 2.0, 2.0), starts=2 if n < 20 else 4, rng=rng)
        assert e / n == pytest.approx(e_ref, rel=0.01), n
        assert e / n == pytest.approx(e_ref, rel=1e-5), n  # in fact the global minimum
        if n in (13, 30):  # shells (1, 12) and (4, 26)
            r = np.linalg.norm(pos, axis=1)
            inner = np.count_nonzero(r < 0.5 * r.max())
            assert inner == {13: 1, 30: 4}[n]


def _peak_frequency(x: np.ndarray, dt: float, f_max: float) -> float:
    """Frequency (Hz) of the largest spectral peak below f_max, refined by a parabola through
    the log-magnitudes of the three highest bins (Hann window, 8x zero padding)."""
    spec = np.abs(np.fft.rfft((x - x.mean()) * np.hanning(len(x)), n=8 * len(x)))
    f = np.fft.rfftfreq(8 * len(x), dt)
    k = int(np.argmax(np.where(f < f_max, spec, 0.0)))
    y0, y1, y2 = np.log(spec[k - 1 : k + 2])
    return f[k] + 0.5 * (y0 - y2) / (y0 - 2 * y1 + y2) * (f[1] - f[0])


@pytest.mark.parametrize("v_rf", [200.0, 400.0])
def test_secular_frequencies_from_a_single_ion_trajectory(v_rf: float) -> None:
    trap = TrapSettings.from_lab_units(v_rf=v_rf, v_end=2.3375)
    ca = get_species("Ca+")
    a, q = trap.mathieu(ca)
    f_r, f_z = trap.secular_frequencies(ca)
    spp, periods = 10, 1200
    dt = 1.0 / trap.rf_frequency / spp
    pos = np.array([[2e-6 * (1 - q / 2)], [1e-6 * (1 + q / 2)], [3e-6]])
    ion = IonSystem(
        pos=pos,
        vel=np.zeros((3, 1)),
        mass=np.array([ca.mass]),
        charge=np.ones(1),
        mathieu_a=np.array([a]),
        mathieu_q=np.array([q]),
        omega=trap.omega,
    )
    traj = np.empty((spp * periods, 3, 1))
    no_bath = Thermostat(
        temperature=0.0, cooling_rate=0.0, axis=(0.0, 0.0, 1.0), cooled=np.zeros(1, dtype=bool)
    )
    run_steps(
        ion,
        dt=dt,
        nsteps=spp * periods,
        rf=True,
        bath=no_bath,
        rng=np.random.default_rng(0),
        r_max=1.0,
        z_max=1.0,
        samples=traj,
        sample_every=1,
        substeps=9,
    )
    fx = _peak_frequency(traj[:, 0, 0], dt, 0.5 * trap.rf_frequency)
    fy = _peak_frequency(traj[:, 1, 0], dt, 0.5 * trap.rf_frequency)
    fz = _peak_frequency(traj[:, 2, 0], dt, 0.5 * trap.rf_frequency)
    assert fz == pytest.approx(f_z, rel=1e-4)
    # lowest-order pseudopotential formula (CCMD's; docs/PHYSICS.md, section 1): within 1% for
    # q < ~0.3
    assert fx == pytest.approx(f_r, rel=0.02 if q > 0.2 else 0.01)
    # the exact Mathieu exponent: within 0.1%
    assert fx == pytest.approx(trap.radial_frequency_exact(ca), rel=1e-3)
    assert fy == pytest.approx(trap.radial_frequency_exact(ca), rel=1e-3)


def test_langevin_temperature_does_not_depend_on_the_step() -> None:
    # one ion in the pseudopotential with an isotropic bath: BAOAB samples the harmonic
    # oscillator's Boltzmann distribution exactly, whatever the step
    trap = TrapSettings.from_lab_units(v_rf=200.0, v_end=2.3375)
    ca = get_species("Ca+")
    a, q = trap.mathieu(ca)
    w_r, w_z = trap.angular_frequencies(ca)
    temperature = 0.02
    kt = 1.380649e-23 * temperature
    for steps_per_secular in (10, 60):
        dt = 2 * np.pi / w_r / steps_per_secular
        ion = IonSystem(
            pos=np.zeros((3, 1)),
            vel=np.zeros((3, 1)),
            mass=np.array([ca.mass]),
            charge=np.ones(1),
            mathieu_a=np.array([a]),
            mathieu_q=np.array([q]),
            omega=trap.omega,
        )
        bath = Thermostat(
            temperature=temperature,
            cooling_rate=w_z,
            axis=(0.0, 0.0, 1.0),
            cooled=np.ones(1, dtype=bool),
            isotropic_rate=0.5 * w_z,
        )
        n_samples = 20000
        every = max(1, steps_per_secular // 2)
        traj = np.empty((n_samples, 3, 1))
        run_steps(
            ion,
            dt=dt,
            nsteps=n_samples * every,
            rf=False,
            bath=bath,
            rng=np.random.default_rng(1),
            r_max=1.0,
            z_max=1.0,
            samples=traj,
            sample_every=every,
        )
        var = traj[:, :, 0].var(axis=0)
        expected = kt / (ca.mass * np.array([w_r, w_r, w_z]) ** 2)
        assert var == pytest.approx(expected, rel=0.06), steps_per_secular


def _extents(samples: np.ndarray) -> np.ndarray:
    """rms x, y, z and the mean over snapshots of the crystal's half-length (µm)."""
    rms = np.sqrt((samples**2).mean(axis=(0, 1)))
    half_length = np.abs(samples[..., 2]).max(axis=1).mean()
    return np.append(rms, half_length) * 1e6


def test_fast_scheme_matches_a_long_full_rf_reference() -> None:
    """Default scheme (FIRE relaxation in the pseudopotential, short RF equilibration and
    gathering, 10 Coulomb steps per RF period) against a run entirely in the RF field from the
    lattice start with 4x finer Coulomb steps and 8x longer equilibration and gathering: rms
    sizes within 1%; the half-length, which also depends on which of the near-degenerate
    structures each run lands in (the end ions), within 3%."""
    trap = TrapSettings.from_lab_units(v_rf=200.0, v_end=2.3375)
    ions = [IonGroup("Ca+", 60)]
    fast = simulate(trap, ions, SimulationSettings(seed=5))
    ref = simulate(
        trap,
        ions,
        SimulationSettings(
            seed=6,
            relax_steps=0,
            steps_per_period=40,
            trap_substeps=5,
            equilibrate_periods=800,
            gather_periods=1600,
            samples=800,
        ),
    )
    got, want = _extents(fast.samples), _extents(ref.samples)
    assert got[:3] == pytest.approx(want[:3], rel=0.01)
    assert got[3] == pytest.approx(want[3], rel=0.03)


def test_escape_during_the_run_is_an_input_error() -> None:
    from ccount_core.errors import InputError

    trap = TrapSettings.from_lab_units(v_rf=200.0, v_end=2.3375)
    hot = SimulationSettings(
        temperature=3e5, equilibrate_periods=200, gather_periods=20, samples=10
    )
    with pytest.raises(InputError, match="left the trap") as exc:
        simulate(trap, [IonGroup("Ca+", 20)], hot)
    assert "\n" not in str(exc.value)
