"""Many crystals at once in torch: :func:`simulate_batch`, beside the Numba :func:`simulate`.

The same physics and phases as :mod:`ccount_core.simulation.simulate` in the RF field (its
default mode): the same lattice start and Maxwell velocities (the same numpy draws for the
same seed), FIRE relaxation in the pseudopotential, then multiple-time-step BAOAB Langevin
dynamics (docs/PHYSICS.md section 4) through equilibration and gathering, and the image of
the gathered snapshots (:func:`ccount_core.simulation.batch_render.render_batch`).

Layout: crystals are padded to the largest ion number, ``(B, N, 3)`` positions in m. A padded
ion has no charge, no trap force and no bath; it sits far outside the trap, so the Coulomb
sum gives it nothing and takes nothing from it. The code is device-agnostic: tensors live on
``device`` (CUDA when lent, the CPU in tests) in ``dtype`` (float64 by default on the CPU,
float32 on CUDA).

Two things make a step cheap:

- the trap force is linear in each ion's own coordinate, so the trap sub-steps before and
  after the thermostat compose into one 2 × 2 map per axis; the RF phase repeats every
  ``steps_per_period`` steps, so the maps are computed once (in float64) per phase;
- the Coulomb sum is dense per crystal: distances by ``torch.cdist`` (direct, no Gram
  matrix), w_ij = Z_j / r_ij³, and a_i ∝ x_i Σ_j w_ij − Σ_j w_ij x_j (one batched matmul).

The Langevin noise is counter-based (a 32-bit integer hash of the crystal's seed, the step and
the ion), so a crystal's noise does not depend on the other crystals of its batch: run alone
or in any batch it follows the same trajectory up to floating-point rounding.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from ccount_core.errors import InputError
from ccount_core.progress import ProgressCallback, report
from ccount_core.simulation.constants import COULOMB_K, K_B, Species
from ccount_core.simulation.render import ImagingSettings
from ccount_core.simulation.simulate import (
    IonGroup,
    Schedule,
    SimulationSettings,
    _fastest_frequency,
    _start,
    schedule,
    validate,
)
from ccount_core.simulation.trap import TrapSettings

_MASK32 = 0xFFFFFFFF
_HASH_MUL = 0x45D9F3B  # < 2**27: a 32-bit value times it stays inside int64
_FAR = 10.0  # m: padded ions sit at x = _FAR + index, far outside any trap


@dataclass(frozen=True)
class CrystalSpec:
    """One crystal of a batch: its trap, its ions (ion groups, as :func:`simulate` takes
    them) and its random seed (the same seed gives the same start as :func:`simulate`)."""

    trap: TrapSettings
    ions: Sequence[IonGroup]
    seed: int = 0


@dataclass(frozen=True, eq=False)
class BatchResult:
    """What :func:`simulate_batch` returns, tensors on the run's device (SI units).

    positions (B, N, 3) m and velocities (B, N, 3) m/s at the end; mask (B, N) bool: real
    (not padding) ions; species_index (B, N) int64 into ``species[b]`` (−1 for padding);
    fluorescing (B, N) bool; samples (B, S, N, 3) m over the gathering phase (None unless
    kept); images (B, rows, cols) in ion exposures (None without imaging); escaped (B,) bool:
    an ion left the trap (that crystal's image is blank); relax_iterations (B,) int64.
    """

    positions: torch.Tensor
    velocities: torch.Tensor
    mask: torch.Tensor
    species_index: torch.Tensor
    species: tuple[tuple[Species, ...], ...]
    fluorescing: torch.Tensor
    samples: torch.Tensor | None
    images: torch.Tensor | None
    escaped: torch.Tensor
    relax_iterations: torch.Tensor


@dataclass
class _Batch:
    """Padded per-ion constants and state of a batch (tensors on the device)."""

    pos: torch.Tensor  # (B, N, 3) m
    vel: torch.Tensor  # (B, N, 3) m/s
    mask: torch.Tensor  # (B, N) bool
    charge: torch.Tensor  # (B, N) e (0 for padding)
    qm_kc: torch.Tensor  # (B, N, 1) k_C Z/m, m³/s² (0 for padding)
    k_pseudo: torch.Tensor  # (B, N, 3) s⁻², pseudopotential ω² per axis
    q_mathieu: torch.Tensor  # (B, N) Mathieu q
    lit: torch.Tensor  # (B, N) bool, laser-cooled (fluorescing) ions
    mass: torch.Tensor  # (B, N) kg (1 for padding)
    species_index: torch.Tensor  # (B, N) int64
    diag_inf: torch.Tensor  # (N, N): +inf on the diagonal, 0 elsewhere


@contextmanager
def _full_precision() -> Iterator[None]:
    """Keep CUDA matmuls and convolutions in full float32 (no TF32) inside the block."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def coulomb_accel(pos: torch.Tensor, charge: torch.Tensor, qm_kc: torch.Tensor, diag_inf):
    """Coulomb accelerations (B, N, 3) m/s² of ions at pos (B, N, 3) m with charges (B, N)
    (units of e) and k_C Z_i/m_i (B, N, 1) m³/s²; diag_inf (N, N) blocks the self-pair."""
    r = torch.cdist(pos, pos, compute_mode="donot_use_mm_for_euclid_dist")
    inv = r.add_(diag_inf).reciprocal_()  # 1/r (the self-pair: 1/inf = 0)
    w = (inv * inv).mul_(inv).mul_(charge[:, None, :])
    return (pos * w.sum(-1, keepdim=True)).sub_(torch.bmm(w, pos)).mul_(qm_kc)


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash (bijective) of x, int64 in [0, 2³²)."""
    x = (((x >> 16) ^ x) * _HASH_MUL) & _MASK32
    x = (((x >> 16) ^ x) * _HASH_MUL) & _MASK32
    return (x >> 16) ^ x


def _normals(lanes: torch.Tensor, keys: torch.Tensor, step: int, dtype: torch.dtype):
    """Standard normals (B, 4, N) of one step: hash lanes (B, 4, N) (per crystal and ion,
    fixed) mixed with the crystal keys (B,) and the step, then Box-Muller."""
    t = _mix32(keys ^ (step & _MASK32))
    h = _mix32(lanes ^ t[:, None, None]).to(dtype)
    u = (h + 0.5) * 2.0**-32
    radius = torch.sqrt(-2.0 * torch.log(u[:, :2]))
    angle = (2.0 * math.pi) * u[:, 2:]
    return torch.cat((radius * torch.cos(angle), radius * torch.sin(angle)), dim=1)


def _compose(ops: list[tuple[float, np.ndarray, np.ndarray]], k0, kc, omega) -> np.ndarray:
    """The 2 × 2 map (..., 4) as (A, B, C, D) of a sequence of kicks ``(1, t, h)``
    (v −= h (k0 + kc cos Ω t) x) and drifts ``(0, t, h)`` (x += h v); t, h in s."""
    a, b = np.ones(k0.shape), np.zeros(k0.shape)
    c, d = np.zeros(k0.shape), np.ones(k0.shape)
    for is_kick, ts, hh in ops:
        if is_kick:
            k = hh * (k0 + kc * np.cos(omega * ts))
            c, d = c - k * a, d - k * b
        else:
            a, b = a + hh * c, b + hh * d
    return np.stack([a, b, c, d], axis=-1)


def _trap_maps(
    traps: Sequence[TrapSettings], aq: np.ndarray, settings: SimulationSettings, dt: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Linear maps (x, v) → (A x + B v, C x + D v) of the trap sub-steps before and after
    the thermostat in one outer step, per RF phase: two arrays (P, B, G, 3, 4) float64 of
    (A, B, C, D), P = steps per RF period, G = species slots; aq (B, G, 2) Mathieu a, q;
    dt (B,) s. The sub-steps are those of ``forces.baoab_steps`` (O in the middle one)."""
    m = settings.trap_substeps
    omega = np.array([t.omega for t in traps])[:, None, None]
    w2 = 0.25 * omega**2
    a, q = aq[..., :1], aq[..., 1:]
    k0 = np.concatenate([w2 * a, w2 * a, -2.0 * w2 * a], axis=-1)  # (B, G, 3) s⁻²
    kc = np.concatenate([-2.0 * w2 * q, 2.0 * w2 * q, 0.0 * q], axis=-1)
    h = (dt / m)[:, None, None]
    first, second = [], []
    for p in range(settings.steps_per_period):
        ops = []
        for k in range(m):
            ts = (p * m + k) * h
            ops += [(1, ts, 0.5 * h), (0, ts, 0.5 * h), (0, ts, 0.5 * h), (1, ts + h, 0.5 * h)]
        split = 4 * (m // 2) + 2  # the O step sits between the two drifts of the middle one
        first.append(_compose(ops[:split], k0, kc, omega))
        second.append(_compose(ops[split:], k0, kc, omega))
    return np.stack(first), np.stack(second)


@dataclass
class _Host:
    """What the host prepares per crystal before the run (numpy, SI units)."""

    pos: list[np.ndarray]  # (n, 3) m, lattice start
    vel: list[np.ndarray]  # (n, 3) m/s, Maxwell draws at the bath temperature
    index: list[np.ndarray]  # (n,) species index
    species: list[tuple[Species, ...]]
    plans: list[Schedule]
    relax: np.ndarray  # (B, 4): dt0 s, dt_max s, atol m/s², max_step m
    keys: np.ndarray  # (B, 2) uint32 noise keys


def _check_specs(crystals: Sequence[CrystalSpec]) -> list[list[IonGroup]]:
    """Validate every crystal before any work (InputError naming the crystal)."""
    if not isinstance(crystals, Sequence) or not crystals:
        raise InputError("crystals: need a non-empty sequence of CrystalSpec")
    groups = []
    for i, c in enumerate(crystals):
        if not isinstance(c, CrystalSpec):
            raise InputError(f"crystals[{i}]: expected a CrystalSpec, got {type(c).__name__}")
        if isinstance(c.seed, bool) or not isinstance(c.seed, int | np.integer) or c.seed < 0:
            raise InputError(f"crystals[{i}] seed: must be a non-negative integer, got {c.seed!r}")
        try:
            groups.append(validate(c.trap, c.ions))
        except InputError as err:
            raise InputError(f"crystals[{i}]: {err}") from None
    return groups


def _prepare_host(
    crystals: Sequence[CrystalSpec], groups: list[list[IonGroup]], settings: SimulationSettings
) -> _Host:
    """Lattice starts, velocities, schedules and FIRE settings as :func:`simulate` draws and
    computes them for each crystal's seed."""
    host = _Host([], [], [], [], [], np.empty((len(crystals), 4)), np.empty((len(crystals), 2)))
    for b, (c, g) in enumerate(zip(crystals, groups, strict=True)):
        seeds = np.random.SeedSequence(int(c.seed)).spawn(3)
        rng = np.random.default_rng(seeds[0])
        system, index = _start(c.trap, g, rng)
        host.pos.append(system.pos.T.copy())
        host.vel.append(
            (
                np.sqrt(K_B * settings.temperature / system.mass)
                * rng.standard_normal((3, system.n))
            ).T
        )
        host.index.append(index)
        host.species.append(tuple(x.species for x in g))
        host.plans.append(schedule(c.trap, g, settings))
        first = g[index[0]].species
        spacing = (4.0 / 3.0 * math.pi / c.trap.uniform_density(first)) ** (1 / 3)
        w_z_min = min(c.trap.angular_frequencies(x.species)[1] for x in g if x.count)
        omega_max = _fastest_frequency(c.trap, g)
        host.relax[b] = (
            0.3 / omega_max,
            1.0 / omega_max,
            1e-4 * w_z_min**2 * spacing,
            0.05 * spacing,
        )
        host.keys[b] = seeds[2].generate_state(2)
    steps = {(p.equilibrate, p.gather, p.every) for p in host.plans}
    if len(steps) != 1:
        raise InputError("crystals: the schedules differ in step counts; use one steps_per_period")
    return host


def _to_device(
    crystals: Sequence[CrystalSpec], host: _Host, device: torch.device, dtype: torch.dtype
) -> _Batch:
    """Pad the host arrays into a :class:`_Batch` on ``device``."""
    b_count, n_max = len(crystals), max(len(i) for i in host.index)
    pos = np.zeros((b_count, n_max, 3))
    pos[..., 0] = _FAR + np.arange(n_max)
    vel = np.zeros((b_count, n_max, 3))
    mask = np.zeros((b_count, n_max), bool)
    charge, mass = np.zeros((b_count, n_max)), np.ones((b_count, n_max))
    k_pseudo, q_m = np.zeros((b_count, n_max, 3)), np.zeros((b_count, n_max))
    lit = np.zeros((b_count, n_max), bool)
    index = np.full((b_count, n_max), -1, np.int64)
    for b, c in enumerate(crystals):
        n, sp, idx = len(host.index[b]), host.species[b], host.index[b]
        pos[b, :n], vel[b, :n], mask[b, :n], index[b, :n] = host.pos[b], host.vel[b], True, idx
        charge[b, :n] = [float(sp[i].charge) for i in idx]
        mass[b, :n] = [sp[i].mass for i in idx]
        lit[b, :n] = [sp[i].laser_cooled for i in idx]
        aq = np.array([c.trap.mathieu(s) for s in sp])[idx]
        w2 = 0.25 * c.trap.omega**2
        k_pseudo[b, :n, :2] = (w2 * (aq[:, 0] + 0.5 * aq[:, 1] ** 2))[:, None]
        k_pseudo[b, :n, 2] = -2.0 * w2 * aq[:, 0]
        q_m[b, :n] = aq[:, 1]

    def put(x: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(x).to(device)
        return t.to(dtype) if t.is_floating_point() else t

    diag = torch.zeros((n_max, n_max), dtype=dtype, device=device)
    diag.fill_diagonal_(math.inf)
    return _Batch(
        pos=put(pos),
        vel=put(vel),
        mask=put(mask),
        charge=put(charge),
        qm_kc=put(COULOMB_K * charge / mass)[..., None],
        k_pseudo=put(k_pseudo),
        q_mathieu=put(q_m),
        lit=put(lit),
        mass=put(mass),
        species_index=put(index),
        diag_inf=diag,
    )


def _fire(batch: _Batch, relax: torch.Tensor, max_iter: int, check_every: int = 20) -> torch.Tensor:
    """FIRE relaxation of every crystal in the pseudopotential, as ``forces.fire_relax`` does
    it for one (a crystal stops at the first iteration whose rms acceleration is below its
    atol); relax (B, 4): dt0 s, dt_max s, atol m/s², max_step m. Returns the iterations used
    (B,); velocities are left at zero."""
    pos = batch.pos
    dt0, dt_max, atol, max_step = (relax[:, i, None, None] for i in range(4))
    b_count = pos.shape[0]
    n = batch.mask.sum(1).to(pos.dtype)[:, None, None]
    vel = torch.zeros_like(pos)
    dt, alpha = dt0.clone(), torch.full_like(dt0, 0.1)
    npos = torch.zeros_like(dt0)
    used = torch.full((b_count,), max_iter, dtype=torch.int64, device=pos.device)
    done = torch.zeros((b_count, 1, 1), dtype=torch.bool, device=pos.device)

    def accel(x: torch.Tensor) -> torch.Tensor:
        a = coulomb_accel(x, batch.charge, batch.qm_kc, batch.diag_inf)
        return a.sub_(batch.k_pseudo * x)

    acc = accel(pos)
    for it in range(max_iter):
        p = (acc * vel).sum((1, 2), keepdim=True)
        v2 = (vel * vel).sum((1, 2), keepdim=True)
        a2 = (acc * acc).sum((1, 2), keepdim=True)
        now = ~done & (torch.sqrt(a2 / n) < atol)
        used = torch.where(now[:, 0, 0], it, used)
        done |= now
        if it % check_every == 0 and bool(done.all()):
            break
        up = p > 0
        grow = up & (npos > 5)
        mixed = (1.0 - alpha) * vel + alpha * torch.sqrt(v2 / a2) * acc
        new_vel = torch.where(up, mixed, 0.0)
        new_dt = torch.where(grow, torch.minimum(dt * 1.1, dt_max), torch.where(up, dt, 0.5 * dt))
        alpha = torch.where(
            done, alpha, torch.where(grow, alpha * 0.99, torch.where(up, alpha, 0.1))
        )
        npos = torch.where(done, npos, torch.where(up, npos + 1, 0.0))
        dt = torch.where(done, dt, new_dt)
        new_vel = new_vel + dt * acc
        lim = max_step / dt
        speed = torch.linalg.vector_norm(new_vel, dim=-1, keepdim=True)
        new_vel = new_vel * torch.where(speed > lim, lim / speed, 1.0)
        pos = torch.where(done, pos, pos + dt * new_vel)
        vel = torch.where(done, vel, new_vel)
        acc = accel(pos)
    batch.pos = pos
    return used


def _per_ion(maps: np.ndarray, host: _Host, n_max: int, device, dtype) -> torch.Tensor:
    """Species maps (P, B, G, 3, 4) → per-ion (4, P, B, N, 3) (identity for padding)."""
    p_count, b_count = maps.shape[:2]
    out = np.zeros((p_count, b_count, n_max, 3, 4))
    out[..., 0] = out[..., 3] = 1.0
    for b, idx in enumerate(host.index):
        out[:, b, : len(idx)] = maps[:, b, idx]
    return torch.from_numpy(np.moveaxis(out, -1, 0).copy()).to(device=device, dtype=dtype)


def _bath(
    batch: _Batch, settings: SimulationSettings, dt: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    """Exact Ornstein-Uhlenbeck factors (``integrate.Thermostat.factors``) on the lit ions:
    c_axis, s_axis, c_iso, s_iso (B, N, 1) and the unit cooling axis (3,)."""
    kt = K_B * settings.temperature
    out = []
    for rate in (settings.cooling_rate, settings.isotropic_rate):
        c = torch.exp(-rate * dt)[:, None, None].expand_as(batch.mass[..., None])
        s = torch.sqrt((1.0 - c * c) * kt / batch.mass[..., None])
        lit = batch.lit[..., None]
        out += [torch.where(lit, c, 1.0), torch.where(lit, s, 0.0)]
    axis = torch.tensor(settings.cooling_axis, dtype=dt.dtype, device=dt.device)
    return (*out, axis / torch.linalg.vector_norm(axis))


def _langevin(
    batch: _Batch,
    host: _Host,
    settings: SimulationSettings,
    traps: Sequence[TrapSettings],
    samples: torch.Tensor,
    progress: ProgressCallback | None,
) -> torch.Tensor:
    """Phases 3 and 4: BAOAB in the RF field through equilibration and gathering; snapshots
    into ``samples`` (B, S, N, 3). Returns escaped (B,) bool."""
    pos, vel = batch.pos, batch.vel
    device, dtype = pos.device, pos.dtype
    b_count, n_max = batch.mask.shape
    plan = host.plans[0]
    dt_np = np.array([p.dt for p in host.plans])
    dt = torch.from_numpy(dt_np).to(device=device, dtype=dtype)
    half_dt = (0.5 * dt)[:, None, None]
    aq = np.zeros((b_count, max(len(s) for s in host.species), 2))
    for b, (t, sp) in enumerate(zip(traps, host.species, strict=True)):
        aq[b, : len(sp)] = [t.mathieu(s) for s in sp]
    first, second = (
        _per_ion(m, host, n_max, device, dtype) for m in _trap_maps(traps, aq, settings, dt_np)
    )
    c_ax, s_ax, c_iso, s_iso, axis = _bath(batch, settings, dt)
    use_iso = settings.isotropic_rate > 0
    keys = torch.from_numpy(host.keys.astype(np.int64)).to(device)
    ion = torch.arange(n_max, device=device)
    lane = 4 * ion[None, None, :] + torch.arange(4, device=device)[None, :, None]  # no N in it
    lanes = _mix32(lane ^ keys[:, 1, None, None])
    r_max2 = torch.tensor([t.r0**2 for t in traps], dtype=dtype, device=device)[:, None]
    z_max = torch.tensor([t.z0 for t in traps], dtype=dtype, device=device)[:, None]
    escaped = torch.zeros(b_count, dtype=torch.bool, device=device)
    total = plan.equilibrate + plan.gather
    first_sample = plan.equilibrate + plan.gather - (samples.shape[1] - 1) * plan.every
    acc = coulomb_accel(pos, batch.charge, batch.qm_kc, batch.diag_inf)
    period = settings.steps_per_period
    for step in range(total):
        a1, b1, c1, d1 = first[:, step % period]
        a2, b2, c2, d2 = second[:, step % period]
        vel = vel.addcmul_(half_dt, acc)
        pos, vel = torch.addcmul(a1 * pos, b1, vel), torch.addcmul(c1 * pos, d1, vel)
        xi = _normals(lanes, keys[:, 0], step, dtype).transpose(1, 2)  # (B, N, 4)
        along = (vel @ axis)[..., None]
        vel = vel.addcmul_(((c_ax - 1.0) * along).addcmul_(s_ax, xi[..., :1]), axis)
        if use_iso:
            vel = torch.addcmul(c_iso * vel, s_iso, xi[..., 1:])
        pos, vel = torch.addcmul(a2 * pos, b2, vel), torch.addcmul(c2 * pos, d2, vel)
        acc = coulomb_accel(pos, batch.charge, batch.qm_kc, batch.diag_inf)
        vel = vel.addcmul_(half_dt, acc)
        inside = (pos[..., :2].square().sum(-1) < r_max2) & (pos[..., 2].abs() < z_max)
        escaped |= (batch.mask & ~inside).any(1)
        k = step + 1 - first_sample
        if k >= 0 and k % plan.every == 0:
            samples[:, k // plan.every] = pos
        if (step + 1) % 256 == 0:
            report(progress, step + 1, total)
    batch.pos, batch.vel = pos, vel
    return escaped


def default_dtype(device: torch.device) -> torch.dtype:
    """float32 on CUDA (accurate enough: docs/BENCHMARKS.md), float64 elsewhere."""
    return torch.float32 if device.type == "cuda" else torch.float64


def simulate_batch(
    crystals: Sequence[CrystalSpec],
    settings: SimulationSettings | None = None,
    imaging: ImagingSettings | None = None,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    keep_samples: bool = False,
    progress: ProgressCallback | None = None,
) -> BatchResult:
    """Simulate every crystal of ``crystals`` at once on ``device`` (default: the CPU) in
    ``dtype`` (default :func:`default_dtype`) and, when ``imaging`` is given, render each
    one's image (noise-free, in ion exposures; ``imaging.camera`` must be None).

    ``settings`` as for :func:`simulate` (mode "rf" only; its ``seed`` and ``threads`` are
    not used: each crystal has its seed). Raises InputError for bad input before any work; a
    crystal whose ions leave the trap is flagged in ``escaped`` instead of stopping the batch.
    """
    from ccount_core.simulation.batch_render import render_batch

    settings = settings or SimulationSettings()
    if not isinstance(settings, SimulationSettings):
        raise InputError(f"settings: expected SimulationSettings, got {type(settings).__name__}")
    if settings.mode != "rf":
        raise InputError(
            f"settings mode: simulate_batch runs the RF field only, got {settings.mode!r}"
        )
    if imaging is not None and not isinstance(imaging, ImagingSettings):
        raise InputError(f"imaging: expected ImagingSettings, got {type(imaging).__name__}")
    if imaging is not None and imaging.camera is not None:
        raise InputError(
            "imaging camera: simulate_batch renders noise-free images; set camera=None"
        )
    device = torch.device(device or "cpu")
    dtype = dtype or default_dtype(device)
    if dtype not in (torch.float32, torch.float64):
        raise InputError(f"dtype: must be torch.float32 or torch.float64, got {dtype}")
    groups = _check_specs(crystals)
    host = _prepare_host(crystals, groups, settings)
    traps = [c.trap for c in crystals]
    with _full_precision():
        batch = _to_device(crystals, host, device, dtype)
        relax = torch.from_numpy(host.relax).to(device=device, dtype=dtype)
        used = (
            _fire(batch, relax, settings.relax_steps)
            if settings.relax_steps
            else torch.zeros(len(crystals), dtype=torch.int64, device=device)
        )
        q = batch.q_mathieu
        batch.pos = batch.pos * torch.stack((1.0 - 0.5 * q, 1.0 + 0.5 * q, torch.ones_like(q)), -1)
        samples = batch.pos.new_empty((len(crystals), settings.samples, *batch.pos.shape[1:]))
        escaped = _langevin(batch, host, settings, traps, samples, progress)
        images = None
        if imaging is not None:
            lit = batch.lit & ~escaped[:, None]
            images = render_batch(samples, lit, imaging)
    return BatchResult(
        positions=batch.pos,
        velocities=batch.vel,
        mask=batch.mask,
        species_index=batch.species_index,
        species=tuple(host.species),
        fluorescing=batch.lit,
        samples=samples if keep_samples else None,
        images=images,
        escaped=escaped,
        relax_iterations=used,
    )
