"""Light beyond the crystal's outline: a PSF with wide wings is measured and noted, camera
noise, backgrounds, hot pixels and grey levels are not taken for it (issue 27, point 4)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ccount_core.image.ellipse import Ellipse, fit_ellipse
from ccount_core.image.halo import HALO_LIMIT, halo_light, halo_note
from ccount_core.image.preprocess import PreprocessConfig, prepare_stack
from ccount_core.simulation import IonGroup, SimulationSettings, TrapSettings, simulate
from ccount_core.simulation.camera import Background, CameraEffects, HotPixels, PsfWings
from ccount_core.simulation.render import CameraModel, ImagingSettings, render

CFG = PreprocessConfig(model_pixel_size_um=6.0, output_shape=(96, 48))  # the shipped models'
CAMERA = CameraModel(photons_per_ion=2000.0, background=2.0, read_noise=2.0, offset=100.0)
EMCCD = CameraModel(photons_per_ion=300.0, background=1.0, em_gain=300.0, read_noise=30.0)
EIGHT_BIT = CameraModel(photons_per_ion=2000.0, read_noise=2.0, offset=5.0, bit_depth=8)


@pytest.fixture(scope="module")
def crystal() -> np.ndarray:
    """MD samples (S, N, 3) m of 150 Ca+ ions."""
    trap = TrapSettings.from_lab_units(v_rf=220.0, v_end=2.5, eta=0.28)
    return simulate(trap, [IonGroup("Ca+", 150)], SimulationSettings(seed=5), None).samples


def frame(
    samples: np.ndarray, effects: CameraEffects | None = None, camera: CameraModel | None = None
) -> np.ndarray:
    """The crystal as the training images show it (2 µm pixels, 480 x 640 µm)."""
    imaging = ImagingSettings.from_lab_units(
        pixel_size_um=2.0, shape=(240, 320), blur_um=5.0, dof_um=50.0, camera=camera
    )
    lit = np.ones(samples.shape[1], bool)
    return render(samples, lit, imaging, np.random.default_rng(3), effects)


def halo(img: np.ndarray) -> float:
    return halo_light(img, fit_ellipse(img), 2.0)


def test_the_halo_is_the_rings_light_over_the_crystals() -> None:
    """A uniform ellipse of light 1 with 0.05 in the ring 15-40 µm out and 0 beyond reads
    0.05, and a linear gradient under it (averaging out over rings centred on the crystal)
    or a few hot pixels in the rings leave that."""
    rows, cols = np.indices((300, 400), dtype=float)
    e = Ellipse(150.0, 200.0, 60.0, 25.0, 20.0)  # px of 2 µm
    dr, dc = e.major_direction
    u = (cols - 200.0) * dc + (rows - 150.0) * dr
    v = (cols - 200.0) * dr - (rows - 150.0) * dc

    def inside(grow_um: float) -> np.ndarray:
        g = grow_um / 2.0
        return (u / (60.0 + g)) ** 2 + (v / (25.0 + g)) ** 2 < 1.0

    img = np.where(inside(0.0), 1.0, np.where(inside(40.0) & ~inside(15.0), 0.05, 0.0))
    assert halo_light(img.astype(np.float32), e, 2.0) == pytest.approx(0.05, rel=1e-4)
    tilted = img + 0.3 + 1e-4 * (cols - 0.5 * rows)  # the ramp's spread reads as noise
    assert halo_light(tilted.astype(np.float32), e, 2.0) == pytest.approx(0.05, rel=0.05)
    hot = img.copy()
    hot.flat[np.random.default_rng(0).choice(hot.size, 120, replace=False)] = 5.0  # 0.1 %
    assert halo_light(hot.astype(np.float32), e, 2.0) == pytest.approx(0.05, rel=0.03)
    # The same light in µm: a camera of 1 µm pixels sees the ring at twice the pixels.
    fine = np.kron(img, np.ones((2, 2))).astype(np.float32)
    e_fine = Ellipse(300.5, 400.5, 120.0, 50.0, 20.0)
    assert halo_light(fine, e_fine, 1.0) == pytest.approx(0.05, rel=0.03)


def test_wide_psf_wings_are_measured_and_noted(crystal) -> None:
    levels = [halo(frame(crystal, CameraEffects(wings=PsfWings(w, 10e-6)))) for w in (0.1, 0.3)]
    clean = frame(crystal)
    assert halo(clean) < 1e-5 and halo_note(halo(clean)) is None
    assert 0.0 < levels[0] < HALO_LIMIT < levels[1]  # 10 % of the light in wings passes
    wide = frame(crystal, CameraEffects(wings=PsfWings(0.3, 10e-6)))
    note = halo_note(halo(wide))
    assert note.startswith("halo: ") and "the count reads high" in note
    # The preparation notes it, so every count of the frame carries it.
    out = prepare_stack(np.stack([clean, wide]), CFG, camera_pixel_size_um=2.0)
    assert [any(n.startswith("halo: ") for n in e.notes) for e in out.ellipses] == [
        False,
        True,
    ]
    assert [e.halo_light for e in out.ellipses] == [halo(clean), halo(wide)]  # recorded


@pytest.mark.parametrize(
    "effects, camera",
    [
        (CameraEffects(exposure=0.6), CAMERA),
        (CameraEffects(exposure=0.6), EMCCD),
        (CameraEffects(exposure=0.8), EIGHT_BIT),
        (CameraEffects(background=Background(0.0, 0.15, 30.0)), None),
        (CameraEffects(background=Background(0.15)), None),
        (CameraEffects(hot_pixels=HotPixels(1e-3, 1.0), exposure=0.6), CAMERA),
    ],
    ids=["sCMOS", "EMCCD", "8-bit", "gradient", "uniform background", "hot pixels"],
)
def test_cameras_and_backgrounds_are_not_taken_for_a_halo(crystal, effects, camera) -> None:
    img = frame(crystal, effects, camera)
    if camera is EIGHT_BIT:
        img = img.astype(np.uint8)  # as the file would hold it
    assert halo(img) < HALO_LIMIT / 4


def test_no_halo_without_room_around_the_crystal(crystal) -> None:
    """A frame cut 30 µm around the crystal has no background ring: NaN, and no note."""
    img = frame(crystal, CameraEffects(wings=PsfWings(0.3, 10e-6)))
    e = fit_ellipse(img)
    hr, hc = e.half_extent()
    r, c = round(e.center_row), round(e.center_col)
    cut = np.ascontiguousarray(
        img[r - int(hr + 15) : r + int(hr + 15), c - int(hc + 15) : c + int(hc + 15)]
    )
    assert math.isnan(halo(cut))
    assert halo_note(halo(cut)) is None
