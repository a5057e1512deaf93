"""The counting network: shapes, save/load round trip, fp16 weights, refusals, ImageNet init."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ccount_core.errors import InputError
from ccount_core.nn.model import build_model, check_config, load_model, read_card, save_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PRE = {"size": 32, "pixel_size_um": 4.0}


def _card() -> dict:
    return {"label_names": ["Ca+"], "preprocess": dict(PRE), "input_shape": [32, 32]}


def _batch(seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).random((2, 1, 32, 32), np.float32))


def test_output_is_scaled_count_and_independent_of_brightness():
    torch.manual_seed(0)
    model = build_model(2, label_scale=[300.0, 50.0]).eval()
    x = _batch()
    with torch.inference_mode():
        y = model(x)
        assert y.shape == (2, 2)
        torch.testing.assert_close(y, model.scaled(x) * torch.tensor([300.0, 50.0]))
        # per-image standardisation: a brighter camera gives the same count
        torch.testing.assert_close(model(3.0 * x + 7.0), y, rtol=1e-4, atol=1e-3)


def test_save_load_round_trip_identical_outputs(tmp_path):
    torch.manual_seed(1)
    model = build_model(1, label_scale=[350.0]).eval()
    # temporary files of a killed save (files.atomic_path's names) go when saving again
    (tmp_path / "m").mkdir()
    leftovers = [tmp_path / "m" / n for n in (".model.safetensors.k1lled_0.safetensors",)]
    leftovers.append(tmp_path / "m" / ".model.json.k1lled_1.json")
    for f in [*leftovers, tmp_path / "m" / "model.json.bak"]:
        f.write_bytes(b"half")
    save_model(tmp_path / "m", model, _card())
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "model.json",
        "model.json.bak",
        "model.safetensors",
    ]
    loaded, card = load_model(tmp_path / "m", expected_config=PRE)
    assert card["n_outputs"] == 1 and card["label_scale"] == [350.0]
    assert card["weights_dtype"] == "float32"
    with torch.inference_mode():
        torch.testing.assert_close(loaded(_batch()), model(_batch()), rtol=0, atol=0)


def test_fp16_weights_load_and_stay_close(tmp_path):
    torch.manual_seed(2)
    model = build_model(1, label_scale=[200.0]).eval()
    w, c = save_model(tmp_path / "half.safetensors", model, _card(), half=True)
    assert w.name == "half.safetensors" and c.name == "half.json"
    full_size = sum(p.numel() for p in model.state_dict().values()) * 4
    assert w.stat().st_size < 0.6 * full_size
    loaded, card = load_model(c)
    assert card["weights_dtype"] == "float16"
    assert next(loaded.parameters()).dtype == torch.float32
    assert loaded.label_scale.item() == 200.0
    with torch.inference_mode():
        a, b = loaded(_batch()), model(_batch())
    assert torch.allclose(a, b, rtol=0.02, atol=0.05 * 200)


def test_not_a_model_and_missing_card_are_refused(tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"this is not a model")
    with pytest.raises(InputError, match="card"):
        load_model(junk)
    junk.with_suffix(".json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(InputError, match="not a ccount model card"):
        load_model(junk)
    card = {
        "format": "ccount-model",
        "architecture": "resnet50-greyscale-regression",
        "n_outputs": 1,
        "label_names": ["Ca+"],
        "label_scale": [1.0],
        "preprocess": PRE,
        "input_shape": [32, 32],
    }
    junk.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(InputError, match="not a safetensors file"):
        load_model(junk)
    with pytest.raises(InputError, match="no such file"):
        load_model(tmp_path / "nowhere.safetensors")


def test_preprocessing_mismatch_is_refused(tmp_path):
    model = build_model(1)
    save_model(tmp_path / "m", model, _card())
    card = read_card(tmp_path / "m")
    check_config(card, dict(PRE))
    with pytest.raises(InputError, match=r"size=32 \(asked 64\)"):
        load_model(tmp_path / "m", expected_config={**PRE, "size": 64})


def test_imagenet_init_sums_rgb_kernels(tmp_path):
    from torchvision.models import resnet50

    torch.manual_seed(3)
    rgb = resnet50(weights=None).state_dict()
    path = tmp_path / "imagenet.pth"
    torch.save(rgb, path)
    model = build_model(1, init_weights=path)
    torch.testing.assert_close(model.net.conv1.weight, rgb["conv1.weight"].sum(dim=1, keepdim=True))
    torch.testing.assert_close(model.net.layer1[0].conv1.weight, rgb["layer1.0.conv1.weight"])
    assert model.net.fc.weight.shape == (1, 2048)
    with pytest.raises(InputError, match="init_weights"):
        build_model(1, init_weights=tmp_path / "missing.pth")


def test_own_resnet50_is_torchvisions_and_counts_the_shipped_model_bitwise():
    """The ResNet50 defined in model.py has torchvision's state dict (keys, shapes) and, with
    the shipped weights, gives bit for bit torchvision's outputs."""
    torchvision = pytest.importorskip("torchvision")
    from ccount_core.nn.ensemble import model_location

    path = model_location("dark").with_suffix(".safetensors")
    if not path.is_file():
        pytest.skip("no shipped dark model")
    ours, card = load_model(path)
    theirs = torchvision.models.resnet50(weights=None)
    theirs.conv1 = torch.nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    theirs.fc = torch.nn.Linear(2048, card["n_outputs"])
    own_state, their_state = ours.net.state_dict(), theirs.state_dict()
    assert list(own_state) == list(their_state)
    assert all(own_state[k].shape == their_state[k].shape for k in own_state)
    theirs.load_state_dict(own_state)
    theirs.eval()
    x = torch.from_numpy(np.random.default_rng(5).random((3, 1, 96, 48), np.float32))
    z = (x - x.mean(dim=(1, 2, 3), keepdim=True)) / (x.std(dim=(1, 2, 3), keepdim=True) + 1e-6)
    with torch.inference_mode():
        counts = ours(x)
        assert torch.equal(counts, theirs(z) * ours.label_scale)
    assert counts.shape == (3, 2) and torch.isfinite(counts).all()


def test_importing_the_model_leaves_torchvision_unloaded():
    import subprocess
    import sys

    code = (
        "import sys, ccount_core.nn.model as m; m.build_model(1); "
        "print('torchvision' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False"]
