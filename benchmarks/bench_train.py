"""Training speed on this CPU: steps/s of ``fit`` in float32 and with bfloat16 autocast (--amp).

ResNet50 at the default model's 96 × 48 px input, batch 32, 2 threads, random images: 40
timed steps after 5 warm-up steps, each way. Whether --amp pays depends on the CPU (oneDNN's
bfloat16 is not faster everywhere), so time it before a long run.

    python benchmarks/bench_train.py
"""

from __future__ import annotations

import tempfile
import time

import numpy as np
import torch

from ccount_core.nn.train import TrainConfig, fit
from ccount_core.nn.training_data import Split


def main() -> None:
    rng = np.random.default_rng(0)
    train = Split(
        rng.standard_normal((640, 96, 48)).astype(np.float32),
        rng.uniform(30, 350, (640, 1)).astype(np.float32),
    )
    val = Split(train.images[:32], train.labels[:32])
    card = {"label_names": ["Ca+"], "preprocess": {}, "data": [], "splits": {}}
    torch.set_num_threads(2)
    for amp in (False, True):
        marks: dict[int, float] = {}

        def clock(done: int, total: int, marks: dict[int, float] = marks) -> None:
            if done in (5, 45):
                marks[done] = time.perf_counter()

        config = TrainConfig(
            batch_size=32, epochs=1, epoch_images=46 * 32, amp=amp, seed=0, checkpoint_every=10**9
        )
        with tempfile.TemporaryDirectory() as run_dir:
            fit(train, val, run_dir, config, card, progress=clock)
        print(
            f"{'bfloat16 autocast' if amp else 'float32':<17}: "
            f"{40 / (marks[45] - marks[5]):.2f} steps/s of 32"
        )


if __name__ == "__main__":
    main()
