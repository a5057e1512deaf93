"""Count ions in every frame of a stack with a trained model.

``count_stack(stack, model, pixel_size_um)`` prepares each batch of frames with the model
card's preprocessing configuration (``ccount_core.image.preprocess``), runs the network in
inference mode and returns one row per frame: frame, time (s), count, uncertainty, the fitted
ellipse (input pixels) and a warning. Where the card has a ``camera_calibration``, the first
species' count is divided by what the frame's pixel noise and halo make the model read
(``ccount_core.nn.calibration``).

The uncertainty (ions) is the model's own RMS error on simulated validation images of about
that count (:func:`validation_error`, from the evaluation in its card, bias included), scaled
by the card's ``uncertainty`` factors (:func:`model_error`): a frame unlike the training images
(``ccount_core.nn.inputs``) carries a warning and a wider σ. Each further species a model
counts (a dark species) has its own, from that species' bins in the card. With ``tta=K`` every
frame is also seen in K changed views (the first turned by 180°, the others rotated ±3°,
shifted ±2 % and flipped; ``ccount_core.nn.augment.tta_views``): the count is the mean over
the K + 1 predictions, and their standard deviation is added in quadrature.
An ensemble (``ccount_core.nn.ensemble``) averages its members, and their spread is added too.
On experimental images the error is larger (the paper: about 10 %).

``count_file(path, out_csv, ...)`` does the same for a file read lazily by
``ccount_core.image.io.open_stack`` and appends each batch's rows to the CSV
(``ccount_core.nn.counts_file``) as soon as they are known (flushed to disk); a killed run
started again skips the frames already in the file.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ccount_core.checks import check_integer
from ccount_core.errors import InputError
from ccount_core.files import remove_stale_temps
from ccount_core.image.ellipse import check_dtype
from ccount_core.nn import cpu_inference
from ccount_core.nn.calibration import camera_calibration_factor
from ccount_core.nn.counts_file import (
    NOT_COUNTED,
    OTHER_COUNT_PREFIX,
    CountsWriter,
    Row,
    counts_metadata,
    other_uncertainty,
    resume_counts,
)
from ccount_core.nn.ensemble import IonCounter
from ccount_core.nn.inference import infer
from ccount_core.nn.inputs import (
    input_statistics,
    outside_ranges,
    prepared_outline,
    range_warnings,
)
from ccount_core.progress import ProgressCallback, report

MIN_SIDE_PX = 16
UNCERTAIN_FRACTION = 0.1
#: A count with no other warning whose ±2σ reaches beyond this share of it is noted
#: "imprecise": it may be off by more than 10 % (the paper's error on real images).
#: On the robustness benchmark the default's unwarned frames off by over 10 % were all of
#: small crystals (35 and 67 ions, σ 5-6 % of the count; docs/BENCHMARKS.md).
IMPRECISE_FRACTION = 0.1
#: Stacks of at least this many frames (skipped ones included) pack a fresh IonCounter's
#: networks for the CPU first.
PACK_MIN_FRAMES = 64
#: bfloat16 is chosen on its own only for a model whose bfloat16 counts of a probe batch lie
#: within this share of its float32 ones (``IonCounter.bf16_agrees``; on dev-2c-amx the shipped
#: default differs by at most 0.15 %, dark 0.8 %; an untrained network by 6.8 %, and by up to
#: 25 % on real frames at some batch sizes).
BF16_TOLERANCE = 0.03


@contextmanager
def _threads(n: int | None):
    """torch's thread count set to ``n`` (None: left as it is) while inside."""
    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _parallel_batches(
    dev: torch.device, threads: int | None, n_batches: int
) -> tuple[int, int | None]:
    """``(batches counted at once, torch threads each)`` for ``n_batches`` batches on ``dev``
    with ``threads`` torch threads in all (None: torch's current number).

    On a CPU with two threads or more and two batches or more, two batches run at once with
    half the threads each: one batch's preparation (single-threaded, and holding the GIL)
    overlaps the other's network, which would otherwise leave a core idle.
    """
    n = torch.get_num_threads() if threads is None else threads
    if dev.type != "cpu" or n < 2 or n_batches < 2:
        return 1, threads
    return 2, n // 2


def _in_order(fn: Callable[[Any], Any], items: Sequence[Any], workers: int) -> Iterator[Any]:
    """``fn(item)`` for each item, yielded in order, with up to ``workers`` computed at once
    (threads). Closing the generator early cancels what has not started and waits for what
    has."""
    if workers <= 1:
        for item in items:
            yield fn(item)
        return
    with ThreadPoolExecutor(workers) as pool:
        pending: deque[Future[Any]] = deque()
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) >= workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def _resolve_model(model: Any) -> IonCounter:
    """An :class:`IonCounter` from None (the default model), a path or shipped name, a
    ``(model, card)`` pair from ``load_model``, or an IonCounter."""
    from ccount_core.nn.ensemble import load_counter

    if isinstance(model, IonCounter):
        return model
    if isinstance(model, tuple) and len(model) == 2:
        return IonCounter([model], model[1])
    return load_counter(model)


def _check_stack(stack: Any) -> None:
    shape = getattr(stack, "shape", None)
    if shape is None or len(shape) != 3:
        raise InputError(f"stack: expected (frames, rows, cols), got shape {shape}")
    check_dtype(np.dtype(getattr(stack, "dtype", np.float64)), "stack")
    if shape[0] == 0:
        raise InputError("stack: it has no frames")
    if min(shape[1:]) < MIN_SIDE_PX:
        raise InputError(
            f"stack: frames of {shape[1]} x {shape[2]} px are too small "
            f"(at least {MIN_SIDE_PX} px per side)"
        )


def _check_preparations(counter: IonCounter) -> None:
    """Refuse, in one line, a card whose preprocessing configuration cannot be read."""
    from ccount_core.image.preprocess import PreprocessConfig

    for card in [counter.card, *(member for _, member in counter.members)]:
        try:
            PreprocessConfig.from_dict(card["preprocess"])
        except InputError as exc:
            raise InputError(f"model {card.get('model_name', '')!r}: {exc}") from None


def _check_arguments(
    batch_size: Any, tta: Any, pixel_size_um: float | None, threads: int | None
) -> None:
    """The checks of :func:`count_stack`'s numbers, done before a model is loaded or a file
    is created. A missing pixel size is refused: the crystal's size in µm is what the model
    counts from, and a guessed scale gives a wrong count with nothing to show it."""
    check_integer("batch_size", batch_size, 1)
    check_integer("tta", tta, 0)
    if threads is not None:
        check_integer("threads", threads, 1)
    if pixel_size_um is None:
        raise InputError(
            "pixel size unknown: the file does not say how many µm a camera pixel is in the "
            "object plane; give it with --pixel-size-um (pixel_size_um)"
        )
    if not (
        isinstance(pixel_size_um, int | float | np.integer | np.floating)
        and math.isfinite(pixel_size_um)
        and pixel_size_um > 0
    ):
        raise InputError(f"pixel_size_um: must be a positive number of µm, got {pixel_size_um}")


def pick_device(device: str | None = None) -> torch.device:
    """The device to count on: ``device`` when given, else CUDA when available, else CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise InputError(f"device: {device!r} is not a torch device ({exc})") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device: {device!r} asked for, but no CUDA GPU is available")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(
                f"device: {device!r} asked for, but there are {torch.cuda.device_count()} GPUs"
                " (numbered from 0)"
            )
    elif dev.type != "cpu":
        try:  # mps, xpu, meta...: a tensor there and back says whether it can count
            torch.zeros(1, device=dev).cpu()
        except Exception as exc:  # torch raises RuntimeError, NotImplementedError, Assertion...
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(f"device: {device!r} cannot be used here ({first})") from None
    return dev


def validation_error(
    card: dict[str, Any], counts: np.ndarray, label: str | None = None
) -> np.ndarray:
    """The model's RMS error (ions) on validation images near each of ``counts`` (ions) of
    ``label`` (None: the first, counted species): interpolated between the bins of its card's
    evaluation (``metrics.ccount_evaluate``: ``bins``, or ``other_bins[label]`` for a further
    species; bins of at least 5 images), held flat beyond them; NaN when the card has none."""
    evaluation = card.get("metrics", {}).get("ccount_evaluate", {})
    if label is None or (card.get("label_names") or [None])[0] == label:
        bins = evaluation.get("bins") or []
    else:
        bins = (evaluation.get("other_bins") or {}).get(label) or []
    points = sorted(
        (b["true_mean"], b["rms"]) for b in bins if b.get("n", 0) >= 5 and b.get("rms") is not None
    )
    counts = np.asarray(counts, dtype=float)
    if not points:
        return np.full(counts.shape, np.nan)
    x, y = zip(*points, strict=True)
    return np.interp(counts, x, y)


def _label_errors(
    counter: IonCounter,
    counts: np.ndarray,
    unlike: dict[int, Any],
    notes: Mapping[int, Sequence[str]],
    noise: Mapping[int, float],
) -> np.ndarray:
    """:func:`model_error` of every label's ``counts`` ``(B, k)`` (ions): a further species
    that one member alone counts (an ensemble's dark species) has that member's error, any
    other the counter's card's."""
    errors = np.empty(counts.shape, float)
    for j, name in enumerate(counter.label_names):
        cards = [card for _, card in counter.members if name in card["label_names"]]
        card = cards[0] if j > 0 and len(cards) == 1 else counter.card
        errors[:, j] = model_error(card, counts[:, j], unlike, len(counts), name, notes, noise)
    return errors


def model_error(
    card: dict[str, Any],
    counts: np.ndarray,
    unlike: dict[int, Any],
    n: int,
    label: str | None = None,
    notes: Mapping[int, Sequence[str]] | None = None,
    noise: Mapping[int, float] | None = None,
) -> np.ndarray:
    """The model's own uncertainty (ions) of ``n`` counts of ``label`` (None: the first
    species): :func:`validation_error` (the RMS about the truth near each count, bias
    included) times the card's ``uncertainty.scale`` (the first species only: it is fitted on
    its counts), and for a frame ``i`` unlike the training images or seen through a camera
    the models count less well through, times the widening of its reasons (their extra errors
    added in quadrature, :func:`_widening`):

    - ``uncertainty.unlike_scales[name]`` (else ``uncertainty.unlike_scale``) for each input
      statistic ``name`` that ``unlike[i]`` lists outside the card's ranges
      (``ccount_core.nn.inputs.outside_ranges``);
    - ``uncertainty.note_scales[kind]``, where one of its preparation ``notes[i]`` starts
      with ``kind`` (e.g. "halo");
    - :func:`noise_widening` of its pixel noise ``noise[i]`` (dimensionless,
      ``ccount_core.image.preprocess.pixel_noise``) with ``uncertainty.noise_n0``.

    The factors (1 when absent) are fitted on renders of known count
    (``scripts/uncertainty_factors.py``) so that ±1σ holds the truth on about 68 % of
    frames and ±2σ on 94 %, and checked on others (``benchmarks/sigma_coverage.py``,
    ``benchmarks/robustness.py``, ``benchmarks/noise_sensitivity.py``)."""
    factors = card.get("uncertainty", {})
    first = label is None or (card.get("label_names") or [None])[0] == label
    scale = np.full(n, float(factors.get("scale", 1.0)) if first else 1.0)
    notes, noise = notes or {}, noise or {}
    for i in set(unlike) | set(notes) | set(noise):
        scale[i] *= _widening(factors, unlike.get(i, ()), notes.get(i, ()), noise.get(i))
    return validation_error(card, counts, label) * scale


def noise_widening(noise: float, n0: float) -> float:
    """The factor a frame's σ widens by at pixel noise ``noise`` (dimensionless):
    sqrt(1 + (noise / ``n0``)⁴), 1 for NaN. The count's error from pixel noise grows about as
    noise² (``benchmarks/noise_sensitivity.py``: uncorrected, the default reads 1 % low
    noiseless, 5 % at 0.10, 11 % at 0.15), so its part of σ does too; ``n0`` is where it
    equals the rest."""
    if not math.isfinite(noise):
        return 1.0
    return math.sqrt(1.0 + (noise / n0) ** 4)


def _widening(
    factors: Mapping[str, Any], unlike: Sequence[str], notes: Sequence[str], noise: float | None
) -> float:
    """The factor a card's ``uncertainty`` ``factors`` widen a frame's σ by (1: none). Each
    reason a frame has widens it by its own factor k: the largest of ``unlike_scales[name]``
    (else ``unlike_scale``) over the statistics ``name`` in ``unlike`` (those outside the
    training images' ranges), ``note_scales[kind]`` for a note that starts with ``kind``, and
    :func:`noise_widening` of its pixel ``noise`` where the card has ``noise_n0``. The extra
    errors of several reasons add in quadrature: sqrt(1 + Σ (k² - 1))."""
    own = factors.get("unlike_scales", {})
    fallback = float(factors.get("unlike_scale", 1.0))
    ks = [max((float(own.get(name, fallback)) for name in unlike), default=1.0)]
    for kind, k in factors.get("note_scales", {}).items():
        if any(note.startswith(kind) for note in notes):
            ks.append(float(k))
    if factors.get("noise_n0") and noise is not None:
        ks.append(noise_widening(noise, float(factors["noise_n0"])))
    return math.sqrt(1.0 + sum(max(k * k - 1.0, 0.0) for k in ks))


def sigma_terms(counter: IonCounter, tta: int = 0) -> str:
    """What the rows' ±1σ of ``counter`` with ``tta`` views is made of, in words (the
    plugin's plot legend, so short): :func:`model_error`'s parts (factors to two digits), and
    the spreads joined in quadrature."""
    factors = counter.card.get("uncertainty", {})
    scale = float(factors.get("scale", 1.0))
    text = "±1σ: " + ("" if scale == 1.0 else f"{scale:.2g} × ") + "validation RMS near N"
    if counter.is_ensemble:
        text += " ⊕ models' spread"
    if tta:
        text += " ⊕ view spread"
    unlike = float(factors.get("unlike_scale", 1.0))
    if unlike != 1.0:
        text += f", ×{unlike:.2g} if unlike training"
    by_factor: dict[str, list[str]] = {}
    for name, k in factors.get("unlike_scales", {}).items():
        by_factor.setdefault(f"{float(k):.2g}", []).append(name)
    for k, names in by_factor.items():
        text += f", ×{k} if {' or '.join(names)} unlike"
    for kind, k in factors.get("note_scales", {}).items():
        text += f", ×{float(k):.2g} if {kind}"
    if factors.get("noise_n0"):
        text += f", ×√(1+(pixel noise/{float(factors['noise_n0']):.2g})⁴)"
    return text


def _combined(model_error: np.ndarray, tta_std: np.ndarray) -> np.ndarray:
    """Quadrature sum; a missing part (NaN) counts as 0 unless both are missing."""
    both = np.isnan(model_error) & np.isnan(tta_std)
    total = np.sqrt(np.nan_to_num(model_error) ** 2 + np.nan_to_num(tta_std) ** 2)
    return np.where(both, np.nan, total)


def native_bf16() -> bool:
    """Whether oneDNN runs bfloat16 natively on this CPU (AVX512-BF16 / AMX class)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _bf16_pays(counter: IonCounter, shape: Sequence[int], batch_size: int) -> bool:
    """Whether a batch of ``batch_size`` images of ``shape`` (rows, cols) counts faster with
    the first member packed in bfloat16 than packed in float32 (``IonCounter.packed_for_cpu``)
    on this CPU (measured once, then remembered)."""
    from ccount_core.nn.precision import bf16_pays

    probe = np.random.default_rng(0).standard_normal((batch_size, *shape)).astype(np.float32)
    return bf16_pays(
        lambda flag: infer(counter.packed_for_cpu(flag)[0], probe),
        f"{type(counter.members[0][0]).__name__} {shape[0]}x{shape[1]} "
        f"batch {batch_size} packed bfloat16 against packed float32",
    )


def count_stack(
    stack: Any,
    model: Any = None,
    pixel_size_um: float | None = None,
    *,
    trap_axis: str | float = "auto",
    frame_interval_s: float | None = None,
    batch_size: int = 32,
    tta: int = 0,
    seed: int = 0,
    threads: int | None = None,
    bf16: bool | None = None,
    device: str | None = None,
    skip_frames: Iterable[int] = (),
    expected_config: Any = None,
    on_rows: Callable[[list[Row]], None] | None = None,
    progress: ProgressCallback | None = None,
) -> list[Row]:
    """One row per frame of ``stack`` (numpy or dask ``(frames, rows, cols)``), in order.

    ``model``: None (the default model), a path or shipped name (``default``, ``dark``,
    ``ensemble``), ``(model, card)`` from ``load_model``, or an ``IonCounter`` from
    ``load_counter``. An ensemble counts each frame with every member (each on the frame
    prepared its own way) and reports their mean; their disagreement joins the spread.
    ``pixel_size_um``: camera µm per pixel in the object plane (required).
    ``trap_axis``: the trap axis in the frames (``"auto"``: the crystal's long axis;
    ``"horizontal"``, ``"vertical"`` or degrees counter-clockwise from the +column axis as
    displayed; ``ccount_core.image.preprocess.parse_trap_axis``).
    ``frame_interval_s``: gives ``time_s``.
    ``skip_frames``: frames already counted (not computed again, not returned).
    ``expected_config``: a PreprocessConfig (or dict) the model must have been trained with.
    ``on_rows``: called with each batch's rows as soon as they are known, in frame order.
    ``threads``: torch threads in all (None: torch's current number); on a CPU with two or
    more, two batches are counted at once with half the threads each (the counts are the
    same either way).
    ``device``: torch device to count on (None: CUDA when available, else CPU); the model is
    moved there. ``bf16``: bfloat16 inference (packed where oneDNN packs bfloat16 weights,
    else under autocast, slower); None: on a CPU that computes it natively
    (:func:`native_bf16`) and runs it faster than float32 (timed once per machine,
    :func:`ccount_core.nn.precision.bf16_pays`) and whose model counts a probe batch in it as
    in float32 (within :data:`BF16_TOLERANCE`); it moves the shipped models' counts by about
    0.3 ions RMS (at most 2.4 in 3,000 validation images, ``benchmarks/bf16_accuracy.py``).
    Row keys: ``counts_file.COLUMNS`` plus ``count_<label>`` and ``uncertainty_<label>`` (ions)
    for every further model output.
    """
    from ccount_core.image.preprocess import (
        PreprocessConfig,
        fit_options,
        parse_trap_axis,
        prepare_stack,
    )

    _check_stack(stack)
    _check_arguments(batch_size, tta, pixel_size_um, threads)
    axis = parse_trap_axis(trap_axis)
    dev = pick_device(device)
    counter = _resolve_model(model)
    card = counter.card
    counter.to(dev)
    if expected_config is not None:
        from ccount_core.nn.model import check_config

        check_config(card, expected_config)
    cfg = PreprocessConfig.from_dict(card["preprocess"])
    member_cfgs = [PreprocessConfig.from_dict(c["preprocess"]) for _, c in counter.members]
    names = counter.label_names
    lo, hi = card.get("label_range") or [None, None]
    ranges = card.get("input_ranges", {})
    skip = set(int(f) for f in skip_frames)
    todo = [f for f in range(stack.shape[0]) if f not in skip]
    rows_all: list[Row] = []
    disagree = (
        "uncertain: the ensemble's models or test-time views disagree by over 10 %"
        if counter.is_ensemble
        else "uncertain: test-time views disagree by over 10 %"
    )
    imprecise_fix = (
        "the ensemble's models disagree, or the crystal is small or the frame noisy"
        if counter.is_ensemble
        else "the ensemble model counts closer (--model ensemble)"
    )
    batches = [todo[s : s + batch_size] for s in range(0, len(todo), batch_size)]
    workers, per_worker = _parallel_batches(dev, threads, len(batches))
    with _threads(per_worker):
        if bf16 is None:  # timed with the threads a batch runs on
            bf16 = (
                dev.type == "cpu"
                and native_bf16()
                and _bf16_pays(counter, cfg.output_shape, batch_size)
                and counter.bf16_agrees(BF16_TOLERANCE)
            )
        # On a CPU the members are packed once per IonCounter and precision (batch norm
        # folded, weights cast and in oneDNN's layout). Packing costs about what counting 80
        # frames saves, so a short count with a fresh IonCounter runs the members as they are.
        # The length is the whole stack's, skipped frames included, so a resumed count runs
        # the same networks as an uninterrupted one and gives the same numbers.
        # A CPU without oneDNN's bfloat16 packing runs bfloat16 under autocast, unpacked.
        packed = (
            dev.type == "cpu"
            and (not bf16 or cpu_inference.bf16_packable())
            and (counter.is_packed(bf16) or stack.shape[0] >= PACK_MIN_FRAMES)
        )
        nets = counter.packed_for_cpu(bf16) if packed else [net for net, _ in counter.members]

        def count_batch(frames: list[int]) -> list[Row]:
            block = np.asarray(_take(stack, frames))  # its own dtype: saturation is judged by it
            # One preparation per distinct configuration (members may share one). The
            # ellipse fit, most of a preparation's time, depends only on fit_options: the
            # first such preparation's ellipses, with the camera checks' notes, serve the
            # others with the same options.
            prepared_by: dict[str, Any] = {}
            fitted: dict[tuple[bool, bool], list[Any]] = {}
            for c in [cfg, *member_cfgs]:
                if c.to_json() not in prepared_by:
                    key = fit_options(c)
                    own = fitted.get(key)
                    done = prepare_stack(
                        block,
                        c,
                        ellipses=own,
                        camera_pixel_size_um=pixel_size_um,
                        trap_axis=axis,
                        camera_checks=own is None,
                    )
                    prepared_by[c.to_json()] = done
                    fitted.setdefault(key, done.ellipses)
            prepared = prepared_by[cfg.to_json()]
            ellipses = _with_members_notes(prepared.ellipses, list(prepared_by.values()))
            bad = {
                i: r for p in reversed(list(prepared_by.values())) for i, r in p.bad_frames.items()
            }
            good = [i for i in range(len(frames)) if i not in bad]
            counts = np.full((len(frames), len(names)), np.nan, np.float32)
            spread = np.full_like(counts, np.nan)
            if good:
                outputs = [
                    infer(net, prepared_by[c.to_json()].images[good], tta, seed + frames[0], bf16)
                    for net, c in zip(nets, member_cfgs, strict=True)
                ]
                counts[good], spread[good] = counter.combine(outputs)
            noise = {i: prepared.ellipses[i].pixel_noise for i in good}
            if good and "camera_calibration" in counter.card:
                readings = {
                    name: np.array([getattr(prepared.ellipses[i], name) for i in good])
                    for name in ("pixel_noise", "halo_light")
                }
                factor = camera_calibration_factor(readings, counter.card["camera_calibration"])
                counts[good, 0] *= factor
                spread[good, 0] *= factor
            stats = {
                i: input_statistics(
                    prepared.images[i],
                    prepared.ellipses[i],
                    pixel_size_um,
                    prepared_outline(prepared.ellipses[i], cfg, pixel_size_um, axis),
                )
                for i in good
            }
            unlike = {i: outside_ranges(stats[i], ranges) for i in good}
            notes = {i: ellipses[i].notes for i in good}
            unc = _combined(_label_errors(counter, counts, unlike, notes, noise), spread)
            return [
                _row(
                    f,
                    i,
                    counts[i],
                    unc[i],
                    spread[i, 0],
                    bad,
                    ellipses,
                    names,
                    frame_interval_s,
                    lo,
                    hi,
                    disagree,
                    imprecise_fix,
                    range_warnings(stats[i], ranges) if i in stats else (),
                )
                for i, f in enumerate(frames)
            ]

        with closing(_in_order(count_batch, batches, workers)) as results:
            for rows in results:
                if on_rows is not None:
                    on_rows(rows)
                rows_all.extend(rows)
                report(progress, len(rows_all), len(todo))
    return rows_all


def _with_members_notes(ellipses: list[Any], preparations: Sequence[Any]) -> list[Any]:
    """``ellipses`` (the card's own preparation's) with each note of a member's preparation
    whose kind (the text before its first ":") none of a frame's notes has: a member that
    prepares differently may even out a beam the card's preparation left alone."""
    out = []
    for i, ell in enumerate(ellipses):
        for other in preparations:
            extra = other.ellipses[i]
            if ell is None or extra is None:
                continue
            kinds = {note.split(":")[0] for note in ell.notes}
            new = tuple(n for n in extra.notes if n.split(":")[0] not in kinds)
            if new:
                ell = dataclasses.replace(ell, notes=(*ell.notes, *new))
        out.append(ell)
    return out


def _take(stack: Any, frames: Sequence[int]) -> np.ndarray:
    if hasattr(stack, "compute"):
        lo, hi = frames[0], frames[-1] + 1
        if hi - lo == len(frames):
            return stack[lo:hi].compute()
        return stack[list(frames)].compute()
    return np.asarray(stack[list(frames)])


def _row(
    frame: int,
    i: int,
    count: np.ndarray,
    unc: np.ndarray,
    spread: float,
    bad: dict[int, str],
    ellipses: Sequence[Any],
    names: list[str],
    interval: float | None,
    lo: float | None,
    hi: float | None,
    disagree: str,
    imprecise_fix: str,
    unlike: Sequence[str] = (),
) -> Row:
    warnings = [*unlike]
    if i in bad:
        warnings.append(f"{NOT_COUNTED}{bad[i]}")
    else:
        c = float(count[0])
        # within its own error of the range, a count is what an in-range crystal could give
        tol = float(unc[0]) if math.isfinite(unc[0]) else 0.0
        if lo is not None and hi is not None and not lo - tol <= c <= hi + tol:
            warnings.append(f"count outside the training range {lo:g}-{hi:g}")
        if math.isfinite(spread) and spread > UNCERTAIN_FRACTION * max(abs(c), 1.0):
            warnings.append(disagree)
    e = ellipses[i]
    if e is not None:
        warnings.extend(e.notes)  # what the fit and preparation noticed (several crystals, ...)
    if not warnings and math.isfinite(unc[0]):  # no reason to doubt it but its own precision
        band = 2.0 * float(unc[0]) / max(abs(float(count[0])), 1.0)
        if band > IMPRECISE_FRACTION:
            warnings.append(f"imprecise: ±2σ is ±{100 * band:.1f} % of the count; {imprecise_fix}")
    row: Row = {
        "frame": frame,
        "time_s": frame * interval if interval is not None else None,
        "count": _num(count[0]),
        "uncertainty": _num(unc[0]),
        "ellipse_center_row": e.center_row if e is not None else None,
        "ellipse_center_col": e.center_col if e is not None else None,
        "ellipse_semi_major": e.semi_major if e is not None else None,
        "ellipse_semi_minor": e.semi_minor if e is not None else None,
        "ellipse_angle_deg": e.angle_deg if e is not None else None,
        "warning": "; ".join(warnings),
    }
    for k, name in enumerate(names[1:], start=1):
        row[f"{OTHER_COUNT_PREFIX}{name}"] = _num(count[k])
        row[other_uncertainty(name)] = _num(unc[k])
    return row


def _num(v: Any) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


def count_file(
    path: Path | str,
    out_csv: Path | str,
    model: Any = None,
    pixel_size_um: float | None = None,
    *,
    trap_axis: str | float | None = None,
    batch_size: int = 32,
    tta: int = 0,
    threads: int | None = None,
    bf16: bool | None = None,
    device: str | None = None,
    progress: ProgressCallback | None = None,
) -> list[Row]:
    """Count a TIFF stack, folder of frames or Zarr array into ``out_csv``; returns the rows
    counted now. ``pixel_size_um`` and ``trap_axis`` (None: from the file's metadata, else
    refused / ``"auto"``) as in :func:`count_stack`. The CSV's first line
    (``# ccount counts {json}``) records the source, pixel size, trap axis and the model's
    preprocessing; an existing file made the same way is resumed.
    Every argument, the stack and the model are checked before the CSV is created, so a
    refused call leaves no file behind.
    """
    from ccount_core.image.io import open_stack

    out_csv = Path(out_csv)
    stack = open_stack(path)
    _check_stack(stack.data)
    from ccount_core.image.preprocess import parse_trap_axis

    px = pixel_size_um if pixel_size_um is not None else stack.pixel_size_um
    _check_arguments(batch_size, tta, px, threads)
    given = trap_axis if trap_axis is not None else stack.trap_axis_deg
    axis = parse_trap_axis("auto" if given is None else given)
    pick_device(device)
    counter = _resolve_model(model)
    _check_preparations(counter)
    meta = counts_metadata(counter.card, str(Path(path).resolve()), px, tta)
    meta["trap_axis"] = axis
    others = counter.label_names[1:]
    remove_stale_temps(out_csv)  # a header a killed run was writing
    done = resume_counts(out_csv, meta, others)
    with out_csv.open("a", newline="", encoding="utf-8") as fh:
        writer = CountsWriter(fh, others)

        def write(rows: list[Row]) -> None:
            writer.write(rows)
            fh.flush()
            os.fsync(fh.fileno())

        return count_stack(
            stack.data,
            counter,
            px,
            trap_axis=axis,
            frame_interval_s=stack.frame_interval_s,
            batch_size=batch_size,
            tta=tta,
            threads=threads,
            bf16=bf16,
            device=device,
            skip_frames=done,
            on_rows=write,
            progress=progress,
        )
