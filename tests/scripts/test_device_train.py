"""scripts/device_train.py end to end on the CPU at tiny size: train, checkpoint in pieces,
resume from the pieces, export a model that loads."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ccount_core.nn.model import load_model

ROOT = Path(__file__).resolve().parents[2]
TINY = [
    "--tiny", "--device", "cpu", "--workers", "1", "--crystals", "3", "--val-crystals", "2",
    "--steps-per-round", "1", "--batch-size", "2", "--ions", "15", "30", "--total-steps", "4",
    "--checkpoint-s", "0",
]  # fmt: skip


def _run(*args: str) -> None:
    env = os.environ | {"PYTHONPATH": str(ROOT / "src")}
    cmd = [sys.executable, str(ROOT / "scripts" / "device_train.py"), *TINY, *args]
    subprocess.run(cmd, check=True, env=env, cwd=ROOT, capture_output=True, timeout=1200)


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
