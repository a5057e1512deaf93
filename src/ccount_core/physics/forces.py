"""Numba kernels for the forces of equation 1: Coulomb, trap (RF and pseudopotential).

Arrays are structure-of-arrays: positions ``pos`` and accelerations ``acc`` are (3, N)
float64 in m and m/s². Per-ion constants (from :func:`ion_constants`) are (N,) float64.

The Coulomb sum visits each pair once (Newton's third law): rows i < j are split into
``chunks`` with about equal numbers of pairs; each chunk adds its reaction forces into its own
buffer, and the buffers are summed in a fixed order. The result is therefore bit-for-bit the
same for any number of threads.
"""

from __future__ import annotations

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


@nb.njit(parallel=True, fastmath=True, cache=True)
def add_trap_accel(pos, acc, kx, ky, kz):
    """Add a static harmonic trap: acc[d, i] -= k_d[i] * pos[d, i] (k in s⁻², (N,) each).

    With kx = ky = ω_r², kz = ω_z² this is the pseudopotential; the RF field at one instant
    is the same form with kx = (Ω²/4)(a − 2q cos Ωt), ky = (Ω²/4)(a + 2q cos Ωt)."""
    n = pos.shape[1]
    for i in nb.prange(n):
        acc[0, i] -= kx[i] * pos[0, i]
        acc[1, i] -= ky[i] * pos[1, i]
        acc[2, i] -= kz[i] * pos[2, i]
