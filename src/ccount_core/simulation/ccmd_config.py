"""Read CCMD ``trap.info`` files (Boost INFO format) into ccount's settings objects.

CCMD (softleygroup/ccmd) reads its input with Boost's ``iptree`` INFO parser: ``key value``
lines, ``key { ... }`` branches, ``;`` comments, keys case-insensitive. The branches it knows,
and what they become here:

========================  ======================================================================
CCMD                      ccount
========================  ======================================================================
``trap``                  :class:`~ccount_core.simulation.TrapSettings` (``vrf`` V, ``vend`` V,
                          ``eta``, ``r0`` m, ``z0`` m, ``freq`` Hz); only ``type { name cosine }``
``integrator``            read and checked; used only on request (:func:`ccmd_timing`,
                          ``ccount simulate --ccmd-timing``), see "Timing" below
``image``                 :class:`~ccount_core.simulation.ImagingSettings`: ``scale`` px/µm,
                          ``blur`` µm, ``dof`` µm, ``nx`` rows, ``nz`` columns; ``makeimage``
``ionnumbers``            one :class:`~ccount_core.simulation.IonGroup` per line, in file order
``iontype``               the species: ``mass`` u, ``charge`` e, ``lasercooled``; ``beta`` →
                          SimulationSettings.cooling_rate; ``recoil``, ``heating``, ``direction``
                          are checked, not used (CCMD's recoil heating is negligible, nK)
``simulation``            ``seed`` (``threads`` is accepted and ignored)
``laser``                 accepted and ignored (CCMD's optional saturation-model inputs)
========================  ======================================================================

Timing. By default ccount runs its own converged schedule (SimulationSettings' defaults:
10 steps per RF period, 100 RF periods of equilibration, 200 of gathering; docs/PHYSICS.md
sections 4-5), far shorter than CCMD's and converged for the crystal's size and shape.
:func:`ccmd_timing` takes the file's instead:

=======================================  ===============================================
CCMD ``integrator``                      SimulationSettings
=======================================  ===============================================
``stepsPerPeriod`` (time step T_RF/n)    ``steps_per_period`` = n (outer, Coulomb steps)
``coolperiods`` (RF periods of cooling)  ``equilibrate_periods`` (rounded to whole periods)
``histperiods`` (RF periods imaged)      ``gather_periods`` (rounded to whole periods)
older ``timestep`` τ (units of 2/Ω)      ``steps_per_period`` = π/τ, rounded
older ``coolsteps``/``histsteps``        periods = steps / (π/τ), rounded
``respasteps`` (inner RESPA steps)       not used: ``trap_substeps`` stays 9, already
                                         within 0.02% of the exact secular frequency
=======================================  ===============================================

Any other key, a value that is not a number where one is needed, or an ion without an
``iontype`` entry raises :class:`~ccount_core.errors.InputError` naming the key and the line.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ccount_core.checks import parse_number
from ccount_core.errors import InputError


@dataclass
class InfoNode:
    """One node of an INFO tree: ``key [value] [{ children }]`` at ``line`` (1-based)."""

    key: str
    value: str | None
    line: int
    children: list[InfoNode] = field(default_factory=list)

    def path(self, parent: str) -> str:
        return f"{parent}.{self.key}" if parent else self.key


_TOKEN = re.compile(r'\s*(?:(;.*)|(\{)|(\})|"((?:[^"\\]|\\.)*)"|([^\s{};"]+))')


def _tokenise(text: str, source: str) -> list[tuple[str, str, int]]:
    """(kind, text, line) tokens; kind is 'word', 'open', 'close' or 'eol'."""
    tokens: list[tuple[str, str, int]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip()
        pos = 0
        while pos < len(line):
            m = _TOKEN.match(line, pos)
            if m is None or m.end() == pos:
                if line[pos:].strip() == "":
                    break
                raise InputError(f"{source}:{number}: cannot read {line[pos:].strip()!r}")
            pos = m.end()
            comment, opened, closed, quoted, word = m.groups()
            if comment is not None:
                break
            if opened:
                tokens.append(("open", "{", number))
            elif closed:
                tokens.append(("close", "}", number))
            elif quoted is not None:
                tokens.append(("word", quoted, number))
            elif word is not None:
                if word.startswith("#"):
                    raise InputError(f"{source}:{number}: directive {word!r} is not supported")
                tokens.append(("word", word, number))
        tokens.append(("eol", "", number))
    return tokens


def parse_info(text: str, source: str = "trap.info") -> list[InfoNode]:
    """Parse Boost INFO text into a list of top-level nodes (keys lower-cased)."""
    tokens = _tokenise(text, source)
    pos = 0

    def parse_block(depth: int, opened_at: int) -> list[InfoNode]:
        nonlocal pos
        nodes: list[InfoNode] = []
        while pos < len(tokens):
            kind, tok, line = tokens[pos]
            if kind == "eol":
                pos += 1
            elif kind == "close":
                if depth == 0:
                    raise InputError(f"{source}:{line}: '}}' without a matching '{{'")
                pos += 1
                return nodes
            elif kind == "open":
                if not nodes:
                    raise InputError(f"{source}:{line}: '{{' without a key before it")
                pos += 1
                nodes[-1].children.extend(parse_block(depth + 1, line))
            else:
                pos += 1
                node = InfoNode(key=tok.lower(), value=None, line=line)
                if pos < len(tokens) and tokens[pos][0] == "word":
                    node.value = tokens[pos][1]
                    pos += 1
                    if pos < len(tokens) and tokens[pos][0] == "word":
                        extra = tokens[pos][1]
                        raise InputError(
                            f"{source}:{line}: key {tok!r} has more than one value "
                            f"({node.value!r} {extra!r})"
                        )
                nodes.append(node)
        if depth > 0:
            raise InputError(f"{source}:{opened_at}: '{{' is never closed")
        return nodes

    return parse_block(0, 0)


# --- typed values ---------------------------------------------------------------------------


def _where(node: InfoNode, parent: str, source: str) -> str:
    return f"{source}:{node.line}: {node.path(parent)}"


def _int(node: InfoNode, parent: str, source: str) -> int:
    value = parse_number(_where(node, parent, source), node.value)
    if value != int(value):
        raise InputError(f"{_where(node, parent, source)}: expected an integer, got {node.value!r}")
    return int(value)


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _bool(node: InfoNode, parent: str, source: str) -> bool:
    text = (node.value or "").lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise InputError(f"{_where(node, parent, source)}: expected true or false, got {node.value!r}")


def _leaf_values(
    nodes: list[InfoNode],
    parent: str,
    source: str,
    schema: dict[str, str],
) -> dict[str, Any]:
    """Typed values of the leaf keys of a branch; unknown or repeated keys are errors."""
    out: dict[str, Any] = {}
    lines: dict[str, int] = {}
    for node in nodes:
        kind = schema.get(node.key)
        if kind is None:
            known = ", ".join(sorted(schema))
            raise InputError(
                f"{_where(node, parent, source)}: unknown key (known in {parent}: {known})"
            )
        if node.children and kind != "branch":
            raise InputError(f"{_where(node, parent, source)}: expected a value, not a branch")
        if node.key in out:
            raise InputError(
                f"{_where(node, parent, source)}: repeated (first at line {lines[node.key]})"
            )
        lines[node.key] = node.line
        if kind == "branch":
            out[node.key] = node
        elif node.value is None:
            raise InputError(f"{_where(node, parent, source)}: has no value")
        elif kind == "float":
            out[node.key] = parse_number(_where(node, parent, source), node.value)
        elif kind == "int":
            out[node.key] = _int(node, parent, source)
        elif kind == "bool":
            out[node.key] = _bool(node, parent, source)
        else:
            out[node.key] = node.value
    return out


def _require(values: dict[str, Any], keys: tuple[str, ...], branch: str, source: str) -> None:
    for key in keys:
        if key not in values:
            raise InputError(f"{source}: {branch}.{key}: missing")


_TRAP = {
    "vrf": "float",
    "vend": "float",
    "eta": "float",
    "r0": "float",
    "z0": "float",
    "freq": "float",
    "type": "branch",
}
_TRAP_TYPE = {"name": "str", "tau": "float", "deltat": "float", "mult": "float"}
_INTEGRATOR = {
    "stepsperperiod": "int",
    "respasteps": "int",
    "coolperiods": "float",
    "histperiods": "float",
    "timestep": "float",
    "coolsteps": "int",
    "histsteps": "int",
}
_IMAGE = {
    "makeimage": "bool",
    "scale": "float",
    "blur": "float",
    "dof": "float",
    "nz": "int",
    "nx": "int",
}
_SIMULATION = {"threads": "int", "seed": "int"}
_LASER = {"wavelength": "float", "delta": "float", "idisat": "float"}
_IONTYPE = {
    "name": "str",
    "symbol": "str",
    "mass": "float",
    "charge": "int",
    "lasercooled": "bool",
    "beta": "float",
    "heating": "bool",
    "heated": "bool",
    "recoil": "float",
    "direction": "float",
    "cooldirection": "float",
    "seed": "int",
    "a21": "float",
}
_TOP = ("trap", "integrator", "image", "ionnumbers", "iontype", "simulation", "laser")


@dataclass(frozen=True)
class CcmdIonType:
    """One CCMD ``iontype`` entry (CCMD's own units and names)."""

    formula: str
    number: int
    mass_u: float
    charge: int
    laser_cooled: bool
    beta: float
    heating: bool
    recoil: float
    direction: float
    name: str


@dataclass(frozen=True)
class CcmdFile:
    """The content of a ``trap.info`` file, typed and checked, in CCMD's units.

    ``integrator`` holds ``steps_per_period``, ``respa_steps``, ``cool_periods`` and
    ``hist_periods`` (RF periods); ``image`` holds ``makeimage``, ``scale`` (px/µm), ``blur``
    (µm), ``dof`` (µm), ``nx``, ``nz`` or is None; ``seed`` is None when absent.
    """

    trap: dict[str, float]
    integrator: dict[str, float] | None
    image: dict[str, Any] | None
    ions: tuple[CcmdIonType, ...]
    seed: int | None


def read_ccmd_text(text: str, source: str = "trap.info") -> CcmdFile:
    """Parse and check the text of a CCMD ``trap.info`` file."""
    tops: dict[str, InfoNode] = {}
    for node in parse_info(text, source):
        if node.key not in _TOP:
            raise InputError(
                f"{source}:{node.line}: {node.key}: unknown section (known: {', '.join(_TOP)})"
            )
        if node.key in tops:
            raise InputError(
                f"{source}:{node.line}: {node.key}: repeated section "
                f"(first at line {tops[node.key].line})"
            )
        if node.value is not None:
            raise InputError(f"{source}:{node.line}: {node.key}: a section takes no value")
        tops[node.key] = node
    for needed in ("trap", "ionnumbers", "iontype"):
        if needed not in tops:
            raise InputError(f"{source}: section {needed!r} is missing")

    trap_vals = _leaf_values(tops["trap"].children, "trap", source, _TRAP)
    _require(trap_vals, ("vrf", "vend", "eta", "r0", "z0", "freq"), "trap", source)
    type_node = trap_vals.pop("type", None)
    if type_node is not None:
        tvals = _leaf_values(type_node.children, "trap.type", source, _TRAP_TYPE)
        name = str(tvals.get("name", "cosine")).lower()
        if name != "cosine":
            raise InputError(
                f"{source}:{type_node.line}: trap.type.name: {name!r} traps are not supported "
                "(only 'cosine')"
            )

    integrator = None
    if "integrator" in tops:
        ivals = _leaf_values(tops["integrator"].children, "integrator", source, _INTEGRATOR)
        integrator = _integrator_periods(ivals, tops["integrator"].line, source)

    image = None
    if "image" in tops:
        image = _leaf_values(tops["image"].children, "image", source, _IMAGE)
        image.setdefault("makeimage", True)
        for key, default in (
            ("scale", 1.0),
            ("blur", 5.0),
            ("dof", 50.0),
            ("nz", 640),
            ("nx", 480),
        ):
            image.setdefault(key, default)
        for key in ("scale", "blur", "dof", "nz", "nx"):
            if image[key] <= 0:
                raise InputError(f"{source}: image.{key}: must be positive, got {image[key]}")

    seed = None
    if "simulation" in tops:
        svals = _leaf_values(tops["simulation"].children, "simulation", source, _SIMULATION)
        seed = svals.get("seed")
        if seed is not None and seed < 0:  # CCMD: -1 means "seed from the clock"
            seed = None
    if "laser" in tops:
        _leaf_values(tops["laser"].children, "laser", source, _LASER)

    types: dict[str, InfoNode] = {}
    for node in tops["iontype"].children:
        if node.key in types:
            raise InputError(f"{source}:{node.line}: iontype.{node.key}: repeated")
        if not node.children:
            raise InputError(f"{source}:{node.line}: iontype.{node.key}: expected a branch {{...}}")
        types[node.key] = node
    ions: list[CcmdIonType] = []
    seen: set[str] = set()
    for node in tops["ionnumbers"].children:
        if node.children:
            raise InputError(f"{source}:{node.line}: ionnumbers.{node.key}: expected a number")
        number = _int(node, "ionnumbers", source)
        if number < 0:
            raise InputError(
                f"{source}:{node.line}: ionnumbers.{node.key}: must be >= 0, got {number}"
            )
        if node.key in seen:
            raise InputError(f"{source}:{node.line}: ionnumbers.{node.key}: repeated")
        seen.add(node.key)
        if node.key not in types:
            raise InputError(
                f"{source}:{node.line}: ionnumbers.{node.key}: no iontype.{node.key} entry"
            )
        ions.append(_ion_type(types[node.key], number, source))
    if not any(ion.number > 0 for ion in ions):
        raise InputError(f"{source}: ionnumbers: no ions")
    return CcmdFile(trap=trap_vals, integrator=integrator, image=image, ions=tuple(ions), seed=seed)


def _integrator_periods(vals: dict[str, Any], line: int, source: str) -> dict[str, float]:
    """CCMD's integrator branch as RF periods (both the current and the older key sets)."""
    if "stepsperperiod" in vals:
        _require(vals, ("coolperiods", "histperiods"), "integrator", source)
        spp = vals["stepsperperiod"]
        cool, hist = vals["coolperiods"], vals["histperiods"]
    elif "timestep" in vals:
        # Older CCMD: timestep in units of 2/Ω, i.e. 1/π of an RF period.
        _require(vals, ("coolsteps", "histsteps"), "integrator", source)
        per_period = 2.0 * math.pi / (2.0 * vals["timestep"])
        spp = per_period
        cool, hist = vals["coolsteps"] / per_period, vals["histsteps"] / per_period
    else:
        raise InputError(
            f"{source}:{line}: integrator: needs stepsPerPeriod/coolperiods/histperiods "
            "(or timestep/coolsteps/histsteps)"
        )
    for key, value in (("stepsPerPeriod", spp), ("coolperiods", cool), ("histperiods", hist)):
        if value < 0 or (key == "stepsPerPeriod" and value <= 0):
            raise InputError(f"{source}:{line}: integrator.{key}: out of range ({value})")
    return {
        "steps_per_period": float(spp),
        "respa_steps": float(vals.get("respasteps", 1)),
        "cool_periods": float(cool),
        "hist_periods": float(hist),
    }


def _ion_type(node: InfoNode, number: int, source: str) -> CcmdIonType:
    parent = f"iontype.{node.key}"
    vals = _leaf_values(node.children, parent, source, _IONTYPE)
    _require(vals, ("mass", "charge"), parent, source)
    if vals["mass"] <= 0:
        raise InputError(f"{source}: {parent}.mass: must be positive, got {vals['mass']}")
    if vals["charge"] < 1:
        raise InputError(f"{source}: {parent}.charge: must be >= 1, got {vals['charge']}")
    direction = min(max(vals.get("direction", 0.5), 0.0), 1.0)  # CCMD clamps to [0, 1]
    return CcmdIonType(
        formula=node.key,
        number=number,
        mass_u=vals["mass"],
        charge=vals["charge"],
        laser_cooled=vals.get("lasercooled", False),
        beta=vals.get("beta", 0.0),
        # CCMD reads "heating"; "heated" (seen in some published files) is ignored by CCMD.
        heating=vals.get("heating", False),
        recoil=vals.get("recoil", 0.0),
        direction=direction,
        name=str(vals.get("name", node.key)),
    )


def read_ccmd_file(path: str | Path) -> CcmdFile:
    """Read and check a CCMD ``trap.info`` file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise InputError(f"trap-info: cannot read {p}: {exc.strerror or exc}") from exc
    return read_ccmd_text(text, source=p.name)


# --- into ccount's settings -----------------------------------------------------------------


@dataclass(frozen=True)
class CcmdConfig:
    """A ``trap.info`` file as ccount settings, plus the checked file content it came from.

    ``make_image`` is CCMD's ``image.makeimage`` (True when the file has no image section).
    The simulation settings are ccount's defaults with CCMD's seed and CCMD's ``beta`` as a
    damping rate: CCMD's integrator lengths set CCMD's own scheme, whereas ccount's converges
    the image in far fewer periods, and ccount takes the temperature directly (mK).
    """

    trap: Any
    ions: tuple[Any, ...]
    simulation: Any
    imaging: Any
    make_image: bool
    file: CcmdFile


def species_for(ion: CcmdIonType) -> Any:
    """The ccount Species of a CCMD ion type: the table entry ``<formula>+`` when its mass,
    charge and laser cooling agree, else a new species named ``<formula>+`` (or with its mass
    appended when the table already uses that name for different values)."""
    from ccount_core.simulation import SPECIES, Species

    suffix = "+" if ion.charge == 1 else f"{ion.charge}+"
    name = f"{ion.formula[:1].upper()}{ion.formula[1:]}{suffix}"
    # CCMD keys are case-insensitive; find the table entry whatever its case.
    known = {k.lower(): v for k, v in SPECIES.items()}.get(name.lower())
    if known is not None:
        if (
            abs(known.mass_u - ion.mass_u) < 1e-9 * ion.mass_u
            and known.charge == ion.charge
            and known.laser_cooled == ion.laser_cooled
        ):
            return known
        name = f"{name} ({ion.mass_u:g} u)"
    return Species.from_u(name, ion.mass_u, ion.charge, laser_cooled=ion.laser_cooled)


def _refuse_same_species(ccmd_ions: tuple[CcmdIonType, ...], groups: tuple[Any, ...]) -> None:
    """InputError when two ion types become one ccount species (e.g. ``Ca`` and ``ca`` of
    equal mass): the image metadata holds one number per species name."""
    first: dict[str, str] = {}
    for ion, group in zip(ccmd_ions, groups, strict=True):
        name = group.species.name
        if name in first:
            raise InputError(
                f"trap.info: ionnumbers.{first[name]} and ionnumbers.{ion.formula} are the same "
                f"species ({name}); give it once, with the total number"
            )
        first[name] = ion.formula


def to_settings(ccmd: CcmdFile, simulation: Any = None) -> CcmdConfig:
    """Convert a checked :class:`CcmdFile` into ccount settings.

    Simulation: ccount's defaults, with CCMD's seed and with the damping rate of CCMD's
    ``beta`` (``ccmd_cooling_rate``, of the first laser-cooled species). The temperature stays
    ccount's input: CCMD's explicit ``recoil`` heating is negligible (nK for its example
    settings, see docs/PHYSICS.md); its mK temperatures come from RF heating. A given
    ``simulation`` (SimulationSettings) replaces all of this except the file's seed.
    """
    import dataclasses

    from ccount_core.simulation import (
        IonGroup,
        SimulationSettings,
        TrapSettings,
        ccmd_cooling_rate,
    )
    from ccount_core.simulation.render import ImagingSettings

    t = ccmd.trap
    trap = TrapSettings(
        v_rf=t["vrf"], v_end=t["vend"], eta=t["eta"], r0=t["r0"], z0=t["z0"], rf_frequency=t["freq"]
    )
    ions = tuple(IonGroup(species_for(ion), ion.number) for ion in ccmd.ions)
    _refuse_same_species(ccmd.ions, ions)
    if simulation is not None:
        sim = simulation
    else:
        sim = SimulationSettings()
        cooled = [ion for ion in ccmd.ions if ion.laser_cooled and ion.beta > 0 and ion.number]
        if cooled:  # CCMD's friction β of the (first) laser-cooled species as a damping rate
            rate = ccmd_cooling_rate(cooled[0].beta, cooled[0].mass_u, t["freq"])
            sim = dataclasses.replace(sim, cooling_rate=rate)
    if ccmd.seed is not None:
        sim = dataclasses.replace(sim, seed=ccmd.seed)
    img = ccmd.image
    if img is None:
        imaging, make_image = ImagingSettings(), True
    else:
        imaging = ImagingSettings.from_lab_units(
            pixel_size_um=1.0 / img["scale"],
            shape=(img["nx"], img["nz"]),
            blur_um=img["blur"],
            dof_um=img["dof"],
        )
        make_image = bool(img["makeimage"])
    return CcmdConfig(
        trap=trap, ions=ions, simulation=sim, imaging=imaging, make_image=make_image, file=ccmd
    )


def load_trap_info(path: str | Path, simulation: Any = None) -> CcmdConfig:
    """Read a CCMD ``trap.info`` into ccount settings (see :func:`to_settings`)."""
    return to_settings(read_ccmd_file(path), simulation)


def timing_summary(ccmd: CcmdFile) -> str:
    """The file's timing in CCMD's words, e.g. ``stepsPerPeriod 100, coolperiods 10000, ...``;
    empty when it has no ``integrator`` branch."""
    if ccmd.integrator is None:
        return ""
    i = ccmd.integrator
    return (
        f"stepsPerPeriod {i['steps_per_period']:g}, coolperiods {i['cool_periods']:g}, "
        f"histperiods {i['hist_periods']:g}"
    )


def ccmd_timing(ccmd: CcmdFile, simulation: Any) -> Any:
    """``simulation`` (SimulationSettings) with the file's time step and phase durations
    (the mapping in this module's docstring); InputError when the file has no ``integrator``.
    """
    import dataclasses

    if ccmd.integrator is None:
        raise InputError("--ccmd-timing: the trap.info has no integrator section to take it from")
    i = ccmd.integrator
    return dataclasses.replace(
        simulation,
        steps_per_period=round(i["steps_per_period"]),
        equilibrate_periods=round(i["cool_periods"]),
        gather_periods=max(1, round(i["hist_periods"])),
    )
