"""Molecular dynamics of ion Coulomb crystals in a linear Paul trap (CCMD conventions).

Public API: species (:class:`Species`, :data:`SPECIES`, :func:`get_species`,
:func:`register_species`), the trap (:class:`TrapSettings`) and the simulation
(:class:`IonGroup`, :class:`SimulationSettings`, :class:`SimulationResult`, :func:`simulate`),
and the camera's settings (:class:`ImagingSettings`, :class:`CameraModel`; images come from
:func:`ccount_core.simulation.render.render`).
"""

from ccount_core.simulation.constants import SPECIES, Species, get_species, register_species
from ccount_core.simulation.render import CameraModel, ImagingSettings
from ccount_core.simulation.simulate import (
    IonGroup,
    SimulationResult,
    SimulationSettings,
    ccmd_cooling_rate,
    ccmd_heating_temperature,
    simulate,
)
from ccount_core.simulation.trap import TrapSettings

__all__ = [
    "SPECIES",
    "CameraModel",
    "ImagingSettings",
    "IonGroup",
    "SimulationResult",
    "SimulationSettings",
    "Species",
    "TrapSettings",
    "ccmd_cooling_rate",
    "ccmd_heating_temperature",
    "get_species",
    "register_species",
    "simulate",
]
