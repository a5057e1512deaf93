"""Int8 against float32 for a model's network: speed of the network alone and the counts.

Post-training static quantization (torch.ao FX, the x86 backend: per-channel int8 weights,
activation ranges from histograms) calibrated on training images, then both networks count
validation images prepared as the model's card says. Prints images per second of the
network alone (batch --batch-size, best of --repeats) and the RMS percentage error of each.
A measurement for deciding on an int8 counting mode; `ccount count` does not quantize.

    python benchmarks/int8_network.py MODEL DATA.zarr [DATA2.zarr ...] [--calibrate 512]
        [--limit 2000]
"""

from __future__ import annotations

import argparse
import copy
import warnings

import numpy as np
import torch

from bench_inference import best_time  # this folder is on the path when run as a script
from ccount_core.image.preprocess import PreprocessConfig
from ccount_core.nn.ensemble import model_location
from ccount_core.nn.model import load_model
from ccount_core.nn.train import open_stores, prepare_splits


def standardised(images: np.ndarray) -> torch.Tensor:
    """``(n, H, W)`` prepared images -> ``(n, 1, H, W)`` as the network's first step makes them."""
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))[:, None]
    return (x - x.mean(dim=(1, 2, 3), keepdim=True)) / (x.std(dim=(1, 2, 3), keepdim=True) + 1e-6)


def quantized(net: torch.nn.Module, calibration: torch.Tensor) -> torch.nn.Module:
    """An int8 copy of ``net`` whose activation ranges come from ``calibration`` images."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.backends.quantized.engine = "x86"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization announces its move to torchao
        prepared = prepare_fx(copy.deepcopy(net), get_default_qconfig_mapping("x86"),
                              (calibration[:2],))
        with torch.inference_mode():
            for s in range(0, len(calibration), 64):
                prepared(calibration[s:s + 64])
        return convert_fx(prepared)


def outputs(net: torch.nn.Module, x: torch.Tensor, batch_size: int = 64) -> np.ndarray:
    with torch.inference_mode():
        return torch.cat([net(x[s:s + batch_size])[:, 0]
                          for s in range(0, len(x), batch_size)]).numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", help="model file, run directory or shipped name (default, dark)")
    ap.add_argument("data", nargs="+", help="data-set store(s) with train and validation splits")
    ap.add_argument("--calibrate", type=int, default=512, help="training images to calibrate")
    ap.add_argument("--limit", type=int, default=2000, help="validation images counted")
    ap.add_argument("--batch-size", type=int, default=16, help="batch of the speed test")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model, card = load_model(model_location(args.model))
    pre = PreprocessConfig.from_dict(card["preprocess"])
    names = tuple(card["label_names"])
    stores = open_stores(args.data)
    cal = prepare_splits(stores, "train", pre, names, args.calibrate, None)
    val = prepare_splits(stores, "validation", pre, names, args.limit, None)
    net, scale = model.net, float(model.label_scale[0])
    qnet = quantized(net, standardised(cal.images))
    x, truth = standardised(val.images), val.labels[:, 0]
    batch = x[:args.batch_size]
    print(f"{args.model}: calibrated on {len(cal.images)} training images, "
          f"{len(truth)} validation images, {torch.get_num_threads()} threads")
    counts = {}
    for name, n in (("float32", net), ("int8", qnet)):
        counts[name] = outputs(n, x) * scale
        with torch.inference_mode():
            speed = len(batch) / best_time(lambda n=n: n(batch), args.repeats)
        rms = 100 * float(np.sqrt(np.mean(((counts[name] - truth) / truth) ** 2)))
        print(f"{name:8s} network alone {speed:7.0f} images/s "
              f"(batch {args.batch_size})  RMS {rms:.2f} %  "
              f"bias {float(np.mean(counts[name] - truth)):+.2f} ions")
    moved = counts["int8"] - counts["float32"]
    print(f"int8 moves the counts by {float(np.sqrt(np.mean(moved**2))):.2f} ions RMS "
          f"(largest {float(np.abs(moved).max()):.2f})")


if __name__ == "__main__":
    main()
