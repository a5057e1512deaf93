"""The network packed for CPU inference counts as the network does, and counting uses it."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import ccount_core.nn.count as count_mod
from ccount_core.dataset.samples import load_sample
from ccount_core.errors import InputError
from ccount_core.image.preprocess import PreprocessConfig, prepare_stack
from ccount_core.nn import cpu_inference
from ccount_core.nn.count import count_stack
from ccount_core.nn.cpu_inference import bf16_packable, fold_batchnorm, pack_for_cpu
from ccount_core.nn.ensemble import IonCounter, load_counter
from ccount_core.nn.inference import infer
from ccount_core.nn.model import CountingNet

pytestmark = pytest.mark.usefixtures("one_torch_thread")
needs_bf16_packing = pytest.mark.skipif(
    not bf16_packable(),
    reason="this CPU cannot pack bfloat16 weights (no AVX512-BW/VL/DQ or "
    "AVX-NE-CONVERT); test_bfloat16_where_it_cannot_be_packed covers it",
)

PRE = PreprocessConfig(model_pixel_size_um=12.0, output_shape=(48, 32))


def _trained_like_net(n_outputs: int = 2) -> CountingNet:
    """A network whose batch norms hold statistics and affine terms far from their initial
    values, as after training (so folding them is actually tested)."""
    torch.manual_seed(0)
    net = CountingNet(n_outputs, [300.0, 100.0][:n_outputs])
    gen = torch.Generator().manual_seed(1)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(0.5 * torch.randn(c, generator=gen))
            m.running_var.copy_(0.2 + torch.rand(c, generator=gen))
            m.weight.data.copy_(0.5 + 0.5 * torch.rand(c, generator=gen))
            m.bias.data.copy_(0.1 * torch.randn(c, generator=gen))
    return net.eval()


def test_packed_network_counts_as_the_network_does():
    net = _trained_like_net()
    x = torch.rand(5, 1, 96, 48) * 3.0
    with torch.inference_mode():
        want = net(x)
        got = pack_for_cpu(net)(x)
    assert got.shape == want.shape == (5, 2)
    assert want.abs().max() > 1.0  # the outputs are not trivially zero
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("shape", [(1, 1, 96, 48), (7, 1, 48, 32), (3, 1, 61, 37)])
def test_packed_network_runs_any_batch_and_size(shape):
    """The float32 weights are laid out for (32, C, 48, 32) inputs (the card's input shape);
    other batches and sizes count as the network does too."""
    net = _trained_like_net()
    packed = pack_for_cpu(net, input_shape=(48, 32))
    x = torch.rand(*shape) * 3.0
    with torch.inference_mode():
        assert torch.allclose(packed(x), net(x), rtol=1e-4, atol=1e-3)


@needs_bf16_packing
def test_bfloat16_packed_network_counts_within_its_rounding():
    net = _trained_like_net()
    x = torch.rand(5, 1, 96, 48) * 3.0
    with torch.inference_mode():
        want = net(x)
        packed = pack_for_cpu(net, bf16=True)
        got = packed(x)
    assert packed.dtype == torch.bfloat16 and got.dtype == torch.float32
    assert packed.net.layer1[0].conv1.weight.dtype == torch.bfloat16
    # bfloat16 keeps 8 bits of mantissa: ~0.4 % per value, well below a percent at the end
    assert torch.allclose(got, want, rtol=3e-2, atol=0.5)
    assert not torch.allclose(got, want, rtol=1e-5, atol=1e-5)  # it did run in bfloat16


def test_packing_leaves_the_network_untouched():
    net = _trained_like_net(1)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    pack_for_cpu(net)
    assert isinstance(net.net.bn1, torch.nn.BatchNorm2d)
    after = net.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_folding_uses_the_running_statistics():
    # eval-mode batch norm (running statistics) is what gets folded, not batch statistics
    net = _trained_like_net(1)
    resnet = fold_batchnorm(copy.deepcopy(net.net))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in resnet.modules())
    x = torch.rand(4, 1, 96, 48)
    z = (x - x.mean(dim=(1, 2, 3), keepdim=True)) / (x.std(dim=(1, 2, 3), keepdim=True) + 1e-6)
    with torch.inference_mode():
        folded = resnet(z) * net.label_scale
        assert torch.allclose(folded, net(x), rtol=1e-4, atol=1e-3)
        net.train()
        assert not torch.allclose(folded, net(x), rtol=1e-2, atol=1.0)


def test_count_stack_packs_a_long_count_and_counts_the_same(monkeypatch):
    stack, meta = load_sample("reaction_series")
    stack = stack[:3]
    net = _trained_like_net(1)
    card = {
        "label_names": ["Ca+"],
        "preprocess": PRE.to_dict(),
        "input_shape": list(PRE.output_shape),
        "label_range": [30, 350],
    }
    fresh = IonCounter([(net, card)], card)
    plain = count_stack(stack, fresh, meta["pixel_size_um"], device="cpu", bf16=False)
    assert not fresh.is_packed()  # 3 frames: packing would cost more than it saves
    monkeypatch.setattr(count_mod, "PACK_MIN_FRAMES", 3)
    long = IonCounter([(net, card)], card)
    packed = count_stack(stack, long, meta["pixel_size_um"], device="cpu", bf16=False)
    assert long.is_packed() and not long.is_packed(bf16=True)
    a = np.array([r["count"] for r in plain])
    b = np.array([r["count"] for r in packed])
    assert np.all(np.abs(a) > 1.0)
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-3)
    # bfloat16 packs its own copy where the CPU packs bfloat16 weights
    bf = IonCounter([(net, card)], card)
    count_stack(stack, bf, meta["pixel_size_um"], device="cpu", bf16=True)
    assert bf.is_packed(bf16=True) is bf16_packable() and not bf.is_packed()


def test_bfloat16_where_it_cannot_be_packed(monkeypatch, tmp_path):
    """An AVX2-only CPU: asked for bfloat16, a count runs the networks unpacked under autocast,
    and packing or evaluating in bfloat16 says so in one line, before any work."""
    from ccount_core.nn.evaluate import evaluate

    monkeypatch.setattr(cpu_inference, "bf16_packable", lambda: False)
    net = _trained_like_net(1)
    with pytest.raises(InputError, match=r"^bf16: this CPU cannot pack bfloat16"):
        pack_for_cpu(net, bf16=True)
    with pytest.raises(InputError, match=r"^bf16: this CPU cannot pack bfloat16"):
        evaluate(None, tmp_path / "no_such_store.zarr", tmp_path / "eval", bf16=True)
    assert not (tmp_path / "eval").exists()
    # The trained network: one whose batch norms hold random statistics compounds bfloat16's
    # rounding over 50 layers into counts 13 % apart on a CPU computing it natively (AMX).
    stack, meta = load_sample("reaction_series")
    monkeypatch.setattr(count_mod, "PACK_MIN_FRAMES", 3)
    bf = load_counter("default")
    rows = count_stack(stack[:3], bf, meta["pixel_size_um"], device="cpu", bf16=True)
    assert not bf.is_packed(bf16=True) and not bf.is_packed()
    f32 = count_stack(
        stack[:3], load_counter("default"), meta["pixel_size_um"], device="cpu", bf16=False
    )
    a = np.array([r["count"] for r in f32])
    b = np.array([r["count"] for r in rows])
    assert np.all(a > 30.0)
    assert np.all(np.abs(b - a) < 2.0)  # bfloat16 keeps 8 bits of mantissa
    assert np.any(b != a)  # it did run in bfloat16


@needs_bf16_packing
def test_bfloat16_packed_shipped_model_counts_within_an_ion():
    """The trained network in bfloat16 (what an AMX or AVX512-BF16 CPU runs) against float32,
    both packed, on the sample frames: bfloat16 rounding moves a count by a fraction of an ion."""
    stack, meta = load_sample("reaction_series")
    counter = load_counter("default")
    prepared = prepare_stack(
        stack[:8],
        PreprocessConfig.from_dict(counter.card["preprocess"]),
        camera_pixel_size_um=meta["pixel_size_um"],
    ).images
    f32, _ = infer(counter.packed_for_cpu()[0], prepared)
    b16, _ = infer(counter.packed_for_cpu(bf16=True)[0], prepared)
    assert np.all(f32 > 30)
    assert np.all(np.abs(b16 - f32) < 1.5) and np.sqrt(np.mean((b16 - f32) ** 2)) < 0.8
    assert np.any(b16 != f32)
