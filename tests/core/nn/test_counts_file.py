"""The counts file's format: torch-free, one writer for ``ccount count`` and the plugin."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ccount_core.errors import InputError
from ccount_core.nn.counts_file import (
    COLUMNS,
    CountsWriter,
    counts_metadata,
    other_counts,
    read_counts,
    resume_counts,
)


def test_the_format_loads_without_torch():
    code = "import sys, ccount_core.nn.counts_file; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_writer_keeps_the_column_order_and_writes_none_as_empty(tmp_path):
    rows = [
        {
            **dict.fromkeys(COLUMNS),
            "frame": 3,
            "count": 12.5,
            "uncertainty": 0.5,
            "warning": "",
            "count_ND3+": 2.0,
            "count_X+": None,
        }
    ]
    assert other_counts(rows) == {"ND3+": "count_ND3+", "X+": "count_X+"}
    path = tmp_path / "rows.csv"
    with path.open("w", newline="") as fh:
        writer = CountsWriter(fh, other_counts(rows))
        writer.write_column_names()
        writer.write(rows)
    assert path.read_text().splitlines() == [
        ",".join([*COLUMNS, "count_ND3+", "count_X+"]),
        "3,,12.5,0.5,,,,,,,2.0,",
    ]


def test_a_file_is_started_resumed_and_refused_when_made_otherwise(tmp_path):
    card = {"name": "m", "label_names": ["Ca+", "ND3+"], "preprocess": {"a": (1, 2)}}
    meta = counts_metadata(card, "/data/s.tif", 2.0, 0)
    path = tmp_path / "sub" / "counts.csv"
    assert resume_counts(path, meta, ["ND3+"]) == set()
    with path.open("a", newline="") as fh:
        CountsWriter(fh, ["ND3+"]).write([{"frame": 0, "count": 1.0}])
        fh.write("1,,2")  # cut by a kill
    assert resume_counts(path, meta, ["ND3+"]) == {0}
    back, rows = read_counts(path)
    assert back == meta | {"preprocess": {"a": [1, 2]}} and len(rows) == 1
    assert list(rows[0]) == [*COLUMNS, "count_ND3+"]
    with pytest.raises(InputError, match="another source"):
        resume_counts(path, counts_metadata(card, "/data/s.tif", 3.0, 0), ["ND3+"])
