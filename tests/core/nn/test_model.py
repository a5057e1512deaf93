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
