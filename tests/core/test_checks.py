"""The shared numeric validators of ccount_core.checks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ccount_core.checks import check_integer, check_number, parse_number
from ccount_core.errors import InputError


def test_numbers_come_back_as_floats() -> None:
    assert check_number("x", 3) == 3.0 and isinstance(check_number("x", 3), float)
    assert check_number("x", -2.5) == -2.5
    assert check_number("x", np.float32(1.5), numpy_scalars=True) == 1.5
    assert check_number("x", np.int64(4), numpy_scalars=True) == 4.0


@pytest.mark.parametrize("value", [True, False, "1.5", None, [1.0], np.float32(1.0), 1 + 0j])
def test_non_numbers_and_bools_are_refused(value: object) -> None:
    with pytest.raises(InputError, match="expected a number"):
        check_number("x", value)


def test_bools_are_refused_even_with_numpy_scalars() -> None:
    with pytest.raises(InputError):
        check_number("x", True, numpy_scalars=True)
    with pytest.raises(InputError):
        check_number("x", np.bool_(True), numpy_scalars=True)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 10**400])
def test_non_finite_values_are_refused(value: object) -> None:
    with pytest.raises(InputError, match="finite"):
        check_number("x", value)


@pytest.mark.parametrize(
    ("kwargs", "bad", "good"),
    [
        ({"positive": True}, 0.0, 1e-300),
        ({"nonnegative": True}, -1e-300, 0.0),
        ({"low": 1.0}, 0.999, 1.0),
    ],
)
def test_bounds(kwargs: dict, bad: float, good: float) -> None:
    assert check_number("x", good, **kwargs) == good
    with pytest.raises(InputError):
        check_number("x", bad, **kwargs)


def test_message_is_one_line_naming_parameter_value_and_expectation() -> None:
    with pytest.raises(InputError) as exc:
        check_number("camera em_gain", 0.5, low=1.0)
    assert str(exc.value) == "camera em_gain: expected a finite number >= 1, got 0.5"
    with pytest.raises(InputError) as exc:
        check_number("trap r0", -2, positive=True)
    assert str(exc.value) == "trap r0: expected a finite positive number, got -2"
    assert "\n" not in str(exc.value)


def test_parse_number_reads_text() -> None:
    assert parse_number("x", " 1.5e3 ") == 1500.0
    for text in ("two", "", None, "nan", "inf"):
        with pytest.raises(InputError, match=r"^where: x: expected a (finite )?number, got"):
            parse_number("where: x", text)


def test_check_integer_takes_whole_numbers_from_low_up() -> None:
    assert check_integer("batch_size", 8, 1) == 8
    assert check_integer("tta", np.int64(0), 0) == 0
    for bad, message in (
        (True, "batch_size: expected an integer, got True"),
        (2.0, "batch_size: expected an integer, got 2.0"),
        ("3", "batch_size: expected an integer, got '3'"),
        (0, "batch_size: must be at least 1, got 0"),
    ):
        with pytest.raises(InputError) as err:
            check_integer("batch_size", bad, 1)
        assert str(err.value) == message
