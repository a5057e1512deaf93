"""Run a data-set spec on dask: one task per MD run, rendered several times, written as it goes.

:func:`generate` checks the spec (trap stability of every (V_RF, V_end, η) before anything
runs), takes the store's writer lock, creates or reopens the store, and submits the MD runs
that are not finished to a dask.distributed cluster: a ``LocalCluster`` of one single-threaded
process per core by default, or any running scheduler (``scheduler="tcp://host:8786"``). At
most a few tasks per worker are in flight, so memory stays flat on sweeps of any size. The
client process is the only writer; see :mod:`ccount_core.dataset.store`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ccount_core.dataset.spec import (
    SPLIT_NAMES,
    MdPoint,
    Plan,
    canonical_key,
    draw_camera_effects,
    effects_from_draw,
    load_spec,
    normalise_spec,
    plan,
    split_of,
    stable_hash,
)
from ccount_core.errors import InputError
from ccount_core.progress import ProgressCallback, report

if TYPE_CHECKING:
    from ccount_core.dataset.store import StoreWriter

SimulateFn = Callable[
    [Mapping[str, Any], Sequence[tuple[str, int]], Mapping[str, Any], int],
    tuple[np.ndarray, np.ndarray],
]
"""``(trap_lab, ions, simulation, seed) -> (samples (S, N, 3) m, fluorescing (N,) bool)``.

``trap_lab``: keyword arguments of ``TrapSettings.from_lab_units`` (V, µm, MHz); ``ions``:
((species, number), ...) with zero numbers left out; ``simulation``: the spec's section."""
RenderFn = Callable[[np.ndarray, np.ndarray, Mapping[str, Any], np.random.Generator], np.ndarray]
"""``(samples, fluorescing, imaging_lab, rng) -> (rows, cols) float32``; ``imaging_lab`` is
``ImagingSettings.to_lab_units()`` form."""


@dataclass(frozen=True)
class MdTask:
    """Everything a worker needs for one MD run (plain, picklable values)."""

    md_index: int
    ions: tuple[tuple[str, int], ...]
    trap: dict[str, float]
    simulation: dict[str, Any]
    seed: int
    renders: tuple[dict[str, Any], ...]
    noise_key: int
    simulate_fn: SimulateFn | None = None
    render_fn: RenderFn | None = None


@dataclass(frozen=True)
class MdOutput:
    """A finished MD run: ``images`` ``(R, rows, cols)`` float32; wall and CPU times in s
    (``cpu_seconds``: per image, its 1/R share of the MD CPU time plus its rendering)."""

    md_index: int
    images: np.ndarray
    md_seconds: float
    render_seconds: tuple[float, ...]
    cpu_seconds: tuple[float, ...]
    version: str


@dataclass(frozen=True)
class GenerateSummary:
    """What a :func:`generate` call did: rows in the store, done before and after, failures."""

    path: Path
    n_rows: int
    done_before: int
    done_after: int
    failed_runs: int
    first_error: str | None
    seconds: float


# ----------------------------------------------------------------------------------- workers


def simulate_real(
    trap: Mapping[str, Any],
    ions: Sequence[tuple[str, int]],
    simulation: Mapping[str, Any],
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The real MD: :func:`ccount_core.simulation.simulate` with no imaging; returns samples
    and mask."""
    from ccount_core.simulation import IonGroup, TrapSettings, simulate

    result = simulate(
        TrapSettings.from_lab_units(**trap),
        [IonGroup(s, n) for s, n in ions],
        simulation_settings(simulation, seed),
        None,
    )
    cooled = np.array([s.laser_cooled for s in result.species], dtype=bool)
    return result.samples, cooled[np.asarray(result.species_index)]


def render_real(
    samples: np.ndarray,
    fluorescing: np.ndarray,
    imaging: Mapping[str, Any],
    rng: np.random.Generator,
) -> np.ndarray:
    """The real renderer: :func:`ccount_core.simulation.render.render` with the imaging
    settings in µm; a ``camera_effects`` section among them is drawn for this image with
    ``rng`` (:func:`~ccount_core.dataset.spec.draw_camera_effects`) before the noise."""
    from ccount_core.simulation.render import ImagingSettings, render

    settings = dict(imaging)
    section = settings.pop("camera_effects", None)
    if section is None:
        return render(samples, fluorescing, ImagingSettings.from_dict(settings), rng)
    draw = draw_camera_effects(section, rng)
    if "camera" in draw:
        settings["camera"] = {**settings["camera"], **draw["camera"]}
    effects = effects_from_draw(draw)
    return render(samples, fluorescing, ImagingSettings.from_dict(settings), rng, effects)


def render_rng(noise_key: int, render_index: int) -> np.random.Generator:
    """The random generator of render ``render_index`` of the MD run whose point hashes to
    ``noise_key``: its camera-effects draw (first) and its noise come from it."""
    return np.random.default_rng([noise_key, render_index])


def image_draws(p: Plan, rows: Sequence[int]) -> list[dict[str, Any]]:
    """The camera effects each image (row) of a plan was rendered with: one dict per row in
    lab units, as :func:`~ccount_core.dataset.spec.draw_camera_effects` drew it for
    :func:`render_real` (empty for a render without a ``camera_effects`` section). Drawn again
    from each image's seed, so a store need not keep them."""
    out = []
    for row in rows:
        md_index, r = divmod(int(row), p.n_renders)
        section = p.renders[r].get("camera_effects")
        if section is None:
            out.append({})
            continue
        key = stable_hash(canonical_key(p.points[md_index]))
        out.append(draw_camera_effects(section, render_rng(key, r)))
    return out


def simulation_settings(simulation: Mapping[str, Any], seed: int) -> Any:
    """``SimulationSettings`` from the spec's ``simulation`` section and a seed.

    ``temperature_mk`` (mK) is converted to ``temperature`` (K); every other key is a field of
    ``SimulationSettings`` as it stands (SI: ``cooling_rate`` 1/s, ``mode``, ``samples`` ...).
    """
    from ccount_core.simulation import SimulationSettings

    kw = dict(simulation)
    if "temperature_mk" in kw:
        if "temperature" in kw:
            raise InputError("simulation: give temperature_mk or temperature, not both")
        kw["temperature"] = float(kw.pop("temperature_mk")) * 1e-3
    if "cooling_axis" in kw:
        kw["cooling_axis"] = tuple(kw["cooling_axis"])
    try:
        return SimulationSettings(seed=seed, **kw)
    except TypeError as exc:
        raise InputError(f"simulation: {' '.join(str(exc).split())}") from None


def run_task(task: MdTask) -> MdOutput:
    """Run one MD simulation and render each variant (the function dask workers execute)."""
    from ccount_core import __version__

    simulate_fn = task.simulate_fn or simulate_real
    render_fn = task.render_fn or render_real
    t0, c0 = time.perf_counter(), time.process_time()
    samples, fluorescing = simulate_fn(task.trap, task.ions, task.simulation, task.seed)
    md_seconds = time.perf_counter() - t0
    md_cpu = (time.process_time() - c0) / len(task.renders)
    images, seconds, cpu = [], [], []
    for r, imaging in enumerate(task.renders):
        t1, c1 = time.perf_counter(), time.process_time()
        rng = render_rng(task.noise_key, r)
        settings = {k: v for k, v in imaging.items() if k != "noise_draw"}
        images.append(np.asarray(render_fn(samples, fluorescing, settings, rng), np.float32))
        seconds.append(time.perf_counter() - t1)
        cpu.append(md_cpu + time.process_time() - c1)
    return MdOutput(
        task.md_index, np.stack(images), md_seconds, tuple(seconds), tuple(cpu), __version__
    )


def make_task(
    p: Plan, md_index: int, simulate_fn: SimulateFn | None = None, render_fn: RenderFn | None = None
) -> MdTask:
    """The task for MD run ``md_index`` of a plan."""
    point = p.points[md_index]
    trap = dict(p.spec["trap"], v_rf=point.v_rf, v_end=point.v_end, eta=point.eta)
    return MdTask(
        md_index=md_index,
        ions=tuple((s, n) for s, n in point.counts if n > 0),
        trap=trap,
        simulation=dict(p.spec["simulation"]),
        seed=point.seed,
        renders=p.renders,
        noise_key=stable_hash(canonical_key(point)),
        simulate_fn=simulate_fn,
        render_fn=render_fn,
    )


# ----------------------------------------------------------------------------------- checks


def check_physics(p: Plan) -> None:
    """Check the simulation settings and every trap before anything runs.

    For each distinct (V_RF, V_end, η) the simulator's own input check (Mathieu stability of
    each species, crystal size against the trap) runs once on the largest crystal of that trap
    (the per-species maximum ion numbers); only when that fails are its points checked one by
    one, so the error names the first bad point.
    """
    from ccount_core.simulation import IonGroup, TrapSettings
    from ccount_core.simulation.simulate import validate

    simulation_settings(p.spec["simulation"], 0)
    by_trap: dict[tuple[float, float, float], list[MdPoint]] = {}
    for point in p.points:
        by_trap.setdefault((point.v_rf, point.v_end, point.eta), []).append(point)
    for (v_rf, v_end, eta), points in by_trap.items():
        where = f"parameters at v_rf={v_rf:g} V, v_end={v_end:g} V, eta={eta:g}"
        try:
            trap = TrapSettings.from_lab_units(v_rf=v_rf, v_end=v_end, eta=eta, **p.spec["trap"])
        except InputError as exc:
            raise InputError(f"{where}: {exc}") from None
        names = [s for s, _ in points[0].counts]
        largest = [max(pt.counts[i][1] for pt in points) for i in range(len(names))]
        try:
            validate(trap, [IonGroup(s, n) for s, n in zip(names, largest, strict=True)])
        except InputError:
            for pt in points:
                try:
                    validate(trap, [IonGroup(s, n) for s, n in pt.counts])
                except InputError as exc:
                    counts = ", ".join(f"{n} {s}" for s, n in pt.counts)
                    raise InputError(f"{where}, {counts}: {exc}") from None


# ----------------------------------------------------------------------------------- driver


def generate(
    spec: str | Path | Mapping[str, Any],
    out: str | Path,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    client: Any = None,
    progress: ProgressCallback | None = None,
    flush_seconds: float = 30.0,
    simulate_fn: SimulateFn | None = None,
    render_fn: RenderFn | None = None,
    splits: Sequence[str] | None = None,
) -> GenerateSummary:
    """Generate (or finish) the data set of ``spec`` in the store ``out``.

    Args:
        spec: a spec file (YAML/TOML) or a spec mapping.
        out: the Zarr store directory; an existing one is resumed (same spec required).
        workers: processes of the local cluster (default: every core this process may use);
            not allowed with ``scheduler`` or ``client``.
        scheduler: address of a running dask scheduler to use instead of a local cluster.
        client: an existing ``distributed.Client`` (tests, notebooks).
        progress: called with (images done in this call, images to do in this call).
        flush_seconds: longest time a finished image waits in memory before it is written.
        simulate_fn, render_fn: replace the real simulator/renderer (module-level functions,
            so workers can import them); None uses ``ccount_core.simulation`` / ``render``.
        splits: run only the MD runs of these splits (``train``, ``validation``, ``test``;
            None: all). The store still holds every row of the spec: the others stay not done,
            and a later call without ``splits`` finishes them. The split is the hash of the
            run's parameters, so a validation-only store holds exactly the full store's
            validation images.

    Failed MD runs are counted and left not done (a rerun retries them); the summary names
    the first error.
    """
    t_start = time.perf_counter()
    norm = load_spec(spec) if isinstance(spec, str | Path) else normalise_spec(spec)
    if workers is not None and workers < 1:
        raise InputError(f"workers must be >= 1, got {workers}")
    if workers is not None and (scheduler or client is not None):
        raise InputError(
            "workers sizes the local cluster; with a scheduler or client the "
            "cluster's own workers are used"
        )
    if splits is not None:
        unknown = sorted(set(splits) - set(SPLIT_NAMES))
        if unknown or not splits:
            raise InputError(
                f"splits must be drawn from {', '.join(SPLIT_NAMES)}; got "
                f"{', '.join(map(repr, splits)) or 'none'}"
            )
    p = plan(norm)
    if simulate_fn is None:
        check_physics(p)
    # The store (zarr) is imported here, not with the module: rendering a spec's image
    # (render_real) needs no store, e.g. on a device without zarr (scripts/device_train.py).
    from ccount_core.dataset.store import StoreLock, StoreWriter, open_for_writing

    out = Path(out)
    with StoreLock(out):
        group = open_for_writing(out, p)
        writer = StoreWriter(group, p.n_renders, flush_seconds)
        r = p.n_renders
        done_before = int(writer.done.sum())
        run_done = writer.done.reshape(len(p.points), r).all(axis=1)
        todo = [int(m) for m in np.flatnonzero(~run_done)]
        if splits is not None:
            todo = [m for m in todo if split_of(stable_hash(p.keys[m])) in splits]
        failures: list[str] = []
        if todo:
            try:
                _run(
                    p,
                    todo,
                    writer,
                    workers,
                    scheduler,
                    client,
                    progress,
                    failures,
                    simulate_fn,
                    render_fn,
                )
            finally:
                writer.flush()
        done_after = int(writer.done.sum())
    return GenerateSummary(
        out,
        p.n_rows,
        done_before,
        done_after,
        len(failures),
        failures[0] if failures else None,
        time.perf_counter() - t_start,
    )


def _run(
    p: Plan,
    todo: list[int],
    writer: StoreWriter,
    workers: int | None,
    scheduler: str | None,
    client: Any,
    progress: ProgressCallback | None,
    failures: list[str],
    simulate_fn: SimulateFn | None,
    render_fn: RenderFn | None,
) -> None:
    """Submit the MD runs ``todo``, keep a few per worker in flight, write results as they come."""
    from distributed import as_completed

    total = len(todo) * p.n_renders
    report(progress, 0, total)
    with _client(workers, scheduler, client) as c:
        queue = iter(todo)
        owner: dict[str, int] = {}

        def submit(m: int) -> Any:
            fut = c.submit(run_task, make_task(p, m, simulate_fn, render_fn), pure=False)
            owner[fut.key] = m
            return fut

        def window() -> int:  # a few tasks per worker; workers of a remote cluster may come later
            return 2 * max(1, sum(c.nthreads().values())) + 2

        size, checked = window(), time.monotonic()
        pending = as_completed([submit(m) for m in _take(queue, size)])
        done = successes = 0
        try:
            for fut in pending:
                m = owner.pop(fut.key)
                try:
                    res: MdOutput = fut.result()
                except Exception as exc:
                    failures.append(f"MD run {m} ({p.keys[m]}): {' '.join(str(exc).split())}")
                    if successes == 0 and len(failures) >= size:
                        raise RuntimeError(
                            f"every MD run failed so far; first: {failures[0]}"
                        ) from exc
                else:
                    successes += 1
                    writer.add(
                        res.md_index,
                        res.images,
                        res.md_seconds,
                        res.render_seconds,
                        res.cpu_seconds,
                        res.version,
                    )
                fut.release()
                done += p.n_renders
                report(progress, done, total)
                if time.monotonic() - checked > 5.0:
                    size, checked = window(), time.monotonic()
                for m2 in _take(queue, max(0, size - len(owner))):
                    pending.add(submit(m2))
        finally:
            writer.flush()  # before the cluster closes: an interrupted run keeps what it has


def _take(it: Any, n: int) -> list[int]:
    out = []
    for _ in range(n):
        try:
            out.append(next(it))
        except StopIteration:
            break
    return out


def _cores() -> int:
    """Cores this process may run on (a batch job's allocation, not the whole node)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class _client:
    """Context manager giving a dask Client: the one passed, a remote one, or a LocalCluster."""

    def __init__(self, workers: int | None, scheduler: str | None, client: Any) -> None:
        self.workers, self.scheduler, self.given = workers, scheduler, client
        self._own: list[Any] = []

    def __enter__(self) -> Any:
        if self.given is not None:
            return self.given
        from distributed import Client, LocalCluster

        if self.scheduler:
            try:
                c = Client(self.scheduler, timeout="20s")
            except (OSError, TimeoutError) as exc:
                raise InputError(f"--scheduler {self.scheduler}: cannot connect ({exc})") from None
            self._own.append(c)
            return c
        for name in ("distributed", "distributed.nanny", "distributed.scheduler"):
            logging.getLogger(name).setLevel(logging.ERROR)
        cluster = LocalCluster(
            n_workers=self.workers or _cores(),
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
            env={"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"},
        )
        c = Client(cluster)
        self._own += [c, cluster]
        return c

    def __exit__(self, *exc: object) -> None:
        for obj in self._own:
            obj.close()
