"""Human-readable views of a data-set store: a text summary and a contact sheet PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ccount_core.dataset.spec import SPLIT_NAMES
from ccount_core.dataset.store import Dataset, count_column
from ccount_core.errors import InputError
from ccount_core.files import atomic_path

_RANGE_COLUMNS = (
    "v_rf",
    "v_end",
    "eta",
    "seed",
    "focal_offset_um",
    "blur_um",
    "dof_um",
    "rotation_deg",
    "pixel_size_um",
    "noise_draw",
)
_UNITS = {
    "v_rf": "V",
    "v_end": "V",
    "focal_offset_um": "µm",
    "blur_um": "µm",
    "dof_um": "µm",
    "rotation_deg": "deg",
    "pixel_size_um": "µm",
}


def describe(ds: Dataset) -> str:
    """Multi-line summary: rows done per split, parameter ranges of done rows, timings."""
    a, t = ds.attrs, ds.table
    done = ds.done
    rows, cols = a["image_shape"]
    lines = [
        f"store      {ds.path}",
        f"spec       {a['spec']['name']} ({a['spec']['parameters']['sampling']}, "
        f"sha256 {a['spec_sha256'][:12]})",
        f"images     {len(ds)} of {rows} x {cols} {a['images_dtype']} ({a['image_units']}); "
        f"{a['n_md_runs']} MD runs x {a['n_renders']} render(s)",
        f"done       {int(done.sum())} of {len(ds)}"
        + ("" if ds.complete else " (incomplete: rerun generate to finish)"),
        f"labels     {', '.join(ds.label_names)}",
        "split      planned     done",
    ]
    for code, name in enumerate(SPLIT_NAMES):
        in_split = t["split"] == code
        lines.append(f"  {name:<10} {int(in_split.sum()):>7} {int((in_split & done).sum()):>8}")
    sel = done if done.any() else np.ones_like(done)
    lines.append("parameters (done rows)" if done.any() else "parameters (planned rows)")
    for name in [count_column(s) for s in ds.label_names] + list(_RANGE_COLUMNS):
        v = t[name][sel]
        unit = _UNITS.get(name, "")
        lines.append(
            f"  {name:<16} {_fmt(v.min())} .. {_fmt(v.max())} {unit:<3} "
            f"({_plural(np.unique(v).size, 'value')})"
        )
    if done.any():
        md = t["md_seconds"][done][t["render_index"][done] == 0]
        versions = sorted(set(t["simulator_version"][done].tolist()))
        lines.append(
            f"time       MD {md.sum():.1f} s in {md.size} runs "
            f"(mean {md.mean():.2f} s), rendering {t['render_seconds'][done].sum():.1f} s,"
            f" CPU {t['cpu_seconds'][done].sum():.1f} s"
        )
        lines.append(f"simulator  {', '.join(versions)}")
    if a.get("duplicates_dropped"):
        lines.append(f"note       {a['duplicates_dropped']} repeated MD points were dropped")
    return "\n".join(lines)


def _fmt(x: float) -> str:
    return format(float(x), ".6g")


def contact_sheet(
    ds: Dataset, path: str | Path, n: int = 16, split: str = "all", seed: int = 0
) -> Path:
    """Write a PNG grid of ``n`` random finished samples titled with their labels and split.

    Each tile is scaled to its own 99.5th percentile so faint and bright crystals both show.
    """
    if n < 1:
        raise InputError(f"-n must be >= 1, got {n}")
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise InputError(f"output: contact sheet must be a .png file, got {path.name}")
    pool = ds.indices(split)
    if pool.size == 0:
        raise InputError(f"{ds.path}: no finished samples in split {split!r}")
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(pool, size=min(n, pool.size), replace=False))
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    ncol = int(np.ceil(np.sqrt(pick.size)))
    nrow = int(np.ceil(pick.size / ncol))
    rows, cols = ds.attrs["image_shape"]
    w = 2.6
    fig = Figure(figsize=(ncol * w, nrow * w * rows / cols + 0.45 * nrow))
    labels = ds.labels
    t = ds.table
    for k, i in enumerate(pick):
        ax = fig.add_subplot(nrow, ncol, k + 1)
        img = np.asarray(ds.images[int(i)], np.float32)
        hi = float(np.percentile(img, 99.5)) or float(img.max()) or 1.0
        ax.imshow(img, cmap="gray", vmin=float(img.min()), vmax=hi)
        counts = " ".join(
            f"{int(c)} {s}"
            for s, c in zip(ds.label_names, labels[i], strict=True)
            if c > 0 or s == ds.label_names[0]
        )
        focus = f", focus {t['focal_offset_um'][i]:g} µm" if t["focal_offset_um"][i] else ""
        ax.set_title(
            f"#{i} {counts}{focus}\n{t['v_rf'][i]:g} V, {t['v_end'][i]:g} V, "
            f"η {t['eta'][i]:g}, {SPLIT_NAMES[t['split'][i]]}",
            fontsize=7,
        )
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    return path


def _plural(n: int, noun: str) -> str:
    """``1 value``, ``3 values``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
