"""Simulator benchmark (issue points 10 and 11): pair-force throughput, one 300-ion image cold
and warm, scaling with N, a batch on both cores, and image convergence with gathering time.

Run from the repository root:  nice -n 0 .venv/bin/python benchmarks/bench_simulator.py
(--quick for a smoke run). Prints a Markdown report to stdout. Wall times are the best of
``--repeats`` runs (the development machine is shared with other jobs).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import subprocess
import sys
import time

import numba
import numpy as np

from ccount_core.physics import IonGroup, SimulationSettings, TrapSettings, simulate
from ccount_core.physics.constants import COULOMB_K
from ccount_core.physics.forces import coulomb_accel, pair_chunks
from ccount_core.render import ImagingSettings, render

TRAP = TrapSettings.from_lab_units(v_rf=200.0, v_end=2.3375, eta=0.244)


def pair_throughput(n: int, threads: int, repeats: int) -> float:
    """Pairs per second of one Coulomb evaluation for n ions (best of repeats)."""
    rng = np.random.default_rng(0)
    pos = rng.uniform(-1e-4, 1e-4, (3, n))
    ones = np.ones(n)
    bounds = pair_chunks(n, 16 if n >= 64 else 1)
    buf = np.zeros((len(bounds) - 1, 3, n))
    acc = np.zeros((3, n))
    numba.set_num_threads(threads)
    coulomb_accel(pos, ones, ones, COULOMB_K, bounds, buf, acc)
    calls = max(1, int(2e7 / n**2))
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            coulomb_accel(pos, ones, ones, COULOMB_K, bounds, buf, acc)
        best = min(best, (time.perf_counter() - t0) / calls)
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    return n * (n - 1) / 2 / best


def one_image(n: int, seed: int = 1, threads: int = 0) -> tuple[float, dict]:
    """Wall time (s) of one complete crystal image (simulation + render) and its info."""
    t0 = time.perf_counter()
    res = simulate(
        TRAP,
        [IonGroup("Ca+", n)],
        SimulationSettings(seed=seed, threads=threads),
        ImagingSettings(),
    )
    return time.perf_counter() - t0, res.info


COLD = (
    "import time; t0 = time.perf_counter()\n"
    "from ccount_core.physics import IonGroup, SimulationSettings, TrapSettings, simulate\n"
    "from ccount_core.render import ImagingSettings\n"
    "t1 = time.perf_counter()\n"
    "trap = TrapSettings.from_lab_units(v_rf=200.0, v_end=2.3375, eta=0.244)\n"
    "res = simulate(trap, [IonGroup('Ca+', 300)], SimulationSettings(seed=1), ImagingSettings())\n"
    "t2 = time.perf_counter()\n"
    "print(t1 - t0, t2 - t1)\n"
)


def cold_start(repeats: int) -> tuple[float, float, float]:
    """(process wall time, import time, simulate+render time) of a fresh interpreter, best."""
    best = (np.inf, np.inf, np.inf)
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", COLD], capture_output=True, text=True, check=True
        )
        wall = time.perf_counter() - t0
        imp, run = (float(v) for v in out.stdout.split())
        if wall < best[0]:
            best = (wall, imp, run)
    return best


def _batch_worker(seed: int) -> float:
    return one_image(300, seed=seed, threads=1)[0]


def batch(n_crystals: int) -> dict[str, float]:
    """Crystals per second for a batch of 300-ion images: one process with 1 and with 2
    Numba threads, and two processes with one thread each."""
    out = {}
    for threads in (1, 2):
        t0 = time.perf_counter()
        for s in range(n_crystals):
            one_image(300, seed=100 + s, threads=threads)
        out[f"1 process, {threads} thread(s)"] = n_crystals / (time.perf_counter() - t0)
    ctx = mp.get_context("spawn")
    with ctx.Pool(2) as pool:
        pool.map(_batch_worker, [0, 1])  # warm both workers (imports, cache loads)
        t0 = time.perf_counter()
        pool.map(_batch_worker, range(200, 200 + n_crystals))
        out["2 processes, 1 thread each"] = n_crystals / (time.perf_counter() - t0)
    return out


def convergence(n: int, gathers: list[int], seed: int = 3) -> list[tuple[int, float, float]]:
    """Image change when doubling the gathering time, on one trajectory: the image from the
    first G RF periods against the image from all 2G. Returns (G, relative L1, relative L2)."""
    imaging = ImagingSettings()
    rows = []
    for g in gathers:
        s = max(50, g)  # one snapshot per RF period, at least 50
        res = simulate(
            TRAP,
            [IonGroup("Ca+", n)],
            SimulationSettings(seed=seed, gather_periods=2 * g, samples=2 * s),
        )
        lit = res.fluorescing
        half = render(res.samples[:s], lit, imaging)
        full = render(res.samples, lit, imaging)
        d = half.astype(np.float64) - full
        rows.append(
            (
                g,
                np.abs(d).sum() / np.abs(full).sum(),
                np.sqrt((d**2).sum() / (full.astype(np.float64) ** 2).sum()),
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()
    quick = args.quick
    rep = 1 if quick else args.repeats
    fig: dict = {
        "machine": platform.processor() or platform.machine(),
        "numba_threads": numba.config.NUMBA_NUM_THREADS,
    }

    one_image(50)  # load the Numba cache and warm the renderer
    print("## pair-force throughput (pairs/s, one Coulomb evaluation)\n")
    print("| N | 1 thread | 2 threads |\n|---|---|---|")
    fig["pairs_per_s"] = {}
    for n in (100, 300, 1000):
        p1, p2 = pair_throughput(n, 1, rep), pair_throughput(n, 2, rep)
        fig["pairs_per_s"][n] = (p1, p2)
        print(f"| {n} | {p1:.3g} | {p2:.3g} |")

    print("\n## one 300-ion crystal image (simulation + render, default settings)\n")
    wall, imp, run = cold_start(1 if quick else 2)
    warm = min(one_image(300, seed=1)[0] for _ in range(rep))
    info = one_image(300, seed=1)[1]
    fig["image_300"] = {
        "cold_process_s": wall,
        "cold_import_s": imp,
        "cold_run_s": run,
        "warm_s": warm,
        "info": info,
    }
    print(
        f"- cold process (new interpreter, Numba cache on disk): {wall:.2f} s "
        f"(import {imp:.2f} s, simulate+render {run:.2f} s)"
    )
    print(f"- warm (same process, best of {rep}): {warm:.2f} s")
    print(
        f"- steps: {info['steps']}, dt {info['dt_s'] * 1e9:.1f} ns, "
        f"{info['rf_periods']:.0f} RF periods in the RF field; phases (s): "
        + ", ".join(f"{k} {v:.2f}" for k, v in info["timings"].items())
    )

    print("\n## scaling (warm wall time per image, s)\n")
    print("| N | wall s | Coulomb pairs x steps / s |\n|---|---|---|")
    fig["scaling"] = {}
    for n in (50, 100, 200, 300, 500) if quick else (50, 100, 200, 300, 500, 700, 1000):
        t, inf = min((one_image(n) for _ in range(1 if n > 300 else rep)), key=lambda r: r[0])
        steps = sum(inf["steps"].values())
        fig["scaling"][n] = t
        print(f"| {n} | {t:.2f} | {n * (n - 1) / 2 * steps / t:.3g} |")

    print("\n## batch of 300-ion images (crystals per second)\n")
    b = batch(2 if quick else 6)
    fig["batch"] = b
    for k, v in b.items():
        print(f"- {k}: {v:.3f} crystals/s")

    print("\n## convergence: image change when doubling the gathering time (300 ions)\n")
    print("| G (RF periods) | rel. L1 change G -> 2G | rel. L2 change |\n|---|---|---|")
    rows = convergence(300, [25, 50, 100] if quick else [25, 50, 100, 200, 400])
    fig["convergence"] = rows
    for g, l1, l2 in rows:
        print(f"| {g} | {100 * l1:.2f}% | {100 * l2:.2f}% |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(fig, f, indent=1, default=str)


if __name__ == "__main__":
    main()
