"""The ground everything else builds on: imports, command line, packaging."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

import ccount_core
from ccount_core.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_core_imports_without_qt_or_napari() -> None:
    """Every ccount_core module imports while Qt, napari and magicgui are unimportable."""
    code = textwrap.dedent(
        """
        import importlib, pkgutil, sys
        BLOCKED = ("qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "napari", "magicgui", "vispy")

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError(f"blocked for this test: {name}")
                return None

        sys.meta_path.insert(0, Block())
        import ccount_core
        names = [m.name for m in pkgutil.walk_packages(ccount_core.__path__, "ccount_core.")]
        for name in names:
            if name != "ccount_core.__main__":
                importlib.import_module(name)
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
        assert not loaded, loaded
        print(len(names))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip()) >= 3


PIPELINE = ("simulation", "image", "dataset", "nn", "analysis", "cli")  # docs/ARCHITECTURE.md
SHARED = ("errors", "checks", "files", "progress")


def _core_imports() -> list[tuple[str, str]]:
    """``(importing module's part, imported part)`` for every ``ccount_core.X`` import in the
    core, function-level imports included; a part is a subpackage or a top-level module."""
    pairs = []
    for path in sorted((ROOT / "src" / "ccount_core").rglob("*.py")):
        parts = path.relative_to(ROOT / "src" / "ccount_core").parts
        me = parts[0] if len(parts) > 1 else path.stem
        text = path.read_text(encoding="utf-8")
        pairs += [(me, m) for m in re.findall(r"(?:from|import) ccount_core\.(\w+)", text)]
    return pairs


def test_core_imports_run_one_way_along_the_pipeline() -> None:
    pairs = _core_imports()
    assert {me for me, _ in pairs} >= set(PIPELINE)  # the scan sees every subpackage
    wrong = sorted(
        {
            (me, dep)
            for me, dep in pairs
            if (me in PIPELINE and dep in PIPELINE and PIPELINE.index(dep) > PIPELINE.index(me))
            or (me in SHARED and dep in PIPELINE)
        }
    )
    assert not wrong, f"imports against the pipeline (module part, imported part): {wrong}"


def test_version_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"ccount {ccount_core.__version__}"


def test_console_script_is_installed() -> None:
    exe = Path(sys.executable).with_name("ccount")
    out = subprocess.run([str(exe), "--version"], capture_output=True, text=True)
    assert out.returncode == 0
    assert out.stdout.startswith("ccount ")


def test_no_subcommand_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: ccount" in capsys.readouterr().err


@pytest.mark.slow
def test_wheel_carries_manifest_and_napari_finds_plugin(tmp_path: Path) -> None:
    """A plain (non-editable) wheel holds napari.yaml in the package; npe2 finds the plugin."""
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "-w",
            str(wheels),
            str(ROOT),
        ],
        check=True,
    )
    (wheel,) = wheels.glob("napari_ccount-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        manifest = zf.read("napari_ccount/napari.yaml").decode()
    assert names.count("napari_ccount/napari.yaml") == 1
    assert "name: napari-ccount" in manifest
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--quiet",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
    )
    code = textwrap.dedent(
        """
        import npe2, napari_ccount, pathlib
        pm = npe2.PluginManager()
        pm.discover()
        mf = pm.get_manifest("napari-ccount")
        print(pathlib.Path(napari_ccount.__file__).parent)
        print(mf.name)
        """
    )
    env = {"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    pkg_dir, name = out.stdout.split()
    assert Path(pkg_dir).is_relative_to(target)
    assert name == "napari-ccount"
    validate = subprocess.run(
        [str(Path(sys.executable).with_name("npe2")), "validate", "napari_ccount"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert validate.returncode == 0, validate.stdout + validate.stderr
