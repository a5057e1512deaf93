"""Core jobs in napari workers: progress reaches the GUI, Cancel stops them, errors are one line."""

from __future__ import annotations

import numpy as np
import pytest

from ccount_core.dataset.samples import load_sample
from ccount_core.image.preprocess import PreprocessConfig, prepare_stack
from napari_ccount._workers import start_job

pytestmark = pytest.mark.gui


def test_job_reports_progress_and_returns(qtbot, errors) -> None:
    stack, meta = load_sample("reaction_series")
    stack = stack[:4]
    results = []
    job = start_job(
        prepare_stack,
        stack,
        PreprocessConfig(),
        camera_pixel_size_um=meta["pixel_size_um"],
        desc="prepare",
        on_done=results.append,
    )
    qtbot.waitUntil(lambda: job.done, timeout=60_000)
    assert job.error is None and not job.cancelled
    assert job.last_progress == (4, 4)
    (out,) = results
    assert out.images.shape == (4, *PreprocessConfig().output_shape)
    assert out.bad_frames == {}
    assert errors == []


def test_cancel_stops_at_the_next_progress_report(qtbot, errors) -> None:
    stack, meta = load_sample("reaction_series")
    results = []
    job = start_job(
        prepare_stack,
        stack,
        PreprocessConfig(),
        camera_pixel_size_um=meta["pixel_size_um"],
        desc="prepare",
        on_done=results.append,
    )
    job.cancel()
    qtbot.waitUntil(lambda: job.done, timeout=60_000)
    assert job.cancelled and results == [] and errors == []
    # It stopped at its first report: at most one frame was reported done.
    assert job.last_progress is None or job.last_progress[0] <= 1


def test_input_error_becomes_one_notification_line(qtbot, errors) -> None:
    results = []
    job = start_job(
        prepare_stack,
        np.zeros((2, 30, 40, 3)),
        PreprocessConfig(),
        desc="prepare stack",
        on_done=results.append,
    )
    qtbot.waitUntil(lambda: job.done, timeout=60_000)
    assert results == [] and not job.cancelled
    assert len(errors) == 1 and errors[0].startswith("prepare stack: stack: shape (2, 30, 40, 3)")
    assert "\n" not in errors[0]


def test_preload_loads_the_counting_code_and_freezes_it_out_of_garbage_collection() -> None:
    """The background import leaves torch, the counting modules and Numba's kernels loaded,
    and frozen: a later full collection (0.1-0.3 s holding the GIL) need not walk them."""
    import gc
    import sys

    from napari_ccount._workers import COUNTING_MODULES, preload

    preload().join(timeout=300)
    assert all(name in sys.modules for name in COUNTING_MODULES)
    assert gc.get_freeze_count() > 10_000
    assert gc.isenabled()
