"""Simulate crystals on the device and train the counting network on them, in one call.

One device call may run 10 minutes, and files come back in pieces of at most 16 MiB. Each
round: ``simulate_batch`` makes ``--crystals`` crystals with random ion numbers and trap
settings (the training specs' ranges) on the device, rendered there; CPU worker processes
prepare the images with the shared pipeline (``ccount_core.image.preprocess.prepare_stack``,
numpy/Numba); the network trains ``--steps-per-round`` steps on a buffer of the latest
prepared images, augmented as ``ccount train`` does. Every ``--checkpoint-s`` seconds the
model, AdamW state and counters go to ``OUT/checkpoint/`` as a safetensors blob cut in
pieces; the run stops cleanly before ``--wall-s`` (with a last checkpoint and the model with
its card, also in pieces). ``--resume-from`` a folder the last call gave back goes on.

On the device (docs/MODEL.md, "Retraining"):

    PYTHONPATH=src python3 scripts/device_train.py --out $OUT [--resume-from PREVIOUS]

Join a model here: ``cat model/model.safetensors.part* > model.safetensors`` beside
``model/model.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import multiprocessing
import os
import shutil
import time
from pathlib import Path

import numpy as np

PIECE = 16 * 2**20 - 4096  # bytes per piece, under the 16 MiB a file may have
START = time.monotonic()


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="folder for checkpoint and model")
    p.add_argument("--resume-from", type=Path, help="a previous --out (its checkpoint/)")
    p.add_argument("--wall-s", type=float, default=570.0, help="stop before this, s")
    p.add_argument("--checkpoint-s", type=float, default=120.0, help="checkpoint interval, s")
    p.add_argument("--crystals", type=int, default=512, help="crystals per simulated round")
    p.add_argument("--val-crystals", type=int, default=256)
    p.add_argument("--steps-per-round", type=int, default=64)
    p.add_argument("--max-steps", type=int, default=0, help="stop after this many (0: none)")
    p.add_argument("--total-steps", type=int, default=40_000, help="length of the LR schedule")
    p.add_argument("--buffer", type=int, default=20_000, help="prepared images kept")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--ions", type=int, nargs=2, default=(30, 350), help="min, max (all ions)")
    p.add_argument("--dark", help="a dark species (e.g. ND3+) as 0..--dark-max of the ions")
    p.add_argument("--dark-max", type=float, default=0.5)
    p.add_argument("--preprocess", type=Path, help="PreprocessConfig JSON (default: defaults)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="default: cuda if there is one")
    p.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    p.add_argument("--tiny", action="store_true", help="CPU smoke test: short MD, tiny images")
    return p.parse_args()


def _prepare(job: tuple[np.ndarray, dict, float]) -> tuple[np.ndarray, list[int]]:
    """Worker: prepared images and the indices of the frames that failed."""
    from ccount_core.image.preprocess import PreprocessConfig, prepare_stack

    images, cfg, pixel_um = job
    out = prepare_stack(images, PreprocessConfig.from_dict(cfg), camera_pixel_size_um=pixel_um)
    return out.images, sorted(out.bad_frames)


def _draw(rng: np.random.Generator, k: int, args: argparse.Namespace, seed0: int) -> tuple:
    """k crystals with ion numbers and trap settings drawn from the specs' ranges (draws that
    ``validate`` refuses are drawn again); returns (specs, labels (k, outputs))."""
    from ccount_core.errors import InputError
    from ccount_core.simulation import IonGroup, TrapSettings
    from ccount_core.simulation.batch import CrystalSpec
    from ccount_core.simulation.simulate import validate

    specs, labels = [], []
    while len(specs) < k:
        n = int(rng.integers(args.ions[0], args.ions[1] + 1))
        dark = round(n * rng.uniform(0, args.dark_max)) if args.dark else 0
        trap = TrapSettings.from_lab_units(
            v_rf=rng.uniform(170, 300), v_end=rng.uniform(1.5, 3.5), eta=rng.uniform(0.24, 0.355)
        )
        ions = [IonGroup("Ca+", n - dark)] + ([IonGroup(args.dark, dark)] if args.dark else [])
        try:
            validate(trap, ions)
        except InputError:
            continue
        specs.append(CrystalSpec(trap, ions, seed=seed0 + len(specs)))
        labels.append([n - dark] + ([dark] if args.dark else []))
    return specs, np.array(labels, np.float32)


class Data:
    """Simulation on the device and preparation on CPU workers."""

    def __init__(self, args: argparse.Namespace, cfg, device, pool) -> None:
        from ccount_core.simulation import SimulationSettings
        from ccount_core.simulation.render import ImagingSettings

        self.args, self.cfg, self.device, self.pool = args, cfg, device, pool
        short = {"equilibrate_periods": 5, "gather_periods": 10, "samples": 10, "relax_steps": 300}
        self.settings = SimulationSettings(**(short if args.tiny else {}))
        shape = (120, 160) if args.tiny else (240, 320)
        self.imaging = [
            ImagingSettings.from_lab_units(pixel_size_um=2.0, shape=shape, focal_offset_um=f)
            for f in (0.0, 25.0)
        ]

    def make(self, rng: np.random.Generator, k: int, seed0: int, focal: int):
        """Prepared images (k', 1, H, W) and labels (k', outputs) on the device."""
        import torch

        from ccount_core.simulation.batch import simulate_batch

        specs, labels = _draw(rng, k, self.args, seed0)
        result = simulate_batch(specs, self.settings, self.imaging[focal], device=self.device)
        images = result.images.float().cpu().numpy()
        parts = [i for i in np.array_split(np.arange(k), self.args.workers) if len(i)]
        jobs = [(images[i], self.cfg.to_dict(), 2.0) for i in parts]
        done = self.pool.map(_prepare, jobs) if self.pool else map(_prepare, jobs)
        prepared, keep = [], np.ones(k, bool)
        keep[result.escaped.cpu().numpy()] = False
        for idx, (img, bad) in zip(parts, done, strict=True):
            prepared.append(img)
            keep[idx[bad]] = False
        x = torch.from_numpy(np.concatenate(prepared)[keep][:, None]).to(self.device)
        return x, torch.from_numpy(labels[keep]).to(self.device)


def _save_pieces(folder: Path, name: str, blob: bytes) -> list[str]:
    """``blob`` as ``name.part000``, ... (each under 16 MiB) in ``folder``."""
    names = []
    for i in range(0, len(blob), PIECE):
        part = f"{name}.part{i // PIECE:03d}"
        (folder / part).write_bytes(blob[i : i + PIECE])
        names.append(part)
    return names


def _join_pieces(folder: Path, names: list[str], sha: str, what: str) -> bytes:
    blob = b"".join((folder / n).read_bytes() for n in names)
    if hashlib.sha256(blob).hexdigest() != sha:
        raise SystemExit(f"device_train: {what} in {folder} is damaged (checksum differs)")
    return blob


def save_checkpoint(out: Path, model, opt, meta: dict) -> None:
    """Model, AdamW state and ``meta`` as pieces in ``out/checkpoint`` (swapped in whole)."""
    from safetensors.torch import save

    tensors = {f"model.{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
    state = opt.state_dict()
    for i, st in state["state"].items():
        for key, value in st.items():
            tensors[f"opt.{i}.{key}"] = value.detach().contiguous().reshape(value.shape)
    meta = meta | {"param_groups": state["param_groups"]}
    blob = save(tensors)
    new, final = out / "checkpoint.new", out / "checkpoint"
    shutil.rmtree(new, ignore_errors=True)
    new.mkdir(parents=True)
    parts = _save_pieces(new, "state.safetensors", blob)
    index = {"parts": parts, "sha256": hashlib.sha256(blob).hexdigest(), "meta": meta}
    (new / "index.json").write_text(json.dumps(index, indent=1))
    shutil.rmtree(final, ignore_errors=True)
    new.rename(final)


def load_checkpoint(folder: Path, model, opt) -> dict:
    """Restore ``model`` and ``opt`` from a checkpoint folder; returns its meta."""
    from safetensors.torch import load

    folder = folder / "checkpoint" if (folder / "checkpoint").is_dir() else folder
    index = json.loads((folder / "index.json").read_text())
    tensors = load(_join_pieces(folder, index["parts"], index["sha256"], "checkpoint"))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, i, name = key.split(".", 2)
            state.setdefault(int(i), {})[name] = value
    meta = index["meta"]
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    return meta


def export_model(out: Path, model, cfg, labels: list[str], meta: dict) -> None:
    """The model (float16) and its card in ``out/model``, the weights in pieces."""
    from ccount_core.nn.model import save_model

    folder = out / "model"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    card = {
        "label_names": labels,
        "preprocess": cfg.to_dict(),
        "input_shape": list(cfg.output_shape),
        "training": {k: meta[k] for k in ("step", "images_seen", "val_rms_percent")},
    }
    weights, _ = save_model(folder / "model.safetensors", model, card, half=True)
    _save_pieces(folder, weights.name, weights.read_bytes())
    weights.unlink()


def _lr(step: int, args: argparse.Namespace) -> float:
    """Warm-up over 2 % of the schedule, then cosine to 1 % of the peak."""
    warm = max(1, args.total_steps // 50)
    if step < warm:
        return args.lr * (step + 1) / warm
    t = min(1.0, (step - warm) / max(1, args.total_steps - warm))
    return args.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * t)))


def main() -> None:
    args = _args()
    # Workers fork before CUDA starts in this process.
    pool = multiprocessing.get_context("fork").Pool(args.workers) if args.workers > 1 else None
    import torch

    from ccount_core.image.preprocess import PreprocessConfig
    from ccount_core.nn.augment import AugmentConfig, augment
    from ccount_core.nn.model import build_model
    from ccount_core.nn.train import _loss

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cfg = PreprocessConfig()
    if args.preprocess:
        cfg = PreprocessConfig.from_dict(json.loads(args.preprocess.read_text()))
    if args.tiny:
        tiny = {"output_shape": [96, 48], "model_pixel_size_um": 6.0}
        cfg = PreprocessConfig.from_dict(cfg.to_dict() | tiny)
    labels = ["Ca+"] + ([args.dark] if args.dark else [])
    torch.manual_seed(args.seed)
    model = build_model(len(labels), label_scale=[100.0] * len(labels)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    meta = {"step": 0, "images_seen": 0, "round": 0, "val_rms_percent": None, "calls": 0}
    if args.resume_from:
        meta = load_checkpoint(args.resume_from, model, opt)
        meta.pop("param_groups")
    meta["calls"] += 1
    args.out.mkdir(parents=True, exist_ok=True)
    if args.resume_from and (args.resume_from / "log.csv").is_file():
        shutil.copyfile(args.resume_from / "log.csv", args.out / "log.csv")
    data = Data(args, cfg, device, pool)
    val_x, val_y = data.make(np.random.default_rng([args.seed, 2**31]), args.val_crystals, 2**40, 0)
    amp = device.type == "cuda"
    scale = model.label_scale
    floor = 5.0 / scale
    gen = torch.Generator(device=device)
    buf_x = buf_y = None
    last_ckpt, round_s, ckpt_s = time.monotonic(), 0.0, 30.0

    def validate() -> float:
        model.eval()
        with torch.no_grad(), torch.autocast(device.type, torch.bfloat16, enabled=amp):
            pred = torch.cat([model(val_x[i : i + 256]) for i in range(0, len(val_x), 256)])
        model.train()
        rel = (pred[:, 0] - val_y[:, 0]) / val_y[:, 0].clamp_min(1.0)
        return float(100 * rel.square().mean().sqrt())

    def checkpoint() -> None:
        meta["val_rms_percent"] = validate()
        save_checkpoint(args.out, model, opt, meta)
        with (args.out / "log.csv").open("a") as log:
            log.write(
                f"{meta['calls']},{meta['step']},{meta['images_seen']},"
                f"{meta['val_rms_percent']:.3f},{time.monotonic() - START:.1f}\n"
            )
        print(f"step {meta['step']}: val RMS {meta['val_rms_percent']:.2f} %", flush=True)

    while True:
        elapsed = time.monotonic() - START
        if elapsed + round_s + 2 * ckpt_s > args.wall_s:
            break
        if args.max_steps and meta["step"] >= args.max_steps:
            break
        t0 = time.monotonic()
        rng = np.random.default_rng([args.seed, meta["round"]])
        x, y = data.make(rng, args.crystals, (meta["round"] + 1) * 2**20, meta["round"] % 2)
        buf_x = x if buf_x is None else torch.cat([x, buf_x])[: args.buffer]
        buf_y = y if buf_y is None else torch.cat([y, buf_y])[: args.buffer]
        gen.manual_seed(args.seed * 1_000_003 + meta["round"])
        for _ in range(args.steps_per_round):
            idx = torch.randint(len(buf_x), (args.batch_size,), generator=gen, device=device)
            for group in opt.param_groups:
                group["lr"] = _lr(meta["step"], args)
            xb = augment(buf_x[idx], AugmentConfig(), gen)
            with torch.autocast(device.type, torch.bfloat16, enabled=amp):
                loss = _loss(model.scaled(xb), buf_y[idx] / scale, floor)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            meta["step"] += 1
        meta["images_seen"] += len(x)
        meta["round"] += 1
        round_s = time.monotonic() - t0
        if time.monotonic() - last_ckpt > args.checkpoint_s:
            t0 = time.monotonic()
            checkpoint()
            last_ckpt, ckpt_s = time.monotonic(), time.monotonic() - t0
        print(
            f"round {meta['round']}: {len(x)} images in {round_s:.1f} s, step {meta['step']},"
            f" loss {float(loss.detach()):.4f}",
            flush=True,
        )
    checkpoint()
    export_model(args.out, model, cfg, labels, meta)
    if pool:
        pool.close()
    print(f"stopped at {time.monotonic() - START:.0f} s: {json.dumps(meta)}", flush=True)


if __name__ == "__main__":
    main()
