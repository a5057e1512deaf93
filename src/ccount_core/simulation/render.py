"""Sampled ion positions → simulated fluorescence image (the paper's section II A, CCMD's model).

The positions of the fluorescing ions, sampled over the image-gathering phase, form a 3-D
density. It is binned into slices one pixel thick along the imaging axis ``y``; each slice is
blurred with a Gaussian whose width grows with the slice's distance Δ from the focal plane, and
the slices are summed. Conventions follow CCMD's ``Microscope_image`` (softleygroup/ccmd):

- in-focus width: CCMD's "blur" ``w0`` is the 1/e radius of the spot, σ = w0 / √2;
- defocus: σ(Δ) = (w0 / √2) · (1 + |Δ| / dof);
- slices are one pixel thick, pixels are square (CCMD bins at 1 px);
- CCMD normalises each 1-D kernel by the *square* of its sum, so a slice at width σ keeps a
  fraction ∝ 1/σ² of its light; ``defocus_weighting="ccmd"`` (default) reproduces this,
  relative to the in-focus width, and ``"flux"`` conserves each ion's light instead.

The trap axis ``z`` runs along the image columns (horizontal), the radial direction
(x − y)/√2 along the rows (CCMD's view along (x + y)/√2; ``view_azimuth_deg`` = 0 looks
along y with x along the rows), the trap centre at the image centre; ``rotation_deg`` turns
the crystal counter-clockwise as displayed (row 0 at the top). Without a camera the image is
in "ion exposures": an in-focus ion adds 1 in total, spread over its spot.
With a :class:`CameraModel` it is in camera counts.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from scipy.ndimage import gaussian_filter

from ccount_core.checks import check_number
from ccount_core.errors import InputError
from ccount_core.simulation.camera import CameraEffects, apply_effects

# Gaussian kernels are cut at this many σ (scipy's ``truncate``); CCMD cuts at ~5σ + 5 px.
_TRUNCATE = 4.0
# Points further than this many (defocused) σ outside the frame cannot reach it.
_MAX_PAD_PX = 256

DefocusWeighting = Literal["ccmd", "flux"]


@dataclass(frozen=True)
class CameraModel:
    """A camera that turns the rendered light into counts (EMCCD or CCD/sCMOS).

    Per pixel: photons ~ Poisson(photons_per_ion · image + background) (or the mean when
    ``shot_noise`` is False); with ``em_gain`` > 1 the electrons pass an EM register,
    Gamma(n, gain), which doubles the variance (excess-noise factor √2); Gaussian read noise
    (electrons rms) follows; counts = electrons / electrons_per_count + offset, rounded and
    clipped to ``[0, 2**bit_depth - 1]`` (saturation).

    Attributes:
        photons_per_ion: mean detected photons from one in-focus ion over the exposure
            (photon rate × exposure × collection × quantum efficiency), photons.
        background: mean background (scatter, dark) photons per pixel, photons.
        shot_noise: draw Poisson photon numbers; False gives the noise-free mean.
        em_gain: electron-multiplication gain (1 for a plain CCD/sCMOS), dimensionless.
        read_noise: read noise, electrons rms.
        electrons_per_count: ADC conversion, electrons per count.
        offset: bias level, counts.
        bit_depth: ADC bits; counts saturate at ``2**bit_depth - 1``.
    """

    photons_per_ion: float = 200.0
    background: float = 2.0
    shot_noise: bool = True
    em_gain: float = 1.0
    read_noise: float = 2.0
    electrons_per_count: float = 1.0
    offset: float = 100.0
    bit_depth: int = 16

    def __post_init__(self) -> None:
        for name in ("photons_per_ion", "background", "read_noise", "offset"):
            check_number(f"camera {name}", getattr(self, name), nonnegative=True)
        check_number("camera electrons_per_count", self.electrons_per_count, positive=True)
        check_number("camera em_gain", self.em_gain, low=1.0, numpy_scalars=True)
        if not (isinstance(self.bit_depth, int) and 1 <= self.bit_depth <= 32):
            raise InputError(f"camera bit_depth must be an integer 1..32, got {self.bit_depth!r}")

    @property
    def saturation(self) -> float:
        """The largest count the ADC returns, counts."""
        return float(2**self.bit_depth - 1)

    def expected_counts(self, image: np.ndarray) -> np.ndarray:
        """Noise-free mean counts for a rendered image (rows, cols) in ion exposures."""
        electrons = self.photons_per_ion * np.asarray(image, np.float64) + self.background
        return electrons * self.em_gain / self.electrons_per_count + self.offset

    def apply(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Counts for a rendered image ``(rows, cols)`` (ion exposures) → float32 counts."""
        lam = self.photons_per_ion * np.asarray(image, np.float64) + self.background
        lam = np.clip(lam, 0.0, None)
        electrons = rng.poisson(lam).astype(np.float64) if self.shot_noise else lam
        if self.em_gain > 1.0:
            if self.shot_noise:
                # Gamma(n, g) for n > 0 electrons entering the register; 0 stays 0.
                positive = electrons > 0
                out = np.zeros_like(electrons)
                out[positive] = rng.gamma(electrons[positive], self.em_gain)
                electrons = out
            else:
                electrons = electrons * self.em_gain
        if self.read_noise > 0:
            electrons = electrons + rng.normal(0.0, self.read_noise, size=electrons.shape)
        counts = np.rint(electrons / self.electrons_per_count + self.offset)
        return np.clip(counts, 0.0, self.saturation).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (all fields, their own units)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CameraModel:
        """Inverse of :meth:`to_dict`; unknown keys are an InputError."""
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise InputError(f"unknown camera parameter(s): {', '.join(sorted(unknown))}")
        return cls(**data)


@dataclass(frozen=True)
class ImagingSettings:
    """How the crystal is imaged; SI units (use :meth:`from_lab_units` for µm).

    Attributes:
        pixel_size: size of one (square) pixel in the object plane, m.
        shape: image shape (rows, cols); the trap axis runs along the columns.
        blur: CCMD's blur radius w0 (1/e radius of an in-focus spot; σ = w0/√2), m.
        depth_of_field: CCMD's dof: σ doubles at this distance from the focal plane, m.
        focal_offset: position of the focal plane along the imaging axis y, m.
        rotation_deg: counter-clockwise turn of the crystal in the displayed image, degrees.
        view_azimuth_deg: direction of the line of sight around the trap axis, degrees from
            y towards x: 45 (default) is CCMD's view, along (x + y)/√2 between the RF
            electrode planes (image rows along (x − y)/√2); 0 looks along y (rows along x).
            It matters in the RF field, where micromotion runs along x and y.
        camera: camera model, or None for the noise-free image in ion exposures.
        defocus_weighting: ``"ccmd"`` (slice light ∝ (σ_focus/σ)², as CCMD) or ``"flux"``.
    """

    pixel_size: float = 1e-6
    shape: tuple[int, int] = (480, 640)
    blur: float = 5e-6
    depth_of_field: float = 50e-6
    focal_offset: float = 0.0
    rotation_deg: float = 0.0
    view_azimuth_deg: float = 45.0
    camera: CameraModel | None = None
    defocus_weighting: DefocusWeighting = "ccmd"

    def __post_init__(self) -> None:
        check_number("pixel size", self.pixel_size, positive=True)
        check_number("blur", self.blur, positive=True)
        check_number("depth of field", self.depth_of_field, positive=True)
        for name in ("focal_offset", "rotation_deg", "view_azimuth_deg"):
            check_number(name, getattr(self, name))
        shape = tuple(self.shape)
        if len(shape) != 2 or not all(
            isinstance(n, int | np.integer) and 1 <= n <= 16384 for n in shape
        ):
            raise InputError(f"image shape must be (rows, cols) of 1..16384, got {self.shape!r}")
        object.__setattr__(self, "shape", (int(shape[0]), int(shape[1])))
        if self.defocus_weighting not in ("ccmd", "flux"):
            raise InputError(
                f"defocus_weighting must be 'ccmd' or 'flux', got {self.defocus_weighting!r}"
            )
        if self.camera is not None and not isinstance(self.camera, CameraModel):
            raise InputError("camera must be a CameraModel or None")

    @classmethod
    def from_lab_units(
        cls,
        pixel_size_um: float = 1.0,
        shape: tuple[int, int] = (480, 640),
        blur_um: float = 5.0,
        dof_um: float = 50.0,
        focal_offset_um: float = 0.0,
        rotation_deg: float = 0.0,
        view_azimuth_deg: float = 45.0,
        camera: CameraModel | None = None,
        defocus_weighting: DefocusWeighting = "ccmd",
    ) -> ImagingSettings:
        """Settings from µm (defaults: CCMD's 1 px/µm, blur 5 µm, dof 50 µm, 640 × 480)."""
        for name, value in (
            ("pixel size", pixel_size_um),
            ("blur", blur_um),
            ("depth of field", dof_um),
        ):
            check_number(f"{name} (µm)", value, positive=True)
        return cls(
            pixel_size=pixel_size_um * 1e-6,
            shape=tuple(shape),  # type: ignore[arg-type]
            blur=blur_um * 1e-6,
            depth_of_field=dof_um * 1e-6,
            focal_offset=focal_offset_um * 1e-6,
            rotation_deg=rotation_deg,
            view_azimuth_deg=view_azimuth_deg,
            camera=camera,
            defocus_weighting=defocus_weighting,
        )

    def to_lab_units(self) -> dict[str, Any]:
        """Plain-JSON form in µm (the inverse of ``from_lab_units(**d)`` via :meth:`from_dict`)."""

        def um(value: float) -> float:  # 12 significant digits: no conversion noise
            return float(f"{value * 1e6:.12g}")

        return {
            "pixel_size_um": um(self.pixel_size),
            "shape": list(self.shape),
            "blur_um": um(self.blur),
            "dof_um": um(self.depth_of_field),
            "focal_offset_um": um(self.focal_offset),
            "rotation_deg": self.rotation_deg,
            "view_azimuth_deg": self.view_azimuth_deg,
            "camera": None if self.camera is None else self.camera.to_dict(),
            "defocus_weighting": self.defocus_weighting,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImagingSettings:
        """Settings from :meth:`to_lab_units` output; unknown keys are an InputError."""
        data = dict(data)
        camera = data.pop("camera", None)
        allowed = {
            "pixel_size_um",
            "shape",
            "blur_um",
            "dof_um",
            "focal_offset_um",
            "rotation_deg",
            "view_azimuth_deg",
            "defocus_weighting",
        }
        unknown = set(data) - allowed
        if unknown:
            raise InputError(f"unknown imaging parameter(s): {', '.join(sorted(unknown))}")
        if "shape" in data:
            data["shape"] = tuple(data["shape"])
        cam = None if camera is None else CameraModel.from_dict(camera)
        return cls.from_lab_units(camera=cam, **data)

    def sigma_px(self, defocus: np.ndarray | float) -> np.ndarray:
        """Gaussian σ in pixels of a slice at distance ``defocus`` (m) from the focal plane."""
        w0 = self.blur / self.pixel_size
        return w0 / math.sqrt(2.0) * (1.0 + np.abs(defocus) / self.depth_of_field)


def _check_samples(samples: np.ndarray, fluorescing: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    arr = np.asarray(samples, dtype=np.float64)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise InputError(f"samples must have shape (S, N, 3) in m, got {arr.shape}")
    mask = np.asarray(fluorescing)
    if mask.shape != (arr.shape[1],):
        raise InputError(f"fluorescing must have shape (N,) = ({arr.shape[1]},), got {mask.shape}")
    mask = mask.astype(bool)
    if not np.isfinite(arr[:, mask]).all():
        raise InputError("samples contain NaN or infinite positions")
    return arr, mask


def render(
    samples: np.ndarray,
    fluorescing: np.ndarray,
    imaging: ImagingSettings,
    rng: np.random.Generator | int | None = None,
    effects: CameraEffects | None = None,
) -> np.ndarray:
    """Render sampled ion positions as a fluorescence image.

    Args:
        samples: ``(S, N, 3)`` (or ``(N, 3)``) positions x, y, z in m, sampled over the
            image-gathering phase; each ion's S samples share one ion's light.
        fluorescing: ``(N,)`` bool, True for ions that appear (laser-cooled species).
        imaging: the optics, frame and optional camera.
        rng: generator (or seed) for the camera noise and hot pixels; None draws fresh
            entropy. Unused without a camera or effects.
        effects: laboratory imperfections (:mod:`ccount_core.simulation.camera`) added to
            the light and the counts; None (default) adds none and leaves the image as it was.

    Returns:
        ``(rows, cols)`` float32: ion exposures (an in-focus ion integrates to 1), or camera
        counts when ``imaging.camera`` is set.
    """
    if not isinstance(imaging, ImagingSettings):
        raise InputError("imaging must be an ImagingSettings")
    arr, mask = _check_samples(samples, fluorescing)
    if effects is not None and not isinstance(effects, CameraEffects):
        raise InputError("effects must be a CameraEffects or None")
    image = _render_light(arr[:, mask].reshape(-1, 3), arr.shape[0], imaging)
    if imaging.camera is None and effects is None:
        return image.astype(np.float32)
    generator = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    if effects is not None:
        return apply_effects(image, effects, imaging, generator)
    assert imaging.camera is not None
    return imaging.camera.apply(image, generator)


def _render_light(points: np.ndarray, n_samples: int, imaging: ImagingSettings) -> np.ndarray:
    """Noise-free image (float64, ion exposures) of ``points`` (M, 3) m, S samples per ion."""
    rows, cols = imaging.shape
    image = np.zeros((rows, cols), np.float64)
    if points.shape[0] == 0:
        return image
    p = imaging.pixel_size
    theta = math.radians(imaging.rotation_deg)
    phi = math.radians(imaging.view_azimuth_deg)
    # Radial plane turned to the camera: x along the image rows, y along the line of sight.
    x = points[:, 0] * math.cos(phi) - points[:, 1] * math.sin(phi)
    y = points[:, 0] * math.sin(phi) + points[:, 1] * math.cos(phi)
    z = points[:, 2]
    # Image-plane coordinates: u to the right (columns), v downwards (rows). A point on the
    # +z axis turned counter-clockwise on screen moves up, i.e. to smaller v.
    u = z * math.cos(theta) + x * math.sin(theta)
    v = -z * math.sin(theta) + x * math.cos(theta)
    slice_index = np.floor((y - imaging.focal_offset) / p).astype(np.int64)
    # Slices k and -k-1 lie at the same |Δ| = (k + 1/2) p: blur them together.
    key = np.where(slice_index >= 0, slice_index, -slice_index - 1)
    sigma_key = imaging.sigma_px((np.arange(key.max() + 1) + 0.5) * p)
    pad = int(min(_MAX_PAD_PX, math.ceil(_TRUNCATE * sigma_key.max()) + 1))
    col = np.floor(u / p + cols / 2).astype(np.int64) + pad
    row = np.floor(v / p + rows / 2).astype(np.int64) + pad
    prow, pcol = rows + 2 * pad, cols + 2 * pad
    inside = (row >= 0) & (row < prow) & (col >= 0) & (col < pcol)
    row, col, key = row[inside], col[inside], key[inside]
    if key.size == 0:
        return image
    # One region holds every slice's light: the points' bounding box plus the widest blur.
    r0, r1 = max(int(row.min()) - pad, 0), min(int(row.max()) + pad + 1, prow)
    c0, c1 = max(int(col.min()) - pad, 0), min(int(col.max()) + pad + 1, pcol)
    h, w = r1 - r0, c1 - c0
    flat = (row - r0) * w + (col - c0)
    order = np.argsort(-key, kind="stable")  # most defocused slices first
    flat, key = flat[order], key[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    ends = np.r_[starts[1:], key.size]
    sigma_focus = imaging.sigma_px(0.0)
    # Gaussian blurs compose (σ² add), so Σ_k G(σ_k) h_k is built as a cascade from the widest
    # slice inwards: acc ← G(√(σ_prev² − σ_k²)) acc + h_k, then one final G(σ_min). Each step
    # is a blur of about one pixel instead of a full-width blur per slice.
    acc = np.zeros((h, w), np.float64)
    prev = None
    for a, b in zip(starts, ends, strict=True):
        sigma = float(sigma_key[key[a]])
        if prev is not None:
            acc = gaussian_filter(
                acc, math.sqrt(prev**2 - sigma**2), mode="constant", truncate=_TRUNCATE
            )
        scale = 1.0 / n_samples
        if imaging.defocus_weighting == "ccmd":
            scale *= (sigma_focus / sigma) ** 2
        acc += scale * np.bincount(flat[a:b], minlength=h * w).reshape(h, w)
        prev = sigma
    canvas = np.zeros((prow, pcol), np.float64)
    canvas[r0:r1, c0:c1] = gaussian_filter(acc, prev, mode="constant", truncate=_TRUNCATE)
    image[:] = canvas[pad : pad + rows, pad : pad + cols]
    return image
