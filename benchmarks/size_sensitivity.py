"""How strongly a model's count follows the crystal's size in the prepared image.

A uniformly resized image is the image of a crystal with the same ions at another density: the
count goes as (size / lattice spacing)³. A model that reads the lattice hardly moves under a
resize; one that read only the outline at an assumed density would answer ±9 % to a ±3 %
resize. The figure also says how much a 3 % error in the camera's µm per pixel moves the count.
This script resizes validation images by each --scales factor (bilinear, about the centre) and
prints the mean relative change of the count against the unchanged images.

    python benchmarks/size_sensitivity.py MODEL DATA.zarr [DATA2.zarr ...] [--limit 400]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
import torch.nn.functional as F

from ccount_core.image.preprocess import PreprocessConfig
from ccount_core.nn.inference import predict
from ccount_core.nn.model import load_model
from ccount_core.nn.training_data import open_stores, prepare_splits


def resized(images: np.ndarray, factor: float) -> np.ndarray:
    """``images`` ``(n, H, W)`` with their content enlarged by ``factor`` about the centre."""
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))[:, None]
    theta = torch.tensor([[1 / factor, 0, 0], [0, 1 / factor, 0]]).expand(len(x), 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, align_corners=False)[:, 0].numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", help="model file or run directory; 'default' for the shipped one")
    ap.add_argument("data", nargs="+", help="data-set store(s)")
    ap.add_argument("--limit", type=int, default=400, help="validation images used")
    ap.add_argument("--scales", type=float, nargs="+", default=[0.97, 1.03])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model, card = load_model(None if args.model == "default" else args.model)
    prepared = prepare_splits(
        open_stores(args.data),
        "validation",
        PreprocessConfig.from_dict(card["preprocess"]),
        tuple(card["label_names"]),
        args.limit,
        None,
    )
    base = predict(model, prepared.images)[:, 0]
    truth = prepared.labels[:, 0]
    out = {
        "model": args.model,
        "n": len(base),
        "rms_percent": float(np.sqrt(np.mean(((base - truth) / truth) ** 2)) * 100),
        "count_change_percent": {},
    }
    print(f"{len(base)} validation images, RMS error {out['rms_percent']:.2f} %")
    for s in args.scales:
        change = float(np.mean(predict(model, resized(prepared.images, s))[:, 0] / base - 1))
        out["count_change_percent"][str(s)] = 100 * change
        print(
            f"size x{s:.3f} ({100 * (s - 1):+.1f} %): count {100 * change:+.2f} % "
            f"(same density would give {100 * (s**3 - 1):+.1f} %)"
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)


if __name__ == "__main__":
    main()
