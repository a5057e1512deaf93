"""``ccount match --trap-info``: the file's trap, optics and cooling rate reach the search, and
one line says which settings are the file's and which ccount's."""

from __future__ import annotations

from importlib.resources import files
from typing import Any

import pytest

from ccount_core.analysis import match
from ccount_core.cli import main
from ccount_core.simulation.ccmd_config import load_trap_info


def test_trap_info_settings_reach_the_search(tmp_path, monkeypatch, capsys) -> None:
    info = tmp_path / "trap.info"
    text = (files("ccount_core.data") / "example_trap.info").read_text()
    info.write_text(text.replace("blur        5.0", "blur        4.0"))
    seen: dict[str, Any] = {}

    def fake_match_file(stack, output, trap, pixel_size_um, settings, **kwargs):
        seen.update(trap=trap, settings=settings)
        return []

    monkeypatch.setattr(match, "match_file", fake_match_file)
    argv = ["match", "s.tif", "-o", str(tmp_path / "m.csv"), "--trap-info", str(info)]
    assert main([*argv, "--dark", "ND3+"]) == 0
    cfg = load_trap_info(info)
    settings = seen["settings"]
    assert seen["trap"] == cfg.trap
    assert settings.blur_um == pytest.approx(4.0) and settings.dof_um == pytest.approx(50.0)
    assert settings.simulation.cooling_rate == pytest.approx(cfg.simulation.cooling_rate)
    assert settings.simulation.cooling_rate == pytest.approx(4.959e6, rel=1e-3)  # beta 0.8
    assert settings.simulation.gather_periods == match.SEARCH_SIMULATION.gather_periods
    assert settings.temperature == pytest.approx(0.01) and settings.dark == "ND3+"
    assert settings.fit_temperature and settings.fit_v_end  # a dark search fits both
    (line,) = [x for x in capsys.readouterr().err.splitlines() if x.startswith("trap.info:")]
    assert "cooling rate" in line and "10 mK" in line and "ion numbers" in line
    assert main([*argv, "--blur-um", "3", "--temperature-mk", "5"]) == 0
    assert seen["settings"].blur_um == 3.0 and seen["settings"].temperature == pytest.approx(5e-3)
    assert "5 mK" in capsys.readouterr().err
    assert not seen["settings"].fit_temperature and not seen["settings"].fit_v_end
    assert main([*argv, "--dark", "ND3+", "--no-fit-v-end"]) == 0
    assert seen["settings"].fit_temperature and not seen["settings"].fit_v_end
    assert main([*argv, "--fit-temperature"]) == 0
    assert seen["settings"].fit_temperature and not seen["settings"].fit_v_end
