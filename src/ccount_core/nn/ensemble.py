"""Ensembles: several trained models count the same frames and their counts are averaged.

Two networks trained apart make partly independent errors, so their mean is closer to the
truth than either (the shipped ``ensemble``: 3.74 % and 3.74 % alone, about 3.2 % together,
see docs/MODEL.md), and their disagreement is a per-frame uncertainty.

An ensemble on disk is one JSON card, ``format: ccount-ensemble``, that names its member
models (paths relative to the card) and carries what the counting code reads from a card:
``label_names`` (the first member's, then any further species of the others),
``label_range``, ``preprocess`` (the first member's: it gives the ellipse and the prepared
view), ``name`` and its own ``metrics``. Each member keeps its own card, weights and
preprocessing configuration; every member counts frames prepared its own way.

:func:`load_counter` reads a model or an ensemble into an :class:`IonCounter`, the one object
``count_stack`` and ``evaluate`` run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ccount_core.errors import InputError
from ccount_core.nn.calibration import (
    apply_calibration,
    check_calibration,
    check_camera_calibration,
)

ENSEMBLE_FORMAT = "ccount-ensemble"
ENSEMBLE_VERSION = 1


@dataclass
class IonCounter:
    """Member models ``[(CountingNet, card), ...]`` and the card that speaks for them all
    (for one model: that model's card)."""

    members: list[tuple[Any, dict[str, Any]]]
    card: dict[str, Any]
    _packed: dict[bool, list[Any]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _bf16_agrees: bool | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        name = self.card.get("name")
        where = f"model {name!r}" if name else "model card"
        if "calibration" in self.card:
            check_calibration(self.card["calibration"], self.label_names, where)
        if "camera_calibration" in self.card:
            check_camera_calibration(self.card["camera_calibration"], where)
        for card in self.cards:
            _check_uncertainty(card.get("uncertainty", {}), where)

    @property
    def cards(self) -> list[dict[str, Any]]:
        """The card that speaks for the members, then each member's own (a single model's
        card once)."""
        return [self.card, *(c for _, c in self.members if c is not self.card)]

    @property
    def label_names(self) -> list[str]:
        return list(self.card["label_names"])

    @property
    def is_ensemble(self) -> bool:
        return len(self.members) > 1

    def to(self, device: Any) -> IonCounter:
        """Move every member to ``device`` (a torch device); returns self."""
        for net, _ in self.members:
            net.to(device)
        return self

    def bf16_agrees(self, tolerance: float) -> bool:
        """Whether every member counts a probe batch (8 random images of its input shape) in
        bfloat16 within ``tolerance`` (relative, of counts of at least 1) of float32; checked
        once (on the CPU, under autocast) and remembered. A trained network agrees to a few
        tenths of a percent; one with outsized activations (untrained, or trained badly) does
        not, and its bfloat16 counts then also change with the batch size."""
        if self._bf16_agrees is None:
            from ccount_core.nn.inference import infer

            def agrees(net: Any, shape: list[int]) -> bool:
                probe = np.random.default_rng(0).standard_normal((8, *shape)).astype(np.float32)
                f32, _ = infer(net, probe, bf16=False)
                b16, _ = infer(net, probe, bf16=True)
                return bool((np.abs(b16 - f32) <= tolerance * np.maximum(np.abs(f32), 1.0)).all())

            self._bf16_agrees = all(agrees(net, card["input_shape"]) for net, card in self.members)
        return self._bf16_agrees

    def is_packed(self, bf16: bool = False) -> bool:
        """Whether :meth:`packed_for_cpu` has been built for that precision."""
        return bf16 in self._packed

    def packed_for_cpu(self, bf16: bool = False) -> list[Any]:
        """Each member packed for CPU inference (``ccount_core.nn.cpu_inference``), in member
        order, built on first use and kept: float32 (the members' counts, faster) or, when
        ``bf16``, bfloat16 (within its rounding, faster still on a CPU with bfloat16 units)."""
        if bf16 not in self._packed:
            from ccount_core.nn.cpu_inference import pack_for_cpu

            self._packed[bf16] = [
                pack_for_cpu(net, bf16, tuple(card["input_shape"])) for net, card in self.members
            ]
        return self._packed[bf16]

    def combine(
        self, outputs: Sequence[tuple[np.ndarray, np.ndarray]]
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(counts (B, k), spread (B, k))`` (ions, k = ``len(label_names)``) from each
        member's ``(counts (B, k_m), spread (B, k_m))`` in member order.

        A species' count is the mean over the members that count it. Its spread is the
        total standard deviation over those members and their views: the members' variance
        about the mean (ddof 1) plus the mean of their test-time variances (NaN read as 0);
        NaN where one member alone counts it and has no test-time spread. A species the card
        calibrates (``calibration``, :mod:`ccount_core.nn.calibration`) has its mean count
        mapped through the calibration; its spread is left as it is.
        """
        if len(outputs) != len(self.members):
            raise ValueError(f"{len(outputs)} outputs for {len(self.members)} members")
        names = self.label_names
        b = len(outputs[0][0])
        counts = np.full((b, len(names)), np.nan, np.float32)
        spread = np.full_like(counts, np.nan)
        for j, name in enumerate(names):
            cols = [
                (c[:, m["label_names"].index(name)], s[:, m["label_names"].index(name)])
                for (c, s), (_, m) in zip(outputs, self.members, strict=True)
                if name in m["label_names"]
            ]
            means = np.stack([c for c, _ in cols])
            counts[:, j] = means.mean(axis=0)
            if name in self.card.get("calibration", {}):
                counts[:, j] = apply_calibration(counts[:, j], self.card["calibration"][name])
            if len(cols) == 1:
                spread[:, j] = cols[0][1]
                continue
            within = np.mean([np.nan_to_num(s) ** 2 for _, s in cols], axis=0)
            spread[:, j] = np.sqrt(means.var(axis=0, ddof=1) + within)
        return counts, spread


#: The ``uncertainty`` factors of a card that are numbers, and those that map names to numbers
#: (``ccount_core.nn.count.model_error``).
_FACTORS = ("scale", "unlike_scale", "noise_n0")
_FACTOR_MAPS = ("unlike_scales", "note_scales")


def _check_uncertainty(factors: Any, where: str) -> None:
    """Raise InputError unless a card's ``uncertainty`` factors are positive finite numbers."""

    def positive(v: Any) -> bool:
        ok = isinstance(v, (int, float)) and not isinstance(v, bool)
        return ok and bool(np.isfinite(v)) and v > 0

    if not isinstance(factors, Mapping):
        raise InputError(f"{where}: uncertainty must map factor names to numbers")
    for key in _FACTORS:
        if key in factors and not positive(factors[key]):
            raise InputError(f"{where}: uncertainty {key} must be a positive number")
    for key in _FACTOR_MAPS:
        values = factors.get(key, {})
        if not isinstance(values, Mapping) or not all(map(positive, values.values())):
            raise InputError(f"{where}: uncertainty {key} must map names to positive numbers")


def shipped_model_dir() -> Path:
    """The folder of the models shipped inside the package."""
    return Path(__file__).parents[1] / "models"


def shipped_models() -> list[str]:
    """Names of the shipped models and ensembles (``default``, ...), sorted."""
    return sorted(
        p.stem for p in shipped_model_dir().glob("*.json") if not p.name.startswith(".")
    )  # not a card being written


def model_location(path: Path | str | None) -> Path:
    """A model path as given, or the shipped model of that name (``default``, ``dark``,
    ``ensemble``) when no such path exists; None is the default model."""
    if path is None:
        return shipped_model_dir() / "default.json"
    p = Path(path)
    if not p.exists() and p.suffix == "" and len(p.parts) == 1:
        shipped = shipped_model_dir() / f"{p.name}.json"
        if shipped.is_file():
            return shipped
    return p


def is_ensemble(path: Path | str | None) -> bool:
    """Whether ``path`` (after :func:`model_location`) is an ensemble card."""
    p = model_location(path)
    if p.suffix != ".json" or not p.is_file():
        return False
    try:
        card = json.loads(p.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(card, dict) and card.get("format") == ENSEMBLE_FORMAT


def load_counter(path: Path | str | None = None, expected_config: Any = None) -> IonCounter:
    """A model or an ensemble, ready to count (members in eval mode, float32 on CPU).

    ``path``: a model (directory, ``.safetensors`` or ``.json``), an ensemble card, or the
    name of a shipped one (:func:`shipped_models`); None is the default model.
    ``expected_config``: refuse one whose (first member's) preprocessing differs.
    """
    from ccount_core.nn.model import check_config, load_model

    location = model_location(path)
    if not is_ensemble(location):
        net, card = load_model(location, expected_config)
        return IonCounter([(net, card)], card)
    card = _read_ensemble_card(location)
    members = []
    for name in card["members"]:
        member = location.parent / name
        if is_ensemble(member):
            raise InputError(f"ensemble: member {member} is itself an ensemble")
        members.append(load_model(member))
    _check_members(location, card, members)
    if expected_config is not None:
        check_config(card, expected_config, where="ensemble")
    return IonCounter(members, card)


def _read_ensemble_card(path: Path) -> dict[str, Any]:
    card = json.loads(path.read_text())
    members = card.get("members")
    if not isinstance(members, list) or not members or not all(isinstance(m, str) for m in members):
        raise InputError(f"ensemble: {path} lists no member models")
    missing = [k for k in ("label_names", "preprocess") if k not in card]
    if missing:
        raise InputError(f"ensemble: card {path} lacks {', '.join(missing)}")
    return card


def _check_members(
    path: Path, card: Mapping[str, Any], members: Sequence[tuple[Any, dict[str, Any]]]
) -> None:
    first = members[0][1]
    if card["preprocess"] != first["preprocess"]:
        raise InputError(f"ensemble: {path}'s preprocessing is not its first member's")
    if list(card["label_names"]) != ensemble_labels([m for _, m in members]):
        raise InputError(
            f"ensemble: {path}'s label_names do not match its members' "
            f"({ensemble_labels([m for _, m in members])})"
        )
    counted = {m["label_names"][0] for _, m in members}
    if len(counted) > 1:
        raise InputError(f"ensemble: its members count different species {sorted(counted)}")


def ensemble_labels(cards: Sequence[Mapping[str, Any]]) -> list[str]:
    """The first card's label names, then every further one of the others, in order."""
    names: list[str] = []
    for card in cards:
        names.extend(n for n in card["label_names"] if n not in names)
    return names


def ensemble_card(
    member_paths: Sequence[Path | str], card_path: Path | str, **fields: Any
) -> dict[str, Any]:
    """The card of an ensemble of ``member_paths`` (models) to be written at ``card_path``:
    member paths relative to its folder, labels, range and preprocessing from the members,
    plus ``fields`` (name, description, metrics, ...)."""
    from ccount_core.nn.model import model_paths, read_card

    if len(member_paths) < 2:
        raise InputError("ensemble: give at least two member models")
    folder = Path(card_path).resolve().parent
    cards = [read_card(model_location(p)) for p in member_paths]
    rel = [
        os.path.relpath(model_paths(model_location(p))[1].resolve(), folder) for p in member_paths
    ]
    ranges = [c.get("label_range") for c in cards if c.get("label_range")]
    card = {
        "format": ENSEMBLE_FORMAT,
        "format_version": ENSEMBLE_VERSION,
        "members": rel,
        "label_names": ensemble_labels(cards),
        "label_range": [max(r[0] for r in ranges), min(r[1] for r in ranges)] if ranges else None,
        "preprocess": cards[0]["preprocess"],
        "input_shape": cards[0]["input_shape"],
    }
    card.update(fields)
    return card
