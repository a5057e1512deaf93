"""``ccount demo``: the main job on the bundled default, for a first look after installing
(what it does: ``DESCRIPTION``, the command's help)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

DEMO_IONS = 300
SAMPLE = "reaction_series"
DESCRIPTION = """\
The main job on the bundled default, for a first look after installing:

1. Simulates a 300-ion Ca+ crystal in the paper's trap and writes its image.
2. Counts the Ca+ ions in every frame of the bundled sample reaction series with the default
   model, prints the table, and writes counts.csv and a plot of ion number against time
   beside the true numbers.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo",
        help="simulate a crystal and count the ions of the bundled sample series",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path("demo_out"),
        help="folder for the results (default: demo_out)",
    )
    p.add_argument(
        "--model", type=Path, default=None, help="model file instead of the shipped default"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out: Path = args.output
    out.mkdir(parents=True, exist_ok=True)
    simulate_crystal(out)
    count_sample(out, args.model)
    return 0


def simulate_crystal(out: Path) -> Path:
    """Simulate ``DEMO_IONS`` Ca+ ions (paper's trap, CCMD imaging); write TIFF and PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ccount_core.image.io import write_tiff
    from ccount_core.progress import tqdm_progress
    from ccount_core.simulation import IonGroup, SimulationSettings, TrapSettings, simulate
    from ccount_core.simulation.render import ImagingSettings

    trap = TrapSettings.from_lab_units(v_rf=200.0, v_end=2.3375, eta=0.244)
    imaging = ImagingSettings.from_lab_units()
    t0 = time.perf_counter()
    with tqdm_progress(f"simulating {DEMO_IONS} Ca+", unit="step") as progress:
        result = simulate(
            trap,
            [IonGroup("Ca+", DEMO_IONS)],
            SimulationSettings(seed=0),
            imaging,
            progress=progress,
        )
    seconds = time.perf_counter() - t0
    tif = write_tiff(
        out / "simulated_crystal.tif",
        result.image,
        pixel_size_um=imaging.pixel_size * 1e6,
        metadata={"ions": {"Ca+": DEMO_IONS}, "v_rf_V": 200.0, "v_end_V": 2.3375, "eta": 0.244},
    )
    plt.imsave(out / "simulated_crystal.png", result.image, cmap="gray")
    f_r, f_z = trap.secular_frequencies(result.species[0])
    print(
        f"simulated {DEMO_IONS} Ca+ ions in {seconds:.1f} s "
        f"(secular frequencies: radial {f_r / 1e3:.1f} kHz, axial {f_z / 1e3:.1f} kHz)"
    )
    print(f"  wrote {tif} and {out / 'simulated_crystal.png'}")
    return tif


def count_sample(out: Path, model: Path | None) -> Path | None:
    """Count the bundled sample series into ``counts.csv`` and ``counts.png``."""
    from importlib.resources import files

    from ccount_core.cli.count import WARM_UP
    from ccount_core.image.io import open_stack
    from ccount_core.nn.count import count_file
    from ccount_core.nn.counts_file import other_counts
    from ccount_core.nn.model import default_model_path
    from ccount_core.progress import tqdm_progress

    model_path = model if model is not None else default_model_path()
    if model is None and not model_path.exists():
        print(
            "no default model is shipped in this version, so the sample series is not "
            "counted (docs/MODEL.md says how to train one; pass --model FILE to use yours)"
        )
        return None
    stack_path = Path(str(files("ccount_core.data") / f"{SAMPLE}.tif"))
    meta = open_stack(stack_path).metadata["description"]  # the file's JSON; no pixels read
    truth = meta["true_counts"]["Ca+"]
    print(f"counting the {len(truth)} frames of the bundled sample series {stack_path}")
    csv_path = out / "counts.csv"
    csv_path.unlink(missing_ok=True)  # the demo always counts afresh
    t0 = time.perf_counter()
    with tqdm_progress("counting", unit="frame", warmup=WARM_UP) as progress:
        rows = count_file(stack_path, csv_path, model_path, tta=4, progress=progress)
    seconds = time.perf_counter() - t0
    others = other_counts(rows)  # a model's dark-species outputs
    print(
        f"\n{'frame':>5} {'time_s':>7} {'count':>7} {'±':>5} {'true':>5}"
        + "".join(f" {name:>7}" for name in others)
        + "  warning"
    )
    for row, true in zip(rows, truth, strict=True):
        print(
            f"{row['frame']:>5} {_fmt(row['time_s'], 7, 0)} {_fmt(row['count'], 7, 1)} "
            f"{_fmt(row['uncertainty'], 5, 1)} {true:>5}"
            + "".join(f" {_fmt(row[k], 7, 1)}" for k in others.values())
            + f"  {row['warning'] or ''}"
        )
    print(f"counted {len(rows)} frames in {seconds:.1f} s; wrote {csv_path}")
    png = plot_counts(rows, meta["true_counts"], meta.get("frame_interval_s"), out / "counts.png")
    print(f"  and {png}")
    return csv_path


def plot_counts(
    rows: list[dict[str, Any]], truth: dict[str, list[int]], interval_s: float | None, path: Path
) -> Path:
    """Ion number against time with its ±1σ band and the true numbers (species -> numbers per
    frame); a model's further outputs (dark species) beside their truth. A PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from ccount_core.nn.counts_file import other_counts

    step = interval_s or 1.0
    t = np.array([r["frame"] for r in rows], float) * step
    n = np.array([r["count"] for r in rows], float)
    s = np.array([r["uncertainty"] for r in rows], float)
    fig, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
    ax.fill_between(t, n - s, n + s, alpha=0.3, label="±1σ (test-time views)")
    ax.plot(t, n, "o-", label="counted Ca+")
    ax.plot(t, truth["Ca+"], "k--", label="true Ca+ (simulation)")
    for name, key in other_counts(rows).items():
        line = ax.plot(
            t,
            [np.nan if r[key] is None else r[key] for r in rows],
            "s-",
            markersize=3,
            label=f"counted {name}",
        )[0]
        if name in truth:
            ax.plot(t, truth[name], ":", color=line.get_color(), label=f"true {name}")
    ax.set_xlabel("time (s)" if interval_s else "frame")
    ax.set_ylabel("ions")
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _fmt(value: Any, width: int, digits: int) -> str:
    return f"{value:>{width}.{digits}f}" if isinstance(value, float | int) else " " * width
