"""The Ca+ loss rate k that ``ccount kinetics`` finds on the bundled demo series, against the
rate the series was simulated with.

The sample ``reaction_series`` (16 frames, 10 s apart) holds round(350 e^{-0.08 f}) Ca+ in
frame f and the rest as dark ND3+ in the core, so its true rate is 0.08 / 10 s = 0.008 s⁻¹
(no offset, one ND3+ per Ca+ lost). Each model counts the series; the counts are fitted with
the first-order model and, where the model counts ND3+, with first-order-to-product. The true
numbers themselves (no σ: weighted by the residuals) are fitted too: what the rounding to whole
ions leaves. Prints k ± 1σ, its distance from the truth in σ, N0, c and χ²/dof.

``--synthetic N`` instead fits N synthetic series of known k (31 frames 10 s apart, k 0.006-
0.02 s⁻¹, N0 250-350, c 0-60, noise drawn with the stated σ = 0.03 N + 3 ions, as in
tests/core/analysis) and prints how often the truth lies within the reported 1σ and 2σ.

    python benchmarks/kinetics_demo.py default dark ensemble [--tta 4]
    python benchmarks/kinetics_demo.py --synthetic 2000
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from ccount_core.analysis.kinetics import Series, fit_kinetics, format_value, series_from_rows
from ccount_core.dataset.samples import load_sample
from ccount_core.errors import InputError
from ccount_core.nn.count import count_stack


def report(name: str, rows: list[dict[str, Any]], model: str, k_true: float) -> None:
    try:
        fit = fit_kinetics(series_from_rows(rows, model), model)
    except InputError as exc:
        print(f"{name:<22} {model:<23} no fit: {exc}")
        return
    v, e = fit.values, fit.errors
    extra = f"  y {format_value(v['y'], e['y'])}" if "y" in v else ""
    print(
        f"{name:<22} {model:<23} k = {format_value(fit.k, fit.k_sigma)} s-1 "
        f"({(fit.k - k_true) / fit.k_sigma:+.1f}σ)  N0 {format_value(v['n0'], e['n0'])}  "
        f"c {format_value(v['c'], e['c'])}{extra}  chi2/dof {fit.chi2 / fit.dof:.2f}"
        + ("  (errors scaled)" if fit.scaled else "")
    )


def coverage(n: int, seed: int = 1000) -> None:
    """Fraction of ``n`` synthetic series whose true k lies within the reported 1σ and 2σ."""
    rng = np.random.default_rng(seed)
    t = np.arange(31) * 10.0
    pulls = []
    for _ in range(n):
        k, n0, c = rng.uniform(0.006, 0.02), rng.uniform(250, 350), rng.uniform(0, 60)
        ca = (n0 - c) * np.exp(-k * t) + c
        sigma = 0.03 * ca + 3.0
        fit = fit_kinetics(Series(np.arange(31), t, ca + rng.normal(0, sigma), sigma))
        pulls.append(abs(fit.k - k) / fit.k_sigma)
    pulls = np.array(pulls)
    print(
        f"{n} synthetic series: truth within 1σ in {100 * np.mean(pulls <= 1):.1f} %, "
        f"within 2σ in {100 * np.mean(pulls <= 2):.1f} %"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="*", help="model files, run directories or shipped names")
    ap.add_argument("--tta", type=int, default=0, help="test-time views per frame")
    ap.add_argument("--synthetic", type=int, default=0, help="fit this many synthetic series")
    args = ap.parse_args()
    if args.synthetic:
        coverage(args.synthetic)
        return
    stack, meta = load_sample("reaction_series")
    interval = meta["frame_interval_s"]
    k_true = meta["decay_per_frame"] / interval
    truth = meta["true_counts"]
    product = meta["product"]
    print(f"true k = {k_true:g} s-1 ({len(truth['Ca+'])} frames, {interval:g} s apart)")
    true_rows = [
        {"frame": f, "time_s": f * interval, "count": float(n), "count_" + product: float(p)}
        for f, (n, p) in enumerate(zip(truth["Ca+"], truth[product], strict=True))
    ]
    for model in ("first-order", "first-order-to-product"):
        report("true numbers", true_rows, model, k_true)
    for name in args.models:
        rows = count_stack(
            stack,
            None if name == "default" else name,
            meta["pixel_size_um"],
            frame_interval_s=interval,
            tta=args.tta,
        )
        label = f"{name} (tta {args.tta})"
        report(label, rows, "first-order", k_true)
        if any(k == "count_" + product for k in rows[0]):
            report(label, rows, "first-order-to-product", k_true)


if __name__ == "__main__":
    main()
