"""The CLI's progress bar: its rate and time left are the job's own."""

from __future__ import annotations

import pytest

from ccount_core.progress import tqdm_progress


def test_a_bar_times_the_job_from_its_first_report_and_not_the_steps_it_resumed_from(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    now = [100.0]
    monkeypatch.setattr("tqdm.std.time", lambda: now[0])
    with tqdm_progress("train", unit="step") as progress:
        now[0] = 400.0  # 300 s of preparing data before the first step
        progress(400, 1000)  # a run resumed at step 400
        now[0] = 410.0
        progress(420, 1000)
    last = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]
    # 20 steps in 10 s: 2 steps/s and 580 steps (4 min 50 s) to go, not 420 steps in 310 s.
    assert "420/1000 [00:10<04:50,  2.00step/s]" in last
