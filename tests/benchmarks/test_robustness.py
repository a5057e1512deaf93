"""benchmarks/robustness.py at tiny size: fake crystals, a tiny untrained model, two variants."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from ccount_core.image.preprocess import PreprocessConfig

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "robustness.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("robustness", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["robustness"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    del sys.modules["robustness"]


def fake_md(trap: dict, n_ions: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A prolate cloud of ``n_ions`` (m) in place of an MD run, 3 samples."""
    rng = np.random.default_rng(seed)
    xyz = rng.normal(size=(n_ions, 3)) * np.array([25e-6, 25e-6, 60e-6])
    return np.repeat(xyz[None], 3, axis=0), np.ones(n_ions, bool)


def test_the_test_set_is_fixed_and_disjoint_from_training_seeds(bench) -> None:
    crystals = bench.test_set(130)
    assert crystals[:5] == bench.test_set(5)
    assert min(c.seed for c in crystals) > 3  # the training specs' MD seeds are 1-3
    assert {c.n_ions for c in crystals} <= set(range(30, 351))
    assert all(170 <= c.v_rf <= 300 and 0.24 <= c.eta <= 0.355 for c in crystals)
    assert bench.test_set(5, skip=120) == crystals[120:125]  # a check on crystals not yet seen


def test_a_skipped_set_names_its_crystals_by_their_place_in_the_whole_set(bench) -> None:
    row = {
        "mean_abs_percent": 12.0,
        "rms_percent": 12.0,
        "bias_percent": 12.0,
        "worst_percent": 12.0,
        "refused": 0,
        "warned": 0,
        "cover_1sigma": 0.0,
        "cover_2sigma": 0.0,
        "silent_over_10": 1,
        "silent_frames": [1],
    }
    crystals = [c.__dict__ for c in bench.test_set(2, skip=120)]
    report = {"crystals": crystals, "skip": 120, "results": {"m": {"clean": row}}}
    text = bench.markdown(report)
    assert "**m** (2 crystals, 121-122 of the set)" in text
    assert f"crystal 121 ({crystals[1]['n_ions']} ions) in 1 variant" in text


def test_run_counts_every_variant_and_resumes_from_its_cache(
    bench, tmp_path: Path, write_model: Callable[..., Path]
) -> None:
    model = write_model(
        tmp_path / "m.safetensors",
        preprocess=PreprocessConfig(model_pixel_size_um=6.0, output_shape=(96, 48)),
    )
    variants = [bench.VARIANTS[0], bench.VARIANTS[8]]  # clean, gradient
    report = bench.run(3, [str(model)], variants, tmp_path / "cache", fake_md, log=lambda s: None)
    table = report["results"][str(model)]
    assert list(table) == [v.name for v in variants]
    for r in table.values():
        assert r["frames"] == 3 and r["refused"] + (r["frames"] - r["refused"]) == 3
        assert r["silent_over_10"] <= r["frames"] - r["refused"]
    assert len(list((tmp_path / "cache" / "md").glob("*.npy"))) == 3
    # a model named by its path has its counts in the cache too, not beside the model
    assert len(list((tmp_path / "cache" / "counts").glob("m.safetensors_*.json"))) == 2
    again = bench.run(3, [str(model)], variants, tmp_path / "cache", _no_md, log=lambda s: None)
    assert again["results"] == report["results"]  # from the caches: no MD, same counts
    assert "| gradient 15 % of peak |" in bench.markdown(report)


def test_the_goal_mark_needs_both_3_percent_and_1_point_over_clean(bench) -> None:
    """✗ where the mean |error| is above 3 % even within 1 point of clean, or above clean + 1."""

    def row(mean: float) -> dict:
        return {
            "mean_abs_percent": mean,
            "rms_percent": 0.0,
            "bias_percent": 0.0,
            "worst_percent": 0.0,
            "refused": 0,
            "warned": 0,
            "cover_1sigma": 0.0,
            "cover_2sigma": 0.0,
            "silent_over_10": 0,
        }

    for clean, other, marked in ((2.9, 3.3, True), (2.9, 3.0, False), (1.5, 2.9, True)):
        report = {"crystals": [0], "results": {"m": {"clean": row(clean), "x": row(other)}}}
        assert ("✗" in bench.markdown(report).split("| x |")[1].split("\n")[0]) == marked
        assert bench.missing_goal(report["results"]["m"]) == (["x"] if marked else [])


def _no_md(trap: dict, n_ions: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    raise AssertionError("the MD cache was not used")


def test_metrics_count_coverage_and_silent_errors(bench) -> None:
    rows = [
        {"count": 109.0, "uncertainty": 4.0, "warning": ""},  # +9 %: not over 10 %, out of 2σ
        {"count": 150.0, "uncertainty": 30.0, "warning": ""},  # +50 %, silent, in 2σ
        {"count": 80.0, "uncertainty": 5.0, "warning": "saturated"},  # -20 %, warned
        {"count": None, "uncertainty": None, "warning": "not counted: no crystal"},
    ]
    m = bench.metrics(rows, np.array([100.0, 100.0, 100.0, 100.0]))
    assert m["refused"] == 1 and m["warned"] == 1 and m["silent_over_10"] == 1
    assert m["silent_frames"] == [1]
    assert m["mean_abs_percent"] == pytest.approx(79 / 3)
    assert m["bias_percent"] == pytest.approx(13.0)
    assert m["cover_1sigma"] == pytest.approx(0.0) and m["cover_2sigma"] == pytest.approx(1 / 3)


def test_the_report_names_the_crystals_off_without_a_warning(bench) -> None:
    """Each silent crystal once, with its ion number and how many variants it is silent in."""
    a = {"count": 100.0, "uncertainty": 3.0, "warning": ""}
    high = {"count": 130.0, "uncertainty": 3.0, "warning": ""}
    truth = np.array([100.0, 100.0, 100.0])
    table = {
        "clean": bench.metrics([a, high, a], truth),
        "x": bench.metrics([high, high, a], truth),
    }
    assert bench.silent_crystals(table) == {1: 2, 0: 1}
    crystals = [{"n_ions": 100}, {"n_ions": 100}, {"n_ions": 100}]
    text = bench.markdown({"crystals": crystals, "results": {"m": table}})
    assert "crystal 1 (100 ions) in 2 variants, crystal 0 (100 ions) in 1 variant" in text
    quiet = {"clean": bench.metrics([a, a, a], truth)}
    assert "no warning:" not in bench.markdown({"crystals": crystals, "results": {"m": quiet}})
