"""Every ``ccount`` line of the README runs as written, at small sizes, chained as a user would.

``README_RUNS`` maps each README line (its command, comment dropped) to what the test adds: the
same words with small sizes (``SMALLER``: a tiny spec for ``small`` and ``dark_v1``, fewer
ions) and a few flags that only shorten the work (one epoch on four images, fewer MD
periods). The files a line writes (``train.zarr``, ``run1/``) feed the lines after it; the
few the README takes as given (``trap.info``, ``a.zarr``, ``stack.tif``) are made first
(``given_files``). A README line missing from the table fails the test, so none can break
unseen.
"""

from __future__ import annotations

import re
import shlex
import shutil
from importlib.resources import files
from pathlib import Path

import pytest

from ccount_core.cli import main

README = Path(__file__).parents[3] / "README.md"

TINY_SPEC = """\
name: tiny
simulation: {relax_steps: 200, equilibrate_periods: 40, gather_periods: 40, samples: 20}
imaging: {shape: [96, 128], pixel_size_um: 2.0}
parameters:
  n_ions: [20, 40]
  v_rf: [200, 240]
  v_end: [2.0, 3.0]
  eta: 0.244
  seeds: [1]
renders: {focal_offset_um: [0, 20]}
store: {chunk: 4}
"""
TINY_DARK_SPEC = TINY_SPEC.replace("name: tiny", "name: tiny_dark").replace(
    "simulation:", "species: {cooled: Ca+, dark: {ND3+: {number: [0, 4]}}}\nsimulation:"
)

SMALLER = {  # README word -> the test's
    "small": "tiny.yaml",
    "dark_v1": "tiny_dark.yaml",
    "Ca+:300,CaF+:50": "Ca+:30,CaF+:5",
    "src/ccount_core/data/example_trap.info": "trap.info",  # the bundled file, fewer ions
}
FAST_MD = ["--gather-periods", "20", "--samples", "20", "--rows", "120", "--cols", "200"]
FAST_TRAIN = ["--epochs", "1", "--batch-size", "4", "--max-train", "4", "--max-val", "4"]
FAST_GENERATE = ["--workers", "1"]

README_RUNS: dict[str, list[str]] = {  # README command -> flags the test adds
    'ccount simulate --ions "Ca+:300,CaF+:50" --v-rf 200 --v-end 2.3 -o crystal.tif': FAST_MD,
    "ccount simulate --trap-info src/ccount_core/data/example_trap.info -o crystal.tif": FAST_MD,
    "ccount dataset generate small -o train.zarr": FAST_GENERATE,
    "ccount dataset info train.zarr": [],
    "ccount dataset show train.zarr -o sheet.png": [],
    "ccount train train.zarr -o run1/": FAST_TRAIN,
    "ccount train a.zarr b.zarr --init-model default -o run2/": FAST_TRAIN,
    "ccount dataset generate dark_v1 -o val.zarr --split validation": FAST_GENERATE,
    "ccount train pure.zarr dark.zarr --labels Ca+ ND3+ --init-model default -o run3/": FAST_TRAIN,
    "ccount evaluate run1/ train.zarr --split validation -o eval/": [],
    "ccount count stack.tif -o counts.csv --pixel-size-um 1.5": [],
    "ccount count stack.tif --model ensemble --tta 1 -o ens.csv": [],
    "ccount count stack.tif --model dark -o dark.csv": [],
    "ccount match crystal.tif --trap-info src/ccount_core/data/example_trap.info --dark ND3+"
    " -o match.csv": [],
    "ccount demo -o demo_out": [],
    "ccount kinetics demo_out/counts.csv -o demo_out/fit.csv": [],
}

OUTPUTS = {  # README command -> what it must leave behind
    "ccount dataset generate small -o train.zarr": "train.zarr/zarr.json",
    "ccount dataset show train.zarr -o sheet.png": "sheet.png",
    "ccount train train.zarr -o run1/": "run1/model.safetensors",
    "ccount train a.zarr b.zarr --init-model default -o run2/": "run2/model.safetensors",
    "ccount train pure.zarr dark.zarr --labels Ca+ ND3+ --init-model default -o run3/": (
        "run3/model.safetensors"
    ),
    "ccount evaluate run1/ train.zarr --split validation -o eval/": "eval/metrics.json",
    "ccount count stack.tif -o counts.csv --pixel-size-um 1.5": "counts.csv",
    "ccount match crystal.tif --trap-info src/ccount_core/data/example_trap.info --dark ND3+"
    " -o match.csv": "match.tif",
    "ccount demo -o demo_out": "demo_out/counts.csv",
    "ccount kinetics demo_out/counts.csv -o demo_out/fit.csv": "demo_out/fit.csv",
}


def readme_commands(text: str) -> list[str]:
    """The ``ccount`` lines of the README's ``bash`` blocks, comments dropped, in order."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            command = line.split(" #")[0].strip()
            if command.startswith("ccount "):
                lines.append(command)
    return lines


def test_the_table_covers_every_readme_command() -> None:
    commands = readme_commands(README.read_text())
    assert commands, "no ccount line found in the README's bash blocks"
    missing = [c for c in commands if c not in README_RUNS]
    assert not missing, f"README lines without a small run in README_RUNS: {missing}"
    assert sorted(README_RUNS) == sorted(commands), "README_RUNS holds lines the README lost"


def given_files(root: Path) -> None:
    """What the README takes as given before its lines run: specs, trap.info, a stack."""
    from ccount_core.dataset.samples import load_sample
    from ccount_core.image.io import write_tiff

    (root / "tiny.yaml").write_text(TINY_SPEC)
    (root / "tiny_dark.yaml").write_text(TINY_DARK_SPEC)
    info = (files("ccount_core.data") / "example_trap.info").read_text()
    fewer = info.replace("Ca      120", "Ca      30").replace("ND3     20", "ND3     5")
    (root / "trap.info").write_text(fewer)
    stack, meta = load_sample("reaction_series")
    write_tiff(root / "stack.tif", stack[:2], pixel_size_um=meta["pixel_size_um"])


def before(command: str, root: Path) -> None:
    """Stores the README names but does not make: copies of what it made."""
    if command.startswith("ccount train a.zarr b.zarr"):
        for name in ("a.zarr", "b.zarr"):
            shutil.copytree(root / "train.zarr", root / name)
    if command.startswith("ccount train pure.zarr dark.zarr"):
        shutil.copytree(root / "train.zarr", root / "pure.zarr")
        argv = ["dataset", "generate", "tiny_dark.yaml", "-o", "dark.zarr", *FAST_GENERATE]
        assert main(argv) == 0


def small_argv(command: str) -> list[str]:
    """The README command's arguments with small sizes, plus the table's flags."""
    words = [SMALLER.get(w, w) for w in shlex.split(command)[1:]]
    return [*words, *README_RUNS[command]]


def test_every_readme_command_runs(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    one_torch_thread: None,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("ccount_core.cli.demo.DEMO_IONS", 30)
    given_files(tmp_path)
    for command in readme_commands(README.read_text()):
        before(command, tmp_path)
        rc = main(small_argv(command))
        err = capsys.readouterr().err
        assert rc == 0, f"{command!r} failed: {err.strip().splitlines()[-1:]}"
        if command in OUTPUTS:
            assert (tmp_path / OUTPUTS[command]).exists(), command
