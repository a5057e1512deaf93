"""Ensembles: members counted on their own preparations and averaged; cards; shipped ones."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from ccount_core.dataset.samples import load_sample
from ccount_core.errors import InputError
from ccount_core.image.io import write_tiff
from ccount_core.image.preprocess import PreprocessConfig
from ccount_core.nn.count import count_file, count_stack
from ccount_core.nn.counts_file import read_counts
from ccount_core.nn.ensemble import (
    IonCounter,
    ensemble_card,
    is_ensemble,
    load_counter,
    model_location,
    shipped_model_dir,
    shipped_models,
)
from ccount_core.nn.model import read_card

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PRE = PreprocessConfig(model_pixel_size_um=12.0, output_shape=(48, 32))
STRETCHED = replace(PRE, stretch_to_fit=True)
# the tiny member models (conftest.write_model: 350 ions per output) as shipped: float16
# weights, trained on 30-350 ions
MEMBER = {"half": True, "card": {"label_range": [30, 350]}}


def _write(card: dict, path: Path) -> Path:
    path.write_text(json.dumps(card))
    return path


@pytest.fixture(scope="module")
def members(write_model, tmp_path_factory) -> tuple[Path, Path, Path]:
    """A Ca+ model, a Ca+ + ND3+ model with stretched preparation, and their ensemble card."""
    root = tmp_path_factory.mktemp("ensemble")
    a = write_model(root / "a.safetensors", ["Ca+"], preprocess=PRE, seed=0, **MEMBER)
    b = write_model(root / "b.safetensors", ["Ca+", "ND3+"], preprocess=STRETCHED, seed=1, **MEMBER)
    card = ensemble_card([a, b], root / "both.json", name="test pair")
    return a, b, _write(card, root / "both.json")


@pytest.fixture(scope="module")
def sample():
    stack, meta = load_sample("reaction_series")
    return stack[:3], meta


def test_combine_means_members_and_adds_their_spread():
    cards = [{"label_names": ["Ca+"]}, {"label_names": ["Ca+", "ND3+"]}]
    counter = IonCounter([(None, cards[0]), (None, cards[1])], {"label_names": ["Ca+", "ND3+"]})
    a = (np.array([[100.0], [50.0]]), np.array([[np.nan], [np.nan]]))
    b = (np.array([[110.0, 7.0], [50.0, 3.0]]), np.array([[np.nan, 1.5], [np.nan, np.nan]]))
    counts, spread = counter.combine([a, b])
    np.testing.assert_allclose(counts, [[105.0, 7.0], [50.0, 3.0]])
    # two members 10 ions apart: variance (ddof 1) 50; ND3+ has one member, its own spread
    np.testing.assert_allclose(spread[:, 0], [np.sqrt(50.0), 0.0])
    assert spread[0, 1] == 1.5 and np.isnan(spread[1, 1])
    # test-time spreads join the members' own
    a_tta = (a[0], np.array([[2.0], [2.0]]))
    b_tta = (b[0], np.array([[4.0, 1.0], [0.0, 1.0]]))
    np.testing.assert_allclose(
        counter.combine([a_tta, b_tta])[1][:, 0],
        [np.sqrt(50.0 + (4 + 16) / 2), np.sqrt((4 + 0) / 2)],
    )


def test_ensemble_count_is_the_mean_of_its_members(members, sample):
    a, b, both = members
    stack, meta = sample
    px = meta["pixel_size_um"]
    counter = load_counter(both)
    assert counter.is_ensemble and counter.label_names == ["Ca+", "ND3+"]
    # float32: the random test networks magnify rounding (bfloat16 where the CPU has it)
    rows = count_stack(stack, both, px, batch_size=2, bf16=False)
    ra = count_stack(stack, a, px, batch_size=2, bf16=False)
    rb = count_stack(stack, b, px, batch_size=2, bf16=False)
    ca, cb = (np.array([r["count"] for r in rs]) for rs in (ra, rb))
    # each member counted the frame prepared its own way (b's is stretched)
    np.testing.assert_allclose([r["count"] for r in rows], (ca + cb) / 2, rtol=1e-4)
    np.testing.assert_allclose(
        [r["count_ND3+"] for r in rows], [r["count_ND3+"] for r in rb], rtol=1e-4
    )
    for r, x, y in zip(rows, ca, cb, strict=True):
        spread = abs(x - y) / np.sqrt(2)
        assert r["uncertainty"] == pytest.approx(spread, rel=1e-3)  # the card has no metrics
        assert ("models or test-time views disagree" in r["warning"]) == (
            spread > 0.1 * abs(r["count"])
        )
        assert r["ellipse_semi_major"] == pytest.approx(ra[0]["ellipse_semi_major"], rel=0.5)


def _record_fits(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """From now on, one entry per ellipse fit a preparation makes."""
    import ccount_core.image.preprocess as pre

    fits: list[int] = []
    real_fit = pre.fit_float_frame
    monkeypatch.setattr(
        pre, "fit_float_frame", lambda img, fp=False: fits.append(1) or real_fit(img, fp)
    )
    return fits


def test_ensemble_fits_each_frame_once(members, sample, monkeypatch):
    stack, meta = sample
    fits = _record_fits(monkeypatch)
    rows = count_stack(stack, members[2], meta["pixel_size_um"], batch_size=2)
    # two members prepared two ways, one ellipse fit per frame (it is the same for both)
    assert len(fits) == len(stack) == len(rows)


def test_members_fitted_differently_each_get_their_own_fit(
    members, sample, write_model, tmp_path, monkeypatch
):
    """A member whose card asks for another fit (``fit_footprint``) is not handed the first
    member's ellipses: two fits per frame, and each member counts as it does alone."""
    a = members[0]
    c = write_model(
        tmp_path / "c.safetensors", ["Ca+"], preprocess=replace(PRE, fit_footprint=True), **MEMBER
    )
    both = _write(ensemble_card([a, c], tmp_path / "ac.json", name="mixed"), tmp_path / "ac.json")
    stack, meta = sample
    px = meta["pixel_size_um"]
    alone = [
        np.array([r["count"] for r in count_stack(stack, load_counter(m), px, bf16=False)])
        for m in (a, c)
    ]
    fits = _record_fits(monkeypatch)
    rows = count_stack(stack, load_counter(both), px, bf16=False)
    assert len(fits) == 2 * len(stack)
    np.testing.assert_allclose([r["count"] for r in rows], (alone[0] + alone[1]) / 2, rtol=1e-4)


def test_ensemble_counts_a_file_with_its_name_and_dark_column(members, sample, tmp_path):
    _, _, both = members
    stack, meta = sample
    tif = tmp_path / "s.tif"
    write_tiff(tif, stack, pixel_size_um=meta["pixel_size_um"])
    rows = count_file(tif, tmp_path / "c.csv", both, batch_size=2)
    head, written = read_counts(tmp_path / "c.csv")
    assert head["model_name"] == "test pair" and head["label_names"] == ["Ca+", "ND3+"]
    assert len(written) == len(rows) == 3 and "count_ND3+" in written[0]


def test_bad_ensembles_are_one_line_errors(members, write_model, tmp_path):
    a, _, both = members
    card = json.loads(both.read_text())
    gone = _write(
        {**card, "members": [card["members"][0], "missing.json"]}, both.parent / "gone.json"
    )
    with pytest.raises(InputError, match="no such file"):
        load_counter(gone)
    with pytest.raises(InputError, match="lists no member"):
        load_counter(_write({**card, "members": []}, both.parent / "none.json"))
    swapped = _write({**card, "preprocess": STRETCHED.to_dict()}, both.parent / "swapped.json")
    with pytest.raises(InputError, match="not its first member's"):
        load_counter(swapped)
    with pytest.raises(InputError, match="label_names"):
        load_counter(_write({**card, "label_names": ["Ca+"]}, both.parent / "labels.json"))
    nested = _write(
        {**card, "members": ["both.json", card["members"][0]]}, both.parent / "nested.json"
    )
    with pytest.raises(InputError, match="itself an ensemble"):
        load_counter(nested)
    with pytest.raises(InputError, match="at least two"):
        ensemble_card([a], tmp_path / "one.json")
    with pytest.raises(InputError, match="preprocessing configuration differs"):
        load_counter(both, expected_config=STRETCHED)
    other = write_model(tmp_path / "k.safetensors", ["K+"], preprocess=PRE, seed=2, **MEMBER)
    mixed = ensemble_card([a, other], both.parent / "mixed.json")
    mixed["label_names"] = ["Ca+", "K+"]
    with pytest.raises(InputError, match="different species"):
        load_counter(_write(mixed, both.parent / "mixed.json"))


def test_shipped_names_resolve_and_paths_win(tmp_path, monkeypatch):
    assert model_location(None) == shipped_model_dir() / "default.json"
    assert model_location("default") == shipped_model_dir() / "default.json"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "default").mkdir()  # a folder of that name is what the user means
    assert model_location("default") == Path("default")
    assert model_location("no_such_model") == Path("no_such_model")
    with pytest.raises(InputError, match="no such file or directory: no_such_model"):
        load_counter("no_such_model")


@pytest.mark.skipif("ensemble" not in shipped_models(), reason="no shipped ensemble")
def test_shipped_ensemble_beats_its_members_on_its_validation_images():
    path = model_location("ensemble")
    assert is_ensemble(path) and not is_ensemble(model_location("default"))
    card = json.loads(path.read_text())
    members = [read_card(path.parent / m) for m in card["members"]]
    ours = card["metrics"]["ccount_evaluate"]
    assert ours["overall"]["n"] > 10_000
    # its calibration was fitted on images it is not scored on
    assert card["calibration_data"]["split"] == "test" != ours["split"] == "validation"
    assert load_counter(path).card["calibration"]["Ca+"]["knots"][0] < 30
    for m in members:
        theirs = m["metrics"]["ccount_evaluate"]
        # the same three validation splits (the default's card holds the 14,988 images v3's
        # split had when it shipped; 15,062 now)
        assert len(theirs["data"]) == len(ours["data"])
        assert theirs["overall"]["n"] == pytest.approx(ours["overall"]["n"], rel=0.01)
        assert ours["overall"]["rms_percent"] < theirs["overall"]["rms_percent"]
