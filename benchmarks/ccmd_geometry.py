"""Crystal lengths and widths from ccount's simulator against CCMD's (issue point 9).

Picks a stratified spread of rows of benchmarks/data/ccmd_crystal_geometry.csv (pure Ca+,
up to 600 ions: every η × ion-number band, V_RF and V_end drawn at random with a fixed seed),
simulates each with ccount's default SimulationSettings, renders at CCMD's imaging settings
(1 px/µm, blur 5 µm, dof 50 µm, 640 × 480, trap axis along the long side) and measures the
crystal exactly as the reference table was measured (ccount_core.image.geometry).

Rows are appended to a results CSV as they finish, so a killed run resumes where it stopped.
``--report`` writes the markdown table (docs/CCMD_COMPARISON.md) from the results.

    nice -n 0 .venv/bin/python benchmarks/ccmd_geometry.py --rows 48
    .venv/bin/python benchmarks/ccmd_geometry.py --rows 48 --report docs/CCMD_COMPARISON.md
    .venv/bin/python benchmarks/ccmd_geometry.py --time-render   # render() cost alone
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "benchmarks" / "data" / "ccmd_crystal_geometry.csv"
RESULTS = Path.home() / ".cache" / "ccount" / "ccmd_geometry_results.csv"
FIELDS = [
    "row",
    "eta",
    "vrf",
    "vend",
    "n_ca",
    "length_um",
    "width_um",
    "sim_length_um",
    "sim_width_um",
    "dev_length",
    "dev_width",
    "seconds",
]
N_BANDS = ((50, 150), (200, 300), (350, 450), (500, 600))

NOTES = """
## What is matched, and what we found

Conventions taken from CCMD's source (softleygroup/ccmd: `ImageHistogramListener`, `Hist3D`,
`Microscope_image`, `Image`) and from the scripts that measured the table
(sgkstev2/Coulomb-Crystal-Geometry-Scripts, `Ca_ellipse_fit.py`):

- **Image model** (`ccount_core.simulation.render`): positions
  binned at one pixel in all three axes;
  each depth slice blurred with σ = (w0/√2)(1 + |Δ|/dof), w0 the "blur" (5 µm), Δ the slice's
  distance from the focal plane through the trap centre; CCMD normalises each 1-D kernel by
  the square of its sum, which weights a slice by 1/(2πσ²): we keep that weighting
  (`defocus_weighting="ccmd"`) relative to the in-focus width. PNG: normalised to the maximum,
  × 254, truncated to 8 bits.
- **View direction**: CCMD histograms the positions turned by 45° about the trap axis,
  ((x + y)/√2, (x − y)/√2, z), and images along (x + y)/√2, between the RF electrode planes.
  The radial micromotion runs along x and y with amplitude ≈ (q/2)·r, so a camera looking
  along y sees the outermost ions smeared by ±(q/2)·r along the rows, whereas at 45° the two
  components cancel in the image plane for the ions that form the outline. Viewed along y
  (variant "viewed at 0°"), widths come out ≈ 4 % larger than CCMD's; at CCMD's 45°
  (`view_azimuth_deg`, default 45) the width bias drops to the figures above.
- **Measurement** (`ccount_core.image.geometry.measure_crystal_size`): 8-bit level > 5, outline =
  mask XOR erosion, 1.65 σ z-score cut in x and y, the script's frame window, bounded
  `least_squares` ellipse fit started from the outline's bounding box; length = 2a (trap
  axis), width = 2b.
- **Temperature**: the reference files (`CCMD-Generator.py`) switch heating on with the key
  `heated`, which CCMD does not read (it reads `heating`, default false); CCMD's recoil
  heating is negligible anyway (nK, docs/PHYSICS.md), so CCMD's crystals sit at the floor set
  by RF heating against the β = 0.8 friction, a few mK. ccount's default bath, 10 mK, gives
  crystals ≈ 1 % longer and ≈ 2 % wider than CCMD's; at 3 mK (variant "at 3 mK") the median
  deviations fall to a few tenths of a percent, but a few long, weakly confined crystals
  (η = 0.1, 50-300 ions) come out up to ≈ 7 % short: at 3 mK their ions are resolved spots, the
  8-bit mask breaks up, and the outline of the holes inside it pulls the ellipse inwards.
  CCMD averages over 10,000 RF periods (`histperiods`), during which such crystals rearrange and
  their image smooths; our 200-period gathering at 10 mK gives the same smooth outline.
  Both settings meet the 5 % goal; the default (10 mK) has the smaller worst case.
"""


def pick_rows(reference: Path, n_rows: int, seed: int = 0) -> list[dict[str, float]]:
    """A stratified spread of reference rows: equal shares per (η, ion-number band)."""
    with reference.open() as fh:
        table = [
            {k: float(v) for k, v in row.items()} | {"row": i}
            for i, row in enumerate(csv.DictReader(fh))
        ]
    rng = np.random.default_rng(seed)
    strata = [
        [r for r in table if r["eta"] == eta and lo <= r["n_ca"] <= hi]
        for eta in sorted({r["eta"] for r in table})
        for lo, hi in N_BANDS
    ]
    per = int(np.ceil(n_rows / len(strata)))
    chosen = [[s[i] for i in rng.choice(len(s), size=per, replace=False)] for s in strata]
    # Interleave the strata so that a partial run already covers the whole range.
    ordered = [c[k] for k in range(per) for c in chosen]
    return ordered[:n_rows]


def measure_row(
    row: dict[str, float], temperature_k: float | None = None, view_azimuth_deg: float = 45.0
) -> dict[str, float]:
    """Simulate, render and measure one reference row (default simulation settings, or
    these with the bath temperature ``temperature_k``; CCMD's view unless told)."""
    from ccount_core.image.geometry import measure_crystal_size
    from ccount_core.simulation import IonGroup, SimulationSettings, TrapSettings, simulate
    from ccount_core.simulation.render import ImagingSettings

    t0 = time.perf_counter()
    trap = TrapSettings.from_lab_units(v_rf=row["vrf"], v_end=row["vend"], eta=row["eta"])
    settings = SimulationSettings(seed=int(row["row"]))
    if temperature_k is not None:
        settings = SimulationSettings(seed=int(row["row"]), temperature=temperature_k)
    imaging = ImagingSettings(view_azimuth_deg=view_azimuth_deg)
    result = simulate(trap, [IonGroup("Ca+", int(row["n_ca"]))], settings, imaging)
    size = measure_crystal_size(result.image)
    return row | {
        "sim_length_um": size.length_um,
        "sim_width_um": size.width_um,
        "dev_length": size.length_um / row["length_um"] - 1.0,
        "dev_width": size.width_um / row["width_um"] - 1.0,
        "seconds": time.perf_counter() - t0,
    }


def load_results(path: Path) -> dict[int, dict[str, float]]:
    if not path.exists():
        return {}
    with path.open() as fh:
        return {
            int(float(r["row"])): {k: float(v) for k, v in r.items()} for r in csv.DictReader(fh)
        }


def append_result(path: Path, result: dict[str, float]) -> None:
    """Append one row (header first); a line is written in one call, so a kill loses at
    most the row being simulated."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    line = ",".join(f"{result[k]:.6g}" if k != "row" else str(int(result[k])) for k in FIELDS)
    with path.open("a") as fh:
        if new:
            fh.write(",".join(FIELDS) + "\n")
        fh.write(line + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def summary(results: list[dict[str, float]]) -> tuple[float, float]:
    """Median absolute relative deviation of length and of width."""
    dl = np.median([abs(r["dev_length"]) for r in results])
    dw = np.median([abs(r["dev_width"]) for r in results])
    return float(dl), float(dw)


def results_path(base: Path, temperature_mk: float | None, view_deg: float = 45.0) -> Path:
    """The results CSV of a run: ``base`` for the defaults, else tagged with the changes."""
    tag = "" if temperature_mk is None else f"_{temperature_mk:g}mK"
    tag += "" if view_deg == 45.0 else f"_view{view_deg:g}deg"
    return base.with_name(f"{base.stem}{tag}{base.suffix}")


def write_report(
    results: list[dict[str, float]],
    path: Path,
    command: str,
    extra: dict[str, dict[int, dict[str, float]]],
) -> None:
    dl, dw = summary(results)
    bias_l = float(np.median([r["dev_length"] for r in results]))
    bias_w = float(np.median([r["dev_width"] for r in results]))
    lines = [
        "# Simulator against CCMD: crystal length and width",
        "",
        "ccount's simulator (default `SimulationSettings`, pure Ca+) rendered at CCMD's imaging",
        "settings (1 px/µm, blur 5 µm, dof 50 µm, 640 × 480, trap axis along the long side) and",
        "measured exactly as the reference table was "
        "(`ccount_core.image.geometry.measure_crystal_size`:",
        "8-bit image, pixels > 5, outline = mask minus its erosion, 1.65 σ outlier cut, least-",
        "squares axis-aligned ellipse), against CCMD's lengths and widths in",
        "`benchmarks/data/ccmd_crystal_geometry.csv`.",
        "",
        f"- rows: {len(results)} (stratified over η × ion-number bands 50-600, V_RF and V_end"
        " drawn with a fixed seed)",
        f"- **median |relative deviation|: length {100 * dl:.1f} %, width {100 * dw:.1f} %**"
        " (goal < 5 % each)",
        f"- median signed deviation (ccount − CCMD): length {100 * bias_l:+.1f} %, width"
        f" {100 * bias_w:+.1f} %",
        f"- command: `{command}`",
        f"- machine: dev-2c (2-core x86-64, 24 GB, no GPU, shared with other jobs);"
        f" {platform.python_implementation()} {platform.python_version()};"
        f" date {time.strftime('%Y-%m-%d')}",
    ]
    for label, runs in extra.items():
        same = [runs[int(r["row"])] for r in results if int(r["row"]) in runs]
        if same:
            el, ew = summary(same)
            bl = float(np.median([o["dev_length"] for o in same]))
            bw = float(np.median([o["dev_width"] for o in same]))
            worst_l = max(abs(o["dev_length"]) for o in same)
            worst_w = max(abs(o["dev_width"]) for o in same)
            lines.append(
                f"- variant {label} ({len(same)} rows): median |deviation| length"
                f" {100 * el:.1f} %, width {100 * ew:.1f} %; signed {100 * bl:+.1f} %,"
                f" {100 * bw:+.1f} %; worst {100 * worst_l:.1f} %, {100 * worst_w:.1f} %"
            )
    worst_l = max(abs(r["dev_length"]) for r in results)
    worst_w = max(abs(r["dev_width"]) for r in results)
    lines.insert(11, f"- worst row: length {100 * worst_l:.1f} %, width {100 * worst_w:.1f} %")
    lines += ["", NOTES.strip(), ""]
    head = (
        "| row | η | V_RF (V) | V_end (V) | Ca+ | CCMD L (µm) | ccount L (µm) | ΔL | "
        "CCMD W (µm) | ccount W (µm) | ΔW | s |"
    )
    rule = "|---|---|---|---|---|---|---|---|---|---|---|---|"
    for label in extra:
        head += f" ΔL, ΔW {label} |"
        rule += "---|"
    lines += [head, rule]
    for r in sorted(results, key=lambda r: (r["eta"], r["n_ca"], r["vrf"], r["vend"])):
        line = (
            f"| {int(r['row'])} | {r['eta']:g} | {r['vrf']:g} | {r['vend']:g} | {int(r['n_ca'])}"
            f" | {r['length_um']:.1f} | {r['sim_length_um']:.1f} | {100 * r['dev_length']:+.1f} %"
            f" | {r['width_um']:.1f} | {r['sim_width_um']:.1f} | {100 * r['dev_width']:+.1f} %"
            f" | {r['seconds']:.0f} |"
        )
        for runs in extra.values():
            o = runs.get(int(r["row"]))
            line += (
                f" {100 * o['dev_length']:+.1f} %, {100 * o['dev_width']:+.1f} % |" if o else " |"
            )
        lines.append(line)
    path.write_text("\n".join(lines) + "\n")


def time_render(n_ions: int = 300, repeats: int = 20) -> None:
    """Best-of wall and CPU time of render() for one simulated crystal at CCMD's settings
    (render is single-threaded numpy/scipy: CPU time is the steadier figure when shared)."""
    from ccount_core.simulation import IonGroup, SimulationSettings, TrapSettings, simulate
    from ccount_core.simulation.render import ImagingSettings, render

    trap = TrapSettings.from_lab_units(v_rf=200.0, v_end=2.3375, eta=0.244)
    result = simulate(trap, [IonGroup("Ca+", n_ions)], SimulationSettings(seed=0))
    imaging = ImagingSettings()
    s, n = result.samples.shape[:2]
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        render(result.samples, result.fluorescing, imaging)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    print(
        f"render: {n} ions x {s} samples = {n * s} points, 640 x 480: wall best "
        f"{min(wall) * 1e3:.0f} ms (median {np.median(wall) * 1e3:.0f} ms), CPU best "
        f"{min(cpu) * 1e3:.0f} ms (median {np.median(cpu) * 1e3:.0f} ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=48, help="number of reference rows")
    parser.add_argument("--results", type=Path, default=RESULTS, help="results CSV (resumed)")
    parser.add_argument("--reference", type=Path, default=REFERENCE)
    parser.add_argument(
        "--temperature-mk",
        type=float,
        help="bath temperature, mK (default: SimulationSettings' default)",
    )
    parser.add_argument(
        "--view-azimuth-deg",
        type=float,
        default=45.0,
        help="line of sight (45 = CCMD's view between the electrodes)",
    )
    parser.add_argument("--report", type=Path, help="write the markdown table here and stop")
    parser.add_argument(
        "--also-mk",
        type=float,
        nargs="*",
        default=[],
        help="with --report: add the runs made at these temperatures, mK",
    )
    parser.add_argument(
        "--also-view",
        type=float,
        nargs="*",
        default=[],
        help="with --report: add the runs made with these view angles, deg",
    )
    parser.add_argument("--commit", default="", help="with --report: the commit that ran")
    parser.add_argument("--time-render", action="store_true", help="time render() and stop")
    args = parser.parse_args()
    if args.time_render:
        time_render()
        return

    rows = pick_rows(args.reference, args.rows)
    results_file = results_path(args.results, args.temperature_mk, args.view_azimuth_deg)
    done = load_results(results_file)
    temperature_k = None if args.temperature_mk is None else args.temperature_mk * 1e-3
    if args.report:
        results = [done[int(r["row"])] for r in rows if int(r["row"]) in done]
        command = f"nice -n 0 .venv/bin/python benchmarks/ccmd_geometry.py --rows {args.rows}"
        if args.commit:
            command += f"` at commit `{args.commit}"
        extra = {f"at {t:g} mK": load_results(results_path(args.results, t)) for t in args.also_mk}
        extra |= {
            f"viewed at {v:g}°": load_results(results_path(args.results, None, v))
            for v in args.also_view
        }
        command += "`; variants: the same rows and seeds with `--temperature-mk T` or "
        command += "`--view-azimuth-deg V`; this page: `.venv/bin/python "
        command += f"benchmarks/ccmd_geometry.py --rows {args.rows} --report {args.report}"
        command += "".join(f" --also-mk {t:g}" for t in args.also_mk)
        command += "".join(f" --also-view {v:g}" for v in args.also_view)
        write_report(results, args.report, command, extra)
        dl, dw = summary(results)
        print(f"{len(results)} rows: median |dev| length {100 * dl:.2f} %, width {100 * dw:.2f} %")
        return
    for i, row in enumerate(rows):
        if int(row["row"]) in done:
            continue
        result = measure_row(row, temperature_k, args.view_azimuth_deg)
        append_result(results_file, result)
        print(
            f"[{i + 1}/{len(rows)}] eta {row['eta']:g} vrf {row['vrf']:g} vend {row['vend']:g}"
            f" n {int(row['n_ca'])}: L {result['sim_length_um']:.1f}/{row['length_um']:.1f}"
            f" ({100 * result['dev_length']:+.1f} %), W {result['sim_width_um']:.1f}/"
            f"{row['width_um']:.1f} ({100 * result['dev_width']:+.1f} %) in"
            f" {result['seconds']:.0f} s",
            flush=True,
        )


if __name__ == "__main__":
    main()
