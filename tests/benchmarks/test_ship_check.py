"""benchmarks/ship_check.py's verdict: a candidate ships only when it beats the shipped model on
every validation store, on the dark-core frames and on the robustness benchmark."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def ship_check():
    sys.path.insert(0, str(BENCH))  # it imports robustness and demo_accuracy beside it
    spec = importlib.util.spec_from_file_location("ship_check", BENCH / "ship_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["robustness"] = importlib.import_module("robustness")
    spec.loader.exec_module(module)
    yield module
    sys.path.remove(str(BENCH))
    for name in ("robustness", "demo_accuracy", "sigma_coverage"):
        sys.modules.pop(name, None)


VAL = {"v3_val.zarr": {"c": (3.5, 2.7, 900), "s": (3.7, 2.9, 900)}}
DARK = {"c": 5.9, "s": 6.2}
ROBUST = {"clean": {"c": (2.8, 1), "s": (2.9, 2)}, "beam": {"c": (4.0, 3), "s": (9.9, 7)}}


def beats(module, val=VAL, dark=DARK, robust=ROBUST) -> list[bool]:
    return [ok for _, ok, _ in module.verdict(val, dark, robust, "c", "s", 0.5)]


def test_a_candidate_better_on_every_measure_beats(ship_check) -> None:
    assert beats(ship_check) == [True, True, True]


def test_one_measure_lost_is_enough_to_refuse(ship_check) -> None:
    worse_val = {"v3_val.zarr": {"c": (3.8, 2.7, 900), "s": (3.7, 2.9, 900)}}
    assert beats(ship_check, val=worse_val) == [False, True, True]
    assert beats(ship_check, dark={"c": 6.3, "s": 6.2}) == [True, False, True]
    # better on average, but one variant lost by more than the tolerance
    one_lost = {**ROBUST, "wings": {"c": (4.6, 0), "s": (4.0, 0)}}
    assert beats(ship_check, robust=one_lost) == [True, True, False]
    # better on every variant, but more frames silently off by more than 10 %
    more_silent = {**ROBUST, "clean": {"c": (2.8, 9), "s": (2.9, 2)}}
    assert beats(ship_check, robust=more_silent) == [True, True, False]


def test_clean_renders_validate_both_models_from_the_cache(ship_check, tmp_path: Path) -> None:
    """Validation without a store: the cached renders counted by the whole counting path,
    errors in % of the cached truth (an integer, here about twice the count)."""
    from ccount_core.nn.count import count_stack
    from ccount_core.nn.ensemble import load_counter
    from ccount_core.simulation import IonGroup, SimulationSettings, TrapSettings, simulate
    from ccount_core.simulation.render import ImagingSettings

    imaging = ImagingSettings.from_lab_units(pixel_size_um=2.0, shape=(240, 320))
    trap = TrapSettings.from_lab_units(v_rf=220.0, v_end=2.5, eta=0.28)
    frame = simulate(trap, [IonGroup("Ca+", 60)], SimulationSettings(seed=5), imaging).image
    count = count_stack(frame[None], load_counter("default"), 2.0)[0]["count"]
    cache = tmp_path / "renders.npz"
    truth = round(2 * count)
    np.savez_compressed(cache, frames=frame[None], truth=np.array([truth]))
    expected = 100.0 * (truth - count) / truth  # about 50 %

    table = ship_check.render_validation(["default", "dark"], 1, cache)
    rms, mean, n = table["clean renders (1)"]["default"]
    near = pytest.approx(expected, abs=0.5)  # bfloat16 or float32, as the machine picks
    assert (rms, mean, n) == (near, near, 1)
    assert 49 < expected < 51
    assert table["clean renders (1)"]["dark"][2] == 1


def test_todays_reaction_series_is_made_once_and_cached(ship_check, tmp_path: Path) -> None:
    """``demo_accuracy.today_series``: the sample as make_sample_data.py would write it now
    (uint16, the true counts in its metadata), simulated once and read back from the cache."""
    import demo_accuracy

    stack, meta = demo_accuracy.today_series(tmp_path, n_frames=2)
    assert stack.dtype == np.uint16 and stack.shape[0] == 2
    assert meta["true_counts"]["Ca+"] == [350, 323]
    assert meta["true_counts"]["ND3+"] == [0, 27]
    cached = list(tmp_path.iterdir())
    assert [p.name for p in cached] == ["reaction_series_today_2.npz"]
    again, meta2 = demo_accuracy.today_series(tmp_path, n_frames=2)
    np.testing.assert_array_equal(again, stack)
    assert meta2 == meta
    np.savez_compressed(cached[0], stack=stack[:1], meta=json.dumps(meta))
    assert demo_accuracy.today_series(tmp_path, n_frames=2)[0].shape[0] == 1  # read, not remade
