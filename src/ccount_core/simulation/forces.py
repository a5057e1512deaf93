"""Numba kernels: Coulomb, trap (RF and pseudopotential) forces and the BAOAB step loop.

Arrays are structure-of-arrays: positions ``pos`` and accelerations ``acc`` are (3, N)
float64 in m and m/s². Per-ion constants are (N,) float64.

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

import numba as nb
import numpy as np


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
def coulomb_accel(pos, charge_over_mass, charge, kc, bounds, buf, acc):
    """Coulomb accelerations acc (3, N) m/s² of ions at pos (3, N) m.

    charge_over_mass: (N,) Z_i / m_i in 1/kg; charge: (N,) Z_i; kc: e²/(4π ε0) in J·m;
    bounds: row chunks from :func:`pair_chunks`; buf: (chunks, 3, N) scratch.
    """
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
def _trap_kick(pos, vel, h, t, omega, k0, kc):
    """v += h · a_trap(x, t): a_d = −(k0_d + kc_d cos Ω t) x_d (k0, kc: (3, N) s⁻²)."""
    cs = math.cos(omega * t)
    for i in range(pos.shape[1]):
        vel[0, i] -= h * (k0[0, i] + kc[0, i] * cs) * pos[0, i]
        vel[1, i] -= h * (k0[1, i] + kc[1, i] * cs) * pos[1, i]
        vel[2, i] -= h * k0[2, i] * pos[2, i]


@nb.njit(cache=True)
def _drift(pos, vel, h, max_step):
    """x += h v, with |v| capped at max_step / h (m) first."""
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
def _ou(vel, axis, c_ax, s_ax, noise_ax, c_iso, s_iso, noise_iso, use_iso):
    """Exact Ornstein-Uhlenbeck velocity update along ``axis`` and (optionally) isotropic."""
    for i in range(vel.shape[1]):
        if c_ax[i] < 1.0:
            vp = vel[0, i] * axis[0] + vel[1, i] * axis[1] + vel[2, i] * axis[2]
            dv = (c_ax[i] - 1.0) * vp + s_ax[i] * noise_ax[i]
            for d in range(3):
                vel[d, i] += dv * axis[d]
        if use_iso and c_iso[i] < 1.0:
            for d in range(3):
                vel[d, i] = c_iso[i] * vel[d, i] + s_iso[i] * noise_iso[d, i]


@nb.njit(cache=True)
def baoab_steps(
    pos,
    vel,
    acc,
    t0,
    dt,
    nsteps,
    substeps,
    omega,
    k0,
    kc,
    com,
    charge,
    kcoul,
    bounds,
    buf,
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
    sample_start,
    rmax,
    zmax,
):
    """Advance nsteps outer steps of dt (s) in place (see integrate's module docstring).

    pos, vel, acc: (3, N) m, m/s and the Coulomb acceleration m/s² (must hold a_C(pos) on
    entry; holds it at the end). The trap force is integrated with ``substeps`` (odd)
    velocity-Verlet sub-steps per outer step; the O step (exact Ornstein-Uhlenbeck over dt)
    sits in the middle of the middle sub-step. k0, kc: (3, N) s⁻² trap coefficients.
    axis: (3,) unit cooling axis; c_ax, s_ax: (N,) OU factor and noise amplitude (m/s) along
    it; noise_ax: (nsteps, N) standard normals. c_iso, s_iso, noise_iso (nsteps, 3, N): the
    isotropic bath, used when use_iso (else noise_iso may be (1, 3, N) zeros).
    max_step (m): cap on one drift.
    Every sample_every steps (first after next_sample steps) positions go to
    samples[sample_start + k] (S, 3, N) while there is room.
    Returns (steps done, samples written, next_sample, escaped ion index or −1).
    """
    n = pos.shape[1]
    h = dt / substeps
    mid = substeps // 2
    written = 0
    for step in range(nsteps):
        t = t0 + step * dt
        for d in range(3):
            for i in range(n):
                vel[d, i] += 0.5 * dt * acc[d, i]
        for k in range(substeps):
            ts = t + k * h
            _trap_kick(pos, vel, 0.5 * h, ts, omega, k0, kc)
            _drift(pos, vel, 0.5 * h, max_step)
            if k == mid:
                ni = noise_iso[step if use_iso else 0]
                _ou(vel, axis, c_ax, s_ax, noise_ax[step], c_iso, s_iso, ni, use_iso)
            _drift(pos, vel, 0.5 * h, max_step)
            _trap_kick(pos, vel, 0.5 * h, ts + h, omega, k0, kc)
        coulomb_accel(pos, com, charge, kcoul, bounds, buf, acc)
        for d in range(3):
            for i in range(n):
                vel[d, i] += 0.5 * dt * acc[d, i]
        for i in range(n):
            r2 = pos[0, i] ** 2 + pos[1, i] ** 2
            if not (r2 < rmax * rmax and abs(pos[2, i]) < zmax):
                return step + 1, written, next_sample, i
        next_sample -= 1
        if next_sample == 0:
            next_sample = sample_every
            k = sample_start + written
            if k < samples.shape[0]:
                for d in range(3):
                    for i in range(n):
                        samples[k, d, i] = pos[d, i]
                written += 1
    return nsteps, written, next_sample, -1


@nb.njit(cache=True)
def _static_accel(pos, k0, com, charge, kcoul, bounds, buf, acc):
    """Coulomb plus static harmonic (pseudopotential) acceleration, (3, N) m/s²."""
    coulomb_accel(pos, com, charge, kcoul, bounds, buf, acc)
    for d in range(3):
        for i in range(pos.shape[1]):
            acc[d, i] -= k0[d, i] * pos[d, i]


@nb.njit(cache=True)
def fire_relax(
    pos, k0, com, charge, kcoul, bounds, buf, acc, dt0, dt_max, max_iter, atol, max_step
):
    """Relax pos (3, N) m in place to a local minimum of the pseudopotential + Coulomb energy
    with FIRE (Bitzek et al., PRL 97, 170201, 2006) on the mass-weighted dynamics.

    k0: (3, N) s⁻² static trap; dt0, dt_max: s; stops when the rms acceleration is below
    atol (m/s²) or after max_iter iterations; max_step (m) caps one ion's move per iteration.
    Returns the number of iterations used."""
    n = pos.shape[1]
    vel = np.zeros((3, n))
    dt = dt0
    alpha = 0.1
    npos = 0
    _static_accel(pos, k0, com, charge, kcoul, bounds, buf, acc)
    for it in range(max_iter):
        p = 0.0
        v2 = 0.0
        a2 = 0.0
        for d in range(3):
            for i in range(n):
                p += acc[d, i] * vel[d, i]
                v2 += vel[d, i] ** 2
                a2 += acc[d, i] ** 2
        if math.sqrt(a2 / n) < atol:
            return it
        if p > 0.0:
            f = alpha * math.sqrt(v2 / a2)
            for d in range(3):
                for i in range(n):
                    vel[d, i] = (1.0 - alpha) * vel[d, i] + f * acc[d, i]
            if npos > 5:
                dt = min(dt * 1.1, dt_max)
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
        _drift(pos, vel, dt, max_step)
        _static_accel(pos, k0, com, charge, kcoul, bounds, buf, acc)
    return max_iter
