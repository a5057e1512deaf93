"""``ccount match STACK -o match.csv``: the ion numbers whose simulated crystal best matches
each frame (automatic simulated-image matching, ``ccount_core.analysis.match``).

ccount match stack.tif --pixel-size-um 1.5 --v-rf 200 --v-end 2.3375 --eta 0.244 -o match.csv
ccount match stack.tif --pixel-size-um 1.5 --trap-info trap.info --dark ND3+ -o match.csv
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ccount_core.cli._trap_flags import add_trap_flags, given_flags, refuse_beside_trap_info
from ccount_core.errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``ccount match``."""
    p = subparsers.add_parser(
        "match",
        help="find the ion numbers whose simulated crystal matches each frame",
        description="For each frame, start from the network's count and search the Ca+ "
        "number (and with --dark the dark ions') whose simulated, identically prepared image "
        "best matches the frame (docs/MATCHING.md). Rows are appended to the CSV as frames "
        "are done; running the same command again after a kill goes on where it stopped.",
    )
    p.add_argument("stack", help="TIFF stack, folder of frames, or Zarr array")
    p.add_argument("-o", "--output", required=True, type=Path, help="CSV to write")
    p.add_argument(
        "--images",
        type=Path,
        help="TIFF of the best simulated images (default: the CSV's name with .tif)",
    )
    p.add_argument(
        "--pixel-size-um",
        type=float,
        help="camera µm per pixel in the object plane (default: from the file)",
    )
    p.add_argument("--frames", help="frames to match, e.g. 0-3,7,10- (default: all)")
    p.add_argument("--dark", help="also search the number of this dark species, e.g. ND3+")
    p.add_argument(
        "--trap-info", type=Path, help="CCMD trap.info file: trap, optics and cooling rate"
    )
    add_trap_flags(
        p.add_argument_group("trap (or --trap-info)"),
        {"rf_mhz": 3.85, "r0_um": 3500.0, "z0_um": 2750.0},
    )
    s = p.add_argument_group("search")
    s.add_argument("--seeds", type=int, default=1, help="seeds averaged per candidate (1)")
    s.add_argument("--temperature-mk", type=float, help="bath temperature, mK (10)")
    for flag, what in (("temperature", "the temperature"), ("v-end", "a scale on V_end")):
        s.add_argument(
            f"--fit-{flag}",
            action=argparse.BooleanOptionalAction,
            help=f"also fit {what} (default: with --dark)",
        )
    s.add_argument("--blur-um", type=float, help="blur radius (1/e) in focus, µm (5)")
    s.add_argument("--dof-um", type=float, help="depth of field, µm (50)")
    p.set_defaults(func=_run)


#: What ``--trap-info`` gives the match, and what stays ccount's own (printed once).
TRAP_INFO_LINE = (
    "trap.info: from the file the trap, blur, depth of field and the laser-cooling rate "
    "(iontype beta); ccount's own: the species (Ca+ and --dark, from its table), the "
    "temperature ({temperature_mk:g} mK), the search's MD schedule and seeds; the file's ion "
    "numbers, seed and integrator are not used (the network's count starts the search)"
)


def _trap_and_settings(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """The trap and the MatchSettings fields (blur_um, dof_um µm, simulation) from the flags
    or trap.info; with trap.info, :data:`TRAP_INFO_LINE` says which settings it gave."""
    import dataclasses

    from ccount_core.analysis.match import SEARCH_SIMULATION
    from ccount_core.simulation import TrapSettings

    given = given_flags(args)
    if args.trap_info is not None:
        refuse_beside_trap_info(args)
        from ccount_core.simulation.ccmd_config import load_trap_info

        cfg = load_trap_info(args.trap_info)
        lab = cfg.imaging.to_lab_units()
        simulation = dataclasses.replace(
            SEARCH_SIMULATION, cooling_rate=cfg.simulation.cooling_rate
        )
        return cfg.trap, {
            "blur_um": lab["blur_um"],
            "dof_um": lab["dof_um"],
            "simulation": simulation,
        }
    missing = [f"--{f.replace('_', '-')}" for f in ("v_rf", "v_end", "eta") if f not in given]
    if missing:
        raise InputError(f"trap: give {', '.join(missing)} or --trap-info")
    lab = {f: getattr(args, f) for f in given}
    return TrapSettings.from_lab_units(**lab), {}


def _run(args: argparse.Namespace) -> int:
    from ccount_core.analysis.match import MatchSettings, match_file
    from ccount_core.checks import check_number
    from ccount_core.progress import tqdm_progress

    trap, given = _trap_and_settings(args)
    temperature_mk = 10.0
    if args.temperature_mk is not None:
        temperature_mk = check_number("--temperature-mk", args.temperature_mk, positive=True)
    for name in ("blur_um", "dof_um"):
        if getattr(args, name) is not None:
            given[name] = getattr(args, name)
    settings = MatchSettings(
        dark=args.dark,
        seeds=args.seeds,
        fit_temperature=args.fit_temperature,
        fit_v_end=args.fit_v_end,
        temperature=temperature_mk * 1e-3,
        **given,
    )
    if args.trap_info is not None:
        print(TRAP_INFO_LINE.format(temperature_mk=temperature_mk), file=sys.stderr)
    with tqdm_progress("match", unit="sim", warmup="loading the network") as bar:
        rows = match_file(
            args.stack,
            args.output,
            trap,
            args.pixel_size_um,
            settings,
            frames=args.frames,
            images=args.images,
            progress=bar,
        )
    if not rows:
        print(f"every frame asked for is already in {args.output}; nothing to do")
        return 0
    images = args.images or args.output.with_suffix(".tif")
    print(f"matched {len(rows)} frames into {args.output} (best images: {images})", file=sys.stderr)
    return 0
