"""SI constants and the ion-species table.

Masses are kg inside; :meth:`Species.from_u` takes atomic mass units, the unit CCMD's
``trap.info`` files and chemists use. Charges are in units of the elementary charge.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ccount_core.checks import check_number
from ccount_core.errors import InputError

E_CHARGE = 1.602176634e-19
"""Elementary charge, C."""
EPSILON_0 = 8.8541878128e-12
"""Vacuum permittivity, F/m."""
K_B = 1.380649e-23
"""Boltzmann constant, J/K."""
AMU = 1.66053906660e-27
"""Atomic mass unit, kg."""
COULOMB_K = E_CHARGE**2 / (4.0 * math.pi * EPSILON_0)
"""e² / (4π ε0), J·m: the Coulomb energy of two unit charges 1 m apart."""


@dataclass(frozen=True)
class Species:
    """One kind of ion.

    name: label used in tables and data sets (e.g. ``"Ca+"``); mass: kg; charge: units of e
    (a positive integer for the trap to confine it); laser_cooled: the species is Doppler
    cooled by the laser and therefore fluoresces (appears in images); dark species are cooled
    only sympathetically, through the Coulomb interaction.
    """

    name: str
    mass: float
    charge: int = 1
    laser_cooled: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise InputError(f"species name: must be a non-empty string, got {self.name!r}")
        check_number(f"species {self.name} mass", self.mass, positive=True)
        if isinstance(self.charge, bool) or not isinstance(self.charge, int) or self.charge < 1:
            raise InputError(
                f"species {self.name} charge: must be a positive integer (units of e), "
                f"got {self.charge!r}"
            )

    @classmethod
    def from_u(
        cls, name: str, mass_u: float, charge: int = 1, laser_cooled: bool = False
    ) -> Species:
        """A species with its mass given in atomic mass units (u)."""
        mass = check_number(f"species {name} mass_u", mass_u, positive=True) * AMU
        return cls(name, mass, charge, laser_cooled)

    @property
    def mass_u(self) -> float:
        """Mass in atomic mass units."""
        return self.mass / AMU


# Nominal masses of the most abundant isotopologue, in u (Ca+ 40 as in CCMD's trap.info).
SPECIES: dict[str, Species] = {
    s.name: s
    for s in (
        Species.from_u("Ca+", 40.0, 1, laser_cooled=True),
        Species.from_u("CaF+", 59.0),
        Species.from_u("ND3+", 20.0),
        Species.from_u("NH3+", 17.0),
        Species.from_u("N2H+", 29.0),
        Species.from_u("OCS+", 60.0),
        Species.from_u("Kr+", 84.0),
        Species.from_u("Xe+", 132.0),
    )
}
"""The species table, by name. Add to it with :func:`register_species`."""


def get_species(name: str | Species) -> Species:
    """Look a species up by name (a :class:`Species` is returned unchanged)."""
    if isinstance(name, Species):
        return name
    try:
        return SPECIES[name]
    except (KeyError, TypeError):
        known = ", ".join(sorted(SPECIES))
        raise InputError(f"species: unknown species {name!r} (known: {known})") from None


def register_species(species: Species, *, replace: bool = False) -> Species:
    """Add ``species`` to the table under its name; refuse to change an existing entry
    unless ``replace`` is true. Returns the species."""
    if not isinstance(species, Species):
        raise InputError(f"species: expected a Species, got {type(species).__name__}")
    old = SPECIES.get(species.name)
    if old is not None and old != species and not replace:
        raise InputError(
            f"species: {species.name!r} is already in the table with different values "
            "(pass replace=True to change it)"
        )
    SPECIES[species.name] = species
    return species
