"""Ship an ensemble of shipped (or other) models: evaluate it and write its card.

Runs ``ccount evaluate`` on the validation split of DATA with the ensemble (every member on
its own preparation of each image, their counts averaged), puts the metrics into the card
(``metrics.ccount_evaluate``, which ``ccount count`` reads for its uncertainty) and writes
``ccount_core/models/NAME.json`` (``--as``, default ``ensemble``). The figure goes to
``docs/images/NAME_figure3.png``.

``--calibrate`` first counts the *test* split of DATA with the ensemble and fits a
calibration of its count (``ccount_core.nn.calibration``) on it; the card carries the map, and
the validation figures are those of the calibrated ensemble.

    python scripts/ship_ensemble.py default dark DATA.zarr [DATA2.zarr ...] --name "..." \\
        --description "..." [--eval-dir eval_ensemble] [--as ensemble] [--calibrate]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ccount_core.files import atomic_write_bytes
from ccount_core.nn.calibration import fit_calibration
from ccount_core.nn.ensemble import ensemble_card, model_location, shipped_model_dir
from ccount_core.nn.evaluate import evaluate

IMAGES = Path(__file__).resolve().parents[1] / "docs" / "images"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("members", nargs="+", help="member models, then data sets (.zarr)")
    ap.add_argument("--name", required=True)
    ap.add_argument("--description", required=True)
    ap.add_argument("--eval-dir", default="eval_ensemble", help="where the evaluation goes")
    ap.add_argument("--as", dest="ship_as", default="ensemble", help="shipped name")
    ap.add_argument(
        "--calibrate",
        action="store_true",
        help="fit a calibration of the count on DATA's test split",
    )
    args = ap.parse_args()
    members = [m for m in args.members if not m.rstrip("/").endswith(".zarr")]
    data = [m for m in args.members if m.rstrip("/").endswith(".zarr")]
    path = shipped_model_dir() / f"{args.ship_as}.json"
    card = ensemble_card(
        [model_location(m) for m in members], path, name=args.name, description=args.description
    )
    with tempfile.TemporaryDirectory() as tmp:
        # evaluate the card as it will ship (its member paths are relative to the models folder)
        trial = shipped_model_dir() / f".{args.ship_as}.{Path(tmp).name}.json"
        try:
            if args.calibrate:
                _write(trial, card)
                test_dir = Path(args.eval_dir) / "calibration_test"
                evaluate(trial, data, test_dir, split="test")
                table = np.genfromtxt(test_dir / "predictions.csv", delimiter=",", names=True)
                label = card["label_names"][0]
                card["calibration"] = {
                    label: fit_calibration(table["predicted"], table["true"], *card["label_range"])
                }
                card["calibration_data"] = {"split": "test", "data": data, "images": len(table)}
            _write(trial, card)
            metrics = evaluate(trial, data, args.eval_dir)
        finally:
            trial.unlink(missing_ok=True)
    metrics["model"] = args.ship_as
    card["metrics"] = {"ccount_evaluate": metrics}
    _write(path, card)
    figure = IMAGES / f"{args.ship_as}_figure3.png"
    shutil.copyfile(Path(args.eval_dir) / "figure3.png", figure)
    o = metrics["overall"]
    print(
        f"shipped {path}: {o['n']} validation images, RMS {o['rms_percent']:.2f} %; "
        f"figure in {figure}"
    )


def _write(path: Path, card: dict) -> None:
    atomic_write_bytes(path, (json.dumps(card, indent=2, sort_keys=True) + "\n").encode())


if __name__ == "__main__":
    main()
