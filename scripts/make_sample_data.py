"""Write the shipped sample data: src/ccount_core/data/{reaction_series,single_crystal}.tif.

Camera-like uint16 frames (EMCCD model, 1.5 µm pixels, crystal turned by 3°) with the pixel
size, every simulation input and the true ion numbers per frame in the JSON ImageDescription.
Deterministic (fixed seeds). Takes a few minutes on 2 cores:

    .venv/bin/python scripts/make_sample_data.py
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import tifffile

from ccount_core.dataset.samples import reaction_series, single_crystal
from ccount_core.files import atomic_path
from ccount_core.progress import tqdm_progress

DATA = Path(__file__).resolve().parents[1] / "src" / "ccount_core" / "data"


def write_uint16(path: Path, stack: np.ndarray, meta: dict) -> None:
    """uint16 TIFF (zlib), JSON metadata, resolution tags in px/cm; atomic replace."""
    counts = np.clip(np.rint(stack), 0, 65535).astype(np.uint16)
    ppcm = 1e4 / meta["pixel_size_um"]
    with atomic_path(path) as tmp:
        tifffile.imwrite(
            tmp,
            counts,
            photometric="minisblack",
            metadata=meta,
            compression="zlib",
            resolution=(ppcm, ppcm),
            resolutionunit=3,
        )
        os.chmod(tmp, 0o644)
    print(f"wrote {path} {counts.shape} ({path.stat().st_size / 1e6:.2f} MB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--out", type=Path, default=DATA)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    image, meta = single_crystal(seed=101)
    write_uint16(args.out / "single_crystal.tif", image, meta)
    with tqdm_progress("reaction series", unit="frame") as progress:
        stack, meta = reaction_series(n_frames=args.frames, seed=0, progress=progress)
    write_uint16(args.out / "reaction_series.tif", stack, meta)


if __name__ == "__main__":
    main()
