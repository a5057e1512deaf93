"""Does a candidate beat the shipped model? The shipping rule's three measures side by side.

1. **Validation**: ``ccount evaluate`` of both models on the same validation images of each
   ``--val`` store (RMS and mean |error|, % of the true count), and/or both counted by
   ``count_stack`` (the whole counting path) on ``sigma_coverage.py``'s first ``--renders``
   clean renders (seeds no training set uses; cached in ``--renders-cache``, made there when
   missing), so that a session without the data-set stores can still judge a candidate.
2. **Dark-core frames**: mean |error| of frames 1-15 of the bundled reaction series
   (``demo_accuracy.py``); the same series made by today's simulator is printed beside it,
   not judged (``demo_accuracy.py --today``).
3. **Robustness**: every variant of ``robustness.py`` (``--crystals`` crystals, after the set's
   first ``--skip``): mean |error| per variant and the frames off by more than 10 % without a
   warning.

The candidate beats the shipped model when its RMS is lower on every validation store, its
dark-core error is lower, and on the robustness benchmark its mean |error| over the variants
is lower, no variant is worse by more than ``--tolerance`` points and no more frames are off
by more than 10 % without a warning. Prints a table per measure and the verdict; the exit
status is 0 when the candidate beats the shipped model, 1 when it does not.

    python benchmarks/ship_check.py RUN/ --against default --val v3_val.zarr [--crystals 120]
    python benchmarks/ship_check.py RUN/ --renders 240 --renders-cache coverage_frames.npz
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

import demo_accuracy  # this folder is on the path when run as a script
import robustness as rb
import sigma_coverage
from ccount_core.nn.count import count_stack
from ccount_core.nn.ensemble import load_counter
from ccount_core.nn.evaluate import evaluate


def validation(
    models: list[str], stores: list[Path], out: Path, limit: int | None = None
) -> dict[str, dict[str, tuple]]:
    """``{store name: {model: (RMS %, mean |error| %, images)}}`` on each store's validation
    split, at most ``limit`` images of it (``evaluate``'s figures and predictions under
    ``out``)."""
    table: dict[str, dict[str, tuple]] = {}
    for store in stores:
        table[store.name] = {}
        for i, model in enumerate(models):
            m = evaluate(model, store, out / f"{store.stem}_{i}", limit=limit)["overall"]
            table[store.name][model] = (m["rms_percent"], m["mean_percent_error"], m["n"])
    return table


def render_validation(models: list[str], n: int, cache: Path) -> dict[str, dict[str, tuple]]:
    """``{"clean renders": {model: (RMS %, mean |error| %, frames counted)}}`` on the first
    ``n`` of ``sigma_coverage.py``'s clean renders, each counted as ``ccount count`` does."""
    frames, truth = sigma_coverage.clean_set(n, cache)
    row = {}
    for model in models:
        rows = count_stack(frames, load_counter(model), 2.0)
        count = np.array([np.nan if r["count"] is None else r["count"] for r in rows], float)
        err = 100.0 * (count - truth) / truth
        ok = np.isfinite(err)
        row[model] = (
            float(np.sqrt(np.mean(err[ok] ** 2))),
            float(np.abs(err[ok]).mean()),
            int(ok.sum()),
        )
    return {f"clean renders ({n})": row}


def robustness_means(report: dict, models: list[str]) -> dict[str, dict[str, tuple]]:
    """``{variant: {model: (mean |error| %, frames off by > 10 % without a warning)}}``."""
    results = report["results"]
    return {
        v: {m: (results[m][v]["mean_abs_percent"], results[m][v]["silent_over_10"]) for m in models}
        for v in results[models[0]]
    }


def verdict(
    val: dict, dark: dict[str, float], robust: dict, cand: str, ship: str, tolerance: float
) -> list[tuple[str, bool, str]]:
    """``[(measure, candidate beats, why), ...]`` for the three measures."""
    out = []
    for store, row in val.items():
        a, b = row[cand][0], row[ship][0]
        out.append((f"validation {store}", a < b, f"RMS {a:.2f} % vs {b:.2f} %"))
    a, b = dark[cand], dark[ship]
    out.append(("dark-core frames 1-15", a < b, f"mean |error| {a:.2f} % vs {b:.2f} %"))
    means = {m: np.mean([r[m][0] for r in robust.values()]) for m in (cand, ship)}
    worse = [v for v, r in robust.items() if r[cand][0] > r[ship][0] + tolerance]
    silent = {m: sum(r[m][1] for r in robust.values()) for m in (cand, ship)}
    ok = means[cand] < means[ship] and not worse and silent[cand] <= silent[ship]
    why = (
        f"mean over variants {means[cand]:.2f} % vs {means[ship]:.2f} %; worse by > "
        f"{tolerance:g} point on {len(worse)} ({', '.join(worse) or 'none'}); off > 10 % "
        f"without a warning {silent[cand]} vs {silent[ship]}"
    )
    out.append(("robustness", ok, why))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("candidate", help="run directory or model file")
    ap.add_argument("--against", default="default", help="the shipped model (default: default)")
    ap.add_argument("--val", type=Path, nargs="*", default=[], help="stores to validate on")
    ap.add_argument("--renders", type=int, default=0, help="clean renders to validate on")
    ap.add_argument("--renders-cache", type=Path, default=Path("coverage_frames.npz"))
    ap.add_argument("--limit", type=int, default=None, help="validation images per store")
    ap.add_argument("--crystals", type=int, default=120, help="robustness test set size")
    ap.add_argument("--skip", type=int, default=0, help="robustness: after the first SKIP")
    ap.add_argument("--cache", type=Path, default=rb.CACHE, help="robustness cache folder")
    ap.add_argument("--tolerance", type=float, default=0.5, help="points a variant may lose")
    ap.add_argument("--out", type=Path, default=None, help="keep the evaluations here")
    args = ap.parse_args()
    if not args.val and not args.renders:
        ap.error("name validation images: --val STORE ... and/or --renders N")
    cand, ship = args.candidate, args.against
    with tempfile.TemporaryDirectory() as tmp:
        val = validation([cand, ship], args.val, args.out or Path(tmp), args.limit)
    if args.renders:
        val |= render_validation([cand, ship], args.renders, args.renders_cache)
    dark = {m: demo_accuracy.dark_core_error(m) for m in (cand, ship)}
    today = {m: demo_accuracy.dark_core_error(m, today=True) for m in (cand, ship)}
    report = rb.run(
        args.crystals, [cand, ship], cache=args.cache, log=lambda _s: None, skip=args.skip
    )
    robust = robustness_means(report, [cand, ship])
    print(f"candidate {cand} against {ship}\n")
    print("| validation set | images | candidate RMS / mean % | shipped RMS / mean % |")
    print("| --- | ---: | --- | --- |")
    for store, row in val.items():
        print(
            f"| {store} | {row[cand][2]} | {row[cand][0]:.2f} / {row[cand][1]:.2f} | "
            f"{row[ship][0]:.2f} / {row[ship][1]:.2f} |"
        )
    print(
        f"\ndark-core frames 1-15, mean |error|: candidate {dark[cand]:.2f} %, "
        f"shipped {dark[ship]:.2f} %; the same series made by today's simulator (not part "
        f"of the rule): candidate {today[cand]:.2f} %, shipped {today[ship]:.2f} %\n"
    )
    print(
        "| robustness variant | candidate mean % (silent > 10 %) | shipped mean % (silent > 10 %) |"
    )
    print("| --- | --- | --- |")
    for v, r in robust.items():
        print(f"| {v} | {r[cand][0]:.1f} ({r[cand][1]}) | {r[ship][0]:.1f} ({r[ship][1]}) |")
    missed = {m: len(rb.missing_goal(report["results"][m])) for m in (cand, ship)}
    print(
        f"\nvariants missing the issue's goal (not part of the rule): candidate {missed[cand]}, "
        f"shipped {missed[ship]} of {len(robust)}\n"
    )
    checks = verdict(val, dark, robust, cand, ship, args.tolerance)
    for measure, ok, why in checks:
        print(f"{'beats' if ok else 'does not beat':14s} {measure}: {why}")
    beats = all(ok for _, ok, _ in checks)
    print("\nverdict: " + ("the candidate beats the shipped model" if beats else "not shippable"))
    sys.exit(0 if beats else 1)


if __name__ == "__main__":
    main()
