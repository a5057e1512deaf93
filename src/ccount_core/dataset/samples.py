"""Simulated sample data with known truth: a reaction time series and a single crystal.

The shipped files (``ccount_core/data/*.tif``, made by ``scripts/make_sample_data.py``) are
camera-like uint16 frames whose JSON metadata holds the pixel size, every simulation input and
the true ion numbers per frame; :func:`load_sample` reads them. :func:`reaction_series` and
:func:`single_crystal` make new ones.

The reaction series mimics Fig. 1(c) of the paper: a pure Ca+ crystal loses Ca+ to a reaction
whose lighter product ions (ND3+ by default) are dark and gather in the crystal's core, so the
fluorescing shell shrinks around a growing dark centre while the total ion number is conserved.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from importlib.resources import files
from typing import Any

import numpy as np

from ccount_core.checks import check_number
from ccount_core.errors import InputError
from ccount_core.progress import ProgressCallback, report
from ccount_core.simulation.render import CameraModel, ImagingSettings

SAMPLES = ("reaction_series", "single_crystal")

#: An EMCCD-like camera: gain 100, 10 e-/count, a weak background; peak crystal pixels of a
#: few hundred counts above a bias of 100 (typical of Ca+ crystal images).
SAMPLE_CAMERA = CameraModel(
    photons_per_ion=1500.0,
    background=3.0,
    em_gain=100.0,
    read_noise=20.0,
    electrons_per_count=10.0,
    offset=100.0,
    bit_depth=16,
)
#: 1.5 µm pixels, 256 × 400, crystal turned by 3° like a camera that is not quite level.
SAMPLE_IMAGING = ImagingSettings.from_lab_units(
    pixel_size_um=1.5, shape=(256, 400), rotation_deg=3.0, camera=SAMPLE_CAMERA
)


def _trap(trap: Any) -> Any:
    from ccount_core.simulation import TrapSettings

    return trap if trap is not None else TrapSettings.from_lab_units(v_rf=200.0, v_end=2.3375)


def reaction_numbers(n_initial: int, n_frames: int, decay_per_frame: float) -> list[int]:
    """Ca+ numbers per frame: ``round(n_initial · exp(−decay · frame))``."""
    return [round(n_initial * math.exp(-decay_per_frame * f)) for f in range(n_frames)]


def _simulate_frame(
    trap: Any, numbers: dict[str, int], imaging: ImagingSettings, simulation: Any, seed: int
) -> np.ndarray:
    from ccount_core.simulation import IonGroup, SimulationSettings, simulate

    sim = simulation if simulation is not None else SimulationSettings()
    sim = dataclasses.replace(sim, seed=seed)
    groups = [IonGroup(name, n) for name, n in numbers.items() if n > 0]
    return simulate(trap, groups, sim, imaging).image


def reaction_series(
    n_frames: int = 16,
    seed: int = 0,
    n_initial: int = 350,
    product: str = "ND3+",
    decay_per_frame: float = 0.08,
    frame_interval_s: float = 10.0,
    trap: Any = None,
    imaging: ImagingSettings = SAMPLE_IMAGING,
    simulation: Any = None,
    progress: ProgressCallback | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Simulate a reaction: Ca+ decays exponentially into dark ``product`` ions.

    Frame f holds ``round(n_initial e^{-decay f})`` Ca+ and the rest as ``product`` (total
    conserved), each frame an independent crystal (seed ``seed + f``) rendered with
    ``imaging`` (default: camera-like, :data:`SAMPLE_IMAGING`).

    Returns ``(stack, metadata)``: stack ``(F, rows, cols)`` float32 (counts with a camera);
    metadata with ``pixel_size_um``, ``frame_interval_s``, ``true_counts`` ({species: [F]}),
    and the trap, imaging and simulation inputs (lab units).
    """
    from ccount_core.simulation import get_species

    if not (isinstance(n_frames, int) and n_frames >= 1):
        raise InputError(f"n_frames: must be a positive integer, got {n_frames!r}")
    if not (isinstance(n_initial, int) and n_initial >= 1):
        raise InputError(f"n_initial: must be a positive integer, got {n_initial!r}")
    check_number("decay_per_frame", decay_per_frame, nonnegative=True, numpy_scalars=True)
    if get_species(product).laser_cooled:
        raise InputError(f"product: {product} is laser-cooled; the product must be dark")
    trap = _trap(trap)
    ca = reaction_numbers(n_initial, n_frames, decay_per_frame)
    truth = {"Ca+": ca, product: [n_initial - n for n in ca]}
    frames = []
    for f in range(n_frames):
        numbers = {"Ca+": truth["Ca+"][f], product: truth[product][f]}
        frames.append(_simulate_frame(trap, numbers, imaging, simulation, seed + f))
        report(progress, f + 1, n_frames)
    meta = _metadata(trap, imaging, simulation, seed, truth)
    meta.update(
        kind="reaction_series",
        frame_interval_s=frame_interval_s,
        decay_per_frame=decay_per_frame,
        product=product,
    )
    return np.stack(frames).astype(np.float32), meta


def single_crystal(
    numbers: dict[str, int] | None = None,
    seed: int = 0,
    trap: Any = None,
    imaging: ImagingSettings = SAMPLE_IMAGING,
    simulation: Any = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """One crystal (default 250 Ca+ around 40 dark ND3+) → ``(image (rows, cols) float32,
    metadata)``, metadata as in :func:`reaction_series` (true counts as one-element lists)."""
    numbers = dict(numbers) if numbers is not None else {"Ca+": 250, "ND3+": 40}
    trap = _trap(trap)
    image = _simulate_frame(trap, numbers, imaging, simulation, seed)
    meta = _metadata(trap, imaging, simulation, seed, {k: [v] for k, v in numbers.items()})
    meta["kind"] = "single_crystal"
    return image.astype(np.float32), meta


def _metadata(
    trap: Any, imaging: ImagingSettings, simulation: Any, seed: int, truth: dict[str, Sequence[int]]
) -> dict[str, Any]:
    from ccount_core import __version__
    from ccount_core.simulation import SimulationSettings

    sim = simulation if simulation is not None else SimulationSettings()
    sim_dict = json.loads(json.dumps(dataclasses.asdict(sim), default=str))
    if "temperature" in sim_dict:
        sim_dict["temperature_mk"] = sim_dict.pop("temperature") * 1e3
    sim_dict["seed"] = seed
    lab = trap.to_lab_units()
    return {
        "software": "ccount samples",
        "ccount_version": __version__,
        "pixel_size_um": imaging.to_lab_units()["pixel_size_um"],
        "true_counts": {k: [int(n) for n in v] for k, v in truth.items()},
        "trap": {"v_rf_V": lab.pop("v_rf"), "v_end_V": lab.pop("v_end"), **lab},
        "imaging": imaging.to_lab_units(),
        "simulation": sim_dict,
    }


def load_sample(name: str) -> tuple[np.ndarray, dict[str, Any]]:
    """A shipped sample: ``(stack (F, rows, cols) uint16, metadata dict)``.

    ``name`` is one of :data:`SAMPLES`. Metadata holds ``pixel_size_um``, ``true_counts``
    ({species: per-frame list}) and every simulation input.
    """
    import tifffile

    if name not in SAMPLES:
        raise InputError(f"sample: unknown sample {name!r} (known: {', '.join(SAMPLES)})")
    resource = files("ccount_core.data") / f"{name}.tif"
    if not resource.is_file():
        raise InputError(f"sample: {name}.tif is not installed (run scripts/make_sample_data.py)")
    with resource.open("rb") as fh, tifffile.TiffFile(fh) as tif:
        stack = tif.asarray()
        meta = json.loads(tif.pages[0].description)
    if stack.ndim == 2:
        stack = stack[None]
    return stack, meta
