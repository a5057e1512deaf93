"""Atomic writes: a reader sees the old file or the complete new one, never a part.

The data goes to a hidden temporary file in the target's folder,
``.<name>.<random><suffix>`` (the target's own suffix, so writers that pick the format from
the extension, such as matplotlib, still work), which is flushed to disk and renamed over the
target; on any error it is removed and the target is left as it was.

A writer that is killed cannot remove its temporary file (a checkpoint's is hundreds of MB).
The writer holds an ``fcntl.flock`` lock on it until the rename, and the kernel drops the
lock when the writer dies, so :func:`remove_stale_temps`, called when a job starts again,
removes exactly the temporary files of its target that no live writer holds. (An age rule,
"older than this process", would also remove the file of a second live writer started
earlier; it is used only where the file system has no ``flock``.)
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_STARTED = time.time()
"""When this module was imported: about when this process started (s since the epoch)."""
_NO_FLOCK = (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP)
_RANDOM = re.compile(r"[a-z0-9_]{8}")
"""The random part of a temporary file's name (``tempfile``'s)."""


def _temp_affixes(target: Path) -> tuple[str, str]:
    """``(prefix, suffix)`` of the temporary files of ``target``; the random part between
    them is ``tempfile``'s: 8 characters of ``[a-z0-9_]``."""
    return f".{target.name}.", target.suffix


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``, on error it is removed.

    The folder is created if missing. The temporary file exists (empty) when yielded, with
    the permissions a new file normally gets (0666 less the umask; the writer may change
    them); it is fsynced before the rename. It stays locked (``flock``) until then, so
    :func:`remove_stale_temps` leaves it alone.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    prefix, suffix = _temp_affixes(target)
    lock_fd, name = tempfile.mkstemp(dir=target.parent, prefix=prefix, suffix=suffix)
    tmp = Path(name)
    try:
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in _NO_FLOCK:
                raise
        os.fchmod(lock_fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        yield tmp
        fd = os.open(tmp, os.O_RDWR)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
        os.close(lock_fd)


def _umask() -> int:
    """This process's umask, read without changing it where Linux reports it (setting it to
    read it back would, for a moment, apply to every thread)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def temp_target(name: str) -> str | None:
    """The name of the target whose :func:`atomic_path` temporary file is called ``name``
    (``.<target>.<8 of [a-z0-9_]><target's suffix>``), or None for any other name."""
    if not name.startswith("."):
        return None
    for i in range(2, len(name)):
        if name[i] == ".":
            target = name[1:i]
            _, suffix = _temp_affixes(Path(target))
            rest = name[i + 1 :]
            if rest.endswith(suffix) and _RANDOM.fullmatch(rest[: len(rest) - len(suffix)]):
                return target
    return None


def temp_files(path: str | os.PathLike[str]) -> list[Path]:
    """The temporary files of :func:`atomic_path` in the folder ``path`` (for every target),
    or, for a path that is not a folder, those of the file ``path``; live or stale, sorted."""
    path = Path(path)
    folder, target = (path, None) if path.is_dir() else (path.parent, path.name)
    try:
        names = os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = [n for n in names if temp_target(n) is not None]
    return sorted(folder / n for n in found if target is None or temp_target(n) == target)


def remove_stale_temps(path: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary files of :func:`temp_files` (of the file ``path``, or of every
    target in the folder ``path``) that killed writers left, none that a live writer's lock
    holds (see the module's docstring); return the removed paths."""
    return [tmp for tmp in temp_files(path) if _remove_if_unheld(tmp)]


def _remove_if_unheld(tmp: Path) -> bool:
    """Remove ``tmp`` when no process holds its lock (where there is no ``flock``: when it
    was last written before this process started); True when removed."""
    try:
        fd = os.open(tmp, os.O_RDONLY)
    except FileNotFoundError:  # renamed or removed meanwhile
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a live writer's
        except OSError as exc:
            if exc.errno not in _NO_FLOCK or os.fstat(fd).st_mtime >= _STARTED:
                return False
        if not os.path.samestat(os.fstat(fd), os.stat(tmp)):
            return False  # replaced since it was opened
        tmp.unlink()
        return True
    except FileNotFoundError:
        return False
    finally:
        os.close(fd)
