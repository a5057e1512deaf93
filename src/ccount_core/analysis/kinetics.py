"""Reaction kinetics from N(t): the first-order loss rate of Ca+ (and the growth of a dark
product) fitted to the counts of ``ccount count``.

Models, with t counted from the first fitted frame's time t0 (s), k in s⁻¹, numbers in ions:

``first-order``
    N_Ca(t) = (N0 − c)·exp(−k t) + c: Ca+ is lost at the rate k towards an offset c (Ca+
    that does not react, or a constant bias of the count).
``first-order-to-product``
    the same, and the dark product P(t) = P0 + y·(N0 − c)·(1 − exp(−k t)), fitted jointly
    with one k: the product grows by y ions for each Ca+ lost (y = 1 when every lost Ca+
    becomes one product ion that stays trapped and is counted without bias), from P0 at t0.

Weights: each frame is weighted by its reported 1σ (the ``uncertainty`` column for Ca+,
``uncertainty_<label>`` for the dark species). Where a species' σ is not reported (no column,
or an empty cell in a fitted row), its frames share one σ estimated from the fit's residuals
(σ² = RSS/n · N/(N − p) over that species' n of the N points, p parameters; iterated with the
fit), and the notes say so.

Errors: the covariance is (JᵀWJ)⁻¹ at the optimum. When χ²/dof > 1 (the counts scatter
more than their σ say) it is multiplied by χ²/dof and the summary says so; when χ²/dof < 1
it is kept, so the errors are never smaller than the stated σ allow.

Frames: a row without a count (empty or NaN: a frame ``count`` could not count) is skipped
with a note; a counted row with a warning is fitted (its σ carries what the count knows) and
counted in the notes. Every fitted row needs a time, increasing from row to row.
A series whose fit does not converge, whose Ca+ count does not fall or whose k is within
``FLAT_SIGMAS`` σ of 0 is refused as flat: no decay is detectable in it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import least_squares

from ccount_core.errors import InputError
from ccount_core.files import atomic_path
from ccount_core.nn.counts_file import (
    OTHER_COUNT_PREFIX,
    OTHER_UNCERTAINTY_PREFIX,
    other_counts,
    read_counts,
)

MODELS = ("first-order", "first-order-to-product")
PARAMETERS = {
    "first-order": ("n0", "k", "c"),
    "first-order-to-product": ("n0", "k", "c", "p0", "y"),
}
"""Fitted parameters per model: N0 (ions), k (s⁻¹), c (ions), P0 (ions), y (product per Ca+)."""
FLAT_SIGMAS = 2.0
"""A decay is detected when k exceeds this many of its σ."""
MIN_PRODUCT_FRAMES = 3
"""Frames with a dark count the product model needs at least (P0, y and the shared k)."""
KINETICS_PREFIX = "# ccount kinetics "
"""Start of the first line of a fit file; the fit's JSON summary follows."""
_GRID = 200  # k values of the starting search
_FLAT = "the series is flat: no first-order decay is detectable"


@dataclass(frozen=True)
class Series:
    """The fitted rows of a counts file: times (s), counts and their 1σ (ions; None where not
    reported), and the dark species' counts when asked for (NaN where not counted); ``notes``
    for the user, and the frames ``skipped`` (not counted)."""

    frames: np.ndarray
    times_s: np.ndarray
    ca: np.ndarray
    ca_sigma: np.ndarray | None
    dark_name: str | None = None
    dark: np.ndarray | None = None
    dark_sigma: np.ndarray | None = None
    notes: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()


@dataclass(frozen=True)
class KineticsFit:
    """A fitted model: ``values`` and ``errors`` (1σ) by parameter name (``PARAMETERS``),
    the fit quality (χ², dof) and whether the errors were scaled by χ²/dof."""

    model: str
    series: Series
    t0_s: float
    values: dict[str, float]
    errors: dict[str, float]
    covariance: np.ndarray
    chi2: float
    dof: int
    scaled: bool

    @property
    def k(self) -> float:
        """The loss rate of Ca+ (s⁻¹)."""
        return self.values["k"]

    @property
    def k_sigma(self) -> float:
        """Its 1σ (s⁻¹)."""
        return self.errors["k"]

    def curve(self, times_s: np.ndarray) -> dict[str, np.ndarray]:
        """The fitted numbers (ions) at ``times_s`` (s): ``{"Ca+": ..., dark: ...}``."""
        p = [self.values[n] for n in PARAMETERS[self.model]]
        ca, dark = _model(p, np.asarray(times_s, float) - self.t0_s)
        out = {"Ca+": ca}
        if dark is not None and self.series.dark_name is not None:
            out[self.series.dark_name] = dark
        return out

    def summary(self) -> list[str]:
        """The lines ``ccount kinetics`` prints: k, N0, c (and P0, y), the fit quality."""
        s = self.series
        v, e = self.values, self.errors
        lines = [
            f"{self.model} fit of {len(s.times_s)} frames, t = {s.times_s[0]:g}-"
            f"{s.times_s[-1]:g} s",
            f"k = {format_value(v['k'], e['k'])} s-1",
            f"N0 = {format_value(v['n0'], e['n0'])} ions (Ca+ at t = {self.t0_s:g} s)",
            f"c = {format_value(v['c'], e['c'])} ions (offset: Ca+ left at long times)",
        ]
        if "p0" in v:
            lines += [
                f"P0 = {format_value(v['p0'], e['p0'])} ions ({s.dark_name} at t = "
                f"{self.t0_s:g} s)",
                f"y = {format_value(v['y'], e['y'])} ({s.dark_name} gained per Ca+ lost)",
            ]
        red = self.chi2 / self.dof if self.dof else math.nan
        quality = (
            f"fit: chi2 = {self.chi2:.1f} for {self.dof} degrees of freedom (reduced {red:.2f})"
        )
        if self.scaled:
            quality += f"; errors scaled by sqrt({red:.2f}): the counts scatter more than their σ"
        return [*lines, quality, *s.notes]

    def to_json(self) -> dict[str, Any]:
        """The fit as plain values (the first line of a fit file)."""
        return {
            "model": self.model,
            "t0_s": self.t0_s,
            "values": self.values,
            "errors": self.errors,
            "chi2": self.chi2,
            "dof": self.dof,
            "errors_scaled": self.scaled,
            "dark": self.series.dark_name,
        }


def format_value(value: float, sigma: float) -> str:
    """``value ± sigma`` with the error to two significant digits and the value to the same
    decimal place (``0.00833 ± 0.00021``); in powers of ten (``0 ± 9.6e+12``) when ``sigma``
    is below 1e-6 or from 1e5; the value alone, to three significant digits, when ``sigma``
    is not a positive finite number."""
    if not (math.isfinite(sigma) and sigma > 0):
        return f"{value:.3g}"
    if not 1e-6 <= sigma < 1e5:
        return f"{value:.3g} ± {sigma:.2g}"
    decimals = 1 - math.floor(math.log10(sigma))
    if decimals > 0:
        return f"{value:.{decimals}f} ± {sigma:.{decimals}f}"
    return f"{round(value, decimals):.0f} ± {round(sigma, decimals):.0f}"


def _number(row: Mapping[str, Any], column: str) -> float:
    """A row's cell as a float; NaN for an empty or missing cell (None, "", "nan")."""
    text = row.get(column)
    if text is None or text == "":
        return math.nan
    try:
        return float(text)
    except (TypeError, ValueError):
        raise InputError(f"{column}: not a number in the counts: {text!r}") from None


def series_from_rows(
    rows: Sequence[Mapping[str, Any]], model: str = "first-order", product: str | None = None
) -> Series:
    """The series to fit from counts rows (strings as :func:`read_counts` gives them, or the
    core's row dicts). ``product``: the dark species for ``first-order-to-product`` (None:
    the file's only one). InputError for an unknown model, a cell that is not a number, missing or
    non-increasing times, or a product model on counts without a dark column."""
    if model not in MODELS:
        raise InputError(f"model: expected one of {', '.join(MODELS)}, got {model!r}")
    darks = list(other_counts(rows))
    dark_name = None
    if model == "first-order-to-product":
        if not darks:
            raise InputError(
                "model: first-order-to-product needs a dark-species count, and these counts "
                "have none (count with a model that counts one, e.g. --model dark)"
            )
        if product is None and len(darks) > 1:
            raise InputError(
                f"product: the counts hold several dark species ({', '.join(darks)}); name one"
            )
        dark_name = product if product is not None else darks[0]
        if dark_name not in darks:
            raise InputError(
                f"product: no count of {dark_name!r} (the counts hold {', '.join(darks)})"
            )
    elif product is not None:
        raise InputError("product: only the first-order-to-product model fits a product")
    used, skipped = [], []
    for r in rows:
        if math.isfinite(_number(r, "count")):
            used.append(r)
        else:
            skipped.append(str(r.get("frame", "?")))
    frames = np.array([int(_number(r, "frame")) for r in used], int)
    times = np.array([_number(r, "time_s") for r in used])
    for f, t in zip(frames, times, strict=True):
        if not math.isfinite(t):
            raise InputError(
                f"time_s: frame {f} has no time (the stack carried no frame interval); "
                "kinetics needs times in s"
            )
    if len(times) > 1 and not np.all(np.diff(times) > 0):
        i = int(np.argmin(np.diff(times) > 0)) + 1
        raise InputError(f"time_s: the times do not increase at frame {frames[i]} ({times[i]:g} s)")
    ca = np.array([_number(r, "count") for r in used])
    notes = []
    warned = sum(bool(r.get("warning")) for r in used)
    if warned:
        notes.append(
            f"note: {warned} fitted frames carry a warning from the count (see its warning column)"
        )
    ca_sigma = _sigmas(used, "uncertainty", "Ca+", ca, notes)
    dark = dark_sigma = None
    if dark_name is not None:
        dark = np.array([_number(r, OTHER_COUNT_PREFIX + dark_name) for r in used])
        dark_sigma = _sigmas(used, OTHER_UNCERTAINTY_PREFIX + dark_name, dark_name, dark, notes)
    return Series(
        frames, times, ca, ca_sigma, dark_name, dark, dark_sigma, tuple(notes), tuple(skipped)
    )


def _sigmas(
    rows: Sequence[Mapping[str, Any]], column: str, name: str, counts: np.ndarray, notes: list[str]
) -> np.ndarray | None:
    """The 1σ column (ions) when every row with a count reports a positive one, else None
    with a note."""
    sigma = np.array([_number(r, column) for r in rows])
    known = sigma[np.isfinite(counts)]
    if known.size and np.all(np.isfinite(known) & (known > 0)):
        return sigma
    notes.append(
        f"note: no 1σ reported for every {name} count; its frames share one σ "
        "estimated from the residuals"
    )
    return None


def read_series(path: Path | str, model: str = "first-order", product: str | None = None) -> Series:
    """:func:`series_from_rows` of the counts file at ``path`` (InputError when it is
    missing or not a counts file)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such counts file")
    _, rows = read_counts(path)
    if rows and "count" not in rows[0]:
        raise InputError(f"{path}: not a ccount counts file (no count column)")
    return series_from_rows(rows, model, product)


def _decay(k: float, tau: np.ndarray) -> np.ndarray:
    """exp(−k τ), its exponent capped at 700 so that a wild trial step of the optimiser
    (k far below 0) stays finite."""
    return np.exp(np.minimum(-k * tau, 700.0))


def _model(p: Sequence[float], tau: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Ca+ and (with 5 parameters) product numbers at ``tau`` (s after t0)."""
    n0, k, c = p[0], p[1], p[2]
    e = _decay(k, tau)
    ca = (n0 - c) * e + c
    dark = p[3] + p[4] * (n0 - c) * (1 - e) if len(p) == 5 else None
    return ca, dark


def _jacobian(p: Sequence[float], tau: np.ndarray, dark_tau: np.ndarray) -> np.ndarray:
    """d(model)/d(parameters), Ca+ rows then product rows (``dark_tau``: their times)."""
    n0, k, c = p[0], p[1], p[2]
    e = _decay(k, tau)
    ca = np.column_stack([e, -(n0 - c) * tau * e, 1 - e])
    if len(p) == 3:
        return ca
    ca = np.column_stack([ca, np.zeros((len(tau), 2))])
    y, e = p[4], _decay(k, dark_tau)
    dark = np.column_stack(
        [
            y * (1 - e),
            y * (n0 - c) * dark_tau * e,
            -y * (1 - e),
            np.ones_like(e),
            (n0 - c) * (1 - e),
        ]
    )
    return np.vstack([ca, dark])


def _start(
    tau: np.ndarray,
    ca: np.ndarray,
    w: np.ndarray,
    dtau: np.ndarray,
    dark: np.ndarray | None,
    dw: np.ndarray,
) -> tuple[list[float], int]:
    """Starting parameters from a grid of k, the others solved linearly at each k (Ca+:
    N0 e + c (1 − e); product: P0 + B (1 − e), y = B/(N0 − c)), and the grid index of the
    best k (the last: the best k is at the fast end of the grid)."""
    ks = np.geomspace(0.01 / tau[-1], 10 / np.min(np.diff(tau)), _GRID)
    e = np.exp(-ks[:, None] * tau)
    chi2, lin = _linear(np.stack([e, 1 - e], axis=-1), ca, w)
    if dark is not None:
        de = 1 - np.exp(-ks[:, None] * dtau)
        dchi2, dlin = _linear(np.stack([np.ones_like(de), de], axis=-1), dark, dw)
        chi2 = chi2 + dchi2
    i = int(np.argmin(chi2))
    p = [lin[i, 0], ks[i], lin[i, 1]]
    if dark is not None:
        amplitude = lin[i, 0] - lin[i, 1]
        p += [dlin[i, 0], dlin[i, 1] / amplitude if amplitude else 1.0]
    return p, i


def _linear(basis: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted linear least squares for a stack of bases ``(K, n, m)``: ``(χ² (K,),
    coefficients (K, m))`` of ``y`` (n,) with weights ``w`` (1/σ)."""
    a = basis * w[:, None]
    coef = np.einsum("kij,j->ki", np.linalg.pinv(a), y * w)
    chi2 = np.sum((np.einsum("knm,km->kn", a, coef) - y * w) ** 2, axis=1)
    return chi2, coef


def fit_kinetics(series: Series, model: str = "first-order") -> KineticsFit:
    """Fit ``model`` (``MODELS``) to ``series`` by weighted least squares (module docstring).
    InputError for too few frames or a flat series."""
    if model not in MODELS:
        raise InputError(f"model: expected one of {', '.join(MODELS)}, got {model!r}")
    names = PARAMETERS[model]
    product = model == "first-order-to-product"
    n = len(series.times_s)
    if n < len(names) + 1:
        raise InputError(
            f"too few frames: {n} counted, the {model} model needs at least {len(names) + 1}"
        )
    if product and (series.dark is None or series.dark_name is None):
        raise InputError("model: first-order-to-product needs the dark species' counts")
    t0 = float(series.times_s[0])
    tau = series.times_s - t0
    has_dark = np.isfinite(series.dark) if product else np.zeros(n, bool)
    if product and has_dark.sum() < MIN_PRODUCT_FRAMES:
        raise InputError(
            f"too few frames: {int(has_dark.sum())} with a {series.dark_name} count, the "
            f"{model} model needs at least {MIN_PRODUCT_FRAMES}"
        )
    dtau = tau[has_dark]
    dark = series.dark[has_dark] if product else np.zeros(0)
    ca_sigma = series.ca_sigma
    dark_sigma = series.dark_sigma[has_dark] if product and series.dark_sigma is not None else None
    points = n + len(dark)
    dof = points - len(names)
    # a σ not reported: one per species, from the residuals (iterated; exact at once alone)
    s_ca = ca_sigma if ca_sigma is not None else np.ones(n)
    s_dark = dark_sigma if dark_sigma is not None else np.ones(len(dark))
    p0, edge = _start(tau, series.ca, 1 / s_ca, dtau, dark if product else None, 1 / s_dark)
    if edge == _GRID - 1 and p0[0] > p0[2]:  # a fall, complete at the second frame
        raise InputError(
            f"the Ca+ count falls within the first interval ({tau[1]:g} s): the frames are "
            "too far apart to measure k"
        )
    for _ in range(20):  # converges in two or three
        w = np.concatenate([1 / s_ca, 1 / s_dark])
        result = _solve(p0, tau, series.ca, dtau, dark if product else None, w)
        p0 = result.x
        raw = result.fun / w
        old = (s_ca[0], s_dark[0] if len(s_dark) else 0.0)
        if ca_sigma is None:
            s_ca = np.full(n, _residual_sigma(raw[:n], points, len(names)))
        if product and dark_sigma is None:
            s_dark = np.full(len(dark), _residual_sigma(raw[n:], points, len(names)))
        new = (s_ca[0], s_dark[0] if len(s_dark) else 0.0)
        if np.allclose(old, new, rtol=1e-6):
            break
    if not result.success or not np.all(np.isfinite(result.x)):
        raise InputError(f"{_FLAT} (the fit does not converge)")
    jac = result.jac
    chi2 = float(np.sum(result.fun**2))
    try:
        cov = np.linalg.inv(jac.T @ jac)
    except np.linalg.LinAlgError:
        raise InputError(f"{_FLAT} (its parameters are not determined)") from None
    red = chi2 / dof if dof > 0 else math.nan
    scaled = bool(red > 1 + 1e-6)  # not when σ came from the residuals (χ²/dof = 1)
    if scaled:
        cov = cov * red
    values = {name: float(x) for name, x in zip(names, result.x, strict=True)}
    errors = {name: float(math.sqrt(max(cov[i, i], 0.0))) for i, name in enumerate(names)}
    k, sk = values["k"], errors["k"]
    if values["n0"] <= values["c"]:
        raise InputError(f"{_FLAT} (the Ca+ count does not fall)")
    if not (math.isfinite(sk) and k > FLAT_SIGMAS * sk):
        raise InputError(f"{_FLAT} (k = {format_value(k, sk)} s-1 is within {FLAT_SIGMAS:g}σ of 0)")
    return KineticsFit(model, series, t0, values, errors, cov, chi2, dof, scaled)


def _solve(
    p0: Sequence[float],
    tau: np.ndarray,
    ca: np.ndarray,
    dtau: np.ndarray,
    dark: np.ndarray | None,
    w: np.ndarray,
) -> Any:
    """scipy's Levenberg-Marquardt fit of the model from ``p0``: residuals (count − model),
    Ca+ then product, times the weights ``w`` (1/σ)."""

    def residuals(p: np.ndarray) -> np.ndarray:
        r = [ca - _model(p, tau)[0]]
        if dark is not None:
            r.append(dark - _model(p, dtau)[1])
        return np.concatenate(r) * w

    def jacobian(p: np.ndarray) -> np.ndarray:
        return -_jacobian(p, tau, dtau) * w[:, None]

    return least_squares(residuals, p0, jac=jacobian, method="lm", x_scale="jac")


def _residual_sigma(r: np.ndarray, points: int, parameters: int) -> float:
    """One σ (ions) for a species' residuals ``r``: RSS/n · N/(N − p), N points, p parameters;
    at least 1e-6 (an exact fit), so that the weights stay finite."""
    return max(float(math.sqrt(np.sum(r**2) / len(r) * points / (points - parameters))), 1e-6)


def write_fit(fit: KineticsFit, path: Path | str) -> Path:
    """Write the fitted curve to the CSV ``path``, atomically: a first line
    ``# ccount kinetics {json}`` (:meth:`KineticsFit.to_json`), then one row per fitted frame:
    frame, time_s, and per species its count, fit and residual (count − fit; ions)."""
    path = Path(path)
    s = fit.series
    curve = fit.curve(s.times_s)
    measured = {"Ca+": s.ca}
    if s.dark_name is not None and s.dark_name in curve:
        measured[s.dark_name] = s.dark
    columns = ["frame", "time_s"]
    for name in measured:
        columns += [f"count_{name}", f"fit_{name}", f"residual_{name}"]
    lines = [KINETICS_PREFIX + json.dumps(fit.to_json(), sort_keys=True), ",".join(columns)]
    for i, (frame, t) in enumerate(zip(s.frames, s.times_s, strict=True)):
        cells = [str(frame), f"{t:.6f}"]
        for name, values in measured.items():
            count, fitted = values[i], curve[name][i]
            cells += [_cell(count), f"{fitted:.2f}", _cell(count - fitted)]
        lines.append(",".join(cells))
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _cell(value: float) -> str:
    return f"{value:.2f}" if math.isfinite(value) else ""


__all__ = [
    "FLAT_SIGMAS",
    "MODELS",
    "PARAMETERS",
    "KineticsFit",
    "Series",
    "fit_kinetics",
    "format_value",
    "read_series",
    "series_from_rows",
    "write_fit",
]
