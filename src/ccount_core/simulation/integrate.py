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
:func:`ccount_core.simulation.forces.baoab_steps`; this module builds its grouped
parameters (named tuples) and drives it.

The random numbers are drawn outside Numba from a numpy Generator and passed in per chunk of
steps, so a run is reproducible bit for bit for a given seed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numba
import numpy as np

from ccount_core.simulation.constants import COULOMB_K, K_B
from ccount_core.simulation.forces import (
    BathFactors,
    BathNoise,
    CoulombSum,
    FireSettings,
    Ions,
    Limits,
    Sampler,
    StepPlan,
    TrapField,
    baoab_steps,
    coulomb_accel,
    fire_relax,
    pair_chunks,
)


@dataclass(kw_only=True)
class IonSystem:
    """The mutable state and per-ion constants of one run (all SI; arrays (3, N) or (N,)):
    positions pos (m), velocities vel (m/s), mass (kg), charge (e), the Mathieu parameters
    mathieu_a, mathieu_q, the RF angular frequency omega (rad/s) and the time t (s)."""

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
        self.acc = np.zeros((3, n))
        # Chunks are fixed by N, not by the thread count: results do not depend on threads.
        bounds = pair_chunks(n, 16 if n >= 64 else 1)
        self.coulomb = CoulombSum(
            charge_over_mass=self.charge / self.mass,
            charge=self.charge,
            kc=COULOMB_K,
            bounds=bounds,
            buf=np.zeros((len(bounds) - 1, 3, n)),
        )

    @property
    def n(self) -> int:
        return self.pos.shape[1]

    @property
    def ions(self) -> Ions:
        """The state arrays as the kernels take them (views of pos, vel, acc)."""
        return Ions(pos=self.pos, vel=self.vel, acc=self.acc)

    def trap_field(self, rf: bool) -> TrapField:
        """The trap acceleration (k0, kc (3, N) s⁻² each) in the full RF field or the
        pseudopotential (kc = 0)."""
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
        return TrapField(omega=self.omega, k0=k0, kc=kc)


@dataclass(frozen=True, kw_only=True)
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

    def factors(self, mass: np.ndarray, dt: float) -> BathFactors:
        """Exact Ornstein-Uhlenbeck factors of one step dt (s) for ions of mass (N,) kg."""
        c = math.exp(-self.cooling_rate * dt)
        kt = K_B * self.temperature
        axis = np.asarray(self.axis, dtype=np.float64)
        ci = math.exp(-self.isotropic_rate * dt)
        iso = np.ones(len(mass), dtype=bool) if self.isotropic is None else self.isotropic
        return BathFactors(
            axis=axis / np.linalg.norm(axis),
            c_axis=np.where(self.cooled, c, 1.0),
            s_axis=np.where(self.cooled, np.sqrt((1.0 - c * c) * kt / mass), 0.0),
            c_iso=np.where(iso, ci, 1.0),
            s_iso=np.where(iso, np.sqrt((1.0 - ci * ci) * kt / mass), 0.0),
            use_iso=self.isotropic_rate > 0,
        )


@contextmanager
def _numba_threads(threads: int) -> Iterator[None]:
    """Run the block with ``threads`` Numba threads (clipped to 1..NUMBA_NUM_THREADS)."""
    previous = numba.get_num_threads()
    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        numba.set_num_threads(previous)


def run_steps(
    system: IonSystem,
    *,
    dt: float,
    nsteps: int,
    rf: bool,
    bath: Thermostat,
    rng: np.random.Generator,
    r_max: float,
    z_max: float,
    samples: np.ndarray | None = None,
    sample_every: int = 0,
    max_step: float = math.inf,
    chunk: int = 256,
    on_chunk: Callable[[int], object] | None = None,
    threads: int = 1,
    substeps: int = 1,
) -> int:
    """Advance ``system`` by ``nsteps`` steps of ``dt`` seconds in the RF field (``rf``) or the
    pseudopotential. Positions are stored into ``samples`` (S, 3, N) every ``sample_every``
    steps (the last sample falls on the last step). Returns the number of samples written.

    Raises ``EscapeError`` when an ion leaves the cylinder |r| < r_max, |z| < z_max (m) or its
    position stops being finite. ``on_chunk(steps_done)`` is called after each chunk.
    ``threads``: Numba threads for the Coulomb sum (the result does not depend on it).
    ``substeps``: odd number of trap-force sub-steps per step (multiple time step).
    """
    if substeps < 1 or substeps % 2 == 0:
        raise ValueError(f"substeps must be odd and positive, got {substeps}")
    n = system.n
    field = system.trap_field(rf)
    factors = bath.factors(system.mass, dt)
    limits = Limits(max_step=max_step, r_max=r_max, z_max=z_max)
    if samples is None:
        samples = np.zeros((1, 3, n))
        sample_every = nsteps + 1
    k_s = samples.shape[0]
    next_sample = nsteps - (k_s - 1) * sample_every if k_s else nsteps + 1
    if k_s and next_sample < 1:
        raise ValueError("samples do not fit into nsteps")
    ions = system.ions
    written = 0
    done = 0
    with _numba_threads(threads):
        coulomb_accel(ions.pos, system.coulomb, ions.acc)
        while done < nsteps:
            m = min(chunk, nsteps - done)
            noise = BathNoise(
                axis=rng.standard_normal((m, n)),
                iso=rng.standard_normal((m, 3, n)) if factors.use_iso else np.zeros((1, 3, n)),
            )
            steps, w, next_sample, escaped = baoab_steps(
                ions,
                field,
                system.coulomb,
                factors,
                noise,
                StepPlan(t0=system.t, dt=dt, nsteps=m, substeps=substeps),
                limits,
                Sampler(samples=samples, every=sample_every, start=written, countdown=next_sample),
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
    *,
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
    fire = FireSettings(
        dt0=0.3 / omega_max,
        dt_max=1.0 / omega_max,
        max_iter=max_iter,
        atol=atol,
        max_step=max_step,
    )
    with _numba_threads(threads):
        used = fire_relax(system.ions, system.trap_field(rf=False).k0, system.coulomb, fire)
    system.vel[:] = 0.0
    if not np.isfinite(system.pos).all():
        raise EscapeError(int(np.argmin(np.isfinite(system.pos).all(axis=0))), system.t)
    return int(used)
