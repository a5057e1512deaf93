"""The one public entry point: :func:`simulate` a Coulomb crystal and (optionally) its image.

Scheme (docs/PHYSICS.md explains why the image converges):
1. start: ions on a jittered cubic lattice filling the uniform-density spheroid the
   pseudopotential predicts (density n0, aspect ratio from the trap frequencies), lighter
   (more tightly confined) species nearer the axis;
2. relax: FIRE minimisation in the pseudopotential (T = 0) to a local energy minimum;
3. equilibrate: Langevin dynamics at the set temperature, in the full RF field (mode "rf") or
   the pseudopotential (mode "pseudo"), starting with the micromotion already in phase;
4. gather: the same dynamics, keeping ``samples`` snapshots of all positions spread evenly over
   ``gather_periods`` RF periods and over the RF phase; these make the image.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numba
import numpy as np

from ccount_core.checks import check_number
from ccount_core.errors import InputError
from ccount_core.progress import ProgressCallback, report
from ccount_core.simulation.constants import K_B, Species, get_species
from ccount_core.simulation.integrate import EscapeError, IonSystem, Thermostat, relax, run_steps
from ccount_core.simulation.trap import TrapSettings

if TYPE_CHECKING:  # render is imported lazily at run time
    from ccount_core.simulation.render import ImagingSettings

MAX_IONS = 20_000


@dataclass(frozen=True)
class IonGroup:
    """``count`` ions of one ``species`` (a Species or a name in the species table)."""

    species: Species | str
    count: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "species", get_species(self.species))
        c = self.count
        if isinstance(c, bool) or not isinstance(c, int | np.integer):
            raise InputError(f"ions: number of {self.species.name} must be an integer, got {c!r}")
        if c < 0:
            raise InputError(f"ions: number of {self.species.name} must not be negative, got {c}")
        object.__setattr__(self, "count", int(c))


@dataclass(frozen=True)
class SimulationSettings:
    """How to simulate. SI units.

    temperature: K, of the Langevin bath (laser cooling + heating).
    cooling_rate: 1/s, damping rate γ of the laser-cooling force m γ v·n along ``cooling_axis``
        on laser-cooled ions (CCMD's β: γ = β (1 + 1/m_u) / 2 × π f_RF, see docs/PHYSICS.md).
    cooling_axis: (3,) direction of the cooling laser (trap axis z by default).
    isotropic_rate: 1/s, a weaker bath at the same temperature on the laser-cooled ions
        along all axes (the radial part of real cooling beams, which are never exactly on
        axis). It stops the crystal spinning up about the trap axis in the RF field, which
        axial cooling alone cannot (docs/PHYSICS.md). Dark ions are cooled only
        sympathetically, through the Coulomb force.
    seed: random seed; equal inputs and seed give bit-for-bit equal results on one machine.
    mode: "rf" (time-dependent RF field, micromotion included) or "pseudo" (pseudopotential).
    steps_per_period: outer (Coulomb) steps per RF period in the RF field.
    trap_substeps: odd number of trap-force sub-steps per outer step (multiple time step).
    relax_steps: most FIRE iterations in the pseudopotential from the lattice start (it stops
        earlier when the rms acceleration is below 1e-4 ω_z² a_WS).
    equilibrate_periods, gather_periods: durations in RF periods (1/f_RF) of the phases.
    samples: number S of position snapshots kept over the gathering phase.
    threads: Numba threads for the Coulomb sum, 0 for all of Numba's threads (results are
        identical for any count). One thread is the default: a batch of crystals uses the
        cores better as one process per core, and on a busy machine a parallel region stalls
        every step waiting for a descheduled thread (docs/BENCHMARKS.md).
    """

    temperature: float = 0.01
    cooling_rate: float = 1.0e6
    cooling_axis: tuple[float, float, float] = (0.0, 0.0, 1.0)
    isotropic_rate: float = 5.0e5
    seed: int = 0
    mode: Literal["rf", "pseudo"] = "rf"
    steps_per_period: int = 10
    trap_substeps: int = 9
    relax_steps: int = 3000
    equilibrate_periods: int = 100
    gather_periods: int = 200
    samples: int = 200
    threads: int = 1

    def __post_init__(self) -> None:
        for name in ("temperature", "cooling_rate", "isotropic_rate"):
            check_number(f"simulation {name}", getattr(self, name), nonnegative=True)
        ax = self.cooling_axis
        if (
            len(ax) != 3
            or not all(isinstance(c, int | float) and math.isfinite(c) for c in ax)
            or not any(ax)
        ):
            raise InputError(
                f"simulation cooling_axis: must be 3 finite numbers, not all 0, got {ax!r}"
            )
        if self.mode not in ("rf", "pseudo"):
            raise InputError(f"simulation mode: must be 'rf' or 'pseudo', got {self.mode!r}")
        for name in (
            "seed",
            "steps_per_period",
            "relax_steps",
            "equilibrate_periods",
            "gather_periods",
            "samples",
            "threads",
            "trap_substeps",
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 0:
                raise InputError(f"simulation {name}: must be a non-negative integer, got {v!r}")
        if self.steps_per_period < 8:
            raise InputError(
                f"simulation steps_per_period: must be at least 8, got {self.steps_per_period}"
            )
        if self.trap_substeps % 2 == 0:
            raise InputError(f"simulation trap_substeps: must be odd, got {self.trap_substeps}")
        if self.samples < 1 or self.gather_periods < 1:
            raise InputError("simulation samples, gather_periods: must be at least 1")
        if self.samples > self.gather_periods * self.steps_per_period:
            raise InputError(
                f"simulation samples: {self.samples} exceeds the number of gathering steps "
                f"({self.gather_periods * self.steps_per_period})"
            )


def ccmd_cooling_rate(beta: float, mass_u: float, rf_frequency: float = 3.85e6) -> float:
    """Damping rate γ (1/s) equivalent to CCMD's laser-cooling ``beta`` for an ion of mass
    ``mass_u`` (u) at RF frequency ``rf_frequency`` (Hz).

    CCMD (``LaserCooledIon``) applies the friction −m β v_z in its scaled time unit
    τ = 1/(π f_RF) and its Tuckerman-Berne velocity correction divides v_z by 1 + (dt/2) β/m_u,
    so per unit τ the net rate is β (1 + 1/m_u) / 2: γ = β (1 + 1/m_u) / 2 · π f_RF."""
    check_number("simulation beta", beta, nonnegative=True)
    check_number("simulation mass_u", mass_u, positive=True)
    check_number("simulation rf_frequency", rf_frequency, positive=True)
    return 0.5 * beta * (1.0 + 1.0 / mass_u) * math.pi * rf_frequency


def ccmd_heating_temperature(
    recoil: float,
    beta: float,
    mass_u: float,
    steps_per_period: int = 20,
    respa_steps: int = 50,
    rf_frequency: float = 3.85e6,
) -> float:
    """Axial temperature (K) at which CCMD's random kicks balance its friction: the bath
    temperature a Langevin thermostat needs to reproduce CCMD's ``recoil`` heating for these
    CCMD step settings (CCMD's value grows with the step; ours does not).

    CCMD kicks every velocity component by √recoil · ξ · (dt/2) / m_u twice per step
    (dt = π / steps_per_period in units of τ = 1/(π f_RF)) and pushes ±0.015 (dt'/2)/m_u along
    z twice per RESPA sub-step dt' = dt / respa_steps: velocity diffusion per unit τ
    D_z = recoil dt / (2 m_u²) + 1.125e-4 dt' / m_u². With friction rate γ_τ = β (1 + 1/m_u)/2
    the balance m ⟨v_z²⟩ = k_B T gives T = m_u u (L/τ)² D_z / (2 γ_τ k_B), where
    L = (e² / (π ε0 u Ω²))^(1/3) is CCMD's length unit (docs/PHYSICS.md)."""
    from ccount_core.simulation.constants import AMU, E_CHARGE, EPSILON_0

    check_number("simulation recoil", recoil, nonnegative=True)
    check_number("simulation beta", beta, positive=True)
    check_number("simulation mass_u", mass_u, positive=True)
    omega = 2.0 * math.pi * rf_frequency
    length = (E_CHARGE**2 / (math.pi * EPSILON_0 * AMU * omega**2)) ** (1.0 / 3.0)
    tau = 1.0 / (math.pi * rf_frequency)
    dt = math.pi / steps_per_period
    d_z = recoil * dt / (2 * mass_u**2) + 1.125e-4 * (dt / respa_steps) / mass_u**2
    gamma_tau = 0.5 * beta * (1.0 + 1.0 / mass_u)
    return mass_u * AMU * (length / tau) ** 2 * d_z / (2.0 * gamma_tau * K_B)


@dataclass(frozen=True, eq=False)
class SimulationResult:
    """What :func:`simulate` returns (SI units).

    positions (N, 3) m and velocities (N, 3) m/s at the end; species_index (N,) int into
    ``species`` (in the order of the ion groups); samples (S, N, 3) m, positions over the
    gathering phase; sample_times (S,) s; image (rows, cols) float32 or None; info: step
    counts and wall times of the phases.
    """

    positions: np.ndarray
    velocities: np.ndarray
    species_index: np.ndarray
    species: tuple[Species, ...]
    samples: np.ndarray
    sample_times: np.ndarray
    image: np.ndarray | None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def fluorescing(self) -> np.ndarray:
        """(N,) bool: ions of a laser-cooled (fluorescing) species."""
        lit = np.array([s.laser_cooled for s in self.species], dtype=bool)
        return lit[self.species_index]


def _depolarisation_z(aspect: float) -> float:
    """Depolarisation factor along the symmetry axis of a spheroid with c/a = aspect."""
    if abs(aspect - 1.0) < 1e-9:
        return 1.0 / 3.0
    if aspect > 1.0:
        e = math.sqrt(1.0 - 1.0 / aspect**2)
        return (1.0 - e * e) / e**3 * (math.atanh(e) - e)
    e = math.sqrt(1.0 / aspect**2 - 1.0)
    return (1.0 + e * e) / e**3 * (e - math.atan(e))


def crystal_aspect(omega_r: float, omega_z: float) -> float:
    """Length/diameter ratio of a large cold crystal in a trap with secular angular
    frequencies ω_r, ω_z (uniformly charged spheroid: n_z / n_r = ω_z² / ω_r²)."""
    target = omega_z**2 / omega_r**2
    lo, hi = 1e-3, 1e3
    for _ in range(100):
        mid = math.sqrt(lo * hi)
        nz = _depolarisation_z(mid)
        ratio = nz / ((1.0 - nz) / 2.0)
        if ratio > target:  # too short: lengthen
            lo = mid
        else:
            hi = mid
    return math.sqrt(lo * hi)


def crystal_semi_axes(trap: TrapSettings, groups: Sequence[IonGroup]) -> tuple[float, float]:
    """Estimated semi-axes (R_r, R_z) in m of the cold crystal: each species fills its share
    of the volume at its own uniform density n0; the shape is that of the most numerous
    species (docs/PHYSICS.md)."""
    volume = sum(g.count / trap.uniform_density(g.species) for g in groups if g.count)
    main = max(groups, key=lambda g: g.count).species
    wr, wz = trap.angular_frequencies(main)
    aspect = crystal_aspect(wr, wz)
    r = (3.0 * volume / (4.0 * math.pi * aspect)) ** (1.0 / 3.0)
    return r, aspect * r


def _lattice_start(
    trap: TrapSettings, groups: Sequence[IonGroup], omega_r: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Start positions (3, N) m on a jittered cubic lattice filling the estimated spheroid,
    and species index (N,): species with larger ω_r (tighter radial confinement) inside."""
    n = sum(g.count for g in groups)
    rr, rz = crystal_semi_axes(trap, groups)
    spacing = (4.0 / 3.0 * math.pi * rr * rr * rz / n) ** (1.0 / 3.0)
    k = 1.3
    while True:
        nx = math.ceil(k * rr / spacing) + 1
        nzl = math.ceil(k * rz / spacing) + 1
        gx = np.arange(-nx, nx + 1) * spacing
        gz = np.arange(-nzl, nzl + 1) * spacing
        X, Y, Z = np.meshgrid(gx, gx, gz, indexing="ij")
        pts = np.stack([X.ravel(), Y.ravel(), Z.ravel()])
        pts = pts + 0.5 * spacing * (rng.random(3) - 0.5)[:, None]  # random lattice offset
        rho = (pts[0] ** 2 + pts[1] ** 2) / rr**2 + pts[2] ** 2 / rz**2
        if np.count_nonzero(rho <= k * k) >= n:
            break
        k *= 1.3
    order = np.argsort(rho + 1e-9 * rng.random(rho.shape), kind="stable")[:n]
    pos = pts[:, order] + 0.15 * spacing * rng.standard_normal((3, n))
    # lighter species (larger ω_r) on the inside: sort points by cylindrical radius
    by_radius = np.argsort(pos[0] ** 2 + pos[1] ** 2, kind="stable")
    group_order = sorted(range(len(groups)), key=lambda g: -omega_r[g])
    index = np.empty(n, dtype=np.int64)
    start = 0
    for g in group_order:
        index[by_radius[start : start + groups[g].count]] = g
        start += groups[g].count
    return pos, index


def _refuse_repeated_species(groups: Sequence[IonGroup]) -> None:
    """InputError naming the first species name that two groups share."""
    seen: dict[str, int] = {}
    for g in groups:
        name = g.species.name
        if name in seen:
            raise InputError(
                f"ions: {name} is given twice ({seen[name]} and {g.count}); give each species"
                f" once, with its total number ({seen[name] + g.count})"
            )
        seen[name] = g.count


def validate(trap: TrapSettings, ions: Sequence[IonGroup]) -> list[IonGroup]:
    """Check inputs before any long computation; return the ion groups as a list.

    Raises InputError for: no ions, a species in two groups (results and image metadata
    hold one number per species name), too many, unstable (a, q) for any species, or a
    crystal estimated to fill more than half of the trap (it would leave it)."""
    if not isinstance(trap, TrapSettings):
        raise InputError(f"trap: expected TrapSettings, got {type(trap).__name__}")
    groups = [g if isinstance(g, IonGroup) else IonGroup(*g) for g in ions]
    _refuse_repeated_species(groups)
    n = sum(g.count for g in groups)
    if n < 1:
        raise InputError("ions: the total number of ions must be at least 1")
    if n > MAX_IONS:
        raise InputError(f"ions: {n} ions is more than this simulator handles ({MAX_IONS})")
    for g in groups:
        if g.count:
            trap.check_stable(g.species)
    rr, rz = crystal_semi_axes(trap, [g for g in groups if g.count])
    if rr > 0.5 * trap.r0 or rz > 0.5 * trap.z0:
        raise InputError(
            f"ions: {n} ions would form a crystal of about {2 * rz * 1e6:.0f} × {2 * rr * 1e6:.0f}"
            f" µm, too large for this trap (r0 {trap.r0 * 1e6:.0f} µm, z0 {trap.z0 * 1e6:.0f} µm):"
            " the crystal would leave the trap"
        )
    return groups


@dataclass(frozen=True)
class Schedule:
    """The time grid of one run: outer step ``dt`` (s) in the RF field (``rf``) or the
    pseudopotential, RF period ``t_rf`` (s), the steps of each phase (``relax``: most FIRE
    iterations), the stride ``every`` between snapshots, trap sub-steps and Numba threads."""

    rf: bool
    dt: float
    t_rf: float
    relax: int
    equilibrate: int
    gather: int
    every: int
    substeps: int
    threads: int

    @property
    def total(self) -> int:
        """Steps of all phases, for progress reports."""
        return self.relax + self.equilibrate + self.gather


def _fastest_frequency(trap: TrapSettings, groups: Sequence[IonGroup]) -> float:
    """Highest collective angular frequency (rad/s): the plasma frequency √(2 ω_r² + ω_z²) of
    the most tightly confined species present."""
    return max(
        math.sqrt(2 * wr**2 + wz**2)
        for wr, wz in (trap.angular_frequencies(g.species) for g in groups if g.count)
    )


def schedule(
    trap: TrapSettings, groups: Sequence[IonGroup], settings: SimulationSettings
) -> Schedule:
    """Time steps: RF steps resolve the RF period; pseudopotential steps resolve the fastest
    collective motion. The snapshot stride is coprime with the steps per RF period in the RF
    field, so that the snapshots sample every RF phase."""
    t_rf = 1.0 / trap.rf_frequency
    rf = settings.mode == "rf"
    if rf:
        dt = t_rf / settings.steps_per_period
    else:
        dt = min(0.25 / _fastest_frequency(trap, groups), t_rf)
    gather = max(settings.samples, round(settings.gather_periods * t_rf / dt))
    every = max(1, gather // settings.samples)
    if rf:
        while math.gcd(every, settings.steps_per_period) != 1 and every > 1:
            every -= 1
    return Schedule(
        rf=rf,
        dt=dt,
        t_rf=t_rf,
        relax=settings.relax_steps,
        equilibrate=max(1, round(settings.equilibrate_periods * t_rf / dt)),
        gather=gather,
        every=every,
        substeps=settings.trap_substeps if rf else 1,
        threads=settings.threads or numba.config.NUMBA_NUM_THREADS,
    )


def _start(
    trap: TrapSettings, groups: Sequence[IonGroup], rng: np.random.Generator
) -> tuple[IonSystem, np.ndarray]:
    """Phase 1: the ions at rest on the lattice start (:func:`_lattice_start`) and their
    species index (N,)."""
    species = [g.species for g in groups]
    omega_r = np.array([trap.angular_frequencies(g.species)[0] if g.count else 0.0 for g in groups])
    pos, index = _lattice_start(trap, groups, omega_r, rng)
    aq = [trap.mathieu(s) for s in species]
    system = IonSystem(
        pos=pos,
        vel=np.zeros((3, pos.shape[1])),
        mass=np.array([species[i].mass for i in index]),
        charge=np.array([float(species[i].charge) for i in index]),
        mathieu_a=np.array([aq[i][0] for i in index]),
        mathieu_q=np.array([aq[i][1] for i in index]),
        omega=trap.omega,
    )
    return system, index


def _relax(
    system: IonSystem,
    trap: TrapSettings,
    groups: Sequence[IonGroup],
    first: Species,
    plan: Schedule,
) -> int:
    """Phase 2: FIRE at T = 0 in the pseudopotential to a local minimum (rms acceleration
    below 1e-4 ω_z² a_WS, a_WS from the density of ``first``, the species of ion 0).
    Returns the iterations used."""
    if not plan.relax:
        return 0
    spacing = (4.0 / 3.0 * math.pi / trap.uniform_density(first)) ** (1 / 3)
    w_z_min = min(trap.angular_frequencies(g.species)[1] for g in groups if g.count)
    return relax(
        system,
        max_iter=plan.relax,
        omega_max=_fastest_frequency(trap, groups),
        atol=1e-4 * w_z_min**2 * spacing,
        max_step=0.05 * spacing,
        threads=plan.threads,
    )


def _thermalise(system: IonSystem, temperature: float, rf: bool, rng: np.random.Generator) -> None:
    """Start of phase 3: t = 0, Maxwell velocities at ``temperature`` (K) and, in the RF
    field, the micromotion in phase (x = X (1 − q/2), y = Y (1 + q/2) at Ω t = 0)."""
    system.t = 0.0
    if rf:
        system.pos[0] *= 1.0 - 0.5 * system.mathieu_q
        system.pos[1] *= 1.0 + 0.5 * system.mathieu_q
    noise = rng.standard_normal((3, system.n))
    system.vel[:] = np.sqrt(K_B * temperature / system.mass) * noise


def _thermostat(settings: SimulationSettings, cooled: np.ndarray) -> Thermostat:
    """The Langevin bath of phases 3 and 4: laser cooling and the isotropic bath act on the
    laser-cooled ions (``cooled`` (N,) bool) only."""
    return Thermostat(
        temperature=settings.temperature,
        cooling_rate=settings.cooling_rate,
        axis=settings.cooling_axis,
        cooled=cooled,
        isotropic_rate=settings.isotropic_rate,
        isotropic=cooled,
    )


def _langevin(
    system: IonSystem,
    trap: TrapSettings,
    plan: Schedule,
    bath: Thermostat,
    rng: np.random.Generator,
    nsteps: int,
    on_chunk: Callable[[int], object],
    samples: np.ndarray | None = None,
) -> None:
    """``nsteps`` Langevin steps on the schedule's grid; snapshots into ``samples`` (S, 3, N)
    every ``plan.every`` steps when given."""
    run_steps(
        system,
        dt=plan.dt,
        nsteps=nsteps,
        rf=plan.rf,
        bath=bath,
        rng=rng,
        r_max=trap.r0,
        z_max=trap.z0,
        samples=samples,
        sample_every=plan.every if samples is not None else 0,
        on_chunk=on_chunk,
        threads=plan.threads,
        substeps=plan.substeps,
    )


def _gather(
    system: IonSystem,
    trap: TrapSettings,
    plan: Schedule,
    bath: Thermostat,
    rng: np.random.Generator,
    n_samples: int,
    on_chunk: Callable[[int], object],
) -> tuple[np.ndarray, np.ndarray]:
    """Phase 4: ``n_samples`` snapshots (S, 3, N) m over the gathering steps, the last on
    the last step, and their times (S,) s."""
    snaps = np.empty((n_samples, 3, system.n))
    t0 = system.t
    _langevin(system, trap, plan, bath, rng, plan.gather, on_chunk, samples=snaps)
    first = plan.gather - (n_samples - 1) * plan.every
    return snaps, t0 + (first + plan.every * np.arange(n_samples)) * plan.dt


def _ticker(progress: ProgressCallback | None, offset: int, total: int) -> Callable[[int], None]:
    """Progress callback of a phase that starts after ``offset`` of ``total`` steps."""

    def tick(done: int) -> None:
        report(progress, offset + done, total)

    return tick


@contextmanager
def _escape_is_input_error(trap: TrapSettings) -> Iterator[None]:
    """Report an ion leaving ``trap`` during the block as bad input (a too weak trap)."""
    try:
        yield
    except EscapeError as err:
        raise InputError(
            f"trap: the crystal left the trap ({err}); the trap is too weak or unstable for "
            f"these ions (V_RF {trap.v_rf:g} V, V_end {trap.v_end:g} V)"
        ) from None


def _render(
    snaps: np.ndarray, lit: np.ndarray, imaging: ImagingSettings, seed: np.random.SeedSequence
) -> np.ndarray:
    """Phase 5: the camera image of the snapshots (S, 3, N) of the ions where ``lit`` (N,)."""
    from ccount_core.simulation.render import render

    return render(snaps.transpose(0, 2, 1), lit, imaging, np.random.default_rng(seed))


def simulate(
    trap: TrapSettings,
    ions: Sequence[IonGroup],
    settings: SimulationSettings | None = None,
    imaging: ImagingSettings | None = None,
    progress: ProgressCallback | None = None,
) -> SimulationResult:
    """Simulate a Coulomb crystal of ``ions`` in ``trap`` and, when ``imaging`` is given,
    render its fluorescence image with :func:`ccount_core.simulation.render.render`.

    Returns a :class:`SimulationResult`; raises InputError for bad input (before the run) and
    when the crystal leaves the trap during the run.
    """
    settings = settings or SimulationSettings()
    if not isinstance(settings, SimulationSettings):
        raise InputError(f"settings: expected SimulationSettings, got {type(settings).__name__}")
    groups = validate(trap, ions)
    species = tuple(g.species for g in groups)
    seeds = np.random.SeedSequence(settings.seed).spawn(2)
    rng = np.random.default_rng(seeds[0])
    plan = schedule(trap, groups, settings)
    timings: dict[str, float] = {}
    t_start = time.perf_counter()

    system, index = _start(trap, groups, rng)
    lit = np.array([s.laser_cooled for s in species], dtype=bool)[index]
    with _escape_is_input_error(trap):
        relax_used = _relax(system, trap, groups, species[index[0]], plan)
        timings["relax_s"] = time.perf_counter() - t_start
        _thermalise(system, settings.temperature, plan.rf, rng)
        bath = _thermostat(settings, lit)
        t0 = time.perf_counter()
        on_chunk = _ticker(progress, plan.relax, plan.total)
        _langevin(system, trap, plan, bath, rng, plan.equilibrate, on_chunk)
        timings["equilibrate_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        on_chunk = _ticker(progress, plan.relax + plan.equilibrate, plan.total)
        snaps, sample_times = _gather(system, trap, plan, bath, rng, settings.samples, on_chunk)
        timings["gather_s"] = time.perf_counter() - t0
    report(progress, plan.total, plan.total)

    image = None
    if imaging is not None:
        t0 = time.perf_counter()
        image = _render(snaps, lit, imaging, seeds[1])
        timings["render_s"] = time.perf_counter() - t0
    timings["total_s"] = time.perf_counter() - t_start
    info = {
        "dt_s": plan.dt,
        "steps": {"relax": relax_used, "equilibrate": plan.equilibrate, "gather": plan.gather},
        "sample_every": plan.every,
        "rf_periods": (plan.equilibrate + plan.gather) * plan.dt / plan.t_rf,
        "timings": timings,
    }
    return SimulationResult(
        positions=system.pos.T.copy(),
        velocities=system.vel.T.copy(),
        species_index=index,
        species=species,
        samples=np.ascontiguousarray(snaps.transpose(0, 2, 1)),
        sample_times=sample_times,
        image=image,
        info=info,
    )
