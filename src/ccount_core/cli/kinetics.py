"""``ccount kinetics counts.csv``: the first-order loss rate of Ca+ (and the growth of a dark
product) fitted to the counts of ``ccount count``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DESCRIPTION = """\
Fit N_Ca(t) = (N0 - c) exp(-k t) + c to the Ca+ counts of a counts CSV by weighted least
squares (each frame weighted by its 1σ), and with --model first-order-to-product also the
dark product P(t) = P0 + y (N0 - c)(1 - exp(-k t)) with the same k. Prints k ± 1σ (s-1),
N0, c and the fit quality; the errors are scaled by sqrt(chi2/dof) when that exceeds 1.
Frames that were not counted are skipped. docs/ARCHITECTURE.md and
ccount_core.analysis.kinetics say more.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``ccount kinetics``."""
    from ccount_core.analysis.kinetics import MODELS

    p = subparsers.add_parser(
        "kinetics",
        help="fit the Ca+ loss rate k (and a dark product's growth) to a counts CSV",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("counts", type=Path, help="counts CSV written by ccount count")
    p.add_argument(
        "--model",
        choices=MODELS,
        default=MODELS[0],
        help="first-order: Ca+ alone; first-order-to-product: Ca+ and a counted dark "
        "species, one k (default: first-order)",
    )
    p.add_argument(
        "--product",
        default=None,
        help="the dark species of first-order-to-product (default: the file's only one)",
    )
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        default=None,
        help="CSV for the fitted curve: per frame the time, each species' count, fit and "
        "residual (default: none)",
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ccount_core.analysis.kinetics import fit_kinetics, read_series, write_fit
    from ccount_core.errors import InputError

    if args.output is not None and args.output.is_dir():
        raise InputError(f"output: {args.output} is a folder; name a CSV file")
    series = read_series(args.counts, args.model, args.product)
    if series.skipped:
        which = "frames" if len(series.skipped) > 1 else "frame"
        print(
            f"ccount: warning: {which} {', '.join(series.skipped)} not counted: skipped",
            file=sys.stderr,
        )
    fit = fit_kinetics(series, args.model)
    print("\n".join(fit.summary()))
    if args.output is not None:
        print(f"wrote {write_fit(fit, args.output)}")
    return 0
