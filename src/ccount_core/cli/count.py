"""``ccount count STACK -o counts.csv``: the ion number in every frame of a recorded stack."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ccount_core.cli._threads import add_threads_argument

# What runs before the first batch's counts arrive: said on the bar's line instead of 0 frames.
WARM_UP = "loading the model, preparing it for this machine and counting the first batch"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``ccount count``."""
    p = subparsers.add_parser(
        "count",
        help="count the ions in every frame of a TIFF stack, folder or Zarr array",
        description="Prepare every frame with the model's preprocessing and count its ions. "
        "Rows are appended to the CSV as they are computed; running the same "
        "command again after a kill skips the frames already written.",
    )
    p.add_argument("stack", help="TIFF stack, folder of frames, or Zarr array")
    p.add_argument("-o", "--output", default="counts.csv", help="CSV to write (default counts.csv)")
    p.add_argument(
        "--pixel-size-um",
        type=float,
        default=None,
        help="camera µm per pixel in the object plane (default: from the file; required "
        "when the file does not say)",
    )
    p.add_argument(
        "--trap-axis",
        default=None,
        metavar="auto|horizontal|vertical|DEG",
        help="the trap axis in the frames: auto (the crystal's long axis, as in every "
        "training crystal), horizontal, vertical, or DEG degrees counter-clockwise from "
        "the columns axis as displayed (the axis the crystal shows nearest it is taken); "
        "default: from the file (trap_axis_deg), else auto",
    )
    p.add_argument(
        "--model",
        default=None,
        help="model file, run directory or ensemble card (.json), or a shipped "
        "one: default (pure Ca+), dark (Ca+ and ND3+), ensemble (the two "
        "averaged: more accurate, 0.6x as fast); default: default",
    )
    p.add_argument("--batch-size", type=int, default=32, help="frames per batch (default 32)")
    p.add_argument(
        "--tta",
        type=int,
        default=0,
        help="extra test-time views per frame (the first: the frame turned by 180°, so "
        "the count does not depend on which way up the camera sees the crystal): the "
        "count is their mean and their "
        "spread joins the uncertainty; each view is one more network pass "
        "(default 0: the model's validation error alone). --model ensemble "
        "--tta 1 is the most accurate setting at 100+ frames/s on a CPU with "
        "bfloat16 units (docs/MODEL.md)",
    )
    add_threads_argument(p)
    p.add_argument(
        "--bf16",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="bfloat16 inference (default: on where the CPU computes it natively "
        "and faster than float32, timed once per machine; counts move by "
        "~0.3 ions RMS)",
    )
    p.add_argument(
        "--device",
        default=None,
        help="torch device, e.g. cpu or cuda:0 (default: CUDA when available)",
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ccount_core.image.io import open_stack
    from ccount_core.nn.count import count_file
    from ccount_core.progress import tqdm_progress

    # What the reader noticed (e.g. a truncated file) is said before the count starts.
    stack = open_stack(args.stack)
    for note in stack.metadata.get("warnings", []):
        print(f"ccount: warning: {note}", file=sys.stderr)
    existed = Path(args.output).exists()
    with tqdm_progress("count", unit="frame", warmup=WARM_UP) as bar:
        rows = count_file(
            args.stack,
            args.output,
            args.model,
            args.pixel_size_um,
            trap_axis=args.trap_axis,
            batch_size=args.batch_size,
            tta=args.tta,
            threads=args.threads,
            bf16=args.bf16,
            device=args.device,
            progress=bar,
        )
    if not rows:
        print(_nothing_to_do(stack.data.shape[0], args.output))
        return 0
    status = _summary(rows, args.output)
    if status and not existed:  # a file of refusals only: the error line says it all
        Path(args.output).unlink(missing_ok=True)
    return status


def _summary(rows: list[dict], output: str) -> int:
    """Print what a run counted; 1 (with one line on stderr) when it counted no frame."""
    from ccount_core.nn.counts_file import not_counted

    refused, reason = not_counted(rows)
    if refused == len(rows):
        print(f"ccount: error: no frame counted ({len(rows)} tried): {reason}", file=sys.stderr)
        return 1
    counted = [r for r in rows if r["count"] is not None]
    warned = sum(1 for r in counted if r["warning"])
    line = f"counted {len(counted)} of {len(rows)} frames into {output}"
    if warned:
        line += f" ({warned} with warnings)"
    if refused:
        line += f"; {refused} not counted: {reason}"
    print(line)
    return 0


def _nothing_to_do(frames: int, output: str) -> str:
    """The line for a rerun that finds every one of ``frames`` frames already in ``output``."""
    every = "the 1 frame was" if frames == 1 else f"all {frames} frames were"
    return f"{every} already counted in {output}; nothing to do"
