"""Do the shipped models count as well with the preparation options they were not trained with?

The preparation (``ccount_core.image.preprocess``) has three options the shipped models were
trained without: ``resampling="area"`` (a blur that does not depend on the sub-pixel position),
``canonical_turn`` (a frame and its 180° turn prepare alike) and ``symmetry_refine`` (the
ellipse's centre and angle from the crystal's mirror symmetry). This counts with each model's
own card and with the options named (``--options``; ``turn`` and ``sym`` keep the card's
resampling):

- ``clean``: ``benchmarks/sigma_coverage.py``'s clean renders (seeds 900000 + i, Ca+ 30-350,
  cached in ``--cache``): mean |error| and RMS (%), with the standard error of their difference;
- ``reaction``: the bundled demo series, frames 1-15 (a growing dark core): mean |error| (%);
- ``rotation``: ``--rotations`` crystals (seeds 910000 + i) rendered at 0, 30, ..., 330° on a
  1.5 µm, 400 x 400 camera, counted with the trap axis found (``auto``) and stated (the angle):
  the largest deviation of a count from its crystal's mean over the angles (%), worst crystal.

    python benchmarks/pipeline_options.py --crystals 240 --cache cov.npz [--models default]
        [--options turn sym turn+sym] [--tta 1]
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import numpy as np

from ccount_core.dataset.samples import load_sample
from ccount_core.nn.count import count_stack
from ccount_core.nn.ensemble import IonCounter, load_counter

OPTIONS = {
    "card": {},
    "turn": {"canonical_turn": True},
    "sym": {"symmetry_refine": True},
    "turn+sym": {"canonical_turn": True, "symmetry_refine": True},
    "area+turn": {"resampling": "area", "canonical_turn": True, "symmetry_refine": False},
    "area+turn+sym": {"resampling": "area", "canonical_turn": True, "symmetry_refine": True},
}
ANGLES = range(0, 360, 30)


def with_options(counter: IonCounter, options: dict) -> IonCounter:
    """``counter`` with ``options`` set in its own and its members' preprocessing."""

    def card(c: dict) -> dict:
        return {**c, "preprocess": {**c["preprocess"], **options}}

    return IonCounter([(net, card(c)) for net, c in counter.members], card(counter.card))


def counts(
    stack: np.ndarray, counter: IonCounter, px: float, axis: object = "auto", tta: int = 0
) -> np.ndarray:
    rows = count_stack(stack, counter, px, trap_axis=axis, bf16=False, tta=tta)
    return np.array([np.nan if r["count"] is None else r["count"] for r in rows], float)


def rotated_crystals(n: int) -> list[tuple[np.ndarray, int]]:
    """``n`` crystals, each as 12 frames at ``ANGLES``, with its ion number."""
    from ccount_core.simulation import IonGroup, SimulationSettings, TrapSettings, simulate
    from ccount_core.simulation.render import ImagingSettings, render

    out = []
    for i in range(n):
        rng = np.random.default_rng(910_000 + i)
        ions = int(rng.integers(60, 300))
        trap = TrapSettings.from_lab_units(v_rf=rng.uniform(190.0, 260.0), v_end=2.3375)
        md = simulate(trap, [IonGroup("Ca+", ions)], SimulationSettings(seed=910_000 + i), None)
        lit = np.ones(md.samples.shape[1], bool)
        frames = [
            1000.0
            * render(
                md.samples,
                lit,
                ImagingSettings.from_lab_units(pixel_size_um=1.5, shape=(400, 400), rotation_deg=a),
            )
            for a in ANGLES
        ]
        out.append((np.stack(frames), ions))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--crystals", type=int, default=240)
    ap.add_argument("--cache", type=Path, default=Path("coverage_frames.npz"))
    ap.add_argument("--rotations", type=int, default=4, help="crystals turned through 360°")
    ap.add_argument("--models", nargs="+", default=["default", "dark", "ensemble"])
    ap.add_argument("--options", nargs="+", default=list(OPTIONS), choices=list(OPTIONS))
    ap.add_argument("--tta", type=int, default=0, help="count with K test-time views")
    args = ap.parse_args()
    # the card first, once: the others are compared with it
    args.options = ["card", *dict.fromkeys(o for o in args.options if o != "card")]
    bench = Path(__file__).with_name("sigma_coverage.py")
    spec = importlib.util.spec_from_file_location("coverage_bench", bench)
    coverage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(coverage)
    frames, truth = coverage.clean_set(args.crystals, args.cache)
    series, meta = load_sample("reaction_series")
    true_series = np.asarray(meta["true_counts"]["Ca+"], float)
    turned = rotated_crystals(args.rotations)
    for name in args.models:
        base = load_counter(name)
        rel = {}
        for opt in args.options:
            counter = with_options(base, OPTIONS[opt])
            rel[opt] = (counts(frames, counter, 2.0, tta=args.tta) - truth) / truth * 100
            r = rel[opt]
            dark = counts(series, counter, meta["pixel_size_um"], tta=args.tta)[1:]
            dark_err = np.abs(dark - true_series[1:]) / true_series[1:] * 100
            spreads = {}
            for axis in ("auto", "stated"):
                worst = 0.0
                for stack, _ in turned:
                    c = np.array(
                        [
                            counts(
                                f[None], counter, 1.5, "auto" if axis == "auto" else a, args.tta
                            )[0]
                            for f, a in zip(stack, ANGLES, strict=True)
                        ]
                    )
                    worst = max(worst, float(np.nanmax(np.abs(c / np.nanmean(c) - 1)) * 100))
                spreads[axis] = worst
            print(
                f"{name:9s} {opt:10s} clean {np.isfinite(r).sum()}/{len(r)}: mean|err| "
                f"{np.nanmean(np.abs(r)):.2f} %  RMS {np.sqrt(np.nanmean(r**2)):.2f} %  "
                f"bias {np.nanmean(r):+.2f} %;  reaction 1-15 mean|err| {dark_err.mean():.2f} %;"
                f"  rotation spread auto {spreads['auto']:.1f} %, stated {spreads['stated']:.1f} %",
                flush=True,
            )
        for opt in args.options[1:]:
            d = np.abs(rel[opt]) - np.abs(rel["card"])
            d = d[np.isfinite(d)]
            print(
                f"{name:9s} {opt} - card: mean |error| {d.mean():+.2f} ± "
                f"{d.std(ddof=1) / np.sqrt(len(d)):.2f} points (paired, 1 s.e.)",
                flush=True,
            )


if __name__ == "__main__":
    main()
