"""Measure the range of each input statistic (``ccount_core.nn.inputs``) on training-like
renders and write it into a model card as ``input_ranges`` (the weights are not touched).

The renders are the first ``--crystals`` of ``benchmarks/sigma_coverage.py``'s clean set (the
default model's training spec, seeds no training set uses, cached in the same .npz) and the first
``--dark`` of its set with dark ions (spec ``dark_v2``), as the card's training data were,
and ``--store-images`` images of a data-set store (``--store``; for a model trained on
camera-like images, e.g. the validation split of ``camera_v1`` from an image its run did not
validate on), each prepared at its own camera pixel size.
Each range is the renders' minimum to maximum widened by ``--margin`` of its span on both
sides (fit quality: up to 1).

    python scripts/input_ranges.py src/ccount_core/models/default.json --crystals 120
    python scripts/input_ranges.py src/ccount_core/models/dark.json --crystals 0 --dark 100
    python scripts/input_ranges.py src/ccount_core/models/ensemble.json --crystals 120 --dark 100
    python scripts/input_ranges.py RUN/model.json --crystals 120 --store camera_v1.zarr \\
        --store-split validation --store-from 1500 --store-images 1000

``--check-from 120`` (and ``--dark-check-from 100``) also prints how many renders the ranges
were not measured on (the coverage benchmark's check set) fall outside each range: the false
warnings a clean (or dark-ion) crystal would get.

A statistic a frame cannot give (``tip_light`` with too few ion spots at the tips or sides,
e.g. a crystal of a few dozen ions) is NaN there, and ``band_light`` is inf or 0 where the sides
or the tips have no lit pixels: the range spans the frames with a finite value, and the count
of those is printed; a statistic no frame gives gets no range (and is not checked).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import numpy as np

from ccount_core.image.preprocess import PreprocessConfig, prepare_stack
from ccount_core.nn.inputs import STATISTICS, input_statistics, prepared_outline, range_warnings

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "sigma_coverage.py"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("card", type=Path, help="model card (.json) to write input_ranges into")
    ap.add_argument("--crystals", type=int, default=120)
    ap.add_argument("--cache", type=Path, default=Path("coverage_frames.npz"))
    ap.add_argument("--dark", type=int, default=0)
    ap.add_argument("--dark-cache", type=Path, default=Path("coverage_dark.npz"))
    ap.add_argument("--store", type=Path, default=None, help="a data-set store's images too")
    ap.add_argument("--store-split", default="validation")
    ap.add_argument("--store-from", type=int, default=0, help="first image of the split used")
    ap.add_argument("--store-images", type=int, default=1000)
    ap.add_argument("--margin", type=float, default=0.1, help="share of the span added")
    ap.add_argument(
        "--check-from",
        type=int,
        default=None,
        help="also count how many clean renders from this one on (as many as --crystals; "
        "e.g. 120, the coverage benchmark's check set) fall outside each range",
    )
    ap.add_argument(
        "--dark-check-from",
        type=int,
        default=None,
        help="the same for the renders with dark ions (as many as --dark; e.g. 100)",
    )
    args = ap.parse_args()
    spec = importlib.util.spec_from_file_location("coverage_bench", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    parts = []  # (frames, camera pixel size µm)
    if args.crystals:
        parts.append((bench.clean_set(args.crystals, args.cache)[0], 2.0))
    if args.dark:
        parts.append((bench.clean_set(args.dark, args.dark_cache, dark=True)[0], 2.0))
    n_store = 0
    if args.store is not None:
        for frames, _truth, px in bench.store_set(
            args.store, args.store_split, args.store_from, args.store_images
        ):
            parts.append((frames, px))
            n_store += len(frames)
    card = json.loads(args.card.read_text())
    cfg = PreprocessConfig.from_dict(card["preprocess"])
    stats = [s for frames, px in parts for s in frame_statistics(frames, px, cfg)]
    ranges = {}
    for name in STATISTICS:
        v = np.array([s[name] for s in stats], float)
        finite = v[np.isfinite(v)]  # band_light: inf or 0 where the sides or the tips are dark
        if finite.size == 0:  # no frame gives it (tip_light of small crystals): not checked
            print(f"{name:12s} renders: none of {v.size} has it  ->  no range")
            continue
        lo, hi = float(finite.min()), float(finite.max())
        pad = args.margin * (hi - lo)
        top = 1.0 if name == "fit_quality" else hi + pad
        ranges[name] = {"min": round(lo - pad, 4), "max": round(top, 4)}
        print(
            f"{name:12s} renders {lo:8.3f} - {hi:8.3f} ({finite.size} of {v.size})"
            f"  ->  {ranges[name]}"
        )
    card["input_ranges"] = {
        **ranges,
        "source": f"scripts/input_ranges.py on {args.crystals} clean renders and {args.dark} "
        f"with dark ions (benchmarks/sigma_coverage.py seeds)"
        + bench.store_note(args.store, args.store_split, args.store_from, n_store)
        + f" ({len(stats)} prepared), margin {args.margin}",
    }
    args.card.write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    checks = [
        ("clean", args.check_from, args.crystals, args.cache, False),
        ("dark-ion", args.dark_check_from, args.dark, args.dark_cache, True),
    ]
    for what, start, n, cache, dark in checks:
        if start is None or not n:
            continue
        frames = bench.clean_set(start + n, cache, dark=dark)[0][start:]
        held = frame_statistics(frames, 2.0, cfg)
        outside = {
            name: sum(bool(range_warnings({name: s[name]}, ranges)) for s in held)
            for name in STATISTICS
        }
        print(
            f"outside the ranges, {what} renders {start}-{start + n - 1} ({len(held)} prepared): "
            + ", ".join(f"{name} {k}" for name, k in outside.items())
            + f"; frames with any: {sum(bool(range_warnings(s, ranges)) for s in held)}"
        )


def frame_statistics(frames: np.ndarray, px: float, cfg: PreprocessConfig) -> list[dict]:
    """:func:`input_statistics` of each frame ``cfg`` prepares from ``frames`` (camera pixel
    size ``px`` µm), bad frames left out."""
    prepared = prepare_stack(frames, cfg, camera_pixel_size_um=px)
    return [
        input_statistics(prepared.images[i], e, px, prepared_outline(e, cfg, px))
        for i, e in enumerate(prepared.ellipses)
        if i not in prepared.bad_frames
    ]


if __name__ == "__main__":
    main()
