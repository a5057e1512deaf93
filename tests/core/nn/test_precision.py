"""bfloat16 or float32: timed once per machine and workload, remembered, never guessed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ccount_core.nn.precision import CHOICE_FILE, bf16_pays, cpu_name


class FakeClock:
    """A timer that advances by the cost of the last run, so timings are exact."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def runner(clock: FakeClock, seconds: dict[bool, float], calls: list[bool]):
    def run(flag: bool) -> None:
        calls.append(flag)
        clock.now += seconds[flag]

    return run


def test_the_faster_precision_is_chosen_and_remembered(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CCOUNT_CACHE_DIR", str(tmp_path))
    clock, calls = FakeClock(), []
    slow_bf16 = runner(clock, {False: 0.10, True: 0.12}, calls)
    assert bf16_pays(slow_bf16, "net 96x48 batch 16", timer=clock) is False
    assert calls == [False] * 4 + [True] * 4  # a warm-up and three timed runs each
    saved = json.loads((tmp_path / CHOICE_FILE).read_text())
    ((key, entry),) = saved.items()
    assert cpu_name() in key and "net 96x48 batch 16" in key
    assert entry["bf16"] is False
    assert entry["float32_s"] == pytest.approx(0.10) and entry["bfloat16_s"] == pytest.approx(0.12)
    calls.clear()
    assert bf16_pays(slow_bf16, "net 96x48 batch 16", timer=clock) is False
    assert calls == []  # remembered: nothing runs again
    # another workload is measured on its own, and there bfloat16 wins
    fast_bf16 = runner(clock, {False: 0.10, True: 0.07}, calls)
    assert bf16_pays(fast_bf16, "net 96x48 batch 32", timer=clock) is True
    assert len(json.loads((tmp_path / CHOICE_FILE).read_text())) == 2


def test_a_broken_or_unwritable_cache_only_means_measuring(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / CHOICE_FILE).write_text("{not json")
    monkeypatch.setenv("CCOUNT_CACHE_DIR", str(tmp_path))
    clock, calls = FakeClock(), []
    run = runner(clock, {False: 0.2, True: 0.1}, calls)
    assert bf16_pays(run, "w", timer=clock) is True and len(calls) == 8
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("CCOUNT_CACHE_DIR", str(blocker / "sub"))  # cannot be made
    calls.clear()
    assert bf16_pays(run, "w", timer=clock) is True and len(calls) == 8
