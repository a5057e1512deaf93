"""The counts file: the CSV of one row per frame that ``ccount count`` and the plugin write.

A file ``count_file`` writes starts with ``# ccount counts {json}`` (the source, pixel size
(µm), test-time views and the model's name, labels and preprocessing), then the column names
and one row per frame, appended batch by batch; a file a killed run left is resumed
(:func:`resume_counts`). The plugin's export is the same file. Columns: ``COLUMNS``, then
``count_<label>`` and ``uncertainty_<label>`` for each further output of the model (ions;
older files have no ``uncertainty_<label>``); an empty cell is a value that is not known (a
frame not counted, no time, no error).

No torch here: the plugin reads and writes rows without loading the network.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping, Sequence
from numbers import Integral, Real
from pathlib import Path
from typing import Any, TextIO

from ccount_core.errors import InputError
from ccount_core.files import atomic_path

COLUMNS = (
    "frame",
    "time_s",
    "count",
    "uncertainty",
    "ellipse_center_row",
    "ellipse_center_col",
    "ellipse_semi_major",
    "ellipse_semi_minor",
    "ellipse_angle_deg",
    "warning",
)
OTHER_COUNT_PREFIX = "count_"
"""Column of a model's further output (a dark species): ``count_<label>``, e.g. ``count_ND3+``."""
OTHER_UNCERTAINTY_PREFIX = "uncertainty_"
"""Column of that count's uncertainty (ions, 1σ): ``uncertainty_<label>``."""
META_PREFIX = "# ccount counts "
"""Start of the first line of a file ``count_file`` writes; its JSON metadata follows."""
Row = dict[str, Any]
DECIMALS = {
    "time_s": 6,  # 1 µs
    "count": 2,  # 0.01 ion
    "uncertainty": 2,
    "ellipse_center_row": 2,  # 0.01 px
    "ellipse_center_col": 2,
    "ellipse_semi_major": 2,
    "ellipse_semi_minor": 2,
    "ellipse_angle_deg": 2,  # 0.01°
}
"""Decimals a float of each column is written with (``count_<label>`` columns as ``count``,
``uncertainty_<label>`` as ``uncertainty``)."""


def other_uncertainty(name: str) -> str:
    """The column of the uncertainty of species ``name``'s count: ``uncertainty_<name>``."""
    return f"{OTHER_UNCERTAINTY_PREFIX}{name}"


def other_counts(rows: Sequence[Row]) -> dict[str, str]:
    """Species name -> column of the further outputs the rows hold (``{"ND3+": "count_ND3+"}``);
    empty for a model that counts Ca+ alone or for no rows."""
    keys = rows[0] if rows else {}
    return {k[len(OTHER_COUNT_PREFIX) :]: k for k in keys if k.startswith(OTHER_COUNT_PREFIX)}


NOT_COUNTED = "not counted: "
"""How a row's warning starts when its frame was not counted (``ccount_core.nn.count``)."""


def not_counted(rows: Sequence[Row]) -> tuple[int, str | None]:
    """``(frames not counted, their most common reason)`` among ``rows`` (reason None when
    every frame was counted; "(and other reasons, see the warning column)" added when the
    frames were refused for several): what the CLI and the plugin say of a run."""
    reasons: dict[str, int] = {}
    for r in rows:
        if r.get("count") is None:
            why = (r.get("warning") or "").removeprefix(NOT_COUNTED)
            reasons[why] = reasons.get(why, 0) + 1
    if not reasons:
        return 0, None
    reason = max(reasons, key=reasons.__getitem__)
    if len(reasons) > 1:
        reason += " (and other reasons, see the warning column)"
    return sum(reasons.values()), reason


class CountsWriter:
    """Writes rows to an open text file (opened with ``newline=""``) as CSV lines.

    Columns: :func:`counts_columns`; a value that is None or missing is an empty cell;
    floats are rounded to ``DECIMALS``.
    """

    def __init__(self, fh: TextIO, others: Iterable[str] = ()) -> None:
        self.columns = counts_columns(others)
        self._fh = fh
        self._writer = csv.DictWriter(fh, fieldnames=self.columns)

    def write_metadata(self, meta: Mapping[str, Any]) -> None:
        """The first line, ``# ccount counts {json}`` (:func:`counts_metadata`)."""
        self._fh.write(_meta_line(meta))

    def write_column_names(self) -> None:
        self._writer.writeheader()

    def write(self, rows: Iterable[Row]) -> None:
        self._writer.writerows({k: _cell(k, r.get(k)) for k in self.columns} for r in rows)


def counts_columns(others: Iterable[str] = ()) -> list[str]:
    """The columns of a counts file: ``COLUMNS``, then ``count_<name>`` and
    ``uncertainty_<name>`` for each of ``others`` (the model's further species in label
    order, e.g. ``["ND3+"]``)."""
    extra = [(f"{OTHER_COUNT_PREFIX}{name}", other_uncertainty(name)) for name in others]
    return [*COLUMNS, *(column for pair in extra for column in pair)]


def _cell(column: str, value: Any) -> Any:
    """``value`` as written in ``column``: "" for None, a float rounded to its ``DECIMALS``."""
    if value is None:
        return ""
    key = column
    if column.startswith(OTHER_COUNT_PREFIX):
        key = "count"
    elif column.startswith(OTHER_UNCERTAINTY_PREFIX):
        key = "uncertainty"
    if key in DECIMALS and isinstance(value, Real) and not isinstance(value, Integral):
        return round(float(value), DECIMALS[key]) + 0.0  # + 0.0: no "-0.0"
    return value


def counts_metadata(
    card: Mapping[str, Any], source: str, pixel_size_um: float | None, tta: int
) -> dict[str, Any]:
    """The first line's metadata for ``source`` counted with the model of ``card`` at
    ``pixel_size_um`` (µm per camera pixel, None: unknown) with ``tta`` extra views."""
    return {
        "source": source,
        "pixel_size_um": pixel_size_um,
        "tta": tta,
        "model_name": card.get("name", ""),
        "label_names": card["label_names"],
        "preprocess": card["preprocess"],
    }


def read_counts(path: Path | str) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """``(metadata, rows as strings)`` of a counts CSV written by
    :func:`ccount_core.nn.count.count_file`; InputError naming the file when it is not one
    (not UTF-8 text, no ``# ccount counts {json}`` first line, or not CSV)."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            first = fh.readline()
            if not first.startswith(META_PREFIX):
                raise InputError(f"{path}: not a ccount counts file (no '{META_PREFIX}' line)")
            meta = json.loads(first[len(META_PREFIX) :])
            rows = list(csv.DictReader(fh))
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a ccount counts file (not UTF-8 text)") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not a ccount counts file (bad metadata: {exc})") from None
    except csv.Error as exc:
        raise InputError(f"{path}: not a ccount counts file (bad CSV: {exc})") from None
    if not isinstance(meta, dict):
        raise InputError(f"{path}: not a ccount counts file (its metadata is not an object)")
    return meta, rows


def resume_counts(path: Path, meta: Mapping[str, Any], others: Sequence[str]) -> set[int]:
    """The frames already in the counts file ``path``, which must hold ``meta``
    (:func:`counts_metadata`; a last line cut by a killed writer is dropped). A missing or
    empty file, or one of ours with no rows yet (its run failed or was killed before its
    first batch), is started anew (its first line and the column names, written
    atomically) and has none. A file with other columns (an older ccount's) is refused."""
    if path.exists() and path.stat().st_size > 0:
        try:
            old_meta, rows = read_counts(path)
        except InputError as exc:
            raise InputError(f"output: {exc}; choose a new -o or delete it") from None
        same = old_meta == json.loads(_meta_line(meta)[len(META_PREFIX) :])  # as it reads back
        if same and rows and list(rows[0]) != counts_columns(others):
            raise InputError(
                f"output: {path} has other columns (written by an older ccount); "
                "choose a new -o or delete it"
            )
        if same:
            _drop_partial_line(path)
            _, old = read_counts(path)
            return {int(r["frame"]) for r in old if (r.get("frame") or "").isdigit()}
        if rows:
            raise InputError(
                f"output: {path} was counted from another source, pixel size "
                "or model; choose a new -o or delete it"
            )
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as fh:
        fh.write(_meta_line(meta))
        CountsWriter(fh, others).write_column_names()
    return set()


def _meta_line(meta: Mapping[str, Any]) -> str:
    return META_PREFIX + json.dumps(meta, sort_keys=True) + "\n"


def _drop_partial_line(path: Path) -> None:
    """Cut a last line a killed writer left without its newline."""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with path.open("r+b") as fh:
            fh.truncate(data.rfind(b"\n") + 1)


__all__ = [
    "COLUMNS",
    "META_PREFIX",
    "NOT_COUNTED",
    "OTHER_COUNT_PREFIX",
    "OTHER_UNCERTAINTY_PREFIX",
    "CountsWriter",
    "Row",
    "counts_columns",
    "counts_metadata",
    "not_counted",
    "other_counts",
    "other_uncertainty",
    "read_counts",
    "resume_counts",
]
