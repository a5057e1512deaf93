"""benchmarks/ship_check.py's verdict: a candidate ships only when it beats the shipped model on
every validation store, on the dark-core frames and on the robustness benchmark."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

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
    for name in ("robustness", "demo_accuracy"):
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
