"""``ccount evaluate MODEL DATA.zarr``: the paper's Figure 3 and a JSON of metrics."""

from __future__ import annotations

import argparse
from pathlib import Path

from ccount_core.cli._threads import add_threads_argument, apply_threads


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``ccount evaluate``."""
    p = subparsers.add_parser(
        "evaluate",
        help="accuracy of a model on a split of a data set (Figure 3 + metrics)",
        description="Count every image of a split of DATA (one store or several) with MODEL "
        "and write figure3.png, metrics.json (per true-ion-number bin: mean, std, "
        "RMS, mean % error, exact-count accuracy) and predictions.csv to the --output folder.",
    )
    p.add_argument(
        "model",
        help="model (.safetensors with its .json card, a run directory "
        "or an ensemble card), or a shipped one: default, dark, "
        "ensemble",
    )
    p.add_argument("data", nargs="+", help="data-set store(s) (.zarr); several are joined")
    p.add_argument("--split", default="validation", choices=["train", "validation", "test"])
    p.add_argument("-o", "--output", default="evaluation", help="output directory")
    p.add_argument("--limit", type=int, default=None, help="at most N images of the split")
    p.add_argument("--batch-size", type=int, default=64, help="images per inference batch")
    p.add_argument(
        "--tta",
        type=int,
        default=0,
        help="count each image as the mean of the plain and N changed views "
        "(as ccount count --tta; default 0)",
    )
    p.add_argument(
        "--bf16",
        action="store_true",
        help="run the networks in bfloat16, as ccount count does on a CPU where "
        "that is faster (default: float32)",
    )
    add_threads_argument(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ccount_core.nn.evaluate import evaluate
    from ccount_core.progress import tqdm_progress

    apply_threads(args.threads)
    model = None if args.model == "default" else args.model
    with tqdm_progress("prepare", unit="img") as prep, tqdm_progress("count", unit="img") as bar:
        m = evaluate(
            model,
            args.data,
            args.output,
            split=args.split,
            limit=args.limit,
            batch_size=args.batch_size,
            tta=args.tta,
            bf16=args.bf16,
            progress=bar,
            prepare_progress=prep,
        )
    o = m["overall"]
    views = f" (TTA: mean of {args.tta + 1} views)" if args.tta else ""
    views += " in bfloat16" if args.bf16 else ""
    print(
        f"{o['n']} images{views}: RMS {o['rms']:.2f} ions ({o['rms_percent']:.2f} %), mean error "
        f"{o['mean_percent_error']:.2f} %, exact {100 * o['exact']:.1f} %"
    )
    print("ions  paper std  this std  (n)")
    for r in m["paper_comparison"]:
        std = "-" if r["std"] is None else f"{r['std']:.2f}"
        print(f"{r['ions']:>4}  {r['paper_std']:>9}  {std:>8}  ({r['n']})")
    for name, other in m["other_labels"].items():
        print(
            f"{name}: RMS {other['rms']:.2f} ions, bias {other['bias']:+.2f} ions (true mean "
            f"{other['true_mean']:.1f})"
        )
    print(f"wrote {Path(args.output) / 'figure3.png'}, metrics.json, predictions.csv")
    return 0
