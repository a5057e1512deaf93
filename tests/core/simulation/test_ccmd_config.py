"""CCMD trap.info files → ccount settings: values, units, one-line errors with key and line."""

from __future__ import annotations

import math
from importlib.resources import files
from pathlib import Path

import pytest

from ccount_core.errors import InputError
from ccount_core.simulation import SimulationSettings, get_species
from ccount_core.simulation.ccmd_config import (
    ccmd_timing,
    load_trap_info,
    parse_info,
    read_ccmd_text,
    timing_summary,
)

EXAMPLE = files("ccount_core.data") / "example_trap.info"

MINIMAL = """\
trap {
    vrf 180 ; volts
    vend 2.0
    eta 0.2
    r0 3.5e-3
    z0 2.75e-3
    freq 3.85e6
}
ionnumbers {
    Ca 50
}
iontype {
    Ca {
        mass 40
        charge 1
        lasercooled true
    }
}
"""


def test_shipped_example_rounds_into_the_settings() -> None:
    cfg = load_trap_info(Path(str(EXAMPLE)))
    t = cfg.trap
    assert (t.v_rf, t.v_end, t.eta) == (200.0, 2.3375, 0.244)
    assert t.r0 == pytest.approx(3.5e-3) and t.z0 == pytest.approx(2.75e-3)
    assert t.rf_frequency == pytest.approx(3.85e6)
    # Ions in file order; species from the table when mass/charge/cooling agree.
    assert [(g.species.name, g.count) for g in cfg.ions] == [("Ca+", 120), ("ND3+", 20)]
    assert cfg.ions[0].species == get_species("Ca+")
    assert cfg.ions[0].species.laser_cooled and not cfg.ions[1].species.laser_cooled
    # simulation.seed → seed; Ca's beta 0.8 → CCMD's damping rate β(1 + 1/m_u)/2 · π f_RF;
    # the temperature stays ccount's input.
    assert cfg.simulation.seed == 213
    assert cfg.simulation.cooling_rate == pytest.approx(0.8 * (1 + 1 / 40) / 2 * math.pi * 3.85e6)
    assert cfg.simulation.temperature == SimulationSettings().temperature
    # image section (µm, px/µm) → SI ImagingSettings; nx rows, nz columns.
    im = cfg.imaging
    assert im.shape == (480, 640)
    assert im.pixel_size == pytest.approx(1e-6)
    assert im.blur == pytest.approx(5e-6) and im.depth_of_field == pytest.approx(50e-6)
    assert cfg.make_image
    integ = cfg.file.integrator
    assert integ == {
        "steps_per_period": 100.0,
        "respa_steps": 500.0,
        "cool_periods": 10000.0,
        "hist_periods": 10000.0,
    }


def test_case_insensitive_keys_comments_and_scale() -> None:
    text = MINIMAL.replace("vrf 180", "VRF 180").replace("ionnumbers {", "IonNumbers {") + (
        "image {\n  makeimage false\n  scale 2.5 ; px per micron\n  blur 4\n  dof 40\n"
        "  nz 320\n  nx 240\n}\nsimulation {\n  seed -1\n}\n"
    )
    cfg = read_ccmd_text(text)
    assert cfg.trap["vrf"] == 180.0
    assert cfg.image["scale"] == 2.5 and cfg.image["makeimage"] is False
    assert cfg.seed is None  # CCMD's -1 means "seed from the clock"


def test_older_integrator_keys_convert_to_periods() -> None:
    text = (
        MINIMAL + "integrator {\n timestep 0.1\n respasteps 5\n coolsteps 20000\n"
        " histsteps 10000\n}\n"
    )
    integ = read_ccmd_text(text).integrator
    # timestep in units of 2/Ω: π / 0.1 steps per RF period.
    assert integ["steps_per_period"] == pytest.approx(math.pi / 0.1)
    assert integ["cool_periods"] == pytest.approx(20000 * 0.1 / math.pi)


def test_species_not_in_the_table_or_with_other_masses_are_created() -> None:
    text = MINIMAL.replace("Ca 50", "Ca 50\n    Xe 10\n    Foo 3").replace(
        "iontype {",
        "iontype {\n  Xe {\n mass 130\n charge 1\n }\n  Foo {\n mass 33\n charge 2\n }\n",
    )
    from ccount_core.simulation.ccmd_config import to_settings

    cfg = to_settings(read_ccmd_text(text))
    names = [(g.species.name, round(g.species.mass_u, 6), g.species.charge) for g in cfg.ions]
    assert names == [("Ca+", 40.0, 1), ("Xe+ (130 u)", 130.0, 1), ("Foo2+", 33.0, 2)]


def test_two_ion_types_that_become_one_species_are_refused() -> None:
    # ccmd_config.to_settings: "Ca" with charge 2 and "Ca2" with charge 1 are both "Ca2+";
    # the image metadata holds one number per species name.
    text = (
        MINIMAL.replace("Ca 50", "Ca 50\n    Ca2 10")
        .replace("charge 1", "charge 2")
        .replace("iontype {", "iontype {\n  Ca2 {\n mass 80\n charge 1\n }\n")
    )
    from ccount_core.simulation.ccmd_config import to_settings

    with pytest.raises(InputError, match=r"ionnumbers.ca and ionnumbers.ca2 are the same species"):
        to_settings(read_ccmd_text(text))


def _edit(old: str, new: str):
    return lambda s: s.replace(old, new)


BAD_EDITS = [
    (_edit("eta 0.2", "eta 0.2\n    colour blue"), r"trap.info:5: trap.colour: unknown key"),
    (_edit("vend 2.0", "vend two"), r"trap.info:3: trap.vend: expected a number"),
    (_edit("Ca 50", "Ca -5"), r"trap.info:10: ionnumbers.ca: must be >= 0"),
    (_edit("Ca 50", "Ca 50\n    CaF 3"), r"trap.info:11: ionnumbers.caf: no iontype"),
    (_edit("    z0 2.75e-3\n", ""), r"trap.z0: missing"),
    (lambda s: s + "bogus {\n}\n", r"trap.info:19: bogus: unknown section"),
    (
        _edit("lasercooled true", "lasercooled maybe"),
        r"trap.info:16: iontype.ca.lasercooled: expected true or false",
    ),
    (_edit("charge 1", "charge 1.5"), r"iontype.ca.charge: expected an integer"),
    (lambda s: s[: s.rindex("}")], r"'\{' is never closed"),
    (lambda s: s + "}\n", r"'\}' without a matching"),
    (
        _edit("freq 3.85e6", "freq 3.85e6\n    type {\n name digital\n }"),
        r"trap.type.name: 'digital' traps are not supported",
    ),
    (_edit("vrf 180", "vrf 180 190"), r"more than one value"),
]


@pytest.mark.parametrize(("mutate", "message"), BAD_EDITS)
def test_bad_files_name_the_key_and_line(mutate, message: str) -> None:
    with pytest.raises(InputError, match=message) as err:
        read_ccmd_text(mutate(MINIMAL))
    assert "\n" not in str(err.value)


def test_parse_info_handles_values_braces_and_quotes() -> None:
    nodes = parse_info('a 1\nb "two words" ; c\nc\n{\n  d 4\n}\ne 5 { f 6\n}\n')
    assert [(n.key, n.value) for n in nodes] == [
        ("a", "1"),
        ("b", "two words"),
        ("c", None),
        ("e", "5"),
    ]
    assert [(n.key, n.value, n.line) for n in nodes[2].children] == [("d", "4", 5)]
    assert [(n.key, n.value) for n in nodes[3].children] == [("f", "6")]


def test_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="trap-info: cannot read"):
        load_trap_info(tmp_path / "nope.info")


def test_ccmd_timing_maps_the_integrator_onto_the_settings() -> None:
    text = (
        MINIMAL + "integrator {\n timestep 0.1\n respasteps 5\n coolsteps 20000\n"
        " histsteps 10000\n}\n"
    )
    sim = ccmd_timing(read_ccmd_text(text), SimulationSettings(seed=7))
    # π/0.1 = 31.4 steps per period → 31; 20000 and 10000 steps → 637 and 318 periods.
    assert (sim.steps_per_period, sim.equilibrate_periods, sim.gather_periods) == (31, 637, 318)
    assert sim.seed == 7 and sim.trap_substeps == SimulationSettings().trap_substeps
    assert timing_summary(read_ccmd_text(text)).startswith("stepsPerPeriod 31.4159")


def test_ccmd_timing_needs_an_integrator_section() -> None:
    ccmd = read_ccmd_text(MINIMAL)
    assert timing_summary(ccmd) == ""
    with pytest.raises(InputError, match="no integrator section"):
        ccmd_timing(ccmd, SimulationSettings())
