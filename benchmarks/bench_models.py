"""Counting speed of each shipped model (and ensemble) at ``ccount count``'s defaults.

On the shipped sample stack (reaction_series) tiled to --frames (128): ``count_stack`` batched
(preprocessing included, bf16 chosen as ``ccount count`` chooses it, every core) and one
frame with the model loaded. Best of --repeats runs.

    python benchmarks/bench_models.py [default dark ensemble] [--tta 0] [--frames 128]
        [--batch-size 32] [--repeats 3]
"""

from __future__ import annotations

import argparse

import numpy as np

from bench_inference import best_time  # this folder is on the path when run as a script
from ccount_core.dataset.samples import load_sample
from ccount_core.nn.count import count_stack
from ccount_core.nn.ensemble import load_counter, shipped_models


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="*", help="models (default: every shipped one)")
    ap.add_argument("--frames", type=int, default=128, help="frames of the batched runs")
    ap.add_argument("--batch-size", type=int, default=32, help="as ccount count's default")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tta", type=int, default=0, help="test-time views per frame")
    args = ap.parse_args()
    stack, meta = load_sample("reaction_series")
    px = meta["pixel_size_um"]
    frames = np.concatenate([stack] * -(-args.frames // len(stack)))[: args.frames]
    for name in args.models or shipped_models():
        counter = load_counter(name)
        t = best_time(
            lambda c=counter: count_stack(frames, c, px, batch_size=args.batch_size, tta=args.tta),
            args.repeats,
        )
        lat = best_time(
            lambda c=counter: count_stack(frames[:1], c, px, tta=args.tta), args.repeats
        )
        print(
            f"{name:<10} ({len(counter.members)} network(s), tta {args.tta}): "
            f"{args.frames / t:6.1f} frames/s batched, {1000 * lat:5.0f} ms one frame"
        )


if __name__ == "__main__":
    main()
