"""Numba kernels: Coulomb, trap (RF and pseudopotential) forces and the BAOAB step loop.

Arrays are structure-of-arrays: positions ``pos`` and accelerations ``acc`` are (3, N)
float64 in m and m/s². Per-ion constants are (N,) float64.

The kernels take their parameters grouped in named tuples (:class:`Ions`, :class:`TrapField`,
:class:`CoulombSum`, ...), built with keyword arguments at each call site and read by field
name in the kernels, so two numbers of the same kind cannot be passed in each other's place.

The Coulomb sum visits each pair once (Newton's third law): rows i < j are split into
``chunks`` with about equal numbers of pairs; each chunk adds its reaction forces into its own
buffer, and the buffers are summed in a fixed order. The result is therefore bit-for-bit the
same for any number of threads.

All kernels that call one another live in this one module on purpose: Numba's on-disk cache
(``cache=True``) checks only the source file of the function it loads, so a kernel cached in
one module that calls a kernel in another could run stale machine code after an edit.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numba as nb
import numpy as np


class Ions(NamedTuple):
    """The integrated state, (3, N) float64 each, updated in place by the kernels."""

    pos: np.ndarray  # m
    vel: np.ndarray  # m/s
    acc: np.ndarray  # m/s², the Coulomb (and in FIRE the static trap) acceleration at pos


class TrapField(NamedTuple):
    """Trap acceleration a_d = −(k0_d + kc_d cos Ω t) x_d (kc = 0: the pseudopotential)."""

    omega: float  # Ω, RF angular frequency, rad/s
    k0: np.ndarray  # (3, N) static coefficients, s⁻²
    kc: np.ndarray  # (3, N) RF coefficients, s⁻² (row 2 unused: no RF along z)


class CoulombSum(NamedTuple):
    """Per-ion constants and scratch of the pairwise Coulomb sum."""

    charge_over_mass: np.ndarray  # (N,) Z_i / m_i, 1/kg
    charge: np.ndarray  # (N,) Z_i, units of e
    kc: float  # Coulomb constant e²/(4π ε0), J·m
    bounds: np.ndarray  # (chunks + 1,) int64 row chunks from pair_chunks
    buf: np.ndarray  # (chunks, 3, N) float64 scratch


class BathFactors(NamedTuple):
    """Exact Ornstein-Uhlenbeck factors of one step dt: v ← c v + s ξ."""

    axis: np.ndarray  # (3,) unit vector of the cooling laser
    c_axis: np.ndarray  # (N,) factor along axis (1: no cooling)
    s_axis: np.ndarray  # (N,) noise amplitude along axis, m/s
    c_iso: np.ndarray  # (N,) factor of the isotropic bath
    s_iso: np.ndarray  # (N,) noise amplitude of the isotropic bath, m/s
    use_iso: bool  # whether the isotropic bath acts at all


class BathNoise(NamedTuple):
    """Standard normal draws for ``nsteps`` steps."""

    axis: np.ndarray  # (nsteps, N), along the cooling axis
    iso: np.ndarray  # (nsteps, 3, N) for the isotropic bath ((1, 3, N) zeros when unused)


class StepPlan(NamedTuple):
    """The steps one kernel call takes."""

    t0: float  # time at the first step, s
    dt: float  # outer (Coulomb) step, s
    nsteps: int  # outer steps
    substeps: int  # odd number of trap-force sub-steps per outer step


class Limits(NamedTuple):
    """Guards of the integration, m."""

    max_step: float  # cap on one drift of one ion
    r_max: float  # an ion with radius ≥ r_max has escaped
    z_max: float  # an ion with |z| ≥ z_max has escaped


class Sampler(NamedTuple):
    """Where and when positions are stored."""

    samples: np.ndarray  # (S, 3, N) m
    every: int  # steps between samples
    start: int  # index into samples of the next one written
    countdown: int  # steps until the next sample


class FireSettings(NamedTuple):
    """FIRE minimiser steps and stopping rule."""

    dt0: float  # first time step, s
    dt_max: float  # largest time step, s
    max_iter: int  # most iterations
    atol: float  # stop when the rms acceleration is below this, m/s²
    max_step: float  # cap on one ion's move per iteration, m


def pair_chunks(n: int, chunks: int) -> np.ndarray:
    """Row boundaries (chunks + 1,) int64 that split the pairs i < j of n ions into
    ``chunks`` ranges of rows holding about equal numbers of pairs."""
    chunks = max(1, min(chunks, max(n - 1, 1)))
    rows = np.arange(n, dtype=np.float64)
    cum = np.concatenate(([0.0], np.cumsum(n - 1 - rows)))  # pairs before row i
    targets = np.linspace(0.0, cum[-1], chunks + 1)
    bounds = np.searchsorted(cum, targets, side="left").astype(np.int64)
    bounds[0], bounds[-1] = 0, n
    return np.maximum.accumulate(bounds)


@nb.njit(parallel=True, fastmath=True, cache=True)
def coulomb_accel(pos, coulomb, acc):
    """Coulomb accelerations acc (3, N) m/s² of ions at pos (3, N) m; coulomb: a
    :class:`CoulombSum`."""
    charge_over_mass = coulomb.charge_over_mass
    charge = coulomb.charge
    kc = coulomb.kc
    bounds = coulomb.bounds
    buf = coulomb.buf
    n = pos.shape[1]
    nchunk = bounds.shape[0] - 1
    x = pos[0]
    y = pos[1]
    z = pos[2]
    for c in nb.prange(nchunk):
        bx = buf[c, 0]
        by = buf[c, 1]
        bz = buf[c, 2]
        for k in range(n):
            bx[k] = 0.0
            by[k] = 0.0
            bz[k] = 0.0
        for i in range(bounds[c], bounds[c + 1]):
            xi = x[i]
            yi = y[i]
            zi = z[i]
            qi = charge[i]
            fx = 0.0
            fy = 0.0
            fz = 0.0
            for j in range(i + 1, n):
                dx = xi - x[j]
                dy = yi - y[j]
                dz = zi - z[j]
                r2 = dx * dx + dy * dy + dz * dz
                s = qi * charge[j] / (r2 * np.sqrt(r2))
                fx += s * dx
                fy += s * dy
                fz += s * dz
                bx[j] -= s * dx
                by[j] -= s * dy
                bz[j] -= s * dz
            bx[i] += fx
            by[i] += fy
            bz[i] += fz
    for k in nb.prange(n):
        sx = 0.0
        sy = 0.0
        sz = 0.0
        for c in range(nchunk):
            sx += buf[c, 0, k]
            sy += buf[c, 1, k]
            sz += buf[c, 2, k]
        f = kc * charge_over_mass[k]
        acc[0, k] = f * sx
        acc[1, k] = f * sy
        acc[2, k] = f * sz


@nb.njit(fastmath=True, cache=True)
def coulomb_energy(pos, charge, kc):
    """Total Coulomb energy (J) of ions at pos (3, N) m with charges (N,) in units of e."""
    n = pos.shape[1]
    e = 0.0
    for i in range(n):
        for j in range(i + 1, n):
            dx = pos[0, i] - pos[0, j]
            dy = pos[1, i] - pos[1, j]
            dz = pos[2, i] - pos[2, j]
            e += charge[i] * charge[j] / np.sqrt(dx * dx + dy * dy + dz * dz)
    return kc * e


@nb.njit(cache=True)
def _trap_kick(ions, field, t, h):
    """v += h · a_trap(x, t) for ions (:class:`Ions`) in field (:class:`TrapField`); t, h: s."""
    pos = ions.pos
    vel = ions.vel
    k0 = field.k0
    kc = field.kc
    cs = math.cos(field.omega * t)
    for i in range(pos.shape[1]):
        vel[0, i] -= h * (k0[0, i] + kc[0, i] * cs) * pos[0, i]
        vel[1, i] -= h * (k0[1, i] + kc[1, i] * cs) * pos[1, i]
        vel[2, i] -= h * k0[2, i] * pos[2, i]


@nb.njit(cache=True)
def _drift(ions, h, max_step):
    """x += h v for ions (:class:`Ions`), with |v| capped at max_step (m) / h (s) first."""
    pos = ions.pos
    vel = ions.vel
    lim = max_step / h
    for i in range(pos.shape[1]):
        v2 = vel[0, i] ** 2 + vel[1, i] ** 2 + vel[2, i] ** 2
        if v2 > lim * lim:
            f = lim / math.sqrt(v2)
            vel[0, i] *= f
            vel[1, i] *= f
            vel[2, i] *= f
        pos[0, i] += h * vel[0, i]
        pos[1, i] += h * vel[1, i]
        pos[2, i] += h * vel[2, i]


@nb.njit(cache=True)
def _ou(vel, bath, noise_axis, noise_iso):
    """Exact Ornstein-Uhlenbeck update of vel (3, N) along the cooling axis and (when
    bath.use_iso) isotropically; bath: :class:`BathFactors`; noise_axis (N,), noise_iso
    (3, N): standard normals of this step."""
    axis = bath.axis
    c_ax = bath.c_axis
    s_ax = bath.s_axis
    c_iso = bath.c_iso
    s_iso = bath.s_iso
    use_iso = bath.use_iso
    for i in range(vel.shape[1]):
        if c_ax[i] < 1.0:
            vp = vel[0, i] * axis[0] + vel[1, i] * axis[1] + vel[2, i] * axis[2]
            dv = (c_ax[i] - 1.0) * vp + s_ax[i] * noise_axis[i]
            for d in range(3):
                vel[d, i] += dv * axis[d]
        if use_iso and c_iso[i] < 1.0:
            for d in range(3):
                vel[d, i] = c_iso[i] * vel[d, i] + s_iso[i] * noise_iso[d, i]


@nb.njit(cache=True)
def baoab_steps(ions, field, coulomb, bath, noise, plan, limits, sampler):
    """Advance ``plan.nsteps`` outer steps of ``plan.dt`` in place (see integrate's module
    docstring).

    ions (:class:`Ions`): ions.acc must hold the Coulomb acceleration of ions.pos on entry and
    holds it at the end. field: :class:`TrapField`; coulomb: :class:`CoulombSum`; bath:
    :class:`BathFactors` with its draws in noise (:class:`BathNoise`, plan.nsteps steps); plan:
    :class:`StepPlan`; limits: :class:`Limits`. The trap force is integrated with
    ``plan.substeps`` (odd) velocity-Verlet sub-steps per outer step; the O step (exact
    Ornstein-Uhlenbeck over dt) sits in the middle of the middle sub-step.
    sampler (:class:`Sampler`): every sampler.every steps (first after sampler.countdown
    steps) positions go to sampler.samples[sampler.start + k] while there is room.
    Returns (steps done, samples written, steps to the next sample, escaped ion index or −1).
    """
    pos = ions.pos
    vel = ions.vel
    acc = ions.acc
    dt = plan.dt
    use_iso = bath.use_iso
    max_step = limits.max_step
    rmax = limits.r_max
    zmax = limits.z_max
    samples = sampler.samples
    next_sample = sampler.countdown
    n = pos.shape[1]
    h = dt / plan.substeps
    mid = plan.substeps // 2
    written = 0
    for step in range(plan.nsteps):
        t = plan.t0 + step * dt
        for d in range(3):
            for i in range(n):
                vel[d, i] += 0.5 * dt * acc[d, i]
        for k in range(plan.substeps):
            ts = t + k * h
            _trap_kick(ions, field, ts, 0.5 * h)
            _drift(ions, 0.5 * h, max_step)
            if k == mid:
                ni = noise.iso[step if use_iso else 0]
                _ou(vel, bath, noise.axis[step], ni)
            _drift(ions, 0.5 * h, max_step)
            _trap_kick(ions, field, ts + h, 0.5 * h)
        coulomb_accel(pos, coulomb, acc)
        for d in range(3):
            for i in range(n):
                vel[d, i] += 0.5 * dt * acc[d, i]
        for i in range(n):
            r2 = pos[0, i] ** 2 + pos[1, i] ** 2
            if not (r2 < rmax * rmax and abs(pos[2, i]) < zmax):
                return step + 1, written, next_sample, i
        next_sample -= 1
        if next_sample == 0:
            next_sample = sampler.every
            k = sampler.start + written
            if k < samples.shape[0]:
                for d in range(3):
                    for i in range(n):
                        samples[k, d, i] = pos[d, i]
                written += 1
    return plan.nsteps, written, next_sample, -1


@nb.njit(cache=True)
def _static_accel(ions, k0, coulomb):
    """ions.acc = Coulomb plus static harmonic (pseudopotential, k0 (3, N) s⁻²) acceleration
    at ions.pos, m/s²."""
    pos = ions.pos
    acc = ions.acc
    coulomb_accel(pos, coulomb, acc)
    for d in range(3):
        for i in range(pos.shape[1]):
            acc[d, i] -= k0[d, i] * pos[d, i]


@nb.njit(cache=True)
def fire_relax(ions, k0, coulomb, fire):
    """Relax ions.pos (3, N) m in place to a local minimum of the pseudopotential + Coulomb
    energy with FIRE (Bitzek et al., PRL 97, 170201, 2006) on the mass-weighted dynamics.

    ions: :class:`Ions`, whose vel holds FIRE's velocities (zeroed on entry) and acc the
    acceleration; k0: (3, N) s⁻² static trap; coulomb: :class:`CoulombSum`; fire:
    :class:`FireSettings`. Returns the number of iterations used."""
    vel = ions.vel
    acc = ions.acc
    n = vel.shape[1]
    vel[:] = 0.0
    dt = fire.dt0
    alpha = 0.1
    npos = 0
    _static_accel(ions, k0, coulomb)
    for it in range(fire.max_iter):
        p = 0.0
        v2 = 0.0
        a2 = 0.0
        for d in range(3):
            for i in range(n):
                p += acc[d, i] * vel[d, i]
                v2 += vel[d, i] ** 2
                a2 += acc[d, i] ** 2
        if math.sqrt(a2 / n) < fire.atol:
            return it
        if p > 0.0:
            f = alpha * math.sqrt(v2 / a2)
            for d in range(3):
                for i in range(n):
                    vel[d, i] = (1.0 - alpha) * vel[d, i] + f * acc[d, i]
            if npos > 5:
                dt = min(dt * 1.1, fire.dt_max)
                alpha *= 0.99
            npos += 1
        else:
            vel[:] = 0.0
            dt *= 0.5
            alpha = 0.1
            npos = 0
        for d in range(3):
            for i in range(n):
                vel[d, i] += dt * acc[d, i]
        _drift(ions, dt, fire.max_step)
        _static_accel(ions, k0, coulomb)
    return fire.max_iter
