"""Automatic simulated-image matching: the ion numbers whose simulated crystal looks like a frame.

The paper's reference method sets a simulated image beside the recording and changes the ion
numbers by eye until they match. Here a search does it, per frame:

1. **Signature.** A frame (recorded or simulated) goes through the one preparation pipeline
   (:func:`ccount_core.image.preprocess.prepare_frame`, the :func:`match_config`: physical
   scale, trap axis vertical, background plane, median, ellipse mask, brightness
   normalisation). A candidate's simulated image is masked with an ellipse of its own
   centre and direction and semi-axes at least the frame's (:meth:`Matcher.window`), so that
   both see the same window. Its intensity is projected on the trap axis and on the radial
   direction, each folded about the crystal centre (so the trap axis's sign, which the
   ellipse cannot tell, does not matter), and on the radial direction again within the
   central slab ``|z| < a/2`` (a: the frame's axial semi-axis), where a dark core shows
   most. The signature is the 19 quantiles (5 %, 10 %, …, 95 % of the light) of each of
   these three distributions, in µm (:data:`QUANTILES`): the crystal's length and width move
   all of them, a dark core moves the inner radial ones.
2. **Distance.** ``D = mean((q_sim − q_frame)²)`` over the 57 quantiles, µm²; the residual
   reported is √D (µm), over all 57 also for a dark search. Quantiles move continuously
   with the crystal's size, so D is smooth in N near its minimum (a parabola), while single
   ion positions enter only weakly.
3. **Search.** From the network's count: two secant steps on the size (the crystal volume,
   ∝ mean axial × (mean radial)² quantile, scales ∝ N), then a parabola search along N
   (five candidates ±2 steps of 2 % of N, extended while the minimum lies at an edge, a
   least-squares parabola through the five around the best). With a dark species the search
   runs on the total number T and the dark fraction φ: T, then φ (steps of 0.03), then T,
   every D over all 57 quantiles. (A search on the 38 radial ones only, once used because
   the axial ones of noise-free candidates were cut by a window of their own fit, read the
   camera frames of the reaction series' large dark fractions as up to 18 % more Ca+:
   docs/BENCHMARKS.md.)
   Optional extras (temperature, a scale on V_end) get the same parabola search at the best
   numbers, then N is searched once more.
4. **Interval.** Where the fitted parabola rises by its own minimum above the minimum
   (D = 2 D_min: the residual grows by √2), so a poorer match gives a wider interval.

Each candidate is simulated with fixed seeds (``MatchSettings.seeds`` seeds, their
signatures averaged): common random numbers make the profile smoother. The MD uses
:data:`SEARCH_SIMULATION`, a shorter schedule than the default (40 + 80 RF periods, 80
snapshots, about half the time). ``benchmarks/match_accuracy.py --schedule`` compares it
with the default schedule at the same seed (docs/BENCHMARKS.md): the size measure agrees
within about 1 %, as closely as two seeds of the default schedule do; the signature differs
less than a second seed's at 300 Ca+ and 270 Ca+ + 80 ND3+, more at 60 Ca+ (about as much
as one more ion).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ccount_core.checks import check_number
from ccount_core.errors import InputError
from ccount_core.image.ellipse import Ellipse, fit_ellipse
from ccount_core.image.preprocess import PreprocessConfig, prepare_frame
from ccount_core.progress import ProgressCallback, report
from ccount_core.simulation import (
    ImagingSettings,
    IonGroup,
    SimulationSettings,
    TrapSettings,
    get_species,
    simulate,
)
from ccount_core.simulation.render import render
from ccount_core.simulation.simulate import validate

#: Fractions of the light at which the signature's quantiles are taken.
QUANTILES = np.linspace(0.05, 0.95, 19)
#: The MD of a candidate: the default physics on a shorter schedule (RF periods, snapshots).
SEARCH_SIMULATION = SimulationSettings(equilibrate_periods=40, gather_periods=80, samples=80)
#: Step of the number search, as a fraction of the number (at least one ion).
N_STEP = 0.02
#: Step of the dark-fraction search.
FRACTION_STEP = 0.03
#: Step of the temperature search, in decades.
LOG_T_STEP = 0.15
#: Step of the V_end scale search (dimensionless).
V_END_STEP = 0.01
#: Most widenings of a parabola search whose minimum stays at an edge.
MAX_SHIFTS = 4
#: Columns of the match CSV before the dark species' and the extras'.
COLUMNS = ("frame", "time_s", "n_ca", "n_ca_lo", "n_ca_hi", "net_ca")
EXTRA_COLUMNS = ("temperature_mk", "v_end_scale", "residual_um", "simulations", "warning")
META_PREFIX = "# ccount match "
"""Start of the first line of a match CSV; its JSON metadata (source, trap, settings) follows."""


@dataclass(frozen=True)
class MatchSettings:
    """What the search varies and how.

    dark: the dark species searched besides Ca+ (e.g. "ND3+"), or None for pure Ca+.
    seeds: seeds simulated and averaged per candidate (fixed: 1, 2, …).
    fit_temperature: also search the bath temperature (K) on a log grid; None (default):
        with a dark species.
    fit_v_end: also search a scale on V_end (dimensionless, near 1); None (default): with a
        dark species. Both absorb what a simulated crystal and a recorded one differ in
        besides the numbers (how hot the sympathetically cooled core runs, the length): on
        the reaction series' dark-core frames they take the mean error from 3.06 % / 2.61 %
        (Ca+ / dark) to 2.90 % / 2.39 % on the shipped TIFF, an older simulator's, and from
        2.13 % / 2.53 % to 2.08 % / 2.42 % on today's, for twice the MD runs
        (docs/BENCHMARKS.md). A pure Ca+ search (1.34 % without them) does not need them.
    temperature: K, the bath temperature (the start when fitted).
    blur_um, dof_um: µm, the optics of the simulated camera (CCMD's blur w0, depth of field).
    simulation: the MD settings of a candidate (seed and temperature are set per candidate).
    """

    dark: str | None = None
    seeds: int = 1
    fit_temperature: bool | None = None
    fit_v_end: bool | None = None
    temperature: float = 0.01
    blur_um: float = 5.0
    dof_um: float = 50.0
    simulation: SimulationSettings = field(default=SEARCH_SIMULATION)

    def __post_init__(self) -> None:
        for name in ("fit_temperature", "fit_v_end"):
            if getattr(self, name) is None:  # frozen: set once, here
                object.__setattr__(self, name, self.dark is not None)
        if self.dark is not None and get_species(self.dark).laser_cooled:
            raise InputError(f"dark: {self.dark} is laser-cooled; give a dark species")
        if isinstance(self.seeds, bool) or not isinstance(self.seeds, int) or self.seeds < 1:
            raise InputError(f"seeds: must be a positive integer, got {self.seeds!r}")
        check_number("temperature", self.temperature, positive=True)
        check_number("blur_um", self.blur_um, positive=True)
        check_number("dof_um", self.dof_um, positive=True)

    def groups(self, n_ca: int, n_dark: int) -> list[IonGroup]:
        """The ion groups of a candidate: Ca+, then the dark species when any."""
        groups = [IonGroup("Ca+", n_ca)]
        if self.dark is not None and n_dark > 0:
            groups.append(IonGroup(self.dark, n_dark))
        return groups


@dataclass(frozen=True)
class Candidate:
    """One simulated crystal: ion numbers, bath temperature (K) and V_end scale."""

    n_ca: int
    n_dark: int = 0
    temperature: float = 0.01
    v_end_scale: float = 1.0


@dataclass
class FrameMatch:
    """The result for one frame.

    n_ca, n_dark: best numbers (ions, the parabola's minimum, not rounded); interval_ca,
    interval_dark: (lo, hi) ions; residual_um: √D at the best (µm); temperature: K;
    v_end_scale; simulations: MD runs made; best: the best simulated candidate;
    image: the best candidate rendered in the frame's geometry (frame's shape, crystal centre
    and trap-axis angle), scaled to the frame's brightness; residual_image: frame − image.
    """

    n_ca: float
    interval_ca: tuple[float, float]
    n_dark: float | None
    interval_dark: tuple[float, float] | None
    residual_um: float
    temperature: float
    v_end_scale: float
    simulations: int
    best: Candidate
    image: np.ndarray
    residual_image: np.ndarray


def match_config(ellipse: Ellipse, pixel_size_um: float) -> PreprocessConfig:
    """The preparation of a frame whose crystal has ``ellipse`` (px) at ``pixel_size_um``
    (µm/px): the physical scale kept at max(pixel, 1 µm) per pixel, a square output 2.5 times
    the crystal's length plus the mask margin (µm), so that candidates up to 2.5 times as
    long fit."""
    px = max(float(pixel_size_um), 1.0)
    cfg = PreprocessConfig()
    margin = cfg.mask_margin_um

    def side(semi_axis_px: float) -> int:
        return 2 * math.ceil((2.5 * semi_axis_px * pixel_size_um + margin + 2 * px) / px)

    return dataclasses.replace(
        cfg,
        model_pixel_size_um=px,
        output_shape=(side(ellipse.semi_major), side(ellipse.semi_major)),
    )


def _quantiles(profile: np.ndarray, x: np.ndarray) -> np.ndarray:
    cum = np.cumsum(profile, dtype=np.float64)
    if cum[-1] <= 0:
        raise InputError("frame: no light left in the crystal after preparation")
    return np.interp(QUANTILES, cum / cum[-1], x)


def _fold(profile: np.ndarray) -> np.ndarray:
    """A profile of even length folded about its centre (both halves summed)."""
    h = profile.size // 2
    return profile[h:] + profile[:h][::-1]


def signature(prepared: np.ndarray, cfg: PreprocessConfig, semi_axis_um: float) -> np.ndarray:
    """The 57 quantiles (µm) of a prepared frame (``cfg``, even output shape): folded axial
    projection, folded radial projection, folded radial projection of the central slab
    (``|z|`` below half the axial semi-axis ``semi_axis_um``, µm)."""
    px = cfg.model_pixel_size_um
    h, w = prepared.shape
    z = (np.arange(h // 2) + 0.5) * px
    x = (np.arange(w // 2) + 0.5) * px
    slab_half = 0.5 * semi_axis_um
    rows = np.abs(np.arange(h) - (h - 1) / 2.0) * px <= slab_half
    return np.concatenate(
        [
            _quantiles(_fold(prepared.sum(1)), z),
            _quantiles(_fold(prepared.sum(0)), x),
            _quantiles(_fold(prepared[rows].sum(0)), x),
        ]
    )


def distance(a: np.ndarray, b: np.ndarray) -> float:
    """D = mean squared difference of two signatures, µm²."""
    return float(np.mean((a - b) ** 2))


def size_measure(sig: np.ndarray) -> float:
    """A signature's size measure ∝ volume ∝ N: mean axial × (mean radial)² quantile, µm³."""
    return float(np.mean(sig[:19]) * np.mean(sig[19:38]) ** 2)


def _parabola(xs: np.ndarray, ds: np.ndarray) -> tuple[float, float, float]:
    """Least-squares D = A (x − x̂)² + C through the points: (x̂, A, C); A ≤ 0 when flat."""
    c2, c1, c0 = np.polyfit(xs, ds, 2)
    if c2 <= 0:
        return float(xs[np.argmin(ds)]), 0.0, float(np.min(ds))
    x_hat = -c1 / (2 * c2)
    return float(x_hat), float(c2), float(c0 - c1 * c1 / (4 * c2))


@dataclass(frozen=True)
class LineResult:
    """A parabola search: best value, its interval (lo, hi) and the distance there (µm²)."""

    best: float
    lo: float
    hi: float
    residual: float


def line_search(
    dist: Callable[[float], float], start: float, step: float, lower: float
) -> LineResult:
    """Minimise ``dist`` along one variable from ``start`` on a grid of ``step``, above
    ``lower``: five points, widened towards the minimum while it lies at an edge (at most
    :data:`MAX_SHIFTS` times), a parabola through the five around the best point."""
    start = max(start, lower + 2 * step)
    xs = [start + k * step for k in range(-2, 3)]
    ds = {x: dist(x) for x in xs}
    for _ in range(MAX_SHIFTS):
        order = sorted(ds)
        best = min(order, key=ds.__getitem__)
        if best == order[0] and best - step >= lower:
            new = best - step
        elif best == order[-1]:
            new = best + step
        else:
            break
        ds[new] = dist(new)
    order = sorted(ds)
    i = order.index(min(order, key=ds.__getitem__))
    i = min(max(i - 2, 0), max(len(order) - 5, 0))
    near = np.array(order[i : i + 5])
    x_hat, a, c = _parabola(near, np.array([ds[x] for x in near]))
    x_hat = float(np.clip(x_hat, near[0], near[-1]))
    c = max(c, 1e-12)
    half = math.sqrt(c / a) if a > 0 else (near[-1] - near[0]) / 2
    return LineResult(x_hat, x_hat - half, x_hat + half, c)


class Matcher:
    """Simulates candidates for one frame and measures their distance to it (cached)."""

    def __init__(
        self,
        frame: np.ndarray,
        pixel_size_um: float,
        trap: TrapSettings,
        settings: MatchSettings,
        progress: Callable[[], None] | None = None,
    ) -> None:
        self.trap, self.settings, self.pixel_size_um = trap, settings, float(pixel_size_um)
        self.frame = np.asarray(frame, dtype=np.float32)
        probe = fit_ellipse(self.frame)
        self.ellipse = probe
        self.cfg = match_config(probe, pixel_size_um)
        prepared, _ = prepare_frame(self.frame, self.cfg, probe, pixel_size_um)
        self.target = signature(prepared, self.cfg, probe.semi_major * self.pixel_size_um)
        side = math.ceil(2.5 * probe.semi_major) * 2 + 16
        self.imaging = ImagingSettings.from_lab_units(
            pixel_size_um=pixel_size_um,
            shape=(side, side),
            blur_um=settings.blur_um,
            dof_um=settings.dof_um,
        )
        self.cache: dict[Candidate, tuple[np.ndarray, list[Any]]] = {}
        self.tick = progress

    def trap_for(self, c: Candidate) -> TrapSettings:
        """The trap with V_end scaled by the candidate's factor."""
        return dataclasses.replace(self.trap, v_end=self.trap.v_end * c.v_end_scale)

    def run(
        self, c: Candidate, seed: int, simulation: SimulationSettings | None = None
    ) -> tuple[np.ndarray, Any]:
        """One MD run of the candidate (seed, ``simulation`` or the settings' schedule),
        rendered and prepared as the frame: (signature in µm, SimulationResult)."""
        sim = dataclasses.replace(
            simulation or self.settings.simulation, seed=seed, temperature=c.temperature
        )
        groups = self.settings.groups(c.n_ca, c.n_dark)
        result = simulate(self.trap_for(c), groups, sim, None)
        image = render(result.samples, result.fluorescing, self.imaging)
        prepared = prepare_frame(image, self.cfg, self.window(image), self.pixel_size_um)[0]
        if self.tick is not None:
            self.tick()
        return signature(prepared, self.cfg, self.ellipse.semi_major * self.pixel_size_um), result

    def window(self, image: np.ndarray) -> Ellipse:
        """The ellipse a candidate's ``image`` is prepared with: its own centre and direction
        (fitted, as the frame's are) and semi-axes at least the frame's, so that no candidate
        is masked more tightly than the frame. A window of the candidate's own fit cut the
        tips of thin Ca⁺ shells around a dark core: without camera noise the fit ends where
        the tips grow faint (77.7 px against the camera frame's 91.1 px for 124 Ca⁺ + 226
        ND₃⁺), so every candidate looked shorter and the search added Ca⁺ (+12 %)."""
        own = fit_ellipse(image)
        return dataclasses.replace(
            own,
            semi_major=max(own.semi_major, self.ellipse.semi_major),
            semi_minor=max(own.semi_minor, self.ellipse.semi_minor),
        )

    def signature_of(self, c: Candidate) -> np.ndarray:
        """The candidate's signature (mean over the seeds), simulated once."""
        if c not in self.cache:
            sigs, runs = zip(
                *(self.run(c, seed) for seed in range(1, self.settings.seeds + 1)), strict=True
            )
            self.cache[c] = (np.mean(sigs, axis=0), list(runs))
        return self.cache[c][0]

    def distance(self, c: Candidate) -> float:
        """D (µm²) between the frame and the candidate."""
        return distance(self.signature_of(c), self.target)

    def size(self, c: Candidate) -> float:
        """The candidate's :func:`size_measure`, µm³."""
        return size_measure(self.signature_of(c))

    def target_size(self) -> float:
        return size_measure(self.target)

    def best_image(self, c: Candidate) -> np.ndarray:
        """The candidate's first seed rendered in the frame's geometry, scaled to the frame's
        background-free brightness (sum over the crystal)."""
        from scipy import ndimage

        result = self.cache[c][1][0]
        omega_r, omega_z = self.trap_for(c).angular_frequencies(get_species("Ca+"))
        angle = self.ellipse.angle_deg if omega_z <= omega_r else self.ellipse.angle_deg - 90.0
        imaging = dataclasses.replace(
            self.imaging, shape=self.frame.shape, rotation_deg=(angle + 90.0) % 180.0 - 90.0
        )
        image = render(result.samples, result.fluorescing, imaging)
        rows, cols = self.frame.shape
        shift = (self.ellipse.center_row - (rows - 1) / 2, self.ellipse.center_col - (cols - 1) / 2)
        image = ndimage.shift(image, shift, order=1, mode="constant")
        background = float(np.median(self.frame))
        light = float(np.clip(self.frame - background, 0, None).sum())
        return (image * (light / max(float(image.sum()), 1e-12)) + background).astype(np.float32)


def _estimated_runs(settings: MatchSettings) -> int:
    """Simulations a frame usually needs (for progress): secant, parabola searches, extras."""
    searches = (3 if settings.dark else 1) + settings.fit_temperature + settings.fit_v_end
    again = 1 if (settings.fit_temperature or settings.fit_v_end) else 0
    return settings.seeds * (2 + 6 * (searches + again))


def match_frame(
    frame: np.ndarray,
    pixel_size_um: float,
    trap: TrapSettings,
    start_ca: float,
    start_dark: float = 0.0,
    settings: MatchSettings | None = None,
    progress: ProgressCallback | None = None,
) -> FrameMatch:
    """Search the ion numbers whose simulated crystal best matches ``frame`` (rows, cols;
    trap axis roughly horizontal, ``pixel_size_um`` µm/px), from the start numbers (ions, e.g.
    the network's count). See the module docstring for the signature, distance and search.
    ``progress(done, total)`` counts simulations (total estimated)."""
    settings = settings or MatchSettings()
    check_number("pixel_size_um", pixel_size_um, positive=True, numpy_scalars=True)
    check_number("start_ca", start_ca, nonnegative=True, numpy_scalars=True)
    check_number("start_dark", start_dark, nonnegative=True, numpy_scalars=True)
    validate(trap, settings.groups(max(1, round(start_ca)), round(start_dark)))
    runs = [0]
    total = _estimated_runs(settings)

    def tick() -> None:
        runs[0] += 1
        report(progress, min(runs[0], total - 1), total)

    m = Matcher(frame, pixel_size_um, trap, settings, tick)
    state = {"T": settings.temperature, "v": 1.0}
    dark = settings.dark is not None
    total_n = max(1.0, start_ca + (start_dark if dark else 0.0))
    frac = min(max(start_dark / total_n, 0.0), 0.9) if dark else 0.0

    def cand(n_total: float, f: float) -> Candidate:
        n_ca = max(1, round(n_total * (1.0 - f)))
        n_dark = max(0, round(n_total * f)) if dark else 0
        return Candidate(n_ca, n_dark, state["T"], state["v"])

    # secant on the size (volume ∝ N), two steps
    for _ in range(2):
        total_n = max(1.0, total_n * m.target_size() / m.size(cand(total_n, frac)))

    def search_n() -> LineResult:
        step = max(1.0, round(N_STEP * total_n))
        return line_search(lambda n: m.distance(cand(n, frac)), round(total_n), step, 1.0)

    def search_frac() -> LineResult:
        return line_search(lambda f: m.distance(cand(total_n, f)), frac, FRACTION_STEP, 0.0 - 1e-9)

    r_n = search_n()
    total_n = r_n.best
    r_f = None
    if dark:
        r_f = search_frac()
        frac = min(max(r_f.best, 0.0), 0.95)
        r_n = search_n()
        total_n = r_n.best
    extras = False
    if settings.fit_temperature:
        r_t = line_search(
            lambda lt: m.distance(dataclasses.replace(cand(total_n, frac), temperature=10**lt)),
            math.log10(state["T"]),
            LOG_T_STEP,
            -6.0,
        )
        state["T"] = 10**r_t.best
        extras = True
    if settings.fit_v_end:
        r_v = line_search(
            lambda s: m.distance(dataclasses.replace(cand(total_n, frac), v_end_scale=s)),
            1.0,
            V_END_STEP,
            0.5,
        )
        state["v"] = r_v.best
        extras = True
    if extras:
        r_n = search_n()
        total_n = r_n.best
    best = cand(total_n, frac)
    m.signature_of(best)
    image = m.best_image(best)
    n_ca = total_n * (1.0 - frac)
    span_n = (r_n.hi - r_n.lo) / 2
    if dark:
        assert r_f is not None
        span_f = (r_f.hi - r_f.lo) / 2
        s_ca = math.hypot(span_n * (1 - frac), total_n * span_f)
        s_dark = math.hypot(span_n * frac, total_n * span_f)
        n_dark: float | None = total_n * frac
        interval_dark: tuple[float, float] | None = (max(0.0, n_dark - s_dark), n_dark + s_dark)
    else:
        s_ca, n_dark, interval_dark = span_n, None, None
    report(progress, total, total)
    return FrameMatch(
        n_ca=n_ca,
        interval_ca=(max(0.0, n_ca - s_ca), n_ca + s_ca),
        n_dark=n_dark,
        interval_dark=interval_dark,
        residual_um=math.sqrt(m.distance(best)),
        temperature=state["T"],
        v_end_scale=state["v"],
        simulations=runs[0],
        best=best,
        image=image,
        residual_image=(np.asarray(frame, np.float32) - image).astype(np.float32),
    )


def parse_frames(spec: str | None, n_frames: int) -> list[int]:
    """``"0-3,7,10-"`` → frame indices (ranges inclusive, ``a-`` to the last frame), in
    order without repeats; None → every frame. InputError naming ``--frames`` otherwise."""
    if spec is None:
        return list(range(n_frames))
    out: list[int] = []
    for part in spec.split(","):
        lo, sep, hi = part.strip().partition("-")
        try:
            a = int(lo)
            b = (int(hi) if hi.strip() else n_frames - 1) if sep else a
        except ValueError:
            raise InputError(f"--frames: expected e.g. 0-3,7,10-, got {part.strip()!r}") from None
        if not 0 <= a <= b < n_frames:
            raise InputError(f"--frames: {part.strip()!r} is outside frames 0-{n_frames - 1}")
        out.extend(f for f in range(a, b + 1) if f not in out)
    return out


def columns(dark: str | None) -> list[str]:
    """The match CSV's columns: ``COLUMNS``, ``n_<dark>``, ``n_<dark>_lo``, ``n_<dark>_hi``,
    ``net_<dark>`` when a dark species is searched (e.g. ``n_ND3+``), then ``EXTRA_COLUMNS``."""
    dark_cols = [f"n_{dark}", f"n_{dark}_lo", f"n_{dark}_hi", f"net_{dark}"] if dark else []
    return [*COLUMNS, *dark_cols, *EXTRA_COLUMNS]


def row(
    frame: int, time_s: float | None, start: Sequence[float], m: FrameMatch, dark: str | None
) -> dict[str, Any]:
    """One CSV row (ions to 0.1, residual to 0.001 µm, temperature in mK)."""
    out: dict[str, Any] = {
        "frame": frame,
        "time_s": "" if time_s is None else round(time_s, 6),
        "n_ca": round(m.n_ca, 1),
        "n_ca_lo": round(m.interval_ca[0], 1),
        "n_ca_hi": round(m.interval_ca[1], 1),
        "net_ca": round(float(start[0]), 2),
        "temperature_mk": round(m.temperature * 1e3, 4),
        "v_end_scale": round(m.v_end_scale, 4),
        "residual_um": round(m.residual_um, 3),
        "simulations": m.simulations,
        "warning": "" if m.residual_um < 2.0 else "poor match: residual above 2 µm",
    }
    if dark:
        assert m.n_dark is not None and m.interval_dark is not None
        out.update(
            {
                f"n_{dark}": round(m.n_dark, 1),
                f"n_{dark}_lo": round(m.interval_dark[0], 1),
                f"n_{dark}_hi": round(m.interval_dark[1], 1),
                f"net_{dark}": round(float(start[1]), 2),
            }
        )
    return out


def _resume(path: Path, meta: dict[str, Any], cols: list[str]) -> set[int]:
    """Frames already in the match CSV ``path`` made with ``meta`` (a last line cut by a kill
    is dropped); a missing or empty file is started with its metadata line and columns."""
    from ccount_core.files import atomic_path

    line = META_PREFIX + json.dumps(meta, sort_keys=True) + "\n"
    if path.exists() and path.stat().st_size > 0:
        data = path.read_bytes()
        if not data.startswith(line.encode()):
            raise InputError(
                f"output: {path} is not a match of this stack with these settings; "
                "choose a new -o or delete it"
            )
        if not data.endswith(b"\n"):
            with path.open("r+b") as fh:
                fh.truncate(data.rfind(b"\n") + 1)
        with path.open(newline="", encoding="utf-8") as fh:
            fh.readline()
            return {int(r["frame"]) for r in csv.DictReader(fh) if r.get("frame", "").isdigit()}
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as fh:
        fh.write(line)
        csv.writer(fh).writerow(cols)
    return set()


def check_trap(trap: TrapSettings, dark: str | None) -> None:
    """InputError before any work when Ca+ (or the dark species) is not stably trapped."""
    trap.check_stable(get_species("Ca+"))
    if dark is not None:
        trap.check_stable(get_species(dark))


def match_file(
    path: Path | str,
    output: Path | str,
    trap: TrapSettings,
    pixel_size_um: float | None = None,
    settings: MatchSettings | None = None,
    frames: str | None = None,
    images: Path | str | None = None,
    model: Any = None,
    progress: ProgressCallback | None = None,
) -> list[dict[str, Any]]:
    """Match the frames ``frames`` (spec, :func:`parse_frames`) of a stack into the CSV
    ``output`` (one row per frame, appended and flushed as each is done; a rerun resumes),
    and the best simulated images into the TIFF ``images`` (default ``output`` with
    ``.tif``; frames not matched yet are zero). Starts: the network (``model``, default
    ``dark`` with a dark species, else ``default``). Returns the rows matched now."""
    import os

    from ccount_core.image.io import open_stack, write_tiff

    settings = settings or MatchSettings()
    output = Path(output)
    images = Path(images) if images is not None else output.with_suffix(".tif")
    if output.suffix.lower() in (".tif", ".tiff"):
        raise InputError(f"output: {output.name} is the match CSV; give a .csv name")
    if images.suffix.lower() not in (".tif", ".tiff"):
        raise InputError(f"images: must end in .tif or .tiff, got {images.name!r}")
    check_trap(trap, settings.dark)
    stack = open_stack(path)
    px = pixel_size_um if pixel_size_um is not None else stack.pixel_size_um
    if px is None:
        raise InputError("pixel_size_um: the stack does not record it; give --pixel-size-um")
    check_number("pixel_size_um", px, positive=True, numpy_scalars=True)
    wanted = parse_frames(frames, stack.n_frames)
    cols = columns(settings.dark)
    meta = {
        "source": str(Path(path).resolve()),
        "pixel_size_um": float(px),
        "trap": trap.to_lab_units(),
        "settings": {k: v for k, v in dataclasses.asdict(settings).items() if k != "simulation"},
        "simulation": {k: str(v) for k, v in dataclasses.asdict(settings.simulation).items()},
    }
    done = _resume(output, meta, cols)
    todo = [f for f in wanted if f not in done]
    shape = tuple(stack.data.shape[1:])
    best = np.zeros((stack.n_frames, *shape), np.float32)
    if images.exists() and done:
        import tifffile

        old = tifffile.imread(images)
        if old.shape == best.shape:
            best[:] = old
    if not todo:
        return []
    from ccount_core.nn.count import count_stack  # torch: only when there is work

    net_model = model if model is not None else ("dark" if settings.dark else None)
    data = np.asarray(stack.data[todo])
    net = count_stack(data, net_model, px)
    per = _estimated_runs(settings)
    key = f"count_{settings.dark}" if settings.dark else None
    rows = []
    with output.open("a", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=cols)
        for i, (f, r) in enumerate(zip(todo, net, strict=True)):
            start = (max(1.0, r["count"] or 1.0), max(0.0, r.get(key) or 0.0) if key else 0.0)

            def sub(done_: int, total_: int, i: int = i) -> None:
                report(progress, i * per + round(done_ * per / max(total_, 1)), len(todo) * per)

            m = match_frame(data[i], px, trap, start[0], start[1], settings, progress=sub)
            t = f * stack.frame_interval_s if stack.frame_interval_s else None
            out = row(f, t, start, m, settings.dark)
            writer.writerow(out)
            fh.flush()
            os.fsync(fh.fileno())
            best[f] = m.image
            write_tiff(images, best, pixel_size_um=px, metadata={"software": "ccount match"})
            rows.append(out)
    return rows
