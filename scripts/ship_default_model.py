"""Ship a trained run as the package's default model, or as another shipped model.

Runs ``ccount evaluate`` on the validation split of the run's data sets with the weights as
they will ship (float16), puts its metrics into the card (``metrics.ccount_evaluate``), adds
the name, description and notes, and writes ``ccount_core/models/NAME.safetensors`` and
``NAME.json`` (``--as NAME``, default ``default``). The evaluation's ``figure3.png`` is copied
to ``docs/images/`` (``model_figure3.png`` for the default, else ``NAME_figure3.png``).

    python scripts/ship_default_model.py RUN/ DATA.zarr [DATA2.zarr ...] \
        --name "ccount default v2" --description "..." [--notes "..."] \
        [--eval-dir eval_default] [--as default]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from ccount_core.nn.ensemble import shipped_model_dir
from ccount_core.nn.evaluate import evaluate
from ccount_core.nn.model import load_model, save_model

IMAGES = Path(__file__).resolve().parents[1] / "docs" / "images"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", help="run directory (or model file) to ship")
    ap.add_argument("data", nargs="+", help="the data sets it was trained on")
    ap.add_argument("--name", required=True)
    ap.add_argument("--description", required=True)
    ap.add_argument("--notes", default=None, help="notes on how it was trained")
    ap.add_argument("--eval-dir", default="eval_default", help="where the evaluation goes")
    ap.add_argument(
        "--as",
        dest="ship_as",
        default="default",
        help="shipped name (default: default, the model used when none is named)",
    )
    args = ap.parse_args()

    model, card = load_model(args.run)
    card = dict(card, name=args.name, description=args.description)
    if args.notes:
        card["training"] = dict(card["training"], notes=args.notes)
    with tempfile.TemporaryDirectory() as tmp:
        # evaluate the float16 weights that ship, not the float32 ones of the run
        save_model(Path(tmp) / "half.safetensors", model, card, half=True)
        metrics = evaluate(Path(tmp) / "half.safetensors", args.data, args.eval_dir)
    metrics["model"] = args.ship_as
    card["metrics"] = dict(card.get("metrics", {}), ccount_evaluate=metrics)
    weights, card_path = save_model(
        shipped_model_dir() / f"{args.ship_as}.safetensors", model, card, half=True
    )
    figure = IMAGES / (
        "model_figure3.png" if args.ship_as == "default" else f"{args.ship_as}_figure3.png"
    )
    shutil.copyfile(Path(args.eval_dir) / "figure3.png", figure)
    o = metrics["overall"]
    print(
        f"shipped {weights} and {card_path}: {o['n']} validation images, "
        f"RMS {o['rms_percent']:.2f} %; figure in {figure}"
    )


if __name__ == "__main__":
    main()
