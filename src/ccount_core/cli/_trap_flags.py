"""The trap flags ``ccount simulate`` and ``ccount match`` share (lab units), and the refusal
of any of them beside ``--trap-info``."""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping

from ccount_core.errors import InputError

TRAP_FLAGS = ("v_rf", "v_end", "eta", "rf_mhz", "r0_um", "z0_um")
_HELP = {
    "v_rf": "RF amplitude as CCMD's q uses it, V",
    "v_end": "end-cap voltage, V",
    "eta": "end-cap geometric factor η",
    "rf_mhz": "RF frequency, MHz",
    "r0_um": "trap radius r0, µm",
    "z0_um": "end-cap half-distance z0, µm",
}


def add_trap_flags(group: argparse._ArgumentGroup, defaults: Mapping[str, float]) -> None:
    """``--v-rf`` … ``--z0-um`` (None when not given, so ``--trap-info`` can refuse them);
    the help names the value used without the flag where ``defaults`` has one."""
    for name in TRAP_FLAGS:
        default = f" ({defaults[name]:g})" if name in defaults else ""
        group.add_argument(f"--{name.replace('_', '-')}", type=float, help=_HELP[name] + default)


def given_flags(args: argparse.Namespace, names: Iterable[str] = TRAP_FLAGS) -> list[str]:
    """The ``names`` whose flags were given."""
    return [n for n in names if getattr(args, n) is not None]


def refuse_beside_trap_info(args: argparse.Namespace, names: Iterable[str] = TRAP_FLAGS) -> None:
    """One line when any of ``names`` is given together with ``--trap-info``."""
    given = given_flags(args, names)
    if given:
        flags = ", ".join(f"--{n.replace('_', '-')}" for n in given)
        raise InputError(f"--trap-info: cannot be combined with {flags}")
