"""The ``ccount`` command line: ``ccount simulate | dataset | train | evaluate | count``.

Each subcommand lives in a module of this package that defines ``register(subparsers)``;
modules are found automatically, so a new subcommand is a new file. A module keeps its heavy
imports (torch, numba kernels) inside its handler, so ``ccount --version`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from ccount_core import __version__
from ccount_core.errors import CcountError


def build_parser() -> argparse.ArgumentParser:
    """The full parser, with every subcommand module of this package registered."""
    parser = argparse.ArgumentParser(
        prog="ccount",
        description="Simulate ion Coulomb crystals and count ions in their images.",
    )
    parser.add_argument("--version", action="version", version=f"ccount {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show full tracebacks instead of one-line errors"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status (0 success, 1 error, 2 usage)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("ccount: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one line for the user; --debug shows the traceback
        if args.debug:
            raise
        print(f"ccount: error: {_one_line(exc)}", file=sys.stderr)
        return 1


def _one_line(exc: BaseException) -> str:
    """A single-line description of an exception; bugs also name their type."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, CcountError | FileNotFoundError | PermissionError | IsADirectoryError):
        return text
    return f"{type(exc).__name__}: {text} (run with --debug for the traceback)"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
