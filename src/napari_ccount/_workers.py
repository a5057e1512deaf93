"""Run core jobs in napari worker threads with a progress bar, cancel and one-line errors.

Core jobs take ``progress(done, total)``; :func:`start_job` passes them a callback that forwards
to the widget's own progress bar in the GUI thread through a Qt signal, and that raises
:class:`Cancelled` once the user asked to cancel, so the job stops at its next progress call.
A job that also takes ``phase(text)`` (``on_phase``) names what it is doing (``loading model``);
a phase call is a cancel point too.

The bar is the widget's, not napari's activity bar: napari's processes all pending events
inside every update (a nested event loop, which also slowed the count) and animates a
spinner that repaints the whole window while a job runs (each repaint 15–80 ms with software
OpenGL, 0.3 s with the CPU busy counting).
"""

from __future__ import annotations

import ctypes
import gc
import importlib
import importlib.util
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

from magicgui.widgets import ProgressBar
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QObject, Signal

from ccount_core.errors import CcountError

#: What a count imports: loaded in the background when the Count widget opens (:func:`preload`).
COUNTING_MODULES = (
    "ccount_core.nn.count",
    "ccount_core.nn.ensemble",
    "ccount_core.image.preprocess",
)
_preload_lock = threading.Lock()
_preloaded: threading.Thread | None = None


class Cancelled(Exception):
    """Raised inside a job's progress callback after the user pressed Cancel."""


def one_line(exc: BaseException) -> str:
    """A one-line message: the InputError text as it is, anything else with its type."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if isinstance(exc, CcountError) else f"{type(exc).__name__}: {text}"


def notify_error(exc: BaseException, what: str = "ccount") -> None:
    """Show ``exc`` as a one-line napari error notification."""
    show_error(f"{what}: {one_line(exc)}")


class _Bridge(QObject):
    """Lives in the GUI thread; a signal emitted from the worker arrives there queued."""

    progressed = Signal(int, int)
    partial = Signal(object)
    phased = Signal(str)


class Job:
    """A running core job: its worker, progress bar (``bar``, the widget's; None: none
    shown) and cancel flag."""

    def __init__(
        self,
        func: Callable[..., Any],
        *args: Any,
        desc: str,
        on_done: Callable[[Any], None],
        on_error: Callable[[BaseException], None] | None = None,
        on_finish: Callable[[], None] | None = None,
        on_partial: tuple[str, Callable[[Any], None]] | None = None,
        on_phase: Callable[[str], None] | None = None,
        bar: ProgressBar | None = None,
        **kwargs: Any,
    ) -> None:
        self.desc = desc
        self.cancel_event = threading.Event()
        self.cancelled = False
        self.error: BaseException | None = None
        self.result: Any = None
        self.done = False
        self.last_progress: tuple[int, int] | None = None
        self.phase = ""
        self._bar = bar
        if bar is not None:
            bar.max, bar.value = 1, 0  # not 0..0: Qt's "busy" animation repaints without end
        self._bridge = _Bridge()
        self._bridge.progressed.connect(self._on_progress)
        self._on_done, self._on_error, self._on_finish = on_done, on_error, on_finish
        kwargs["progress"] = self._callback
        if on_partial is not None:
            # (keyword, handler): the job calls kwargs[keyword](value) in its thread; the
            # handler gets each value in the GUI thread (e.g. rows as they are counted).
            keyword, handler = on_partial
            self._bridge.partial.connect(handler)
            kwargs[keyword] = self._bridge.partial.emit
        if on_phase is not None:
            self._bridge.phased.connect(self._on_phase)
            self._bridge.phased.connect(on_phase)
            kwargs["phase"] = self._phase
        connect = {"returned": self._returned, "errored": self._errored, "finished": self._finished}
        self.worker = create_worker(func, *args, _start_thread=False, _connect=connect, **kwargs)

    def start(self) -> Job:
        self.worker.start()
        return self

    def cancel(self) -> None:
        """Ask the job to stop at its next progress report."""
        self.cancel_event.set()

    def _callback(self, done: int, total: int) -> None:  # called in the worker thread
        if self.cancel_event.is_set():
            raise Cancelled(self.desc)
        self._bridge.progressed.emit(int(done), int(total))

    def _phase(self, text: str) -> None:  # called in the worker thread
        if self.cancel_event.is_set():
            raise Cancelled(self.desc)
        self._bridge.phased.emit(text)

    def _on_phase(self, text: str) -> None:
        self.phase = text

    def _on_progress(self, done: int, total: int) -> None:
        self.last_progress = (done, total)
        bar = self._bar
        if bar is not None and total > 0:
            # QProgressBar.setValue repaints at once (a window flush: 40-80 ms with software
            # OpenGL); with updates off it is repainted with the next batch of updates instead
            bar.native.setUpdatesEnabled(False)
            try:
                if bar.max != total:
                    bar.max = total
                bar.value = min(max(done, 0), total)
            finally:
                bar.native.setUpdatesEnabled(True)

    def _returned(self, result: Any) -> None:
        self.result = result
        try:
            self._on_done(result)
        except Exception as exc:  # e.g. the layer was deleted while the job ran
            self.error = exc
            notify_error(exc, self.desc)

    def _errored(self, exc: BaseException) -> None:
        if isinstance(exc, Cancelled):
            self.cancelled = True
            show_info(f"{self.desc}: cancelled")
            return
        self.error = exc
        notify_error(exc, self.desc)
        if self._on_error is not None:
            self._on_error(exc)

    def _finished(self) -> None:
        self.done = True
        if self._on_finish is not None:
            self._on_finish()


def start_job(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Job:
    """Start ``func(*args, progress=..., **kwargs)`` in a worker; see :class:`Job`."""
    return Job(func, *args, **kwargs).start()


def _dlopen_libtorch() -> None:
    """Load torch's C++ library through the C library's ``dlopen``: a ctypes call releases
    the GIL, while Python's import of torch holds it through the whole load (about a second,
    the GUI frozen). torch's own import then finds the library loaded. Nothing where torch or
    ``dlopen`` is not found (Windows: torch is imported as usual)."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations or sys.platform == "win32":
        return
    folder = os.path.join(spec.submodule_search_locations[0], "lib")
    name = "libtorch.dylib" if sys.platform == "darwin" else "libtorch.so"
    path = os.path.join(folder, name)
    if not os.path.isfile(path):
        return
    try:
        dlopen = ctypes.CDLL(None).dlopen
    except (OSError, AttributeError):
        return
    dlopen.restype = ctypes.c_void_p
    dlopen.argtypes = [ctypes.c_char_p, ctypes.c_int]
    dlopen(path.encode(), os.RTLD_NOW | os.RTLD_GLOBAL)


def _load_counting() -> None:
    gc.disable()  # see preload()
    try:
        _dlopen_libtorch()
        for name in COUNTING_MODULES:
            importlib.import_module(name)
        importlib.import_module("ccount_core.image.preprocess").warm_up()
    except Exception:  # the count imports them again and reports the error
        pass
    finally:
        gc.freeze()
        gc.enable()


def preload() -> threading.Thread:
    """Import what a count needs (:data:`COUNTING_MODULES`, torch first) and load the
    pipeline's compiled kernels in a background thread, once per process, so that the first
    Count click finds them loaded and the GUI thread never waits on a long import; returns
    that thread.

    Python's cyclic garbage collector is what froze the window meanwhile: the imports make
    hundreds of thousands of objects, so full collections ran in the background thread,
    each walking every object of napari, torch and Numba (0.1–0.3 s holding the GIL). So the
    first call collects once (on the calling thread), the thread loads with the collector
    off, and ``gc.freeze()`` then keeps everything loaded out of later collections."""
    global _preloaded
    with _preload_lock:
        if _preloaded is None:
            gc.collect()  # so that freezing keeps no garbage alive (e.g. a deleted layer)
            _preloaded = threading.Thread(target=_load_counting, name="ccount preload", daemon=True)
            _preloaded.start()
        return _preloaded
