"""Validation of numeric parameters: one rule set and one message style for the whole core.

Every check raises :class:`~ccount_core.errors.InputError` with one line of the form
``"<name>: expected <what>, got <value!r>"``, so the CLI and the plugin show the same text.
"""

from __future__ import annotations

import math

import numpy as np

from ccount_core.errors import InputError


def check_number(
    name: str,
    value: object,
    *,
    positive: bool = False,
    nonnegative: bool = False,
    low: float | None = None,
    numpy_scalars: bool = False,
) -> float:
    """``value`` as a float after checking that it is a finite number within the bounds.

    Args:
        name: how the message names the parameter (e.g. ``"trap v_rf"``).
        value: the number. ``int`` and ``float`` are accepted (``bool`` never is); numpy
            integer and floating scalars only with ``numpy_scalars``.
        positive: require ``value > 0``.
        nonnegative: require ``value >= 0``.
        low: require ``value >= low``.
        numpy_scalars: also accept ``np.integer`` and ``np.floating`` scalars.

    Raises:
        InputError: one line naming ``name``, the value and what was expected.
    """
    types: tuple[type, ...] = (
        (int, float, np.integer, np.floating) if numpy_scalars else (int, float)
    )
    if isinstance(value, bool) or not isinstance(value, types):
        raise InputError(f"{name}: expected a number, got {value!r}")
    return _in_range(name, value, value, positive, nonnegative, low)


def check_integer(name: str, value: object, low: int) -> int:
    """``value`` as an int after checking that it is an integer (``int`` or a numpy integer,
    never ``bool``) of at least ``low``; else one-line :class:`InputError` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InputError(f"{name}: expected an integer, got {value!r}")
    if value < low:
        raise InputError(f"{name}: must be at least {low}, got {value}")
    return int(value)


def parse_number(name: str, text: str | None) -> float:
    """The finite number written in ``text`` (Python's ``float`` syntax; None is refused).

    Raises:
        InputError: one line naming ``name`` and the text when it is not a finite number.
    """
    try:
        value = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InputError(f"{name}: expected a number, got {text!r}") from None
    return _in_range(name, value, text, False, False, None)


def _in_range(
    name: str,
    value: object,
    shown: object,
    positive: bool,
    nonnegative: bool,
    low: float | None,
) -> float:
    """``float(value)`` if finite and within the bounds; ``shown`` is what the message quotes."""
    try:
        x = float(value)  # type: ignore[arg-type]
    except OverflowError:  # an int too large for a float
        x = math.inf
    if positive:
        what = "a finite positive number"
    elif nonnegative:
        what = "a finite number >= 0"
    elif low is not None:
        what = f"a finite number >= {low:g}"
    else:
        what = "a finite number"
    if (
        not math.isfinite(x)
        or (positive and x <= 0)
        or (nonnegative and x < 0)
        or (low is not None and x < low)
    ):
        raise InputError(f"{name}: expected {what}, got {shown!r}")
    return x
