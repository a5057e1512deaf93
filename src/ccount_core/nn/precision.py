"""Whether bfloat16 inference pays on this CPU: timed once per machine and remembered.

oneDNN computes bfloat16 natively on CPUs with AVX512-BF16 or AMX, but native is not always
faster: the counting network (ResNet50 at 96 × 48 px) ran 1.4 times faster in bfloat16 than
in float32 on an AMD EPYC with AVX512-BF16, and 0.84 times as fast on an Intel Xeon with
AVX512-BF16 and no AMX (docs/BENCHMARKS.md). So the first count on a machine times a batch
both ways and keeps the answer in ``cache_dir() / "bf16_choice.json"``, one entry per CPU
model, torch version, thread count and workload.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch

CHOICE_FILE = "bf16_choice.json"


def cache_dir() -> Path:
    """Where ccount keeps what it measured of this machine: ``$CCOUNT_CACHE_DIR``, else
    ``~/.cache/ccount``."""
    return Path(os.environ.get("CCOUNT_CACHE_DIR") or Path.home() / ".cache" / "ccount")


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def bf16_pays(
    run: Callable[[bool], object], workload: str, timer: Callable[[], float] = time.perf_counter
) -> bool:
    """True when ``run(True)`` (one batch in bfloat16) is faster than ``run(False)`` (float32).

    ``workload`` names what ``run`` does (e.g. ``"resnet50 96x48 batch 16"``). Each way is run
    once to warm up (oneDNN builds its kernels) and then timed three times, best kept; the
    answer is stored and later calls with the same key return it without running anything.
    """
    key = " | ".join(
        [cpu_name(), f"torch {torch.__version__}", f"{torch.get_num_threads()} threads", workload]
    )
    path = cache_dir() / CHOICE_FILE
    known = _read(path)
    if isinstance(known.get(key), dict) and isinstance(known[key].get("bf16"), bool):
        return known[key]["bf16"]
    seconds = {}
    for flag in (False, True):
        run(flag)
        best = math.inf
        for _ in range(3):
            start = timer()
            run(flag)
            best = min(best, timer() - start)
        seconds[flag] = best
    choice = seconds[True] < seconds[False]
    known[key] = {
        "bf16": choice,
        "float32_s": seconds[False],
        "bfloat16_s": seconds[True],
        "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    try:
        from ccount_core.files import atomic_write_bytes

        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, (json.dumps(known, indent=1) + "\n").encode())
    except OSError:  # a read-only home: measure again next time
        pass
    return choice


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
