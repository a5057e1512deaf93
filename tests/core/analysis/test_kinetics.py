"""First-order kinetics from N(t) (``ccount_core.analysis.kinetics``): the reported 1σ of k
holds the truth as often as a 1σ should, the offset and the product are recovered, and bad
series are refused in one line."""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

import numpy as np
import pytest

from ccount_core.analysis.kinetics import (
    Series,
    fit_kinetics,
    format_value,
    read_series,
    series_from_rows,
    write_fit,
)
from ccount_core.errors import InputError
from ccount_core.nn.counts_file import META_PREFIX, OTHER_UNCERTAINTY_PREFIX, CountsWriter

TIMES = np.arange(31) * 10.0  # s


def ca_curve(t: np.ndarray, n0: float, k: float, c: float) -> np.ndarray:
    return (n0 - c) * np.exp(-k * t) + c


def count_sigma(n: np.ndarray) -> np.ndarray:
    """A count's 1σ (ions) growing with the count, as the models' validation errors do."""
    return 0.03 * n + 3.0


def random_series(rng: np.random.Generator) -> tuple[float, Series]:
    """``(true k (s⁻¹), a series with noise drawn with its stated σ)``."""
    k, n0, c = rng.uniform(0.006, 0.02), rng.uniform(250, 350), rng.uniform(0, 60)
    ca = ca_curve(TIMES, n0, k, c)
    sigma = count_sigma(ca)
    return k, Series(np.arange(len(TIMES)), TIMES, ca + rng.normal(0, sigma), sigma)


def test_one_sigma_of_k_holds_the_truth_in_about_68_percent_of_series() -> None:
    """100 series of known k: |k_fit − k| ≤ σ_k in 60-75 % of them (with this seed 69 %;
    over 2000 series 68.2 %, and 95.9 % within 2σ). Half the reported σ would hold the
    truth in 46 %, so a σ too small by 2 fails this test, and twice it in 97 %."""
    rng = np.random.default_rng(0)
    pulls = []
    for _ in range(100):
        k, series = random_series(rng)
        fit = fit_kinetics(series)
        pulls.append(abs(fit.k - k) / fit.k_sigma)
    pulls = np.array(pulls)
    assert 0.60 <= np.mean(pulls <= 1) <= 0.75
    assert not 0.60 <= np.mean(pulls <= 0.5) <= 0.75  # the check with the σ halved fails
    assert not 0.60 <= np.mean(pulls <= 2) <= 0.75  # and with it doubled


def test_offset_and_rate_are_recovered_from_an_exact_series() -> None:
    ca = ca_curve(TIMES, 300.0, 0.012, 45.0)
    fit = fit_kinetics(Series(np.arange(31), TIMES, ca, np.full(31, 5.0)))
    assert fit.values == pytest.approx({"n0": 300.0, "k": 0.012, "c": 45.0}, rel=1e-6)
    assert fit.chi2 == pytest.approx(0.0, abs=1e-12) and not fit.scaled
    assert fit.curve(TIMES)["Ca+"] == pytest.approx(ca)


def test_a_series_without_offset_gives_c_near_zero() -> None:
    rng = np.random.default_rng(1)
    ca = ca_curve(TIMES, 300.0, 0.01, 0.0)
    fit = fit_kinetics(Series(np.arange(31), TIMES, ca + rng.normal(0, 3, 31), np.full(31, 3.0)))
    assert abs(fit.values["c"]) < 3 * fit.errors["c"]
    assert abs(fit.k - 0.01) < 3 * fit.k_sigma


def test_times_count_from_the_first_fitted_frame() -> None:
    """N0 is the Ca+ number at the first frame's time, whatever the clock read then."""
    ca = ca_curve(TIMES, 300.0, 0.012, 45.0)
    fit = fit_kinetics(Series(np.arange(31), TIMES + 5000.0, ca, np.full(31, 5.0)))
    assert fit.t0_s == 5000.0
    assert fit.values == pytest.approx({"n0": 300.0, "k": 0.012, "c": 45.0}, rel=1e-6)


def test_errors_are_scaled_by_the_reduced_chi2_only_above_one() -> None:
    """Counts scattered 3x their stated σ: the errors are those of σ estimated from the
    scatter (scaled by sqrt(χ²/dof)); counts scattered less keep the stated σ's errors."""
    rng = np.random.default_rng(2)
    ca = ca_curve(TIMES, 300.0, 0.01, 30.0) + rng.normal(0, 9.0, 31)
    loud = fit_kinetics(Series(np.arange(31), TIMES, ca, np.full(31, 3.0)))
    assert loud.scaled and loud.chi2 / loud.dof > 4
    unweighted = fit_kinetics(Series(np.arange(31), TIMES, ca, None))
    assert loud.k_sigma == pytest.approx(unweighted.k_sigma, rel=1e-4)
    quiet = fit_kinetics(Series(np.arange(31), TIMES, ca, np.full(31, 30.0)))
    assert not quiet.scaled and quiet.chi2 / quiet.dof < 1
    assert quiet.k_sigma == pytest.approx(10 * loud.k_sigma / math.sqrt(loud.chi2 / loud.dof))


def test_unreported_sigmas_are_estimated_from_the_residuals() -> None:
    rng = np.random.default_rng(3)
    ca = ca_curve(TIMES, 300.0, 0.01, 30.0) + rng.normal(0, 4.0, 31)
    fit = fit_kinetics(Series(np.arange(31), TIMES, ca, None))
    assert fit.chi2 / fit.dof == pytest.approx(1.0) and not fit.scaled


def product_series(rng: np.random.Generator | None, dark_sigma: bool = True) -> Series:
    """Ca+ lost at 0.01 s⁻¹ towards 30, product from 5 gaining 0.9 per Ca+ lost."""
    ca = ca_curve(TIMES, 320.0, 0.01, 30.0)
    dark = 5.0 + 0.9 * (320.0 - 30.0) * (1 - np.exp(-0.01 * TIMES))
    s_ca, s_dark = count_sigma(ca), count_sigma(dark)
    if rng is not None:
        ca, dark = ca + rng.normal(0, s_ca), dark + rng.normal(0, s_dark)
    return Series(np.arange(31), TIMES, ca, s_ca, "ND3+", dark, s_dark if dark_sigma else None)


def test_product_model_recovers_every_parameter_from_an_exact_series() -> None:
    fit = fit_kinetics(product_series(None), "first-order-to-product")
    expected = {"n0": 320.0, "k": 0.01, "c": 30.0, "p0": 5.0, "y": 0.9}
    assert fit.values == pytest.approx(expected, rel=1e-6)
    assert set(fit.curve(TIMES)) == {"Ca+", "ND3+"}


def test_the_product_narrows_k() -> None:
    """The dark count is a second measurement of the same k: its σ shrinks, and the truth
    stays within 3σ."""
    series = product_series(np.random.default_rng(4))
    joint = fit_kinetics(series, "first-order-to-product")
    alone = fit_kinetics(series, "first-order")
    assert joint.k_sigma < alone.k_sigma
    assert abs(joint.k - 0.01) < 3 * joint.k_sigma
    assert abs(joint.values["y"] - 0.9) < 3 * joint.errors["y"]
    assert joint.dof == 2 * 31 - 5


def test_product_without_its_sigma_is_weighted_by_the_residuals() -> None:
    fit = fit_kinetics(product_series(np.random.default_rng(5), False), "first-order-to-product")
    assert abs(fit.k - 0.01) < 3 * fit.k_sigma


def test_product_model_on_a_dark_free_series_is_refused() -> None:
    series = Series(np.arange(31), TIMES, ca_curve(TIMES, 300.0, 0.01, 0.0), np.ones(31))
    with pytest.raises(InputError, match="dark species"):
        fit_kinetics(series, "first-order-to-product")


@pytest.mark.parametrize(
    ("ca", "message"),
    [
        (np.full(31, 200.0), "the series is flat"),
        (200.0 + np.random.default_rng(6).normal(0, 5, 31), "the series is flat"),
        (100.0 + TIMES, "the series is flat"),
        (300.0 - 200.0 * np.exp(-0.02 * TIMES), "the series is flat"),
    ],
    ids=["constant", "noise", "rising-line", "rising-exponential"],
)
def test_a_flat_or_rising_series_is_refused(ca: np.ndarray, message: str) -> None:
    with pytest.raises(InputError, match=message):
        fit_kinetics(Series(np.arange(31), TIMES, ca, np.full(31, 5.0)))


def test_a_fall_complete_at_the_second_frame_is_refused() -> None:
    ca = np.r_[300.0, np.full(30, 100.0)]
    with pytest.raises(InputError, match="falls within the first interval"):
        fit_kinetics(Series(np.arange(31), TIMES, ca, np.full(31, 5.0)))


def test_too_few_frames_are_refused() -> None:
    t = TIMES[:3]
    with pytest.raises(InputError, match=r"too few frames: 3 counted.*at least 4"):
        fit_kinetics(Series(np.arange(3), t, ca_curve(t, 300, 0.01, 0), np.ones(3)))
    five = Series(np.arange(5), TIMES[:5], np.ones(5), np.ones(5), "ND3+", np.ones(5), None)
    with pytest.raises(InputError, match=r"too few frames: 5 counted.*at least 6"):
        fit_kinetics(five, "first-order-to-product")


def test_format_value_matches_the_digits_to_the_error() -> None:
    assert format_value(0.0083312, 0.000213) == "0.00833 ± 0.00021"
    assert format_value(352.4, 12.3) == "352 ± 12"
    assert format_value(1234.0, 345.0) == "1230 ± 340"
    assert format_value(0.0, 9.6e12) == "0 ± 9.6e+12"
    assert format_value(0.5, math.nan) == "0.5"


# --- counts rows and files ------------------------------------------------------------------


def rows(n: int = 12, **changes: dict[str, object]) -> list[dict[str, object]]:
    """Core count rows of an exact series (k 0.01 s⁻¹ at 10 s per frame); ``changes``:
    frame number (as ``f3``) -> cells to change."""
    out = []
    for f in range(n):
        count = float(ca_curve(np.array(f * 10.0), 300.0, 0.01, 40.0))
        row = {"frame": f, "time_s": f * 10.0, "count": count, "uncertainty": 5.0, "warning": ""}
        row |= changes.get(f"f{f}", {})
        out.append(row)
    return out


def write_counts(path: Path, table: list[dict[str, object]], others: tuple[str, ...] = ()) -> Path:
    """A counts CSV as ``count_file`` writes it (first line, columns, rows)."""
    with path.open("w", newline="") as fh:
        fh.write(META_PREFIX + '{"label_names": ["Ca+"]}\n')
        writer = CountsWriter(fh, others)
        writer.write_column_names()
        writer.write(table)
    return path


def test_frames_not_counted_are_skipped_and_warned_ones_fitted(tmp_path: Path) -> None:
    table = rows(f3={"count": None, "uncertainty": None, "warning": "not counted: no crystal"})
    table[5]["warning"] = "count outside the training range 30-350"
    series = read_series(write_counts(tmp_path / "c.csv", table))
    assert series.skipped == ("3",) and len(series.times_s) == 11
    assert any("1 fitted frames carry a warning" in note for note in series.notes)
    assert fit_kinetics(series).k == pytest.approx(0.01, rel=1e-3)  # counts written to 0.01


def test_a_dark_sigma_column_weights_the_product(tmp_path: Path) -> None:
    table = rows()
    for r in table:
        r |= {"count_ND3+": 300.0 - float(r["count"]), f"{OTHER_UNCERTAINTY_PREFIX}ND3+": 2.0}
    series = series_from_rows(table, "first-order-to-product")
    assert series.dark_name == "ND3+" and series.dark_sigma == pytest.approx(np.full(12, 2.0))
    fit = fit_kinetics(series, "first-order-to-product")
    assert fit.values["y"] == pytest.approx(1.0, rel=1e-6)
    # as read back from a file (strings), without the σ column
    for r in table:
        del r[f"{OTHER_UNCERTAINTY_PREFIX}ND3+"]
    read = read_series(write_counts(tmp_path / "d.csv", table, ("ND3+",)), "first-order-to-product")
    assert read.dark_sigma is None and read.dark == pytest.approx(series.dark, abs=0.01)
    assert any("no 1σ reported for every ND3+ count" in note for note in read.notes)


@pytest.mark.parametrize(
    ("table", "model", "product", "message"),
    [
        (rows(f4={"time_s": None}), "first-order", None, "time_s: frame 4 has no time"),
        (rows(f4={"time_s": 30.0}), "first-order", None, "time_s: the times do not increase"),
        (rows(), "first-order-to-product", None, "needs a dark-species count"),
        (rows(), "first-order", "ND3+", "product: only the first-order-to-product"),
        (rows(), "second-order", None, "model: expected one of"),
        (
            rows(f2={"count": "lots"}),
            "first-order",
            None,
            "count: not a number in the counts: 'lots'",
        ),
    ],
    ids=["no-time", "times-not-increasing", "no-dark", "product-first-order", "model", "text"],
)
def test_bad_rows_are_refused(
    table: list[dict[str, object]], model: str, product: str | None, message: str
) -> None:
    with pytest.raises(InputError, match=message):
        series_from_rows(table, model, product)


def test_an_unknown_or_ambiguous_product_is_refused() -> None:
    table = [r | {"count_ND3+": 1.0, "count_CaF+": 2.0} for r in rows()]
    with pytest.raises(InputError, match="several dark species"):
        series_from_rows(table, "first-order-to-product")
    with pytest.raises(InputError, match=re.escape("no count of 'N2H+'")):
        series_from_rows(table, "first-order-to-product", "N2H+")
    assert series_from_rows(table, "first-order-to-product", "CaF+").dark == pytest.approx(
        np.full(12, 2.0)
    )


def test_files_that_are_not_counts_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"none\.csv: no such counts file"):
        read_series(tmp_path / "none.csv")
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match=r"x\.csv: not a ccount counts file"):
        read_series(tmp_path / "x.csv")


def test_the_fit_file_holds_the_curve_and_residuals(tmp_path: Path) -> None:
    table = rows(f1={"count": 280.0})
    fit = fit_kinetics(series_from_rows(table))
    path = write_fit(fit, tmp_path / "fit.csv")
    lines = path.read_text().splitlines()
    assert lines[0].startswith("# ccount kinetics {")
    written = list(csv.DictReader(lines[1:]))
    assert list(written[0]) == ["frame", "time_s", "count_Ca+", "fit_Ca+", "residual_Ca+"]
    assert len(written) == 12
    fitted = fit.curve(np.array([10.0]))["Ca+"][0]
    assert float(written[1]["fit_Ca+"]) == pytest.approx(fitted, abs=0.005)
    assert float(written[1]["residual_Ca+"]) == pytest.approx(280.0 - fitted, abs=0.01)
