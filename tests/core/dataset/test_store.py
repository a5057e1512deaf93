"""The data-set store and sweep with a stand-in simulator (fast; the real one: test_dataset_cli).

The stand-in writes what it was asked into the image, so the tests check that every row holds
the image of its own parameters: pixel (0, 0) = fluorescing ions, (0, 1) = focal offset,
(0, 2) = V_RF, (0, 3) = seed, (0, 4) = a camera-noise draw.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

from ccount_core.dataset import (
    StoreLock,
    StoreLockedError,
    generate,
    normalise_spec,
    open_dataset,
    plan,
)
from ccount_core.dataset.report import contact_sheet, describe
from ccount_core.dataset.spec import SPLIT_CODES, draw_camera_effects
from ccount_core.dataset.store import StoreWriter, create_store
from ccount_core.dataset.sweep import image_draws
from ccount_core.errors import InputError

CALLS: list[tuple[int, int]] = []
FAIL_SEEDS: set[int] = set()
_LOCK = threading.Lock()


def fake_simulate(
    trap: Mapping[str, Any],
    ions: Sequence[tuple[str, int]],
    simulation: Mapping[str, Any],
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    if seed in FAIL_SEEDS:
        raise RuntimeError(f"crystal left the trap (seed {seed})")
    with _LOCK:
        CALLS.append((ions[0][1], seed))
    n = sum(c for _, c in ions)
    samples = np.zeros((2, n, 3))
    samples[..., 0] = trap["v_rf"]
    samples[..., 1] = seed
    fluorescing = np.zeros(n, bool)
    fluorescing[: ions[0][1]] = True
    return samples, fluorescing


def fake_render(
    samples: np.ndarray,
    fluorescing: np.ndarray,
    imaging: Mapping[str, Any],
    rng: np.random.Generator,
) -> np.ndarray:
    image = np.zeros(imaging["shape"], np.float32)
    image[0, :5] = (
        fluorescing.sum(),
        imaging["focal_offset_um"],
        samples[0, 0, 0],
        samples[0, 0, 1],
        rng.random(),
    )
    image[1:, :] = 1.0
    return image


def spec(**over: Any) -> dict[str, Any]:
    s = {
        "name": "t",
        "imaging": {"shape": [12, 16]},
        "species": {"dark": {"ND3+": {"number": [0, 4]}}},
        "parameters": {
            "n_ions": [5, 6, 7],
            "v_rf": [190, 210],
            "v_end": [2.0],
            "eta": 0.244,
            "seeds": [1, 2],
        },
        "renders": {"focal_offset_um": [0, 15]},
        "store": {"chunk": 8},
    }
    s.update(over)
    return s


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    from distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    )
    with Client(cluster) as c:
        yield c
    cluster.close()


def run(s: dict, out: Path, client: Any, **kw: Any):
    return generate(s, out, client=client, simulate_fn=fake_simulate, render_fn=fake_render, **kw)


def check_rows(ds) -> None:
    """Every done row holds the image of its own parameters."""
    idx = ds.indices("all")
    t = ds.table
    first = np.asarray(ds.images.get_orthogonal_selection((idx, 0, slice(0, 4))))
    np.testing.assert_array_equal(first[:, 0], t["n_Ca+"][idx])
    np.testing.assert_array_equal(first[:, 1], t["focal_offset_um"][idx])
    np.testing.assert_array_equal(first[:, 2], t["v_rf"][idx])
    np.testing.assert_array_equal(first[:, 3], t["seed"][idx])


def test_a_total_ion_number_spec_stores_each_species_count(tmp_path: Path, client: Any) -> None:
    s = spec(
        species={"n_ions": "total", "dark": {"ND3+": {"fraction": [0.0, 0.5]}}},
        parameters={"n_ions": [8, 11], "v_rf": [190], "v_end": [2.0], "eta": 0.244, "seeds": [1]},
    )
    out = tmp_path / "total.zarr"
    assert run(s, out, client, flush_seconds=0).done_after == 8
    ds = open_dataset(out)
    check_rows(ds)
    pairs = {tuple(int(v) for v in row) for row in ds.labels}
    # (Ca+, ND3+) of 8 and 11 ions in all, 0 % and 50 % dark (floor(5.5) = 5)
    assert pairs == {(8, 0), (4, 4), (11, 0), (6, 5)}


def test_generate_writes_every_sample_once_with_its_parameters(tmp_path: Path, client: Any) -> None:
    CALLS.clear()
    progress: list[tuple[int, int]] = []
    out = tmp_path / "d.zarr"
    summary = run(
        spec(), out, client, flush_seconds=0, progress=lambda d, t: progress.append((d, t))
    )
    assert summary.n_rows == 48 and summary.done_after == 48 and summary.failed_runs == 0
    assert len(CALLS) == 24  # one MD run per parameter point, rendered twice
    assert progress[-1] == (48, 48)
    ds = open_dataset(out)
    assert len(ds) == 48 and ds.complete and ds.images.shape == (48, 12, 16)
    assert ds.images.dtype == np.float32 and ds.label_names == ("Ca+", "ND3+")
    check_rows(ds)
    labels = ds.labels
    assert labels.shape == (48, 2) and labels.dtype == np.float32
    assert set(labels[:, 1]) == {0.0, 4.0} and set(labels[:, 0]) == {5.0, 6.0, 7.0}
    # the split partitions the rows; all renders of an MD run share one split
    parts = [ds.indices(s) for s in ("train", "validation", "test")]
    assert sorted(np.concatenate(parts).tolist()) == list(range(48))
    split = ds.table["split"].reshape(24, 2)
    assert np.all(split[:, 0] == split[:, 1])
    # every (parameters, render) combination appears exactly once
    t = ds.table
    combos = set(
        zip(t["n_Ca+"], t["n_ND3+"], t["v_rf"], t["seed"], t["focal_offset_um"], strict=True)
    )
    assert len(combos) == 48
    assert set(t["simulator_version"]) == {ds.attrs["created_by"].split()[1]}
    # the spec, label names and render settings travel with the store
    assert ds.spec == normalise_spec(spec())
    assert [r["focal_offset_um"] for r in ds.attrs["renders"]] == [0.0, 15.0]
    # the images are sharded for training reads: one inner chunk per image
    assert ds.images.chunks == (1, 12, 16) and ds.images.shards == (8, 12, 16)
    with pytest.raises(InputError, match="split"):
        ds.indices("holdout")


def test_resume_runs_only_what_is_missing(tmp_path: Path, client: Any) -> None:
    out = tmp_path / "d.zarr"
    FAIL_SEEDS.add(2)
    try:
        CALLS.clear()
        first = run(spec(), out, client, flush_seconds=0)
    finally:
        FAIL_SEEDS.clear()
    assert first.failed_runs == 12 and first.done_after == 24
    assert "seed 2" in first.first_error
    ds = open_dataset(out)
    assert not ds.complete and set(ds.table["seed"][ds.done]) == {1}
    assert len(ds.indices("all")) == 24
    check_rows(ds)
    before = np.asarray(ds.images[:])
    CALLS.clear()
    second = run(spec(), out, client, flush_seconds=0)
    assert second.done_before == 24 and second.done_after == 48 and second.failed_runs == 0
    assert sorted(s for _, s in CALLS) == [2] * 12  # nothing done twice
    ds = open_dataset(out)
    assert ds.complete
    check_rows(ds)
    kept = np.asarray(ds.images[:])[before[:, 1, 0] == 1]
    np.testing.assert_array_equal(kept, before[before[:, 1, 0] == 1])
    CALLS.clear()
    third = run(spec(), out, client)
    assert third.done_before == 48 and CALLS == []


def test_a_split_alone_is_generated_and_the_rest_finished_later(
    tmp_path: Path, client: Any
) -> None:
    out = tmp_path / "d.zarr"
    CALLS.clear()
    first = run(spec(), out, client, flush_seconds=0, splits=["validation", "test"])
    ds = open_dataset(out)
    held_out = ds.table["split"] != SPLIT_CODES["train"]
    assert 0 < held_out.sum() < 48  # the fixture's spec has both kinds of run
    np.testing.assert_array_equal(ds.done, held_out)
    assert first.done_after == int(held_out.sum()) and len(CALLS) == int(held_out.sum()) // 2
    check_rows(ds)
    held = np.asarray(ds.images[:])[held_out]
    CALLS.clear()
    second = run(spec(), out, client, flush_seconds=0)
    assert second.done_before == first.done_after and second.done_after == 48
    assert len(CALLS) == int((~held_out).sum()) // 2  # the held-out runs are not redone
    ds = open_dataset(out)
    assert ds.complete
    np.testing.assert_array_equal(np.asarray(ds.images[:])[held_out], held)
    with pytest.raises(InputError, match="splits must be drawn from train, validation, test"):
        run(spec(), tmp_path / "e.zarr", client, splits=["valid"])


def test_an_existing_scheduler_runs_the_sweep(tmp_path: Path) -> None:
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False, protocol="tcp", dashboard_address=None
    ) as cluster:
        assert cluster.scheduler_address.startswith("tcp://")
        summary = generate(
            spec(),
            tmp_path / "d.zarr",
            scheduler=cluster.scheduler_address,
            simulate_fn=fake_simulate,
            render_fn=fake_render,
        )
    assert summary.done_after == 48
    check_rows(open_dataset(tmp_path / "d.zarr"))


def test_noise_draws_differ_and_are_reproducible(tmp_path: Path, client: Any) -> None:
    s = spec(
        imaging={"shape": [12, 16], "camera": {"photons_per_ion": 50}},
        renders={"noise_draws": 3},
        species={},
    )
    run(s, tmp_path / "a.zarr", client)
    run(s, tmp_path / "b.zarr", client)
    a, b = open_dataset(tmp_path / "a.zarr"), open_dataset(tmp_path / "b.zarr")
    assert a.attrs["image_units"] == "camera counts"
    noise_a = np.asarray(a.images[:, 0, 4]).reshape(-1, 3)
    assert len(np.unique(noise_a)) == noise_a.size  # every draw its own
    np.testing.assert_array_equal(noise_a, np.asarray(b.images[:, 0, 4]).reshape(-1, 3))
    np.testing.assert_array_equal(a.table["noise_draw"], np.tile([0, 1, 2], 12))


def test_uint16_store(tmp_path: Path, client: Any) -> None:
    run(spec(store={"chunk": 4, "dtype": "uint16"}), tmp_path / "u.zarr", client)
    ds = open_dataset(tmp_path / "u.zarr")
    assert ds.images.dtype == np.uint16
    check_rows(ds)


def test_a_different_spec_is_refused_naming_the_key(tmp_path: Path, client: Any) -> None:
    out = tmp_path / "d.zarr"
    run(spec(), out, client)
    other = spec()
    other["parameters"] = {**other["parameters"], "v_rf": [190, 220]}
    with pytest.raises(InputError, match=r"parameters\.v_rf\.values differs"):
        run(other, out, client)
    (tmp_path / "foreign.zarr").mkdir()
    zarr.open_group(str(tmp_path / "foreign.zarr"), mode="w")
    with pytest.raises(InputError, match="not a ccount data-set store"):
        run(spec(), tmp_path / "foreign.zarr", client)
    with pytest.raises(InputError, match="no such store"):
        open_dataset(tmp_path / "missing.zarr")


def test_a_second_writer_is_refused(tmp_path: Path, client: Any) -> None:
    out = tmp_path / "d.zarr"
    with StoreLock(out):
        with pytest.raises(StoreLockedError, match=f"pid {os.getpid()}"):
            run(spec(), out, client)
        with pytest.raises(StoreLockedError):
            StoreLock(out).acquire()
    assert not Path(f"{out}.lock").exists()
    assert run(spec(), out, client).done_after == 48


def test_lock_of_a_killed_writer_does_not_block(tmp_path: Path) -> None:
    out = tmp_path / "d.zarr"
    code = textwrap.dedent(f"""
        import os, signal
        from ccount_core.dataset import StoreLock
        StoreLock({str(out)!r}).acquire()
        print("locked", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL and "locked" in proc.stdout
    assert Path(f"{out}.lock").exists()  # left behind by the killed writer ...
    with StoreLock(out):  # ... and not in the way
        pass


def _hold_lock(store: Path) -> subprocess.Popen[str]:
    """A second process that takes StoreLock(store), says "locked" and waits for its stdin."""
    code = textwrap.dedent(f"""
        import sys
        from ccount_core.dataset import StoreLock
        StoreLock({str(store)!r}).acquire()
        print("locked", flush=True)
        sys.stdin.read()
    """)
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline() == "locked\n"
    return proc


def test_lock_cannot_be_dodged_by_a_symlink_or_by_deleting_the_lock_file(tmp_path: Path) -> None:
    # StoreLock: named after the resolved store path, and the store directory is locked too
    out = tmp_path / "d.zarr"
    out.mkdir()
    link = tmp_path / "link.zarr"
    link.symlink_to(out)
    holder = _hold_lock(link)
    try:
        assert Path(f"{out}.lock").exists() and not Path(f"{link}.lock").exists()
        with pytest.raises(StoreLockedError, match=f"pid {holder.pid} "):
            StoreLock(out).acquire()
        Path(f"{out}.lock").unlink()  # a user "cleaning up" a lock they think stale
        for path in (out, link):
            with pytest.raises(StoreLockedError, match=f"pid {holder.pid} .*was deleted"):
                StoreLock(path).acquire()
    finally:
        holder.kill()
        holder.wait()
    with StoreLock(link):  # the killed holder's locks are gone with it
        with pytest.raises(StoreLockedError):
            StoreLock(out).acquire()


def test_a_store_created_under_the_lock_is_locked_before_it_appears(
    tmp_path: Path, client: Any
) -> None:
    # create_store locks the new directory (StoreLock.lock_new_store) before renaming it in place
    out = tmp_path / "d.zarr"
    with StoreLock(out):
        create_store(out, plan(normalise_spec(spec())))
        Path(f"{out}.lock").unlink()
        code = f"from ccount_core.dataset import StoreLock; StoreLock({str(out)!r}).acquire()"
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert proc.returncode != 0 and "StoreLockedError" in proc.stderr
        assert f"pid {os.getpid()} " in proc.stderr
    assert run(spec(), out, client).done_after == 48  # released: the next writer gets it


def test_a_store_being_created_is_not_taken_when_its_lock_file_is_deleted(
    tmp_path: Path,
) -> None:
    # create_store locks its temporary folder before building in it; StoreLock refuses a store
    # whose creation holds that lock, and the clean-up of killed creations keeps a live one
    out = tmp_path / "d.zarr"
    code = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from ccount_core.dataset import StoreLock
        out = Path({str(out)!r})
        StoreLock(out).acquire()
        tmp = out.with_name(f".{{out.name}}.creating-live")
        tmp.mkdir()
        StoreLock.lock_new_store(tmp, out)  # as create_store does before it builds
        print("locked", flush=True)
        sys.stdin.read()
    """)
    holder = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    dead = tmp_path / ".d.zarr.creating-dead"  # a killed creation's leftover, unlocked
    dead.mkdir()
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        Path(f"{out}.lock").unlink()
        with pytest.raises(StoreLockedError, match=f"pid {holder.pid} "):
            StoreLock(out).acquire()
        create_store(tmp_path / "d.zarr", plan(normalise_spec(spec())))
        assert not dead.exists() and (tmp_path / ".d.zarr.creating-live").is_dir()
    finally:
        holder.kill()
        holder.wait()


def test_writer_writes_whole_shards_as_they_complete(tmp_path: Path) -> None:
    p = plan(normalise_spec(spec(store={"chunk": 4, "order": "grid"})))  # 24 runs x 2 renders
    group = create_store(tmp_path / "w.zarr", p)
    writer = StoreWriter(group, p.n_renders, flush_seconds=1e9)
    img = np.ones((2, 12, 16), np.float32)
    writer.add(1, img, 1.0, [0.1, 0.2], [0.6, 0.7], "v")  # rows 2-3 of shard 0 (rows 0-3)
    writer.add(3, img, 1.0, [0.1, 0.2], [0.6, 0.7], "v")  # rows 6-7 of shard 1
    assert not np.asarray(group["table/done"][:]).any()  # no shard complete yet
    writer.add(0, img * 2, 1.5, [0.1, 0.2], [0.6, 0.7], "v")  # completes shard 0
    done = np.asarray(group["table/done"][:])
    assert done[:4].all() and not done[4:].any()
    assert np.asarray(group["images"][:4, 0, 0]).tolist() == [2, 2, 1, 1]
    assert np.asarray(group["table/md_seconds"][:4]).tolist() == [1.5, 1.5, 1.0, 1.0]
    writer.flush()  # writes the partial shard 1 too
    done = np.asarray(group["table/done"][:])
    assert done[6:8].all() and done.sum() == 6


def test_info_and_contact_sheet(tmp_path: Path, client: Any) -> None:
    import matplotlib.image

    out = tmp_path / "d.zarr"
    FAIL_SEEDS.add(2)
    try:
        run(spec(), out, client)
    finally:
        FAIL_SEEDS.clear()
    ds = open_dataset(out)
    text = describe(ds)
    assert "done       24 of 48 (incomplete" in text
    t = ds.table
    for name, code in (("train", 0), ("validation", 1), ("test", 2)):
        planned = int((t["split"] == code).sum())
        done = int(((t["split"] == code) & t["done"]).sum())
        assert f"  {name:<10} {planned:>7} {done:>8}" in text
    assert "n_Ca+            5 .. 7" in text and "seed             1 .. 1     (1 value)" in text
    png = contact_sheet(ds, tmp_path / "sheet.png", n=6, seed=1)
    sheet = matplotlib.image.imread(png)
    assert sheet.ndim == 3 and sheet.shape[0] > 100 and sheet.shape[1] > 100
    with pytest.raises(InputError, match="png"):
        contact_sheet(ds, tmp_path / "sheet.jpg")


def _written_store(path: Path) -> Path:
    """A store of 48 rows in shards of 4, every row done (image of run m: all m)."""
    p = plan(normalise_spec(spec(store={"chunk": 4, "order": "grid"})))
    writer = StoreWriter(create_store(path, p), p.n_renders, flush_seconds=1e9)
    for m in range(len(p.points)):
        writer.add(m, np.full((2, 12, 16), m, np.float32), 1.0, [0.1, 0.2], [0.6, 0.7], "v")
    writer.flush()
    return path


def _truncate(path: Path, size: int) -> None:
    path.write_bytes(path.read_bytes()[:size])


def _rebuild(store: Path) -> str:
    return f"; delete it and generate it again (ccount dataset generate SPEC -o {store})"


def test_a_damaged_store_is_named_with_its_array_rows_and_the_repair(tmp_path: Path) -> None:
    # store.open_dataset, StoreImages and open_for_writing: one line naming the store, the
    # array, the rows of a damaged chunk and what to do, instead of zarr's KeyError,
    # checksum or zstd errors; a zero-byte shard, which zarr would read as zeros, too.
    import dask.array as da

    from ccount_core.dataset.report import contact_sheet
    from ccount_core.dataset.store import open_for_writing

    store = _written_store(tmp_path / "d.zarr")
    ds = open_dataset(store)
    assert np.asarray(ds.images[13])[0, 0] == 6  # an intact store reads as before
    with pytest.raises(IndexError):  # a bad selection stays zarr's error, not "damaged"
        ds.images[99]
    _truncate(store / "images" / "c" / "3" / "0" / "0", 100)  # rows 12-15
    ds = open_dataset(store)  # the table is intact
    shard = f"{store}: images rows 12-15 cannot be read, the store is damaged"
    for read in (
        lambda: ds.images[13],
        lambda: da.from_zarr(ds.images)[[1, 14]].compute(),  # as training data are read
        lambda: contact_sheet(ds, tmp_path / "sheet.png", n=48),
    ):
        with pytest.raises(InputError) as err:
            read()
        assert str(err.value) == f"{shard} (Stored and computed checksum do not match)" + (
            _rebuild(store)
        )
    assert not (tmp_path / "sheet.png").exists()

    (store / "images" / "c" / "3" / "0" / "0").write_bytes(b"")
    with pytest.raises(InputError, match=r"images rows 12-15 .* file images/c/3/0/0 is empty"):
        open_dataset(store)

    store = _written_store(tmp_path / "t.zarr")
    _truncate(store / "table" / "n_Ca+" / "c" / "0", 15)
    with pytest.raises(InputError) as err:
        open_dataset(store)
    assert str(err.value) == (
        f"{store}: table/n_Ca+ rows 0-47 cannot be read, the store is damaged "
        f"(Zstd decompression error: invalid input data){_rebuild(store)}"
    )

    store = _written_store(tmp_path / "n.zarr")
    p = plan(normalise_spec(spec(store={"chunk": 4, "order": "grid"})))
    shutil.rmtree(store / "table" / "done")
    for opener in (open_dataset, lambda s: open_for_writing(s, p)):
        with pytest.raises(InputError) as err:
            opener(store)
        assert str(err.value) == f"{store}: the array table/done is missing{_rebuild(store)}"


def draw_render(
    samples: np.ndarray,
    fluorescing: np.ndarray,
    imaging: Mapping[str, Any],
    rng: np.random.Generator,
) -> np.ndarray:
    """Draws the camera effects first, as ``render_real`` does, and writes two of them."""
    draw = draw_camera_effects(imaging["camera_effects"], rng)
    image = np.ones(imaging["shape"], np.float32)
    image[0, :2] = draw["psf_wing_fraction"], draw["camera"]["read_noise"]
    return image


def test_each_images_camera_effects_are_drawn_again_from_its_seed(
    tmp_path: Path, client: Any
) -> None:
    effects = {
        "psf_wing_fraction": {"min": 0.0, "max": 0.3},
        "camera": {"read_noise": {"min": 1, "max": 10}},
    }
    s = spec(imaging={"shape": [12, 16], "camera": {}}, camera_effects=effects)
    generate(
        s, tmp_path / "d.zarr", client=client, simulate_fn=fake_simulate, render_fn=draw_render
    )
    ds = open_dataset(tmp_path / "d.zarr")
    rows = ds.indices("all")
    draws = image_draws(plan(normalise_spec(s)), rows)
    stored = np.asarray(ds.images.get_orthogonal_selection((rows, 0, slice(0, 2))))
    got = np.array([[d["psf_wing_fraction"], d["camera"]["read_noise"]] for d in draws])
    np.testing.assert_allclose(got, stored, rtol=1e-6)
    assert len(np.unique(got[:, 0])) == len(rows)  # a draw per image, not per run or store
    assert image_draws(plan(normalise_spec(spec())), rows[:3]) == [{}, {}, {}]
