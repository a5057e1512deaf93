"""The data-set store: one Zarr v3 group holding images, a parameter table and the spec.

Layout (``OUT.zarr``; see docs/DATASET.md)::

    zarr.json            attributes["ccount_dataset"]: format, spec, spec_sha256, label_names,
                         label_columns, split_names, renders, image_shape, images_dtype, ...
    images               (n, rows, cols) float32 or uint16; shards of (chunk, rows, cols)
                         holding one inner chunk per image (zstd), so a training read of one
                         image decompresses one image and a store of 700k images is ~22k files
    table/<column>       one 1-D array of length n per column (see ``TABLE_COLUMNS``)

Row ``i`` is render ``i % n_renders`` of MD run ``i // n_renders``. All parameter columns are
written when the store is created; ``images``, ``simulator_version``, the timings and finally
``done`` are written as samples complete. Zarr's local store
writes every file to a temporary name and renames it, so a killed writer leaves each chunk
either old or new; ``done`` is written only after the image, so a row is either done and
complete, or not done and recomputed on the next run.

A second writer is refused by :class:`StoreLock` (``fcntl`` locks on ``OUT.zarr.lock`` beside the
store's real path and on the store directory, which the kernel releases when the holder dies, so
a killed run never leaves a stale lock, and neither a symlink nor a deleted lock file fools it).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import zarr
import zarr.codecs

from ccount_core.dataset.spec import (
    SPLIT_CODES,
    SPLIT_NAMES,
    Plan,
    first_difference,
    spec_digest,
    split_of,
    stable_hash,
)
from ccount_core.errors import CcountError, InputError

FORMAT = "ccount-dataset"
FORMAT_VERSION = 1
ATTRS_KEY = "ccount_dataset"
TABLE_CHUNK = 65536
TABLE_COLUMNS: dict[str, tuple[str, str]] = {
    # name: (dtype, meaning and unit); species columns "n_<species>" (int32) come after md_index
    "md_index": ("int64", "index of the MD run the image was rendered from"),
    "render_index": ("int32", "index of the render variant within the MD run"),
    "key_hash": ("uint64", "first 8 bytes of sha256 of the run's canonical key"),
    "split": ("int8", "0 train, 1 validation, 2 test (key_hash % 7: 0 validation, 1 test)"),
    "v_rf": ("float64", "RF amplitude, V (CCMD's convention)"),
    "v_end": ("float64", "endcap voltage, V"),
    "eta": ("float64", "endcap geometry factor η, dimensionless"),
    "seed": ("int64", "MD seed"),
    "focal_offset_um": ("float64", "focal-plane offset along the imaging axis, µm"),
    "blur_um": ("float64", "in-focus blur radius w0, µm"),
    "dof_um": ("float64", "depth of field, µm"),
    "rotation_deg": ("float64", "crystal rotation in the image, degrees"),
    "pixel_size_um": ("float64", "pixel size in the object plane, µm"),
    "noise_draw": ("int32", "index of the camera-noise draw"),
    "simulator_version": ("str", "ccount version that computed the row ('' until done)"),
    "md_seconds": ("float32", "wall time of the row's MD run (shared by its renders), s"),
    "render_seconds": ("float32", "wall time of rendering this image, s"),
    "cpu_seconds": (
        "float32",
        "worker CPU time of this image: its share of the MD run's CPU time plus its rendering, s",
    ),
    "done": ("bool", "True once the image is written"),
}
_RENDER_COLUMNS = (
    "focal_offset_um",
    "blur_um",
    "dof_um",
    "rotation_deg",
    "pixel_size_um",
    "noise_draw",
)


class StoreLockedError(CcountError):
    """Another process is writing the store."""


def count_column(species: str) -> str:
    """Table column holding the ion number of ``species``, e.g. ``n_Ca+``."""
    return f"n_{species}"


# ----------------------------------------------------------------------------------- lock


class StoreLock:
    """Exclusive writer lock on a store: ``fcntl.flock`` on ``<real store path>.lock`` and on the
    store directory itself, both held for the writer's life.

    The lock is named after the store's resolved path, so a symlink to the store takes the same
    lock. The store directory is locked too (its inode survives renames, and it cannot be
    deleted without deleting the data), so deleting the lock file does not admit a second
    writer: a newcomer takes the new lock file but not the directory. A store created under
    the lock is locked before it is renamed into place (:func:`create_store`). The lock file
    names the holder (pid, host, start time) for the refusal message. The kernel drops both
    locks when their holder exits or is killed, so a crashed run never blocks the next one.
    Where the file system has no ``flock`` (some network mounts), the file is created with
    ``O_EXCL`` instead and a stale lock is detected by its pid when the host is this one.
    """

    _held: ClassVar[dict[Path, StoreLock]] = {}  # real store path -> lock this process holds

    def __init__(self, store_path: str | Path) -> None:
        self.store = Path(store_path).resolve()
        self.path = Path(f"{self.store}.lock")
        self._fd: int | None = None
        self._dir_fd: int | None = None
        self._excl = False

    def acquire(self) -> StoreLock:
        """Take the lock or raise StoreLockedError naming the holder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(100):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise StoreLockedError(self._busy_message()) from None
            except OSError as exc:
                os.close(fd)
                if exc.errno in _NO_FLOCK:
                    return self._acquire_excl()
                raise
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if not same:  # the previous holder removed the file after we opened it: retry
                os.close(fd)
                continue
            self._fd = fd
            self._lock_store_dir()
            os.ftruncate(fd, 0)
            os.write(fd, self._info().encode())
            StoreLock._held[self.store] = self
            return self
        raise StoreLockedError(f"{self.path}: could not take the lock")

    def release(self) -> None:
        """Remove the lock file and drop the lock."""
        if self._fd is None and not self._excl:
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._close()
        StoreLock._held.pop(self.store, None)

    def __enter__(self) -> StoreLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    @classmethod
    def lock_new_store(cls, tmp: Path, path: Path) -> None:
        """Lock ``tmp``, about to be renamed to ``path``, for this process's lock on ``path``.

        ``flock`` follows the directory's inode through the rename, so the store is never
        visible at ``path`` unlocked. Does nothing when this process holds no lock on ``path``.
        """
        lock = cls._held.get(Path(path).resolve())
        if lock is not None and lock._dir_fd is None:
            lock._dir_fd = _flock_or_refuse(tmp, lock._dir_busy_message)

    def _lock_store_dir(self) -> None:
        """Lock the store directory (when it exists) or release everything and refuse; a
        store not made yet is refused while another process is creating it (its locked
        temporary folder, :func:`create_store`), even if that one's lock file was deleted."""
        try:
            if self.store.exists():
                self._dir_fd = _flock_or_refuse(self.store, self._dir_busy_message)
            else:
                for tmp in _creations(self.store):
                    if _flock_held(tmp):
                        raise StoreLockedError(self._dir_busy_message(_flock_holder(tmp.stat())))
        except StoreLockedError:
            self._close()
            raise

    def _close(self) -> None:
        for fd in (self._fd, self._dir_fd):
            if fd is not None:
                os.close(fd)
        self._fd, self._dir_fd, self._excl = None, None, False

    def _info(self) -> str:
        since = time.strftime("%FT%TZ", time.gmtime())
        return f"pid={os.getpid()} host={socket.gethostname()} since={since}\n"

    def _holder(self) -> dict[str, str]:
        try:
            text = self.path.read_text()
        except OSError:
            return {}
        return dict(part.split("=", 1) for part in text.split() if "=" in part)

    def _busy_message(self, holder: dict[str, str] | None = None) -> str:
        h = self._holder() if holder is None else holder
        who = f"pid {h.get('pid', '?')} on {h.get('host', '?')} since {h.get('since', '?')}"
        return (
            f"{self.store} is being written by another run ({who}); "
            "wait for it to finish or stop it, then run again"
        )

    def _dir_busy_message(self, pid: int | None) -> str:
        """Refusal when the store directory is locked although its lock file was deleted."""
        holder = {"pid": str(pid), "host": socket.gethostname()} if pid else {}
        return self._busy_message(holder) + f" (its lock file {self.path.name} was deleted)"

    def _acquire_excl(self) -> StoreLock:
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                h = self._holder()
                if h.get("host") == socket.gethostname() and not _pid_alive(int(h.get("pid", 0))):
                    with contextlib.suppress(FileNotFoundError):
                        self.path.unlink()  # stale: its writer is gone
                    continue
                raise StoreLockedError(
                    self._busy_message() + f" (or delete {self.path} if that run is gone)"
                ) from None
            self._excl = True
            try:
                self._lock_store_dir()
            except StoreLockedError:
                os.close(fd)
                self.path.unlink(missing_ok=True)
                raise
            os.write(fd, self._info().encode())
            os.close(fd)
            StoreLock._held[self.store] = self
            return self
        raise StoreLockedError(f"{self.path}: could not take the lock")


_NO_FLOCK = (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP)


def _flock_or_refuse(path: Path, busy: Callable[[int | None], str]) -> int | None:
    """Open ``path`` (a directory) and ``flock`` it; the fd, None where ``flock`` is missing.

    Raises StoreLockedError with ``busy(pid of the holder or None)`` when another holds it.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = _flock_holder(os.fstat(fd))
        os.close(fd)
        raise StoreLockedError(busy(pid)) from None
    except OSError as exc:
        os.close(fd)
        if exc.errno in _NO_FLOCK:
            return None
        raise
    return fd


def _flock_holder(st: os.stat_result) -> int | None:
    """Pid holding a ``flock`` on the file of ``st`` per Linux's /proc/locks, else None."""
    dev = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split()
        if "FLOCK" in parts and dev in parts and "->" not in parts:
            return int(parts[parts.index(dev) - 1])
    return None


def _creations(path: Path) -> list[Path]:
    """The temporary folders of creations of the store ``path`` (:func:`create_store`)."""
    return sorted(path.parent.glob(f".{path.name}.creating-*"))


def _flock_held(path: Path) -> bool:
    """Whether another open file holds a ``flock`` on ``path`` (False where it cannot be
    told: the path is gone or the file system has no ``flock``)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # closing drops a lock taken here
    return False


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ----------------------------------------------------------------------------------- create


def create_store(path: str | Path, plan: Plan) -> zarr.Group:
    """Make a new store for ``plan`` (all parameter columns filled, nothing done).

    The store is built under a temporary name beside ``path`` and renamed into place, so a
    killed creation leaves no half-made store at ``path``. Call it holding :class:`StoreLock`
    (leftovers of killed creations are removed).
    """
    path = Path(path)
    for old in _creations(path):  # left by a killed creation; a live one holds its lock
        if not _flock_held(old):
            shutil.rmtree(old, ignore_errors=True)
    tmp = path.with_name(f".{path.name}.creating-{uuid.uuid4().hex[:8]}")
    try:
        tmp.mkdir()
        StoreLock.lock_new_store(tmp, path)  # locked while it is built, and through the rename
        _build(tmp, plan)
        os.rename(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return zarr.open_group(str(path), mode="r+")


def _build(path: Path, plan: Plan) -> None:
    n, r = plan.n_rows, plan.n_renders
    rows, cols = plan.image_shape
    store_cfg = plan.spec["store"]
    chunk = max(1, min(store_cfg["chunk"], n))
    root = zarr.open_group(str(path), mode="w-")
    root.create_array(
        "images",
        shape=(n, rows, cols),
        dtype=store_cfg["dtype"],
        chunks=(1, rows, cols),
        shards=(chunk, rows, cols),
        fill_value=0,
        compressors=zarr.codecs.ZstdCodec(level=store_cfg["compression_level"]),
    )
    md_index = np.repeat(np.arange(len(plan.points), dtype=np.int64), r)
    key_hash = np.array([stable_hash(k) for k in plan.keys], dtype=np.uint64)
    split_code = np.array([SPLIT_CODES[split_of(int(h))] for h in key_hash], dtype=np.int8)
    cols_data: dict[str, np.ndarray] = {
        "md_index": md_index,
        "render_index": np.tile(np.arange(r, dtype=np.int32), len(plan.points)),
        "key_hash": np.repeat(key_hash, r),
        "split": np.repeat(split_code, r),
    }
    for s, name in enumerate(plan.label_names):
        cols_data[count_column(name)] = np.repeat(
            np.array([p.counts[s][1] for p in plan.points], dtype=np.int32), r
        )
    for name in ("v_rf", "v_end", "eta", "seed"):
        dtype = TABLE_COLUMNS[name][0]
        cols_data[name] = np.repeat(
            np.array([getattr(p, name) for p in plan.points], dtype=dtype), r
        )
    for name in _RENDER_COLUMNS:
        dtype = TABLE_COLUMNS[name][0]
        cols_data[name] = np.tile(
            np.array([v[name] for v in plan.renders], dtype=dtype), len(plan.points)
        )
    table = root.create_group("table")
    tchunk = max(1, min(TABLE_CHUNK, n))
    for name, data in cols_data.items():
        table.create_array(name, shape=(n,), dtype=data.dtype, chunks=(tchunk,))[:] = data
    table.create_array("simulator_version", shape=(n,), dtype=str, chunks=(tchunk,))
    for name in ("md_seconds", "render_seconds", "cpu_seconds"):
        table.create_array(name, shape=(n,), dtype="float32", chunks=(tchunk,), fill_value=0)
    table.create_array("done", shape=(n,), dtype=bool, chunks=(tchunk,), fill_value=False)
    from ccount_core import __version__

    root.attrs[ATTRS_KEY] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "spec": plan.spec,
        "spec_sha256": spec_digest(plan.spec),
        "label_names": list(plan.label_names),
        "label_columns": [count_column(s) for s in plan.label_names],
        "split_names": list(SPLIT_NAMES),
        "renders": list(plan.renders),
        "n_md_runs": len(plan.points),
        "n_renders": r,
        "duplicates_dropped": plan.duplicates,
        "image_shape": [rows, cols],
        "images_dtype": store_cfg["dtype"],
        "image_units": "camera counts"
        if plan.renders[0].get("camera")
        else "ion exposures (an in-focus ion integrates to 1)",
        "columns": {k: v[1] for k, v in TABLE_COLUMNS.items()},
        "created_by": f"ccount {__version__}",
        "created_utc": time.strftime("%FT%TZ", time.gmtime()),
    }


def open_for_writing(path: str | Path, plan: Plan) -> zarr.Group:
    """Open the store at ``path`` for ``plan``, creating it when missing.

    An existing store must have been made from an equal spec, else an InputError names the
    first differing key. Leftover temporary files of a killed writer are removed.
    """
    path = Path(path)
    if not path.exists():
        return create_store(path, plan)
    attrs = _read_attrs(path)
    diff = first_difference(attrs["spec"], plan.spec)
    if diff is not None:
        raise InputError(
            f"{path} was made from a different spec ({diff} differs); "
            "use a new output path or the original spec"
        )
    for tmp in path.rglob("*.partial"):
        tmp.unlink(missing_ok=True)
    group = zarr.open_group(str(path), mode="r+")
    table = _members(group, path, attrs)[1]
    read_rows(table["done"], path, "table/done")  # the writer resumes from it
    return group


def _read_attrs(path: Path) -> dict[str, Any]:
    if not (path / "zarr.json").is_file():
        raise InputError(f"{path}: not a ccount data-set store (no zarr.json)")
    try:
        group = zarr.open_group(str(path), mode="r")
    except Exception as exc:  # zarr raises several types for foreign or broken stores
        raise InputError(f"{path}: not a readable Zarr group ({type(exc).__name__})") from None
    attrs = group.attrs.get(ATTRS_KEY)
    if not isinstance(attrs, dict) or attrs.get("format") != FORMAT:
        raise InputError(f"{path}: not a ccount data-set store")
    if attrs.get("format_version") != FORMAT_VERSION:
        raise InputError(
            f"{path}: store format version {attrs.get('format_version')} is not {FORMAT_VERSION}"
        )
    return attrs


# ----------------------------------------------------------------------------------- writing


@dataclass
class _Pending:
    images: np.ndarray  # (R, rows, cols)
    md_seconds: float
    render_seconds: np.ndarray  # (R,)
    cpu_seconds: np.ndarray  # (R,)
    version: str


@dataclass
class StoreWriter:
    """Buffers finished MD runs and writes them in shard-sized blocks, image first, then ``done``.

    A shard is written as soon as all its rows are finished; everything buffered is written at
    least every ``flush_seconds`` (0: after every run) and by :meth:`flush`.
    """

    group: zarr.Group
    n_renders: int
    flush_seconds: float = 30.0
    _pending: dict[int, _Pending] = field(default_factory=dict)
    _last_flush: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.images = self.group["images"]
        self.table = self.group["table"]
        self.shard = int(self.images.shards[0]) if self.images.shards else self.images.chunks[0]
        self.done = np.asarray(self.table["done"][:], dtype=bool)
        self.dtype = np.dtype(self.images.dtype)

    def add(
        self,
        md_index: int,
        images: np.ndarray,
        md_seconds: float,
        render_seconds: Sequence[float],
        cpu_seconds: Sequence[float],
        version: str,
    ) -> None:
        """Queue the ``(R, rows, cols)`` images of one MD run (times in s); writes what is due."""
        self._pending[md_index] = _Pending(
            np.asarray(images),
            float(md_seconds),
            np.asarray(render_seconds, np.float32),
            np.asarray(cpu_seconds, np.float32),
            version,
        )
        if time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()
        else:
            self._flush_full_shards()

    def flush(self) -> None:
        """Write everything buffered."""
        self._write(sorted(self._pending))
        self._last_flush = time.monotonic()

    def _flush_full_shards(self) -> None:
        r = self.n_renders
        covered = self.done.copy()
        for m in self._pending:
            covered[m * r : (m + 1) * r] = True
        n = covered.size
        ready: set[int] = set()
        for m in self._pending:
            for s in {m * r // self.shard, ((m + 1) * r - 1) // self.shard}:
                if covered[s * self.shard : min(n, (s + 1) * self.shard)].all():
                    ready.add(s)
        if ready:
            runs = [
                m
                for m in self._pending
                if any(m * r // self.shard <= s <= ((m + 1) * r - 1) // self.shard for s in ready)
            ]
            self._write(sorted(runs))

    def _write(self, md_indices: list[int]) -> None:
        if not md_indices:
            return
        r = self.n_renders
        for a, b in _runs(md_indices):  # consecutive MD runs → one region write each
            items = [self._pending[m] for m in range(a, b)]
            block = np.concatenate([p.images for p in items])
            self.images[a * r : b * r] = self._convert(block)
        for a, b in _runs(md_indices):
            items = [self._pending[m] for m in range(a, b)]
            sl = slice(a * r, b * r)
            self.table["simulator_version"][sl] = np.repeat([p.version for p in items], r)
            self.table["md_seconds"][sl] = np.repeat([p.md_seconds for p in items], r).astype(
                np.float32
            )
            self.table["render_seconds"][sl] = np.concatenate([p.render_seconds for p in items])
            self.table["cpu_seconds"][sl] = np.concatenate([p.cpu_seconds for p in items])
        for a, b in _runs(md_indices):  # last: mark done only once images and times are in
            self.table["done"][a * r : b * r] = True
            self.done[a * r : b * r] = True
        for m in md_indices:
            del self._pending[m]

    def _convert(self, block: np.ndarray) -> np.ndarray:
        if self.dtype == np.uint16:
            return np.clip(np.rint(block), 0, 65535).astype(np.uint16)
        return block.astype(np.float32, copy=False)


def _runs(sorted_ints: list[int]) -> Iterator[tuple[int, int]]:
    """Maximal runs of consecutive integers as half-open (start, stop) pairs."""
    start = prev = sorted_ints[0]
    for x in sorted_ints[1:]:
        if x != prev + 1:
            yield start, prev + 1
            start = x
        prev = x
    yield start, prev + 1


# ----------------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class Dataset:
    """A data-set store opened for reading (:func:`open_dataset`).

    ``images``: the Zarr array ``(n, rows, cols)`` (float32, or uint16 counts), read lazily;
    ``table``: every column as a numpy array of length n; ``label_names``: the species whose
    ion numbers are the labels, the counted (laser-cooled) species first; ``attrs``: the
    store's metadata (spec, renders, ...). Rows that are not done hold zeros: select rows with
    :meth:`indices`, which returns only finished ones.
    """

    path: Path
    images: zarr.Array
    table: dict[str, np.ndarray]
    label_names: tuple[str, ...]
    attrs: dict[str, Any]

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def labels(self) -> np.ndarray:
        """``(n, k)`` float32 ion numbers per species, columns in ``label_names`` order."""
        cols = [self.table[count_column(s)] for s in self.label_names]
        return np.stack(cols, axis=1).astype(np.float32)

    @property
    def done(self) -> np.ndarray:
        """``(n,)`` bool: rows whose image is written."""
        return self.table["done"]

    @property
    def spec(self) -> dict[str, Any]:
        """The normalised spec the store was made from."""
        return self.attrs["spec"]

    @property
    def complete(self) -> bool:
        """True when every row is done."""
        return bool(self.done.all())

    def indices(self, split: str = "all") -> np.ndarray:
        """Sorted int64 row indices of finished rows in ``split`` (train, validation, test, all)."""
        if split == "all":
            mask = self.done
        elif split in SPLIT_CODES:
            mask = self.done & (self.table["split"] == SPLIT_CODES[split])
        else:
            raise InputError(f"split must be one of all, {', '.join(SPLIT_NAMES)}; got {split!r}")
        return np.flatnonzero(mask).astype(np.int64)


def open_dataset(path: str | Path) -> Dataset:
    """Open a store written by ``ccount dataset generate``; it needs no other file.

    A missing or unreadable array raises InputError naming the store, the array and, for a
    damaged chunk, its rows; so do later reads of ``images`` (:class:`StoreImages`)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"dataset: no such store: {path}")
    attrs = _read_attrs(path)
    group = zarr.open_group(str(path), mode="r")
    images, arrays = _members(group, path, attrs)
    order = [c for c in attrs.get("columns", {}) if c in arrays]
    order[4:4] = [c for c in attrs["label_columns"] if c in arrays]  # after split
    order += sorted(set(arrays) - set(order))
    table = {name: read_rows(arrays[name], path, f"table/{name}") for name in order}
    if "simulator_version" in table:
        table["simulator_version"] = np.array(table["simulator_version"].tolist(), dtype=str)
    return Dataset(path, images, table, tuple(attrs["label_names"]), attrs)


def _rebuild(path: Path) -> str:
    """The advice for a damaged store: resuming does not recompute rows marked done."""
    return f"delete it and generate it again (ccount dataset generate SPEC -o {path})"


def _reason(exc: BaseException) -> str:
    """The first sentence of ``exc`` (its type when empty), at most 100 characters."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    text = text.split(". ")[0]
    return text if len(text) <= 100 else text[:99] + "…"


def _members(
    group: zarr.Group, path: Path, attrs: dict[str, Any]
) -> tuple[StoreImages, dict[str, zarr.Array]]:
    """``images`` and the table's arrays (by column) of the store at ``path``; InputError
    naming the first array that is missing, whose metadata cannot be read or that has an
    empty chunk file (a crash can leave one, and zarr would read it as zeros)."""
    on_disk = [p.parent.name for p in sorted((path / "table").glob("*/zarr.json"))]
    needed = ["done", *attrs.get("columns", {}), *attrs["label_columns"]]
    arrays = {c: _open_member(group, path, f"table/{c}") for c in dict.fromkeys(needed + on_disk)}
    images = _open_member(group, path, "images")
    return StoreImages(images._async_array, path), arrays


def _open_member(group: zarr.Group, path: Path, name: str) -> zarr.Array:
    """The array ``name`` of the store at ``path``, checked for empty chunk files."""
    if not (path / name / "zarr.json").is_file():
        raise InputError(f"{path}: the array {name} is missing; {_rebuild(path)}")
    try:
        array = group[name]
    except Exception as exc:  # zarr raises several types for a damaged zarr.json
        raise InputError(
            f"{path}: the array {name} cannot be opened ({_reason(exc)}); {_rebuild(path)}"
        ) from None
    if not isinstance(array, zarr.Array):
        raise InputError(f"{path}: {name} is not an array; {_rebuild(path)}")
    per = int((array.shards or array.chunks)[0])
    for chunk in sorted((path / name / "c").rglob("*")):
        key = chunk.relative_to(path / name / "c").parts  # (3, 0, 0): not a writer's temp file
        if all(k.isdigit() for k in key) and chunk.is_file() and chunk.stat().st_size == 0:
            first = int(key[0]) * per
            last = min(first + per, array.shape[0]) - 1
            raise InputError(
                f"{path}: {name} rows {first}-{last} cannot be read, the store is damaged "
                f"(the chunk file {chunk.relative_to(path)} is empty); {_rebuild(path)}"
            )
    return array


_DECODE_ERRORS = (ValueError, RuntimeError, OSError)
"""What zarr and its codecs raise for a damaged chunk (checksum mismatch, zstd error, EIO)."""


def read_rows(array: zarr.Array, path: Path, name: str, selection: Any = slice(None)) -> Any:
    """``array[selection]`` of the store at ``path`` (``name``: the array's path in it);
    InputError naming the rows of the chunks that cannot be decoded."""
    try:
        return np.asarray(zarr.Array.__getitem__(array, selection))
    except _DECODE_ERRORS as exc:
        message = _damaged_message(array, path, name, selection, exc)
        if message is None:  # no chunk fails on its own: not damage (e.g. a bad selection)
            raise
        raise InputError(message) from None


def _damaged_message(
    array: zarr.Array, path: Path, name: str, selection: Any, exc: BaseException
) -> str | None:
    """One line naming the rows of the shards (or chunks) of ``array`` whose part in
    ``selection`` fails to decode (each part is read again on its own); None when none does."""
    per = int((array.shards or array.chunks)[0])
    first = selection[0] if isinstance(selection, tuple) and selection else selection
    try:
        rows = np.unique(np.arange(array.shape[0])[first])
    except (IndexError, TypeError, ValueError):
        rows = np.arange(array.shape[0])
    bad = []
    for shard in np.unique(rows // per):
        part = rows[rows // per == shard]
        try:
            zarr.Array.__getitem__(array, part)
        except _DECODE_ERRORS:
            start = int(shard) * per
            bad.append(f"{start}-{min(start + per, array.shape[0]) - 1}")
    if not bad:
        return None
    where = f"rows {', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''}"
    return (
        f"{path}: {name} {where} cannot be read, the store is damaged ({_reason(exc)}); "
        f"{_rebuild(path)}"
    )


@dataclass
class StoreImages(zarr.Array):
    """The ``images`` array of a store at ``store``: a read (``[...]``, as dask and the
    contact sheet read it) of a damaged shard raises InputError naming the store and rows."""

    store: Path = Path()

    def __getitem__(self, selection: Any) -> Any:
        return read_rows(self, self.store, "images", selection)
