"""Data-set generation throughput: images per second against ion number, 1 and 2 workers.

For each ion number N, worker count W and renders-per-MD-run R, a spec of ``--runs`` MD runs
(V_RF 200/240 V x V_end 2/3 V x η 0.244/0.3, CCMD's 640 x 480 imaging, the simulator's default
settings) is generated into a fresh store on a warm LocalCluster (workers started and Numba's
cache loaded before the clock starts; the cluster start is reported separately). Each case is
repeated and the best wall time kept (the development machine is shared). The script then
extrapolates the wall time of a 10,000-image set with N uniform over the paper's 30..350 grid.

    .venv/bin/python benchmarks/bench_dataset.py            # full table (a few minutes)
    .venv/bin/python benchmarks/bench_dataset.py --quick    # N = 30, 350 only
    .venv/bin/python benchmarks/bench_dataset.py --mix 60   # 60 random runs of the 10k-set mix

``--mix K`` measures the target set directly instead: K MD runs drawn at random (N 30..350,
V_RF 170..300 V, V_end 1.5..3.5 V, η 0.240..0.355, the paper's ranges) with 4 renders each
(focal offsets 0, ±15, 30 µm), through ``generate`` with its default LocalCluster (all cores,
cluster start included), and scales the wall and CPU time to 10,000 images.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from ccount_core.dataset import generate, open_dataset


def spec_for(n_ions: int, renders: int, runs: int) -> dict:
    """``runs`` (4 or 8) MD runs of ``n_ions`` Ca+, each rendered at ``renders`` focal offsets."""
    if runs not in (4, 8):
        raise SystemExit("--runs must be 4 or 8")
    return {
        "name": f"bench-{n_ions}",
        "parameters": {
            "n_ions": [n_ions],
            "v_rf": [200, 240],
            "v_end": [2.0, 3.0],
            "eta": [0.244, 0.3][: runs // 4],
            "seeds": [1],
        },
        "renders": {"focal_offset_um": [0.0, 15.0, -15.0, 30.0, -30.0, 45.0][:renders]},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-ions", type=int, nargs="+", default=[30, 100, 200, 350])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--renders", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--runs", type=int, default=8, help="MD runs per case (4 or 8)")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument(
        "--mix",
        type=int,
        default=0,
        metavar="K",
        help="measure K random MD runs of the 10k-set mix instead",
    )
    args = ap.parse_args()
    if args.mix:
        mix(args.mix)
        return
    if args.quick:
        args.n_ions, args.repeat = [30, 350], 1
    from distributed import Client, LocalCluster

    tmp = Path(tempfile.mkdtemp(prefix="bench_dataset_"))
    rows = []  # (W, R, N, best wall, MD s/run, render s/image, images, CPU s/image)
    try:
        for w in args.workers:
            t0 = time.perf_counter()
            cluster = LocalCluster(
                n_workers=w,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                silence_logs=logging.ERROR,
                env={"NUMBA_NUM_THREADS": "1"},
            )
            client = Client(cluster)
            warm = spec_for(20, 1, 4)
            generate(warm, tmp / "warm.zarr", client=client)  # numba cache into every worker
            print(
                f"workers={w}: cluster start + warm-up {time.perf_counter() - t0:.1f} s", flush=True
            )
            for r in args.renders:
                for n in args.n_ions:
                    best, cpu = np.inf, np.inf
                    for k in range(args.repeat):
                        out = tmp / f"w{w}-r{r}-n{n}-{k}.zarr"
                        s = generate(spec_for(n, r, args.runs), out, client=client)
                        best = min(best, s.seconds)
                        ds = open_dataset(out)
                        md = float(np.median(ds.table["md_seconds"]))
                        ren = float(np.median(ds.table["render_seconds"]))
                        cpu = min(cpu, float(np.mean(ds.table["cpu_seconds"])))
                        shutil.rmtree(out)
                    rows.append((w, r, n, best, md, ren, s.n_rows, cpu))
                    print(
                        f"W={w} R={r} N={n:4d}: {s.n_rows} images in {best:6.2f} s = "
                        f"{s.n_rows / best:6.2f} img/s (MD {md:.2f} s/run, render "
                        f"{ren:.3f} s/img, CPU {cpu:.3f} s/img)",
                        flush=True,
                    )
            client.close()
            cluster.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(
        "\n| workers | renders/MD run | N ions | images/s (wall) | MD s/run | render s/image "
        "| CPU s/image |"
    )
    print("|---|---|---|---|---|---|---|")
    for w, r, n, best, md, ren, n_img, cpu in rows:
        print(f"| {w} | {r} | {n} | {n_img / best:.2f} | {md:.2f} | {ren:.3f} | {cpu:.3f} |")
    grid = np.arange(30, 351, 10)
    print("\n10,000 images, N uniform over 30..350 (step 10), interpolated linearly in N:")
    for w in args.workers:
        for r in args.renders:
            sel = [
                (n, best / n_img, cpu)
                for ww, rr, n, best, _, _, n_img, cpu in rows
                if ww == w and rr == r
            ]
            if len(sel) < 2:
                continue
            ns, wall, cpu = np.array(sel).T
            wall_h = 10_000 * float(np.mean(np.interp(grid, ns, wall))) / 3600
            cpu_h = 10_000 * float(np.mean(np.interp(grid, ns, cpu))) / 3600
            print(
                f"  workers={w}, {r} render(s)/MD run: measured wall {wall_h:.2f} h; "
                f"CPU {cpu_h:.2f} core-h = {cpu_h / w:.2f} h on {w} dedicated core(s)"
            )


def mix(k: int, renders: int = 4) -> None:
    """Generate K random MD runs of the paper's ranges x ``renders`` images; scale to 10k."""
    spec = {
        "name": "bench-mix",
        "seed": 1,
        "parameters": {
            "sampling": "random",
            "n_samples": k,
            "n_ions": {"min": 30, "max": 350},
            "v_rf": {"min": 170, "max": 300},
            "v_end": {"min": 1.5, "max": 3.5},
            "eta": {"min": 0.24, "max": 0.355},
            "seeds": [1],
        },
        "renders": {"focal_offset_um": [0.0, 15.0, -15.0, 30.0][:renders]},
    }
    tmp = Path(tempfile.mkdtemp(prefix="bench_dataset_mix_"))
    try:
        s = generate(spec, tmp / "mix.zarr")
        ds = open_dataset(tmp / "mix.zarr")
        cpu = float(ds.table["cpu_seconds"].sum())
        n = ds.table["n_Ca+"][::renders]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"{s.n_rows} images ({k} MD runs, N {n.min()}..{n.max()}, mean {n.mean():.0f}) in "
        f"{s.seconds:.1f} s wall = {s.n_rows / s.seconds:.2f} img/s; worker CPU {cpu:.1f} s "
        f"= {cpu / s.n_rows:.3f} s/img"
    )
    print(
        f"10,000 images: {10_000 / (s.n_rows / s.seconds) / 3600:.2f} h at the measured rate; "
        f"{10_000 * cpu / s.n_rows / 3600:.2f} core-h of CPU"
    )


if __name__ == "__main__":
    main()
