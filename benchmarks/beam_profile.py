"""Counting through a cooling beam narrower than the crystal, with and without the
preparation's beam flattening (``ccount_core.image.beam``; issue 27, points 2-3).

The robustness benchmark's crystals (``robustness.py``'s test set, its MD cache) are rendered
clean and through a beam along the trap axis that leaves the outer layers at 30, 50 and 70 %
of the centre, and one across it that leaves the tips there (the issue's range). Each is
counted by the model as its card has it and with its ``beam_reference`` removed. Per variant
the table gives mean |error|, bias, the frames the preparation evened out (those with the
"beam" note) and ±1σ / ±2σ coverage. ``--gate LO HI`` counts with another threshold than
``ccount_core.image.beam.GATE`` (what a lower one would do).

    python benchmarks/beam_profile.py --crystals 120 [--model default] [--gate 0.2 0.4]
"""

from __future__ import annotations

import dataclasses

import numpy as np

import ccount_core.image.beam as beam
import robustness as rb  # this folder is on the path when run as a script
from ccount_core.nn.count import count_stack
from ccount_core.nn.ensemble import load_counter

EDGES = (0.3, 0.5, 0.7)


def variants() -> list[rb.Variant]:
    """Clean, then a beam along and one across the trap axis at each of :data:`EDGES`."""
    out = [rb.Variant("clean")]
    for along in (True, False):
        for edge in EDGES:
            part = "outer layers" if along else "tips"
            out.append(
                rb.Variant(
                    f"beam {'along' if along else 'across'}, {part} at {edge:.0%}",
                    effects=rb._profile(along, edge),
                )
            )
    return out


def without_flattening(counter):
    """``counter`` with its card's and its members' ``beam_reference`` removed (a copy)."""
    copy = dataclasses.replace(
        counter,
        members=[(net, {**card}) for net, card in counter.members],
        card={**counter.card},
    )
    for card in copy.cards:
        card["preprocess"] = {
            k: v for k, v in card["preprocess"].items() if k not in ("beam_reference", "beam_noise")
        }
    return copy


def figures(rows: list[dict], truth: np.ndarray) -> str:
    """One table row's cells: mean |error|, bias (%), evened out, ±1σ, ±2σ (%)."""
    count = np.array([np.nan if r["count"] is None else r["count"] for r in rows], float)
    sigma = np.array([np.nan if r["uncertainty"] is None else r["uncertainty"] for r in rows])
    err = 100.0 * (count - truth) / truth
    within = np.abs(count - truth)
    flat = sum("beam: " in (r["warning"] or "") for r in rows)
    return (
        f"{np.nanmean(np.abs(err)):.1f} | {np.nanmean(err):+.1f} | {flat} | "
        f"{100 * np.nanmean(within <= sigma):.0f} % | {100 * np.nanmean(within <= 2 * sigma):.0f} %"
    )


def main() -> None:
    args = rb.set_arguments(
        __doc__,
        120,
        "robustness",
        lambda ap: ap.add_argument("--gate", type=float, nargs=2, default=list(beam.GATE)),
    )
    beam.GATE = tuple(args.gate)
    truth, samples = rb.chosen_set(args, rb.test_set)
    counter = load_counter(args.model)
    plain = without_flattening(counter)
    print(f"**{args.model}** ({len(truth)} crystals, gate {beam.GATE}; flattened | not)\n")
    print(
        "| variant | mean \\|error\\| % | bias % | evened out | ±1σ | ±2σ "
        "| mean \\|error\\| % | bias % | evened out | ±1σ | ±2σ |"
    )
    print("| --- " + "| ---: " * 10 + "|")
    for k, variant in enumerate(variants()):
        stack = np.stack([rb.render_variant(s, variant, i, 700 + k) for i, s in enumerate(samples)])
        cells = [
            figures(count_stack(stack, c, 2.0, batch_size=16), truth) for c in (counter, plain)
        ]
        print(f"| {variant.name} | {cells[0]} | {cells[1]} |", flush=True)


if __name__ == "__main__":
    main()
