"""How well models count the bundled demo series, whose crystals gain a dark core.

The sample ``reaction_series`` (16 frames) is a pure Ca+ crystal whose Ca+ ions turn one by one
into dark ND3+ ions that sit in its core: a distribution shift that the simulated validation
split (pure Ca+) does not measure. For each model this prints the count of every frame against
the true Ca+ number, the error of frame 0 (pure) and the mean and worst relative error of the
15 mixed frames.

The shipped TIFF was made by an older simulator (no isotropic bath on the Ca+ ions: its
crystals are about 10 % longer than today's MD makes them; docs/BENCHMARKS.md, "Simulated-image
matching"), so it carries a model mismatch as a recording does. ``--today`` counts the same
series made by today's simulator instead (``reaction_series()``, seed 0, as
``scripts/make_sample_data.py`` writes it), cached in ``~/.cache/ccount/demo/``: a model that
misreads only the shipped frames reads the older physics wrong, one that misreads both reads
dark cores wrong.

    python benchmarks/demo_accuracy.py default RUN/ [MODEL ...] [--tta 0] [--today]
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import numpy as np

from ccount_core.dataset.samples import load_sample
from ccount_core.files import atomic_write_bytes
from ccount_core.nn.count import count_stack

CACHE = Path.home() / ".cache" / "ccount" / "demo"


def today_series(cache: Path = CACHE, n_frames: int = 16) -> tuple[np.ndarray, dict]:
    """The reaction series as ``scripts/make_sample_data.py`` would write it with today's
    simulator: ``(stack (F, rows, cols) uint16, metadata)``, made once and cached in
    ``cache/reaction_series_today_{n_frames}.npz`` (written atomically; the key is the frame
    count only, so delete the file after a change to the simulator)."""
    from ccount_core.dataset.samples import reaction_series

    path = cache / f"reaction_series_today_{n_frames}.npz"
    if path.exists():
        with np.load(path) as z:
            return z["stack"], json.loads(str(z["meta"]))
    stack, meta = reaction_series(n_frames=n_frames, seed=0)
    stack = np.clip(np.rint(stack), 0, 65535).astype(np.uint16)  # as the TIFF stores it
    buf = io.BytesIO()
    np.savez_compressed(buf, stack=stack, meta=json.dumps(meta))
    cache.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())
    return stack, meta


def series_errors(
    model: str, tta: int = 0, today: bool = False
) -> tuple[list[dict], np.ndarray, np.ndarray]:
    """``(rows of count_stack, true Ca+ (16,), relative errors % (16,))`` of ``model`` (a
    path, or ``default``) on the bundled reaction series (``today``: made by today's
    simulator, :func:`today_series`)."""
    stack, meta = today_series() if today else load_sample("reaction_series")
    truth = np.asarray(meta["true_counts"]["Ca+"], dtype=float)
    rows = count_stack(stack, None if model == "default" else model, meta["pixel_size_um"], tta=tta)
    counts = np.array([r["count"] for r in rows], dtype=float)
    return rows, truth, 100 * (counts - truth) / truth


def dark_core_error(model: str, today: bool = False) -> float:
    """Mean |relative error| (%) of ``model`` on the series' dark-core frames 1-15
    (:func:`series_errors`)."""
    return float(np.abs(series_errors(model, today=today)[2][1:]).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="+", help="model files or run directories; 'default'")
    ap.add_argument("--tta", type=int, default=0, help="test-time views per frame")
    ap.add_argument("--today", action="store_true", help="the series made by today's simulator")
    args = ap.parse_args()
    _, meta = today_series() if args.today else load_sample("reaction_series")
    truth = np.asarray(meta["true_counts"]["Ca+"], dtype=float)
    print("true   " + " ".join(f"{t:6.0f}" for t in truth))
    for name in args.models:
        rows, _, err = series_errors(name, args.tta, args.today)
        counts = np.array([r["count"] for r in rows], dtype=float)
        print(f"{name}\n       " + " ".join(f"{c:6.1f}" for c in counts))
        print(
            f"  frame 0 (pure Ca+): {err[0]:+.1f} %; dark-core frames 1-15: mean |error| "
            f"{np.abs(err[1:]).mean():.1f} %, worst {err[1:][np.argmax(np.abs(err[1:]))]:+.1f} %"
        )
        dark = [k for k in rows[0] if k.startswith("count_") and k[6:] in meta["true_counts"]]
        for key in dark:  # a model that also counts a dark species
            true_dark = np.asarray(meta["true_counts"][key[6:]], dtype=float)
            found = np.array([r[key] for r in rows], dtype=float)
            print(
                f"  {key[6:]}: " + " ".join(f"{c:6.1f}" for c in found) + "; mean |error| "
                f"{np.abs(found - true_dark).mean():.1f} ions"
            )


if __name__ == "__main__":
    main()
