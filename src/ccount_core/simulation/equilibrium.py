"""Equilibrium (minimum-energy) structures of ions in a static harmonic trap.

Dimensionless units: lengths in l = (Z² e² / (4π ε0 m ω_z²))^(1/3), energies in m ω_z² l²,
so that for identical ions

    E = Σ_i ½ (κ_x x_i² + κ_y y_i² + κ_z z_i²) + Σ_{i<j} 1 / r_ij,

with κ_d = (ω_d / ω_z)² (κ = (2, 2, 2) gives the spherical-cluster energy Σ r² + Σ 1/r).
The gradient uses the simulator's own Coulomb kernel (:func:`forces.coulomb_accel`).
"""

from __future__ import annotations

import math

import numba
import numpy as np
from scipy.optimize import minimize

from ccount_core.simulation.constants import COULOMB_K, Species
from ccount_core.simulation.forces import CoulombSum, coulomb_accel, coulomb_energy, pair_chunks


def length_unit(species: Species, omega_z: float) -> float:
    """James's length unit l = (Z² e² / (4π ε0 m ω_z²))^(1/3) in m (ω_z in rad/s)."""
    return (species.charge**2 * COULOMB_K / (species.mass * omega_z**2)) ** (1.0 / 3.0)


def minimise(
    pos: np.ndarray, kappa: tuple[float, float, float], gtol: float = 1e-10
) -> tuple[np.ndarray, float]:
    """Local energy minimum from start ``pos`` (N, 3), dimensionless; returns (positions
    (N, 3), energy E)."""
    n = pos.shape[0]
    k = np.asarray(kappa, dtype=np.float64)[:, None]
    ones = np.ones(n)
    coulomb = CoulombSum(
        charge_over_mass=ones,
        charge=ones,
        kc=1.0,
        bounds=pair_chunks(n, 1),
        buf=np.zeros((1, 3, n)),
    )
    acc = np.zeros((3, n))

    def fun(flat: np.ndarray) -> tuple[float, np.ndarray]:
        p = flat.reshape(3, n)
        coulomb_accel(p, coulomb, acc)
        e = 0.5 * float(np.sum(k * p * p)) + coulomb_energy(p, ones, 1.0)
        return e, (k * p - acc).ravel()

    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        res = minimize(
            fun,
            np.ascontiguousarray(pos.T).ravel(),
            jac=True,
            method="L-BFGS-B",
            options={"gtol": gtol, "ftol": 1e-15, "maxiter": 20000, "maxcor": 30},
        )
    finally:
        numba.set_num_threads(previous)
    return res.x.reshape(3, n).T.copy(), float(res.fun)


def ground_state(
    n: int, kappa: tuple[float, float, float], starts: int, rng: np.random.Generator
) -> tuple[np.ndarray, float]:
    """Lowest of ``starts`` local minima from random starts in a ball; (positions (N, 3), E)."""
    best: tuple[np.ndarray, float] | None = None
    radius = (n / min(kappa)) ** (1.0 / 3.0)
    for _ in range(starts):
        start = rng.uniform(-radius, radius, (n, 3))
        pos, e = minimise(start, kappa)
        if best is None or e < best[1]:
            best = (pos, e)
    assert best is not None
    return best


def chain_positions(n: int) -> np.ndarray:
    """Equilibrium positions (n,) of a linear chain along z, sorted, in units of l."""
    z0 = np.linspace(-1.0, 1.0, n) * 0.8 * n**0.55
    start = np.zeros((n, 3))
    start[:, 2] = z0
    pos, _ = minimise(start, (1e4, 1e4, 1.0), gtol=1e-12)
    return np.sort(pos[:, 2])


def zigzag_amplitude(n: int, ratio: float, rng: np.random.Generator) -> float:
    """Largest |x| (units of l) of the minimum reached from a slightly bent linear chain in a
    trap with ω_x / ω_z = ``ratio`` (ω_y ≫ ω_x so the bend stays in the x-z plane)."""
    start = np.zeros((n, 3))
    start[:, 2] = chain_positions(n)
    start[:, 0] = 0.05 * rng.standard_normal(n)
    pos, _ = minimise(start, (ratio**2, 100.0 * ratio**2, 1.0), gtol=1e-13)
    return float(np.max(np.abs(pos[:, 0] - pos[:, 0].mean())))


def zigzag_threshold(n: int, rel_tol: float = 1e-3, seed: int = 0) -> float:
    """Critical ω_r / ω_z below which the linear chain of ``n`` ions buckles into a zigzag,
    by bisection on the minimised structure (zigzag when its amplitude exceeds 1e-3 l)."""
    rng = np.random.default_rng(seed)
    lo, hi = 0.5, 2.0 * n
    while hi / lo > 1.0 + rel_tol:
        mid = math.sqrt(lo * hi)
        if zigzag_amplitude(n, mid, rng) > 1e-3:
            lo = mid
        else:
            hi = mid
    return math.sqrt(lo * hi)
