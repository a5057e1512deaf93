"""Fit a model card's ``camera_calibration`` (``ccount_core.nn.calibration``): how much lower
or higher the model counts a crystal through a camera with pixel noise, or a PSF with wide
wings, than through a clean one, and write it into the card (the weights are not touched).

Each term is fitted on ``--crystals`` crystals of a benchmark's own set (neither the training
sets' nor the robustness benchmark's seeds), each rendered clean and with the imperfection;
a frame's count over its clean twin's, against the frame's measure of the imperfection (as
counting reads it), gives the exponent (``fit_exponent``); counting divides by it. Pairing
each frame with its own clean twin keeps the model's other errors out of the fit.

- ``noise_b`` (count ratio = exp(b·noise²)): ``benchmarks/noise_sensitivity.py``'s crystals
  (MD seeds 28001+) through each of its ``FIT_CAMERAS`` (sCMOS 500 and 200 photons an ion, an
  EMCCD at gain 300 with 1,000, 300 and 100; pixel noise 0.05-0.20);
- ``halo_a`` (count ratio = exp(a·halo)): ``benchmarks/psf_wings.py``'s crystals (29001+)
  with 10, 20 and 30 % of each ion's light in Moffat wings (halo 0.005-0.03).

``benchmarks/noise_sensitivity.py --skip`` and ``benchmarks/robustness.py`` check it. Fit the
calibration before the σ factors (``scripts/uncertainty_factors.py --camera-crystals`` then
fits ``noise_n0`` and the halo factor to the calibrated counts).

    python scripts/camera_calibration.py default --card src/ccount_core/models/default.json \\
        --crystals 60 [--terms noise halo]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from ccount_core.image.preprocess import PreprocessConfig, prepare_stack
from ccount_core.nn.calibration import fit_exponent
from ccount_core.nn.count import count_stack
from ccount_core.nn.ensemble import load_counter

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
#: term -> (card key, the Ellipse reading, its power)
TERMS = {"noise": ("noise_b", "pixel_noise", 2), "halo": ("halo_a", "halo_light", 1)}


def fit_sets(term: str, n: int) -> tuple[list, list]:
    """``(samples, [clean variant, imperfect variants ...])`` of ``term``'s fit set (module
    docstring): ``n`` crystals' MD samples and the robustness variants they are drawn in."""
    sys.path.insert(0, str(BENCHMARKS))
    import noise_sensitivity as ns
    import psf_wings as pw
    import robustness as rb
    from ccount_core.simulation.camera import CameraEffects, PsfWings

    cache = Path.home() / ".cache" / "ccount"
    if term == "noise":
        samples = [rb.md_samples(c, cache / "noise") for c in ns.crystals(n)]
        return samples, [rb.Variant("clean"), *map(ns.camera_variant, ns.FIT_CAMERAS)]
    wings = [
        rb.Variant(f"wings {w:.0%}", effects=rb._fixed(CameraEffects(wings=PsfWings(w, width))))
        for w in (0.1, 0.2, 0.3)
        for width in (pw.WING_WIDTH_M,)
    ]
    samples = [rb.md_samples(c, cache / "wings") for c in pw.crystals(n)]
    return samples, [rb.Variant("clean"), *wings]


def ratios(counter, term: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(count over the clean twin's, the imperfection's measure x)`` of every imperfect
    frame of ``term``'s fit set, counted by ``counter`` (float32)."""
    sys.path.insert(0, str(BENCHMARKS))
    import robustness as rb

    _, reading, power = TERMS[term]
    samples, variants = fit_sets(term, n)
    cfg = PreprocessConfig.from_dict(counter.card["preprocess"])
    counts, measures = [], []
    for k, variant in enumerate(variants):
        stack = np.stack([rb.render_variant(s, variant, i, 600 + k) for i, s in enumerate(samples)])
        rows = count_stack(stack, counter, variant.pixel_size_um, bf16=False)
        counts.append([np.nan if r["count"] is None else r["count"] for r in rows])
        ellipses = prepare_stack(stack, cfg, camera_pixel_size_um=variant.pixel_size_um).ellipses
        measures.append([np.nan if e is None else getattr(e, reading) for e in ellipses])
    counts, measures = np.array(counts, float), np.array(measures, float)
    return counts[1:] / counts[0], measures[1:] ** power


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", help="shipped name or model path, as load_counter takes it")
    ap.add_argument("--card", type=Path, required=True, help="the card (.json) to write")
    ap.add_argument("--crystals", type=int, default=60)
    ap.add_argument("--terms", nargs="+", default=list(TERMS), choices=list(TERMS))
    args = ap.parse_args()
    counter = load_counter(args.model)
    counter.card.pop("camera_calibration", None)  # the model's own counts
    calibration, frames = {}, []
    for term in args.terms:
        ratio, x = ratios(counter, term, args.crystals)
        calibration[TERMS[term][0]] = round(fit_exponent(ratio, x), 3)
        frames.append(f"{term} {ratio.size}")
    calibration["source"] = (
        f"scripts/camera_calibration.py --crystals {args.crystals}: each frame's count over "
        f"its crystal's clean twin's ({', '.join(frames)} frames; noise: "
        "benchmarks/noise_sensitivity.py's crystals through its cameras with pixel noise, "
        "halo: benchmarks/psf_wings.py's with 10-30 % of the light in wings); checked by "
        "benchmarks/noise_sensitivity.py --skip and benchmarks/robustness.py"
    )
    card = json.loads(args.card.read_text())
    card["camera_calibration"] = calibration
    print(json.dumps(calibration, indent=2))
    args.card.write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
