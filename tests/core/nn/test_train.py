"""Training: loss falls on a learnable task, a killed run resumes to the same weights, augment."""

from __future__ import annotations

import csv
import dataclasses

import numpy as np
import pytest
import torch

from ccount_core.errors import InputError
from ccount_core.nn.augment import AugmentConfig, augment, blur, tta_views
from ccount_core.nn.model import load_model
from ccount_core.nn.train import TrainConfig, _loss, fit, summary_metrics
from ccount_core.nn.training_data import Split

pytestmark = pytest.mark.usefixtures("one_torch_thread")

NO_AUG = AugmentConfig(
    rotation_deg=0,
    shift_frac=0,
    scale=0,
    flip=False,
    blur_sigma_px=0,
    gain=0,
    gamma=0,
    noise=0,
    shot_noise=0,
)
CARD = {"label_names": ["Ca+"], "preprocess": {"size": 32}}


def discs(n: int, seed: int, size: int = 32) -> Split:
    """Bright discs whose area is the label: a task a network can learn in a few steps."""
    rng = np.random.default_rng(seed)
    r = rng.uniform(3, 13, n)
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    images = (np.hypot(yy, xx)[None] < r[:, None, None]).astype(np.float32)
    images += rng.normal(0, 0.05, images.shape).astype(np.float32)
    return Split(images, (np.pi * r**2).astype(np.float32)[:, None])


def test_loss_decreases_on_a_learnable_task(tmp_path):
    rows: list[dict] = []
    few = discs(8, 0)  # eight images seen again and again: the loss must fall
    train = Split(np.tile(few.images, (8, 1, 1)), np.tile(few.labels, (8, 1)))
    cfg = TrainConfig(epochs=3, batch_size=8, lr=3e-4, seed=0, augment=NO_AUG)
    _model, card = fit(train, discs(4, 1), tmp_path, cfg, CARD, on_epoch=rows.append)
    losses = [r["train_loss"] for r in rows]
    assert len(rows) == 3 and losses[-1] < 0.5 * losses[0]
    with open(tmp_path / "log.csv") as fh:
        log = list(csv.DictReader(fh))
    assert [int(r["epoch"]) for r in log] == [1, 2, 3]
    assert card["input_shape"] == [32, 32] and card["splits"] == {"train": 64, "validation": 4}
    assert card["training"]["steps"] == 24
    _loaded, saved = load_model(tmp_path)
    assert saved["metrics"]["validation_last_epoch"]["val_rmse"] == pytest.approx(
        rows[-1]["val_rmse"]
    )


class Killed(Exception):
    pass


def test_killed_run_resumes_to_the_same_weights(tmp_path):
    cfg = TrainConfig(epochs=2, batch_size=4, seed=5, checkpoint_every=3, augment=AugmentConfig())
    train, val = discs(12, 2), discs(4, 3)
    ref, _ = fit(train, val, tmp_path / "a", cfg, CARD)

    def kill_at_5(done: int, total: int) -> None:
        if done == 5:
            raise Killed

    with pytest.raises(Killed):
        fit(train, val, tmp_path / "b", cfg, CARD, progress=kill_at_5)
    # what a checkpoint write killed mid-way leaves (files.atomic_path's temporary name), and
    # a file of the user's: fit removes the first on starting again (files.remove_stale_temps)
    leftover = tmp_path / "b" / ".checkpoint.pt.k1lled_0.pt"
    leftover.write_bytes(b"half a checkpoint")
    (tmp_path / "b" / "notes.pt").write_bytes(b"mine")
    steps: list[int] = []
    resumed, _ = fit(train, val, tmp_path / "b", cfg, CARD, progress=lambda d, t: steps.append(d))
    assert steps[0] == 3  # continued from the checkpoint at step 3, not from 0
    assert not leftover.exists() and (tmp_path / "b" / "notes.pt").read_bytes() == b"mine"
    for (name, a), b in zip(ref.state_dict().items(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    with open(tmp_path / "b" / "log.csv") as fh:
        assert [int(r["step"]) for r in csv.DictReader(fh)] == [3, 6]
    # an ended run keeps its step count, not 280 MB of ResNet50 weights and AdamW moments
    # (model.safetensors holds the weights); run again, it returns them without a step
    ended = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    assert ended == {"finished": True, "step": 6, "elapsed_s": pytest.approx(ended["elapsed_s"])}
    steps.clear()
    again, _ = fit(train, val, tmp_path / "b", cfg, CARD, progress=lambda d, t: steps.append(d))
    assert steps == []
    for (name, a), b in zip(ref.state_dict().items(), again.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_epoch_length_changes_when_it_validates_not_what_it_learns(tmp_path):
    train, val = discs(12, 2), discs(4, 3)  # 3 steps of 4 images per pass
    two_passes = TrainConfig(epochs=2, batch_size=4, seed=5, augment=AugmentConfig())
    one_epoch = TrainConfig(
        epochs=1, epoch_images=24, batch_size=4, seed=5, augment=AugmentConfig()
    )
    a, _ = fit(train, val, tmp_path / "a", two_passes, CARD)
    b, card = fit(train, val, tmp_path / "b", one_epoch, CARD)
    for (name, wa), wb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(wa, wb, rtol=0, atol=0, msg=name)
    with open(tmp_path / "b" / "log.csv") as fh:
        assert [int(r["step"]) for r in csv.DictReader(fh)] == [6]
    assert card["training"]["config"]["epoch_images"] == 24


def _batchnorms(model: torch.nn.Module) -> list[torch.nn.BatchNorm2d]:
    return [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]


def test_freeze_bn_trains_with_running_statistics(tmp_path):
    train, val = discs(12, 2), discs(4, 3)
    start, _ = fit(
        train,
        val,
        tmp_path / "start",
        TrainConfig(epochs=1, batch_size=4, seed=5, augment=NO_AUG),
        CARD,
    )
    frozen, card = fit(
        train,
        val,
        tmp_path / "a",
        TrainConfig(
            epochs=1,
            batch_size=4,
            seed=6,
            freeze_bn=True,
            init_model=str(tmp_path / "start"),
            augment=NO_AUG,
        ),
        CARD,
    )
    moving, _ = fit(
        train,
        val,
        tmp_path / "b",
        TrainConfig(
            epochs=1, batch_size=4, seed=6, init_model=str(tmp_path / "start"), augment=NO_AUG
        ),
        CARD,
    )
    assert card["training"]["config"]["freeze_bn"] is True
    # Frozen: the statistics stay those of the start while scale and shift learn.
    for a, b in zip(_batchnorms(frozen), _batchnorms(start), strict=True):
        torch.testing.assert_close(a.running_mean, b.running_mean, rtol=0, atol=0)
        torch.testing.assert_close(a.running_var, b.running_var, rtol=0, atol=0)
    assert any(
        not torch.equal(a.weight, b.weight)
        for a, b in zip(_batchnorms(frozen), _batchnorms(start), strict=True)
    )
    assert any(
        not torch.equal(a.running_mean, b.running_mean)
        for a, b in zip(_batchnorms(moving), _batchnorms(start), strict=True)
    )
    with pytest.raises(InputError, match="freeze_bn: only when fine-tuning"):
        TrainConfig(freeze_bn=True)


def test_train_uses_one_thread_on_a_two_core_machine(monkeypatch):
    from ccount_core.cli import train as train_cli

    monkeypatch.setattr(train_cli, "_cores", lambda: 2)
    assert train_cli.default_threads() == 1
    monkeypatch.setattr(train_cli, "_cores", lambda: 16)
    assert train_cli.default_threads() is None  # torch's own choice


def test_bad_training_input():
    with pytest.raises(InputError, match="epochs"):
        TrainConfig(epochs=0)
    with pytest.raises(InputError, match="epoch_images"):
        TrainConfig(batch_size=32, epoch_images=16)
    with pytest.raises(InputError, match="loss_floor_ions"):
        TrainConfig(loss_floor_ions=0)
    with pytest.raises(InputError, match="split"):
        Split(np.zeros((3, 8, 8), np.float32), np.zeros((2, 1), np.float32))


def test_loss_is_the_relative_error_above_the_floor():
    scale = torch.tensor([350.0])  # ions
    true = torch.tensor([[30.0], [300.0]]) / scale
    pred = true + 3.0 / scale  # three ions too many in both
    loss = _loss(pred, true, 5.0 / scale)
    assert float(loss) == pytest.approx(((3 / 35) ** 2 + (3 / 305) ** 2) / 2, rel=1e-5)


def test_augment_is_seeded_and_keeps_the_crystal():
    x = discs(4, 4).images[:, None]
    x = torch.from_numpy(x)
    a = augment(x, AugmentConfig(), torch.Generator().manual_seed(1))
    b = augment(x, AugmentConfig(), torch.Generator().manual_seed(1))
    c = augment(x, AugmentConfig(), torch.Generator().manual_seed(2))
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)
    # the default geometry and the TTA views keep the size, which carries the ion number: the
    # area of a disc (pixels above half its peak) changes only by interpolation, RMS < 1.5 %
    # (a ±3 % random size change would give ~3.5 %)
    big = discs(64, 4, size=64)
    big = torch.from_numpy(big.images[big.labels[:, 0] > 100][:, None])
    area0 = (big > 0.5).sum(dim=(1, 2, 3)).float()
    geo = AugmentConfig(blur_sigma_px=0, gain=0, gamma=0, noise=0, shot_noise=0)
    area1 = (augment(big, geo, torch.Generator().manual_seed(3)) > 0.5).sum(dim=(1, 2, 3))
    assert (area1 / area0 - 1).square().mean().sqrt() < 0.015
    views = tta_views(big, 3, seed=0)
    assert views.shape == (3, *big.shape)
    torch.testing.assert_close(views[0], big.flip(2, 3), rtol=0, atol=0)  # the 180° turn
    assert ((views > 0.5).sum(dim=(2, 3, 4)) / area0 - 1).square().mean().sqrt() < 0.015


def test_blur_matches_scipy():
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(0)
    img = rng.random((2, 1, 24, 24)).astype(np.float32)
    out = blur(torch.from_numpy(img), torch.tensor([1.0, 0.6])).numpy()
    # a bound on sigma only widens the kernel's support (the GPU path, no device read)
    wide = blur(torch.from_numpy(img), torch.tensor([1.0, 0.6]), max_sigma=2.0).numpy()
    for i, s in enumerate((1.0, 0.6)):
        ref = gaussian_filter(img[i, 0], s, mode="nearest", truncate=3.0)
        np.testing.assert_allclose(out[i, 0], ref, atol=2e-2)
        np.testing.assert_allclose(wide[i, 0], out[i, 0], atol=5e-3)


def test_summary_metrics_on_known_predictions():
    true = np.array([[100.0], [200.0]])
    pred = np.array([[103.0], [196.0]])
    m = summary_metrics(pred, true)
    assert m["rmse"] == pytest.approx(np.sqrt((9 + 16) / 2))
    assert m["rms_percent"] == pytest.approx(100 * np.sqrt((0.03**2 + 0.02**2) / 2))
    assert m["mae"] == pytest.approx(3.5) and m["bias"] == pytest.approx(-0.5)
    assert m["exact"] == 0.0


def test_default_augmentation_is_as_before_the_camera_effects() -> None:
    from ccount_core.nn.augment import PRESETS

    torch.manual_seed(0)
    x = torch.rand(3, 1, 40, 24)
    a = augment(x, PRESETS["default"], torch.Generator().manual_seed(7))
    # the figures of the augmentation before profile/background/hot_pixels existed (to float32
    # rounding: AVX-512 and AVX2 kernels differ in the last bits, 7e-9 of this sum)
    assert float(a.double().sum()) == pytest.approx(1135.9029555088564, rel=1e-7)
    assert float(a[1, 0, 20, 12]) == pytest.approx(0.1381518393754959, rel=1e-6)


def test_camera_augmentation_dims_the_edge_and_stays_inside_the_mask() -> None:
    from ccount_core.nn.augment import PRESETS, beam_profile, gradient_plane

    inside = torch.zeros(64, 1, 96, 48, dtype=torch.bool)
    inside[:, :, 20:76, 12:36] = True
    prof = beam_profile(inside, 0.7, torch.Generator().manual_seed(0))
    centre, edge_col, edge_row = prof[:, 0, 48, 24], prof[:, 0, 48, 12], prof[:, 0, 20, 24]
    edge = torch.minimum(edge_col, edge_row)
    assert bool((centre > 0.85).all()) and bool((edge < centre).all())
    assert 0.1 < float(edge.min()) < 0.35 and float(edge.max()) > 0.9  # 1 - u·0.7, beam shifted
    plane = gradient_plane(
        inside.shape, 0.15, torch.Generator().manual_seed(1), torch.device("cpu")
    )
    assert float(plane.min()) == 0 and 0.1 < float(plane.amax(dim=(1, 2, 3)).max()) <= 0.15
    x = inside.float()
    cfg = dataclasses.replace(
        PRESETS["camera"],
        noise=0,
        shot_noise=0,
        rotation_deg=0,
        shift_frac=0,
        flip=False,
        blur_sigma_px=0,
    )
    out = augment(x, cfg, torch.Generator().manual_seed(2))
    assert float(out[:, :, :15].abs().max()) == 0  # nothing added outside the crystal's mask
