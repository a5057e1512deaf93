"""Training and evaluation on several data-set stores, and fine-tuning an existing model.

The stores come from ``generate`` with a stand-in simulator that draws an elliptical crystal of
bright spots whose size grows with the ion number (the ``spot_store`` fixture), so the shared
pipeline prepares them as it prepares real renders.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from ccount_core.dataset import open_dataset
from ccount_core.errors import InputError
from ccount_core.image.preprocess import PreprocessConfig
from ccount_core.nn.augment import AugmentConfig
from ccount_core.nn.evaluate import evaluate
from ccount_core.nn.model import load_model
from ccount_core.nn.train import TrainConfig, train
from ccount_core.nn.training_data import open_stores, prepare_split, prepare_splits

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
PRE = PreprocessConfig(model_pixel_size_um=4.0, output_shape=(32, 16))


def spec(seed: int) -> dict[str, Any]:
    return {
        "name": f"two-stores-{seed}",
        "seed": seed,
        "imaging": {"shape": [48, 96], "pixel_size_um": 2.0},
        "parameters": {
            "n_ions": [20, 30, 40, 50, 60],
            "v_rf": [190, 210],
            "v_end": [2.0],
            "eta": 0.244,
            "seeds": [seed, seed + 10, seed + 20],
        },
        "renders": {"focal_offset_um": [0]},
        "store": {"chunk": 8},
    }


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory, spot_store) -> list[Path]:
    root = tmp_path_factory.mktemp("stores")
    return [spot_store(spec(seed), root / f"{name}.zarr") for seed, name in ((1, "a"), (2, "b"))]


def split_size(path: Path, split: str) -> int:
    return len(prepare_split(open_dataset(path), split, PRE, None, None, None).images)


@pytest.fixture(scope="module")
def run(stores: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run") / "run"
    train(stores, out, TrainConfig(epochs=1, batch_size=8, seed=0, augment=NO_AUG), PRE)
    return out


def test_training_joins_the_stores(stores, run, tmp_path):
    _model, card = load_model(run)
    n_train = [split_size(p, "train") for p in stores]
    n_val = [split_size(p, "validation") for p in stores]
    assert min(n_train) > 0 and min(n_val) > 0
    assert card["splits"]["train"] == sum(n_train)
    assert card["splits"]["validation"] == sum(n_val)
    assert [d["path"] for d in card["data"]] == [str(p) for p in stores]
    assert json.loads((run / "run.json").read_text())["data"] == [str(p.resolve()) for p in stores]
    assert sorted(f.name for f in run.glob("prepared_*.npy")) == [
        "prepared_train.0.npy",
        "prepared_train.1.npy",
        "prepared_validation.0.npy",
        "prepared_validation.1.npy",
    ]
    # a run.json written before a setting existed (here new_preprocess) still resumes
    older = tmp_path / "older"
    shutil.copytree(run, older)
    settings = json.loads((older / "run.json").read_text())
    del settings["train"]["new_preprocess"]
    (older / "run.json").write_text(json.dumps(settings))
    train(stores, older, TrainConfig(epochs=1, batch_size=8, seed=0, augment=NO_AUG), PRE)
    # started again with the stores in the other order: another run, refused
    with pytest.raises(InputError, match="other settings"):
        train(stores[::-1], run, TrainConfig(epochs=1, batch_size=8, seed=0, augment=NO_AUG), PRE)


def test_prepared_cache_does_not_depend_on_how_the_path_is_spelt(stores, tmp_path, monkeypatch):
    first = prepare_split(open_dataset(stores[0]), "train", PRE, None, None, tmp_path)
    assert not isinstance(first.images, np.memmap)  # prepared afresh
    monkeypatch.chdir(stores[0].parent)
    again = prepare_split(open_dataset(Path(stores[0].name)), "train", PRE, None, None, tmp_path)
    assert isinstance(again.images, np.memmap)  # read back from the cache
    np.testing.assert_array_equal(again.images, first.images)
    np.testing.assert_array_equal(again.labels, first.labels)


def test_evaluate_joins_the_stores(stores, run, tmp_path):
    one = evaluate(run, stores[0], tmp_path / "one")
    both = evaluate(run, stores, tmp_path / "both")
    assert one["overall"]["n"] == split_size(stores[0], "validation")
    assert both["overall"]["n"] == sum(split_size(p, "validation") for p in stores)
    assert both["data"] == [str(p) for p in stores]


def test_evaluate_with_test_time_augmentation(stores, run, tmp_path):
    plain = evaluate(run, stores[0], tmp_path / "plain")
    views = evaluate(run, stores[0], tmp_path / "tta", tta=3)
    assert (plain["tta"], views["tta"]) == (0, 3)
    assert views["overall"]["n"] == plain["overall"]["n"]
    p0 = np.loadtxt(tmp_path / "plain" / "predictions.csv", delimiter=",", skiprows=1)
    p3 = np.loadtxt(tmp_path / "tta" / "predictions.csv", delimiter=",", skiprows=1)
    np.testing.assert_array_equal(p3[:, 0], p0[:, 0])  # same images, same truth
    assert not np.allclose(p3[:, 1], p0[:, 1])  # the changed views moved the counts
    with pytest.raises(InputError, match="tta"):
        evaluate(run, stores[0], tmp_path / "bad", tta=-1)


def test_an_ensemble_evaluates_as_the_mean_of_its_members(stores, run, tmp_path, write_model):
    from dataclasses import replace

    from ccount_core.nn.ensemble import ensemble_card

    stretched = replace(PRE, stretch_to_fit=True)
    other = write_model(
        tmp_path / "other.safetensors", label_scale=[60.0], preprocess=stretched, seed=7
    )
    pair = tmp_path / "pair.json"
    pair.write_text(json.dumps(ensemble_card([run, other], pair, name="pair")))
    got = evaluate(pair, stores[0], tmp_path / "pair")
    evaluate(run, stores[0], tmp_path / "one")
    evaluate(other, stores[0], tmp_path / "two")
    p = {
        out: np.loadtxt(tmp_path / out / "predictions.csv", delimiter=",", skiprows=1)
        for out in ("one", "two", "pair")
    }
    # the stretched member also prepares the 60-ion crystals the other cannot fit: the
    # ensemble counts the images both prepared, as the mean of the two
    ids = {k: v[:, -1] for k, v in p.items()}
    assert set(ids["one"]) < set(ids["two"]) and set(ids["pair"]) == set(ids["one"])
    two = p["two"][np.isin(ids["two"], ids["one"])]
    np.testing.assert_array_equal(p["pair"][:, 0], p["one"][:, 0])
    # atol: the untrained members give counts of a few hundred ions of either sign, whose
    # float32 mean near 0 carries their rounding (~1e-5 ions)
    np.testing.assert_allclose(
        p["pair"][:, 1], (p["one"][:, 1] + two[:, 1]) / 2, rtol=1e-5, atol=1e-4
    )
    assert got["model"] == str(pair) and got["overall"]["n"] == len(p["one"])


def test_fine_tuning_starts_from_the_given_model(stores, run, tmp_path):
    start, _ = load_model(run)
    # a learning rate so small that the weights cannot move: the result is the starting model
    cfg = TrainConfig(epochs=1, batch_size=8, lr=1e-12, seed=3, augment=NO_AUG, init_model=str(run))
    tuned, card = train(stores, tmp_path / "tuned", cfg, PRE)
    assert card["training"]["started_from"]["model"] == str(run)
    assert card["training"]["started_from"]["training"]["steps"] >= 1
    for (name, a), b in zip(start.state_dict().items(), tuned.state_dict().values(), strict=True):
        if a.is_floating_point() and "running" not in name:  # batch-norm statistics do move
            torch.testing.assert_close(a, b.float(), rtol=0, atol=1e-6, msg=name)


def test_bad_store_lists_and_starting_points(stores, run, tmp_path):
    with pytest.raises(InputError, match="twice"):
        open_stores([stores[0], stores[0]])
    with pytest.raises(InputError, match="no such data set"):
        open_stores([stores[0], tmp_path / "missing.zarr"])
    with pytest.raises(InputError, match="at least one"):
        open_stores([])
    other = PreprocessConfig(model_pixel_size_um=5.0, output_shape=(32, 16))
    with pytest.raises(InputError, match="init_model: preprocessing"):
        train(
            stores,
            tmp_path / "t",
            TrainConfig(epochs=1, batch_size=8, augment=NO_AUG, init_model=str(run)),
            other,
        )
    with pytest.raises(InputError, match="one starting point"):
        TrainConfig(init_weights="a.pth", init_model="default")
    with pytest.raises(InputError, match="new_preprocess: only with init_model"):
        TrainConfig(new_preprocess=True)


def test_fine_tuning_prepares_images_as_the_model_did(stores, run, tmp_path):
    lines: list[str] = []
    cfg = TrainConfig(epochs=1, batch_size=8, lr=1e-12, augment=NO_AUG, init_model=str(run))
    _, card = train(stores, tmp_path / "tuned", cfg, log=lines.append)
    assert card["preprocess"] == PRE.to_dict()  # the model's, not PreprocessConfig()
    assert lines == [f"train: preparing images as {run} does (its card's preprocessing)"]


def test_a_failed_start_leaves_a_folder_the_corrected_command_takes(stores, run, tmp_path):
    out = tmp_path / "run"
    other = PreprocessConfig(model_pixel_size_um=5.0, output_shape=(32, 16))
    cfg = TrainConfig(epochs=1, batch_size=8, augment=NO_AUG, init_model=str(run))
    with pytest.raises(InputError, match="init_model: preprocessing"):
        train(stores, out, cfg, other)
    assert not out.exists()  # refused before the run directory is made

    class Killed(Exception):
        pass

    def kill(done: int, total: int) -> None:
        raise Killed

    with pytest.raises(Killed):  # killed while preparing: run.json, no checkpoint
        train(stores, out, TrainConfig(epochs=1, augment=NO_AUG), PRE, prepare_progress=kill)
    assert (out / "run.json").exists() and not (out / "checkpoint.pt").exists()
    train(stores, out, cfg, PRE)  # other settings: taken, nothing was learnt yet
    assert json.loads((out / "run.json").read_text())["train"]["init_model"] == str(run)


def test_a_smoke_test_spec_says_so(stores, tmp_path, monkeypatch):
    monkeypatch.setattr("ccount_core.nn.train.SMOKE_SPECS", ("two-stores-1",))
    lines: list[str] = []
    train(
        stores,
        tmp_path / "r",
        TrainConfig(epochs=1, batch_size=8, augment=NO_AUG),
        PRE,
        log=lines.append,
    )
    assert len(lines) == 1 and "`two-stores-1` spec, a smoke test of the pipeline" in lines[0]
    assert str(stores[0]) in lines[0]


def test_fine_tuning_into_another_preprocessing(stores, run, tmp_path):
    # --new-preprocess: the weights start a run that prepares images otherwise (here the
    # crystal stretched to fill the frame); the card keeps both configurations.
    stretch = PreprocessConfig(model_pixel_size_um=4.0, output_shape=(32, 16), stretch_to_fit=True)
    cfg = TrainConfig(
        epochs=1,
        batch_size=8,
        lr=1e-4,
        seed=3,
        augment=NO_AUG,
        init_model=str(run),
        new_preprocess=True,
    )
    _, card = train(stores, tmp_path / "stretched", cfg, stretch)
    assert card["preprocess"] == stretch.to_dict()
    assert card["training"]["started_from"]["preprocess"] == PRE.to_dict()
    assert card["training"]["config"]["new_preprocess"] is True


@pytest.fixture(scope="module")
def dark_store(tmp_path_factory: pytest.TempPathFactory, spot_store) -> Path:
    """A store whose crystals also hold 0 or 5 dark ND3+ ions."""
    mixed = {**spec(3), "name": "dark", "species": {"dark": {"ND3+": {"number": [0, 5]}}}}
    return spot_store(mixed, tmp_path_factory.mktemp("dark") / "dark.zarr")


def test_a_ca_model_grows_a_dark_output_on_pure_and_mixed_stores(stores, dark_store, run, tmp_path):
    both = ("Ca+", "ND3+")
    # the pure stores hold no ND3+: they teach the new output 0
    tr = prepare_splits(open_stores([*stores, dark_store]), "train", PRE, both, None, None)
    n_pure = sum(split_size(p, "train") for p in stores)
    assert np.all(tr.labels[:n_pure, 1] == 0)
    assert set(tr.labels[n_pure:, 1]) == {0.0, 5.0}
    start, _ = load_model(run)
    cfg = TrainConfig(
        epochs=1, batch_size=8, lr=1e-12, seed=3, augment=NO_AUG, init_model=str(run), labels=both
    )
    grown, card = train([*stores, dark_store], tmp_path / "grown", cfg, PRE)
    assert card["label_names"] == ["Ca+", "ND3+"]
    assert card["training"]["started_from"]["label_names"] == ["Ca+"]
    # the Ca+ output keeps its head row and scale, the backbone its weights
    assert grown.label_scale.tolist() == [start.label_scale.item(), 5.0]
    torch.testing.assert_close(
        grown.net.fc.weight[0].float(), start.net.fc.weight[0], rtol=0, atol=1e-6
    )
    torch.testing.assert_close(
        grown.net.conv1.weight.float(), start.net.conv1.weight, rtol=0, atol=1e-6
    )
    # a two-output model is measured on a pure store (ND3+ = 0 there)
    metrics = evaluate(tmp_path / "grown", [stores[0], dark_store], tmp_path / "eval")
    n_val = split_size(stores[0], "validation") + split_size(dark_store, "validation")
    assert metrics["overall"]["n"] == metrics["other_labels"]["ND3+"]["n"] == n_val
    table = np.loadtxt(tmp_path / "eval" / "predictions.csv", delimiter=",", skiprows=1)
    assert table.shape == (n_val, 5)  # true, predicted for Ca+ and ND3+, the image's id
    assert len(set(table[:, 4])) == n_val
    assert set(table[:, 2]) == {0.0, 5.0}  # true ND3+: 0 in the pure store
    assert metrics["other_labels"]["ND3+"]["rms"] == pytest.approx(
        np.sqrt(np.mean((table[:, 3] - table[:, 2]) ** 2))
    )
    # ND3+ has its own error per bin of its true number: the uncertainty a count gives it
    bins = metrics["other_bins"]["ND3+"]
    assert [b["bin"] for b in bins] == [0.0]  # 0 and 5 ions: the bin around 0 (round(0.5) = 0)
    for b in bins:
        sel = np.round(table[:, 2] / 10) * 10 == b["bin"]
        assert b["n"] == sel.sum()
        assert b["rms"] == pytest.approx(np.sqrt(np.mean((table[sel, 3] - table[sel, 2]) ** 2)))
    # a misspelt label is no species of any store; a run may not drop the model's labels
    with pytest.raises(InputError, match="'ND3' is not a species of the data set"):
        train(
            stores,
            tmp_path / "typo",
            TrainConfig(epochs=1, batch_size=8, augment=NO_AUG, labels=("Ca+", "ND3")),
            PRE,
        )
    with pytest.raises(InputError, match="may add labels to the model's"):
        train(
            stores,
            tmp_path / "drop",
            TrainConfig(epochs=1, batch_size=8, augment=NO_AUG, init_model=str(tmp_path / "grown")),
            PRE,
        )


def test_a_killed_evaluation_resumes_to_the_same_numbers(
    stores, write_model, tmp_path, monkeypatch
):
    # evaluate checkpoints each network's predictions in blocks (nn/evaluate.py,
    # CHECKPOINT_IMAGES, PARTIAL_DIR); a resumed run equals one that was never interrupted
    import ccount_core.nn.evaluate as evaluate_mod

    model = write_model(tmp_path / "m.safetensors", preprocess=PRE, seed=3)
    args = dict(batch_size=1, tta=1)
    whole = evaluate(model, stores, tmp_path / "whole", **args)  # one block
    monkeypatch.setattr(evaluate_mod, "CHECKPOINT_IMAGES", 2)

    class Killed(Exception):
        pass

    def kill_at_three(done: int, total: int) -> None:
        if done == 3:
            raise Killed

    out = tmp_path / "resumed"
    with pytest.raises(Killed):
        evaluate(model, stores, out, progress=kill_at_three, **args)
    partial = out / evaluate_mod.PARTIAL_DIR
    assert sorted(p.name for p in partial.iterdir()) == ["key", "member0.0000000000.npy"]
    assert not (out / "metrics.json").exists()
    seen: list[int] = []
    resumed = evaluate(model, stores, out, progress=lambda d, t: seen.append(d), **args)
    assert seen[0] == 2  # the first block was read back, not counted again
    assert resumed == whole
    for name in ("predictions.csv", "metrics.json"):
        assert (out / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()
    assert not partial.exists()
    # a rerun with another setting does not take the blocks a killed run left
    with pytest.raises(Killed):
        evaluate(model, stores, out, progress=kill_at_three, **args)
    plain = evaluate(model, stores, tmp_path / "plain", batch_size=1)
    assert evaluate(model, stores, out, batch_size=1) == plain != whole
