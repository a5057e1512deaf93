"""How far a model counts off when batch norm uses each batch's statistics (train mode).

Training normalises every batch by its own mean and variance; counting uses the running
statistics. This script counts validation images both ways (the running statistics are not
changed) and prints the RMS percentage error and bias of each: the gap is what
`ccount train --freeze-bn` removes from a fine-tuning run.

    python benchmarks/bn_statistics.py MODEL DATA.zarr [DATA2.zarr ...] [--limit 800]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from ccount_core.image.preprocess import PreprocessConfig
from ccount_core.nn.ensemble import model_location
from ccount_core.nn.model import load_model
from ccount_core.nn.train import open_stores, prepare_splits


def counts(model: torch.nn.Module, images: np.ndarray, batch_size: int,
           batch_statistics: bool) -> np.ndarray:
    """Ca⁺ counts (ions) of ``images`` ``(n, H, W)``, batch norm in train or eval mode."""
    model.train(batch_statistics)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = 0.0  # train mode must not move the running statistics
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))[:, None]
    with torch.no_grad():
        out = [model(x[s:s + batch_size])[:, 0] for s in range(0, len(x), batch_size)]
    model.eval()
    return torch.cat(out).numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", help="model file, run directory or shipped name (default, dark)")
    ap.add_argument("data", nargs="+", help="data-set store(s)")
    ap.add_argument("--limit", type=int, default=800, help="validation images used")
    ap.add_argument("--batch-size", type=int, default=32, help="the training batch size")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model, card = load_model(model_location(args.model))
    prepared = prepare_splits(open_stores(args.data), "validation",
                              PreprocessConfig.from_dict(card["preprocess"]),
                              tuple(card["label_names"]), args.limit, None)
    truth = prepared.labels[:, 0]
    print(f"{args.model}: {len(truth)} validation images, batches of {args.batch_size}")
    for name, batch_stats in (("running statistics (counting)", False),
                              ("batch statistics (training)", True)):
        pred = counts(model, prepared.images, args.batch_size, batch_stats)
        rms = 100 * float(np.sqrt(np.mean(((pred - truth) / truth) ** 2)))
        print(f"{name:32s} RMS {rms:5.2f} %  bias {float(np.mean(pred - truth)):+6.2f} ions")


if __name__ == "__main__":
    main()
