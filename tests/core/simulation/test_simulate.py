"""The simulator's public contract, the trap formulas against a worked example
(docs/PHYSICS.md, section 1), seeds and bad input."""

from __future__ import annotations

import importlib
import itertools
import math

import numpy as np
import pytest

from ccount_core.errors import InputError
from ccount_core.simulation import (
    SPECIES,
    IonGroup,
    SimulationSettings,
    Species,
    TrapSettings,
    get_species,
    register_species,
    simulate,
)

FAST = SimulationSettings(
    seed=3, relax_steps=200, equilibrate_periods=20, gather_periods=40, samples=50
)


def test_trap_matches_reference_worked_example() -> None:
    # the worked example of docs/PHYSICS.md, section 1 (Oxford trap): Ca+, V_RF 200 V,
    # V_end 2.3375 V, eta 0.235
    trap = TrapSettings.from_lab_units(v_rf=200.0, v_end=2.3375, eta=0.235)
    ca = get_species("Ca+")
    a, q = trap.mathieu(ca)
    assert q == pytest.approx(0.1346, abs=5e-5)
    assert a == pytest.approx(
        -4 * 0.235 * 1.602176634e-19 * 2.3375 / (ca.mass * trap.omega**2 * 2.75e-3**2), rel=1e-12
    )
    f_r, f_z = trap.secular_frequencies(ca)
    assert f_z == pytest.approx(94.2e3, rel=1e-3)
    assert f_r == pytest.approx(170.7e3, rel=1e-3)
    assert trap.uniform_density(ca) == pytest.approx(6.07e13, rel=2e-3)
    a_ws = (3 / (4 * math.pi * trap.uniform_density(ca))) ** (1 / 3)
    assert a_ws == pytest.approx(15.8e-6, rel=3e-3)


def test_lab_units_defaults_are_the_oxford_trap() -> None:
    trap = TrapSettings.from_lab_units(v_rf=200.0, v_end=2.3375)
    assert (trap.eta, trap.r0, trap.z0, trap.rf_frequency) == (0.244, 3.5e-3, 2.75e-3, 3.85e6)


def test_species_table_and_registration() -> None:
    for name in ("Ca+", "CaF+", "ND3+", "NH3+", "Kr+", "Xe+", "N2H+", "OCS+"):
        assert name in SPECIES
    assert SPECIES["Ca+"].laser_cooled and not SPECIES["CaF+"].laser_cooled
    assert SPECIES["Ca+"].mass_u == pytest.approx(40.0)
    new = register_species(Species.from_u("Sr+test", 88.0, 1, laser_cooled=True))
    assert get_species("Sr+test") is new
    with pytest.raises(InputError, match="already"):
        register_species(Species.from_u("Sr+test", 87.0))
    del SPECIES["Sr+test"]
    with pytest.raises(InputError, match="unknown species"):
        get_species("Unobtainium+")


def test_simulate_contract_two_species() -> None:
    trap = TrapSettings.from_lab_units(v_rf=200.0, v_end=2.3375, eta=0.244)
    res = simulate(trap, [IonGroup("Ca+", 40), IonGroup("CaF+", 10)], FAST)
    assert res.positions.shape == (50, 3) and res.velocities.shape == (50, 3)
    assert res.samples.shape == (50, 50, 3)
    assert res.species == (SPECIES["Ca+"], SPECIES["CaF+"])
    assert np.bincount(res.species_index).tolist() == [40, 10]
    assert res.image is None
    assert res.fluorescing.sum() == 40
    # heavier CaF+ is less tightly confined radially: it sits outside the Ca+ on average
    rho = np.hypot(res.positions[:, 0], res.positions[:, 1])
    assert rho[res.species_index == 1].mean() > rho[res.species_index == 0].mean()
    # a cold crystal: every ion stays within 1 mm of the centre
    assert np.abs(res.samples).max() < 1e-3


def test_same_seed_same_crystal_bit_for_bit() -> None:
    trap = TrapSettings.from_lab_units(v_rf=180.0, v_end=3.0)
    ions = [IonGroup("Ca+", 70), IonGroup("Xe+", 10)]
    r1 = simulate(trap, ions, FAST)
    r2 = simulate(trap, ions, FAST)
    r3 = simulate(trap, ions, SimulationSettings(**{**FAST.__dict__, "seed": 4}))
    assert np.array_equal(r1.samples, r2.samples)
    assert np.array_equal(r1.velocities, r2.velocities)
    assert not np.array_equal(r1.positions, r3.positions)
    # the Coulomb sum is chunked independently of the thread count: 2 threads, same bits
    short = {**FAST.__dict__, "equilibrate_periods": 5, "gather_periods": 10, "samples": 10}
    one = simulate(trap, ions, SimulationSettings(**short))
    two = simulate(trap, ions, SimulationSettings(**{**short, "threads": 2}))
    assert np.array_equal(one.samples, two.samples)


def test_progress_reaches_the_total() -> None:
    calls: list[tuple[int, int]] = []
    trap = TrapSettings.from_lab_units(v_rf=200.0, v_end=2.3375)
    simulate(trap, [IonGroup("Ca+", 20)], FAST, progress=lambda d, t: calls.append((d, t)))
    assert calls and calls[-1][0] == calls[-1][1]
    assert all(b[0] >= a[0] for a, b in itertools.pairwise(calls))


def test_an_ion_leaving_the_trap_is_bad_input(monkeypatch: pytest.MonkeyPatch) -> None:
    from ccount_core.simulation.integrate import EscapeError

    # the module, not the function of the same name that the package exports
    simulate_module = importlib.import_module("ccount_core.simulation.simulate")

    def escape(*args: object, **kwargs: object) -> None:
        raise EscapeError(7, 2e-6)

    monkeypatch.setattr(simulate_module, "run_steps", escape)
    trap = TrapSettings.from_lab_units(v_rf=200.0, v_end=2.3375)
    with pytest.raises(InputError, match=r"ion 7 left the trap.*too weak or unstable"):
        simulate(trap, [IonGroup("Ca+", 20)], FAST)


@pytest.mark.parametrize(
    "trap",
    [
        TrapSettings.from_lab_units(v_rf=200.0, v_end=2.3375),
        TrapSettings(v_rf=181.3, v_end=1.7, eta=0.2, r0=3.3e-3, z0=2.9e-3, rf_frequency=4.1e6),
        TrapSettings.from_lab_units(
            v_rf=0.1, v_end=1e-3, eta=0.31, r0_um=123.456789, z0_um=0.7, rf_mhz=27.125
        ),
    ],
)
def test_lab_units_round_trip(trap: TrapSettings) -> None:
    lab = trap.to_lab_units()
    assert list(lab) == ["v_rf", "v_end", "eta", "r0_um", "z0_um", "rf_mhz"]
    again = TrapSettings.from_lab_units(**lab)
    for name in ("v_rf", "v_end", "eta", "r0", "z0", "rf_frequency"):
        assert getattr(again, name) == pytest.approx(getattr(trap, name), rel=1e-12)
    assert TrapSettings.from_lab_units(**lab).to_lab_units() == lab


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: IonGroup("Ca+", -5), "must not be negative"),
        (lambda: IonGroup("Ca+", 2.5), "integer"),
        (lambda: TrapSettings.from_lab_units(v_rf=float("nan"), v_end=2.0), "v_rf"),
        (lambda: TrapSettings.from_lab_units(v_rf=200.0, v_end=float("inf")), "v_end"),
        (lambda: SimulationSettings(temperature=float("nan")), "temperature"),
        (lambda: SimulationSettings(temperature=-1.0), "temperature"),
        (lambda: SimulationSettings(mode="fast"), "mode"),
    ],
)
def test_bad_input_is_one_clear_error(make, match: str) -> None:
    with pytest.raises(InputError, match=match) as exc:
        make()
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize(
    ("v_rf", "v_end", "match"),
    [
        (1000.0, 2.0, "v_rf.*stability"),  # q ~ 0.67 for Ca+ but for ND3+ q ~ 1.35 > 0.908
        (200.0, -1.0, "v_end"),
        (0.0, 2.0, "v_rf.*stability"),  # no radial confinement
        (30.0, 20.0, "v_rf.*stability"),  # a < a0(q): the end caps defocus radially
    ],
)
def test_unstable_mathieu_parameters_are_refused(v_rf: float, v_end: float, match: str) -> None:
    trap = TrapSettings.from_lab_units(v_rf=v_rf, v_end=v_end)
    with pytest.raises(InputError, match=match):
        simulate(trap, [IonGroup("Ca+", 10), IonGroup("ND3+", 1)], FAST)


def test_crystal_too_large_for_the_trap_is_refused_before_running() -> None:
    trap = TrapSettings.from_lab_units(v_rf=200.0, v_end=0.002)
    with pytest.raises(InputError, match="leave the trap"):
        simulate(trap, [IonGroup("Ca+", 5000)], FAST)


def test_no_ions_is_refused() -> None:
    trap = TrapSettings.from_lab_units(v_rf=200.0, v_end=2.0)
    with pytest.raises(InputError, match="at least 1"):
        simulate(trap, [IonGroup("Ca+", 0)], FAST)


def test_a_species_in_two_groups_is_refused() -> None:
    # simulate.validate: results and the image metadata hold one number per species name,
    # so Ca+ 30 + Ca+ 20 would be labelled as 20 Ca+ while 50 are simulated.
    trap = TrapSettings.from_lab_units(v_rf=200.0, v_end=2.0)
    with pytest.raises(InputError, match=r"ions: Ca\+ is given twice \(30 and 20\).*\(50\)"):
        simulate(trap, [IonGroup("Ca+", 30), IonGroup("CaF+", 5), IonGroup("Ca+", 20)], FAST)


def test_ccmd_cooling_and_heating_mapping_reproduces_ccmd_update_rules() -> None:
    """Run CCMD's velocity updates (RespaIntegrator::evolve with LaserCooledIon's kick, heat
    and velocity_scale, in CCMD's scaled units) for many free ions and compare the axial
    temperature and damping rate with the closed forms used for the mapping."""
    from ccount_core.simulation import ccmd_cooling_rate, ccmd_heating_temperature
    from ccount_core.simulation.constants import AMU, K_B

    beta, recoil, m, spp, respa = 0.8, 1e-3, 40.0, 20, 10
    dt = np.pi / spp
    d = dt / respa
    rng = np.random.default_rng(0)
    v = np.zeros(5000)
    v2 = []
    for step in range(600):
        v += np.sqrt(recoil) * rng.standard_normal(v.size) * (dt / 2) / m  # heat(dt/2)
        for _ in range(respa):
            for _ in range(2):  # kick(d/2): radiation pressure ±0.015 and friction
                v += np.where(rng.random(v.size) < 0.5, 0.015, -0.015) * (d / 2) / m
                v -= beta * v * (d / 2)
            v += beta * v * (d / 2)  # velocity_scale(d/2): undo one friction kick ...
            v /= 1.0 + (d / 2) * beta / m  # ... then Tuckerman-Berne eq. 3.7
        v += np.sqrt(recoil) * rng.standard_normal(v.size) * (dt / 2) / m  # heat(dt/2)
        if step >= 100:
            v2.append(np.mean(v * v))
    f = 3.85e6
    tau = 1 / (np.pi * f)
    length = (1.602176634e-19**2 / (np.pi * 8.8541878128e-12 * AMU * (2 * np.pi * f) ** 2)) ** (
        1 / 3
    )
    t_sim = m * AMU * np.mean(v2) * (length / tau) ** 2 / K_B
    t_formula = ccmd_heating_temperature(recoil, beta, m, spp, respa, f)
    assert t_sim == pytest.approx(t_formula, rel=0.03)
    # free decay of one velocity without kicks at CCMD's default 50 RESPA sub-steps: the rate
    # is the mapped γ (the closed form is the small-sub-step limit)
    respa = 50
    d = dt / respa
    u = 1.0
    for _ in range(200):
        for _ in range(respa):
            u -= 2 * beta * u * (d / 2)
            u += beta * u * (d / 2)
            u /= 1.0 + (d / 2) * beta / m
    rate = -np.log(u) / (200 * dt) / tau
    assert rate == pytest.approx(ccmd_cooling_rate(beta, m, f), rel=0.01)
