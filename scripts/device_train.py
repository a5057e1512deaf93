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

A fine-tune of a shipped model (``--init-model default``, ``--freeze-bn``) through laboratory
cameras (issue 27): ``--camera camera_v2`` renders ``--camera-share`` of each round's crystals
on the CPU workers through a camera drawn from that spec's ``camera_effects`` and ``renders``
(noise, gain, bit depth, cooling beam, PSF wings, defocus, background, hot pixels, pixel
size), exactly as ``ccount dataset generate`` renders that spec; the rest are rendered clean
on the device. ``--dark ND3+ --dark-share 0.25`` puts dark ions into a quarter of the
crystals; a model without a ``ND3+`` output learns them as their Ca+ number.

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
TRAINING_KEYS = ("step", "images_seen", "val_rms_percent", "val_camera_rms_percent")
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
    p.add_argument("--dark-share", type=float, default=1.0, help="crystals with dark ions")
    p.add_argument("--init-model", help="fine-tune this model ('default': the shipped one)")
    p.add_argument("--freeze-bn", action="store_true", help="keep batch-norm statistics")
    p.add_argument("--camera", help="a spec with camera_effects (e.g. camera_v2)")
    p.add_argument("--camera-share", type=float, default=0.5, help="crystals through it")
    p.add_argument("--preprocess", type=Path, help="PreprocessConfig JSON (default: defaults)")
    p.add_argument(
        "--preprocess-update",
        type=json.loads,
        default={},
        help="JSON fields changed in the start preparation, e.g. '{\"canonical_turn\": true}'",
    )
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


def _camera_prepare(job: tuple[list, dict]) -> tuple[np.ndarray, list[int]]:
    """Worker: crystals ``(samples (S, N, 3) m, fluorescing (N,), imaging, seed)`` (None for
    one whose ions escaped) rendered through the camera their ``imaging`` draws
    (``render_real``, as a data set renders) and prepared; returns the prepared images and the
    indices of the frames that failed."""
    from ccount_core.dataset.sweep import render_real
    from ccount_core.errors import InputError
    from ccount_core.image.preprocess import PreprocessConfig, prepare_stack

    crystals, cfg_dict = job
    cfg = PreprocessConfig.from_dict(cfg_dict)
    images, bad = [], []
    for i, crystal in enumerate(crystals):
        out = None
        if crystal is not None:  # None: its ions left the trap
            samples, fluorescing, imaging, seed = crystal
            rng = np.random.default_rng(seed)
            frame = render_real(samples.astype(np.float64), fluorescing, imaging, rng)
            px = imaging["pixel_size_um"]
            try:
                out = prepare_stack(frame[None], cfg, camera_pixel_size_um=px)
            except InputError:
                pass
        if out is None or out.bad_frames:
            bad.append(i)
            images.append(np.zeros((1, *cfg.output_shape), np.float32))
        else:
            images.append(out.images)
    return np.concatenate(images), bad


def _draw(
    rng: np.random.Generator, k: int, args: argparse.Namespace, seed0: int, labels: list[str]
) -> tuple:
    """k crystals with ion numbers and trap settings drawn from the specs' ranges (draws that
    ``validate`` refuses are drawn again), ``--dark-share`` of them with dark ions; returns
    (specs, labels (k, len(labels)): each label's ions, a dark species without a label
    counted as Ca+)."""
    from ccount_core.errors import InputError
    from ccount_core.simulation import IonGroup, TrapSettings
    from ccount_core.simulation.batch import CrystalSpec
    from ccount_core.simulation.simulate import validate

    names, specs, labels = labels, [], []
    while len(specs) < k:
        n = int(rng.integers(args.ions[0], args.ions[1] + 1))
        with_dark = args.dark and rng.uniform() < args.dark_share
        dark = round(n * rng.uniform(0, args.dark_max)) if with_dark else 0
        trap = TrapSettings.from_lab_units(
            v_rf=rng.uniform(170, 300), v_end=rng.uniform(1.5, 3.5), eta=rng.uniform(0.24, 0.355)
        )
        ions = [IonGroup("Ca+", n - dark)] + ([IonGroup(args.dark, dark)] if dark else [])
        try:
            validate(trap, ions)
        except InputError:
            continue
        specs.append(CrystalSpec(trap, ions, seed=seed0 + len(specs)))
        counts = {"Ca+": n - dark, args.dark: dark} if args.dark in names else {"Ca+": n}
        labels.append([counts.get(name, 0) for name in names])
    return specs, np.array(labels, np.float32)


class Data:
    """Simulation on the device and preparation (camera renders too) on CPU workers."""

    def __init__(self, args: argparse.Namespace, cfg, labels: list[str], device, pool) -> None:
        from ccount_core.dataset.spec import load_spec, render_variants
        from ccount_core.simulation import SimulationSettings
        from ccount_core.simulation.render import ImagingSettings

        self.args, self.cfg, self.labels, self.device, self.pool = args, cfg, labels, device, pool
        short = {"equilibrate_periods": 5, "gather_periods": 10, "samples": 10, "relax_steps": 300}
        self.settings = SimulationSettings(**(short if args.tiny else {}))
        shape = (120, 160) if args.tiny else (240, 320)
        self.imaging = [
            ImagingSettings.from_lab_units(pixel_size_um=2.0, shape=shape, focal_offset_um=f)
            for f in (0.0, 25.0)
        ]
        self.cameras: list[dict] = []
        if args.camera:
            spec = load_spec(args.camera)
            if "camera_effects" not in spec:
                raise SystemExit(f"device_train: --camera {args.camera} has no camera_effects")
            tiny = {"shape": list(shape)} if args.tiny else {}
            drop = {"noise_draw"}  # a data set's repeat index, not a setting
            self.cameras = [
                {k: v for k, v in variant.items() if k not in drop} | tiny
                for variant in render_variants(spec)
            ]

    def make(self, rng: np.random.Generator, k: int, seed0: int, focal: int, share: float):
        """Prepared images (k', 1, H, W) and labels (k', outputs) on the device: k crystals,
        ``share`` of them through a camera of ``--camera``."""
        import torch

        k_cam = round(k * share) if self.cameras else 0
        x, y = [], []
        if k - k_cam:
            x_clean, y_clean = self._clean(rng, k - k_cam, seed0, focal)
            x.append(x_clean)
            y.append(y_clean)
        if k_cam:
            x_cam, y_cam = self._camera(rng, k_cam, seed0 + k)
            x.append(x_cam)
            y.append(y_cam)
        return torch.cat(x), torch.cat(y)

    def _to_device(self, parts: list[np.ndarray], done, escaped, labels: np.ndarray):
        """The workers' prepared images (``done``, one per index array of ``parts``) and
        their labels on the device, without the crystals that escaped or failed."""
        import torch

        prepared, keep = [], ~escaped.cpu().numpy()
        for idx, (img, bad) in zip(parts, done, strict=True):
            prepared.append(img)
            keep[idx[bad]] = False
        x = torch.from_numpy(np.concatenate(prepared)[keep][:, None]).to(self.device)
        return x, torch.from_numpy(labels[keep]).to(self.device)

    def _clean(self, rng: np.random.Generator, k: int, seed0: int, focal: int):
        from ccount_core.simulation.batch import simulate_batch

        specs, labels = _draw(rng, k, self.args, seed0, self.labels)
        result = simulate_batch(specs, self.settings, self.imaging[focal], device=self.device)
        images = result.images.float().cpu().numpy()
        parts = [i for i in np.array_split(np.arange(k), self.args.workers) if len(i)]
        jobs = [(images[i], self.cfg.to_dict(), 2.0) for i in parts]
        done = self.pool.map(_prepare, jobs) if self.pool else map(_prepare, jobs)
        return self._to_device(parts, done, result.escaped, labels)

    def _camera(self, rng: np.random.Generator, k: int, seed0: int):
        from ccount_core.simulation.batch import simulate_batch

        specs, labels = _draw(rng, k, self.args, seed0, self.labels)
        result = simulate_batch(specs, self.settings, None, device=self.device, keep_samples=True)
        samples = result.samples.float().cpu().numpy()
        mask, lit = result.mask.cpu().numpy(), result.fluorescing.cpu().numpy()
        picks = rng.integers(len(self.cameras), size=k)
        seeds = rng.integers(2**63, size=k)
        escaped = result.escaped.cpu().numpy()
        crystals = [
            None
            if escaped[i]
            else (samples[i][:, mask[i]], lit[i][mask[i]], self.cameras[picks[i]], int(seeds[i]))
            for i in range(k)
        ]
        parts = [i for i in np.array_split(np.arange(k), self.args.workers) if len(i)]
        jobs = [([crystals[j] for j in i], self.cfg.to_dict()) for i in parts]
        pool = self.pool
        done = pool.map(_camera_prepare, jobs) if pool else map(_camera_prepare, jobs)
        return self._to_device(parts, done, result.escaped, labels)


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


def export_model(
    out: Path, model, cfg, labels: list[str], meta: dict, extra: dict | None = None
) -> None:
    """The model (float16) and its card in ``out/model``, the weights in pieces; ``extra``
    joins the card's ``training`` (what the run drew and started from)."""
    from ccount_core.nn.model import save_model

    folder = out / "model"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    card = {
        "label_names": labels,
        "preprocess": cfg.to_dict(),
        "input_shape": list(cfg.output_shape),
        "label_range": meta.get("label_range"),  # the first label's, over the crystals trained on
        "training": {k: meta.get(k) for k in TRAINING_KEYS} | (extra or {}),
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


def _start(args: argparse.Namespace) -> tuple:
    """``(model, PreprocessConfig, label names, what the card's training adds)``: the
    ``--init-model`` with its card's preparation and labels, or a fresh network."""
    from ccount_core.image.preprocess import PreprocessConfig
    from ccount_core.nn.model import build_model, load_model

    if args.freeze_bn and not args.init_model:
        raise SystemExit("device_train: --freeze-bn only when fine-tuning (--init-model)")
    extra: dict = {}
    if args.camera:
        extra["camera"] = {"spec": args.camera, "share": args.camera_share}
    if args.dark:
        extra["dark"] = {"species": args.dark, "max": args.dark_max, "share": args.dark_share}
    if args.init_model:
        model, card = load_model(None if args.init_model == "default" else args.init_model)
        cfg, labels = PreprocessConfig.from_dict(card["preprocess"]), list(card["label_names"])
        extra["started_from"] = {"model": args.init_model, "name": card.get("name")}
    else:
        cfg, labels = PreprocessConfig(), ["Ca+"] + ([args.dark] if args.dark else [])
        if args.tiny:
            cfg = PreprocessConfig.from_dict(
                cfg.to_dict() | {"output_shape": [96, 48], "model_pixel_size_um": 6.0}
            )
        model = build_model(len(labels), label_scale=[100.0] * len(labels))
    if args.preprocess:
        cfg = PreprocessConfig.from_dict(json.loads(args.preprocess.read_text()))
    if args.preprocess_update:
        cfg = PreprocessConfig.from_dict(cfg.to_dict() | args.preprocess_update)
        extra["preprocess_update"] = args.preprocess_update
    return model, cfg, labels, extra


def main() -> None:
    args = _args()
    # Workers fork before CUDA starts in this process.
    pool = multiprocessing.get_context("fork").Pool(args.workers) if args.workers > 1 else None
    import torch

    from ccount_core.nn.augment import AugmentConfig, augment
    from ccount_core.nn.train import _freeze_batchnorm, _loss

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(args.seed)
    model, cfg, labels, extra = _start(args)
    model = model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    meta = {"step": 0, "images_seen": 0, "round": 0, "calls": 0}
    if args.resume_from:
        meta = load_checkpoint(args.resume_from, model, opt)
        meta.pop("param_groups")
    meta["calls"] += 1
    args.out.mkdir(parents=True, exist_ok=True)
    if args.resume_from and (args.resume_from / "log.csv").is_file():
        shutil.copyfile(args.resume_from / "log.csv", args.out / "log.csv")
    data = Data(args, cfg, labels, device, pool)
    val_rng = np.random.default_rng([args.seed, 2**31])
    val = {"val_rms_percent": data.make(val_rng, args.val_crystals, 2**40, 0, 0.0)}
    if args.camera:
        val["val_camera_rms_percent"] = data.make(val_rng, args.val_crystals, 2**41, 0, 1.0)
    amp = device.type == "cuda"
    scale = model.label_scale
    floor = 5.0 / scale
    gen = torch.Generator(device=device)
    buf_x = buf_y = None
    last_ckpt, round_s, ckpt_s = time.monotonic(), 0.0, 30.0

    def train_mode() -> None:
        model.train()
        if args.freeze_bn:
            _freeze_batchnorm(model)

    def validate(val_x, val_y) -> float:
        """RMS relative error (%) of the first output."""
        model.eval()
        with torch.no_grad(), torch.autocast(device.type, torch.bfloat16, enabled=amp):
            pred = torch.cat([model(val_x[i : i + 256]) for i in range(0, len(val_x), 256)])
        train_mode()
        rel = (pred[:, 0] - val_y[:, 0]) / val_y[:, 0].clamp_min(1.0)
        return float(100 * rel.square().mean().sqrt())

    def checkpoint() -> None:
        for key, (val_x, val_y) in val.items():
            meta[key] = validate(val_x, val_y)
        save_checkpoint(args.out, model, opt, meta)
        camera = meta.get("val_camera_rms_percent")
        with (args.out / "log.csv").open("a") as log:
            log.write(
                f"{meta['calls']},{meta['step']},{meta['images_seen']},"
                f"{meta['val_rms_percent']:.3f},{time.monotonic() - START:.1f},"
                f"{'' if camera is None else f'{camera:.3f}'}\n"
            )
        shown = ", ".join(f"{k[:-8]} {meta[k]:.2f} %" for k in val)
        print(f"step {meta['step']}: {shown}", flush=True)

    train_mode()

    while True:
        elapsed = time.monotonic() - START
        if elapsed + round_s + 2 * ckpt_s > args.wall_s:
            break
        if args.max_steps and meta["step"] >= args.max_steps:
            break
        t0 = time.monotonic()
        rng = np.random.default_rng([args.seed, meta["round"]])
        x, y = data.make(
            rng, args.crystals, (meta["round"] + 1) * 2**20, meta["round"] % 2, args.camera_share
        )
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
        first = y[:, 0].cpu()
        meta["label_range"] = [
            min(float(first.min()), meta.get("label_range", [math.inf])[0]),
            max(float(first.max()), meta.get("label_range", [0.0, -math.inf])[1]),
        ]
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
    export_model(args.out, model, cfg, labels, meta, extra)
    if pool:
        pool.close()
    print(f"stopped at {time.monotonic() - START:.0f} s: {json.dumps(meta)}", flush=True)


if __name__ == "__main__":
    main()
