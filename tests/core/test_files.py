"""Atomic writes of ccount_core.files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ccount_core.files import (
    atomic_path,
    atomic_write_bytes,
    remove_stale_temps,
    temp_files,
    temp_target,
)


def test_bytes_are_written_and_replace_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "card.json"
    atomic_write_bytes(target, b"old")
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    assert os.listdir(target.parent) == ["card.json"]


def test_new_files_get_the_usual_permissions(tmp_path: Path) -> None:
    # not mkstemp's 0600: 0666 less this process's umask, whatever it is
    for umask, mode in ((0o022, 0o644), (0o027, 0o640)):
        old = os.umask(umask)
        try:
            atomic_write_bytes(tmp_path / f"{mode:o}.bin", b"x")
        finally:
            os.umask(old)
        assert (tmp_path / f"{mode:o}.bin").stat().st_mode & 0o777 == mode


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


def test_temporary_names_parse_back_to_their_target(tmp_path: Path) -> None:
    # files.temp_target reads the names atomic_path makes: the writer and the cleanup agree
    for name in ("checkpoint.pt", "model.safetensors", "log.csv", "noext", "a.b.c"):
        with atomic_path(tmp_path / name) as tmp:
            assert temp_target(tmp.name) == name
            assert temp_files(tmp_path / name) == [tmp] == temp_files(tmp_path)
    for other in ("checkpoint.pt", ".checkpoint.pt", ".checkpoint.pt.notes.pt", ".x.ABCDEFGH"):
        assert temp_target(other) is None


def _leftover(target: Path, random: str = "k1lled_0") -> Path:
    """A temporary file as a killed atomic_path writer leaves it."""
    tmp = target.with_name(f".{target.name}.{random}{target.suffix}")
    tmp.write_bytes(b"half a checkpoint")
    return tmp


def test_stale_temporary_files_are_removed_and_others_kept(tmp_path: Path) -> None:
    # files.remove_stale_temps: a killed writer's file goes; a live writer's (locked), another
    # target's and foreign files stay
    import fcntl

    target = tmp_path / "checkpoint.pt"
    stale = _leftover(target)
    other = _leftover(tmp_path / "log.csv")
    foreign = [tmp_path / n for n in (".checkpoint.pt.notes.pt", "checkpoint.pt.bak", "x.pt")]
    for f in foreign:
        f.write_text("mine")
    live = _leftover(target, "w0rking_")
    fd = os.open(live, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as atomic_path holds its file
        assert remove_stale_temps(target) == [stale]
        assert not stale.exists() and live.exists() and other.exists()
        with atomic_path(target) as tmp:  # a writer in progress is not disturbed
            assert remove_stale_temps(tmp_path) == [other] and tmp.exists()
            tmp.write_bytes(b"new")
    finally:
        os.close(fd)
    assert remove_stale_temps(tmp_path) == [live]  # its writer is gone
    assert sorted(os.listdir(tmp_path)) == sorted(["checkpoint.pt", *(f.name for f in foreign)])
    assert target.read_bytes() == b"new"
