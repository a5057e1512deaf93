"""Parameter forms built from dataclass field metadata: one magicgui widget per field.

Every widget's parameters are a dataclass whose fields describe themselves once, in
``field(metadata=...)`` (plain strings and numbers, so the core's dataclasses can carry them):

- ``help`` (required): the tooltip;
- ``unit`` (required, ``""`` when none): shown in the label as ``"label (unit)"``;
- ``label``: the label without its unit; default: the field name with underscores as spaces,
  less a unit suffix such as ``_um``;
- numbers: ``min``, ``max``, ``step``, ``decimals`` (floats; defaults in :data:`FLOAT_DEFAULTS`
  and :data:`INT_RANGE`);
- strings: ``choices``, a sequence or a callable that returns one (a ``Literal`` type gives
  them too);
- ``form``: ``False`` for a field the form does not show (it keeps the base value).

The widget is chosen by the field's type: bool, int, float, str (``Literal`` or ``choices``:
a combo box), or a tuple of numbers (typed comma-separated).
"""

from __future__ import annotations

import dataclasses
import re
import typing
from collections.abc import Mapping
from typing import Any

from magicgui.widgets import CheckBox, ComboBox, FloatSpinBox, LineEdit, SpinBox, Widget

from ccount_core.errors import InputError

#: Range, step and decimals of a float field whose metadata does not give them.
FLOAT_DEFAULTS: Mapping[str, float] = {"min": -1e9, "max": 1e9, "step": 0.1, "decimals": 4}
#: Range of an int field whose metadata does not give it.
INT_RANGE = (-(2**31), 2**31 - 1)
_UNIT_SUFFIX = re.compile(r"_(um|px|deg|s|mhz)$")


def param(default: Any, help: str, unit: str = "", **form: Any) -> Any:
    """A dataclass field that describes itself: ``default``, its ``help`` (the tooltip), its
    ``unit`` (``""`` when none) and any further form keys above (``label``, ``min``, ...)."""
    return dataclasses.field(default=default, metadata={"help": help, "unit": unit, **form})


def field_label(f: dataclasses.Field[Any]) -> str:
    """The label a form shows for ``f``: its ``label`` (or name) and ``(unit)``."""
    unit = f.metadata["unit"]
    base = f.metadata.get("label") or _UNIT_SUFFIX.sub("", f.name).replace("_", " ")
    return f"{base} ({unit})" if unit else base


def form_fields(cls: type) -> list[dataclasses.Field[Any]]:
    """The fields of dataclass ``cls`` that a form shows; TypeError when one lacks metadata."""
    shown = [f for f in dataclasses.fields(cls) if f.metadata.get("form", True)]
    for f in shown:
        if not f.metadata.get("help") or "unit" not in f.metadata:
            raise TypeError(
                f"{cls.__name__}.{f.name}: a form field needs 'help' and 'unit' "
                "in its metadata (or 'form': False)"
            )
    return shown


def build_form(cls: type, values: Any) -> dict[str, Widget]:
    """One widget per form field of dataclass ``cls``, set to the values of instance ``values``.

    Keyed by field name; each widget's ``name`` is the field's too.
    """
    hints = typing.get_type_hints(cls)
    return {f.name: _widget(f, hints[f.name], getattr(values, f.name)) for f in form_fields(cls)}


def _widget(f: dataclasses.Field[Any], hint: Any, value: Any) -> Widget:
    meta = f.metadata
    kw: dict[str, Any] = {"label": field_label(f), "tooltip": meta["help"], "name": f.name}
    choices = meta.get("choices")
    if typing.get_origin(hint) is typing.Literal:
        choices = typing.get_args(hint)
    if hint is bool:
        return CheckBox(value=value, **kw)
    if hint is int:
        lo, hi = meta.get("min", INT_RANGE[0]), meta.get("max", INT_RANGE[1])
        return SpinBox(value=value, min=lo, max=hi, **kw)
    if hint is float:
        num = {**FLOAT_DEFAULTS, **{k: meta[k] for k in FLOAT_DEFAULTS if k in meta}}
        w = FloatSpinBox(min=num["min"], max=num["max"], step=num["step"], **kw)
        w.native.setDecimals(int(num["decimals"]))  # before the value, which it would round
        w.value = value
        return w
    if choices is not None:
        return ComboBox(
            value=value, choices=list(choices() if callable(choices) else choices), **kw
        )
    if hint is str:
        return LineEdit(value=value, **kw)
    if typing.get_origin(hint) is tuple and all(t in (int, float) for t in typing.get_args(hint)):
        kw["tooltip"] += " (comma-separated)"
        return LineEdit(value=", ".join(str(v) for v in value), **kw)
    raise TypeError(f"{f.name}: no form widget for type {hint!r} (mark it 'form': False)")


def read_form(base: Any, widgets: Mapping[str, Widget]) -> Any:
    """A copy of dataclass instance ``base`` with the widgets' values (its class validates).

    A tuple field is read from comma- (or semicolon-) separated numbers; InputError when they
    do not parse or their number is wrong.
    """
    changes: dict[str, Any] = {}
    for name, w in widgets.items():
        old = getattr(base, name)
        if isinstance(old, tuple):
            try:
                parts = [p for p in str(w.value).replace(";", ",").split(",") if p.strip()]
                changes[name] = tuple(type(o)(float(p)) for o, p in zip(old, parts, strict=True))
            except ValueError as exc:
                raise InputError(
                    f"{name}: expected {len(old)} comma-separated numbers, got {w.value!r}"
                ) from exc
        else:
            changes[name] = w.value
    return dataclasses.replace(base, **changes)
