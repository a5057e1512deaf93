"""Inference speed of the counter on this CPU: batched frames/s and single-frame latency.

Measures, on the shipped sample stack (reaction_series, 1.5 µm pixels) tiled to --frames:
- the network alone on prepared images, for each precision / memory layout / thread count,
  and packed for the CPU as ``count_stack`` runs it (float32 fused and channels-last, and
  bfloat16 where this CPU packs it);
- the whole ``count_stack`` (preprocessing included) batched, without and with TTA;
- one frame through ``count_stack`` (model already loaded): the latency a live display sees.
Each figure is the best of --repeats runs (the machine may be shared).

    python benchmarks/bench_inference.py [--model M] [--frames 64] [--repeats 3] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from ccount_core.dataset.samples import load_sample
from ccount_core.image.preprocess import PreprocessConfig, prepare_stack
from ccount_core.nn.count import count_stack
from ccount_core.nn.cpu_inference import bf16_packable, pack_for_cpu
from ccount_core.nn.ensemble import IonCounter
from ccount_core.nn.model import build_model, default_model_path, load_model


def best_time(fn, repeats: int) -> float:
    fn()  # warm-up (allocations, oneDNN kernel choice)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="model file (default: the shipped model)")
    ap.add_argument("--frames", type=int, default=64, help="frames of the batched runs")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=None, help="write the figures to this JSON file")
    args = ap.parse_args()

    path = args.model or default_model_path()
    try:
        model, card = load_model(path)
        source = str(path)
    except Exception:  # no shipped model yet: a random network of the same shape and input
        pre = PreprocessConfig(model_pixel_size_um=6.0, output_shape=(96, 48))
        model = build_model(1).eval()
        card = {"preprocess": pre.to_dict(), "label_names": ["Ca+"], "label_range": [30, 350]}
        source = "random ResNet50 (no shipped model found)"
    cfg = PreprocessConfig.from_dict(card["preprocess"])
    stack, meta = load_sample("reaction_series")
    px = meta["pixel_size_um"]
    reps = -(-args.frames // len(stack))
    frames = np.concatenate([stack] * reps)[: args.frames]
    prepared = prepare_stack(frames, cfg, camera_pixel_size_um=px).images
    print(
        f"model: {source}; input {cfg.output_shape} px at {cfg.model_pixel_size_um} µm; "
        f"frames {frames.shape}; torch {torch.__version__}"
    )
    results: dict = {
        "model": source,
        "input_shape": list(cfg.output_shape),
        "frames": args.frames,
        "batch_size": args.batch_size,
        "network": [],
        "pipeline": [],
    }

    t_pre = best_time(lambda: prepare_stack(frames, cfg, camera_pixel_size_um=px), args.repeats)
    results["preprocess_fps"] = args.frames / t_pre
    print(f"preprocessing alone: {args.frames / t_pre:7.1f} frames/s")

    x_all = torch.from_numpy(prepared)[:, None]
    # what count_stack runs on a CPU, in float32 or (where faster) bfloat16
    # fp32 packed: fused, channels-last; bf16 packed: blocked, where oneDNN packs bfloat16
    packed = {"fp32 packed": pack_for_cpu(model, input_shape=cfg.output_shape)}
    if bf16_packable():
        packed["bf16 packed"] = pack_for_cpu(model, bf16=True, input_shape=cfg.output_shape)
    # one IonCounter for every count below: it packs its network once, as `ccount count` does
    counter = IonCounter([(model, card)], card)
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for name, layout, bf16 in (
            ("fp32", torch.contiguous_format, False),
            ("fp32 channels_last", torch.channels_last, False),
            ("bf16 channels_last", torch.channels_last, True),
            ("fp32 packed", torch.contiguous_format, False),
            ("bf16 packed", torch.contiguous_format, False),
        ):
            if name.endswith("packed") and name not in packed:
                continue
            net = packed[name] if name in packed else model.to(memory_format=layout)

            def run(net=net, layout=layout, bf16=bf16) -> None:
                with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
                    for s in range(0, len(x_all), args.batch_size):
                        net(x_all[s : s + args.batch_size].contiguous(memory_format=layout))

            fps = args.frames / best_time(run, args.repeats)
            results["network"].append({"threads": threads, "mode": name, "fps": fps})
            print(f"network, {threads} thread(s), {name:<20}: {fps:7.1f} frames/s")
    model.to(memory_format=torch.contiguous_format)

    for threads in (1, 2):
        for tta, bf16 in ((0, False), (0, True), (4, False), (4, True)):
            if bf16 and not bf16_packable():
                continue  # bfloat16 under autocast on an AVX2 CPU: ~3 frames/s, not worth timing
            t = best_time(
                lambda tta=tta, bf16=bf16, threads=threads: count_stack(
                    frames,
                    counter,
                    px,
                    batch_size=args.batch_size,
                    tta=tta,
                    threads=threads,
                    bf16=bf16,
                ),
                args.repeats,
            )
            lat = best_time(
                lambda tta=tta, bf16=bf16, threads=threads: count_stack(
                    frames[:1], counter, px, tta=tta, threads=threads, bf16=bf16
                ),
                args.repeats,
            )
            results["pipeline"].append(
                {
                    "threads": threads,
                    "tta": tta,
                    "bf16": bf16,
                    "fps": args.frames / t,
                    "latency_s": lat,
                }
            )
            print(
                f"count_stack, {threads} thread(s), tta={tta}, bf16={bf16!s:<5}: "
                f"{args.frames / t:7.1f} frames/s batched, {lat * 1000:6.0f} ms one frame"
            )
    # The defaults (bf16=None, every core): the first count on a machine times float32 against
    # bfloat16 once (ccount_core.nn.precision) and remembers the faster.
    import os
    import tempfile

    from ccount_core.nn.precision import CHOICE_FILE

    with tempfile.TemporaryDirectory() as cache:
        os.environ["CCOUNT_CACHE_DIR"] = cache
        t0 = time.perf_counter()
        count_stack(frames[:1], counter, px)
        first = time.perf_counter() - t0
        lat = best_time(lambda: count_stack(frames[:1], counter, px), args.repeats)
        t = best_time(
            lambda: count_stack(frames, counter, px, batch_size=args.batch_size), args.repeats
        )
        chose = (
            [v["bf16"] for v in json.loads((Path(cache) / CHOICE_FILE).read_text()).values()]
            if (Path(cache) / CHOICE_FILE).exists()
            else ["not native"]
        )
    results["default"] = {
        "fps": args.frames / t,
        "latency_s": lat,
        "first_call_s": first,
        "bf16": chose,
    }
    print(
        f"count_stack defaults (bf16 chosen: {chose}): {args.frames / t:7.1f} frames/s "
        f"batched, {lat * 1000:6.0f} ms one frame; first call on a new machine "
        f"{first:.2f} s (the one-time timing included)"
    )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
