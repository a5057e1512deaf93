"""Counts in bfloat16 against float32 on validation images: how far they move, and the error.

``ccount count`` uses bfloat16 where the CPU runs it natively and faster; this script says what
that costs in accuracy: the RMS % error of each precision against the true counts, and the RMS
and largest difference between the two (ions). Both run the network packed, as a count of 64
frames or more does (``ccount_core.nn.cpu_inference``).

    python benchmarks/bf16_accuracy.py [--model default] DATA.zarr [DATA2.zarr ...] [--limit 600]
"""

from __future__ import annotations

import argparse

import numpy as np

from ccount_core.image.preprocess import PreprocessConfig
from ccount_core.nn.count import native_bf16
from ccount_core.nn.ensemble import load_counter
from ccount_core.nn.inference import infer
from ccount_core.nn.training_data import open_stores, prepare_splits


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", nargs="+", help="data-set store(s)")
    ap.add_argument("--model", default="default", help="model file or run ('default')")
    ap.add_argument("--limit", type=int, default=600, help="validation images used")
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()
    counter = load_counter(None if args.model == "default" else args.model)
    card = counter.members[0][1]
    split = prepare_splits(
        open_stores(args.data),
        "validation",
        PreprocessConfig.from_dict(card["preprocess"]),
        tuple(card["label_names"]),
        args.limit,
        None,
    )
    truth = split.labels[:, 0]
    counts = {}
    for bf16 in (False, True):
        counts[bf16] = np.concatenate(
            [
                infer(counter.packed_for_cpu(bf16)[0], split.images[i : i + args.batch_size])[0][
                    :, 0
                ]
                for i in range(0, len(truth), args.batch_size)
            ]
        )
        rms = np.sqrt(np.mean(((counts[bf16] - truth) / truth) ** 2)) * 100
        print(f"{'bf16' if bf16 else 'fp32'}: RMS error {rms:.2f} % on {len(truth)} images")
    diff = counts[True] - counts[False]
    print(
        f"bf16 - fp32: RMS {np.sqrt(np.mean(diff**2)):.2f} ions, largest "
        f"{np.abs(diff).max():.2f} ions; native bf16 on this CPU: {native_bf16()}"
    )


if __name__ == "__main__":
    main()
