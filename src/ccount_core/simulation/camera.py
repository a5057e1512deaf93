"""What laboratory cameras add to a crystal's image: one function per imperfection.

:func:`ccount_core.simulation.render.render` draws the ideal light of the ions (in "ion
exposures") and, with a :class:`~ccount_core.simulation.render.CameraModel`, the camera's
photon, EM-gain and read noise, offset and bit depth. :class:`CameraEffects` adds what real
set-ups show on top, applied by :func:`apply_effects` in this order:

1. :func:`laser_profile`: a Gaussian cooling beam, so outer layers fluoresce less (×);
2. :func:`psf_wings`: part of each spot's light spread into wide Moffat wings;
3. :func:`defocus_blur`: a disk blur (a defocused aperture);
4. :func:`background`: a uniform level plus a plane gradient, fractions of the peak (+);
5. the camera model (photons, EM register, read noise, ADC, saturation);
6. :func:`hot_pixels`: a fraction of pixels raised towards full scale.

Steps 1-4 act on the light (ion exposures), before the noise; step 6 on the counts. The
image coordinates are the renderer's: the trap centre at the frame centre, the trap axis along
the columns turned by ``rotation_deg`` counter-clockwise. The same definitions (fractions of
the peak, the beam's 1/e² waist) are used by the data-set spec's ``camera_effects`` section
(:mod:`ccount_core.dataset.spec`) and by training augmentation (:mod:`ccount_core.nn.augment`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.signal import fftconvolve

from ccount_core.checks import check_number
from ccount_core.errors import InputError

if TYPE_CHECKING:
    from ccount_core.simulation.render import CameraModel, ImagingSettings


def _fraction(name: str, value: object) -> None:
    """Raise a one-line InputError unless ``value`` is a number in [0, 1]."""
    if check_number(name, value, nonnegative=True, numpy_scalars=True) > 1.0:
        raise InputError(f"{name} must be at most 1, got {value!r}")


@dataclass(frozen=True)
class LaserProfile:
    """A Gaussian cooling beam; an ion fluoresces in proportion to exp(-2 d² / waist²).

    Attributes:
        waist: 1/e² intensity radius of the beam, m.
        offset: beam centre's distance from the trap centre, perpendicular to the beam, m.
        along_axis: True: the beam runs along the trap axis and ``d`` is the radial distance
            in the image (the outer layers dim); False: it crosses the trap axis and ``d``
            runs along it (the crystal's tips dim).
    """

    waist: float
    offset: float = 0.0
    along_axis: bool = True

    def __post_init__(self) -> None:
        check_number("laser waist", self.waist, positive=True, numpy_scalars=True)
        check_number("laser offset", self.offset, numpy_scalars=True)


@dataclass(frozen=True)
class EdgeLaserProfile:
    """A Gaussian cooling beam set by how much it dims the crystal's edge rather than by its
    waist: the waist is chosen per image so that the crystal's outermost point across the beam
    (the farthest pixel with :data:`EDGE_LIGHT` of the peak light) fluoresces at
    ``edge_level``, whatever the crystal's size.

    Attributes:
        edge_level: relative intensity at the crystal's edge, 0 < edge_level < 1.
        offset, along_axis: as :class:`LaserProfile`'s (m; bool).
    """

    edge_level: float
    offset: float = 0.0
    along_axis: bool = True

    def __post_init__(self) -> None:
        level = check_number("laser edge level", self.edge_level, positive=True, numpy_scalars=True)
        if level >= 1.0:
            raise InputError(f"laser edge level must be below 1, got {self.edge_level!r}")
        check_number("laser offset", self.offset, numpy_scalars=True)


#: :class:`EdgeLaserProfile`: a pixel belongs to the crystal from this share of the peak light.
EDGE_LIGHT = 0.05


@dataclass(frozen=True)
class PsfWings:
    """A point-spread function with wide wings: a share ``fraction`` of each spot's light is
    spread by a Moffat kernel (1 + r²/width²)^(-beta) (beta 1: a Lorentzian's tails).

    Attributes:
        fraction: share of the light in the wings, 0..1.
        width: Moffat core width α, m.
        beta: Moffat exponent (> 1), dimensionless.
    """

    fraction: float
    width: float
    beta: float = 1.5

    def __post_init__(self) -> None:
        _fraction("psf wing fraction", self.fraction)
        check_number("psf wing width", self.width, positive=True, numpy_scalars=True)
        check_number("psf wing beta", self.beta, low=1.01, numpy_scalars=True)


@dataclass(frozen=True)
class Background:
    """Background light: ``level`` + ``gradient`` × s, s from 0 to 1 across the frame in the
    direction ``direction_deg``; ``level`` and ``gradient`` are fractions of the image's peak.

    Attributes:
        level: uniform background, fraction of the peak (dimensionless).
        gradient: rise across the frame, fraction of the peak (dimensionless).
        direction_deg: direction of the rise, degrees counter-clockwise from +column.
    """

    level: float = 0.0
    gradient: float = 0.0
    direction_deg: float = 0.0

    def __post_init__(self) -> None:
        check_number("background level", self.level, nonnegative=True, numpy_scalars=True)
        check_number("background gradient", self.gradient, nonnegative=True, numpy_scalars=True)
        check_number("background direction_deg", self.direction_deg, numpy_scalars=True)


@dataclass(frozen=True)
class HotPixels:
    """Pixels with a high dark current: ``fraction`` of the pixels gain ``amplitude`` × the
    full scale (the camera's saturation, or the image's peak without a camera).

    Attributes:
        fraction: share of the pixels, 0..1.
        amplitude: added value, fraction of the full scale (1: saturated).
    """

    fraction: float
    amplitude: float = 1.0

    def __post_init__(self) -> None:
        _fraction("hot pixel fraction", self.fraction)
        check_number("hot pixel amplitude", self.amplitude, nonnegative=True, numpy_scalars=True)


@dataclass(frozen=True)
class CameraEffects:
    """The imperfections to add to one image; ``None`` leaves an effect out.

    Attributes:
        profile: cooling-beam profile.
        wings: PSF wings.
        defocus_radius: radius of a disk blur, m (0: none).
        background: background level and gradient.
        hot_pixels: hot pixels.
        exposure: the brightest noise-free pixel's level as a fraction of the camera's full
            scale (sets the ADC's electrons per count; None keeps the camera's own).
    """

    profile: LaserProfile | EdgeLaserProfile | None = None
    wings: PsfWings | None = None
    defocus_radius: float = 0.0
    background: Background | None = None
    hot_pixels: HotPixels | None = None
    exposure: float | None = None

    def __post_init__(self) -> None:
        check_number("defocus radius", self.defocus_radius, nonnegative=True, numpy_scalars=True)
        if self.exposure is not None:
            check_number("exposure", self.exposure, positive=True, numpy_scalars=True)

    @classmethod
    def from_lab_units(cls, values: dict[str, Any]) -> CameraEffects:
        """Effects from the flat lab-unit keys of a spec's ``camera_effects`` (µm, fractions).

        Keys: ``laser_waist_um`` (or ``laser_edge_level``), ``laser_offset_um``,
        ``laser_along_axis``,
        ``psf_wing_fraction``, ``psf_wing_width_um``, ``psf_wing_beta``, ``defocus_radius_um``,
        ``background_level``, ``background_gradient``, ``background_direction_deg``,
        ``hot_pixel_fraction``, ``hot_pixel_amplitude``, ``exposure``; missing keys leave
        the effect out (a waist, a wing fraction or a hot-pixel fraction switch theirs on).
        """
        unknown = set(values) - set(EFFECT_KEYS)
        if unknown:
            raise InputError(f"unknown camera effect(s): {', '.join(sorted(unknown))}")
        v = values
        profile = wings = bg = hot = None
        if "laser_waist_um" in v and "laser_edge_level" in v:
            raise InputError("give laser_waist_um or laser_edge_level, not both")
        if "laser_edge_level" in v:
            profile = EdgeLaserProfile(
                v["laser_edge_level"],
                v.get("laser_offset_um", 0.0) * 1e-6,
                bool(v.get("laser_along_axis", True)),
            )
        if "laser_waist_um" in v:
            profile = LaserProfile(
                v["laser_waist_um"] * 1e-6,
                v.get("laser_offset_um", 0.0) * 1e-6,
                bool(v.get("laser_along_axis", True)),
            )
        if v.get("psf_wing_fraction", 0.0) > 0:
            wings = PsfWings(
                v["psf_wing_fraction"],
                v.get("psf_wing_width_um", 10.0) * 1e-6,
                v.get("psf_wing_beta", 1.5),
            )
        if v.get("background_level", 0.0) > 0 or v.get("background_gradient", 0.0) > 0:
            bg = Background(
                v.get("background_level", 0.0),
                v.get("background_gradient", 0.0),
                v.get("background_direction_deg", 0.0),
            )
        if v.get("hot_pixel_fraction", 0.0) > 0:
            hot = HotPixels(v["hot_pixel_fraction"], v.get("hot_pixel_amplitude", 1.0))
        return cls(
            profile, wings, v.get("defocus_radius_um", 0.0) * 1e-6, bg, hot, v.get("exposure")
        )


EFFECT_KEYS = (
    "laser_waist_um",
    "laser_edge_level",
    "laser_offset_um",
    "laser_along_axis",
    "psf_wing_fraction",
    "psf_wing_width_um",
    "psf_wing_beta",
    "defocus_radius_um",
    "background_level",
    "background_gradient",
    "background_direction_deg",
    "hot_pixel_fraction",
    "hot_pixel_amplitude",
    "exposure",
)
"""The lab-unit keys of :meth:`CameraEffects.from_lab_units` (a spec's ``camera_effects``)."""


# ------------------------------------------------------------------------------ the effects


def trap_coordinates(
    shape: tuple[int, int], pixel_size: float, rotation_deg: float
) -> tuple[np.ndarray, np.ndarray]:
    """``(along, radial)`` distances (m) of every pixel centre from the trap centre, along the
    trap axis and across it, for the renderer's frame (``rotation_deg`` counter-clockwise)."""
    rows, cols = shape
    theta = math.radians(rotation_deg)
    u = ((np.arange(cols) + 0.5 - cols / 2) * pixel_size)[None, :]
    v = ((np.arange(rows) + 0.5 - rows / 2) * pixel_size)[:, None]
    return u * math.cos(theta) - v * math.sin(theta), u * math.sin(theta) + v * math.cos(theta)


def waist_for_edge(distance: float, level: float) -> float:
    """The 1/e² waist (m) of a Gaussian beam whose intensity ``distance`` (m) off its axis is
    ``level`` of the axis's: exp(-2 d² / w²) = level."""
    return distance * math.sqrt(2.0 / math.log(1.0 / level))


def laser_profile(
    light: np.ndarray,
    profile: LaserProfile | EdgeLaserProfile,
    pixel_size: float,
    rotation_deg: float = 0.0,
) -> np.ndarray:
    """``light`` (rows, cols) × the beam's relative intensity exp(-2 d² / waist²); for an
    :class:`EdgeLaserProfile` the waist that puts the crystal's edge at its level."""
    along, radial = trap_coordinates(light.shape, pixel_size, rotation_deg)
    d = (radial if profile.along_axis else along) - profile.offset
    if isinstance(profile, EdgeLaserProfile):
        lit = light >= EDGE_LIGHT * float(light.max())
        edge = float(np.abs(d[lit]).max()) if lit.any() else 0.0
        if edge <= 0.0:
            return light
        waist = waist_for_edge(edge, profile.edge_level)
    else:
        waist = profile.waist
    return light * np.exp(-2.0 * d**2 / waist**2)


def moffat_kernel(width_px: float, beta: float, radius_px: int) -> np.ndarray:
    """Normalised Moffat kernel (1 + r²/width²)^(-beta), ``2 radius_px + 1`` px square."""
    r = np.arange(-radius_px, radius_px + 1, dtype=np.float64)
    k = (1.0 + (r[:, None] ** 2 + r[None, :] ** 2) / width_px**2) ** (-beta)
    return k / k.sum()


def psf_wings(light: np.ndarray, wings: PsfWings, pixel_size: float) -> np.ndarray:
    """(1 - fraction) × ``light`` + fraction × ``light`` ⊛ Moffat kernel (light conserved,
    apart from what the wings carry out of the frame)."""
    radius = int(min(max(light.shape), math.ceil(30 * wings.width / pixel_size)))
    kernel = moffat_kernel(wings.width / pixel_size, wings.beta, radius)
    spread = fftconvolve(light, kernel, mode="same")
    return (1.0 - wings.fraction) * light + wings.fraction * np.clip(spread, 0.0, None)


def defocus_blur(light: np.ndarray, radius: float, pixel_size: float) -> np.ndarray:
    """``light`` blurred by a uniform disk of ``radius`` (m); unchanged below half a pixel."""
    r_px = radius / pixel_size
    if r_px < 0.5:
        return light
    n = math.ceil(r_px)
    r = np.arange(-n, n + 1, dtype=np.float64)
    # each pixel's share of the disk, sampled 4 x 4 within the pixel
    sub = (np.arange(4) + 0.5) / 4 - 0.5
    rr = (r[:, None, None, None] + sub[None, None, :, None]) ** 2
    cc = (r[None, :, None, None] + sub[None, None, None, :]) ** 2
    disk = (rr + cc <= r_px**2).mean(axis=(2, 3))
    return np.clip(fftconvolve(light, disk / disk.sum(), mode="same"), 0.0, None)


def background_plane(shape: tuple[int, int], bg: Background, peak: float) -> np.ndarray:
    """The background (rows, cols) in the image's units: ``peak`` × (level + gradient × s),
    s rising from 0 to 1 across the frame along ``direction_deg``."""
    rows, cols = shape
    t = math.radians(bg.direction_deg)
    # +column is (row 0, col 1); counter-clockwise as displayed turns towards -row.
    proj = np.arange(cols)[None, :] * math.cos(t) - np.arange(rows)[:, None] * math.sin(t)
    span = float(proj.max() - proj.min())
    s = (proj - proj.min()) / span if span > 0 else np.zeros_like(proj, dtype=np.float64)
    return peak * (bg.level + bg.gradient * s)


def background(light: np.ndarray, bg: Background) -> np.ndarray:
    """``light`` plus :func:`background_plane` at the light's own peak."""
    return light + background_plane(light.shape, bg, float(np.max(light)))


def hot_pixels(
    image: np.ndarray, hot: HotPixels, full_scale: float, rng: np.random.Generator
) -> np.ndarray:
    """``image`` with ``fraction`` of its pixels (drawn without repeats) raised by
    ``amplitude × full_scale`` and clipped at ``full_scale``."""
    out = np.array(image, dtype=np.float64)
    n = round(hot.fraction * out.size)
    if n:
        flat = out.reshape(-1)
        idx = rng.choice(out.size, n, replace=False)
        flat[idx] = np.minimum(flat[idx] + hot.amplitude * full_scale, full_scale)
    return out


def apply_effects(
    light: np.ndarray,
    effects: CameraEffects,
    imaging: ImagingSettings,
    rng: np.random.Generator,
) -> np.ndarray:
    """Steps 1-6 of the module docstring: the ideal ``light`` (rows, cols, ion exposures) →
    float32 camera counts (or ion exposures when ``imaging.camera`` is None)."""
    p = imaging.pixel_size
    img = np.asarray(light, dtype=np.float64)
    if effects.profile is not None:
        img = laser_profile(img, effects.profile, p, imaging.rotation_deg)
    if effects.wings is not None:
        img = psf_wings(img, effects.wings, p)
    if effects.defocus_radius > 0:
        img = defocus_blur(img, effects.defocus_radius, p)
    if effects.background is not None:
        img = background(img, effects.background)
    camera = imaging.camera
    if camera is None:
        full = float(img.max())
    else:
        if effects.exposure is not None:
            camera = exposed(camera, img, effects.exposure)
        img = camera.apply(img, rng)
        full = camera.saturation
    if effects.hot_pixels is not None:
        img = hot_pixels(img, effects.hot_pixels, full, rng)
    return np.asarray(img, dtype=np.float32)


def exposed(camera: CameraModel, light: np.ndarray, level: float) -> CameraModel:
    """``camera`` with the electrons per count that put the brightest noise-free pixel of
    ``light`` (ion exposures) at ``level`` × its full scale (above the offset)."""
    top = float(np.max(camera.expected_counts(light))) - camera.offset
    room = exposure_room(camera, level)
    if top <= 0:
        raise InputError(f"exposure {level:g}: the light never rises above the offset")
    return dataclasses.replace(camera, electrons_per_count=camera.electrons_per_count * top / room)


def exposure_room(camera: CameraModel, level: float) -> float:
    """Counts between ``camera``'s offset and ``level`` × its full scale; an InputError when
    there are none."""
    room = level * camera.saturation - camera.offset
    if room <= 0:
        raise InputError(
            f"exposure {level:g} of a {camera.bit_depth}-bit camera's full scale "
            f"({camera.saturation:g}) is not above its offset {camera.offset:g} counts; "
            "lower the offset or raise the exposure"
        )
    return room
