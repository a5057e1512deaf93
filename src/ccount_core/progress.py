"""One progress convention for every long job.

A job takes ``progress: ProgressCallback | None`` and calls ``progress(done, total)``; the CLI
passes a tqdm bar (:func:`tqdm_progress`), the napari plugin a napari progress bar.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

ProgressCallback = Callable[[int, int], None]


def report(progress: ProgressCallback | None, done: int, total: int) -> None:
    """Call ``progress(done, total)`` when a callback was given."""
    if progress is not None:
        progress(done, total)


@contextmanager
def tqdm_progress(desc: str, unit: str = "it") -> Iterator[ProgressCallback]:
    """A callback that drives a tqdm bar on stderr; the bar closes when the block ends.

    The bar's clock starts at the first report, and work already done then (a resumed run's
    steps) does not count towards its rate: a bar opened before the data are prepared, or on
    a resumed run, shows the job's own rate and time left.
    """
    from tqdm.auto import tqdm

    bar = tqdm(desc=desc, unit=unit, dynamic_ncols=True)
    started = False
    try:

        def _update(done: int, total: int) -> None:
            nonlocal started
            if not started:
                bar.reset(total=total)
                bar.initial = done
                started = True
            elif bar.total != total:
                bar.total = total
            bar.n = done
            bar.refresh()

        yield _update
    finally:
        bar.close()
