"""scripts/device_train.py end to end on the CPU at tiny size: train, checkpoint in pieces,
resume from the pieces, export a model that loads; and a fine-tune of the shipped model
through a spec's cameras, with dark ions it has no output for."""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ccount_core.nn.model import load_model, read_card

ROOT = Path(__file__).resolve().parents[2]
TINY = [
    "--tiny", "--device", "cpu", "--workers", "1", "--crystals", "3", "--val-crystals", "2",
    "--steps-per-round", "1", "--batch-size", "2", "--ions", "15", "30", "--total-steps", "4",
    "--checkpoint-s", "0",
]  # fmt: skip


def _run(*args: str) -> None:
    env = os.environ | {"PYTHONPATH": str(ROOT / "src")}
    cmd = [sys.executable, str(ROOT / "scripts" / "device_train.py"), *TINY, *args]
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, f"device_train.py exited {done.returncode}:\n{done.stderr[-3000:]}"


def _meta(out: Path) -> dict:
    return json.loads((out / "checkpoint" / "index.json").read_text())["meta"]


@pytest.mark.slow
def test_trains_checkpoints_in_pieces_and_resumes(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    _run("--out", str(first), "--max-steps", "2")
    meta = _meta(first)
    assert (meta["step"], meta["calls"]) == (2, 1)
    files = [p for p in first.rglob("*") if p.is_file()]
    assert max(p.stat().st_size for p in files) <= 16 * 2**20
    assert len(list((first / "checkpoint").glob("state.safetensors.part*"))) > 1

    _run("--out", str(second), "--resume-from", str(first), "--max-steps", "3")
    meta = _meta(second)
    assert (meta["step"], meta["calls"]) == (3, 2)
    assert meta["images_seen"] > _meta(first)["images_seen"]
    log = (second / "log.csv").read_text().splitlines()
    assert log[0].startswith("1,") and log[-1].startswith("2,3,")

    parts = sorted((second / "model").glob("model.safetensors.part*"))
    joined = tmp_path / "model.safetensors"
    joined.write_bytes(b"".join(p.read_bytes() for p in parts))
    (tmp_path / "model.json").write_text((second / "model" / "model.json").read_text())
    model, card = load_model(joined)
    assert card["training"]["step"] == 3
    out = model(torch.zeros(1, 1, *card["input_shape"]))
    assert out.shape == (1, 1) and torch.isfinite(out).all()


def _joined(run: Path, into: Path):
    into.mkdir()
    parts = sorted((run / "model").glob("model.safetensors.part*"))
    (into / "model.safetensors").write_bytes(b"".join(p.read_bytes() for p in parts))
    (into / "model.json").write_text((run / "model" / "model.json").read_text())
    return load_model(into / "model.safetensors")


def test_draw_counts_a_dark_species_without_an_output_as_ca(load_script) -> None:
    draw = load_script("device_train")._draw
    args = argparse.Namespace(ions=(30, 60), dark="ND3+", dark_max=0.5, dark_share=0.5)
    rng = np.random.default_rng(1)
    specs, labels = draw(rng, 40, args, 0, ["Ca+"])
    totals = [sum(g.count for g in s.ions) for s in specs]
    with_dark = [len(s.ions) == 2 for s in specs]
    assert labels[:, 0].tolist() == totals  # every ion, the dark ones too
    assert 5 < sum(with_dark) < 35  # about half the crystals

    specs, labels = draw(np.random.default_rng(1), 40, args, 0, ["Ca+", "ND3+"])
    for s, (ca, dark) in zip(specs, labels, strict=True):
        counts = {g.species.name: g.count for g in s.ions}
        assert (ca, dark) == (counts["Ca+"], counts.get("ND3+", 0))


@pytest.mark.slow
def test_fine_tunes_the_shipped_model_through_cameras_in_a_new_preparation(tmp_path: Path) -> None:
    run = tmp_path / "run"
    update = {"resampling": "area", "canonical_turn": True, "symmetry_refine": True}
    update |= {"fit_footprint": True}
    _run(
        "--out", str(run), "--max-steps", "1", "--init-model", "default", "--freeze-bn",
        "--camera", "camera_v2", "--camera-share", "0.5", "--dark", "ND3+", "--lr", "1e-5",
        "--preprocess-update", json.dumps(update),
    )  # fmt: skip
    meta = _meta(run)
    assert meta["step"] == 1 and meta["images_seen"] > 0
    assert meta["val_camera_rms_percent"] > 0 and meta["val_rms_percent"] > 0
    assert float((run / "log.csv").read_text().splitlines()[-1].split(",")[-1]) > 0

    model, card = _joined(run, tmp_path / "model")
    shipped_card = read_card(ROOT / "src" / "ccount_core" / "models" / "default.json")
    assert card["label_names"] == ["Ca+"]  # ND3+ learnt as Ca+, no new output
    lo, hi = card["label_range"]  # every ion of the crystals trained on (--ions 15 30)
    assert 15 <= lo <= hi <= 30
    assert card["preprocess"] == shipped_card["preprocess"] | update  # the rest as shipped
    assert card["training"]["started_from"]["model"] == "default"
    assert card["training"]["camera"] == {"spec": "camera_v2", "share": 0.5}
    shipped, _ = load_model()
    for name, value in shipped.state_dict().items():
        if "running_" in name:  # --freeze-bn: the statistics stay the shipped ones
            torch.testing.assert_close(model.state_dict()[name], value, rtol=1e-3, atol=1e-3)


def test_a_crystal_whose_ions_escaped_is_not_rendered_but_dropped(load_script) -> None:
    from ccount_core.image.preprocess import PreprocessConfig

    cfg = PreprocessConfig(model_pixel_size_um=6.0, output_shape=(96, 48))
    images, bad = load_script("device_train")._camera_prepare(([None], cfg.to_dict()))
    assert images.shape == (1, 96, 48) and not images.any() and bad == [0]


def test_the_device_path_imports_without_the_store_libraries() -> None:
    """The device image has no zarr or dask: the script's rendering and training need
    neither (``ccount_core.dataset`` imports its store on first use)."""
    script = ROOT / "scripts" / "device_train.py"
    code = (
        "import sys\n"
        "for m in ('zarr', 'dask', 'distributed', 'numcodecs'):\n"
        "    sys.modules[m] = None\n"
        "import importlib.util\n"
        f"spec = importlib.util.spec_from_file_location('d', {str(script)!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        "from ccount_core.dataset.spec import load_spec, render_variants\n"
        "from ccount_core.dataset.sweep import render_real\n"
        "from ccount_core.image.preprocess import prepare_stack\n"
        "from ccount_core.nn.model import load_model\n"
        "from ccount_core.nn.train import _freeze_batchnorm, _loss\n"
        "from ccount_core.simulation.batch import simulate_batch\n"
        "render_variants(load_spec('camera_v2'))\n"
    )
    env = os.environ | {"PYTHONPATH": str(ROOT / "src")}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, capture_output=True)
