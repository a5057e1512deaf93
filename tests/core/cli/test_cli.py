"""The command line's error contract: one clear line and a non-zero exit, unless --debug."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ccount_core.cli import _one_line, main
from ccount_core.errors import InputError


def test_bad_input_prints_one_line_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "x.tif"
    assert main(["simulate", "--ions", "Ca+:-5", "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("ccount: error: ")
    assert "Ca+" in err and "negative" in err
    assert "Traceback" not in err
    assert not out.exists()


def test_debug_flag_shows_the_traceback(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        main(["--debug", "simulate", "--ions", "Ca+:-5", "-o", str(tmp_path / "x.tif")])


def test_missing_file_is_one_line_from_the_console_script(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("ccount")
    missing = tmp_path / "nope" / "trap.info"
    res = subprocess.run(
        [str(exe), "simulate", "--trap-info", str(missing), "-o", str(tmp_path / "x.tif")],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert "trap.info" in lines[0]


def test_unexpected_errors_name_their_type_and_the_debug_flag() -> None:
    text = _one_line(ZeroDivisionError("division by zero"))
    assert text == "ZeroDivisionError: division by zero (run with --debug for the traceback)"
    assert _one_line(InputError("--ions: bad\n  value")) == "--ions: bad value"


def test_threads_below_one_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "default", str(tmp_path / "none.zarr"), "--threads", "0"]) == 1
    assert "--threads: must be at least 1, got 0" in capsys.readouterr().err
