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
            "uncertainty_ND3+": 0.25,
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
        ",".join([*COLUMNS, "count_ND3+", "uncertainty_ND3+", "count_X+", "uncertainty_X+"]),
        "3,,12.5,0.5,,,,,,,2.0,0.25,,",
    ]


def test_floats_are_written_to_the_precision_they_carry(tmp_path):
    row = {
        "frame": 7,
        "time_s": 1 / 3,
        "count": 123.45678901234567,
        "uncertainty": 2.0000000000000004,
        "ellipse_center_row": 240.123456789,
        "ellipse_center_col": 320.5,
        "ellipse_semi_major": 80.98765,
        "ellipse_semi_minor": 20.004,
        "ellipse_angle_deg": -0.0012,
        "warning": "",
        "count_ND3+": 4.999,
        "uncertainty_ND3+": 0.123456,
    }
    path = tmp_path / "rows.csv"
    with path.open("w", newline="") as fh:
        CountsWriter(fh, ["ND3+"]).write([row])
    # µs for the time, 0.01 ion for counts, 0.01 px and 0.01° for the ellipse; no "-0.0".
    assert path.read_text().strip() == "7,0.333333,123.46,2.0,240.12,320.5,80.99,20.0,0.0,,5.0,0.12"


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
    assert list(rows[0]) == [*COLUMNS, "count_ND3+", "uncertainty_ND3+"]
    with pytest.raises(InputError, match="another source"):
        resume_counts(path, counts_metadata(card, "/data/s.tif", 3.0, 0), ["ND3+"])


def test_a_header_only_file_a_failed_run_left_is_started_again(tmp_path):
    # counts_file.resume_counts: a file of ours with no rows holds nothing to lose
    card = {"name": "m", "label_names": ["Ca+"], "preprocess": {}}
    path = tmp_path / "counts.csv"
    assert resume_counts(path, counts_metadata(card, "/data/s.tif", -1.0, 0), []) == set()
    new = counts_metadata(card, "/data/s.tif", 2.0, 0)
    assert resume_counts(path, new, []) == set()
    assert read_counts(path) == (new, [])
    assert [p.name for p in tmp_path.iterdir()] == ["counts.csv"]  # no temporary file left


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\x89PNG\r\n\x1a\n\xff\xd8\x00\x10", "not UTF-8 text"),
        (b"frame,count\n0,3\n", "no '# ccount counts ' line"),
        (b"# ccount counts {not json\n", "bad metadata"),
    ],
)
def test_a_file_that_is_not_a_counts_file_is_named_and_kept(tmp_path, data, why):
    # counts_file.read_counts / resume_counts: one line naming the file, what is wrong and
    # what to do; the file is left as it was
    path = tmp_path / "out.csv"
    path.write_bytes(data)
    card = {"name": "m", "label_names": ["Ca+"], "preprocess": {}}
    with pytest.raises(InputError) as err:
        resume_counts(path, counts_metadata(card, "/data/s.tif", 2.0, 0), [])
    text = str(err.value)
    assert text.startswith(f"output: {path}: not a ccount counts file ({why}")
    assert text.endswith("; choose a new -o or delete it") and "\n" not in text
    assert path.read_bytes() == data


def test_an_older_file_without_dark_uncertainties_reads_and_is_not_resumed(tmp_path):
    """Files of ccount before ``uncertainty_<label>`` still read; a resume would append rows
    of other columns, so it is refused in one line."""
    card = {"name": "m", "label_names": ["Ca+", "ND3+"], "preprocess": {}}
    meta = counts_metadata(card, "/data/s.tif", 2.0, 0)
    path = tmp_path / "old.csv"
    path.write_text(
        '# ccount counts {"label_names": ["Ca+", "ND3+"], "model_name": "m", '
        '"pixel_size_um": 2.0, "preprocess": {}, "source": "/data/s.tif", "tta": 0}\n'
        + ",".join([*COLUMNS, "count_ND3+"])
        + "\n0,,150.0,6.2,,,,,,,20.0\n"
    )
    _, rows = read_counts(path)
    assert rows[0]["count_ND3+"] == "20.0" and "uncertainty_ND3+" not in rows[0]
    with pytest.raises(InputError, match=r"has other columns .*older ccount.*choose a new -o"):
        resume_counts(path, meta, ["ND3+"])


def test_not_counted_names_the_most_common_reason_and_says_when_there_are_more() -> None:
    from ccount_core.nn.counts_file import not_counted

    ok = {"count": 150.0, "warning": ""}
    dark = {"count": None, "warning": "not counted: no crystal; frame too dark"}
    flat = {"count": None, "warning": "not counted: constant image"}
    assert not_counted([ok, ok]) == (0, None)
    assert not_counted([ok, dark, dark]) == (2, "no crystal; frame too dark")
    assert not_counted([dark, flat, dark]) == (
        3,
        "no crystal; frame too dark (and other reasons, see the warning column)",
    )
