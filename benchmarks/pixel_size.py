"""How a model's count moves with the camera's pixel size, by resampling method.

Renders crystals of its own (pure Ca+ 30-350 in the paper's trap range, MD seeds 30001+, not
the robustness benchmark's 27001+ nor the training specs' 1-3) as the training images are
(blur 5 µm, depth of field 50 µm, 480 x 640 µm) but on cameras of ``--pixels`` µm, and counts
each with each model, its card's preprocessing given each ``--resampling`` method
(``ccount_core.image.preprocess.resample``; ``card``: as the card says, for an ensemble each
member as its own card says). Prints mean |error|, bias (%) and frames off by
more than 10 %. The shipped models' 6 µm input pixels take k x k block means of a camera's
pixels when k = floor(6 / px) >= 2, and one sample per input pixel from a coarser camera.

    python benchmarks/pixel_size.py [--crystals 120] [--models default dark ensemble]
        [--pixels 0.5 1 2 3 3.5 4 5 6] [--resampling bilinear card]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import robustness as rb  # this folder is on the path when run as a script
from ccount_core.nn.count import count_stack
from ccount_core.nn.ensemble import IonCounter, load_counter
from pipeline_options import with_options

SET_SEED = 30
MD_SEED0 = 30_000


def crystals(n: int) -> list[rb.Crystal]:
    """``n`` crystals drawn as the robustness benchmark draws its own, from other seeds."""
    return rb.draw_crystals(n, SET_SEED, MD_SEED0)


def with_resampling(counter: IonCounter, method: str) -> IonCounter:
    """``counter`` with ``method`` in its own and its members' preprocessing (``"card"``:
    ``counter`` as it is)."""
    return counter if method == "card" else with_options(counter, {"resampling": method})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--crystals", type=int, default=120)
    ap.add_argument("--models", nargs="+", default=["default", "dark", "ensemble"])
    ap.add_argument("--pixels", nargs="+", type=float, default=[0.5, 1, 2, 3, 3.5, 4, 5, 6])
    ap.add_argument("--resampling", nargs="+", default=["bilinear", "card"])
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "ccount" / "pixels")
    args = ap.parse_args()
    cs = crystals(args.crystals)
    truth = np.array([c.n_ions for c in cs], float)
    samples = [rb.md_samples(c, args.cache) for c in cs]
    counters = {m: load_counter(m) for m in args.models}
    for k, px in enumerate(args.pixels):
        variant = rb.Variant(f"pixels {px:g} µm", pixel_size_um=px)
        stack = np.stack([rb.render_variant(s, variant, i, 400 + k) for i, s in enumerate(samples)])
        for model, counter in counters.items():
            for method in args.resampling:
                rows = count_stack(stack, with_resampling(counter, method), px, batch_size=16)
                count = np.array([np.nan if r["count"] is None else r["count"] for r in rows])
                err = 100 * (count - truth) / truth
                print(
                    f"{px:4g} µm  {model:9s} {method:14s} mean |error| "
                    f"{np.nanmean(np.abs(err)):5.2f} %, bias {np.nanmean(err):+5.2f} %, "
                    f"off by > 10 %: {int((np.abs(err) > 10).sum())}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
