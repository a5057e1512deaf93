"""One preprocessing pipeline for experimental and simulated crystal images (paper III C-D).

Training, ``ccount count`` and the napari widgets all call :func:`prepare_frame` /
:func:`prepare_stack` with a saved :class:`PreprocessConfig`, so a model never sees images
prepared differently from its training set.

Steps, in this order (each optional through the config; each is also a public function:
:func:`fit_ellipse`, :func:`frame_transform`, :func:`background_plane`, :func:`resample`,
:func:`median_filter`, :func:`apply_mask`, :func:`enhance_outer_layer`,
:func:`normalize_brightness`; the pipeline fuses the last three in :func:`mask_and_enhance`):

1. check the frame and find the crystal's ellipse (:func:`fit_ellipse`, or the caller's);
   with ``symmetry_refine`` a fitted ellipse's centre and angle are then moved to where the
   frame best matches its mirror images (:mod:`ccount_core.image.symmetry`);
2. one affine resampling of the frame to the output grid: rotate the trap axis to
   **vertical** (along rows; the frame turns clockwise as displayed by 90° + the trap-axis
   angle, so a horizontal trap axis pointing right ends up pointing down), scale by
   ``camera_pixel_size_um / model_pixel_size_um``, and crop/pad so the crystal centre is the
   output centre; zero outside the camera frame; the physical scale is kept unless
   ``stretch_to_fit``. ``resampling``: ``"bilinear"`` (the shipped models') averages
   k x k input blocks when shrinking (k = floor(1 / zoom)) and takes one bilinear sample per
   output pixel, a blur of up to 1/4 px² that depends on where the crystal sits on the pixel
   grid (it moved a count by up to 3 %); ``"area"`` takes the mean of s x s bilinear samples
   spread over each output pixel's square (s = ceil(1 / zoom)) and, when shrinking, smooths
   by the 3-tap kernel [1, 10, 1] / 12 per axis, a filter that does not depend on the
   position or the angle (its variance, 1/6 px², is the bilinear blur's average);
   ``"bilinear-area"`` (the shipped default's) is ``"bilinear"`` where blocks are averaged
   (k >= 2) and ``"area"`` where the camera's pixels are coarser than half the model's.
   With ``canonical_turn`` the frame is then turned by 180° when needed so that the light's
   third moment along the trap axis is positive: a frame and its 180° turn prepare alike;
3. background subtraction (a constant or a plane fitted to the pixels outside the crystal),
   negative values set to zero;
4. median filter (5-point cross by default); with ``beam_reference``, a frame whose ion spots
   dim toward its outside more than evenly lit crystals' do (a cooling beam narrower than the
   crystal) is then evened out and noted (:mod:`ccount_core.image.beam`);
5. ellipse mask: zero outside the ellipse grown by ``mask_margin_um``;
6. outer-layer enhancement, eq. 2-3: I = I0 + A·I0·f², f = (x-h)²/a² + (y-k)²/b² in the
   rotated output frame (f = 1 on the crystal's outer shell);
7. brightness-density normalisation: scale so (sum of non-zero pixels) / (their number)
   equals ``brightness_density``.

Coordinates and the angle convention are those of :mod:`ccount_core.image.ellipse`: pixel centres
at integer ``(row, col)``, angles from the +column direction, counter-clockwise as displayed.

The trap axis in the input frame (``trap_axis``, a property of the recording, not of the
model; :func:`parse_trap_axis`, :func:`trap_axis_angle`): ``"auto"`` takes the fitted
ellipse's long axis (every crystal of the shipped models' training sets is prolate, longer
along the trap axis), so any in-plane angle is handled; ``"horizontal"``, ``"vertical"`` or
an angle (deg, counter-clockwise from the +column axis as displayed) takes the ellipse axis
nearest the stated one (an oblate crystal, wider than long, then keeps its true axis). A
round crystal (axis ratio < ``ROUND_RATIO``) keeps the stated angle (0 in auto mode): its
fitted angle means nothing. ``PreprocessConfig.rotation_deg``, when set, fixes the angle
exactly and overrides both.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numba as nb
import numpy as np
from scipy import ndimage as ndi

from ccount_core.checks import check_number
from ccount_core.errors import InputError
from ccount_core.image.beam import beam_note, flatten_beam
from ccount_core.image.ellipse import (
    Ellipse,
    as_float_frame,
    check_dtype,
    fit_ellipse,
    fit_float_frame,
    wrap_axis_angle,
)
from ccount_core.image.halo import halo_light, halo_note
from ccount_core.image.kernels import block_mean, median5, median5_at, robust_plane
from ccount_core.image.symmetry import refine_by_symmetry
from ccount_core.progress import ProgressCallback, report

__all__ = [
    "PIPELINE_VERSION",
    "Ellipse",
    "FrameTransform",
    "PreparedStack",
    "PreprocessConfig",
    "TrapAxis",
    "apply_mask",
    "background_plane",
    "enhance_outer_layer",
    "fit_crystal",
    "fit_ellipse",
    "fit_options",
    "frame_transform",
    "mask_and_enhance",
    "median_filter",
    "normalize_brightness",
    "parse_trap_axis",
    "prepare_frame",
    "prepare_stack",
    "resample",
    "trap_axis_angle",
    "turn_needed",
]

#: Bumped whenever the pipeline's arithmetic changes; recorded by ``to_dict``. A step added
#: as an option whose default keeps the arithmetic (``resampling``, ``canonical_turn``)
#: does not bump it: see :data:`_ADDED_FIELDS`.
PIPELINE_VERSION = 1
#: Crystals with semi_major / semi_minor below this count as round: the ellipse's angle is
#: not used and the trap axis is taken as the stated one (horizontal in auto mode).
ROUND_RATIO = 1.05
#: In auto mode a crystal with semi_major / semi_minor below this gets a note: its long
#: axis, taken as the trap axis, is ambiguous (the shipped training sets' crystals all have
#: ratios >= 1.25 in benchmarks/sigma_coverage.py's renders, ``input_ranges`` in default.json).
AMBIGUOUS_RATIO = 1.2
#: A stated trap axis further than this (deg) from the nearest ellipse axis gets a note.
AXIS_TOLERANCE_DEG = 15.0
#: The 3-tap smoothing after area resampling (variance 1/6 px², step 2 of the docstring).
_SMOOTH_3 = np.array([1.0, 10.0, 1.0], np.float32) / np.float32(12.0)

BackgroundMethod = Literal["none", "constant", "plane"]
Resampling = Literal["bilinear", "area", "bilinear-area"]
#: The trap axis in a recording: ``"auto"`` or an angle (deg, counter-clockwise from the
#: +column axis as displayed; ``"horizontal"`` = 0, ``"vertical"`` = 90 before parsing).
TrapAxis = Literal["auto"] | float
MedianShape = Literal["cross", "square"]


@dataclass(frozen=True)
class PreprocessConfig:
    """Settings of the preprocessing pipeline (frozen; serialisable; hashable).

    The fields follow the pipeline's steps: the output grid, background subtraction,
    rotation, the ellipse mask, the median filter, outer-layer enhancement, brightness
    normalisation and the zoom. Each field's unit and meaning are in its ``metadata``
    (``unit``: "" when none; ``help``), which the napari form shows.

    Equal configs compare equal and prepare equal frames identically. ``hash()`` follows
    Python's per-process string hashing; :meth:`fingerprint` is the stable identifier to
    store or compare across processes and machines.
    """

    model_pixel_size_um: float = field(
        default=3.0,
        metadata={
            "unit": "µm",
            "help": "size of one output pixel (µm/px) — the model's pixel size.",
        },
    )
    output_shape: tuple[int, int] = field(
        default=(320, 192),
        metadata={
            "unit": "px",
            "help": "output ``(rows, cols)`` (px); the trap axis runs along the rows.",
        },
    )
    background: BackgroundMethod = field(
        default="plane",
        metadata={
            "unit": "",
            "help": '``"none"``, ``"constant"`` (median of the pixels outside the crystal) or '
            '``"plane"`` (least-squares plane through them, for a gradient); after '
            "subtraction negative values are set to 0.",
        },
    )
    rotate: bool = field(
        default=True, metadata={"unit": "", "help": "turn the trap axis to vertical."}
    )
    resampling: Resampling = field(
        default="bilinear",
        metadata={
            "unit": "",
            "form": False,
            "help": '``"bilinear"`` (version 1: block means when shrinking, then one bilinear '
            'sample per pixel), ``"area"`` (the mean over each output pixel\'s square, then '
            "[1, 10, 1] / 12 smoothing: the same blur at any sub-pixel position and angle) or "
            '``"bilinear-area"`` (``"bilinear"`` where the camera\'s pixels are at most half '
            'the model\'s, so that blocks are averaged, as in training at 2 µm; ``"area"`` '
            "where they are coarser and shrinking would take one sample per pixel); set by the "
            "model's card, not in the form.",
        },
    )
    canonical_turn: bool = field(
        default=False,
        metadata={
            "unit": "",
            "form": False,
            "help": "turn the prepared frame by 180° when the third moment of its light along "
            "the trap axis is negative, so a frame and its 180° turn prepare alike (off in "
            "version 1); set by the model's card, not in the form.",
        },
    )
    symmetry_refine: bool = field(
        default=False,
        metadata={
            "unit": "",
            "form": False,
            "help": "move a fitted ellipse's centre and angle to where the frame best matches "
            "its mirror images about the crystal's axes (ccount_core.image.symmetry), so they "
            "turn with the camera (off in version 1); set by the model's card, not in the form.",
        },
    )
    fit_footprint: bool = field(
        default=False,
        metadata={
            "unit": "",
            "form": False,
            "help": "smooth the ellipse fit's radial shell profiles over each camera pixel "
            "(ccount_core.image.ellipse), so the fitted outline does not depend on the pixel "
            "size (off in version 1); set by the model's card, not in the form.",
        },
    )
    beam_reference: tuple[float, float] | None = field(
        default=None,
        metadata={
            "unit": "",
            "form": False,
            "help": "the log-envelope curvatures ``(along, across)`` of evenly lit crystals' ion "
            "spots in this pipeline's prepared frames; when set, a frame lit less toward its "
            "outside than that (a cooling beam narrower than the crystal) is evened out "
            "(ccount_core.image.beam; off in version 1); set by the model's card, not in the "
            "form.",
        },
    )
    beam_noise: float = field(
        default=0.0,
        metadata={
            "unit": "",
            "form": False,
            "help": "the pixel noise (dimensionless, ccount_core.image.preprocess.pixel_noise) at "
            "which half of a beam's shortfall is evened out, less in noisier frames (0 = all of "
            "it at any noise); set by the model's card, not in the form.",
        },
    )
    rotation_deg: float | None = field(
        default=None,
        metadata={
            "unit": "°",
            "form": False,
            "help": "trap-axis direction in the input frame (deg, counter-clockwise from +col as "
            "displayed), exactly; ``None`` = from the ellipse and the recording's trap_axis "
            "(see the module docstring).",
        },
    )
    mask: bool = field(
        default=True,
        metadata={"unit": "", "help": "set everything outside the (grown) ellipse to 0."},
    )
    mask_margin_um: float = field(
        default=10.0,
        metadata={
            "unit": "µm",
            "help": "growth of both semi-axes of the mask beyond the outer shell (µm), so the "
            "outer ions' spots are kept.",
        },
    )
    median_size: int = field(
        default=3,
        metadata={
            "unit": "px",
            "help": 'median filter size (px, odd); 0 or 1 = off; 3 with ``"cross"`` is the '
            "paper's 5-point median (footprint [[0,1,0],[1,1,1],[0,1,0]]).",
        },
    )
    median_shape: MedianShape = field(
        default="cross",
        metadata={"unit": "", "help": '``"cross"`` (plus-shaped footprint) or ``"square"``.'},
    )
    enhance_amplitude: float = field(
        default=0.0, metadata={"unit": "", "help": "A of eq. 2 (dimensionless); 0 = off."}
    )
    normalize: bool = field(
        default=True,
        metadata={
            "unit": "",
            "help": "scale the image so its brightness density equals the target.",
        },
    )
    brightness_density: float = field(
        default=1.0,
        metadata={
            "unit": "",
            "help": "target (sum of non-zero pixels)/(number of non-zero pixels), in output "
            "intensity units.",
        },
    )
    stretch_to_fit: bool = field(
        default=False,
        metadata={
            "unit": "",
            "help": "scale the crystal (and its mask margin) to fill the output, the same zoom "
            "along both axes: small crystals are seen at a finer scale. The count goes as "
            "(crystal size / ion spacing)³, a ratio a uniform zoom keeps; the physical "
            "scale is lost and ``camera_pixel_size_um`` only sets the margin (off by "
            "default).",
        },
    )

    def __post_init__(self) -> None:
        shape = self.output_shape
        if (
            not isinstance(shape, tuple | list)
            or len(shape) != 2
            or not all(isinstance(s, int | np.integer) and not isinstance(s, bool) for s in shape)
        ):
            raise InputError(f"output_shape: expected two integers (rows, cols), got {shape!r}")
        object.__setattr__(self, "output_shape", (int(shape[0]), int(shape[1])))
        if min(self.output_shape) < 16:
            raise InputError(f"output_shape: each side must be >= 16 px, got {self.output_shape}")
        for name in ("model_pixel_size_um", "brightness_density"):
            check_number(name, getattr(self, name), positive=True, numpy_scalars=True)
        for name in ("mask_margin_um", "enhance_amplitude", "beam_noise"):
            check_number(name, getattr(self, name), nonnegative=True, numpy_scalars=True)
        if self.background not in ("none", "constant", "plane"):
            raise InputError(
                f"background: must be 'none', 'constant' or 'plane', got {self.background!r}"
            )
        if self.median_shape not in ("cross", "square"):
            raise InputError(
                f"median_shape: must be 'cross' or 'square', got {self.median_shape!r}"
            )
        m = self.median_size
        if not (
            isinstance(m, int | np.integer)
            and not isinstance(m, bool)
            and m >= 0
            and (m <= 1 or m % 2 == 1)
        ):
            raise InputError(f"median_size: must be 0, 1 or an odd size >= 3 px, got {m!r}")
        object.__setattr__(self, "median_size", int(m))
        if self.rotation_deg is not None:
            check_number("rotation_deg", self.rotation_deg, numpy_scalars=True)
        if self.beam_reference is not None:
            ref = self.beam_reference
            if not isinstance(ref, tuple | list) or len(ref) != 2:
                raise InputError(f"beam_reference: expected two numbers or null, got {ref!r}")
            for c in ref:
                check_number("beam_reference", c, numpy_scalars=True)
            object.__setattr__(self, "beam_reference", (float(ref[0]), float(ref[1])))
        if self.resampling not in ("bilinear", "area", "bilinear-area"):
            raise InputError(
                "resampling: must be 'bilinear', 'area' or 'bilinear-area', got "
                f"{self.resampling!r}"
            )
        for name in (
            "rotate",
            "canonical_turn",
            "symmetry_refine",
            "fit_footprint",
            "mask",
            "normalize",
            "stretch_to_fit",
        ):
            if not isinstance(getattr(self, name), bool):
                raise InputError(f"{name}: must be true or false, got {getattr(self, name)!r}")
        for name in (
            "model_pixel_size_um",
            "mask_margin_um",
            "enhance_amplitude",
            "brightness_density",
            "beam_noise",
        ):
            object.__setattr__(self, name, float(getattr(self, name)))
        if self.rotation_deg is not None:
            object.__setattr__(self, "rotation_deg", float(self.rotation_deg))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict, with ``pipeline_version``; a field of :data:`_ADDED_FIELDS`
        at its default is left out, so a configuration written before it existed reads,
        compares and fingerprints as it did."""
        d = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.init and not (f.name in _ADDED_FIELDS and getattr(self, f.name) == f.default)
        }
        d["output_shape"] = list(self.output_shape)
        if self.beam_reference is not None:
            d["beam_reference"] = list(self.beam_reference)
        d["pipeline_version"] = PIPELINE_VERSION
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessConfig:
        """Inverse of :meth:`to_dict`; unknown keys or another pipeline version are refused."""
        if not isinstance(data, dict):
            raise InputError(f"preprocess config: expected a mapping, got {type(data).__name__}")
        d = dict(data)
        version = d.pop("pipeline_version", PIPELINE_VERSION)
        if version != PIPELINE_VERSION:
            raise InputError(
                f"preprocess config: pipeline_version {version} is not this "
                f"code's version {PIPELINE_VERSION}; images would differ"
            )
        names = {f.name for f in dataclasses.fields(cls) if f.init}
        unknown = sorted(set(d) - names)
        if unknown:
            raise InputError(f"preprocess config: unknown field(s) {', '.join(unknown)}")
        for key in ("output_shape", "beam_reference"):
            if isinstance(d.get(key), list):
                d[key] = tuple(d[key])
        return cls(**d)

    def to_json(self) -> str:
        """Canonical JSON (sorted keys): equal configs give equal strings."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> PreprocessConfig:
        """Inverse of :meth:`to_json`."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"preprocess config: not valid JSON ({exc})") from None
        return cls.from_dict(data)

    def fingerprint(self) -> str:
        """Stable 16-hex-digit SHA-256 of :meth:`to_json` (same on every machine and run)."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]


#: Options added after pipeline version 1 whose defaults prepare as version 1 did.
_ADDED_FIELDS = (
    "resampling",
    "canonical_turn",
    "symmetry_refine",
    "fit_footprint",
    "beam_reference",
    "beam_noise",
)


def _check_cfg(cfg: object) -> None:
    if not isinstance(cfg, PreprocessConfig):
        raise InputError(f"cfg: expected a PreprocessConfig, got {type(cfg).__name__}")


# -------------------------------------------------------------------------------- geometry


def parse_trap_axis(value: object, name: str = "trap_axis") -> TrapAxis:
    """``"auto"``, or the trap axis angle (deg, in (-90, 90]) from ``"horizontal"`` (0),
    ``"vertical"`` (90), or a number of degrees counter-clockwise from the +column axis as
    displayed (a number or its text; modulo 180). Anything else is an :class:`InputError`
    naming ``name``."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("auto", "horizontal", "vertical"):
            return {"auto": "auto", "horizontal": 0.0, "vertical": 90.0}[text]  # type: ignore[return-value]
        try:
            value = float(text.removesuffix("deg").removesuffix("°"))
        except ValueError:
            raise InputError(
                f"{name}: expected auto, horizontal, vertical or an angle in degrees, got {value!r}"
            ) from None
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise InputError(
            f"{name}: expected auto, horizontal, vertical or an angle in degrees, got {value!r}"
        )
    if not math.isfinite(float(value)):
        raise InputError(f"{name}: the angle must be a finite number of degrees, got {value}")
    return wrap_axis_angle(float(value))


def trap_axis_angle(ellipse: Ellipse, trap_axis: TrapAxis = "auto") -> tuple[float, str | None]:
    """``(angle, note)``: the trap axis direction in the input frame (deg, convention of
    :class:`Ellipse`) for a crystal with ``ellipse`` and a recording's ``trap_axis``
    (:func:`parse_trap_axis`), and a note (or None) when that choice is doubtful.

    ``"auto"``: the long axis (0 for a round crystal), with a note when the axis ratio is
    below ``AMBIGUOUS_RATIO``. An angle: the ellipse axis nearest it (the angle itself for a
    round crystal), with a note when that axis is over ``AXIS_TOLERANCE_DEG`` away.
    """
    ratio = ellipse.semi_major / ellipse.semi_minor
    round_crystal = ratio < ROUND_RATIO
    if trap_axis == "auto":
        if ratio < AMBIGUOUS_RATIO:
            note = (
                f"trap axis ambiguous: the crystal is nearly round (axis ratio {ratio:.2f}), "
                "so its long axis may not be the trap axis; give the trap axis "
                "(--trap-axis / the Trap axis field)"
            )
            return (0.0 if round_crystal else ellipse.angle_deg), note
        return ellipse.angle_deg, None
    stated = float(trap_axis)
    if round_crystal:
        return stated, None
    major, minor = ellipse.angle_deg, wrap_axis_angle(ellipse.angle_deg + 90.0)
    off_major = abs(wrap_axis_angle(major - stated))
    off_minor = abs(wrap_axis_angle(minor - stated))
    angle, off = (major, off_major) if off_major <= off_minor else (minor, off_minor)
    note = None
    if off > AXIS_TOLERANCE_DEG:
        note = (
            f"the crystal's axes are {off:.0f}° from the stated trap axis ({stated:g}°); "
            "check the trap axis given (--trap-axis / the Trap axis field)"
        )
    return angle, note


@dataclass(frozen=True)
class FrameTransform:
    """The affine map between a prepared (output) frame and its input frame.

    ``input = matrix @ (output - output_center) + input_center`` for ``(row, col)`` points
    (px). ``matrix`` is a rotation divided by ``zoom`` (output px per input px).

    Attributes:
        matrix: ``(2, 2)`` float64.
        input_center: crystal centre in the input frame ``(row, col)`` (px).
        output_center: ``((rows-1)/2, (cols-1)/2)`` of the output (px).
        zoom: output pixels per input pixel.
        output_ellipse: the crystal's ellipse in output pixels.
        trap_axis_deg: trap-axis direction in the input frame (deg, convention of Ellipse).
        margin_px: growth of the mask ellipse's semi-axes in output pixels (``mask_margin_um``
            at the frame's scale; 0 without a mask).
    """

    matrix: np.ndarray
    input_center: tuple[float, float]
    output_center: tuple[float, float]
    zoom: float
    output_ellipse: Ellipse
    trap_axis_deg: float
    margin_px: float

    def to_input(self, points: np.ndarray) -> np.ndarray:
        """Map ``(N, 2)`` output ``(row, col)`` points to input pixels."""
        p = np.asarray(points, dtype=np.float64) - np.asarray(self.output_center)
        return p @ self.matrix.T + np.asarray(self.input_center)

    def to_output(self, points: np.ndarray) -> np.ndarray:
        """Map ``(N, 2)`` input ``(row, col)`` points to output pixels."""
        p = np.asarray(points, dtype=np.float64) - np.asarray(self.input_center)
        return p @ np.linalg.inv(self.matrix).T + np.asarray(self.output_center)


def frame_transform(
    ellipse: Ellipse,
    cfg: PreprocessConfig,
    camera_pixel_size_um: float | None = None,
    trap_axis: TrapAxis = "auto",
) -> FrameTransform:
    """The input → output geometry for a crystal with ``ellipse`` (input px) under ``cfg``.

    ``camera_pixel_size_um`` (µm per input pixel; ``None`` = the model's pixel size, no
    resampling). ``trap_axis``: the recording's trap axis (:func:`trap_axis_angle`).
    Raises :class:`InputError` when the crystal (plus mask margin) does not fit the output
    and ``stretch_to_fit`` is off.
    """
    cam = cfg.model_pixel_size_um if camera_pixel_size_um is None else camera_pixel_size_um
    check_number("camera_pixel_size_um", cam, positive=True, numpy_scalars=True)
    zoom = float(cam) / cfg.model_pixel_size_um
    if cfg.rotation_deg is not None:
        trap = cfg.rotation_deg
    else:
        trap, _ = trap_axis_angle(ellipse, trap_axis)
    if cfg.rotate:
        t = math.radians(trap)
        # Columns: output row direction -> trap axis (-sin, cos); output col -> (-cos, -sin).
        rot = np.array([[-math.sin(t), -math.cos(t)], [math.cos(t), -math.sin(t)]])
    else:
        rot = np.eye(2)
    h, w = cfg.output_shape
    out_c = ((h - 1) / 2.0, (w - 1) / 2.0)
    margin_in = cfg.mask_margin_um / float(cam) if cfg.mask else 0.0  # input px
    d_out = rot.T @ np.array(ellipse.major_direction)
    angle_out = math.degrees(math.atan2(-d_out[0], d_out[1]))
    unit = Ellipse.from_axes(
        out_c[0], out_c[1], ellipse.semi_major, ellipse.semi_minor, angle_out, ellipse.quality
    )
    hr, hc = unit.half_extent()  # input px, in output orientation
    if cfg.stretch_to_fit:
        # The crystal and its margin (µm, at the camera's scale) fill the output.
        zoom = min((out_c[0] - 1.0) / (hr + margin_in), (out_c[1] - 1.0) / (hc + margin_in))
        margin_px = margin_in * zoom
    else:
        margin_px = cfg.mask_margin_um / cfg.model_pixel_size_um if cfg.mask else 0.0
    if hr * zoom + margin_px > out_c[0] or hc * zoom + margin_px > out_c[1]:
        size = (2 * hr * zoom * cfg.model_pixel_size_um, 2 * hc * zoom * cfg.model_pixel_size_um)
        field_um = (h * cfg.model_pixel_size_um, w * cfg.model_pixel_size_um)
        raise InputError(
            f"frame: the crystal ({size[0]:.0f} x {size[1]:.0f} µm with margin) does not fit "
            f"the output field ({field_um[0]:.0f} x {field_um[1]:.0f} µm); use a larger "
            "output_shape or model_pixel_size_um, check camera_pixel_size_um, or stretch_to_fit"
        )
    out_ell = Ellipse.from_axes(
        out_c[0],
        out_c[1],
        ellipse.semi_major * zoom,
        ellipse.semi_minor * zoom,
        angle_out,
        ellipse.quality,
    )
    return FrameTransform(
        rot / zoom,
        (ellipse.center_row, ellipse.center_col),
        out_c,
        zoom,
        out_ell,
        float(trap),
        margin_px,
    )


# -------------------------------------------------------------------------------- the steps


def resample(
    img: np.ndarray,
    tf: FrameTransform,
    output_shape: tuple[int, int],
    background: np.ndarray | None = None,
    method: Resampling = "bilinear",
) -> np.ndarray:
    """Resampling of ``img`` onto the output grid of ``tf``, minus a background.

    ``method`` (step 2 of the module docstring): ``"bilinear"``: when shrinking (zoom < 1)
    the input is first averaged in k x k blocks, k = floor(1/zoom), then each output pixel
    is one bilinear sample; ``"area"``: each output pixel is the mean of s x s bilinear
    samples spread evenly over its square, s = ceil(1 / zoom), smoothed by [1, 10, 1] / 12
    along each axis when shrinking; ``"bilinear-area"``: ``"area"`` when shrinking by less
    than 2 (no k x k block to average: camera pixels coarser than half the model's, which
    version 1 sampled once each and the shipped default then counted 3 % low), else
    ``"bilinear"``. ``background``: plane ``(p0, p_row, p_col)`` in input
    pixels to subtract (None = 0). Returns ``output_shape`` float32 with negative values
    and everything outside the input frame set to 0.
    """
    p = np.zeros(3) if background is None else np.asarray(background, dtype=np.float64)
    k = int(1.0 / tf.zoom + 1e-6) if tf.zoom < 1.0 else 1
    if method == "area" or (method == "bilinear-area" and k == 1 and tf.zoom < 1.0):
        return _resample_area(img, tf, output_shape, p)
    matrix = tf.matrix
    center = np.asarray(tf.input_center)
    if k > 1:
        img = block_mean(img, k)
        # Block i has its centre at input coordinate k*i + (k-1)/2.
        matrix = matrix / k
        center = (center - (k - 1) / 2.0) / k
        p = np.array([p[0] + (p[1] + p[2]) * (k - 1) / 2.0, p[1] * k, p[2] * k])
    offset = center - matrix @ np.asarray(tf.output_center)
    # The plane in output coordinates (exact: a plane stays a plane under an affine map).
    g = matrix.T @ p[1:]
    g0 = p[0] + p[1:] @ offset
    return _warp(
        np.ascontiguousarray(img, dtype=np.float32),
        matrix,
        offset,
        output_shape[0],
        output_shape[1],
        np.array([g0, g[0], g[1]]),
    )


@nb.njit(cache=True, nogil=True)
def _warp(img, matrix, offset, out_h, out_w, bg):  # pragma: no cover - numba
    """out[i, j] = max(0, bilinear(img, matrix @ (i, j) + offset) - bg plane), 0 outside."""
    h, w = img.shape
    out = np.zeros((out_h, out_w), dtype=np.float32)
    m00, m01, m10, m11 = matrix[0, 0], matrix[0, 1], matrix[1, 0], matrix[1, 1]
    for i in range(out_h):
        r = m00 * i + offset[0]
        c = m10 * i + offset[1]
        b = bg[0] + bg[1] * i
        for j in range(out_w):
            if r >= 0.0 and c >= 0.0 and r <= h - 1 and c <= w - 1:
                r0 = min(int(r), h - 2)
                c0 = min(int(c), w - 2)
                fr = r - r0
                fc = c - c0
                v = (
                    (1 - fr) * ((1 - fc) * img[r0, c0] + fc * img[r0, c0 + 1])
                    + fr * ((1 - fc) * img[r0 + 1, c0] + fc * img[r0 + 1, c0 + 1])
                ) - b
                if v > 0.0:
                    out[i, j] = v
            r += m01
            c += m11
            b += bg[2]
    return out


def _resample_area(
    img: np.ndarray, tf: FrameTransform, output_shape: tuple[int, int], p: np.ndarray
) -> np.ndarray:
    """:func:`resample` with ``method="area"``."""
    s = max(1, math.ceil(1.0 / tf.zoom - 1e-6))
    offset = np.asarray(tf.input_center) - tf.matrix @ np.asarray(tf.output_center)
    out = _warp_area(
        np.ascontiguousarray(img, dtype=np.float32),
        np.ascontiguousarray(tf.matrix, dtype=np.float64),
        offset,
        output_shape[0],
        output_shape[1],
        p,
        s,
    )
    if s > 1:
        out = ndi.correlate1d(out, _SMOOTH_3, axis=0, mode="constant")
        out = ndi.correlate1d(out, _SMOOTH_3, axis=1, mode="constant")
    return out


@nb.njit(cache=True, nogil=True)
def _warp_area(img, matrix, offset, out_h, out_w, bg, s):  # pragma: no cover - numba
    """out[i, j] = max(0, mean over an s x s grid of points in output pixel (i, j) of
    bilinear(img, matrix @ point + offset) - bg plane), points outside the frame counting 0."""
    h, w = img.shape
    out = np.zeros((out_h, out_w), dtype=np.float32)
    m00, m01, m10, m11 = matrix[0, 0], matrix[0, 1], matrix[1, 0], matrix[1, 1]
    inv = 1.0 / (s * s)
    for i in range(out_h):
        for j in range(out_w):
            acc = 0.0
            for p in range(s):
                di = i + (p + 0.5) / s - 0.5
                for q in range(s):
                    dj = j + (q + 0.5) / s - 0.5
                    r = m00 * di + m01 * dj + offset[0]
                    c = m10 * di + m11 * dj + offset[1]
                    if r >= 0.0 and c >= 0.0 and r <= h - 1 and c <= w - 1:
                        r0 = min(int(r), h - 2)
                        c0 = min(int(c), w - 2)
                        fr = r - r0
                        fc = c - c0
                        acc += (
                            (1 - fr) * ((1 - fc) * img[r0, c0] + fc * img[r0, c0 + 1])
                            + fr * ((1 - fc) * img[r0 + 1, c0] + fc * img[r0 + 1, c0 + 1])
                        ) - (bg[0] + bg[1] * r + bg[2] * c)
            v = acc * inv
            if v > 0.0:
                out[i, j] = v
    return out


def turn_needed(img: np.ndarray) -> bool:
    """Whether to turn a resampled frame ``img`` (trap axis along the rows, crystal centre
    at the centre) by 180°: True when the third moment of its light along the rows,
    about the centre, is negative. A frame and its 180° turn thus prepare alike, and the
    count does not depend on which way round the camera shows the crystal."""
    rows = np.arange(img.shape[0], dtype=np.float64) - (img.shape[0] - 1) / 2.0
    profile = img.sum(axis=1, dtype=np.float64)
    return float(profile @ rows**3) < 0.0


def background_plane(
    img: np.ndarray, ellipse: Ellipse, method: BackgroundMethod, margin_px: float
) -> np.ndarray:
    """Background ``(p0, p_row, p_col)`` (intensity, per input px) from the pixels outside.

    Uses a grid of pixels (every ``max(2, min(rows, cols) // 64)``-th row and column)
    outside the ellipse grown by 25 % plus ``margin_px``;
    ``"constant"`` gives their median, ``"plane"`` a least-squares plane with one round of
    3σ clipping. Falls back to the frame's 5th percentile when fewer than 50 pixels remain.
    """
    if method == "none":
        return np.zeros(3)
    dr, dc = ellipse.major_direction
    step = max(2, min(img.shape) // 64)
    z, rr, cc = _outside_samples(
        np.ascontiguousarray(img, dtype=np.float32),
        step,
        ellipse.center_row,
        ellipse.center_col,
        dr,
        dc,
        1.25 * ellipse.semi_major + margin_px,
        1.25 * ellipse.semi_minor + margin_px,
    )
    if z.size < 50:
        return np.array([float(np.percentile(img, 5)), 0.0, 0.0])
    if method == "constant":
        return np.array([float(np.median(z)), 0.0, 0.0])
    return robust_plane(z, rr, cc, 2, 50)


@nb.njit(cache=True, nogil=True)
def _outside_samples(img, step, cr, cc, dr, dc, a, b):  # pragma: no cover - numba
    """Values, rows and columns of every ``step``-th pixel outside an ellipse (float64)."""
    h, w = img.shape
    size = ((h + step - 1) // step) * ((w + step - 1) // step)
    z, rows, cols = np.empty(size), np.empty(size), np.empty(size)
    n = 0
    for i in range(0, h, step):
        y = i - cr
        for j in range(0, w, step):
            x = j - cc
            u = (y * dr + x * dc) / a
            v = (-y * dc + x * dr) / b
            if u * u + v * v > 1.0:
                z[n], rows[n], cols[n] = img[i, j], i, j
                n += 1
    return z[:n], rows[:n], cols[:n]


def median_filter(img: np.ndarray, size: int, shape: MedianShape) -> np.ndarray:
    """Median filter of ``size`` px with a cross or square footprint (edges replicated)."""
    if size <= 1:
        return img
    if size == 3 and shape == "cross":
        return median5(img)
    if shape == "square":
        return ndi.median_filter(img, size=size, mode="nearest")
    fp = np.zeros((size, size), dtype=bool)
    fp[size // 2, :] = fp[:, size // 2] = True
    return ndi.median_filter(img, footprint=fp, mode="nearest")


def mask_and_enhance(
    img: np.ndarray, ell: Ellipse, mask_grow_px: float | None, amplitude: float
) -> tuple[float, int]:
    """In place: zero outside ``ell`` grown by ``mask_grow_px`` (None = no mask), then
    I = I0 (1 + A f²) with f of eq. 3 for ``ell``. Returns (sum, count) of the positive pixels.
    """
    dr, dc = ell.major_direction
    grow = -1.0 if mask_grow_px is None else float(mask_grow_px)
    total, count = _mask_enhance(
        img,
        ell.center_row,
        ell.center_col,
        dr,
        dc,
        ell.semi_major,
        ell.semi_minor,
        grow,
        float(amplitude),
    )
    return float(total), int(count)


@nb.njit(cache=True, nogil=True)
def _mask_enhance(img, cr, cc, dr, dc, a, b, grow, amp):  # pragma: no cover - numba
    ia2, ib2 = 1.0 / (a * a), 1.0 / (b * b)
    ma2 = 1.0 / ((a + grow) ** 2) if grow >= 0 else 0.0
    mb2 = 1.0 / ((b + grow) ** 2) if grow >= 0 else 0.0
    total = 0.0
    count = 0
    for i in range(img.shape[0]):
        y = i - cr
        for j in range(img.shape[1]):
            x = j - cc
            u = y * dr + x * dc
            v = -y * dc + x * dr
            if grow >= 0 and u * u * ma2 + v * v * mb2 > 1.0:
                img[i, j] = 0.0
                continue
            if amp > 0:
                f = u * u * ia2 + v * v * ib2
                img[i, j] *= 1.0 + amp * f * f
            val = img[i, j]
            if val > 0:
                total += val
                count += 1
    return total, count


def apply_mask(img: np.ndarray, ellipse: Ellipse, grow_px: float = 0.0) -> np.ndarray:
    """Copy of ``img`` (2-D) with every pixel outside ``ellipse`` grown by ``grow_px`` set to 0."""
    out = np.array(img, dtype=np.float32)
    mask_and_enhance(out, ellipse, grow_px, 0.0)
    return out


def enhance_outer_layer(img: np.ndarray, ellipse: Ellipse, amplitude: float) -> np.ndarray:
    """Eq. 2-3: I = I0 + A·I0·f², f = 1 on ``ellipse`` (pixels of ``img``); returns a copy."""
    out = np.array(img, dtype=np.float32)
    mask_and_enhance(out, ellipse, None, amplitude)
    return out


def normalize_brightness(img: np.ndarray, target: float) -> np.ndarray:
    """Copy of ``img`` scaled so (sum of non-zero pixels) / (their number) == ``target``."""
    out = np.array(img, dtype=np.float32)
    nz = out[out != 0]
    if nz.size == 0 or nz.sum(dtype=np.float64) == 0:
        raise InputError("frame: no non-zero pixels to normalise")
    out *= np.float32(target * nz.size / nz.sum(dtype=np.float64))
    return out


# ------------------------------------------------------------------------------ the pipeline


def prepare_frame(
    frame: np.ndarray,
    cfg: PreprocessConfig,
    ellipse: Ellipse | None = None,
    camera_pixel_size_um: float | None = None,
    trap_axis: TrapAxis | str = "auto",
) -> tuple[np.ndarray, Ellipse]:
    """Prepare one frame for the model.

    Args:
        frame: ``(rows, cols)`` camera or rendered image, any real dtype, the crystal at any
            angle.
        cfg: the pipeline settings.
        ellipse: the crystal's outline in ``frame`` pixels (e.g. user-drawn); ``None`` =
            found by :func:`fit_ellipse`.
        camera_pixel_size_um: µm per pixel of ``frame`` (object plane); ``None`` = same as
            ``cfg.model_pixel_size_um`` (no resampling).
        trap_axis: the trap axis in ``frame`` (:func:`parse_trap_axis`; ``"auto"``: the
            crystal's long axis).

    Returns:
        ``(prepared, ellipse)``: ``cfg.output_shape`` float32 with the trap axis vertical
        and the crystal centred; the ellipse used, in ``frame`` pixels, with a note when
        the trap axis is doubtful or an uneven cooling beam was evened out.

    Raises:
        InputError: bad frame, no crystal, crystal touching the border or not fitting the
            output (one line naming the problem).
    """
    _check_cfg(cfg)
    if camera_pixel_size_um is not None:
        check_number(
            "camera_pixel_size_um", camera_pixel_size_um, positive=True, numpy_scalars=True
        )
    if ellipse is not None and not isinstance(ellipse, Ellipse):
        raise InputError(f"ellipse: expected an Ellipse or None, got {type(ellipse).__name__}")
    axis = parse_trap_axis(trap_axis)
    img = as_float_frame(frame, "frame")
    ell = _fitted(img, cfg) if ellipse is None else ellipse
    ell = _with_note(ell, trap_axis_angle(ell, axis)[1])
    tf = frame_transform(ell, cfg, camera_pixel_size_um, axis)
    out, note = _render(img, ell, tf, cfg)
    return out, _with_note(ell, note)


def fit_crystal(frame: np.ndarray, cfg: PreprocessConfig) -> Ellipse:
    """The ellipse a preparation with ``cfg`` fits to ``frame`` ``(rows, cols)`` (frame
    pixels): :func:`fit_ellipse` with the card's fit options, refined by symmetry when it
    asks."""
    _check_cfg(cfg)
    return _fitted(as_float_frame(frame, "frame"), cfg)


def fit_options(cfg: PreprocessConfig) -> tuple[bool, bool]:
    """The options of ``cfg`` that the fitted ellipse depends on (``symmetry_refine``,
    ``fit_footprint``): preparations that agree on them can share one fit per frame."""
    return (cfg.symmetry_refine, cfg.fit_footprint)


def _fitted(img: np.ndarray, cfg: PreprocessConfig) -> Ellipse:
    """The ellipse fitted to a checked float32 frame, refined by symmetry when ``cfg`` asks
    (a given ellipse is used as it is)."""
    ell = fit_float_frame(img, cfg.fit_footprint)
    return refine_by_symmetry(img, ell, ROUND_RATIO) if cfg.symmetry_refine else ell


def _with_note(ell: Ellipse, note: str | None) -> Ellipse:
    """``ell`` with ``note`` added to its notes (unless None or there already)."""
    if note is None or note in ell.notes:
        return ell
    return dataclasses.replace(ell, notes=(*ell.notes, note))


def _render(
    img: np.ndarray, ell: Ellipse, tf: FrameTransform, cfg: PreprocessConfig
) -> tuple[np.ndarray, str | None]:
    """Steps 2-7 of the module docstring for a checked float32 frame: the prepared image, and
    the note of an uneven cooling beam evened out (None when none was)."""
    bg = None
    if cfg.background != "none":
        bg = background_plane(img, ell, cfg.background, tf.margin_px / tf.zoom)
    out = resample(img, tf, cfg.output_shape, bg, cfg.resampling)
    if cfg.rotate and cfg.canonical_turn and turn_needed(out):
        out = np.ascontiguousarray(out[::-1, ::-1])  # about the centre: the ellipse stays
    out = median_filter(out, cfg.median_size, cfg.median_shape)
    note = None
    if cfg.beam_reference is not None:
        noise = ell.pixel_noise
        if cfg.beam_noise > 0.0 and not math.isfinite(noise):
            noise = pixel_noise(img, ell)
        shortfall = flatten_beam(out, tf.output_ellipse, cfg.beam_reference, noise, cfg.beam_noise)
        note = beam_note(shortfall)
    total, count = mask_and_enhance(
        out, tf.output_ellipse, tf.margin_px if cfg.mask else None, cfg.enhance_amplitude
    )
    if cfg.normalize:
        if count == 0:
            raise InputError(
                "frame: no signal left inside the crystal's ellipse after "
                "background subtraction; check the ellipse"
            )
        out *= np.float32(cfg.brightness_density * count / total)
    return out, note


# ------------------------------------------------------------------------------ saturation

#: A frame with at least this share of its crystal's pixels at the saturation level is noted.
SATURATED_FRACTION = 1e-3


def saturation_note(frame: np.ndarray, ellipse: Ellipse) -> str | None:
    """A warning when at least ``SATURATED_FRACTION`` (and 3) of the pixels inside
    ``ellipse`` grown by 10 % sit at a saturation level, else None.

    The level: for integers, the dtype's maximum or a camera's 2^k - 1 (k = 8 ... 16) when
    that is the crystal's maximum; for floats, the crystal's maximum when it is a plateau
    (only saturation makes many pixels exactly equal to the brightest).
    """
    frame = np.ascontiguousarray(frame)
    a, b = 1.1 * ellipse.semi_major, 1.1 * ellipse.semi_minor
    grown = dataclasses.replace(ellipse, semi_major=a, semi_minor=b)
    box = grown.box(frame.shape)
    if box is None:
        return None
    r_lo, r_hi, c_lo, c_hi = box
    dr, dc = grown.major_direction
    n, top, n_top = _top_inside(
        frame, r_lo, r_hi, c_lo, c_hi, grown.center_row, grown.center_col, dr, dc, a, b
    )
    if n == 0 or n_top < max(3, SATURATED_FRACTION * n):
        return None
    if frame.dtype.kind in "iu":
        camera_bits = {2**k - 1: k for k in range(8, 17)}
        if int(top) == np.iinfo(frame.dtype).max:
            level = f"at the {frame.dtype} maximum {int(top)}"
        elif int(top) in camera_bits:
            level = f"at {int(top)} (a {camera_bits[int(top)]}-bit camera's maximum)"
        else:
            return None
    else:
        level = f"at the same maximum {float(top):g} (a flat top)"
    return f"saturated: {100.0 * n_top / n:.2g} % of the crystal's pixels {level}"


@nb.njit(cache=True, nogil=True)
def _top_inside(frame, r_lo, r_hi, c_lo, c_hi, cr, cc, dr, dc, a, b):  # pragma: no cover - numba
    """``(pixels inside the ellipse, their maximum, how many equal it)`` over rows
    ``r_lo:r_hi`` and columns ``c_lo:c_hi`` of ``frame``, in one pass; the ellipse is
    :meth:`Ellipse.normalized_radius2` <= 1 with centre ``(cr, cc)``, major direction
    ``(dr, dc)`` and semi-axes ``a``, ``b`` (px)."""
    n = 0
    n_top = 0
    top = frame[r_lo, c_lo]
    for i in range(r_lo, r_hi):
        y = i - cr
        for j in range(c_lo, c_hi):
            x = j - cc
            u = (y * dr + x * dc) / a
            v = (-y * dc + x * dr) / b
            if u * u + v * v > 1.0:
                continue
            val = frame[i, j]
            if n == 0 or val > top:
                top = val
                n_top = 1
            elif val == top:
                n_top += 1
            n += 1
    return n, top, n_top


# ------------------------------------------------------------------------------- pixel noise

#: Pixel noise (see :func:`pixel_noise`) above which a frame is noted as noisier than the
#: models count well. From ``benchmarks/noise_sensitivity.py`` (docs/BENCHMARKS.md; 280
#: frames through sCMOS-like and EMCCD cameras): up to 0.08 the default model's mean |error|
#: in each 0.01-wide bin of noise is 3.0-5.5 % (noiseless renders 3.0 %; 4 of 159 frames off
#: by more than 10 %), above it 7.6-17 % (51 of 121). The training renders read 0,
#: sCMOS-like cameras at 2,000 photons an ion about 0.03, an EMCCD at gain 300 with 300
#: photons 0.08-0.14.
NOISE_LIMIT = 0.08
#: Pixels that count for :func:`pixel_noise`: those lit above this share of the crystal's
#: light (its brightest pixel over the background, both after a 5-point median).
NOISE_LIT = 0.3


def pixel_noise(img: np.ndarray, ellipse: Ellipse) -> float:
    """The frame's pixel-to-pixel noise relative to its crystal's light (dimensionless): the
    median, over the lit pixels inside ``ellipse`` (input px), of |pixel − the median of it
    and its 4 neighbours|, over the crystal's light (brightest 5-point median inside the
    ellipse minus the least in its bounding box). NaN when nothing is lit."""
    img = np.ascontiguousarray(img, dtype=np.float32)
    box = ellipse.box(img.shape)
    if box is None:
        return math.nan
    r_lo, r_hi, c_lo, c_hi = box
    dr, dc = ellipse.major_direction
    return float(
        _noise_inside(
            img,
            r_lo,
            r_hi,
            c_lo,
            c_hi,
            ellipse.center_row,
            ellipse.center_col,
            dr,
            dc,
            max(ellipse.semi_major, 1.0),
            max(ellipse.semi_minor, 1.0),
            NOISE_LIT,
        )
    )


def noise_note(noise: float) -> str | None:
    """A warning when a frame's ``noise`` (:func:`pixel_noise`) is above :data:`NOISE_LIMIT`,
    else None."""
    if not noise > NOISE_LIMIT:
        return None
    return (
        f"noisy: pixel noise {100 * noise:.0f} % of the crystal's light (the models were "
        f"checked to count well up to {100 * NOISE_LIMIT:.0f} %, an EMCCD at high gain reads "
        "more); lower the EM gain, expose longer or average frames, or expect the count to be off"
    )


@nb.njit(cache=True, nogil=True)
def _noise_inside(img, r_lo, r_hi, c_lo, c_hi, cr, cc, dr, dc, a, b, lit):  # pragma: no cover
    """:func:`pixel_noise` over rows ``r_lo:r_hi`` and columns ``c_lo:c_hi``, the ellipse
    ``(cr, cc)``, ``(dr, dc)``, ``a``, ``b`` (px). Every row counts: every second one halved
    the time but doubled the scatter of the median near the limit."""
    h, w = img.shape
    rows, cols = r_hi - r_lo, c_hi - c_lo
    med = np.empty((rows, cols), np.float32)
    inside = np.zeros((rows, cols), np.bool_)
    low = np.inf
    high = -np.inf
    for i in range(r_lo, r_hi):
        y = i - cr
        for j in range(c_lo, c_hi):
            m = median5_at(img, i, j, h, w)
            med[i - r_lo, j - c_lo] = m
            low = min(low, m)
            x = j - cc
            u = (y * dr + x * dc) / a
            v = (-y * dc + x * dr) / b
            if u * u + v * v <= 1.0:
                inside[i - r_lo, j - c_lo] = True
                high = max(high, m)
    light = high - low
    if not light > 0:
        return np.nan
    level = low + lit * light
    dev = np.empty(rows * cols, np.float32)
    n = 0
    for i in range(rows):
        for j in range(cols):
            if inside[i, j] and med[i, j] > level:
                dev[n] = abs(img[i + r_lo, j + c_lo] - med[i, j])
                n += 1
    if n == 0:
        return np.nan
    return np.median(dev[:n]) / light


# ---------------------------------------------------------------------------------- stacks


def _frame_result(
    frame: np.ndarray,
    cfg: PreprocessConfig,
    ellipse: Ellipse | None,
    camera_pixel_size_um: float | None,
    trap_axis: TrapAxis,
    camera_checks: bool = True,
) -> tuple[np.ndarray | None, Ellipse | None, str | None]:
    """(image, ellipse, None) or (None, ellipse-or-None, reason) for one frame of a stack;
    ``camera_checks``: note saturation, pixel noise and a halo, and record the pixel noise
    and the halo on the ellipse (:func:`prepare_stack`)."""
    ell = ellipse
    try:
        img = as_float_frame(frame, "frame")
        if ell is None:
            ell = _fitted(img, cfg)
        if camera_checks:
            px = cfg.model_pixel_size_um if camera_pixel_size_um is None else camera_pixel_size_um
            ell = _with_note(ell, saturation_note(np.asarray(frame), ell))
            noise, halo = pixel_noise(img, ell), halo_light(img, ell, px)
            ell = _with_note(_with_note(ell, noise_note(noise)), halo_note(halo))
            ell = dataclasses.replace(ell, pixel_noise=noise, halo_light=halo)
        ell = _with_note(ell, trap_axis_angle(ell, trap_axis)[1])
        tf = frame_transform(ell, cfg, camera_pixel_size_um, trap_axis)
        out, note = _render(img, ell, tf, cfg)
        return out, _with_note(ell, note), None
    except InputError as exc:
        return None, ell, str(exc).removeprefix("frame: ")


class PreparedStack:
    """Result of :func:`prepare_stack`.

    Attributes:
        images: ``(F, rows, cols)`` float32 numpy array, or a lazy dask array for dask input;
            a bad frame is all zeros.
        ellipses: ``list[Ellipse | None]``, one per frame (input pixels); ``None`` where no
            ellipse was found.
        bad_frames: ``{frame index: reason}`` for frames that could not be prepared.

    For dask input, ``ellipses`` and ``bad_frames`` are filled as frames are computed;
    reading them computes (one frame at a time) whatever frames are still missing. To get
    images, ellipses and bad frames in one pass, call :meth:`compute` first.
    """

    def __init__(
        self,
        images: Any,
        n_frames: int,
        results: dict[int, tuple[Ellipse | None, str | None]],
        fill: Callable[[int], tuple[Ellipse | None, str | None]] | None = None,
    ):
        self.images = images
        self._n = n_frames
        self._results = results
        self._fill = fill

    def _complete(self) -> None:
        if self._fill is not None:
            for i in range(self._n):
                if i not in self._results:
                    self._results[i] = self._fill(i)

    def compute(self, **dask_kwargs: Any) -> PreparedStack:
        """A numpy-backed result: computes a lazy ``images`` once (filling the ellipses and
        bad frames on the way); ``dask_kwargs`` go to ``dask.compute`` (e.g. scheduler)."""
        if isinstance(self.images, np.ndarray):
            return self
        images = np.asarray(self.images.compute(**dask_kwargs), dtype=np.float32)
        self._complete()  # frames computed elsewhere (a distributed cluster) are redone here
        return PreparedStack(images, self._n, dict(self._results))

    @property
    def ellipses(self) -> list[Ellipse | None]:
        self._complete()
        return [self._results[i][0] for i in range(self._n)]

    @property
    def bad_frames(self) -> dict[int, str]:
        self._complete()
        return {i: r for i in range(self._n) if (r := self._results[i][1]) is not None}


def _stack_ellipses(
    ellipses: Sequence[Ellipse | None] | Ellipse | None, n: int
) -> list[Ellipse | None]:
    if ellipses is None:
        return [None] * n
    if isinstance(ellipses, Ellipse):
        return [ellipses] * n
    ells = list(ellipses)
    if len(ells) != n:
        raise InputError(f"ellipses: got {len(ells)} ellipses for {n} frames")
    for e in ells:
        if e is not None and not isinstance(e, Ellipse):
            raise InputError(f"ellipses: expected Ellipse or None items, got {type(e).__name__}")
    return ells


def _check_stack(stack: Any) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in stack.shape)
    if len(shape) == 4 and shape[-1] in (3, 4):
        raise InputError(
            f"stack: shape {shape} looks like RGB/RGBA frames; convert them to "
            "one greyscale channel first"
        )
    if len(shape) == 3 and shape[-1] in (3, 4) and min(shape[:2]) >= 16:
        raise InputError(
            f"stack: shape {shape} looks like one RGB/RGBA image, not a (frames, rows, cols) stack"
        )
    if len(shape) == 2:
        raise InputError(
            f"stack: got one 2-D frame {shape}; use prepare_frame or add a frames axis"
        )
    if len(shape) != 3:
        raise InputError(f"stack: expected a 3-D (frames, rows, cols) array, got shape {shape}")
    if shape[0] == 0:
        raise InputError("stack: has no frames")
    check_dtype(np.dtype(stack.dtype), "stack")
    return shape  # type: ignore[return-value]


def prepare_stack(
    stack: Any,
    cfg: PreprocessConfig,
    ellipses: Sequence[Ellipse | None] | Ellipse | None = None,
    camera_pixel_size_um: float | None = None,
    progress: ProgressCallback | None = None,
    trap_axis: TrapAxis | str = "auto",
    camera_checks: bool = True,
) -> PreparedStack:
    """Prepare every frame of a ``(frames, rows, cols)`` stack.

    Args:
        stack: numpy array (prepared now) or dask array (prepared lazily, frame by frame:
            nothing is read until ``images`` is computed).
        cfg: the pipeline settings.
        ellipses: ``None`` (fit each frame), one :class:`Ellipse` for all frames, or one
            ``Ellipse | None`` per frame (input pixels).
        camera_pixel_size_um: µm per input pixel; ``None`` = the model's pixel size.
        progress: ``progress(done, total)`` after each frame.
        trap_axis: the trap axis in the frames (:func:`parse_trap_axis`).
        camera_checks: note on each frame's ellipse what the camera did that counts may
            suffer from (saturation, pixel noise, a halo: :func:`saturation_note`,
            :func:`noise_note`, :func:`ccount_core.image.halo.halo_note`) and their
            measures (``Ellipse.pixel_noise``, ``Ellipse.halo_light``); False where
            ``ellipses`` already carry them (a second preparation of the same frames).

    Returns:
        :class:`PreparedStack`; frames that fail (NaN, constant, no crystal, crystal at the
        border or too large for the output) are zeros in ``images`` and listed with their
        reason in ``bad_frames``; the rest are processed.

    Raises:
        InputError: the stack as a whole is unusable (not 3-D, RGB, non-numeric dtype,
            no frames) or an argument is bad.
    """
    if not _is_dask(stack) and not isinstance(stack, np.ndarray):
        stack = np.asarray(stack)
    _check_cfg(cfg)
    n, _, _ = _check_stack(stack)
    if camera_pixel_size_um is not None:
        check_number(
            "camera_pixel_size_um", camera_pixel_size_um, positive=True, numpy_scalars=True
        )
    axis = parse_trap_axis(trap_axis)
    ells = _stack_ellipses(ellipses, n)
    h, w = cfg.output_shape
    if _is_dask(stack):
        return _prepare_dask(
            stack, cfg, ells, (camera_pixel_size_um, axis, camera_checks), progress
        )
    stack = np.asarray(stack)
    images = np.zeros((n, h, w), dtype=np.float32)
    results: dict[int, tuple[Ellipse | None, str | None]] = {}
    for i in range(n):
        img, ell, reason = _frame_result(
            stack[i], cfg, ells[i], camera_pixel_size_um, axis, camera_checks
        )
        if img is not None:
            images[i] = img
        results[i] = (ell, reason)
        report(progress, i + 1, n)
    return PreparedStack(images, n, results)


def warm_up() -> None:
    """Prepare one small synthetic crystal (a noisy bright ellipse, 2 µm pixels), so that
    Numba loads the pipeline's compiled kernels and its typing registries now: the first real
    frame otherwise pays about 0.3 s of Python holding the GIL (the napari plugin calls this
    in a background thread when its Count widget opens, before the user clicks)."""
    rows, cols = np.mgrid[:96, :160]
    inside = ((rows - 48) / 20.0) ** 2 + ((cols - 80) / 55.0) ** 2 < 1
    noise = np.random.default_rng(0).integers(0, 60, inside.shape)
    frame = (100 + 1000 * inside + noise).astype(np.uint16)
    prepare_stack(frame[None], PreprocessConfig(), camera_pixel_size_um=2.0)


def _is_dask(x: Any) -> bool:
    mod = type(x).__module__
    return mod.startswith("dask.") and hasattr(x, "map_blocks")


class _FrameJob:
    """The per-frame task of a lazy stack: prepares one ``(1, rows, cols)`` block and records
    its ellipse and bad-frame reason. Picklable (for distributed schedulers); a pickled copy
    records into its own, empty results and reports no progress."""

    def __init__(
        self,
        cfg: PreprocessConfig,
        ells: list[Ellipse | None],
        camera: tuple[float | None, TrapAxis, bool],
        n: int,
        progress: ProgressCallback | None,
    ):
        self.cfg, self.ells, self.camera, self.n, self.progress = cfg, ells, camera, n, progress
        self.results: dict[int, tuple[Ellipse | None, str | None]] = {}
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "results": {}, "progress": None, "_lock": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __call__(self, block: np.ndarray, block_info: dict | None = None) -> np.ndarray:
        i = int(block_info[0]["chunk-location"][0]) if block_info else 0
        img, ell, reason = _frame_result(np.asarray(block)[0], self.cfg, self.ells[i], *self.camera)
        with self._lock:
            self.results[i] = (ell, reason)
            done = len(self.results)
        report(self.progress, done, self.n)
        if img is None:
            img = np.zeros(self.cfg.output_shape, np.float32)
        return img[None]

    def fill(self, stack: Any, i: int) -> tuple[Ellipse | None, str | None]:
        """Ellipse and reason of frame ``i`` of ``stack``, computed now."""
        _, ell, reason = _frame_result(np.asarray(stack[i]), self.cfg, self.ells[i], *self.camera)
        return ell, reason


def _prepare_dask(
    stack: Any,
    cfg: PreprocessConfig,
    ells: list[Ellipse | None],
    camera: tuple[float | None, TrapAxis, bool],
    progress: ProgressCallback | None,
) -> PreparedStack:
    import dask.array as da

    n = int(stack.shape[0])
    h, w = cfg.output_shape
    job = _FrameJob(cfg, ells, camera, n, progress)
    frames = stack.rechunk((1, -1, -1))
    images = da.map_blocks(
        job,
        frames,
        dtype=np.float32,
        chunks=((1,) * n, (h,), (w,)),
        meta=np.empty((0, 0, 0), np.float32),
    )
    return PreparedStack(images, n, job.results, functools.partial(job.fill, stack))
