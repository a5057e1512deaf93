"""Data-set specs: parse and check a YAML/TOML spec, expand it into MD runs and rendered rows.

A spec names the trap geometry, the counted (laser-cooled) species and any dark species, the
simulation and imaging settings, the parameter space (a grid, or random draws over ranges) and
how many images each molecular-dynamics (MD) run yields. :func:`plan` turns it into a
:class:`Plan`: the list of distinct MD runs (:class:`MdPoint`) and the render variants applied to
every run; row ``i`` of the store is MD run ``i // n_renders``, render ``i % n_renders``.

The split of a sample is the paper's rule (section II A) on a *stable* hash: sha256 of a
canonical string of the MD run's physical parameters (:func:`canonical_key`), taken modulo 7:
0 → validation, 1 → test, otherwise training. The render index is not part of the key, so every
image rendered from one MD run lands in the same split. See docs/DATASET.md for the format.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ccount_core.checks import check_number
from ccount_core.errors import InputError

SPLIT_NAMES = ("train", "validation", "test")
"""Codes of the ``split`` column: 0 train, 1 validation, 2 test."""
SPLIT_CODES = {name: code for code, name in enumerate(SPLIT_NAMES)}
KEY_VERSION = "ccount-key-1"
"""Prefix of the canonical key; changing the key format must change this string."""

_TOP_KEYS = {
    "name",
    "seed",
    "trap",
    "species",
    "simulation",
    "imaging",
    "renders",
    "parameters",
    "store",
    "split",
    "camera_effects",
}
_TRAP_KEYS = {"r0_um", "z0_um", "rf_mhz"}
_PARAM_KEYS = {"sampling", "n_samples", "n_ions", "v_rf", "v_end", "eta", "seeds"}
_RENDER_AXES = ("focal_offset_um", "blur_um", "dof_um", "rotation_deg", "pixel_size_um")
_RENDER_KEYS = {*_RENDER_AXES, "noise_draws"}
_STORE_KEYS = {"chunk", "dtype", "order", "compression_level"}
_SPLIT_KEYS = {"exclude"}
_HASH_PARAMS = ("counts", "v_rf", "v_end", "eta", "seed")
_CAMERA_FIELDS = ("photons_per_ion", "background", "em_gain", "read_noise", "offset", "bit_depth")
_MAX_ROWS = 50_000_000


@dataclass(frozen=True, slots=True)
class MdPoint:
    """One molecular-dynamics run: the physical parameters of a sample (lab units).

    ``counts``: ((species name, ion number), ...), the counted species first, then the dark
    species in spec order (zero counts kept, so every point has the same species).
    ``v_rf``, ``v_end``: RF amplitude and endcap voltage, V. ``eta``: endcap geometry factor.
    ``seed``: the MD seed.
    """

    counts: tuple[tuple[str, int], ...]
    v_rf: float
    v_end: float
    eta: float
    seed: int


@dataclass(frozen=True)
class Plan:
    """A spec expanded: the MD runs in store order and the render variants of each run.

    ``renders``: one dict per image of a run, the imaging settings in lab units (keys of
    ``ImagingSettings.to_lab_units``) plus ``noise_draw`` (int). ``duplicates``: how many
    repeated MD points the expansion dropped. ``keys``: each run's split key
    (:func:`canonical_key` without the parameters in ``split.exclude``).
    """

    spec: dict[str, Any] = field(repr=False)
    points: tuple[MdPoint, ...] = field(repr=False)
    renders: tuple[dict[str, Any], ...]
    label_names: tuple[str, ...]
    duplicates: int = 0
    keys: tuple[str, ...] = field(default=(), repr=False)

    @property
    def n_renders(self) -> int:
        """Images per MD run."""
        return len(self.renders)

    @property
    def n_rows(self) -> int:
        """Images in the whole data set."""
        return len(self.points) * len(self.renders)

    @property
    def image_shape(self) -> tuple[int, int]:
        """(rows, cols) of every image."""
        rows, cols = self.renders[0]["shape"]
        return int(rows), int(cols)


# ----------------------------------------------------------------------------------- loading


SHIPPED_SPECS = Path(__file__).resolve().parents[1] / "specs"
"""Example specs installed with ccount (``paper_grid.yaml``, ``small.yaml``)."""


def load_spec(path: str | Path) -> dict[str, Any]:
    """Read a YAML (``.yaml``/``.yml``) or TOML (``.toml``) spec file and check it.

    ``path`` may also name a shipped spec without its suffix (``small``, ``paper_grid``), even
    where a folder of that name (say the store's own) sits in the working directory.
    Returns the normalised spec (:func:`normalise_spec`): defaults filled in, numbers as
    numbers, so that two files meaning the same thing give equal dicts.
    """
    p = Path(path)
    if not p.is_file() and (SHIPPED_SPECS / f"{path}.yaml").is_file():
        p = SHIPPED_SPECS / f"{path}.yaml"
    if not p.is_file():
        shipped = ", ".join(sorted(f.stem for f in SHIPPED_SPECS.glob("*.yaml")))
        raise InputError(f"spec: no such file: {p} (shipped specs: {shipped})")
    text = p.read_text(encoding="utf-8")
    try:
        if p.suffix.lower() == ".toml":
            data = tomllib.loads(text)
        else:
            data = yaml.safe_load(text)
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
        raise InputError(
            f"spec {p.name}: not valid {p.suffix[1:] or 'YAML'}: {' '.join(str(exc).split())}"
        ) from None
    return normalise_spec(data)


def normalise_spec(data: Any) -> dict[str, Any]:
    """Check a spec mapping and fill in defaults; every problem is a one-line InputError."""
    if not isinstance(data, Mapping):
        raise InputError("spec: the top level must be a mapping of sections")
    _unknown(data, _TOP_KEYS, "spec")
    spec: dict[str, Any] = {
        "name": str(data.get("name", "dataset")),
        "seed": _int(data.get("seed", 0), "seed", minimum=0),
    }
    trap = _mapping(data.get("trap", {}), "trap")
    _unknown(trap, _TRAP_KEYS, "trap")
    spec["trap"] = {
        "r0_um": check_number("trap.r0_um", trap.get("r0_um", 3500.0), positive=True),
        "z0_um": check_number("trap.z0_um", trap.get("z0_um", 2750.0), positive=True),
        "rf_mhz": check_number("trap.rf_mhz", trap.get("rf_mhz", 3.85), positive=True),
    }
    params = _mapping(data.get("parameters"), "parameters")
    _unknown(params, _PARAM_KEYS, "parameters")
    sampling = params.get("sampling", "grid")
    if sampling not in ("grid", "random"):
        raise InputError(f"parameters.sampling must be 'grid' or 'random', got {sampling!r}")
    spec["species"] = _species(data.get("species", {}), sampling)
    spec["simulation"] = dict(_mapping(data.get("simulation", {}), "simulation"))
    spec["imaging"] = _imaging(data.get("imaging", {}))
    spec["renders"] = _renders(data.get("renders", {}))
    if (
        spec["renders"]["noise_draws"] > 1
        and spec["imaging"].get("camera") is None
        and "camera_effects" not in data
    ):
        raise InputError(
            "renders.noise_draws > 1 needs imaging.camera or camera_effects (without "
            "them the image has nothing to draw)"
        )
    spec["parameters"] = _parameters(params, sampling)
    spec["store"] = _store(data.get("store", {}))
    split = _mapping(data.get("split", {}), "split")
    _unknown(split, _SPLIT_KEYS, "split")
    exclude = split.get("exclude", [])
    if not isinstance(exclude, list) or any(e not in _HASH_PARAMS for e in exclude):
        raise InputError(
            f"split.exclude must be a list drawn from {list(_HASH_PARAMS)}, got {exclude!r}"
        )
    spec["split"] = {"exclude": sorted(set(exclude))}
    if "camera_effects" in data:  # absent stays absent: earlier specs keep their digests
        spec["camera_effects"] = _camera_effects(data["camera_effects"], spec["imaging"])
    return json.loads(json.dumps(spec))  # plain JSON types only (tuples → lists)


def _species(raw: Any, sampling: str) -> dict[str, Any]:
    sp = _mapping(raw, "species")
    _unknown(sp, {"cooled", "dark", "n_ions"}, "species")
    cooled = sp.get("cooled", "Ca+")
    n_ions = sp.get("n_ions", "cooled")
    if n_ions not in ("cooled", "total"):
        raise InputError(f"species.n_ions must be 'cooled' or 'total', got {n_ions!r}")
    if not isinstance(cooled, str) or not cooled:
        raise InputError(f"species.cooled must be a species name, got {cooled!r}")
    dark_raw = _mapping(sp.get("dark", {}) or {}, "species.dark")
    dark = {}
    for name, how in dark_raw.items():
        key = f"species.dark.{name}"
        if name == cooled:
            raise InputError(f"{key}: the counted species cannot also be dark")
        how = _mapping(how, key)
        if len(how) != 1 or next(iter(how)) not in ("number", "fraction"):
            raise InputError(f"{key} must have exactly one of 'number' or 'fraction'")
        kind, axis = next(iter(how.items()))
        if kind == "number":
            dark[str(name)] = {
                "number": _axis(axis, f"{key}.number", sampling, integer=True, minimum=0)
            }
        else:
            dark[str(name)] = {
                "fraction": _axis(axis, f"{key}.fraction", sampling, minimum=0.0, below=1.0)
            }
    fractions = [_axis_max(d["fraction"]) for d in dark.values() if "fraction" in d]
    if sum(fractions) >= 1.0:
        raise InputError("species.dark: the largest fractions add up to 1 or more")
    if n_ions == "cooled":  # the default stays out, so earlier specs keep their digests
        return {"cooled": cooled, "dark": dark}
    if any("number" in d for d in dark.values()):
        raise InputError("species.n_ions: 'total' needs every dark species given by fraction")
    return {"cooled": cooled, "dark": dark, "n_ions": "total"}


def _imaging(raw: Any) -> dict[str, Any]:
    """The imaging section as written (checked by ``ImagingSettings.from_dict``).

    It is kept as written rather than filled with the renderer's defaults, so that a store
    made before the renderer gained a setting still matches its spec on resume.
    """
    im = dict(_mapping(raw, "imaging"))
    resolve_imaging(im, "imaging")
    return im


def resolve_imaging(imaging: Mapping[str, Any], where: str = "imaging") -> dict[str, Any]:
    """Imaging settings in lab units with the renderer's defaults filled in."""
    from ccount_core.simulation.render import ImagingSettings

    try:
        return ImagingSettings.from_dict(dict(imaging)).to_lab_units()
    except (InputError, TypeError) as exc:
        raise InputError(f"{where}: {' '.join(str(exc).split())}") from None


def _camera_effects(raw: Any, imaging: Mapping[str, Any]) -> dict[str, Any]:
    """The ``camera_effects`` section: each key of ``CameraEffects.from_lab_units`` (and, under
    ``camera``, a ``CameraModel`` field) as a value, a list to pick from or a ``{min, max}``
    range, drawn anew for every image (:func:`draw_camera_effects`)."""
    from ccount_core.simulation.camera import EFFECT_KEYS

    section = _mapping(raw, "camera_effects")
    _unknown(section, {*EFFECT_KEYS, "camera"}, "camera_effects")
    out: dict[str, Any] = {}
    for name, axis in section.items():
        if name == "camera":
            continue
        key = f"camera_effects.{name}"
        if name == "laser_along_axis":
            values = axis if isinstance(axis, list) else [axis]
            if not values or any(not isinstance(v, bool) for v in values):
                raise InputError(f"{key} must be true, false or a list of them, got {axis!r}")
            out[name] = {"values": values}
        else:
            out[name] = _axis(axis, key, "random")
    camera = _mapping(section.get("camera", {}), "camera_effects.camera")
    _unknown(camera, set(_CAMERA_FIELDS), "camera_effects.camera")
    if camera and imaging.get("camera") is None:
        raise InputError("camera_effects.camera needs imaging.camera (the camera it changes)")
    if camera:
        out["camera"] = {
            name: _axis(
                axis, f"camera_effects.camera.{name}", "random", integer=name == "bit_depth"
            )
            for name, axis in camera.items()
        }
    # one draw at each end of every range must be valid settings, and every combination of
    # the camera's ends must leave the lowest exposure room above the offset
    for pick in (min, max):
        try:
            effects_from_draw({k: pick(_axis_ends(a)) for k, a in out.items() if k != "camera"})
        except InputError as exc:
            raise InputError(f"camera_effects: {' '.join(str(exc).split())}") from None
    if camera:
        from ccount_core.simulation.camera import exposure_room
        from ccount_core.simulation.render import ImagingSettings

        exposure = min(_axis_ends(out["exposure"])) if "exposure" in out else None
        names = list(out["camera"])
        for combo in itertools.product(*(_axis_ends(out["camera"][n]) for n in names)):
            drawn = dict(zip(names, combo, strict=True))
            settings = {**imaging, "camera": {**imaging["camera"], **drawn}}
            try:
                cam = ImagingSettings.from_dict(resolve_imaging(settings)).camera
                if exposure is not None:
                    exposure_room(cam, exposure)
            except InputError as exc:
                raise InputError(f"camera_effects: {' '.join(str(exc).split())}") from None
    return out


def _axis_ends(axis: Mapping[str, Any]) -> list[Any]:
    return [axis["min"], axis["max"]] if "min" in axis else list(axis["values"])


def effects_from_draw(draw: Mapping[str, Any]) -> Any:
    """``CameraEffects`` from one draw of the ``camera_effects`` section (lab units)."""
    from ccount_core.simulation.camera import CameraEffects

    return CameraEffects.from_lab_units({k: v for k, v in draw.items() if k != "camera"})


def draw_camera_effects(section: Mapping[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """One image's values of a normalised ``camera_effects`` section, drawn with ``rng``
    (uniform in a ``{min, max}`` range, a uniform pick from a list), keys in a fixed order."""
    out: dict[str, Any] = {}
    for name in sorted(section):
        if name == "camera":
            out[name] = draw_camera_effects(section[name], rng)
            continue
        axis = section[name]
        integer = name == "bit_depth"
        out[name] = _draw(axis, 1, integer, rng)[0]
    return out


def _renders(raw: Any) -> dict[str, Any]:
    r = _mapping(raw, "renders")
    _unknown(r, _RENDER_KEYS, "renders")
    out: dict[str, Any] = {}
    for name in _RENDER_AXES:
        if name in r:
            values = r[name] if isinstance(r[name], list) else [r[name]]
            if not values:
                raise InputError(f"renders.{name} must not be empty")
            out[name] = [check_number(f"renders.{name}", v) for v in values]
    out["noise_draws"] = _int(r.get("noise_draws", 1), "renders.noise_draws", minimum=1)
    return out


def _store(raw: Any) -> dict[str, Any]:
    s = _mapping(raw, "store")
    _unknown(s, _STORE_KEYS, "store")
    dtype = s.get("dtype", "float32")
    if dtype not in ("float32", "uint16"):
        raise InputError(f"store.dtype must be 'float32' or 'uint16', got {dtype!r}")
    order = s.get("order", "shuffled")
    if order not in ("shuffled", "grid"):
        raise InputError(f"store.order must be 'shuffled' or 'grid', got {order!r}")
    return {
        "chunk": _int(s.get("chunk", 32), "store.chunk", minimum=1),
        "dtype": dtype,
        "order": order,
        "compression_level": _int(
            s.get("compression_level", 3), "store.compression_level", minimum=0
        ),
    }


def _parameters(p: Mapping[str, Any], sampling: str) -> dict[str, Any]:
    out: dict[str, Any] = {"sampling": sampling}
    if sampling == "random":
        out["n_samples"] = _int(p.get("n_samples"), "parameters.n_samples", minimum=1)
    elif "n_samples" in p:
        raise InputError("parameters.n_samples is only for sampling: random")
    for name in ("n_ions", "v_rf", "v_end", "eta"):
        if name not in p:
            raise InputError(f"parameters.{name} is missing")
    out["n_ions"] = _axis(p["n_ions"], "parameters.n_ions", sampling, integer=True, minimum=1)
    out["v_rf"] = _axis(p["v_rf"], "parameters.v_rf", sampling, minimum=0.0)
    out["v_end"] = _axis(p["v_end"], "parameters.v_end", sampling)
    out["eta"] = _axis(p["eta"], "parameters.eta", sampling, minimum=0.0)
    seeds = p.get("seeds", [1])
    seeds = seeds if isinstance(seeds, list) else [seeds]
    if not seeds:
        raise InputError("parameters.seeds must not be empty")
    out["seeds"] = [_int(s, "parameters.seeds", minimum=0) for s in seeds]
    if len(set(out["seeds"])) != len(out["seeds"]):
        raise InputError("parameters.seeds has repeated values")
    return out


def _axis(
    raw: Any,
    key: str,
    sampling: str,
    *,
    integer: bool = False,
    minimum: float | None = None,
    below: float | None = None,
) -> dict[str, Any]:
    """One swept parameter: ``{"values": [...]}`` or (random only) ``{"min": a, "max": b}``."""

    def num(v: Any) -> float | int:
        x = _int(v, key) if integer else check_number(key, v)
        if minimum is not None and x < minimum:
            raise InputError(f"{key} must be >= {minimum}, got {x!r}")
        if below is not None and x >= below:
            raise InputError(f"{key} must be < {below}, got {x!r}")
        return x

    if isinstance(raw, Mapping):
        keys = set(raw)
        if keys == {"start", "stop", "step"}:
            start, stop, step = (
                check_number(f"{key}.{k}", raw[k]) for k in ("start", "stop", "step")
            )
            if step <= 0 or stop < start:
                raise InputError(f"{key}: need step > 0 and stop >= start")
            n = math.floor((stop - start) / step + 1e-9) + 1
            if n > _MAX_ROWS:
                raise InputError(f"{key}: range has too many values ({n})")
            return {"values": [num(_tidy(start + i * step)) for i in range(n)]}
        if keys == {"min", "max"}:
            if sampling != "random":
                raise InputError(
                    f"{key}: min/max ranges need sampling: random "
                    "(a grid takes a list or start/stop/step)"
                )
            lo, hi = num(raw["min"]), num(raw["max"])
            if hi < lo:
                raise InputError(f"{key}: max < min")
            return {"min": lo, "max": hi}
        raise InputError(
            f"{key} must be a number, a list, {{start, stop, step}} or "
            f"{{min, max}}, got keys {sorted(keys)}"
        )
    values = raw if isinstance(raw, list) else [raw]
    if not values:
        raise InputError(f"{key} must not be empty")
    return {"values": [num(v) for v in values]}


def _axis_max(axis: Mapping[str, Any]) -> float:
    return float(axis["max"]) if "max" in axis else float(max(axis["values"]))


# ----------------------------------------------------------------------------------- expansion


def plan(spec: Mapping[str, Any]) -> Plan:
    """Expand a normalised spec into MD runs (store order) and render variants.

    Grid: the product n_ions × each dark axis × v_rf × v_end × eta × seeds. Random:
    ``n_samples`` points drawn with ``numpy.random.default_rng(spec["seed"])``, each with every
    seed. Repeated points are dropped (first kept). With ``store.order: shuffled`` (default)
    the runs are stored in a seeded random order, so a part-finished store covers the whole
    space evenly.
    """
    params = spec["parameters"]
    dark = spec["species"]["dark"]
    cooled = spec["species"]["cooled"]
    total_given = spec["species"].get("n_ions") == "total"
    rng = np.random.default_rng(spec["seed"])
    names = ["n_ions", *(f"dark:{d}" for d in dark), "v_rf", "v_end", "eta"]
    axes = [
        params["n_ions"],
        *(next(iter(d.values())) for d in dark.values()),
        params["v_rf"],
        params["v_end"],
        params["eta"],
    ]
    integer = [True, *("number" in d for d in dark.values()), False, False, False]
    if params["sampling"] == "grid":
        n_combos = math.prod(len(a["values"]) for a in axes) * len(params["seeds"])
        if n_combos > _MAX_ROWS:
            raise InputError(f"parameters: the grid has {n_combos} points, more than {_MAX_ROWS}")
        combos: Sequence[tuple[Any, ...]] = list(itertools.product(*(a["values"] for a in axes)))
    else:
        columns = [
            _draw(a, params["n_samples"], integ, rng)
            for a, integ in zip(axes, integer, strict=True)
        ]
        combos = list(zip(*columns, strict=True))
    points: list[MdPoint] = []
    keys: list[str] = []
    seen: set[str] = set()
    duplicates = 0
    exclude = spec["split"]["exclude"]
    for combo in combos:
        values = dict(zip(names, combo, strict=True))
        counts = _counts(cooled, dark, values, total_given)
        v_rf, v_end, eta = float(values["v_rf"]), float(values["v_end"]), float(values["eta"])
        base = _key_base(counts, v_rf, v_end, eta, ())
        base_split = _key_base(counts, v_rf, v_end, eta, exclude) if exclude else base
        for seed in params["seeds"]:
            full = f"{base}|seed={seed}"
            if full in seen:
                duplicates += 1
                continue
            seen.add(full)
            points.append(MdPoint(counts, v_rf, v_end, eta, int(seed)))
            keys.append(base_split if "seed" in exclude else f"{base_split}|seed={seed}")
    if spec["store"]["order"] == "shuffled":
        order = np.random.default_rng([spec["seed"], 1]).permutation(len(points))
        points = [points[i] for i in order]
        keys = [keys[i] for i in order]
    renders = render_variants(spec)
    if len(points) * len(renders) > _MAX_ROWS:
        raise InputError(f"spec: {len(points) * len(renders)} images, more than {_MAX_ROWS}")
    return Plan(dict(spec), tuple(points), tuple(renders), (cooled, *dark), duplicates, tuple(keys))


def _draw(axis: Mapping[str, Any], n: int, integer: bool, rng: np.random.Generator) -> list[Any]:
    if "values" in axis:
        return [axis["values"][i] for i in rng.integers(0, len(axis["values"]), n)]
    if integer:
        return [int(v) for v in rng.integers(axis["min"], axis["max"] + 1, n)]
    return [_tidy(v) for v in rng.uniform(axis["min"], axis["max"], n)]


def _counts(
    cooled: str, dark: Mapping[str, Any], values: Mapping[str, Any], total_given: bool = False
) -> tuple[tuple[str, int], ...]:
    """Ion numbers per species; a dark ``fraction`` is that species' share of the crystal.

    ``total_given``: ``n_ions`` is the whole crystal (every dark species by fraction, rounded
    down, so at least one cooled ion is left); otherwise it is the cooled number.
    """
    if total_given:
        total = int(values["n_ions"])
        # the epsilon keeps a share like 0.29 of 100 ions (28.999999999999996) at 29
        dark_n = [(d, math.floor(float(values[f"dark:{d}"]) * total + 1e-9)) for d in dark]
        return ((cooled, total - sum(n for _, n in dark_n)), *dark_n)
    n_cooled = int(values["n_ions"])
    numbers = {d: int(values[f"dark:{d}"]) for d, how in dark.items() if "number" in how}
    fractions = {d: float(values[f"dark:{d}"]) for d, how in dark.items() if "fraction" in how}
    total = (n_cooled + sum(numbers.values())) / (1.0 - sum(fractions.values()))
    counts = [(cooled, n_cooled)]
    for d in dark:
        n = numbers[d] if d in numbers else round(fractions[d] * total)
        counts.append((d, int(n)))
    return tuple(counts)


def render_variants(spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Imaging of each image of an MD run: the spec's imaging with the render axes applied,
    resolved to full lab-unit settings, plus ``noise_draw``."""
    base = spec["imaging"]
    r = spec["renders"]
    axes = [(k, r[k]) for k in _RENDER_AXES if k in r]
    out = []
    for combo in itertools.product(*(v for _, v in axes)):
        variant = resolve_imaging(
            {**base, **dict(zip((k for k, _ in axes), combo, strict=True))}, "renders"
        )
        if "camera_effects" in spec:
            variant["camera_effects"] = spec["camera_effects"]
        for draw in range(r["noise_draws"]):
            out.append({**variant, "noise_draw": draw})
    return out


# ----------------------------------------------------------------------------------- hashing


def canonical_key(point: MdPoint, exclude: Sequence[str] = ()) -> str:
    """The canonical string of an MD run's physical parameters, the input of the split hash.

    Species with zero ions are left out (a pure Ca+ crystal has the same key in a mixed-species
    spec), floats are written with 10 significant digits, and ``exclude`` names parameters
    (from ``counts, v_rf, v_end, eta, seed``) left out, e.g. ``seed`` to keep every seed of a
    parameter point in one split.
    Example: ``ccount-key-1|Ca+=300|v_rf=200|v_end=2.3|eta=0.244|seed=1``.
    """
    key = _key_base(point.counts, point.v_rf, point.v_end, point.eta, exclude)
    return key if "seed" in exclude else f"{key}|seed={point.seed}"


def _key_base(
    counts: tuple[tuple[str, int], ...],
    v_rf: float,
    v_end: float,
    eta: float,
    exclude: Sequence[str],
) -> str:
    """The canonical key without the seed."""
    parts = [KEY_VERSION]
    if "counts" not in exclude:
        parts += [f"{name}={n}" for name, n in counts if n > 0]
    for name, value in (("v_rf", v_rf), ("v_end", v_end), ("eta", eta)):
        if name not in exclude:
            parts.append(f"{name}={_fmt(value)}")
    return "|".join(parts)


def stable_hash(key: str) -> int:
    """First 8 bytes of sha256(key) as an unsigned 64-bit integer: the same on every machine."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big")


def split_of(key_hash: int) -> str:
    """The paper's rule: hash % 7 == 0 → validation, 1 → test, otherwise train."""
    r = key_hash % 7
    return "validation" if r == 0 else "test" if r == 1 else "train"


def spec_digest(spec: Mapping[str, Any]) -> str:
    """sha256 of the spec's canonical JSON: equal specs give equal digests."""
    return hashlib.sha256(_canonical_json(spec).encode("utf-8")).hexdigest()


def first_difference(a: Any, b: Any, path: str = "") -> str | None:
    """Dotted name of the first key where two spec dicts differ, or None when equal."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        for k in sorted(set(a) | set(b)):
            sub = f"{path}.{k}" if path else str(k)
            if k not in a or k not in b:
                return sub
            diff = first_difference(a[k], b[k], sub)
            if diff:
                return diff
        return None
    return None if _canonical_json(a) == _canonical_json(b) else (path or "spec")


def _canonical_json(x: Any) -> str:
    return json.dumps(x, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


# ----------------------------------------------------------------------------------- helpers


def _fmt(x: float) -> str:
    return format(float(x), ".10g")


def _tidy(x: float) -> float:
    """Round away float noise from ranges and draws (12 significant digits)."""
    return float(format(float(x), ".12g"))


def _mapping(raw: Any, key: str) -> Mapping[str, Any]:
    if raw is None:
        raise InputError(f"{key} is missing")
    if not isinstance(raw, Mapping):
        raise InputError(f"{key} must be a mapping, got {type(raw).__name__}")
    return raw


def _unknown(m: Mapping[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(set(map(str, m)) - allowed)
    if extra:
        raise InputError(
            f"{where}: unknown key(s) {', '.join(extra)} (allowed: {', '.join(sorted(allowed))})"
        )


def _int(v: Any, key: str, minimum: int | None = None) -> int:
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int):
        raise InputError(f"{key} must be an integer, got {v!r}")
    if minimum is not None and v < minimum:
        raise InputError(f"{key} must be >= {minimum}, got {v!r}")
    return int(v)
