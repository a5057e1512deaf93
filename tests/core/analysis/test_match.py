"""Simulated-image matching (``ccount_core.analysis.match``): the search recovers a known
crystal, the parabola search finds a known minimum, the CSV and images resume after a kill."""

from __future__ import annotations

import csv
import dataclasses

import numpy as np
import pytest
import tifffile

from ccount_core.analysis import match
from ccount_core.errors import InputError
from ccount_core.image.io import write_tiff
from ccount_core.simulation import IonGroup, SimulationSettings, TrapSettings, simulate
from ccount_core.simulation.render import ImagingSettings

TRAP = TrapSettings.from_lab_units(v_rf=200.0, v_end=2.3375)
IMAGING = ImagingSettings.from_lab_units(pixel_size_um=1.5, shape=(96, 160))


def crystal(n: int, seed: int) -> np.ndarray:
    """A noise-free image of ``n`` Ca+ at 1.5 µm/px, seeded apart from the search's seeds."""
    sim = SimulationSettings(seed=seed)
    return simulate(TRAP, [IonGroup("Ca+", n)], sim, IMAGING).image


def test_search_recovers_a_known_crystal_within_its_interval() -> None:
    """40 Ca+ (seed 11) from a start 15 % high: the best lies within 2 ions and its interval
    holds the truth."""
    m = match.match_frame(crystal(40, 11), 1.5, TRAP, start_ca=46)
    assert abs(m.n_ca - 40) <= 2.0
    assert m.interval_ca[0] <= 40 <= m.interval_ca[1]
    assert m.interval_ca[1] - m.interval_ca[0] < 12
    assert m.image.shape == (96, 160) and m.residual_image.shape == (96, 160)
    assert m.residual_um < 2.0 and m.n_dark is None


def test_dark_search_recovers_both_numbers() -> None:
    """60 Ca+ around 20 ND3+ (seed 11) from the start 66 + 17: both within 3 ions, each
    within twice its interval's half-width of the truth (the interval, where the residual
    grows by √2, held the truth on 12 and 14 of the reaction series' 15 dark-core frames;
    here Ca+ 57.6 [55.8, 59.5])."""
    sim = SimulationSettings(seed=11)
    frame = simulate(TRAP, [IonGroup("Ca+", 60), IonGroup("ND3+", 20)], sim, IMAGING).image
    m = match.match_frame(frame, 1.5, TRAP, 66, 17, match.MatchSettings(dark="ND3+"))
    assert abs(m.n_ca - 60) <= 3 and abs(m.n_dark - 20) <= 3
    for best, (lo, hi), truth in ((m.n_ca, m.interval_ca, 60), (m.n_dark, m.interval_dark, 20)):
        assert lo < best < hi and abs(best - truth) <= hi - lo


def test_candidates_are_masked_with_at_least_the_frames_window() -> None:
    """A candidate is prepared with its own fitted centre and direction and semi-axes at
    least the frame's: a crystal much shorter than the frame's keeps the frame's window (its
    faint tips are not cut where a fit of its own would end), a longer one its own."""
    frame = crystal(40, 11)
    m = match.Matcher(frame, 1.5, TRAP, match.MatchSettings())
    small, large = crystal(15, 12), crystal(75, 12)
    own = match.fit_ellipse(small)
    window = m.window(small)
    assert own.semi_major < 0.9 * m.ellipse.semi_major
    assert (window.semi_major, window.semi_minor) == (m.ellipse.semi_major, m.ellipse.semi_minor)
    assert (window.center_row, window.center_col, window.angle_deg) == (
        own.center_row,
        own.center_col,
        own.angle_deg,
    )
    own_large = match.fit_ellipse(large)
    assert own_large.semi_major > 1.1 * m.ellipse.semi_major
    assert m.window(large).semi_major == own_large.semi_major


def test_line_search_finds_the_minimum_of_a_parabola_and_its_interval() -> None:
    """D = (x − 7.3)² + 4 from 2 on steps of 1: the minimum 7.3 (an edge start, so the grid
    widens), interval where D = 2 × 4, i.e. 7.3 ± 2."""
    seen: list[float] = []

    def dist(x: float) -> float:
        seen.append(x)
        return (x - 7.3) ** 2 + 4.0

    r = match.line_search(dist, 2.0, 1.0, 0.0)
    assert r.best == pytest.approx(7.3)
    assert (r.lo, r.hi) == (pytest.approx(5.3), pytest.approx(9.3))
    assert r.residual == pytest.approx(4.0)
    assert max(seen) >= 8.0


def test_signature_moves_with_the_crystal_size() -> None:
    """The size measure of a 60-ion crystal is 1.3-1.7 × that of a 40-ion one (volume ∝ N)."""
    big = match.Matcher(crystal(60, 3), 1.5, TRAP, match.MatchSettings())
    small = match.Matcher(crystal(40, 3), 1.5, TRAP, match.MatchSettings())
    assert 1.3 < big.target_size() / small.target_size() < 1.7


@pytest.mark.parametrize(
    ("spec", "frames"), [(None, [0, 1, 2, 3]), ("0-1,3", [0, 1, 3]), ("2-", [2, 3]), ("1,1", [1])]
)
def test_parse_frames(spec: str | None, frames: list[int]) -> None:
    assert match.parse_frames(spec, 4) == frames


@pytest.mark.parametrize("spec", ["4", "2-1", "a", "-1"])
def test_parse_frames_refuses(spec: str) -> None:
    with pytest.raises(InputError, match="--frames"):
        match.parse_frames(spec, 4)


def test_csv_columns_and_resume_after_a_kill(tmp_path, monkeypatch) -> None:
    """A run killed in frame 1 leaves frame 0's row and image; the rerun adds frame 1 only,
    and the CSV holds the documented columns."""
    stack = np.stack([crystal(30, 5), crystal(36, 6)]) * 1000 + 100
    write_tiff(tmp_path / "s.tif", stack.astype(np.float32), pixel_size_um=1.5)
    out = tmp_path / "m.csv"

    def kill_in_frame_1(done: int, total: int) -> None:
        if done >= total // 2 + 1:
            raise KeyboardInterrupt

    fast = dataclasses.replace(
        match.MatchSettings(),
        simulation=SimulationSettings(equilibrate_periods=20, gather_periods=40, samples=40),
    )
    with pytest.raises(KeyboardInterrupt):
        match.match_file(tmp_path / "s.tif", out, TRAP, settings=fast, progress=kill_in_frame_1)
    with out.open("a") as fh:
        fh.write("1,,99")  # a line a killed writer cut short
    rows = match.match_file(tmp_path / "s.tif", out, TRAP, settings=fast)
    assert [r["frame"] for r in rows] == [1]
    lines = out.read_text().splitlines()
    assert lines[0].startswith(match.META_PREFIX)
    table = list(csv.DictReader(lines[1:]))
    assert list(table[0]) == match.columns(None)
    assert [int(r["frame"]) for r in table] == [0, 1]
    for r, truth in zip(table, (30, 36), strict=True):
        assert abs(float(r["n_ca"]) - truth) <= 0.1 * truth
    images = tifffile.imread(tmp_path / "m.tif")
    assert images.shape == stack.shape and all(im.max() > 100 for im in images)
    assert match.match_file(tmp_path / "s.tif", out, TRAP, settings=fast) == []


def test_dark_columns_and_bad_settings() -> None:
    assert match.columns("ND3+")[6:10] == ["n_ND3+", "n_ND3+_lo", "n_ND3+_hi", "net_ND3+"]
    with pytest.raises(InputError, match="laser-cooled"):
        match.MatchSettings(dark="Ca+")
    unstable = TrapSettings.from_lab_units(v_rf=5000.0, v_end=2.3375)
    with pytest.raises(InputError, match="v_rf"):
        match.check_trap(unstable, None)
