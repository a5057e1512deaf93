"""Speed of the preprocessing pipeline on 512 x 512 frames (issue 4, point 6).

Renders a few distinct synthetic crystals (noise SNR 3, hot pixels, background gradient),
cycles them into a stack and times ``prepare_stack`` (ellipse fit + full pipeline) on numpy
and on dask (threads), and ``fit_ellipse`` alone. Reports the best of ``--repeats`` runs, in
frames per second: by the wall clock, and per CPU-second used by this process (the
machine is shared, so the second figure is the steadier one).

    .venv/bin/python benchmarks/bench_preprocess.py [--frames 300] [--repeats 5]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "core" / "image"))
from synthetic_crystals import synthetic_crystal

from ccount_core.image.preprocess import PreprocessConfig, fit_ellipse, prepare_stack
from ccount_core.nn.model import default_model_path, read_card


def make_stack(n_frames: int, n_distinct: int = 8) -> np.ndarray:
    """``(n_frames, 512, 512)`` uint16 camera-like frames cycling ``n_distinct`` crystals."""
    frames = []
    for i in range(n_distinct):
        img, _ = synthetic_crystal(
            shape=(512, 512),
            center=(256.0 + 5 * i, 250.0 - 3 * i),
            a_t=150.0 - 4 * i,
            a_r=85.0 - 2 * i,
            angle_deg=-6.0 + 2 * i,
            spacing=13.0,
            spot_sigma=2.4,
            depth_of_field=18.0,
            snr=3.0,
            hot_pixels=200,
            gradient=0.3,
            seed=i,
            offset=300.0,
        )
        frames.append(np.clip(img, 0, 65535).astype(np.uint16))
    return np.stack([frames[i % n_distinct] for i in range(n_frames)])


def best_fps(fn, n: int, repeats: int) -> tuple[float, float]:
    """Best (wall-clock frames/s, frames per CPU-second of this process) over ``repeats``."""
    wall = cpu = float("inf")
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall = min(wall, time.perf_counter() - t0)
        cpu = min(cpu, time.process_time() - c0)
    return n / wall, n / cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    stack = make_stack(args.frames)
    n = args.frames
    cases = {
        "fit_ellipse only": lambda: [fit_ellipse(f) for f in stack],
    }
    card = PreprocessConfig.from_dict(read_card(default_model_path())["preprocess"])
    configs = {
        "default, camera 3 um/px (no resampling)": (PreprocessConfig(), 3.0),
        "default, camera 1.5 um/px (2x shrink)": (PreprocessConfig(), 1.5),
        "default + enhancement A=1": (PreprocessConfig(enhance_amplitude=1.0), 3.0),
        "default + symmetry refinement": (PreprocessConfig(symmetry_refine=True), 3.0),
        "shipped default card, camera 3 um/px": (card, 3.0),
        "shipped default card, no beam flattening": (
            dataclasses.replace(card, beam_reference=None),
            3.0,
        ),
    }
    for name, (cfg, cam) in configs.items():
        cases[f"prepare_stack numpy, {name}"] = lambda cfg=cfg, cam=cam: prepare_stack(
            stack, cfg, camera_pixel_size_um=cam
        )
    import dask.array as da

    lazy = da.from_array(stack, chunks=(16, -1, -1))
    cases["prepare_stack dask (2 threads), default, camera 3 um/px"] = lambda: prepare_stack(
        lazy, PreprocessConfig(), camera_pixel_size_um=3.0
    ).images.compute(scheduler="threads", num_workers=2)
    prepare_stack(stack[:4], PreprocessConfig(), camera_pixel_size_um=3.0)  # warm-up
    out = prepare_stack(stack[:8], PreprocessConfig(), camera_pixel_size_um=3.0)
    assert not out.bad_frames, out.bad_frames
    print(
        f"{n} frames of 512 x 512 uint16, best of {args.repeats}; frames/s by the wall "
        "clock and per CPU-second of this process (less disturbed by other jobs)"
    )
    for name, fn in cases.items():
        wall, cpu = best_fps(fn, n, args.repeats)
        print(f"{name:62s} {wall:7.1f} wall  {cpu:7.1f} per CPU-s")


if __name__ == "__main__":
    main()
