"""Velocity-Verlet Langevin integration (BAOAB splitting, multiple time step) in the RF or
pseudopotential trap.

One outer step of length dt (Leimkuhler & Matthews' BAOAB, velocity Verlet with an exact
Ornstein-Uhlenbeck velocity update in the middle; RESPA for the two time scales):

    B_C: v += a_C(x) dt/2                                  (Coulomb, the O(N²) part)
    m sub-steps of h = dt/m with the trap force only:
        B_T(h/2)  A(h/2)  [O(dt) in the middle sub-step]  A(h/2)  B_T(h/2)
    B_C: v += a_C(x) dt/2

O: v ← c v + √((1 − c²) k_B T / m) ξ with c = exp(−γ dt), the exact solution of
dv = −γ v dt + √(2γ k_B T / m) dW over dt, so the temperature it imposes does not depend on the
step. It acts along the cooling-laser axis n on laser-cooled ions (rate γ_cool) and,
optionally, isotropically (rate γ_iso) on the ions a mask selects. The trap acceleration is
a_d = −(k0_d + kc_d cos Ω t) x_d per axis d; it costs O(N), so sub-stepping it is nearly free
and removes the Verlet phase error of the RF motion (0.5% in ω_r at 20 steps per RF period
without sub-steps). The step loop is the Numba kernel
:func:`ccount_core.simulation.forces.baoab_steps`; this module drives it.

The random numbers are drawn outside Numba from a numpy Generator and passed in per chunk of
steps, so a run is reproducible bit for bit for a given seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

from ccount_core.simulation.constants import COULOMB_K, K_B
from ccount_core.simulation.forces import baoab_steps, coulomb_accel, fire_relax, pair_chunks


@dataclass
class IonSystem:
    """The mutable state and per-ion constants of one run (all SI; arrays (3, N) or (N,)).

    k0/kc hold the trap in the chosen field: RF (kc ≠ 0) or pseudopotential (kc = 0).
    """

    pos: np.ndarray
    vel: np.ndarray
    mass: np.ndarray
    charge: np.ndarray
    mathieu_a: np.ndarray
    mathieu_q: np.ndarray
    omega: float
    t: float = 0.0

    def __post_init__(self) -> None:
        n = self.pos.shape[1]
        self.com = self.charge / self.mass
        self.acc = np.zeros((3, n))
        # Chunks are fixed by N, not by the thread count: results do not depend on threads.
        self.bounds = pair_chunks(n, 16 if n >= 64 else 1)
        self.buf = np.zeros((len(self.bounds) - 1, 3, n))

    @property
    def n(self) -> int:
        return self.pos.shape[1]

    def trap_coefficients(self, rf: bool) -> tuple[np.ndarray, np.ndarray]:
        """(k0, kc), (3, N) s⁻² each, for the full RF field or the pseudopotential."""
        w2 = 0.25 * self.omega**2
        a, q = self.mathieu_a, self.mathieu_q
        k0 = np.empty((3, self.n))
        kc = np.zeros((3, self.n))
        if rf:
            k0[0] = k0[1] = w2 * a
            kc[0] = -2.0 * w2 * q
            kc[1] = 2.0 * w2 * q
        else:
            k0[0] = k0[1] = w2 * (a + 0.5 * q * q)
        k0[2] = -2.0 * w2 * a
        return k0, kc


@dataclass(frozen=True)
class Thermostat:
    """Langevin bath at ``temperature`` (K): rate ``cooling_rate`` (1/s) along the unit vector
    ``axis`` on the ions where ``cooled`` (N,) bool is true, and ``isotropic_rate`` (1/s)
    along all axes on the ions where ``isotropic`` (N,) bool is true (None: every ion)."""

    temperature: float
    cooling_rate: float
    axis: tuple[float, float, float]
    cooled: np.ndarray
    isotropic_rate: float = 0.0
    isotropic: np.ndarray | None = None


def run_steps(
    system: IonSystem,
    dt: float,
    nsteps: int,
    rf: bool,
    bath: Thermostat,
    rng: np.random.Generator,
    bounds_rz: tuple[float, float],
    samples: np.ndarray | None = None,
    sample_every: int = 0,
    max_step: float = math.inf,
    chunk: int = 256,
    on_chunk=None,
    threads: int = 1,
    substeps: int = 1,
) -> int:
    """Advance ``system`` by ``nsteps`` steps of ``dt`` seconds in the RF field (``rf``) or the
    pseudopotential. Positions are stored into ``samples`` (S, 3, N) every ``sample_every``
    steps (the last sample falls on the last step). Returns the number of samples written.

    Raises ``EscapeError`` when an ion leaves the cylinder |r| < bounds_rz[0], |z| < bounds_rz[1]
    (m) or its position stops being finite. ``on_chunk(steps_done)`` is called after each chunk.
    ``threads``: Numba threads for the Coulomb sum (the result does not depend on it).
    ``substeps``: odd number of trap-force sub-steps per step (multiple time step).
    """
    if substeps < 1 or substeps % 2 == 0:
        raise ValueError(f"substeps must be odd and positive, got {substeps}")
    previous = numba.get_num_threads()
    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    try:
        return _run_steps(
            substeps,
            system,
            dt,
            nsteps,
            rf,
            bath,
            rng,
            bounds_rz,
            samples,
            sample_every,
            max_step,
            chunk,
            on_chunk,
        )
    finally:
        numba.set_num_threads(previous)


def _run_steps(
    substeps,
    system,
    dt,
    nsteps,
    rf,
    bath,
    rng,
    bounds_rz,
    samples,
    sample_every,
    max_step,
    chunk,
    on_chunk,
) -> int:
    n = system.n
    k0, kc = system.trap_coefficients(rf)
    c = math.exp(-bath.cooling_rate * dt)
    kt = K_B * bath.temperature
    c_ax = np.where(bath.cooled, c, 1.0)
    s_ax = np.where(bath.cooled, np.sqrt((1.0 - c * c) * kt / system.mass), 0.0)
    axis = np.asarray(bath.axis, dtype=np.float64)
    axis = axis / np.linalg.norm(axis)
    use_iso = bath.isotropic_rate > 0
    ci = math.exp(-bath.isotropic_rate * dt)
    iso = np.ones(n, dtype=bool) if bath.isotropic is None else bath.isotropic
    c_iso = np.where(iso, ci, 1.0)
    s_iso = np.where(iso, np.sqrt((1.0 - ci * ci) * kt / system.mass), 0.0)
    if samples is None:
        samples = np.zeros((1, 3, n))
        sample_every = nsteps + 1
    k_s = samples.shape[0]
    next_sample = nsteps - (k_s - 1) * sample_every if k_s else nsteps + 1
    if k_s and next_sample < 1:
        raise ValueError("samples do not fit into nsteps")
    coulomb_accel(
        system.pos, system.com, system.charge, COULOMB_K, system.bounds, system.buf, system.acc
    )
    written = 0
    done = 0
    while done < nsteps:
        m = min(chunk, nsteps - done)
        noise_ax = rng.standard_normal((m, n))
        noise_iso = rng.standard_normal((m, 3, n)) if use_iso else np.zeros((1, 3, n))
        steps, w, next_sample, escaped = baoab_steps(
            system.pos,
            system.vel,
            system.acc,
            system.t,
            dt,
            m,
            substeps,
            system.omega,
            k0,
            kc,
            system.com,
            system.charge,
            COULOMB_K,
            system.bounds,
            system.buf,
            axis,
            c_ax,
            s_ax,
            noise_ax,
            c_iso,
            s_iso,
            noise_iso,
            use_iso,
            max_step,
            sample_every,
            next_sample,
            samples,
            written,
            bounds_rz[0],
            bounds_rz[1],
        )
        system.t += steps * dt
        written += w
        done += steps
        if escaped >= 0:
            raise EscapeError(int(escaped), system.t)
        if on_chunk is not None:
            on_chunk(done)
    return written


class EscapeError(RuntimeError):
    """An ion left the trap (or its position became NaN) during integration."""

    def __init__(self, ion: int, time: float) -> None:
        super().__init__(f"ion {ion} left the trap at t = {time * 1e6:.3g} µs")
        self.ion = ion
        self.time = time


def relax(
    system: IonSystem,
    max_iter: int,
    omega_max: float,
    atol: float,
    max_step: float,
    threads: int = 1,
) -> int:
    """Relax ``system.pos`` to a local minimum of the pseudopotential + Coulomb energy (FIRE,
    steps from 0.3/ω_max up to 1/ω_max s, ω_max the highest collective angular frequency).
    Stops when the rms acceleration is below ``atol`` (m/s²); ``max_step`` (m) caps an ion's
    move per iteration. Returns the iterations used; velocities are left at zero."""
    k0, _ = system.trap_coefficients(rf=False)
    previous = numba.get_num_threads()
    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    try:
        used = fire_relax(
            system.pos,
            k0,
            system.com,
            system.charge,
            COULOMB_K,
            system.bounds,
            system.buf,
            system.acc,
            0.3 / omega_max,
            1.0 / omega_max,
            max_iter,
            atol,
            max_step,
        )
    finally:
        numba.set_num_threads(previous)
    system.vel[:] = 0.0
    if not np.isfinite(system.pos).all():
        raise EscapeError(int(np.argmin(np.isfinite(system.pos).all(axis=0))), system.t)
    return int(used)
