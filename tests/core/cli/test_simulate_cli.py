"""``ccount simulate``: TIFF + metadata, trap.info input, positions CSV, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

from ccount_core.cli import main
from ccount_core.cli.simulate import parse_ions
from ccount_core.errors import InputError

FAST = ["--gather-periods", "20", "--samples", "20", "--rows", "120", "--cols", "200"]


def _meta(path: Path) -> tuple[np.ndarray, dict]:
    with tifffile.TiffFile(path) as tif:
        return tif.pages[0].asarray(), json.loads(tif.pages[0].description)


def test_simulate_writes_float_tiff_with_every_parameter(tmp_path: Path) -> None:
    out, pos = tmp_path / "c.tif", tmp_path / "c.csv"
    rc = main(
        [
            "simulate",
            "-o",
            str(out),
            "--ions",
            "Ca+:30,ND3+:6",
            "--v-rf",
            "220",
            "--v-end",
            "3.0",
            "--eta",
            "0.2",
            "--temperature-mk",
            "5",
            "--seed",
            "3",
            "--mode",
            "pseudo",
            "--positions",
            str(pos),
            "--rotation-deg",
            "4",
            *FAST,
        ]
    )
    assert rc == 0
    image, meta = _meta(out)
    assert image.dtype == np.float32 and image.shape == (120, 200)
    assert image.max() > 0
    assert meta["ions"] == {"Ca+": 30, "ND3+": 6}
    assert meta["trap"]["v_rf_V"] == 220.0 and meta["trap"]["eta"] == 0.2
    assert meta["trap"]["r0_um"] == 3500.0 and meta["trap"]["rf_mhz"] == 3.85
    assert meta["simulation"]["temperature_mk"] == pytest.approx(5.0)
    assert meta["simulation"]["seed"] == 3 and meta["simulation"]["mode"] == "pseudo"
    assert meta["imaging"]["rotation_deg"] == 4.0 and meta["imaging"]["blur_um"] == 5.0
    assert meta["pixel_size_um"] == 1.0
    assert meta["ccount_version"]
    lines = pos.read_text().splitlines()
    assert lines[0] == "species,x_um,y_um,z_um" and len(lines) == 37
    assert sum(line.startswith("ND3+,") for line in lines) == 6


def test_simulate_reads_a_ccmd_trap_info(tmp_path: Path) -> None:
    info = tmp_path / "trap.info"
    text = (files("ccount_core.data") / "example_trap.info").read_text()
    info.write_text(text.replace("Ca      120", "Ca      40").replace("ND3     20", "ND3     5"))
    out = tmp_path / "c.tif"
    assert (
        main(["simulate", "-o", str(out), "--trap-info", str(info), "--mode", "pseudo", *FAST]) == 0
    )
    _, meta = _meta(out)
    assert meta["ions"] == {"Ca+": 40, "ND3+": 5}
    assert meta["simulation"]["seed"] == 213
    assert meta["trap"]["v_end_V"] == 2.3375
    assert meta["trap_info"] == str(info)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--ions", "Ca+:-3"], "--ions: number of Ca+ must not be negative"),
        (["--ions", "Ca+=3"], "--ions: expected SPECIES:NUMBER"),
        (["--ions", "Unobtainium+:3"], "unknown species"),
        (["--ions", "Ca+:30,CaF+:2,Ca+:20"], "--ions: Ca+ is given twice (30 and 20)"),
        (["--v-rf", "2000"], "v_rf:"),
        (["--blur-um", "-1"], "blur"),
        (["--trap-info", "x.info", "--v-end", "2"], "--trap-info: cannot be combined"),
    ],
)
def test_bad_input_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main(["simulate", "-o", str(tmp_path / "x.tif"), *argv]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("ccount: error: ") and message in err[-1]
    assert not (tmp_path / "x.tif").exists()


def test_console_script_reports_bad_output_name(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("ccount")
    out = subprocess.run(
        [str(exe), "simulate", "-o", str(tmp_path / "x.png")], capture_output=True, text=True
    )
    assert out.returncode == 1
    assert out.stderr.strip() == "ccount: error: --output: must end in .tif or .tiff, got 'x.png'"


def test_parse_ions() -> None:
    assert parse_ions("Ca+:300, CaF+:50") == [("Ca+", 300), ("CaF+", 50)]
    with pytest.raises(InputError, match="integer"):
        parse_ions("Ca+:3.5")
    with pytest.raises(InputError, match=r"Ca\+ is given twice .*e\.g\. Ca\+:50$"):
        parse_ions("Ca+:30, Ca+:20")


def test_a_long_simulation_needs_yes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # cli/simulate.py: md_seconds (N² pairs × Coulomb evaluations) and confirm_duration
    import ccount_core.simulation as simulation

    calls: list[int] = []

    def no_md(trap, groups, *args, **kwargs):
        calls.append(sum(g.count for g in groups))
        raise InputError("stopped before the MD")

    monkeypatch.setattr(simulation, "simulate", no_md)
    out = tmp_path / "big.tif"
    assert main(["simulate", "-o", str(out), "--ions", "Ca+:20000"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    # 20000 ions: 2.0e8 pairs × 6000 evaluations / 2e8 per CPU s = 6000 s
    assert err[-1] == (
        "ccount: error: --ions: 20000 ions: the MD takes up to about 1.7 h on one core; "
        "add --yes to run it"
    )
    assert calls == [] and not out.exists()
    assert main(["simulate", "-o", str(out), "--ions", "Ca+:20000", "--yes"]) == 1
    assert calls == [20000]
    assert "stopped before the MD" in capsys.readouterr().err
    main(["simulate", "-o", str(out), "--ions", "Ca+:300"])  # 300 ions: about 1 s, no question
    assert calls == [20000, 300]
    assert "300 ions: the MD takes up to about 1 s on one core" in capsys.readouterr().err


class _Stop(Exception):
    """Raised by the stand-in MD once it has the settings it was given."""


@pytest.fixture
def simulated_with(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The SimulationSettings ``ccount simulate`` passes to ``simulate`` (which then stops)."""
    import ccount_core.simulation

    seen: list[Any] = []

    def fake(trap: Any, groups: Any, sim: Any, imaging: Any, progress: Any = None) -> Any:
        seen.append(sim)
        raise _Stop

    monkeypatch.setattr(ccount_core.simulation, "simulate", fake)
    return seen


EXAMPLE = str(files("ccount_core.data") / "example_trap.info")


def test_ccmd_timing_takes_the_files_step_and_durations(simulated_with: list[Any]) -> None:
    assert (
        main(["simulate", "-o", "never.tif", "--trap-info", EXAMPLE, "--ccmd-timing", "--yes"]) == 1
    )  # the stand-in MD stopped it
    (sim,) = simulated_with
    # example_trap.info: stepsPerPeriod 100, coolperiods 10000, histperiods 10000
    assert (sim.steps_per_period, sim.equilibrate_periods, sim.gather_periods) == (
        100,
        10000,
        10000,
    )
    assert sim.seed == 213


def test_without_ccmd_timing_one_line_says_the_files_timing_is_not_used(
    simulated_with: list[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    from ccount_core.simulation import SimulationSettings

    assert (
        main(["simulate", "-o", "never.tif", "--trap-info", EXAMPLE]) == 1
    )  # the stand-in MD stopped it
    (sim,) = simulated_with
    ours = SimulationSettings()
    assert (sim.steps_per_period, sim.equilibrate_periods, sim.gather_periods) == (
        ours.steps_per_period,
        ours.equilibrate_periods,
        ours.gather_periods,
    )
    said = [line for line in capsys.readouterr().err.splitlines() if "timing" in line]
    assert said == [
        "simulate: trap.info's timing (stepsPerPeriod 100, coolperiods 10000, histperiods "
        "10000) is not used: ccount's converged schedule is (10 steps per RF period, 100 + 200 "
        "RF periods; docs/PHYSICS.md section 5); pass --ccmd-timing to use the file's"
    ]


def test_ccmd_timing_needs_a_trap_info(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "-o", "never.tif", "--ccmd-timing"]) == 1
    assert "--ccmd-timing: takes the timing from a --trap-info file" in capsys.readouterr().err
