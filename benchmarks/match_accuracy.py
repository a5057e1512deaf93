"""How well ``ccount match`` finds known ion numbers, and how long a frame takes.

Pure Ca+: simulated camera frames (``single_crystal``, seeds 100+, none of the search's) of
30-350 Ca+. Dark cores: a reaction series made now by ``reaction_series`` (Ca+ → ND3+, seed 0;
the shipped ``data/reaction_series.tif`` came from an older simulator, docs/MATCHING.md), its
mixed frames. Starts: the shipped networks (``default``; ``dark`` for the series).
Schedule: whether the search's short MD schedule (``SEARCH_SIMULATION``) gives the signature
of the default one, measured against the seed-to-seed spread and one search step in N.

    python benchmarks/match_accuracy.py [--pure 10] [--dark-frames 1,4,7,10,13] [--shipped]
        [--seeds N] [--no-fit-v-end] [--no-fit-temperature] [--schedule]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from ccount_core.analysis.match import (
    N_STEP,
    SEARCH_SIMULATION,
    Candidate,
    Matcher,
    MatchSettings,
    distance,
    match_frame,
    size_measure,
)
from ccount_core.dataset.samples import load_sample, reaction_series, single_crystal
from ccount_core.nn.count import count_stack
from ccount_core.simulation import SimulationSettings, TrapSettings

TRAP = TrapSettings.from_lab_units(v_rf=200.0, v_end=2.3375)
PX = 1.5


def pure(n_frames: int) -> None:
    numbers = np.linspace(30, 350, n_frames).round().astype(int)
    frames = np.stack(
        [single_crystal({"Ca+": int(n)}, seed=100 + i)[0] for i, n in enumerate(numbers)]
    )
    net = count_stack(frames, None, PX)
    errors, nets, inside = [], [], 0
    for frame, n, r in zip(frames, numbers, net, strict=True):
        t = time.perf_counter()
        m = match_frame(frame, PX, TRAP, r["count"])
        dt = time.perf_counter() - t
        errors.append(100 * (m.n_ca - n) / n)
        nets.append(100 * (r["count"] - n) / n)
        inside += m.interval_ca[0] <= n <= m.interval_ca[1]
        print(
            f"  Ca+ {n:4d}: net {r['count']:6.1f}  match {m.n_ca:6.1f} "
            f"[{m.interval_ca[0]:.1f}, {m.interval_ca[1]:.1f}]  residual {m.residual_um:.2f} µm"
            f"  {m.simulations} MD runs  {dt:.1f} s"
        )
    print(
        f"pure Ca+ ({n_frames} frames, 30-350): match mean |error| "
        f"{np.mean(np.abs(errors)):.2f} %, worst {max(errors, key=abs):+.1f} %; network "
        f"{np.mean(np.abs(nets)):.2f} %; truth inside the interval {inside}/{n_frames}"
    )


def dark(which: list[int], shipped: bool = False, **search: Any) -> None:
    """The dark-core frames ``which`` of the reaction series (``shipped``: the bundled
    TIFF), matched with ``MatchSettings(dark="ND3+", **search)``."""
    if shipped:
        stack, meta = load_sample("reaction_series")
    else:
        stack, meta = reaction_series(n_frames=max(which) + 1, seed=0)
    frames = stack[which]
    truth_ca = np.array(meta["true_counts"]["Ca+"])[which]
    truth_nd = np.array(meta["true_counts"]["ND3+"])[which]
    net = count_stack(frames, "dark", PX)
    e_ca, e_nd, n_ca, n_nd = [], [], [], []
    inside_ca = inside_nd = 0
    for frame, ca, nd, r in zip(frames, truth_ca, truth_nd, net, strict=True):
        t = time.perf_counter()
        m = match_frame(
            frame, PX, TRAP, r["count"], r["count_ND3+"], MatchSettings(dark="ND3+", **search)
        )
        dt = time.perf_counter() - t
        e_ca.append(100 * (m.n_ca - ca) / ca)
        e_nd.append(100 * (m.n_dark - nd) / nd)
        n_ca.append(100 * (r["count"] - ca) / ca)
        n_nd.append(100 * (r["count_ND3+"] - nd) / nd)
        inside_ca += m.interval_ca[0] <= ca <= m.interval_ca[1]
        inside_nd += m.interval_dark[0] <= nd <= m.interval_dark[1]
        print(
            f"  Ca+ {ca:4d} ND3+ {nd:4d}: net {r['count']:6.1f} {r['count_ND3+']:6.1f}  match "
            f"{m.n_ca:6.1f} [{m.interval_ca[0]:.1f}, {m.interval_ca[1]:.1f}] {m.n_dark:6.1f} "
            f"[{m.interval_dark[0]:.1f}, {m.interval_dark[1]:.1f}]  residual "
            f"{m.residual_um:.2f} µm  {m.temperature * 1e3:.1f} mK  V_end × {m.v_end_scale:.3f}  "
            f"{m.simulations} MD runs  {dt:.1f} s"
        )
    print(
        f"dark-core frames {which}: match mean |error| Ca+ {np.mean(np.abs(e_ca)):.2f} %, "
        f"ND3+ {np.mean(np.abs(e_nd)):.2f} %; network Ca+ {np.mean(np.abs(n_ca)):.2f} %, "
        f"ND3+ {np.mean(np.abs(n_nd)):.2f} %; truth inside the interval: Ca+ "
        f"{inside_ca}/{len(which)}, ND3+ {inside_nd}/{len(which)}"
    )


def schedule(cases: list[tuple[int, int]]) -> None:
    """For (Ca+, ND3+) crystals, prepared as a frame of that crystal: D (µm²) between the
    short and the default schedule (seed 1), against D between seeds 1 and 2 and D for one
    search step in Ca+ (default schedule); and the short/default ratio of the size measure,
    which is the bias in N (size ∝ N)."""
    full = SimulationSettings()
    for n_ca, n_nd in cases:
        frame = single_crystal({"Ca+": n_ca, "ND3+": n_nd}, seed=100)[0]
        m = Matcher(frame, PX, TRAP, MatchSettings(dark="ND3+" if n_nd else None))
        c = Candidate(n_ca, n_nd)
        step = max(1, round(N_STEP * n_ca))
        t = time.perf_counter()
        short, _ = m.run(c, 1, SEARCH_SIMULATION)
        t_short = time.perf_counter() - t
        t = time.perf_counter()
        default, _ = m.run(c, 1, full)
        t_full = time.perf_counter() - t
        seed2, _ = m.run(c, 2, full)
        stepped, _ = m.run(Candidate(n_ca + step, n_nd), 1, full)
        ref = size_measure(default)

        print(
            f"  {n_ca} Ca+ {n_nd} ND3+: D(short, default) {distance(short, default):.3f} µm², "
            f"seed 1 vs 2 {distance(seed2, default):.3f}, +{step} Ca+ "
            f"{distance(stepped, default):.3f}; size short/default "
            f"{size_measure(short) / ref:.4f} (seed 2: {size_measure(seed2) / ref:.4f}); "
            f"MD {t_short:.1f} s vs {t_full:.1f} s"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pure", type=int, default=10, help="pure Ca+ frames (0: none)")
    ap.add_argument(
        "--dark-frames", default="1,4,7,10,13", help="reaction-series frames ('': none)"
    )
    ap.add_argument(
        "--shipped",
        action="store_true",
        help="the dark-core frames of the shipped data/reaction_series.tif (an older "
        "simulator's) instead of the series regenerated now",
    )
    ap.add_argument("--seeds", type=int, default=None, help="dark search: seeds per candidate")
    for flag, what in (("v-end", "a scale on V_end"), ("temperature", "the temperature")):
        ap.add_argument(
            f"--fit-{flag}",
            action=argparse.BooleanOptionalAction,
            help=f"dark search: also fit {what} (default: yes, as ccount match --dark)",
        )
    ap.add_argument(
        "--schedule", action="store_true", help="compare the short and the default MD schedule"
    )
    args = ap.parse_args()
    if args.schedule:
        schedule([(60, 0), (300, 0), (270, 80)])
    if args.pure:
        pure(args.pure)
    if args.dark_frames:
        search: dict[str, Any] = {
            "fit_v_end": args.fit_v_end,
            "fit_temperature": args.fit_temperature,
        }
        if args.seeds is not None:
            search["seeds"] = args.seeds
        dark([int(f) for f in args.dark_frames.split(",")], args.shipped, **search)


if __name__ == "__main__":
    main()
