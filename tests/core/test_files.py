"""Atomic writes of ccount_core.files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ccount_core.files import atomic_path, atomic_write_bytes


def test_bytes_are_written_and_replace_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "card.json"
    atomic_write_bytes(target, b"old")
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    assert os.listdir(target.parent) == ["card.json"]


def test_new_files_get_the_usual_permissions(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "a.bin", b"x")
    finally:
        os.umask(umask)
    assert (tmp_path / "a.bin").stat().st_mode & 0o777 == 0o644


def test_temporary_path_is_hidden_next_to_the_target_with_its_suffix(tmp_path: Path) -> None:
    target = tmp_path / "plot.png"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.exists()
        assert tmp.name.startswith(".plot.png.") and tmp.suffix == ".png"
        assert not target.exists()
        tmp.write_text("done")
    assert target.read_text() == "done" and not tmp.exists()


def test_a_failing_writer_leaves_the_target_untouched_and_no_temporary_file(
    tmp_path: Path,
) -> None:
    target = tmp_path / "counts.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="disk on fire"), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk on fire")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["counts.csv"]


def test_a_writer_that_removes_its_file_is_an_error_without_leftovers(tmp_path: Path) -> None:
    target = tmp_path / "x.bin"
    with pytest.raises(FileNotFoundError), atomic_path(target) as tmp:
        tmp.unlink()
    assert os.listdir(tmp_path) == []
