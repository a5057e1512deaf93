"""The batched torch simulator against the Numba one on the CCMD reference rows, and its speed.

Geometry: the rows ``benchmarks/ccmd_geometry.py`` picks (pure Ca+, stratified over η × ion
number), each simulated with default ``SimulationSettings`` for several seeds by both paths,
rendered at CCMD's imaging (1 px/µm, blur 5 µm, dof 50 µm, 640 × 480) and measured as the
reference table was (``measure_crystal_size``). Prints per row CCMD's L/W, the mean L/W of
each path and the relative difference torch/Numba − 1, then the median |difference|.

Throughput: ``simulate_batch`` of ``--batch`` crystals of ``--ions`` Ca+ (default settings,
rendered at the training sets' imaging: 2 µm pixels, 240 × 320), images per hour on the
device given (CUDA when there is one).

    .venv/bin/python benchmarks/batch_simulator.py --rows 8 --seeds 3
    .venv/bin/python benchmarks/batch_simulator.py --throughput --ions 300 --batch 8
    .venv/bin/python benchmarks/batch_simulator.py --precision --ions 100 --batch 4
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ccmd_geometry import REFERENCE, pick_rows
from ccount_core.image.geometry import measure_crystal_size
from ccount_core.simulation import IonGroup, SimulationSettings, TrapSettings, simulate
from ccount_core.simulation.batch import CrystalSpec, simulate_batch
from ccount_core.simulation.render import ImagingSettings

CCMD_IMAGING = ImagingSettings()
TRAINING_IMAGING = ImagingSettings.from_lab_units(pixel_size_um=2.0, shape=(240, 320))


def _size(image: np.ndarray) -> tuple[float, float]:
    s = measure_crystal_size(image)
    return s.length_um, s.width_um


def geometry(n_rows: int, seeds: int, device: torch.device, dtype: torch.dtype | None) -> None:
    """Print L/W per row for CCMD, Numba and torch, and the torch/Numba differences."""
    rows = pick_rows(REFERENCE, n_rows)
    specs, numba_sizes = [], []
    t_numba = 0.0
    for row in rows:
        trap = TrapSettings.from_lab_units(v_rf=row["vrf"], v_end=row["vend"], eta=row["eta"])
        ions = [IonGroup("Ca+", int(row["n_ca"]))]
        for s in range(seeds):
            seed = 1000 * int(row["row"]) + s
            specs.append(CrystalSpec(trap, ions, seed=seed))
            t0 = time.process_time()
            result = simulate(trap, ions, SimulationSettings(seed=seed), CCMD_IMAGING)
            t_numba += time.process_time() - t0
            numba_sizes.append(_size(result.image))
    t0 = time.perf_counter()
    batch = simulate_batch(specs, None, CCMD_IMAGING, device=device, dtype=dtype)
    t_torch = time.perf_counter() - t0
    torch_sizes = [_size(im) for im in batch.images.cpu().numpy()]
    numba = np.array(numba_sizes).reshape(len(rows), seeds, 2)
    torched = np.array(torch_sizes).reshape(len(rows), seeds, 2)
    print(
        "row  eta   V_RF  V_end    N |  CCMD L    W |  Numba L    W (sd) |  torch L    W (sd)"
        " | dL %   dW %"
    )
    diffs = []
    for row, a, b in zip(rows, numba, torched, strict=True):
        ma, mb = a.mean(0), b.mean(0)
        sa, sb = (
            a.std(0, ddof=1) if seeds > 1 else 0 * ma,
            b.std(0, ddof=1) if seeds > 1 else 0 * mb,
        )
        d = mb / ma - 1
        diffs.append(d)
        print(
            f"{int(row['row']):4d} {row['eta']:4g} {row['vrf']:5g} {row['vend']:5g}"
            f" {int(row['n_ca']):4d} | {row['length_um']:6.1f} {row['width_um']:5.1f} |"
            f" {ma[0]:6.1f} {ma[1]:5.1f} ({sa[0]:.1f}, {sa[1]:.1f}) |"
            f" {mb[0]:6.1f} {mb[1]:5.1f} ({sb[0]:.1f}, {sb[1]:.1f}) |"
            f" {100 * d[0]:+5.2f} {100 * d[1]:+5.2f}"
        )
    med = np.median(np.abs(diffs), axis=0)
    mean = np.mean(diffs, axis=0)
    print(
        f"{len(rows)} rows x {seeds} seeds: median |torch/Numba - 1| length {100 * med[0]:.2f} %,"
        f" width {100 * med[1]:.2f} %; mean signed {100 * mean[0]:+.2f} %, {100 * mean[1]:+.2f} %"
    )
    print(
        f"Numba {t_numba:.1f} CPU-s in all; simulate_batch {t_torch:.1f} s wall on {device}"
        f" ({batch.positions.dtype})"
    )


def throughput(
    n_ions: int, batch_size: int, device: torch.device, dtype: torch.dtype | None
) -> None:
    """Time simulate_batch (render included) and print images per hour."""
    trap = TrapSettings.from_lab_units(v_rf=200.0, v_end=2.3375, eta=0.244)
    specs = [CrystalSpec(trap, [IonGroup("Ca+", n_ions)], seed=s) for s in range(batch_size)]
    simulate_batch(
        specs[:1],
        SimulationSettings(equilibrate_periods=1, gather_periods=1, samples=1),
        TRAINING_IMAGING,
        device=device,
        dtype=dtype,
    )  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    t0, c0 = time.perf_counter(), time.process_time()
    result = simulate_batch(specs, None, TRAINING_IMAGING, device=device, dtype=dtype)
    float(result.images.sum())  # waits for the device
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    memory = ""
    if device.type == "cuda":
        memory = f", peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB"
    print(
        f"simulate_batch: {batch_size} x {n_ions} Ca+ on {device} ({result.positions.dtype},"
        f" {torch.get_num_threads()} CPU threads): {wall:.1f} s wall ="
        f" {3600 * batch_size / wall:,.0f} images/hour, render included; {cpu / batch_size:.1f}"
        f" CPU-s per image{memory}"
    )


def precision(n_ions: int, crystals: int) -> None:
    """float32 against float64 on the CPU: the same crystals and noise at 0 and 10 mK; rms
    radial and axial sizes over the gathering and the largest final position difference."""
    trap = TrapSettings.from_lab_units(v_rf=200.0, v_end=2.3375, eta=0.244)
    specs = [CrystalSpec(trap, [IonGroup("Ca+", n_ions)], seed=s) for s in range(crystals)]
    for temperature in (0.0, 0.01):
        sizes, final = {}, {}
        for dtype in (torch.float64, torch.float32):
            settings = SimulationSettings(temperature=temperature)
            r = simulate_batch(specs, settings, dtype=dtype, keep_samples=True)
            smp = r.samples.double().numpy()
            radial = np.sqrt((smp[..., :2] ** 2).sum(-1).mean((1, 2))).mean()
            sizes[dtype] = (radial, np.sqrt((smp[..., 2] ** 2).mean((1, 2))).mean())
            final[dtype] = r.positions.double().numpy()
        (r64, z64), (r32, z32) = sizes[torch.float64], sizes[torch.float32]
        moved = np.abs(final[torch.float64] - final[torch.float32]).max()
        print(
            f"{1e3 * temperature:g} mK, {crystals} x {n_ions} Ca+: rms radial {1e6 * r64:.3f} µm"
            f" (float32 {r32 / r64 - 1:+.1e}), axial {1e6 * z64:.3f} µm ({z32 / z64 - 1:+.1e});"
            f" largest final position difference {1e6 * moved:.3g} µm"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=8, help="CCMD reference rows")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per row and path")
    parser.add_argument("--throughput", action="store_true", help="time simulate_batch only")
    parser.add_argument("--precision", action="store_true", help="float32 against float64")
    parser.add_argument("--ions", type=int, default=300)
    parser.add_argument("--batch", type=int, default=8, help="crystals per simulate_batch call")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=["float32", "float64"], help="default: per device")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype) if args.dtype else None
    if args.precision:
        precision(args.ions, args.batch)
    elif args.throughput:
        throughput(args.ions, args.batch, device, dtype)
    else:
        geometry(args.rows, args.seeds, device, dtype)


if __name__ == "__main__":
    main()
