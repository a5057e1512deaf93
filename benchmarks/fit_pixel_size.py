"""Does the ellipse fit find the same outline at every camera pixel size? (issue 27, point 2)

Draws crystals as the robustness benchmark does (pure Ca+ 30-350 in the paper's trap range)
from seeds of its own (set 31, MD seeds 31001+), renders each as the training images are
(blur 5 µm, depth of field 50 µm, 480 x 640 µm) on cameras of ``--pixels`` µm, and fits the
ellipse with and without ``footprint`` (the card option ``fit_footprint``). Prints per pixel
size the median semi-minor and semi-major axis against the outermost ions (%: the radial
distance of the outermost ion, the largest |z|), and per crystal how far its fitted axes
spread over the pixel sizes (max / min - 1, %): median and worst, for crystals of at least
``--small`` ions and for the smaller ones. Then the fit's time per 2 µm frame (ms).
MD runs are cached under ``~/.cache/ccount/fit_pixel_size/`` (``--cache``).

    python benchmarks/fit_pixel_size.py [--crystals 40] [--pixels 0.5 1 2 3 4 5] [--small 80]
        [--cache DIR]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import robustness as rb  # this folder is on the path when run as a script
from ccount_core.image.ellipse import fit_ellipse

CACHE = Path.home() / ".cache" / "ccount" / "fit_pixel_size"
SET_SEED = 31
MD_SEED0 = 31_000


def outer_extent(samples: np.ndarray) -> tuple[float, float]:
    """(largest |z|, largest radial distance) of the ions' mean positions, µm."""
    mean = samples.mean(axis=0)
    return float(np.abs(mean[:, 2]).max() * 1e6), float(
        np.hypot(mean[:, 0], mean[:, 1]).max() * 1e6
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--crystals", type=int, default=40)
    ap.add_argument("--pixels", type=float, nargs="+", default=[0.5, 1.0, 2.0, 3.0, 4.0, 5.0])
    ap.add_argument("--small", type=int, default=80, help="crystals below this many ions apart")
    ap.add_argument("--cache", type=Path, default=CACHE, help="where the MD runs are kept")
    args = ap.parse_args()
    crystals = rb.draw_crystals(args.crystals, SET_SEED, MD_SEED0)
    samples = [rb.md_samples(c, args.cache) for c in crystals]
    n_ions = np.array([c.n_ions for c in crystals])
    # axes[footprint] (crystals, pixel sizes, 2): semi-major, semi-minor in µm
    axes = {fp: np.zeros((len(crystals), len(args.pixels), 2)) for fp in (False, True)}
    for i, s in enumerate(samples):
        for j, px in enumerate(args.pixels):
            frame = rb.render_variant(s, rb.Variant("clean", pixel_size_um=px), i, 0)
            for fp in (False, True):
                e = fit_ellipse(frame, footprint=fp)
                axes[fp][i, j] = (e.semi_major * px, e.semi_minor * px)
    outer = np.array([outer_extent(s) for s in samples])  # (crystals, 2): z, radial
    big = n_ions >= args.small
    print(f"{len(crystals)} crystals ({big.sum()} of >= {args.small} ions)\n")
    print(
        "| pixel µm | semi-minor vs outermost ions, without / with footprint (median %) "
        "| semi-major (median %) |"
    )
    print("| ---: | --- | --- |")
    for j, px in enumerate(args.pixels):
        rel = {fp: 100 * (axes[fp][big, j] / outer[big] - 1) for fp in (False, True)}
        print(
            f"| {px:g} | {np.median(rel[False][:, 1]):+.1f} / {np.median(rel[True][:, 1]):+.1f} "
            f"| {np.median(rel[False][:, 0]):+.1f} / {np.median(rel[True][:, 0]):+.1f} |"
        )
    print(
        "\n| crystals | footprint | semi-minor spread, median / worst % "
        "| semi-major spread, median / worst % |"
    )
    print("| --- | --- | --- | --- |")
    for label, rows in ((f">= {args.small} ions", big), (f"< {args.small} ions", ~big)):
        if not rows.any():
            continue
        for fp in (False, True):
            a = axes[fp][rows]
            spread = 100 * (a.max(axis=1) / a.min(axis=1) - 1)  # (crystals, 2)
            print(
                f"| {label} ({rows.sum()}) | {'with' if fp else 'without'} "
                f"| {np.median(spread[:, 1]):.1f} / {spread[:, 1].max():.1f} "
                f"| {np.median(spread[:, 0]):.1f} / {spread[:, 0].max():.1f} |"
            )
    frames = [rb.render_variant(s, rb.Variant("clean"), i, 0) for i, s in enumerate(samples)]
    for fp in (False, True):
        fit_ellipse(frames[0], footprint=fp)
        t0 = time.perf_counter()
        for f in frames:
            fit_ellipse(f, footprint=fp)
        ms = 1000 * (time.perf_counter() - t0) / len(frames)
        print(f"\nfit time per 2 µm frame, {'with' if fp else 'without'} footprint: {ms:.2f} ms")


if __name__ == "__main__":
    main()
