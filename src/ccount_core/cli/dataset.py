"""``ccount dataset generate | info | show``: make, summarise and look at training sets."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys


def shipped_specs() -> list[str]:
    """Names of the specs installed with ccount (``ccount_core/specs/*.yaml``), sorted.

    Read from the folder without importing ``ccount_core.dataset`` (dask), so help stays quick.
    """
    from importlib.resources import files

    return sorted(
        f.name.removesuffix(".yaml")
        for f in (files("ccount_core") / "specs").iterdir()
        if f.name.endswith(".yaml")
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``ccount dataset`` and its three subcommands."""
    parser = subparsers.add_parser(
        "dataset",
        help="generate, summarise or view a simulated training set",
        description="Generate a simulated training set from a spec into a Zarr store "
        "(resumable), print its summary, or draw a contact sheet.",
    )
    sub = parser.add_subparsers(dest="dataset_command", metavar="ACTION", required=True)

    gen = sub.add_parser(
        "generate",
        help="run a spec into a Zarr store (rerun the same command to resume)",
        description="Run every sample of SPEC (YAML or TOML) on a dask cluster and write it to "
        "OUT. Rerunning the same command finishes an interrupted store.",
    )
    gen.add_argument(
        "spec",
        help="data-set spec, .yaml/.yml or .toml (see docs/DATASET.md), "
        f"or a shipped one by name: {', '.join(shipped_specs())}",
    )
    gen.add_argument("-o", "--output", required=True, help="output store, e.g. train.zarr")
    gen.add_argument(
        "--workers", type=int, default=None, help="local worker processes (default: every core)"
    )
    gen.add_argument(
        "--scheduler",
        default=None,
        help="address of a running dask scheduler, e.g. tcp://10.0.0.5:8786",
    )
    gen.add_argument(
        "--split",
        action="append",
        default=None,
        dest="splits",
        choices=["train", "validation", "test"],
        help="run only this split's MD runs (repeatable; default: all). The "
        "store keeps the spec's every row; a later run without --split "
        "finishes it",
    )
    gen.add_argument(
        "--flush-seconds",
        type=float,
        default=30.0,
        help="longest time a finished image waits in memory (default 30)",
    )
    gen.set_defaults(func=_generate)

    info = sub.add_parser("info", help="counts per split and parameter ranges of a store")
    info.add_argument("store", help="a store made by `ccount dataset generate`")
    info.set_defaults(func=_info)

    show = sub.add_parser("show", help="contact sheet PNG of random samples with labels")
    show.add_argument("store", help="a store made by `ccount dataset generate`")
    show.add_argument("-o", "--output", required=True, help="PNG file to write")
    show.add_argument("-n", type=int, default=16, help="number of samples (default 16)")
    show.add_argument(
        "--split",
        default="all",
        choices=["all", "train", "validation", "test"],
        help="rows to draw from",
    )
    show.add_argument("--seed", type=int, default=0, help="seed of the random choice")
    show.set_defaults(func=_show)


def _generate(args: argparse.Namespace) -> int:
    from ccount_core.dataset import generate
    from ccount_core.errors import InputError
    from ccount_core.progress import tqdm_progress

    if not args.flush_seconds >= 0:  # NaN fails this too
        raise InputError(f"--flush-seconds must be >= 0, got {args.flush_seconds}")
    with contextlib.ExitStack() as stack:
        # SIGTERM (a batch system's wall-time end, `kill`) stops like Ctrl-C: finished images
        # still in memory are written before exit, so the rerun has less to redo.
        previous = signal.signal(signal.SIGTERM, _interrupt)
        stack.callback(signal.signal, signal.SIGTERM, previous)
        bar = None

        def progress(done: int, total: int) -> None:  # the bar opens once the checks passed
            nonlocal bar
            if bar is None:
                bar = stack.enter_context(tqdm_progress("images", unit="img"))
            bar(done, total)

        summary = generate(
            args.spec,
            args.output,
            workers=args.workers,
            scheduler=args.scheduler,
            progress=progress,
            flush_seconds=args.flush_seconds,
            splits=args.splits,
        )
    new = summary.done_after - summary.done_before
    print(
        f"{summary.path}: {summary.done_after}/{summary.n_rows} images done "
        f"({new} new, {summary.seconds:.1f} s)"
    )
    if summary.failed_runs:
        print(
            f"ccount: error: {summary.failed_runs} MD run(s) failed and stay to do; first: "
            f"{summary.first_error}",
            file=sys.stderr,
        )
        return 1
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _info(args: argparse.Namespace) -> int:
    from ccount_core.dataset import open_dataset
    from ccount_core.dataset.report import describe

    print(describe(open_dataset(args.store)))
    return 0


def _show(args: argparse.Namespace) -> int:
    from ccount_core.dataset import open_dataset
    from ccount_core.dataset.report import contact_sheet

    path = contact_sheet(
        open_dataset(args.store), args.output, n=args.n, split=args.split, seed=args.seed
    )
    print(f"wrote {path}")
    return 0
