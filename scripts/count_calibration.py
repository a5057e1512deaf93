"""Fit a model card's ``calibration`` of its Ca+ count (``ccount_core.nn.calibration``) on
renders of its own, and write it into the card (the weights are not touched).

A regression network is pulled toward the middle of its training range (docs/MODEL.md, "Why a
calibration"). The ensemble's map was fitted on the test splits of the training stores; this
fits one where those stores are not at hand: ``--crystals`` clean renders like the default
model's training images (``benchmarks/sigma_coverage.py``'s ``clean_set`` with seeds
``SEED0`` + i = 940000 + i, which neither training, the coverage and σ renders (900000+,
920000+) nor the robustness benchmark (27001+) use), cached in ``--cache``. Each is counted
as ``ccount count`` counts it, without the card's old map, and
``ccount_core.nn.calibration.fit_calibration`` fits the map from count to truth (knots every
``--step`` ions across the card's ``label_range``, least squares weighted by 1 / true², a
curvature penalty, non-decreasing). Prints the mean |error| and bias of the fit renders
before and after.

    python scripts/count_calibration.py default --card src/ccount_core/models/default.json \\
        --crystals 480 --cache calibration_frames.npz
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import numpy as np

from ccount_core.nn.calibration import apply_calibration, fit_calibration
from ccount_core.nn.count import count_stack
from ccount_core.nn.ensemble import load_counter

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "sigma_coverage.py"
SEED0 = 940_000


def errors(count: np.ndarray, truth: np.ndarray) -> str:
    """Mean |error| and bias, % of the true count."""
    e = 100.0 * (count - truth) / truth
    return f"mean |error| {np.mean(np.abs(e)):.2f} %, bias {np.mean(e):+.2f} %"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", help="shipped name or model path, as load_counter takes it")
    ap.add_argument("--card", type=Path, required=True, help="the card (.json) to write")
    ap.add_argument("--crystals", type=int, default=480)
    ap.add_argument("--cache", type=Path, default=Path("calibration_frames.npz"))
    ap.add_argument("--step", type=float, default=20.0, help="ions between knots")
    ap.add_argument("--smooth", type=float, default=1.0, help="curvature penalty")
    args = ap.parse_args()
    spec = importlib.util.spec_from_file_location("coverage_bench", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    frames, truth = bench.clean_set(args.crystals, args.cache, seed0=SEED0)
    truth = truth.astype(float)
    counter = load_counter(args.model)
    counter.card.pop("calibration", None)
    rows = count_stack(frames, counter, 2.0, bf16=False)
    count = np.array([np.nan if r["count"] is None else r["count"] for r in rows], float)
    ok = np.isfinite(count)
    print(f"{int(ok.sum())} renders: before {errors(count[ok], truth[ok])}")
    card = calibrated(json.loads(args.card.read_text()), count[ok], truth[ok], args)
    mapped = apply_calibration(count[ok], card["calibration"][card["label_names"][0]])
    print(f"{int(ok.sum())} renders: after  {errors(mapped, truth[ok])}")
    args.card.write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")


def calibrated(card: dict, count: np.ndarray, truth: np.ndarray, args: argparse.Namespace) -> dict:
    """``card`` with the map from ``count`` to ``truth`` (ions, first label) as its
    ``calibration`` and where it came from as ``calibration_data``."""
    lo, hi = card["label_range"]
    mapping = fit_calibration(count, truth, lo, hi, step=args.step, smooth=args.smooth)
    source = (
        f"scripts/count_calibration.py --crystals {args.crystals} --step {args.step:g} "
        f"--smooth {args.smooth:g}: clean renders like the default training spec's, seeds "
        f"{SEED0}+ (no training, validation, σ or robustness set uses them), counted without "
        "a calibration"
    )
    return card | {
        "calibration": {card["label_names"][0]: mapping},
        "calibration_data": {"renders": len(count), "source": source},
    }


if __name__ == "__main__":
    main()
