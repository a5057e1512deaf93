"""Measure a model card's beam flattening (``ccount_core.image.beam``) and write it into the
card's ``preprocess`` (the weights are not touched).

- ``beam_reference``: how evenly lit crystals' ion spots dim toward their outside in frames
  the card's pipeline prepares: the mean of ``beam_curvature`` over the first ``--crystals``
  clean validation renders of ``benchmarks/sigma_coverage.py`` (default-model-like crystals,
  seeds 900000+, which no training set uses; ``--cache`` is that script's frame cache),
  prepared without flattening. The script prints the scatter, and how many of the next
  ``--check`` renders would then be flattened (each a false flattening).
- ``beam_noise`` (with ``--noise-crystals N``): the pixel noise at which half of a beam's
  shortfall is undone, chosen from :data:`GRID` for the least mean |error| of the model's
  counts of N crystals of ``benchmarks/noise_sensitivity.py``'s set (MD seeds 28001+,
  neither the training sets' nor the robustness benchmark's) through the robustness
  benchmark's two beams (edge 30 %) and each of that script's ``FIT_CAMERAS`` (pixel noise
  0.05-0.20), alone and with the other effects of the robustness benchmark's "all combined"
  (:func:`noise_set`). ``benchmarks/robustness.py`` checks it.

    python scripts/beam_reference.py --card src/ccount_core/models/default.json \\
        --crystals 120 --check 120 --noise-crystals 60 [--cache coverage_frames.npz]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

from ccount_core.image.beam import beam_curvature, beam_shortfall
from ccount_core.image.preprocess import PreprocessConfig, prepare_stack
from ccount_core.nn.count import count_stack
from ccount_core.nn.ensemble import load_counter
from ccount_core.nn.inputs import prepared_outline

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
#: The ``beam_noise`` values tried (0: the whole shortfall undone at any noise).
GRID = (0.0, 0.03, 0.05, 0.07, 0.1, 0.15, 0.2)


def curvatures(frames: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """``(n, 2)`` :func:`beam_curvature` of each frame (2 µm camera pixels) as ``cfg``
    prepares it without flattening."""
    cfg = dataclasses.replace(cfg, beam_reference=None)
    prepared = prepare_stack(frames, cfg, camera_pixel_size_um=2.0, camera_checks=False)
    out = np.full((len(frames), 2), np.nan)
    for i, (img, ell) in enumerate(zip(prepared.images, prepared.ellipses, strict=True)):
        if ell is not None:
            out[i] = beam_curvature(img, prepared_outline(ell, cfg, 2.0))
    return out


def noise_set(n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(frames (m, rows, cols) float32, truth (m,))``: ``n`` crystals of
    ``noise_sensitivity.py``'s set through each beam and each of its ``FIT_CAMERAS`` (2 µm
    pixels), alone and with the other effects of the robustness benchmark's "all combined"
    (PSF wings, defocus, background, hot pixels)."""
    import noise_sensitivity as ns
    import robustness as rb

    crystals = ns.crystals(n)
    samples = [rb.md_samples(c, Path.home() / ".cache" / "ccount" / "noise") for c in crystals]
    frames, k = [], 0
    for along in (True, False):
        for name in ns.FIT_CAMERAS:
            camera = ns.camera_variant(name)
            for others in (camera.effects, rb._combined):
                variant = dataclasses.replace(camera, effects=_with_beam(others, along))
                frames += [rb.render_variant(s, variant, i, 600 + k) for i, s in enumerate(samples)]
                k += 1
    return np.stack(frames), np.tile([c.n_ions for c in crystals], k).astype(float)


def _with_beam(effects, along: bool):
    """``effects`` (a robustness variant's) with the robustness benchmark's beam along (or
    across) the trap axis in place of its own."""
    import robustness as rb

    beam = rb._profile(along)

    def make(samples: np.ndarray):
        return dataclasses.replace(effects(samples), profile=beam(samples).profile)

    return make


def fit_beam_noise(card_path: Path, preprocess: dict, n: int) -> float:
    """The ``beam_noise`` of :data:`GRID` with the least mean |error| (%) of the card's model on
    :func:`noise_set`; prints each."""
    frames, truth = noise_set(n)
    counter = load_counter(card_path)
    best, best_err = GRID[0], np.inf
    for value in GRID:
        cfg = PreprocessConfig.from_dict({**preprocess, "beam_noise": value}).to_dict()
        for card in counter.cards:
            card["preprocess"] = cfg
        rows = count_stack(frames, counter, 2.0, batch_size=16)
        counts = np.array([np.nan if r["count"] is None else r["count"] for r in rows], float)
        err = float(np.nanmean(np.abs(counts - truth) / truth) * 100)
        print(f"  beam_noise {value:.2f}: mean |error| {err:.2f} % over {len(frames)} frames")
        if err < best_err:
            best, best_err = value, err
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--card", type=Path, required=True, help="the card (.json) to write")
    ap.add_argument("--crystals", type=int, default=120)
    ap.add_argument("--check", type=int, default=120, help="held-out renders after them")
    ap.add_argument("--cache", type=Path, default=Path("coverage_frames.npz"))
    ap.add_argument("--noise-crystals", type=int, default=0, help="fit beam_noise too")
    args = ap.parse_args()
    sys.path.insert(0, str(BENCHMARKS))
    from sigma_coverage import clean_set

    frames, _ = clean_set(args.crystals + args.check, args.cache)
    card = json.loads(args.card.read_text())
    cfg = PreprocessConfig.from_dict(card["preprocess"])
    c = curvatures(frames, cfg)
    fit, check = c[: args.crystals], c[args.crystals :]
    fit = fit[np.isfinite(fit).all(axis=1)]
    if len(fit) == 0:
        raise SystemExit("beam_reference.py: no frame gave a curvature")
    ref = (round(float(fit[:, 0].mean()), 3), round(float(fit[:, 1].mean()), 3))
    flattened = sum(beam_shortfall(tuple(x), ref) != (0.0, 0.0) for x in check)
    print(
        f"reference (along, across) {ref[0]:+.3f} {ref[1]:+.3f}; scatter "
        f"{fit[:, 0].std():.3f} {fit[:, 1].std():.3f} over {len(fit)} frames; "
        f"held out: {flattened} of {len(check)} would be flattened"
    )
    preprocess = {**card["preprocess"], "beam_reference": list(ref)}
    if args.noise_crystals:
        preprocess["beam_noise"] = fit_beam_noise(args.card, preprocess, args.noise_crystals)
        print(f"beam_noise {preprocess['beam_noise']}")
    card["preprocess"] = PreprocessConfig.from_dict(preprocess).to_dict()
    args.card.write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
