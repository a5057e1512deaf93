"""Fit a model card's ``noise_calibration`` (``ccount_core.nn.calibration``): how much lower
(or higher) the model counts a crystal through a camera with pixel noise than without, and
write it into the card (the weights are not touched).

The fit set is ``--crystals`` crystals of ``benchmarks/noise_sensitivity.py``'s set (MD seeds
28001+, neither the training sets' nor the robustness benchmark's) rendered without noise and
through each of its cameras with pixel noise enough to fit on (``FIT_CAMERAS``: sCMOS 500 and
200 photons an ion, an EMCCD at gain 300 with 1,000, 300 and 100; pixel noise 0.05-0.20).
Each noisy frame's count over its crystal's noiseless count, against the noisy frame's pixel
noise, gives ``b`` of count ratio = exp(b·noise²) (``fit_noise_calibration``); counting
divides by it. Pairing each frame with its own noiseless twin keeps the model's other errors
out of ``b``. ``benchmarks/noise_sensitivity.py --skip`` checks it on other crystals.

Fit the calibration before the σ factors (``scripts/uncertainty_factors.py --camera-crystals``
then fits ``noise_n0`` to the calibrated counts).

    python scripts/noise_calibration.py default --card src/ccount_core/models/default.json \\
        --crystals 60
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from ccount_core.image.preprocess import PreprocessConfig, prepare_stack
from ccount_core.nn.calibration import fit_noise_calibration
from ccount_core.nn.count import count_stack
from ccount_core.nn.ensemble import load_counter

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def counts_and_noise(counter, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(noiseless counts (n,), noisy counts (cameras, n), their pixel noise (cameras, n))``
    of the fit set (module docstring), counted by ``counter`` (float32)."""
    sys.path.insert(0, str(BENCHMARKS))
    import noise_sensitivity as ns
    import robustness as rb

    cache = Path.home() / ".cache" / "ccount" / "noise"
    samples = [rb.md_samples(c, cache) for c in ns.crystals(n)]
    cfg = PreprocessConfig.from_dict(counter.card["preprocess"])

    def counted(variant: rb.Variant, k: int) -> tuple[np.ndarray, np.ndarray]:
        stack = np.stack([rb.render_variant(s, variant, i, 600 + k) for i, s in enumerate(samples)])
        rows = count_stack(stack, counter, variant.pixel_size_um, bf16=False)
        ellipses = prepare_stack(stack, cfg, camera_pixel_size_um=variant.pixel_size_um).ellipses
        noise = [np.nan if e is None else e.pixel_noise for e in ellipses]
        return np.array([np.nan if r["count"] is None else r["count"] for r in rows], float), (
            np.array(noise, float)
        )

    clean, _ = counted(rb.Variant("noiseless"), 0)
    noisy = [counted(ns.camera_variant(name), k) for k, name in enumerate(ns.FIT_CAMERAS, 1)]
    return clean, np.stack([c for c, _ in noisy]), np.stack([x for _, x in noisy])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", help="shipped name or model path, as load_counter takes it")
    ap.add_argument("--card", type=Path, required=True, help="the card (.json) to write")
    ap.add_argument("--crystals", type=int, default=60)
    args = ap.parse_args()
    counter = load_counter(args.model)
    counter.card.pop("noise_calibration", None)  # the model's own counts
    clean, noisy, noise = counts_and_noise(counter, args.crystals)
    b = fit_noise_calibration(noisy / clean, noise)
    card = json.loads(args.card.read_text())
    card["noise_calibration"] = {
        "b": round(b, 3),
        "source": (
            f"scripts/noise_calibration.py --crystals {args.crystals}: each of "
            f"{noisy.size} frames of benchmarks/noise_sensitivity.py's crystals through its "
            "cameras with pixel noise over the same crystal's noiseless frame; checked by "
            "benchmarks/noise_sensitivity.py --skip"
        ),
    }
    print(json.dumps(card["noise_calibration"], indent=2))
    args.card.write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
