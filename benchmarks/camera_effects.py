"""Which camera imperfection moves a model's count? Errors on a camera-effects store by effect.

The images of a store made from a spec with a ``camera_effects`` section (e.g. ``camera_v1``)
each had their imperfections drawn at random; the store keeps only the image, but each draw is
made again from the image's seed (:func:`ccount_core.dataset.sweep.image_draws`). Given the
per-image predictions of ``ccount evaluate`` (its ``predictions.csv``) for one or more models,
this prints, per effect, the relative error (mean and mean |error|, %) in quartiles of the
effect's value (or per value of a discrete one), and a least-squares fit of every image's
relative error on all effects at once: how many points of error the whole range of each effect
adds, the others held fixed.

    ccount evaluate default camera_v1.zarr --split validation -o eval_default
    python benchmarks/camera_effects.py camera_v1.zarr default=eval_default/predictions.csv \\
        tuned=eval_tuned/predictions.csv [--markdown table.md]
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from ccount_core.dataset import open_dataset, plan
from ccount_core.dataset.sweep import image_draws

#: Effects tabulated per value rather than in quartiles.
DISCRETE = ("laser_along_axis", "camera.bit_depth", "camera.em_gain", "pixel_size_um")


def effect_table(store: Path, rows: np.ndarray) -> dict[str, np.ndarray]:
    """Each drawn effect (flattened ``camera.*`` names) and the store's ``pixel_size_um``,
    ``focal_offset_um`` and Ca+ number, per row of ``rows``."""
    ds = open_dataset(store)
    draws = image_draws(plan(ds.spec), rows)
    if not draws or not draws[0]:
        raise SystemExit(f"{store}: its spec has no camera_effects section")
    flat = [
        {
            **{k: v for k, v in d.items() if k != "camera"},
            **{f"camera.{k}": v for k, v in d["camera"].items()},
        }
        for d in draws
    ]
    table = {k: np.array([f[k] for f in flat], float) for k in flat[0]}
    for column in ("pixel_size_um", "focal_offset_um"):
        table[column] = np.asarray(ds.table[column], float)[rows]
    table["n_Ca+"] = ds.labels[rows, 0].astype(float)
    return table


def read_predictions(path: Path) -> dict[int, tuple[float, float]]:
    """``{image row: (true, predicted)}`` of a ``ccount evaluate`` predictions.csv."""
    with path.open() as fh:
        return {
            int(r["image"]): (float(r["true"]), float(r["predicted"])) for r in csv.DictReader(fh)
        }


def bins(values: np.ndarray, name: str) -> list[tuple[str, np.ndarray]]:
    """``[(label, mask), ...]``: one per value of a discrete effect, else quartiles."""
    if name in DISCRETE or len(np.unique(values)) <= 4:
        return [(f"{v:g}", values == v) for v in np.unique(values)]
    edges = np.quantile(values, [0, 0.25, 0.5, 0.75, 1])
    out = []
    for i in range(4):
        hi = values <= edges[i + 1] if i == 3 else values < edges[i + 1]
        out.append((f"{edges[i]:.3g}-{edges[i + 1]:.3g}", (values >= edges[i]) & hi))
    return out


def joint_fit(table: dict[str, np.ndarray], rel: np.ndarray) -> dict[str, float]:
    """Points of relative error (%) each effect adds over its whole range (min to max), from a
    least-squares fit of ``rel`` on all effects at once (each scaled to 0-1), with an
    intercept (``"intercept"``: the error with every effect at its minimum)."""
    names = [k for k in table if np.ptp(table[k]) > 0]
    x = np.column_stack(
        [np.ones(len(rel))] + [(table[k] - table[k].min()) / np.ptp(table[k]) for k in names]
    )
    coef, *_ = np.linalg.lstsq(x, rel, rcond=None)
    return {
        "intercept": float(coef[0]),
        **{k: float(c) for k, c in zip(names, coef[1:], strict=True)},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("store", type=Path, help="the camera-effects store the predictions are of")
    ap.add_argument("predictions", nargs="+", help="NAME=predictions.csv of ccount evaluate")
    ap.add_argument("--markdown", type=Path, default=None, help="write the tables here too")
    args = ap.parse_args()
    preds = {}
    for item in args.predictions:
        name, _, path = item.partition("=")
        if not path:
            raise SystemExit(f"{item}: give NAME=predictions.csv")
        preds[name] = read_predictions(Path(path))
    rows = np.array(sorted(set.intersection(*(set(p) for p in preds.values()))), np.int64)
    if len(rows) == 0:
        raise SystemExit("the predictions share no image")
    table = effect_table(args.store, rows)
    rel = {
        name: np.array([100.0 * (p[r][1] - p[r][0]) / p[r][0] for r in rows])
        for name, p in preds.items()
    }
    lines = [
        f"{len(rows)} images of {args.store.name} counted by every model; "
        "cells: bias / mean |error| (%)",
        "",
        "| effect | values | images | " + " | ".join(preds) + " |",
        "| --- | --- | ---: | " + " | ".join("---:" for _ in preds) + " |",
        f"| all | | {len(rows)} | "
        + " | ".join(f"{r.mean():+.1f} / {np.abs(r).mean():.1f}" for r in rel.values())
        + " |",
    ]
    for name, values in table.items():
        for label, mask in bins(values, name):
            cells = " | ".join(
                f"{r[mask].mean():+.1f} / {np.abs(r[mask]).mean():.1f}" for r in rel.values()
            )
            lines.append(f"| {name} | {label} | {int(mask.sum())} | {cells} |")
    fits = {name: joint_fit(table, r) for name, r in rel.items()}
    lines += [
        "",
        "Points of error over each effect's whole range, all effects fitted at once:",
        "",
        "| effect | range | " + " | ".join(preds) + " |",
        "| --- | --- | " + " | ".join("---:" for _ in preds) + " |",
    ]
    for key in next(iter(fits.values())):
        span = "" if key == "intercept" else f"{table[key].min():.3g}-{table[key].max():.3g}"
        lines.append(
            f"| {key} | {span} | " + " | ".join(f"{f[key]:+.1f}" for f in fits.values()) + " |"
        )
    text = "\n".join(lines)
    print(text)
    if args.markdown is not None:
        args.markdown.write_text(text + "\n")


if __name__ == "__main__":
    main()
