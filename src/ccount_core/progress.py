"""One progress convention for every long job.

A job takes ``progress: ProgressCallback | None`` and calls ``progress(done, total)``; the CLI
passes a tqdm bar (:func:`tqdm_progress`), the napari plugin a napari progress bar.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

ProgressCallback = Callable[[int, int], None]

TICK_S = 1.0  # how often an open bar redraws its clock between reports (s)


def report(progress: ProgressCallback | None, done: int, total: int) -> None:
    """Call ``progress(done, total)`` when a callback was given."""
    if progress is not None:
        progress(done, total)


def _tick(bar: Any, stop: threading.Event, lock: threading.Lock) -> None:
    """Redraw ``bar`` every ``TICK_S`` seconds until ``stop`` is set, so its clock moves."""
    while not stop.wait(TICK_S):
        with lock:
            bar.refresh()


def _first_report(bar: Any, done: int, total: int) -> None:
    """Leave the warm-up line for the bar; the rate counts from now and from ``done`` on."""
    bar.bar_format = None
    bar.total = total
    # The rate is measured from this report on (tqdm's last draw), so the warm-up and a resumed
    # run's earlier work stay out of it; ``start_t`` stays: the elapsed time is the bar's own.
    bar.n = bar.last_print_n = bar.initial = done
    bar.last_print_t = bar._time()
    bar.refresh()


@contextmanager
def tqdm_progress(
    desc: str, unit: str = "it", warmup: str = "starting"
) -> Iterator[ProgressCallback]:
    """A callback that drives a tqdm bar on stderr; the bar closes when the block ends.

    Until the first report the bar is one line, ``{desc}: {warmup} [elapsed]``, its clock
    moving. The elapsed time is always the time since the bar appeared, while the rate and
    time left count only the work reported after the first report: a resumed run's steps and
    the warm-up before the first report leave them unchanged. A bar never reported to
    disappears when the block ends.
    """
    from tqdm.auto import tqdm

    bar = tqdm(
        desc=desc, unit=unit, dynamic_ncols=True, bar_format=f"{{desc}}: {warmup} [{{elapsed}}]"
    )
    lock = threading.Lock()
    stop = threading.Event()
    started = False
    if not bar.disable:
        threading.Thread(target=_tick, args=(bar, stop, lock), daemon=True).start()

    def _update(done: int, total: int) -> None:
        nonlocal started
        if bar.disable:
            return
        with lock:
            if not started:
                _first_report(bar, done, total)
                started = True
                return
            bar.total = total
            bar.update(done - bar.n)

    try:
        yield _update
    finally:
        stop.set()
        with lock:
            bar.leave = bar.leave and started
            bar.close()
