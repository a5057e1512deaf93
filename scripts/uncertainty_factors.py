"""Fit a model card's ``uncertainty`` factors (``ccount_core.nn.count.model_error``) on renders
of known Ca+ number, and write them into the card (the weights are not touched).

The fit sets are the first ``--fit-clean`` clean renders and the first ``--fit-dark`` renders
with dark ions of ``benchmarks/sigma_coverage.py`` (its caches), and ``--store-images`` images
of a data-set store (``--store``, e.g. ``camera_v1``'s validation split for a model trained on
camera-like images; the set ``store``); ``benchmarks/sigma_coverage.py --check-from`` (and
``--store``) reports the coverage on frames the fit never sees.

Every fit frame is counted with the factors at 1: its σ is then the validation RMS near its
count ``v`` (⊕ the ensemble's or views' spread ``d``, which the factors do not scale). The
smallest scale that would make a frame's ±1σ hold its truth is ``sqrt(err² - d²) / v``, and
its ±2σ ``sqrt(err² - 4 d²) / (2 v)`` (the spread doubles too). ``scale`` is the smallest
with which ±1σ holds the truth on ``--target`` and ±2σ on at least ``--target2`` of the
frames of each set like the card's training data (``--scale-sets``: ``clean`` for the
default model, ``clean dark`` for a model trained on dark ions too, ``clean store`` for one
trained on a store's camera-like images too) that carry no "unlike the training images"
warning, each set on its own (the goal holds on each, not only on their union);
``unlike_scale`` likewise, over the warned frames of all sets, on top of ``scale``. With
``--camera-crystals N`` the camera factors too, on top of ``scale``, from crystals of
neither the training sets nor the robustness benchmark (which checks them), the first two
over frames that carry no "unlike" warning:

- ``noise_n0`` (``ccount_core.nn.count.noise_widening``: σ widens by sqrt(1 + (pixel noise /
  n0)⁴)): N crystals of ``benchmarks/noise_sensitivity.py``'s set through each of its cameras
  with pixel noise (sCMOS at 500 and 200 photons an ion, an EMCCD at gain 300 with 1,000,
  300 and 100: pixel noise 0.05-0.20, below and above the "noisy" note's limit);
- ``note_scales["halo"]``: N of ``benchmarks/psf_wings.py``'s set with 20 % and 30 % of the
  light in PSF wings, over the frames that carry the halo note;
- ``unlike_scales`` of the statistics a narrow cooling beam moves (:data:`BEAM_STATS`): N of
  ``benchmarks/pixel_size.py``'s set (MD seeds 30001+) through a beam along and one across
  the trap axis that leave the crystal's edge at 30 % (the robustness benchmark's beams),
  over the frames warned for those statistics alone;
- ``note_scales["beam"]``: the frames of all camera sets (those beams' above all) whose
  preparation evened out a beam (the "beam" note, ``ccount_core.image.beam``).

A factor needs at least ``MIN_NOTED`` frames; with fewer the card has none (σ not widened).

``--notes-only`` keeps the card's ``scale`` and ``unlike_scale`` and fits the camera factors
alone.

    python scripts/uncertainty_factors.py default --card src/ccount_core/models/default.json \\
        --cache cov.npz --dark-cache dark.npz --fit-clean 120 --fit-dark 100
    python scripts/uncertainty_factors.py default --card src/ccount_core/models/default.json \\
        --fit-clean 0 --fit-dark 0 --camera-crystals 60 --notes-only
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np

from ccount_core.image.preprocess import PreprocessConfig, prepare_stack
from ccount_core.nn.count import count_stack, noise_widening, validation_error
from ccount_core.nn.ensemble import load_counter
from ccount_core.nn.inputs import STATISTICS
from ccount_core.simulation.camera import CameraEffects, PsfWings

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
BENCH = BENCHMARKS / "sigma_coverage.py"
UNLIKE = "unlike the training images"
#: The preparation notes of a camera whose frames get their own σ factor (``note_scales``).
NOTE_KINDS = ("halo", "beam")
#: The input statistics a cooling beam narrower than the crystal moves, which get their own
#: σ factor (``unlike_scales``).
BEAM_STATS = ("band_light", "tip_light")
#: Fewest fit frames for a camera factor (else none).
MIN_NOTED = 20


def camera_sets(n: int) -> list[tuple[str, np.ndarray, np.ndarray, float, str]]:
    """``(name, frames, truth, camera pixel size µm, "noise" | "halo" | "beam")`` of the
    camera fit sets (module docstring): ``n`` crystals each."""
    sys.path.insert(0, str(BENCHMARKS))
    import noise_sensitivity as ns
    import pixel_size as ps
    import psf_wings as pw
    import robustness as rb

    cache = Path.home() / ".cache" / "ccount"
    noisy = [ns.camera_variant(name) for name in ns.FIT_CAMERAS]
    wings = [
        rb.Variant(
            f"wings {w:.0%}", effects=rb._fixed(CameraEffects(wings=PsfWings(w, pw.WING_WIDTH_M)))
        )
        for w in (0.2, 0.3)
    ]
    beams = [
        rb.Variant(f"beam {'along' if along else 'across'}, edge 30 %", effects=rb._profile(along))
        for along in (True, False)
    ]
    sets = []
    for crystals, md_cache, variants, kind in (
        (ns.crystals(n), cache / "noise", noisy, "noise"),
        (pw.crystals(n), cache / "wings", wings, "halo"),
        (ps.crystals(n), cache / "pixels", beams, "beam"),
    ):
        samples = [rb.md_samples(c, md_cache) for c in crystals]
        truth = np.array([c.n_ions for c in crystals], float)
        for k, variant in enumerate(variants):
            frames = np.stack(
                [rb.render_variant(s, variant, i, 500 + k) for i, s in enumerate(samples)]
            )
            sets.append((variant.name, frames, truth, variant.pixel_size_um, kind))
    return sets


def needed_scales(stack: np.ndarray, truth: np.ndarray, counter, px: float) -> tuple:
    """Per counted frame: the scales its ±1σ and its ±2σ need (``(n, 2)``, module
    docstring), whether it was warned unlike, its warning and its pixel noise (as counting
    measures it)."""
    rows = count_stack(stack, counter, px, bf16=False)
    ok = np.array([r["count"] is not None for r in rows])
    cfg = PreprocessConfig.from_dict(counter.card["preprocess"])
    ellipses = prepare_stack(stack, cfg, camera_pixel_size_um=px).ellipses
    noise = np.array([math.nan if e is None else e.pixel_noise for e in ellipses])[ok]
    count = np.array([r["count"] for r in rows], dtype=object)[ok].astype(float)
    sigma = np.array([r["uncertainty"] for r in rows], dtype=object)[ok].astype(float)
    v = validation_error(counter.card, count)
    spread = np.sqrt(np.clip(np.nan_to_num(sigma) ** 2 - v**2, 0.0, None))
    need = needs(count - truth[ok], spread, v)
    warnings = [r["warning"] or "" for r, k in zip(rows, ok, strict=True) if k]
    return need, np.array([UNLIKE in w for w in warnings]), warnings, noise


def needs(err: np.ndarray, spread: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``(n, 2)``: the scales of ``v`` (ions) with which σ = sqrt((scale·v)² + spread²) puts
    each error ``err`` (ions) within ±1σ and within ±2σ (module docstring)."""
    err2, spread2 = np.square(err), np.square(spread)
    one = np.sqrt(np.clip(err2 - spread2, 0.0, None)) / v
    two = np.sqrt(np.clip(err2 - 4.0 * spread2, 0.0, None)) / (2.0 * v)
    return np.stack([one, two], axis=1)


def factor(need: np.ndarray, target: float, target2: float) -> float:
    """The smallest factor with ±1σ holding ``target`` and ±2σ ``target2`` of the frames
    whose needs (:func:`needed_scales`, ``(n, 2)``) are ``need``."""
    return float(max(np.quantile(need[:, 0], target), np.quantile(need[:, 1], target2)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", help="shipped name or model path, as load_counter takes it")
    ap.add_argument("--card", type=Path, required=True, help="the card (.json) to write")
    ap.add_argument("--cache", type=Path, default=Path("coverage_frames.npz"))
    ap.add_argument("--dark-cache", type=Path, default=Path("coverage_dark.npz"))
    ap.add_argument("--fit-clean", type=int, default=120)
    ap.add_argument("--fit-dark", type=int, default=100)
    ap.add_argument("--store", type=Path, default=None, help="a data-set store's images too")
    ap.add_argument("--store-split", default="validation")
    ap.add_argument("--store-from", type=int, default=0, help="first image of the split used")
    ap.add_argument("--store-images", type=int, default=1000)
    ap.add_argument(
        "--scale-sets", nargs="+", default=["clean"], choices=["clean", "dark", "store"]
    )
    ap.add_argument("--camera-crystals", type=int, default=0, help="fit note_scales too")
    ap.add_argument("--notes-only", action="store_true", help="keep scale and unlike_scale")
    ap.add_argument("--target", type=float, default=0.68)
    ap.add_argument("--target2", type=float, default=0.94)
    args = ap.parse_args()
    spec = importlib.util.spec_from_file_location("coverage_bench", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    counter = load_counter(args.model)
    counter.card.pop("uncertainty", None)  # factors at 1 (a single model's members share it)
    if not np.isfinite(validation_error(counter.card, np.array([100.0]))).all():
        raise SystemExit(
            f"{args.model}: its card has no validation error per count to scale "
            "(metrics.ccount_evaluate bins): put `ccount evaluate`'s metrics.json there first"
        )
    card = json.loads(args.card.read_text())
    if args.notes_only:
        camera = ("note_scales", "note_source", "noise_n0", "unlike_scales")
        factors = {k: v for k, v in card.get("uncertainty", {}).items() if k not in camera}
    else:
        factors = fit_factors(args, bench, counter)
    if args.camera_crystals:
        factors.update(camera_factors(args, counter, float(factors.get("scale", 1.0))))
    print(json.dumps(factors, indent=2))
    card["uncertainty"] = factors
    args.card.write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")


def camera_factors(args: argparse.Namespace, counter, scale: float) -> dict:
    """``noise_n0`` and ``note_scales`` (module docstring) fitted on top of ``scale``, with
    their ``note_source``."""
    noted: dict[str, list[np.ndarray]] = {kind: [] for kind in NOTE_KINDS}
    noise_need, noise_level, beam_need = [], [], []
    for _name, frames, truth, px, kind in camera_sets(args.camera_crystals):
        need, unlike, warnings, noise = needed_scales(frames, truth, counter, px)
        if kind == "noise":
            noise_need.append(need[~unlike] / scale)
            noise_level.append(noise[~unlike])
        if kind == "beam":
            stats = [unlike_statistics(w) for w in warnings]
            beam_need.append(need[np.array([bool(s) and s <= set(BEAM_STATS) for s in stats])])
        for note in NOTE_KINDS:
            noted[note].append(need[np.array([f"{note}: " in w for w in warnings]) & ~unlike])
    out: dict = {"note_scales": {}}
    used = []
    need = joined(beam_need)
    used.append(f"beam statistics {len(need)}")
    if len(need) >= MIN_NOTED:
        k = round(max(1.0, factor(need / scale, args.target, args.target2)), 2)
        out["unlike_scales"] = dict.fromkeys(BEAM_STATS, k)
    for kind, parts in noted.items():
        need = joined(parts)
        used.append(f"{kind} note {len(need)}")
        if len(need) >= MIN_NOTED:
            k = factor(need / scale, args.target, args.target2)
            out["note_scales"][kind] = round(max(1.0, k), 2)
    need, noise = joined(noise_need), joined(noise_level)
    n0 = fit_noise_n0(need, noise, args.target, args.target2) if len(need) >= MIN_NOTED else None
    if n0 is not None:
        out["noise_n0"] = round(n0, 4)
    out["note_source"] = (
        f"scripts/uncertainty_factors.py --camera-crystals {args.camera_crystals}: frames "
        f"not warned unlike, on top of scale; noise_n0 from {len(need)} of "
        "benchmarks/noise_sensitivity.py's crystals through its cameras with pixel noise, "
        f"note_scales from those noted of benchmarks/psf_wings.py's with 20 and 30 % of the "
        "light in wings (halo) and of all camera sets (beam: evened out); unlike_scales of "
        "the beam statistics from the frames of benchmarks/pixel_size.py's crystals through a "
        f"cooling beam along and across the axis (edge 30 %) warned for them alone "
        f"({', '.join(used)}); ±1σ target "
        f"{args.target}, ±2σ {args.target2}; checked by benchmarks/robustness.py and "
        "benchmarks/noise_sensitivity.py --skip"
    )
    return out


def joined(parts: list[np.ndarray]) -> np.ndarray:
    """Needs ``(n_i, 2)`` end to end (none: empty)."""
    return np.concatenate(parts) if parts else np.zeros((0, 2))


def unlike_statistics(warning: str) -> set[str]:
    """The input statistics a row's ``warning`` names outside the card's ranges."""
    return {name for name, (what, _) in STATISTICS.items() if f"{UNLIKE}: {what} " in warning}


def fit_noise_n0(need: np.ndarray, noise: np.ndarray, target: float, target2: float):
    """The ``noise_n0`` with which ``need`` (per frame, in units of the unwidened σ) over
    ``noise_widening`` of the frames' pixel ``noise`` is fitted to 1 by :func:`factor`
    (bisection in log n0); None where no widening is needed."""

    def fitted(n0: float) -> float:
        widening = np.array([noise_widening(x, n0) for x in noise])
        return factor(need / widening[:, None], target, target2)

    lo, hi = 1e-4, 1e3  # fitted(lo) ~ 0, fitted(hi) ~ unwidened; fitted grows with n0
    if fitted(hi) <= 1.0:
        return None
    for _ in range(60):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if fitted(mid) < 1.0 else (lo, mid)
    return hi


def scale_over_sets(
    need: np.ndarray, name: np.ndarray, use: np.ndarray, target: float, target2: float
) -> float:
    """The largest of :func:`factor` over each set (frames of one ``name``) among the frames
    ``use`` picks: the smallest scale with which every set meets both targets."""
    sets = [need[use & (name == n)] for n in dict.fromkeys(name[use])]
    if not sets:
        raise SystemExit("no frame of --scale-sets left to fit scale on (all warned unlike?)")
    return max(factor(part, target, target2) for part in sets)


def fit_factors(args: argparse.Namespace, bench, counter) -> dict:
    """``scale`` and ``unlike_scale`` (module docstring) fitted on the clean, dark and store
    sets, with their ``source``."""
    set_needs, unlikes, names = [], [], []
    fit_sets = []  # (set name, frames, truth, camera pixel size µm)
    if args.fit_clean:
        fit_sets.append(("clean", *bench.clean_set(args.fit_clean, args.cache), 2.0))
    if args.fit_dark:
        fit_sets.append(("dark", *bench.clean_set(args.fit_dark, args.dark_cache, dark=True), 2.0))
    n_store = 0
    if args.store is not None:
        for part in bench.store_set(
            args.store, args.store_split, args.store_from, args.store_images
        ):
            fit_sets.append(("store", *part))
            n_store += len(part[0])
    if not fit_sets:
        raise SystemExit("no set to fit scale on: give --fit-clean, --fit-dark or --store")
    for name, frames, truth, px in fit_sets:
        need, unlike, _, _ = needed_scales(frames, truth.astype(float), counter, px)
        set_needs.append(need)
        unlikes.append(unlike)
        names.append(np.full(len(need), name))
    need, unlike, name = (np.concatenate(a) for a in (set_needs, unlikes, names))
    like = ~unlike & np.isin(name, args.scale_sets)
    scale = scale_over_sets(need, name, like, args.target, args.target2)
    factors = {"scale": round(scale, 3)}
    if unlike.any():
        factors["unlike_scale"] = round(
            max(1.0, factor(need[unlike] / scale, args.target, args.target2)), 2
        )
    factors["source"] = (
        f"scripts/uncertainty_factors.py: {args.fit_clean} clean renders (seeds "
        f"{bench.SEED0}+) and {args.fit_dark} with dark ions (seeds {bench.DARK_SEED0}+)"
        + bench.store_note(args.store, args.store_split, args.store_from, n_store)
        + ", "
        f"scale from {int(like.sum())} of the {' and '.join(args.scale_sets)} ones like the "
        f"training images (each set meeting both targets), unlike_scale from "
        f"{int(unlike.sum())} warned unlike; ±1σ target {args.target}, ±2σ {args.target2} "
        "(an ensemble's or views' spread doubling at ±2σ); checked on other seeds by "
        "benchmarks/sigma_coverage.py --check-from"
    )
    return factors


if __name__ == "__main__":
    main()
