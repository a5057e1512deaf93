"""The ``--threads`` option shared by the subcommands that run torch."""

from __future__ import annotations

import argparse

from ccount_core.errors import InputError


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--threads N`` (torch CPU threads; default: torch's own choice)."""
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")


def apply_threads(threads: int | None) -> None:
    """Set torch's CPU thread count when ``--threads`` was given; refuse N < 1."""
    if threads is None:
        return
    if threads < 1:
        raise InputError(f"--threads: must be at least 1, got {threads}")
    import torch

    torch.set_num_threads(threads)
