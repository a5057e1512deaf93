"""``ccount simulate``: one Coulomb crystal → a float32 TIFF whose metadata holds every input.

ccount simulate -o crystal.tif --ions "Ca+:300,CaF+:50" --v-rf 200 --v-end 2.3375
ccount simulate -o crystal.tif --trap-info trap.info          # a CCMD input file
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from ccount_core.cli._trap_flags import TRAP_FLAGS, add_trap_flags, refuse_beside_trap_info
from ccount_core.errors import InputError

# Trap and ion flags: None means "not given", so that --trap-info can refuse them.
_TRAP_FLAGS = ("ions", *TRAP_FLAGS)
_DEFAULTS = {
    "ions": "Ca+:300",
    "v_rf": 200.0,
    "v_end": 2.3375,
    "eta": 0.244,
    "rf_mhz": 3.85,
    "r0_um": 3500.0,
    "z0_um": 2750.0,
}
#: Ion pairs × Coulomb evaluations per CPU second of the MD, from ~200 ions on (where the N²
#: sum dominates): 1.8e8-2.1e8 in docs/BENCHMARKS.md's scaling table (0.88 CPU s for 300 ions).
PAIR_STEPS_PER_CPU_S = 2.0e8
#: Runs estimated longer than this (s) need --yes, or a "y" when stdin is a terminal.
CONFIRM_ABOVE_S = 600.0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "simulate",
        help="simulate one ion Coulomb crystal and write its fluorescence image (TIFF)",
        description="Simulate an ion Coulomb crystal (molecular dynamics, CCMD conventions) "
        "and write its rendered fluorescence image as a float32 TIFF whose metadata (JSON "
        "ImageDescription) holds every parameter. Lab units: V, MHz, µm, mK.",
    )
    p.add_argument("-o", "--output", required=True, type=Path, help="output TIFF file")
    p.add_argument("--positions", type=Path, help="also write final ion positions (CSV, µm)")
    p.add_argument(
        "-y",
        "--yes",
        action="store_true",
        help=f"run even when the MD is estimated at over {CONFIRM_ABOVE_S / 60:g} min",
    )
    p.add_argument(
        "--trap-info",
        type=Path,
        help="CCMD trap.info file: trap, ions, seed and image settings from it",
    )
    p.add_argument(
        "--ccmd-timing",
        action="store_true",
        help="with --trap-info: also the file's stepsPerPeriod, coolperiods and histperiods "
        "(default: ccount's converged schedule, far shorter; docs/PHYSICS.md)",
    )
    g = p.add_argument_group("trap and ions (defaults: the paper's trap, 300 Ca+)")
    g.add_argument("--ions", help='ion numbers per species, e.g. "Ca+:300,CaF+:50"')
    add_trap_flags(g, _DEFAULTS)
    s = p.add_argument_group("simulation")
    s.add_argument("--temperature-mk", type=float, help="bath temperature, mK (default 10)")
    s.add_argument("--seed", type=int, help="random seed (default 0, or the trap.info seed)")
    s.add_argument(
        "--mode",
        choices=("rf", "pseudo"),
        default="rf",
        help="full RF field with micromotion, or the pseudopotential (rf)",
    )
    s.add_argument("--gather-periods", type=int, help="RF periods of image gathering")
    s.add_argument("--samples", type=int, help="position snapshots for the image")
    i = p.add_argument_group("imaging (defaults: CCMD's)")
    i.add_argument("--pixel-um", type=float, help="pixel size in the object plane, µm (1)")
    i.add_argument("--rows", type=int, help="image rows (480)")
    i.add_argument("--cols", type=int, help="image columns, along the trap axis (640)")
    i.add_argument("--blur-um", type=float, help="blur radius (1/e) in focus, µm (5)")
    i.add_argument("--dof-um", type=float, help="depth of field, µm (50)")
    i.add_argument(
        "--focal-offset-um",
        type=float,
        default=0.0,
        help="focal plane offset along the line of sight, µm (0)",
    )
    i.add_argument(
        "--rotation-deg",
        type=float,
        default=0.0,
        help="counter-clockwise turn of the crystal in the image, degrees (0)",
    )
    i.add_argument(
        "--view-azimuth-deg",
        type=float,
        default=45.0,
        help="line of sight around the trap axis from y towards x, degrees (45 = CCMD's view)",
    )
    c = p.add_argument_group("camera (off unless --camera)")
    c.add_argument(
        "--camera",
        action="store_true",
        help="render camera counts with noise instead of the noise-free image",
    )
    c.add_argument(
        "--photons-per-ion",
        type=float,
        default=200.0,
        help="detected photons per in-focus ion per exposure (200)",
    )
    c.add_argument("--background", type=float, default=2.0, help="background photons per pixel (2)")
    c.add_argument("--em-gain", type=float, default=1.0, help="EMCCD gain, 1 = none (1)")
    c.add_argument("--read-noise", type=float, default=2.0, help="read noise, e- rms (2)")
    c.add_argument("--offset", type=float, default=100.0, help="bias, counts (100)")
    c.add_argument("--bit-depth", type=int, default=16, help="ADC bits (16)")
    p.set_defaults(func=run)


def parse_ions(text: str) -> list[tuple[str, int]]:
    """``"Ca+:300,CaF+:50"`` → ``[("Ca+", 300), ("CaF+", 50)]``; InputError when malformed
    or when a species is given twice (the image metadata holds one number per species)."""
    out: list[tuple[str, int]] = []
    for part in text.split(","):
        name, sep, number = part.strip().rpartition(":")
        if not sep or not name.strip():
            raise InputError(f"--ions: expected SPECIES:NUMBER, got {part.strip()!r}")
        try:
            count = int(number)
        except ValueError:
            raise InputError(
                f"--ions: number of {name.strip()} must be an integer, got {number!r}"
            ) from None
        if count < 0:
            raise InputError(f"--ions: number of {name.strip()} must not be negative ({count})")
        earlier = [n for s, n in out if s == name.strip()]
        if earlier:
            raise InputError(
                f"--ions: {name.strip()} is given twice ({earlier[0]} and {count}); give each "
                f"species once, e.g. {name.strip()}:{earlier[0] + count}"
            )
        out.append((name.strip(), count))
    return out


def _settings(args: argparse.Namespace) -> tuple[Any, list[Any], Any, Any, dict[str, Any]]:
    """Trap, ion groups, simulation and imaging settings from the flags (checked)."""
    from ccount_core.simulation import IonGroup, SimulationSettings, TrapSettings
    from ccount_core.simulation.render import CameraModel, ImagingSettings

    sim_kwargs: dict[str, Any] = {"mode": args.mode}
    if args.temperature_mk is not None:
        sim_kwargs["temperature"] = args.temperature_mk * 1e-3
    for name in ("gather_periods", "samples"):
        if getattr(args, name) is not None:
            sim_kwargs[name] = getattr(args, name)
    extra: dict[str, Any] = {}
    if args.trap_info is not None:
        refuse_beside_trap_info(args, _TRAP_FLAGS)
        from ccount_core.simulation.ccmd_config import ccmd_timing, load_trap_info

        cfg = load_trap_info(args.trap_info)
        trap, groups = cfg.trap, list(cfg.ions)
        sim = ccmd_timing(cfg.file, cfg.simulation) if args.ccmd_timing else cfg.simulation
        sim = dataclasses.replace(sim, **sim_kwargs)
        if not args.ccmd_timing:
            _say_timing_unused(cfg.file, sim)
        base_imaging = cfg.imaging
        extra["trap_info"] = str(args.trap_info)
    else:
        if args.ccmd_timing:
            raise InputError("--ccmd-timing: takes the timing from a --trap-info file; give one")
        vals = {
            f: getattr(args, f) if getattr(args, f) is not None else _DEFAULTS[f]
            for f in _TRAP_FLAGS
        }
        trap = TrapSettings.from_lab_units(
            v_rf=vals["v_rf"],
            v_end=vals["v_end"],
            eta=vals["eta"],
            r0_um=vals["r0_um"],
            z0_um=vals["z0_um"],
            rf_mhz=vals["rf_mhz"],
        )
        groups = [IonGroup(name, count) for name, count in parse_ions(vals["ions"])]
        sim = SimulationSettings(**sim_kwargs)
        base_imaging = ImagingSettings()
    if args.seed is not None:
        sim = dataclasses.replace(sim, seed=args.seed)
    camera = None
    if args.camera:
        camera = CameraModel(
            photons_per_ion=args.photons_per_ion,
            background=args.background,
            em_gain=args.em_gain,
            read_noise=args.read_noise,
            offset=args.offset,
            bit_depth=args.bit_depth,
        )
    lab = base_imaging.to_lab_units()
    imaging = ImagingSettings.from_lab_units(
        pixel_size_um=args.pixel_um if args.pixel_um is not None else lab["pixel_size_um"],
        shape=(
            args.rows if args.rows is not None else lab["shape"][0],
            args.cols if args.cols is not None else lab["shape"][1],
        ),
        blur_um=args.blur_um if args.blur_um is not None else lab["blur_um"],
        dof_um=args.dof_um if args.dof_um is not None else lab["dof_um"],
        focal_offset_um=args.focal_offset_um,
        rotation_deg=args.rotation_deg,
        view_azimuth_deg=args.view_azimuth_deg,
        camera=camera,
    )
    return trap, groups, sim, imaging, extra


def metadata(
    trap: Any,
    groups: list[Any],
    sim: Any,
    imaging: Any,
    info: dict[str, Any],
    extra: dict[str, Any],
) -> dict[str, Any]:
    """Every parameter of a run, in lab units, as plain JSON."""
    from ccount_core import __version__

    sim_dict = json.loads(json.dumps(dataclasses.asdict(sim), default=str))
    if "temperature" in sim_dict:  # K → mK at the interface
        sim_dict["temperature_mk"] = sim_dict.pop("temperature") * 1e3
    lab = trap.to_lab_units()
    return {
        "software": "ccount simulate",
        "ccount_version": __version__,
        "ions": {g.species.name: g.count for g in groups},
        "species": [
            {
                "name": g.species.name,
                "mass_u": g.species.mass_u,
                "charge": g.species.charge,
                "laser_cooled": g.species.laser_cooled,
            }
            for g in groups
        ],
        "trap": {"v_rf_V": lab.pop("v_rf"), "v_end_V": lab.pop("v_end"), **lab},
        "simulation": sim_dict,
        "imaging": imaging.to_lab_units(),
        "run": json.loads(json.dumps(info, default=float)),
        **extra,
    }


def write_positions(path: Path, result: Any) -> None:
    """Final positions as CSV (species, x_um, y_um, z_um), written atomically."""
    from ccount_core.files import atomic_path

    with atomic_path(path) as tmp, tmp.open("w") as fh:
        fh.write("species,x_um,y_um,z_um\n")
        for k, (x, y, z) in zip(result.species_index, result.positions * 1e6, strict=True):
            fh.write(f"{result.species[k].name},{x:.4f},{y:.4f},{z:.4f}\n")


def _say_timing_unused(ccmd: Any, sim: Any) -> None:
    """One line on stderr: the file's integrator timing is not used, ``sim``'s is, and why."""
    import sys

    from ccount_core.simulation.ccmd_config import timing_summary

    summary = timing_summary(ccmd)
    if not summary:
        return
    print(
        f"simulate: trap.info's timing ({summary}) is not used: ccount's converged schedule is "
        f"({sim.steps_per_period} steps per RF period, {sim.equilibrate_periods} + "
        f"{sim.gather_periods} RF periods; docs/PHYSICS.md section 5); "
        "pass --ccmd-timing to use the file's",
        file=sys.stderr,
    )


def md_seconds(trap: Any, groups: list[Any], sim: Any) -> float:
    """Estimated CPU seconds of the MD on one core: ion pairs × Coulomb evaluations (every
    relaxation iteration allowed, so an upper estimate) / ``PAIR_STEPS_PER_CPU_S``."""
    from ccount_core.simulation.simulate import schedule

    n = sum(g.count for g in groups)
    plan = schedule(trap, groups, sim)
    return n * (n - 1) / 2 * plan.total / PAIR_STEPS_PER_CPU_S


def _duration(seconds: float) -> str:
    """``seconds`` as "12 s", "34 min" or "5.6 h"."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def confirm_duration(n_ions: int, seconds: float, yes: bool, flag: str = "--ions") -> None:
    """Print the estimate; above ``CONFIRM_ABOVE_S`` go on only with ``yes`` or a "y" typed
    at a terminal, else raise InputError naming ``flag`` (where the ions came from) and the
    estimate."""
    import sys

    what = f"{n_ions} ions: the MD takes up to about {_duration(seconds)} on one core"
    if seconds <= CONFIRM_ABOVE_S or yes:
        print(f"simulate: {what}", file=sys.stderr)
        return
    if sys.stdin is not None and sys.stdin.isatty():
        if input(f"simulate: {what}; run it? [y/N] ").strip().lower() in ("y", "yes"):
            return
    raise InputError(f"{flag}: {what}; add --yes to run it")


def _check_writable(flag: str, path: Path | None) -> None:
    """Refuse, before the run, an output path that is a folder or lies inside a file."""
    if path is None:
        return
    if path.is_dir():
        raise InputError(f"{flag}: {path} is a folder; give a file name")
    parent = next((q for q in path.parents if q.exists()), None)
    if parent is not None and not parent.is_dir():
        raise InputError(f"{flag}: {parent} is a file, not a folder")


def run(args: argparse.Namespace) -> int:
    import sys

    from ccount_core.image.io import write_tiff
    from ccount_core.progress import tqdm_progress
    from ccount_core.simulation import simulate
    from ccount_core.simulation.simulate import validate

    if args.output.suffix.lower() not in (".tif", ".tiff"):
        raise InputError(f"--output: must end in .tif or .tiff, got {args.output.name!r}")
    for flag, path in (("--output", args.output), ("--positions", args.positions)):
        _check_writable(flag, path)
    trap, groups, sim, imaging, extra = _settings(args)
    validate(trap, groups)  # every check before the progress bar and the long run
    n_ions, flag = sum(g.count for g in groups), "--trap-info" if args.trap_info else "--ions"
    confirm_duration(n_ions, md_seconds(trap, groups, sim), args.yes, flag)
    with tqdm_progress("simulate", unit="step") as progress:
        result = simulate(trap, groups, sim, imaging, progress=progress)
    meta = metadata(trap, groups, sim, imaging, result.info, extra)
    write_tiff(args.output, result.image, pixel_size_um=imaging.pixel_size * 1e6, metadata=meta)
    if args.positions is not None:
        write_positions(args.positions, result)
    counts = ", ".join(f"{n} {s}" for s, n in meta["ions"].items())
    print(
        f"wrote {args.output} ({counts}; {result.info['timings']['total_s']:.1f} s)",
        file=sys.stderr,
    )
    return 0
