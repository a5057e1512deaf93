"""Bad-input corpus: every subcommand of ``ccount`` (``ccount_core.cli.main``) fed the inputs
users get wrong, each case with the class of outcome it must keep.

Every case runs in-process through ``main(argv)`` on small files it makes in ``tmp_path``.
Progress bars are off, so stderr holds only messages. The classes (the project's standard,
docs/ARCHITECTURE.md, and ``ccount_core.cli.main``):

``ok``
    exit 0; when a counts CSV is written, no row carries a warning.
``warning``
    exit 0, and the case's ``name`` appears in a warning: the ``warning`` column of the counts
    CSV at ``-o`` (``ccount_core.nn.count``), or a stderr line holding "warning".
``error``
    non-zero exit; stderr is exactly one line, starting ``ccount: error:``, that holds the
    case's ``name`` (the offending file or parameter); no output file at ``-o`` that was not
    there before (inputs are checked before any output is created).
``usage``
    exit 2 from argparse (or a missing subcommand): stderr holds its ``usage:`` message.

No case may print "Traceback", and each is small enough to finish in well under a second
(the few that load a network or simulate, a few seconds). A case that misbehaves today is an
``xfail(strict=True)`` naming what is wrong, so the suite says when a fix lands.
"""

from __future__ import annotations

import csv
import functools
import json
import math
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
import zarr

from ccount_core.cli import main
from ccount_core.image.io import write_tiff
from ccount_core.nn.counts_file import CountsWriter

pytestmark = pytest.mark.usefixtures("one_torch_thread")

Maker = Callable[[Path, "Inputs"], object]


class Inputs:
    """What a file maker may copy from: the tiny model (``tests/conftest.py``)."""

    def __init__(self, model: Path) -> None:
        self.model = model


# --- file makers: each writes one small input at the given path --------------------------------


def crystal(frames: int = 2, rows: int = 64, cols: int = 96) -> np.ndarray:
    """A bright elliptical crystal of Gaussian spots on a noisy background, uint16."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:rows, :cols]
    out = np.empty((frames, rows, cols), np.float32)
    for f in range(frames):
        image = rng.normal(100.0, 3.0, (rows, cols))
        t, r = rng.uniform(0, 2 * np.pi, 40), np.sqrt(rng.uniform(0, 1, 40))
        for y, x in zip(rows / 2 + 10 * r * np.sin(t), cols / 2 + 25 * r * np.cos(t), strict=True):
            image += 300.0 * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / 4.0)
        out[f] = image
    return out.astype(np.uint16)


def tif(data: np.ndarray | None = None, px: float | None = 1.0, **kw: Any) -> Maker:
    """A TIFF of ``data`` (default: the crystal) with pixel size ``px`` µm (None: none)."""
    return lambda p, _: write_tiff(p, crystal() if data is None else data, pixel_size_um=px, **kw)


def filled(value: float, shape: Sequence[int] = (2, 64, 96), dtype: str = "float32") -> Maker:
    return tif(np.full(shape, value, dtype))


def rgb_tif(p: Path, _: Inputs) -> None:
    tifffile.imwrite(p, np.zeros((64, 96, 3), np.uint8), photometric="rgb")


def truncated_tif(p: Path, _: Inputs) -> None:
    write_tiff(p, crystal())
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def text(content: str) -> Maker:
    return lambda p, _: p.write_text(content)


def data(content: bytes) -> Maker:
    return lambda p, _: p.write_bytes(content)


def folder(p: Path, _: Inputs) -> None:
    p.mkdir()


def frames_folder(*shapes: tuple[int, int]) -> Maker:
    """A folder of single-frame TIFFs of these shapes."""

    def make(p: Path, _: Inputs) -> None:
        p.mkdir()
        for k, shape in enumerate(shapes):
            tifffile.imwrite(p / f"f{k}.tif", crystal(1, *shape)[0])

    return make


def zarr_array(array: np.ndarray) -> Maker:
    def make(p: Path, _: Inputs) -> None:
        z = zarr.create_array(str(p), shape=array.shape, dtype=array.dtype, chunks=array.shape)
        z[...] = array

    return make


def zarr_group(p: Path, _: Inputs) -> None:
    zarr.open_group(str(p), mode="w")


def model_copy(card: str | None = None, weights: bytes | None = None) -> Maker:
    """The tiny model copied to ``p`` (.safetensors) with its card or weights replaced."""

    def make(p: Path, i: Inputs) -> None:
        shutil.copy(i.model, p)
        shutil.copy(i.model.with_suffix(".json"), p.with_suffix(".json"))
        if card is not None:
            p.with_suffix(".json").write_text(card)
        if weights is not None:
            p.write_bytes(weights)

    return make


def card_edit(**fields: Any) -> Maker:
    """The tiny model copied with these card fields replaced."""

    def make(p: Path, i: Inputs) -> None:
        card = json.loads(i.model.with_suffix(".json").read_text()) | fields
        model_copy(card=json.dumps(card))(p, i)

    return make


def ensemble(members: object) -> Maker:
    """An ensemble card (``ccount_core.nn.ensemble``) listing ``members``, its outputs and
    preparation those of the tiny model."""

    def make(p: Path, i: Inputs) -> None:
        model = json.loads(i.model.with_suffix(".json").read_text())
        card = {k: model[k] for k in ("label_names", "preprocess")}
        card |= {"format": "ccount-ensemble", "format_version": 1, "members": members}
        p.write_text(json.dumps(card))

    return make


def counts(frames: int = 12, dark: bool = False, **cells: Any) -> Maker:
    """A counts CSV as ``ccount count`` writes it: Ca+ lost at 0.01 s⁻¹ (10 s per frame)
    towards 40 ions, exact, 5 ions 1σ (with ``dark``: the lost ions as ND3+); ``cells``:
    ``<column>_<frame>`` -> value (``time_s_4=None``), or ``<column>`` -> value in every row."""

    def make(p: Path, _: Inputs) -> None:
        with p.open("w", newline="") as fh:
            fh.write('# ccount counts {"label_names": ["Ca+"]}\n')
            writer = CountsWriter(fh, ["ND3+"] if dark else [])
            writer.write_column_names()
            for f in range(frames):
                n = 40.0 + 260.0 * math.exp(-0.1 * f)
                row = {"frame": f, "time_s": 10.0 * f, "count": n, "uncertainty": 5.0}
                row["count_ND3+"] = 300.0 - n
                for key, value in cells.items():
                    column, _, frame = key.rpartition("_")
                    if not frame.isdigit():
                        row[key] = value
                    elif int(frame) == f:
                        row[column] = value
                writer.write([row])

    return make


# --- argv builders ------------------------------------------------------------------------------

COUNT_OUT = "{d}/c.csv"


def count(stack: str, *flags: str) -> list[str]:
    """``ccount count`` of ``stack`` with the tiny model, one thread, no bfloat16 timing."""
    base = ["count", stack, "-o", COUNT_OUT, "--model", "{model}", "--threads", "1", "--no-bf16"]
    return [*base, *flags]


TIF = "{d}/a.tif"  # the crystal stack most count cases use
FAST_SIM = ["--ions", "Ca+:5", "--gather-periods", "2", "--samples", "2", "--rows", "32"]


def simulate(*flags: str) -> list[str]:
    """``ccount simulate`` of a tiny crystal, the case's flags last (they win)."""
    return ["simulate", "-o", "{d}/s.tif", *FAST_SIM, "--cols", "32", *flags]


def generate(spec: str, *flags: str) -> list[str]:
    return ["dataset", "generate", spec, "-o", "{d}/g.zarr", *flags]


def train(*flags: str, data: str = "{store}") -> list[str]:
    return ["train", data, "-o", "{d}/run", "--epochs", "1", "--threads", "1", *flags]


def evaluate(*flags: str, model: str = "{model}", data: str = "{store}") -> list[str]:
    return ["evaluate", model, data, "-o", "{d}/ev", "--threads", "1", *flags]


def kinetics(path: str, *flags: str) -> list[str]:
    return ["kinetics", path, "-o", "{d}/k.csv", *flags]


N = "{d}/n.csv"  # the counts file of the kinetics cases
PRODUCT = ["--model", "first-order-to-product"]


SPEC = """\
name: corpus
simulation: {relax_steps: 20, equilibrate_periods: 4, gather_periods: 4, samples: 2}
imaging: {shape: [32, 48], pixel_size_um: 2.0}
parameters: {n_ions: [5], v_rf: [200], v_end: [2.0], eta: 0.244, seeds: [1]}
renders: {focal_offset_um: [0]}
"""


def case(
    cid: str,
    files: Mapping[str, Maker],
    argv: list[str],
    expect: str,
    name: str = "",
    xfail: str = "",
) -> Any:
    """One corpus row; ``xfail``: what is wrong today (the case fails until it is fixed)."""
    marks = [pytest.mark.xfail(strict=True, reason=xfail)] if xfail else []
    return pytest.param(dict(files), argv, expect, name, id=cid, marks=marks)


def simulate_trap(path: str) -> list[str]:
    """``ccount simulate`` from a CCMD trap.info file (it gives the ions)."""
    return ["simulate", "-o", "{d}/s.tif", "--trap-info", path]


def match(*flags: str, stack: str = TIF) -> list[str]:
    """``ccount match`` of ``stack`` in the paper's trap, the case's flags last."""
    trap = ["--v-rf", "200", "--v-end", "2.3375", "--eta", "0.244"]
    return ["match", stack, "-o", "{d}/m.csv", "--pixel-size-um", "1.5", *trap, *flags]


A = {"a.tif": tif()}
SPEC_FILE = {"spec.yaml": text(SPEC)}
M = "{d}/m.safetensors"
SHOW = ["dataset", "show", "{store}", "-o", "{d}/s.png"]

# One row per case: id, files made in tmp_path, argv ({d}: tmp_path, {model}: the tiny model,
# {store}: the tiny data-set store), expected class, the name its message must hold.
# fmt: off
CASES = [
    # --- the command line itself
    case("no-command", {}, [], "usage"),
    case("unknown-command", {}, ["frobnicate"], "usage"),
    case("unknown-flag", A, count(TIF, "--frobnicate"), "usage"),
    case("dataset-no-action", {}, ["dataset"], "usage"),
    case("count-no-stack", {}, ["count"], "usage"),
    case("evaluate-no-data", {}, ["evaluate", "default"], "usage"),
    case("train-no-output", {}, ["train", "{d}/x.zarr"], "usage"),
    # --- count: stacks it reads
    case("count-ok", A, count(TIF), "ok"),
    case("count-2d-frame", {"a.tif": tif(crystal(1)[0])}, count(TIF), "ok"),
    case("count-uint8", {"a.tif": tif((crystal() // 4).astype(np.uint8))}, count(TIF), "ok"),
    case("count-float64", {"a.tif": tif(crystal().astype(np.float64))}, count(TIF), "ok"),
    case("count-output-new-folder", A, count(TIF, "-o", "{d}/new/c.csv"), "ok"),
    case("count-frames-folder-pixel-size", {"f": frames_folder((64, 96))},
         count("{d}/f", "--pixel-size-um", "1"), "ok"),
    case("count-trap-axis-stated", A, count(TIF, "--trap-axis", "horizontal"), "ok"),
    case("count-trap-axis-from-file", {"a.tif": tif(trap_axis_deg=0.0)}, count(TIF), "ok"),
    # --- count: reads, but each row says what is unlike the training data
    case("count-trap-axis-off-the-crystal", A, count(TIF, "--trap-axis", "45"), "warning",
         "stated trap axis"),
    # --- count: a missing pixel size is refused before any work, naming the flag
    case("count-frames-folder", {"f": frames_folder((64, 96))}, count("{d}/f"), "error",
         "--pixel-size-um"),
    case("count-zarr", {"a.zarr": zarr_array(crystal())}, count("{d}/a.zarr"), "error",
         "--pixel-size-um"),
    case("count-no-pixel-size", {"a.tif": tif(px=None)}, count(TIF), "error",
         "--pixel-size-um"),
    # --- count: a run that counts no frame fails with the reason (and leaves no file)
    case("count-nan-frames", {"a.tif": filled(np.nan)}, count(TIF), "error", "no frame counted"),
    case("count-inf-frames", {"a.tif": filled(np.inf)}, count(TIF), "error", "no frame counted"),
    case("count-constant-frames", {"a.tif": filled(7.0)}, count(TIF), "error",
         "no frame counted"),
    case("count-zero-frames", {"a.tif": filled(0.0)}, count(TIF), "error", "no frame counted"),
    case("count-bool", {"a.tif": tif(crystal() > 150)}, count(TIF), "error", "boolean"),
    # --- count: stacks it refuses
    case("count-missing", {}, count("{d}/missing.tif"), "error", "missing.tif"),
    case("count-directory-no-frames", {"empty": folder}, count("{d}/empty"), "error", "empty"),
    case("count-empty-file", {"a.tif": data(b"")}, count(TIF), "error", "a.tif"),
    case("count-text-as-tiff", {"a.tif": text("not an image\n")}, count(TIF), "error", "a.tif"),
    case("count-not-an-image", {"a.txt": text("1,2,3\n")}, count("{d}/a.txt"), "error", "a.txt"),
    case("count-garbage-png", {"a.png": data(b"\x89PNG\r\n\x1a\n" + bytes(40))},
         count("{d}/a.png"), "error", "a.png"),
    case("count-truncated-tiff", {"a.tif": truncated_tif}, count(TIF), "error", "a.tif"),
    case("count-4d-zarr", {"a.zarr": zarr_array(crystal(4).reshape(2, 2, 64, 96))},
         count("{d}/a.zarr"), "error", "a.zarr"),
    case("count-1d-zarr", {"a.zarr": zarr_array(np.arange(64, dtype=np.uint16))},
         count("{d}/a.zarr"), "error", "a.zarr"),
    case("count-no-frames-zarr", {"a.zarr": zarr_array(np.zeros((0, 64, 96), np.uint16))},
         count("{d}/a.zarr"), "error", "a.zarr"),
    case("count-empty-zarr-group", {"a.zarr": zarr_group}, count("{d}/a.zarr"), "error", "a.zarr"),
    case("count-complex-zarr", {"a.zarr": zarr_array(np.ones((2, 64, 96), np.complex64))},
         count("{d}/a.zarr", "--pixel-size-um", "1"), "error", "a.zarr"),
    case("count-string-zarr", {"a.zarr": zarr_array(np.full((2, 64, 96), "x", dtype="<U1"))},
         count("{d}/a.zarr", "--pixel-size-um", "1"), "error", "a.zarr"),
    case("count-rgb", {"a.tif": rgb_tif}, count(TIF), "error", "RGB"),
    case("count-tiny-frames", {"a.tif": filled(1.0, (2, 8, 8))}, count(TIF), "error",
         "too small"),
    case("count-line-frames", {"a.tif": filled(1.0, (2, 1, 96))}, count(TIF), "error", "a.tif"),
    case("count-mixed-folder", {"f": frames_folder((64, 96), (32, 48))}, count("{d}/f"),
         "error", "f1.tif"),
    # --- count: numbers and choices
    *[case(f"count-pixel-size-{v}", A, count(TIF, "--pixel-size-um", v), "error",
           "pixel_size_um") for v in ("0", "-1", "nan", "inf")],
    case("count-pixel-size-text", A, count(TIF, "--pixel-size-um", "big"), "usage"),
    *[case(f"count-trap-axis-{v}", A, count(TIF, "--trap-axis", v), "error", "trap_axis")
      for v in ("sideways", "nan", "")],
    *[case(f"count-batch-size-{v}", A, count(TIF, "--batch-size", v), "error", "batch_size")
      for v in ("0", "-1")],
    case("count-batch-size-float", A, count(TIF, "--batch-size", "1.5"), "usage"),
    case("count-tta-negative", A, count(TIF, "--tta", "-1"), "error", "tta"),
    case("count-tta-text", A, count(TIF, "--tta", "many"), "usage"),
    *[case(f"count-threads-{v}", A, count(TIF, "--threads", v), "error", "threads")
      for v in ("0", "-2")],
    case("count-device-unknown", A, count(TIF, "--device", "gpu7"), "error", "device"),
    case("count-device-empty", A, count(TIF, "--device", ""), "error", "device"),
    # --- count: the model
    case("count-model-missing", A, count(TIF, "--model", "{d}/none.safetensors"), "error",
         "none"),
    case("count-model-unknown-name", A, count(TIF, "--model", "bogus"), "error", "bogus"),
    case("count-model-empty-dir", {**A, "m": folder}, count(TIF, "--model", "{d}/m"), "error",
         "m"),
    case("count-model-not-safetensors", {**A, "m.safetensors": model_copy(weights=b"PK\0junk")},
         count(TIF, "--model", M), "error", "m.safetensors"),
    case("count-model-card-not-json", {**A, "m.safetensors": model_copy(card="{not json")},
         count(TIF, "--model", M), "error", "m.json"),
    case("count-model-card-a-list", {**A, "m.safetensors": model_copy(card="[1, 2]")},
         count(TIF, "--model", M), "error", "m.json"),
    case("count-model-card-wrong-labels", {**A, "m.safetensors": card_edit(label_names=5)},
         count(TIF, "--model", M), "error", "label_names"),
    case("count-model-card-wrong-preprocess",
         {**A, "m.safetensors": card_edit(preprocess={"median_size": "big"})},
         count(TIF, "--model", M), "error", "median_size"),
    case("count-model-card-unknown-arch", {**A, "m.safetensors": card_edit(architecture="vgg")},
         count(TIF, "--model", M), "error", "vgg"),
    case("count-ensemble-missing-member", {**A, "e.json": ensemble(["gone.json"])},
         count(TIF, "--model", "{d}/e.json"), "error", "gone"),
    case("count-ensemble-wrong-type", {**A, "e.json": ensemble(3)},
         count(TIF, "--model", "{d}/e.json"), "error", "e.json"),
    # --- count: the output
    case("count-output-is-directory", {**A, "c.csv": folder}, count(TIF), "error", "c.csv"),
    case("count-output-binary", {**A, "c.csv": data(bytes(range(256)) * 4)}, count(TIF),
         "error", "c.csv"),
    # a counts file of ours with no rows holds no results: it is started anew
    case("count-output-other-source-no-rows",
         {**A, "c.csv": text('# ccount counts {"source": "x"}\nframe,count\n')}, count(TIF),
         "ok"),
    case("count-output-other-source",
         {**A, "c.csv": text('# ccount counts {"source": "x"}\nframe,count\n0,5\n')},
         count(TIF), "error", "c.csv"),
    case("count-output-text", {**A, "c.csv": text("just some notes\n")}, count(TIF), "error",
         "c.csv"),
    # --- simulate: numbers (each message names the quantity)
    case("simulate-ok", {}, simulate(), "ok"),
    *[case(f"simulate{flag}-{v}", {}, simulate(flag, v), "error", name)
      for flag, name, values in (
          ("--v-rf", "v_rf", ("0", "-1", "nan", "inf")),
          ("--v-end", "v_end", ("nan", "inf")),
          ("--eta", "eta", ("0", "-1", "nan")),
          ("--rf-mhz", "rf", ("0", "nan")),
          ("--r0-um", "r0", ("0", "-1")),
          ("--z0-um", "z0", ("0", "inf")),
          ("--temperature-mk", "temperature", ("-1", "nan")),
          ("--pixel-um", "pixel", ("0", "-1", "nan", "inf")),
          ("--rows", "rows", ("0", "-1")),
          ("--cols", "cols", ("0",)),
          ("--blur-um", "blur", ("-1", "nan")),
          ("--dof-um", "depth of field", ("0", "-1")),
          ("--gather-periods", "gather", ("0", "-1")),
          ("--samples", "samples", ("0", "-1")),
      ) for v in values],
    *[case(f"simulate-camera{flag}-{v}", {}, simulate("--camera", flag, v), "error", name)
      for flag, name, v in (
          ("--photons-per-ion", "photons", "-1"),
          ("--background", "background", "nan"),
          ("--em-gain", "em", "0"),
          ("--read-noise", "read", "-1"),
          ("--bit-depth", "bit", "0"),
          ("--bit-depth", "bit", "99"),
      )],
    case("simulate-rows-text", {}, simulate("--rows", "many"), "usage"),
    case("simulate-mode-unknown", {}, simulate("--mode", "quantum"), "usage"),
    # --- simulate: ions
    *[case(f"simulate-ions-{cid}", {}, simulate("--ions", v), "error", "--ions")
      for cid, v in (
          ("no-number", "Ca+"), ("empty-number", "Ca+:"), ("no-species", ":5"),
          ("text-number", "Ca+:abc"), ("float-number", "Ca+:1.5"), ("negative", "Ca+:-5"),
          ("empty", ""), ("trailing-comma", "Ca+:5,"),
      )],
    case("simulate-ions-zero", {}, simulate("--ions", "Ca+:0"), "error", "ions"),
    case("simulate-ions-too-many", {}, simulate("--ions", "Ca+:1000000"), "error", "ions"),
    case("simulate-ions-unknown-species", {}, simulate("--ions", "Xx+:5"), "error", "Xx+"),
    case("simulate-ions-repeated-species", {}, simulate("--ions", "Ca+:5,Ca+:3"), "error",
         "Ca+"),
    # --- simulate: files
    case("simulate-trap-info-with-ions", {}, simulate("--trap-info", "{d}/trap.info"), "error",
         "--trap-info"),
    case("simulate-trap-info-missing", {}, simulate_trap("{d}/trap.info"), "error",
         "trap.info"),
    case("simulate-trap-info-directory", {"trap.info": folder}, simulate_trap("{d}/trap.info"),
         "error", "trap.info"),
    case("simulate-trap-info-empty", {"trap.info": data(b"")}, simulate_trap("{d}/trap.info"),
         "error", "trap.info"),
    case("simulate-trap-info-garbage", {"trap.info": data(bytes(range(256)))},
         simulate_trap("{d}/trap.info"), "error", "trap.info"),
    case("simulate-output-new-folder", {}, simulate("-o", "{d}/new/s.tif"), "ok"),
    case("simulate-output-is-directory", {"s.tif": folder}, simulate(), "error", "s.tif"),
    case("simulate-positions-new-folder", {}, simulate("--positions", "{d}/new/p.csv"), "ok"),
    case("simulate-positions-is-directory", {"p.csv": folder},
         simulate("--positions", "{d}/p.csv"), "error", "p.csv"),
    # --- dataset generate
    case("generate-spec-missing", {}, generate("{d}/spec.yaml"), "error", "spec.yaml"),
    case("generate-spec-directory", {"spec.yaml": folder}, generate("{d}/spec.yaml"), "error",
         "spec.yaml"),
    case("generate-spec-empty", {"spec.yaml": data(b"")}, generate("{d}/spec.yaml"), "error",
         "spec"),
    case("generate-spec-not-yaml", {"spec.yaml": text("name: [unclosed\n")},
         generate("{d}/spec.yaml"), "error", "spec.yaml"),
    case("generate-spec-a-list", {"spec.yaml": text("- 1\n- 2\n")}, generate("{d}/spec.yaml"),
         "error", "spec"),
    case("generate-spec-not-toml", {"spec.toml": text("name = \n")}, generate("{d}/spec.toml"),
         "error", "spec.toml"),
    case("generate-spec-unknown-name", {}, generate("bogus"), "error", "bogus"),
    case("generate-spec-ions-text", {"spec.yaml": text(SPEC.replace("[5]", "many"))},
         generate("{d}/spec.yaml"), "error", "n_ions"),
    case("generate-spec-shape-zero", {"spec.yaml": text(SPEC.replace("[32, 48]", "[0, 48]"))},
         generate("{d}/spec.yaml"), "error", "shape"),
    case("generate-spec-pixel-nan", {"spec.yaml": text(SPEC.replace("2.0}", ".nan}"))},
         generate("{d}/spec.yaml"), "error", "pixel size"),
    case("generate-spec-eta-negative", {"spec.yaml": text(SPEC.replace("0.244", "-1"))},
         generate("{d}/spec.yaml"), "error", "eta"),
    case("generate-spec-unknown-key", {"spec.yaml": text(SPEC + "colour: red\n")},
         generate("{d}/spec.yaml"), "error", "colour"),
    *[case(f"generate-workers-{v}", SPEC_FILE, generate("{d}/spec.yaml", "--workers", v),
           "error", "workers") for v in ("0", "-1")],
    case("generate-flush-negative", SPEC_FILE,
         generate("{d}/spec.yaml", "--flush-seconds", "-1"), "error", "--flush-seconds"),
    case("generate-flush-nan", SPEC_FILE,
         generate("{d}/spec.yaml", "--flush-seconds", "nan", "--workers", "1"), "error",
         "--flush-seconds"),
    case("generate-split-unknown", SPEC_FILE, generate("{d}/spec.yaml", "--split", "all"),
         "usage"),
    case("generate-output-is-file", {**SPEC_FILE, "g.zarr": text("x")},
         generate("{d}/spec.yaml"), "error", "g.zarr"),
    # --- dataset info / show
    case("info-ok", {}, ["dataset", "info", "{store}"], "ok"),
    case("info-missing", {}, ["dataset", "info", "{d}/none.zarr"], "error", "none.zarr"),
    case("info-a-file", {"s.zarr": text("x")}, ["dataset", "info", "{d}/s.zarr"], "error",
         "s.zarr"),
    case("info-empty-directory", {"s.zarr": folder}, ["dataset", "info", "{d}/s.zarr"],
         "error", "s.zarr"),
    case("info-plain-array", {"s.zarr": zarr_array(crystal())},
         ["dataset", "info", "{d}/s.zarr"], "error", "s.zarr"),
    case("info-tiff", A, ["dataset", "info", TIF], "error", "a.tif"),
    case("show-ok", {}, [*SHOW, "-n", "2"], "ok"),
    case("show-missing", {}, ["dataset", "show", "{d}/none.zarr", "-o", "{d}/s.png"], "error",
         "none.zarr"),
    *[case(f"show-n-{v}", {}, [*SHOW, "-n", v], "error", "n") for v in ("0", "-1")],
    case("show-output-new-folder", {}, [*SHOW, "-n", "2", "-o", "{d}/new/s.png"], "ok"),
    case("show-output-is-directory", {"s.png": folder}, [*SHOW, "-n", "2"], "error", "s.png"),
    case("show-split-unknown", {}, [*SHOW, "--split", "dev"], "usage"),
    # --- train (TrainConfig and the preprocessing are checked before the data are read)
    case("train-data-missing", {}, train(data="{d}/none.zarr"), "error", "none.zarr"),
    case("train-data-a-tiff", A, train(data=TIF), "error", "a.tif"),
    case("train-data-empty-directory", {"s.zarr": folder}, train(data="{d}/s.zarr"), "error",
         "s.zarr"),
    *[case(f"train{flag}-{v}", {}, train(flag, v), "error", flag[2:].replace("-", "_"))
      for flag, values in (
          ("--epochs", ("0", "-1")),
          ("--batch-size", ("0", "-1")),
          ("--checkpoint-every", ("0",)),
          ("--lr", ("0", "-1", "nan")),
          ("--loss-floor-ions", ("0", "nan")),
      ) for v in values],
    case("train-epoch-images-below-batch", {}, train("--epoch-images", "1"), "error",
         "epoch_images"),
    case("train-threads-0", {}, train("--threads", "0"), "error", "--threads"),
    case("train-pixel-size-0", {}, train("--pixel-size-um", "0"), "error", "pixel_size_um"),
    case("train-pixel-size-nan", {}, train("--pixel-size-um", "nan"), "error", "pixel_size_um"),
    case("train-input-shape-0", {}, train("--input-shape", "0", "0"), "error", "output_shape"),
    case("train-input-shape-negative", {}, train("--input-shape", "-4", "16"), "error",
         "output_shape"),
    case("train-preprocess-missing", {}, train("--preprocess", "{d}/p.json"), "error", "p.json"),
    case("train-preprocess-not-json", {"p.json": text("{oops")},
         train("--preprocess", "{d}/p.json"), "error", "preprocess"),
    case("train-preprocess-wrong-type", {"p.json": text('{"median_size": "big"}')},
         train("--preprocess", "{d}/p.json"), "error", "median_size"),
    case("train-init-model-missing", {}, train("--init-model", "{d}/none.safetensors"),
         "error", "none"),
    case("train-init-weights-missing", {}, train("--init-weights", "{d}/none.pth"), "error",
         "none.pth"),
    case("train-freeze-bn-alone", {}, train("--freeze-bn"), "error", "freeze_bn"),
    case("train-labels-unknown", {}, train("--labels", "Xx+"), "error", "Xx+"),
    case("train-output-is-file", {"run": text("x")}, train(), "error", "run"),
    case("train-weight-decay-nan", {}, train("--weight-decay", "nan", "--max-train", "8"),
         "error", "weight_decay"),
    # --- evaluate
    case("evaluate-ok", {}, evaluate(), "ok"),
    case("evaluate-model-missing", {}, evaluate(model="{d}/none.safetensors"), "error", "none"),
    case("evaluate-model-unknown-name", {}, evaluate(model="bogus"), "error", "bogus"),
    case("evaluate-model-not-safetensors", {"m.safetensors": model_copy(weights=b"junk")},
         evaluate(model=M), "error", "m.safetensors"),
    case("evaluate-model-card-not-json", {"m.safetensors": model_copy(card="nope")},
         evaluate(model=M), "error", "m.json"),
    case("evaluate-data-missing", {}, evaluate(data="{d}/none.zarr"), "error", "none.zarr"),
    case("evaluate-data-a-tiff", A, evaluate(data=TIF), "error", "a.tif"),
    case("evaluate-tta-negative", {}, evaluate("--tta", "-1"), "error", "tta"),
    case("evaluate-threads-0", {}, evaluate("--threads", "0"), "error", "--threads"),
    case("evaluate-batch-size-0", {}, evaluate("--batch-size", "0"), "error", "batch_size"),
    case("evaluate-batch-size-negative", {}, evaluate("--batch-size", "-1"), "error",
         "batch_size"),
    case("evaluate-limit-0", {}, evaluate("--limit", "0"), "error", "limit"),
    case("evaluate-limit-negative", {}, evaluate("--limit", "-1"), "error", "limit"),
    case("evaluate-split-unknown", {}, evaluate("--split", "dev"), "usage"),
    case("evaluate-output-is-file", {"ev": text("x")}, evaluate(), "error", "ev"),
    # --- kinetics (the counts file is read and checked before the fit; -o written last)
    case("kinetics-ok", {"n.csv": counts()}, kinetics(N), "ok"),
    case("kinetics-product-ok", {"n.csv": counts(dark=True)}, kinetics(N, *PRODUCT), "ok"),
    case("kinetics-frame-not-counted", {"n.csv": counts(count_3=None, uncertainty_3=None)},
         kinetics(N), "warning", "frame 3"),
    case("kinetics-missing-file", {}, kinetics("{d}/none.csv"), "error", "none.csv"),
    case("kinetics-a-tiff", A, kinetics(TIF), "error", "a.tif"),
    case("kinetics-not-counts", {"n.csv": text("a,b\n1,2\n")}, kinetics(N), "error", "n.csv"),
    case("kinetics-empty-file", {"n.csv": text("")}, kinetics(N), "error", "n.csv"),
    case("kinetics-no-rows", {"n.csv": counts(0)}, kinetics(N), "error", "too few frames"),
    case("kinetics-too-few-frames", {"n.csv": counts(3)}, kinetics(N), "error",
         "too few frames"),
    case("kinetics-product-too-few-frames", {"n.csv": counts(5, dark=True)},
         kinetics(N, *PRODUCT), "error", "too few frames"),
    case("kinetics-no-times", {"n.csv": counts(time_s=None)}, kinetics(N), "error", "time_s"),
    case("kinetics-time-nan", {"n.csv": counts(time_s_4="nan")}, kinetics(N), "error",
         "time_s"),
    case("kinetics-times-not-increasing", {"n.csv": counts(time_s_4=20.0)}, kinetics(N),
         "error", "time_s"),
    case("kinetics-count-not-a-number", {"n.csv": counts(count_2="many")}, kinetics(N),
         "error", "count"),
    case("kinetics-flat", {"n.csv": counts(count=200.0)}, kinetics(N), "error",
         "the series is flat"),
    case("kinetics-rising", {"n.csv": counts(count_0=100.0, count_11=400.0)}, kinetics(N),
         "error", "the series is flat"),
    case("kinetics-step", {"n.csv": counts(count=100.0, count_0=300.0)}, kinetics(N), "error",
         "first interval"),
    case("kinetics-product-no-dark", {"n.csv": counts()}, kinetics(N, *PRODUCT), "error",
         "first-order-to-product"),
    case("kinetics-product-unknown", {"n.csv": counts(dark=True)},
         kinetics(N, *PRODUCT, "--product", "N2H+"), "error", "N2H+"),
    case("kinetics-model-unknown", {"n.csv": counts()}, kinetics(N, "--model", "second"),
         "usage"),
    case("kinetics-output-is-folder", {"n.csv": counts(), "k.csv": folder}, kinetics(N),
         "error", "k.csv"),
    # --- demo (its one input check that comes before the simulation)
    case("demo-output-is-file", {"demo": text("x")}, ["demo", "-o", "{d}/demo"], "error",
         "demo"),
    # --- match (trap, species and files refused before the network or the MD)
    case("match-unstable-v-rf", A, match("--v-rf", "5000"), "error", "v_rf"),
    case("match-no-axial-confinement", A, match("--v-end", "-1"), "error", "v_end"),
    case("match-nan-v-rf", A, match("--v-rf", "nan"), "error", "v_rf"),
    case("match-negative-eta", A, match("--eta", "-0.2"), "error", "eta"),
    case("match-inf-rf", A, match("--rf-mhz", "inf"), "error", "rf_mhz"),
    case("match-no-trap", A, ["match", TIF, "-o", "{d}/m.csv"], "error", "--v-rf"),
    case("match-trap-info-and-flags", {"t.info": text("trap {}\n")},
         match("--trap-info", "{d}/t.info"), "error", "--trap-info"),
    case("match-dark-laser-cooled", A, match("--dark", "Ca+"), "error", "Ca+"),
    case("match-dark-unknown", A, match("--dark", "Xx+"), "error", "Xx+"),
    case("match-frames-outside", A, match("--frames", "7-9"), "error", "--frames"),
    case("match-frames-text", A, match("--frames", "first"), "error", "--frames"),
    case("match-seeds-zero", A, match("--seeds", "0"), "error", "seeds"),
    case("match-temperature-negative", A, match("--temperature-mk", "-1"), "error",
         "--temperature-mk"),
    case("match-missing-stack", {}, match(stack="{d}/missing.tif"), "error", "missing.tif"),
    case("match-output-tiff", A, ["match", TIF, "-o", "{d}/m.tif", "--v-rf", "200",
                                  "--v-end", "2.3", "--eta", "0.244"], "error", "output"),
]
# fmt: on


# --- the tiny data-set store of the dataset/train/evaluate cases -------------------------------


def fake_simulate(
    trap: Mapping[str, Any],
    ions: Sequence[tuple[str, int]],
    simulation: Mapping[str, Any],
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """No MD: ``n`` ions at the origin, all fluorescing (the render places them)."""
    n = sum(c for _, c in ions)
    return np.zeros((1, n, 3)), np.ones(n, bool)


def fake_render(
    samples: np.ndarray,
    fluorescing: np.ndarray,
    imaging: Mapping[str, Any],
    rng: np.random.Generator,
) -> np.ndarray:
    """The crystal image of ``crystal`` at the spec's shape."""
    rows, cols = imaging["shape"]
    return crystal(1, rows, cols)[0].astype(np.float32) + rng.normal(0, 1, (rows, cols))


STORE_SPEC = {
    "name": "corpus",
    "seed": 0,
    "imaging": {"shape": [64, 96], "pixel_size_um": 2.0},
    "parameters": {
        "n_ions": [20, 30, 40],
        "v_rf": [190, 210],
        "v_end": [2.0],
        "eta": 0.244,
        "seeds": [1, 2, 3, 4],
    },
    "renders": {"focal_offset_um": [0]},
    "store": {"chunk": 8},
}


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 24-image store (``dataset.generate`` with the stand-ins above) of 64 x 96 frames."""
    from distributed import Client, LocalCluster

    from ccount_core.dataset import generate as generate_store

    path = tmp_path_factory.mktemp("store") / "tiny.zarr"
    cluster = LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
    )
    with Client(cluster) as client:
        generate_store(
            STORE_SPEC, path, client=client, simulate_fn=fake_simulate, render_fn=fake_render
        )
    cluster.close()
    return path


# --- the runner -----------------------------------------------------------------------------


def run_case(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``(exit status, stdout, stderr)`` of ``main(argv)``, argparse's exits included."""
    try:
        rc = main(argv)
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else 1
    out = capsys.readouterr()
    return rc, out.out, out.err


def csv_warnings(path: Path) -> list[str]:
    """The ``warning`` column of a counts CSV (``ccount_core.nn.counts_file``)."""
    with path.open(newline="") as fh:
        rows = csv.DictReader(line for line in fh if not line.startswith("#"))
        return [r.get("warning") or "" for r in rows]


def output_of(argv: list[str]) -> Path | None:
    for flag in ("-o", "--output"):
        if flag in argv:
            return Path(argv[len(argv) - 1 - argv[::-1].index(flag) + 1])
    return None


def check_outcome(
    expect: str, name: str, rc: int, out: str, err: str, output: Path | None, existed: bool
) -> None:
    """Assert the class of one outcome (module docstring)."""
    assert "Traceback" not in out + err, err
    if expect == "usage":
        assert rc == 2 and "usage:" in err, (rc, err)
        return
    if expect == "error":
        lines = err.splitlines()
        assert rc != 0 and len(lines) == 1, (rc, err)
        assert lines[0].startswith("ccount: error: ") and name in lines[0], lines[0]
        assert existed or output is None or not output.exists(), f"{output} left behind"
        return
    assert rc == 0, err
    warnings = [w for w in err.splitlines() if "warning" in w.lower()]
    if output is not None and output.suffix == ".csv" and output.is_file():
        warnings += [w for w in csv_warnings(output) if w]
    if expect == "ok":
        assert not warnings, warnings
    else:
        assert expect == "warning" and warnings and all(name in w for w in warnings), warnings


@pytest.fixture
def no_progress_bars(monkeypatch: pytest.MonkeyPatch) -> None:
    """tqdm bars off (``ccount_core.progress.tqdm_progress``): stderr holds only messages."""
    import tqdm.auto

    monkeypatch.setattr(tqdm.auto, "tqdm", functools.partial(tqdm.auto.tqdm, disable=True))


@pytest.mark.usefixtures("no_progress_bars")
@pytest.mark.parametrize(("files", "argv", "expect", "name"), CASES)
def test_bad_input(
    files: dict[str, Maker],
    argv: list[str],
    expect: str,
    name: str,
    tmp_path: Path,
    model_file: Path,
    request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """One corpus case gives its class of outcome, never a traceback."""
    inputs = Inputs(model_file)
    for rel, make in files.items():
        make(tmp_path / rel, inputs)
    fill = {"d": str(tmp_path), "model": str(model_file)}
    if any("{store}" in a for a in argv):
        fill["store"] = str(request.getfixturevalue("tiny_store"))
    argv = [a.format(**fill) for a in argv]
    output = output_of(argv)
    existed = output is not None and output.exists()
    rc, out, err = run_case(argv, capsys)
    check_outcome(expect, name, rc, out, err, output, existed)


def test_corpus_is_large_and_ids_are_unique() -> None:
    """The corpus keeps its breadth: every subcommand, ~150 cases, no id twice."""
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)) and len(ids) >= 140
    commands = {c.values[1][0] if c.values[1] else "" for c in CASES}
    assert {"count", "simulate", "dataset", "train", "evaluate", "demo", "kinetics"} <= commands
