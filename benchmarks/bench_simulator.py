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
import os
import platform
import resource
import subprocess
import sys
import time

import numba
import numpy as np

from ccount_core.simulation import IonGroup, SimulationSettings, TrapSettings, simulate
from ccount_core.simulation.constants import COULOMB_K
from ccount_core.simulation.forces import CoulombSum, coulomb_accel, pair_chunks
from ccount_core.simulation.render import ImagingSettings, render

TRAP = TrapSettings.from_lab_units(v_rf=200.0, v_end=2.3375, eta=0.244)


def pair_throughput(n: int, threads: int, repeats: int) -> tuple[float, float]:
    """Pairs per second of one Coulomb evaluation for n ions, best of repeats, by wall clock
    and by process CPU time (CPU time is what an idle machine would show as wall time for one
    thread; with two threads it counts both)."""
    rng = np.random.default_rng(0)
    pos = rng.uniform(-1e-4, 1e-4, (3, n))
    ones = np.ones(n)
    bounds = pair_chunks(n, 16 if n >= 64 else 1)
    coulomb = CoulombSum(
        charge_over_mass=ones,
        charge=ones,
        kc=COULOMB_K,
        bounds=bounds,
        buf=np.zeros((len(bounds) - 1, 3, n)),
    )
    acc = np.zeros((3, n))
    numba.set_num_threads(threads)
    coulomb_accel(pos, coulomb, acc)
    calls = max(1, int(2e7 / n**2))
    best = cpu = np.inf
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(calls):
            coulomb_accel(pos, coulomb, acc)
        best = min(best, (time.perf_counter() - t0) / calls)
        cpu = min(cpu, (time.process_time() - c0) / calls)
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    pairs = n * (n - 1) / 2
    return pairs / best, pairs / cpu


def one_image(n: int, seed: int = 1, threads: int = 1) -> tuple[float, float, dict]:
    """Wall and process CPU time (s) of one complete crystal image (simulation + render), and
    the run's info."""
    t0, c0 = time.perf_counter(), time.process_time()
    res = simulate(
        TRAP,
        [IonGroup("Ca+", n)],
        SimulationSettings(seed=seed, threads=threads),
        ImagingSettings(),
    )
    return time.perf_counter() - t0, time.process_time() - c0, res.info


COLD = (
    "import time; t0 = time.perf_counter()\n"
    "from ccount_core.simulation import IonGroup, SimulationSettings, TrapSettings, simulate\n"
    "from ccount_core.simulation.render import ImagingSettings\n"
    "t1 = time.perf_counter()\n"
    "trap = TrapSettings.from_lab_units(v_rf=200.0, v_end=2.3375, eta=0.244)\n"
    "res = simulate(trap, [IonGroup('Ca+', 300)], SimulationSettings(seed=1), ImagingSettings())\n"
    "t2 = time.perf_counter()\n"
    "print(t1 - t0, t2 - t1)\n"
)


def cold_start(repeats: int) -> tuple[float, float, float, float]:
    """(process wall time, import time, simulate+render time, child CPU time) of a fresh
    interpreter, best of repeats."""
    best = (np.inf, np.inf, np.inf, np.inf)
    for _ in range(repeats):
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", COLD], capture_output=True, text=True, check=True
        )
        wall = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime
        imp, run = (float(v) for v in out.stdout.split())
        if wall < best[0]:
            best = (wall, imp, run, cpu)
    return best


def _batch_worker(seed: int) -> float:
    return one_image(300, seed=seed, threads=1)[1]


def batch(n_crystals: int) -> dict[str, float]:
    """(crystals per second by wall clock, CPU s per crystal) for a batch of 300-ion images:
    one process with 1 and with 2 Numba threads, and two processes with one thread each."""
    out = {}
    for threads in (1, 2):
        t0, c0 = time.perf_counter(), time.process_time()
        for s in range(n_crystals):
            one_image(300, seed=100 + s, threads=threads)
        out[f"1 process, {threads} thread(s)"] = (
            n_crystals / (time.perf_counter() - t0),
            (time.process_time() - c0) / n_crystals,
        )
    ctx = mp.get_context("spawn")
    with ctx.Pool(2) as pool:
        pool.map(_batch_worker, [0, 1])  # warm both workers (imports, cache loads)
        t0 = time.perf_counter()
        cpus = pool.map(_batch_worker, range(200, 200 + n_crystals))
        out["2 processes, 1 thread each"] = (
            n_crystals / (time.perf_counter() - t0),
            float(np.mean(cpus)),
        )
    return out


def _l1(a: np.ndarray, b: np.ndarray) -> float:
    """Relative L1 difference sum|a - b| / sum|b| of two images."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(np.abs(a - b).sum() / np.abs(b).sum())


def convergence(
    n: int, temperatures: list[float], gathers: list[int], samples: int = 200, seed: int = 3
) -> list[tuple[float, int, float]]:
    """Image change when doubling the gathering time, on one trajectory: the image from the
    first G RF periods against the image from all 2G (``samples`` snapshots per G).
    Returns (temperature K, G, relative L1 change)."""
    imaging = ImagingSettings()
    rows = []
    for temp in temperatures:
        for g in gathers:
            res = simulate(
                TRAP,
                [IonGroup("Ca+", n)],
                SimulationSettings(
                    seed=seed, temperature=temp, gather_periods=2 * g, samples=2 * samples
                ),
            )
            half = render(res.samples[:samples], res.fluorescing, imaging)
            full = render(res.samples, res.fluorescing, imaging)
            rows.append((temp, g, _l1(half, full)))
    return rows


def seed_to_seed(n: int, temperatures: list[float], gather: int) -> list[tuple[float, float]]:
    """Relative L1 difference between the images of two runs that differ only in the seed
    (G = ``gather`` RF periods): how much a single finite-time image (CCMD's too) varies."""
    imaging = ImagingSettings()
    out = []
    for temp in temperatures:
        imgs = [
            simulate(
                TRAP,
                [IonGroup("Ca+", n)],
                SimulationSettings(seed=s, temperature=temp, gather_periods=gather),
                imaging,
            ).image
            for s in (11, 12)
        ]
        out.append((temp, _l1(imgs[0], imgs[1])))
    return out


def scheme_check(n: int = 150) -> list[tuple[float, float, str, np.ndarray]]:
    """Crystal sizes of the default scheme (and two cheaper variants) against a reference run
    entirely in the RF field (lattice start, 40 Coulomb steps and 5 trap sub-steps per RF
    period, 800 + 1600 RF periods, 800 snapshots). Returns (V_RF, q, scheme, relative
    deviation of rms x, rms y, rms z, mean half-length)."""
    from ccount_core.simulation import get_species

    schemes = {
        "reference (full RF)": dict(
            steps_per_period=40,
            trap_substeps=5,
            relax_steps=0,
            equilibrate_periods=800,
            gather_periods=1600,
            samples=800,
        ),
        "default": {},
        "no trap sub-steps, T_RF/20": dict(steps_per_period=20, trap_substeps=1),
        "pseudopotential mode": dict(mode="pseudo"),
    }
    rows = []
    for v_rf, v_end in ((200.0, 2.3375), (550.0, 6.0)):
        trap = TrapSettings.from_lab_units(v_rf=v_rf, v_end=v_end)
        q = trap.mathieu(get_species("Ca+"))[1]
        ref = None
        for name, kw in schemes.items():
            res = simulate(trap, [IonGroup("Ca+", n)], SimulationSettings(seed=2, **kw))
            s = res.samples
            sizes = np.append(np.sqrt((s**2).mean(axis=(0, 1))), np.abs(s[..., 2]).max(1).mean())
            ref = sizes if ref is None else ref
            rows.append((v_rf, q, name, sizes / ref - 1))
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
        "load_average_start": os.getloadavg(),
    }
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores\n")

    one_image(50)  # load the Numba cache and warm the renderer
    print("## pair-force throughput (pairs/s, one Coulomb evaluation)\n")
    print("| N | 1 thread, wall | 1 thread, per CPU s | 2 threads, wall |\n|---|---|---|---|")
    fig["pairs_per_s"] = {}
    for n in (100, 300, 1000):
        (w1, c1), (w2, _) = pair_throughput(n, 1, rep), pair_throughput(n, 2, rep)
        fig["pairs_per_s"][n] = (w1, c1, w2)
        print(f"| {n} | {w1:.3g} | {c1:.3g} | {w2:.3g} |")

    print("\n## one 300-ion crystal image (simulation + render, default settings)\n")
    wall, imp, run, cpu = cold_start(1 if quick else 2)
    runs = [one_image(300, seed=1) for _ in range(rep)]
    warm, warm_cpu = min(r[0] for r in runs), min(r[1] for r in runs)
    info = runs[-1][2]
    fig["image_300"] = {
        "cold_process_s": wall,
        "cold_import_s": imp,
        "cold_run_s": run,
        "cold_cpu_s": cpu,
        "warm_s": warm,
        "warm_cpu_s": warm_cpu,
        "info": info,
    }
    print(
        f"- cold process (new interpreter, Numba cache on disk): {wall:.2f} s wall, "
        f"{cpu:.2f} s CPU (import {imp:.2f} s, simulate+render {run:.2f} s wall)"
    )
    print(f"- warm (same process, best of {rep}): {warm:.2f} s wall, {warm_cpu:.2f} s CPU")
    print(
        f"- steps: {info['steps']}, dt {info['dt_s'] * 1e9:.1f} ns, "
        f"{info['rf_periods']:.0f} RF periods in the RF field; phases (s): "
        + ", ".join(f"{k} {v:.2f}" for k, v in info["timings"].items())
    )

    print("\n## scaling (warm wall time per image, s)\n")
    print("| N | wall s | CPU s | pairs x steps per CPU s |\n|---|---|---|---|")
    fig["scaling"] = {}
    for n in (50, 100, 200, 300, 500) if quick else (50, 100, 200, 300, 500, 700, 1000):
        runs = [one_image(n) for _ in range(1 if n > 300 else rep)]
        t, c = min(r[0] for r in runs), min(r[1] for r in runs)
        steps = sum(runs[0][2]["steps"].values())
        fig["scaling"][n] = (t, c)
        print(f"| {n} | {t:.2f} | {c:.2f} | {n * (n - 1) / 2 * steps / c:.3g} |")

    print("\n## batch of 300-ion images (crystals per second)\n")
    b = batch(2 if quick else 6)
    fig["batch"] = b
    for k, (rate, cpu) in b.items():
        print(f"- {k}: {rate:.3f} crystals/s wall, {cpu:.2f} CPU s per crystal")

    print("\n## convergence: image change when doubling the gathering time (300 ions)\n")
    temps = [0.0, 0.001, 0.01]
    gathers = [50, 100, 200] if quick else [50, 100, 200, 400]
    rows = convergence(300, temps, gathers)
    fig["convergence"] = rows
    print("| T (mK) | " + " | ".join(f"G={g} -> {2 * g}" for g in gathers) + " |")
    print("|---" * (len(gathers) + 1) + "|")
    for temp in temps:
        cells = [f"{100 * c:.2f}%" for t, _, c in rows if t == temp]
        print(f"| {temp * 1e3:g} | " + " | ".join(cells) + " |")
    g_seed = 200 if quick else 1000
    print(f"\nseed-to-seed image difference at G = {g_seed} RF periods (CCMD-like length):\n")
    fig["seed_to_seed"] = seed_to_seed(300, temps, g_seed)
    for temp, d in fig["seed_to_seed"]:
        print(f"- T = {temp * 1e3:g} mK: {100 * d:.2f}%")
    print("\n## scheme against a long full-RF reference (150 Ca+, deviation of sizes)\n")
    print("| V_RF (q) | scheme | rms x | rms y | rms z | half-length |\n|---|---|---|---|---|---|")
    fig["scheme_check"] = []
    for v_rf, q, name, dev in scheme_check():
        fig["scheme_check"].append((v_rf, q, name, dev.tolist()))
        cells = " | ".join(f"{100 * d:+.2f}%" for d in dev)
        print(f"| {v_rf:g} V ({q:.2f}) | {name} | {cells} |")

    fig["load_average_end"] = os.getloadavg()
    print(f"\nload average at end: {os.getloadavg()[0]:.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(fig, f, indent=1, default=str)


if __name__ == "__main__":
    main()
