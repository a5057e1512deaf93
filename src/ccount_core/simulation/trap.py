"""The linear Paul trap, in CCMD's conventions.

For a species of mass m and charge Z e, with Ω = 2π f_RF:

    q = 2 Z e V_RF / (m Ω² r0²),    a = −4 η Z e V_end / (m Ω² z0²),    a_z = −2 a.

The equations of motion (CCMD's ``CosineTrap``; time in s):

    ẍ = (Ω²/4) (2q cos Ωt − a) x,   ÿ = −(Ω²/4) (2q cos Ωt + a) y,   z̈ = −(Ω²/4) a_z z.

The time-averaged (pseudo)potential gives the secular angular frequencies

    ω_r = (Ω/2) √(a + q²/2),    ω_z = (Ω/2) √(a_z) = √(2 η Z e V_end / (m z0²)).

V_RF is used exactly as CCMD's formula uses it (CCMD's docs call it peak-to-peak), so the
same typed numbers give the same crystal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy.special import mathieu_a, mathieu_b

from ccount_core.checks import check_number
from ccount_core.errors import InputError
from ccount_core.simulation.constants import E_CHARGE, EPSILON_0, Species


def mathieu_beta(a: float, q: float, depth: int = 12) -> float:
    """Characteristic exponent β of x'' + (a − 2q cos 2ξ) x = 0 in the first stability region
    (secular angular frequency β Ω / 2), from the continued fraction

        β² = a + q² / ((β+2)² − a − q² / ((β+4)² − a − …)) + (same with β−2, β−4, …),

    solved by fixed-point iteration from the lowest-order β² = a + q²/2."""
    if q == 0:
        return math.sqrt(a) if a > 0 else math.nan
    b2 = a + 0.5 * q * q
    if b2 <= 0:
        return math.nan
    beta = math.sqrt(b2)
    for _ in range(200):

        def tail(sign: int, beta: float = beta) -> float:
            acc = 0.0
            for k in range(depth, 0, -1):
                acc = q * q / ((beta + sign * 2 * k) ** 2 - a - acc)
            return acc

        new = a + tail(+1) + tail(-1)
        if new <= 0:
            return math.nan
        new_beta = math.sqrt(new)
        if abs(new_beta - beta) < 1e-15:
            break
        beta = new_beta
    return beta


def _tidy(value: float) -> float:
    """``value`` rounded to 12 significant digits."""
    return float(f"{value:.12g}")


@dataclass(frozen=True)
class TrapSettings:
    """A linear Paul trap. SI units: v_rf, v_end in V; r0, z0 in m; rf_frequency in Hz.

    eta (η, dimensionless) is the geometric efficiency of the end-cap voltage.
    Defaults are the Oxford/Liverpool trap of the paper (r0 3.5 mm, z0 2.75 mm, 3.85 MHz).
    """

    v_rf: float
    v_end: float
    eta: float = 0.244
    r0: float = 3.5e-3
    z0: float = 2.75e-3
    rf_frequency: float = 3.85e6

    def __post_init__(self) -> None:
        check_number("trap v_rf", self.v_rf)
        check_number("trap v_end", self.v_end)
        for name in ("eta", "r0", "z0", "rf_frequency"):
            check_number(f"trap {name}", getattr(self, name), positive=True)

    @classmethod
    def from_lab_units(
        cls,
        v_rf: float,
        v_end: float,
        eta: float = 0.244,
        r0_um: float = 3500.0,
        z0_um: float = 2750.0,
        rf_mhz: float = 3.85,
    ) -> TrapSettings:
        """Build from lab units: V_RF and V_end in V, η, r0 and z0 in µm, RF frequency in MHz."""
        r0 = check_number("trap r0_um", r0_um, positive=True) / 1e6
        z0 = check_number("trap z0_um", z0_um, positive=True) / 1e6
        f = check_number("trap rf_mhz", rf_mhz, positive=True) * 1e6
        return cls(v_rf=v_rf, v_end=v_end, eta=eta, r0=r0, z0=z0, rf_frequency=f)

    def to_lab_units(self) -> dict[str, float]:
        """The keyword arguments of :meth:`from_lab_units`: V_RF and V_end in V, η, r0_um and
        z0_um in µm, rf_mhz in MHz; the converted values are rounded to 12 significant digits
        to drop the float noise of the unit conversion."""
        return {
            "v_rf": self.v_rf,
            "v_end": self.v_end,
            "eta": self.eta,
            "r0_um": _tidy(self.r0 * 1e6),
            "z0_um": _tidy(self.z0 * 1e6),
            "rf_mhz": _tidy(self.rf_frequency * 1e-6),
        }

    @property
    def omega(self) -> float:
        """RF angular frequency Ω, rad/s."""
        return 2.0 * math.pi * self.rf_frequency

    def mathieu(self, species: Species) -> tuple[float, float]:
        """CCMD's Mathieu parameters (a, q) for ``species`` (dimensionless); a_z = −2a."""
        zq = species.charge * E_CHARGE
        m_om2 = species.mass * self.omega**2
        q = 2.0 * zq * self.v_rf / (m_om2 * self.r0**2)
        a = -4.0 * self.eta * zq * self.v_end / (m_om2 * self.z0**2)
        return a, q

    def angular_frequencies(self, species: Species) -> tuple[float, float]:
        """Secular angular frequencies (ω_r, ω_z) in rad/s, lowest-order pseudopotential.

        Returns NaN for a direction that is not confined (use :meth:`check_stable`)."""
        a, q = self.mathieu(species)
        half = 0.5 * self.omega
        wr2 = a + 0.5 * q * q
        return (
            half * math.sqrt(wr2) if wr2 > 0 else math.nan,
            half * math.sqrt(-2.0 * a) if a < 0 else math.nan,
        )

    def secular_frequencies(self, species: Species) -> tuple[float, float]:
        """Secular frequencies (f_r, f_z) in Hz, lowest-order pseudopotential."""
        wr, wz = self.angular_frequencies(species)
        return wr / (2.0 * math.pi), wz / (2.0 * math.pi)

    def radial_frequency_exact(self, species: Species) -> float:
        """Radial secular frequency in Hz from the exact Mathieu exponent β (Ω β / 4π); the
        lowest-order :meth:`secular_frequencies` is low by about q²/30 relative (0.5% at q 0.13)."""
        a, q = self.mathieu(species)
        return self.rf_frequency * mathieu_beta(a, q) / 2.0

    def uniform_density(self, species: Species) -> float:
        """Ion number density n0 (m⁻³) of a large cold crystal of ``species`` alone in the
        pseudopotential: n0 = ε0 m (2ω_r² + ω_z²) / (Z e)²."""
        wr, wz = self.angular_frequencies(species)
        return EPSILON_0 * species.mass * (2 * wr**2 + wz**2) / (species.charge * E_CHARGE) ** 2

    def check_stable(self, species: Species) -> None:
        """Raise InputError unless (a, q) of ``species`` lie in the first stability region
        (radially: a₀(q) < a < b₁(q), Mathieu characteristic values) and the end caps
        confine it axially (a_z > 0)."""
        a, q = self.mathieu(species)
        if not a < 0:
            raise InputError(
                f"v_end: {self.v_end:g} V gives a_z = {-2 * a:.4g} <= 0 for {species.name}: "
                "no axial confinement (v_end and eta must be positive)"
            )
        qa = abs(q)
        if qa >= 0.908 or not (mathieu_a(0, qa) < a < mathieu_b(1, qa)):
            raise InputError(
                f"v_rf: (a, q) = ({a:.4g}, {q:.4g}) for {species.name} lies outside the first "
                f"stability region of the Mathieu equation (V_RF {self.v_rf:g} V, "
                f"V_end {self.v_end:g} V)"
            )
