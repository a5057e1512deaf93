"""How the default model's count degrades with pixel noise: the evidence for ``NOISE_LIMIT``.

Renders crystals of its own (pure Ca+ 30-350 in the paper's trap range, MD seeds 28001+, not
the robustness benchmark's 27001+ nor the training specs' 1-3) through cameras whose photons
per ion fall from sCMOS-like to a starved EMCCD, measures each frame's
:func:`ccount_core.image.preprocess.pixel_noise` and counts it with ``--model``. Prints,
per camera and per noise bin, the mean |error|, against the noiseless renders', and per camera
the share of frames whose truth lies within the reported ±1σ and ±2σ.

    python benchmarks/noise_sensitivity.py [--crystals 40] [--skip 0] [--model default]
        [--cache ~/.cache/ccount/noise]
"""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np

import robustness as rb  # this folder is on the path when run as a script
from ccount_core.image.ellipse import fit_ellipse
from ccount_core.image.preprocess import NOISE_LIMIT, pixel_noise
from ccount_core.nn.count import count_stack
from ccount_core.nn.ensemble import load_counter
from ccount_core.simulation.camera import CameraEffects

SET_SEED = 28
MD_SEED0 = 28_000
CAMERAS = {
    "noiseless": None,
    **{f"sCMOS {p} photons/ion": replace(rb.CAMERA, photons_per_ion=p) for p in (2000, 500, 200)},
    **{
        f"EMCCD gain 300, {p} photons/ion": replace(rb.EMCCD, photons_per_ion=p)
        for p in (1000, 300, 100)
    },
}


#: The cameras with pixel noise enough to fit on (``scripts/uncertainty_factors.py``'s
#: ``noise_n0``, ``scripts/camera_calibration.py``'s ``noise_b``): pixel noise 0.05-0.20.
FIT_CAMERAS = (
    "sCMOS 500 photons/ion",
    "sCMOS 200 photons/ion",
    "EMCCD gain 300, 1000 photons/ion",
    "EMCCD gain 300, 300 photons/ion",
    "EMCCD gain 300, 100 photons/ion",
)


def crystals(n: int) -> list[rb.Crystal]:
    """``n`` crystals drawn as the robustness benchmark draws its own, from other seeds."""
    return rb.draw_crystals(n, SET_SEED, MD_SEED0)


def camera_variant(name: str) -> rb.Variant:
    """Camera ``name`` of :data:`CAMERAS` as a robustness variant (exposure 0.6)."""
    return rb.Variant(name, camera=CAMERAS[name], effects=rb._fixed(CameraEffects(exposure=0.6)))


def main() -> None:
    args = rb.set_arguments(__doc__, 40, "noise")
    truth, samples = rb.chosen_set(args, crystals)
    counter = load_counter(args.model)
    noise_all, err_all = [], []
    for k, name in enumerate(CAMERAS):
        variant = camera_variant(name)
        stack = np.stack([rb.render_variant(s, variant, i, 100 + k) for i, s in enumerate(samples)])
        noise = np.array([pixel_noise(f, fit_ellipse(f)) for f in stack])
        rows = count_stack(stack, counter, variant.pixel_size_um, batch_size=16)
        err = np.array([100 * abs(r["count"] - t) / t for r, t in zip(rows, truth, strict=True)])
        pairs = zip(rows, truth, strict=True)
        z = np.array([abs(r["count"] - t) / r["uncertainty"] for r, t in pairs])  # in σ
        noise_all.append(noise)
        err_all.append(err)
        print(
            f"{name:32s} pixel noise {np.median(noise):.3f} ({noise.min():.3f}-{noise.max():.3f})"
            f"  mean |error| {err.mean():.2f} %"
            f"  ±1σ/±2σ {np.mean(z <= 1):.0%}/{np.mean(z <= 2):.0%}",
            flush=True,
        )
    noise, err = np.concatenate(noise_all), np.concatenate(err_all)
    print(f"by pixel noise (all cameras; NOISE_LIMIT = {NOISE_LIMIT}):")
    edges = [0.0, 1e-3, 0.03, 0.05, 0.06, 0.07, 0.08, 0.09, 0.1, 0.12, 0.15, 0.2, 1.0]
    for lo, hi in itertools.pairwise(edges):
        sel = (noise >= lo) & (noise < hi)
        if sel.any():
            print(
                f"  {lo:.3f}-{hi:.3f}: {sel.sum():3d} frames, mean |error| {err[sel].mean():.2f} %,"
                f" off by > 10 %: {(err[sel] > 10).sum()}"
            )


if __name__ == "__main__":
    main()
