"""The CLI's progress bar: a true clock from the moment it appears, and the job's own rate."""

from __future__ import annotations

import re
import threading

import pytest

from ccount_core import progress as progress_module
from ccount_core.progress import tqdm_progress


def _lines(err: str) -> list[str]:
    return [line.strip() for line in err.replace("\r", "\n").splitlines() if line.strip()]


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """tqdm's clock, set by the test (s); the redraw thread is kept quiet."""
    now = [100.0]
    monkeypatch.setattr("tqdm.std.time", lambda: now[0])
    monkeypatch.setattr(progress_module, "TICK_S", 3600.0)
    return now


def test_elapsed_is_true_while_the_rate_leaves_out_warm_up_and_resumed_steps(
    clock: list[float], capsys: pytest.CaptureFixture[str]
) -> None:
    with tqdm_progress("train", unit="step") as progress:
        clock[0] = 400.0  # 300 s of preparing data before the first step
        progress(400, 1000)  # a run resumed at step 400
        clock[0] = 410.0
        progress(420, 1000)
        last = _lines(capsys.readouterr().err)[-1]
    # 20 steps in 10 s: 2 steps/s and 580 steps (4 min 50 s) to go, not 420 steps in 310 s;
    # the bar has been open for 310 s (5 min 10 s).
    assert "420/1000 [05:10<04:50,  2.00step/s]" in last


def test_the_warm_up_is_its_own_line_and_never_a_zero_frame_bar(
    clock: list[float], capsys: pytest.CaptureFixture[str]
) -> None:
    with tqdm_progress("count", unit="frame", warmup="loading the model") as progress:
        clock[0] = 114.0
        progress(32, 64)
        clock[0] = 115.0
        progress(64, 64)
        lines = _lines(capsys.readouterr().err)
    assert lines[0] == "count: loading the model [00:00]"
    assert not any(re.search(r"\b0frame|\s0/", line) for line in lines)
    assert "64/64 [00:15<00:00, 32.00frame/s]" in lines[-1]


def test_the_clock_moves_between_reports(clock: list[float]) -> None:
    drawn: list[float] = []

    class Bar:
        def refresh(self) -> None:
            drawn.append(clock[0])
            clock[0] += 1.0

    class TwoTicks(threading.Event):
        def wait(self, timeout: float | None = None) -> bool:
            return len(drawn) >= 2

    progress_module._tick(Bar(), TwoTicks(), threading.Lock())
    assert drawn == [100.0, 101.0]


def test_a_bar_never_reported_to_leaves_no_line(
    clock: list[float], capsys: pytest.CaptureFixture[str]
) -> None:
    with tqdm_progress("count", unit="frame", warmup="loading the model"):
        clock[0] = 103.0
    err = capsys.readouterr().err
    assert "\n" not in err  # the warm-up line was cleared, not left behind
