"""`ccount dataset` end to end with the real simulator (small crystals, small images).

Includes the kill test of docs/DATASET.md ("Resuming and locking"): a real run is SIGKILLed
part-way (client and dask workers at once), the same command is run again, and the store must
then hold every sample exactly once, each image equal to a fresh computation of its own
parameters.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

from ccount_core.cli import main
from ccount_core.dataset import load_spec, open_dataset, plan
from ccount_core.dataset.sweep import make_task, run_task

CCOUNT = str(Path(sys.executable).with_name("ccount"))
SPEC = """\
name: {name}
simulation: {{relax_steps: 200, equilibrate_periods: 40, gather_periods: 40, samples: 20}}
imaging: {{shape: [96, 128], pixel_size_um: 2.0}}
parameters:
  n_ions: [20, 40]
  v_rf: [200, 240]
  v_end: [2.0, 3.0]
  eta: {eta}
  seeds: [1]
renders: {{focal_offset_um: [0, 20]}}
store: {{chunk: 4}}
"""


def write_spec(tmp_path: Path, name: str = "cli", eta: str = "0.244") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(SPEC.format(name=name, eta=eta))
    return path


def assert_rows_match_fresh_runs(store: Path, spec: Path, rows: list[int]) -> None:
    """The stored images of ``rows`` equal a fresh simulation + rendering of their parameters."""
    p = plan(load_spec(spec))
    ds = open_dataset(store)
    for md in sorted({r // p.n_renders for r in rows}):
        out = run_task(make_task(p, md))
        stored = np.asarray(ds.images[md * p.n_renders : (md + 1) * p.n_renders])
        np.testing.assert_array_equal(stored, out.images)
        assert ds.table["n_Ca+"][md * p.n_renders] == p.points[md].counts[0][1]


def test_generate_info_show_with_the_real_simulator(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path)
    store = tmp_path / "d.zarr"
    assert main(["dataset", "generate", str(spec), "-o", str(store), "--workers", "1"]) == 0
    assert "16/16 images done (16 new" in capsys.readouterr().out
    ds = open_dataset(store)
    assert ds.complete and ds.images.shape == (16, 96, 128)
    images = np.asarray(ds.images[:])
    t = ds.table
    light = images.sum(axis=(1, 2))
    assert np.all(light > 0)
    # physics, not bookkeeping: twice the ions give more light (same trap, seed, focus) ...
    for v_rf in (200, 240):
        for v_end in (2.0, 3.0):
            sel = (t["v_rf"] == v_rf) & (t["v_end"] == v_end) & (t["focal_offset_um"] == 0)
            by_n = dict(zip(t["n_Ca+"][sel], light[sel], strict=True))
            assert by_n[40] > 1.3 * by_n[20]
    # ... and a 20 µm focal offset renders the same MD run differently
    pairs = images.reshape(8, 2, 96, 128)
    assert np.all(np.abs(pairs[:, 0] - pairs[:, 1]).sum(axis=(1, 2)) > 0.01 * light[::2])
    assert_rows_match_fresh_runs(store, spec, [0, 9])

    assert main(["dataset", "info", str(store)]) == 0
    text = capsys.readouterr().out
    assert "done       16 of 16" in text and "n_Ca+            20 .. 40" in text
    sheet = tmp_path / "sheet.png"
    assert main(["dataset", "show", str(store), "-o", str(sheet), "-n", "4"]) == 0
    assert sheet.stat().st_size > 5000


def test_bad_input_is_one_line_before_any_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    unstable = write_spec(tmp_path, "unstable", eta="0.244")
    unstable.write_text(unstable.read_text().replace("v_rf: [200, 240]", "v_rf: [200, 2400]"))
    store = tmp_path / "u.zarr"
    assert main(["dataset", "generate", str(unstable), "-o", str(store)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("ccount: error: parameters at v_rf=2400 V") and "\n" not in err
    assert not store.exists()
    bad = tmp_path / "bad.yaml"
    bad.write_text("parameters: {n_ions: [-3], v_rf: 200, v_end: 2, eta: 0.2}\n")
    assert main(["dataset", "generate", str(bad), "-o", str(store)]) == 1
    assert "parameters.n_ions must be >= 1" in capsys.readouterr().err
    assert main(["dataset", "info", str(tmp_path / "nothing.zarr")]) == 1
    assert "no such store" in capsys.readouterr().err


def _done_count(store: Path) -> int:
    try:
        return int(np.asarray(zarr.open_group(str(store), mode="r")["table/done"][:]).sum())
    except Exception:  # not created yet
        return 0


@pytest.mark.slow
def test_killed_run_resumes_without_loss_or_duplicates(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, "kill", eta="[0.244, 0.3]")  # 16 MD runs, 32 images
    store = tmp_path / "k.zarr"
    cmd = [
        CCOUNT,
        "dataset",
        "generate",
        str(spec),
        "-o",
        str(store),
        "--workers",
        "2",
        "--flush-seconds",
        "0",
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 240
    try:
        while _done_count(store) < 4:
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "no progress within 240 s"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the client and its dask workers, mid-write
        proc.wait()
    at_kill = _done_count(store)
    assert 4 <= at_kill < 32, f"kill came too late ({at_kill} of 32 done)"
    ds = open_dataset(store)
    killed_done = ds.indices("all").tolist()
    assert Path(f"{store}.lock").exists()

    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"32/32 images done ({32 - at_kill} new" in rerun.stdout
    assert not Path(f"{store}.lock").exists()
    assert not list(store.rglob("*.partial"))
    ds = open_dataset(store)
    assert ds.complete and len(ds) == 32
    t = ds.table
    combos = set(
        zip(t["n_Ca+"], t["v_rf"], t["v_end"], t["eta"], t["focal_offset_um"], strict=True)
    )
    assert len(combos) == 32  # every sample once
    assert np.all(np.asarray(ds.images[:]).sum(axis=(1, 2)) > 0)  # none left empty
    # a row finished before the kill and one finished after hold their own images
    after = sorted(set(range(32)) - set(killed_done))
    assert_rows_match_fresh_runs(store, spec, [killed_done[0], after[-1]])


def test_mixed_crystal_only_the_cooled_species_fluoresces() -> None:
    from ccount_core.dataset.sweep import simulate_real

    trap = {
        "v_rf": 200.0,
        "v_end": 2.5,
        "eta": 0.244,
        "r0_um": 3500.0,
        "z0_um": 2750.0,
        "rf_mhz": 3.85,
    }
    samples, fluorescing = simulate_real(
        trap,
        [("Ca+", 24), ("ND3+", 8)],
        {"relax_steps": 200, "equilibrate_periods": 40, "gather_periods": 40, "samples": 20},
        3,
    )
    assert samples.shape == (20, 32, 3) and fluorescing.sum() == 24
    # light ND3+ (20 u) sits closer to the axis than Ca+ (40 u): the hollow-core crystal
    radial = np.hypot(samples[..., 0], samples[..., 1]).mean(axis=0)
    assert radial[~fluorescing].mean() < 0.7 * radial[fluorescing].mean()


@pytest.mark.slow
def test_sigterm_writes_finished_images_before_exit(tmp_path: Path) -> None:
    import re
    import threading

    # 32 MD runs, 64 images: long enough that a fast machine is still running when the test,
    # polling the progress, reaches its check (16 runs could all finish in between)
    spec = write_spec(tmp_path, "term", eta="[0.244, 0.26, 0.28, 0.3]")
    spec.write_text(spec.read_text().replace("chunk: 4", "chunk: 64"))  # one shard: no early write
    store = tmp_path / "t.zarr"
    proc = subprocess.Popen(
        [
            CCOUNT,
            "dataset",
            "generate",
            str(spec),
            "-o",
            str(store),
            "--workers",
            "2",
            "--flush-seconds",
            "1000",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    seen: list[int] = [0]
    text: list[str] = []

    def read() -> None:
        while chunk := proc.stderr.read1(4096):
            text.append(chunk.decode(errors="replace"))
            counts = re.findall(r"(\d+)/64", text[-1])
            if counts:
                seen[0] = max(seen[0], int(counts[-1]))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 240
        while seen[0] < 4:
            assert proc.poll() is None, "the run ended before it could be stopped"
            assert time.monotonic() < deadline, "no progress within 240 s"
            time.sleep(0.05)
        assert _done_count(store) == 0  # everything finished so far is still in memory
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=120) == 130
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    reader.join(timeout=10)
    assert "ccount: interrupted" in "".join(text)
    assert _done_count(store) >= 4  # what was reported finished got written
    assert not Path(f"{store}.lock").exists()
    ds = open_dataset(store)
    assert_rows_match_fresh_runs(store, spec, ds.indices("all")[:1].tolist())
