"""Rendering: spot widths and positions against CCMD's formula, masks, rotation, camera noise."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ccount_core.errors import InputError
from ccount_core.simulation.render import CameraModel, ImagingSettings, render

UM = 1e-6


def _moments(img: np.ndarray) -> tuple[float, float, float, float, float]:
    """Total, centroid (row, col) and variances (row, col) of an image, pixels."""
    total = float(img.sum())
    r, c = np.indices(img.shape)
    mr, mc = (img * r).sum() / total, (img * c).sum() / total
    vr = (img * (r - mr) ** 2).sum() / total
    vc = (img * (c - mc) ** 2).sum() / total
    return total, float(mr), float(mc), float(vr), float(vc)


def _one_ion(x: float, y: float, z: float) -> np.ndarray:
    return np.array([[[x, y, z]]])


def test_in_focus_ion_is_a_gaussian_of_ccmd_width_at_its_pixel() -> None:
    imaging = ImagingSettings.from_lab_units(shape=(101, 121), view_azimuth_deg=0.0)
    # The trap centre is the image centre, pixel coordinate ((rows-1)/2, (cols-1)/2) =
    # (50, 60); positions snap to the pixel they fall in (CCMD bins at one pixel).
    img = render(_one_ion(10.2 * UM, 0.2 * UM, 20.3 * UM), [True], imaging)
    assert img.dtype == np.float32 and img.shape == (101, 121)
    total, mr, mc, vr, vc = _moments(img.astype(np.float64))
    assert mr == pytest.approx(60, abs=0.02)
    assert mc == pytest.approx(80, abs=0.02)
    assert np.unravel_index(np.argmax(img), img.shape) == (60, 80)
    # CCMD: σ = blur/√2 (1 + |Δ|/dof); the slice centre is Δ = 0.5 µm.
    sigma = 5.0 / math.sqrt(2) * (1 + 0.5 / 50)
    assert math.sqrt(vr) == pytest.approx(sigma, rel=0.01)
    assert math.sqrt(vc) == pytest.approx(sigma, rel=0.01)
    # CCMD weighting: light ∝ (σ_focus/σ)², ≈ 1 in focus.
    assert total == pytest.approx((1 / (1 + 0.5 / 50)) ** 2, rel=1e-4)


@pytest.mark.parametrize("depth_um", [-80.0, 37.0, 120.0])
def test_defocus_blur_grows_as_ccmd_specifies(depth_um: float) -> None:
    blur, dof = 4.0, 40.0
    imaging = ImagingSettings.from_lab_units(
        shape=(161, 161), blur_um=blur, dof_um=dof, view_azimuth_deg=0.0
    )
    flux = ImagingSettings.from_lab_units(
        shape=(161, 161),
        blur_um=blur,
        dof_um=dof,
        defocus_weighting="flux",
        view_azimuth_deg=0.0,
    )
    ion = _one_ion(0.5 * UM, (depth_um + 0.5) * UM, 0.5 * UM)
    delta = abs(math.floor(depth_um + 0.5) + 0.5)  # slice-centre distance, µm
    sigma = blur / math.sqrt(2) * (1 + delta / dof)
    total, _, _, vr, vc = _moments(render(ion, [True], imaging).astype(np.float64))
    assert math.sqrt(vr) == pytest.approx(sigma, rel=0.01)
    assert math.sqrt(vc) == pytest.approx(sigma, rel=0.01)
    assert total == pytest.approx((blur / math.sqrt(2) / sigma) ** 2, rel=1e-3)
    total_flux = float(render(ion, [True], flux).sum())
    assert total_flux == pytest.approx(1.0, rel=1e-3)


def test_focal_offset_moves_the_sharp_plane() -> None:
    imaging = ImagingSettings.from_lab_units(
        shape=(81, 81), focal_offset_um=30.0, view_azimuth_deg=0.0
    )
    sharp = render(_one_ion(0.5 * UM, 30.2 * UM, 0.5 * UM), [True], imaging)
    soft = render(_one_ion(0.5 * UM, 0.2 * UM, 0.5 * UM), [True], imaging)
    assert sharp.max() > 2 * soft.max()


def test_non_fluorescing_ions_are_invisible() -> None:
    imaging = ImagingSettings.from_lab_units(shape=(64, 96))
    samples = np.array([[[0.0, 0.0, -20 * UM], [0.0, 0.0, 20 * UM]]])
    both = render(samples, [True, True], imaging)
    only_left = render(samples, [True, False], imaging)
    alone = render(samples[:, :1], [True], imaging)
    np.testing.assert_array_equal(only_left, alone)
    assert both.sum() == pytest.approx(2 * only_left.sum(), rel=1e-5)
    assert render(samples, [False, False], imaging).max() == 0.0


def test_samples_are_time_averaged() -> None:
    """An ion sampled at two places gives half its light to each."""
    imaging = ImagingSettings.from_lab_units(shape=(64, 128))
    samples = np.array([[[0.0, 0.0, -30.5 * UM]], [[0.0, 0.0, 30.5 * UM]]])
    img = render(samples, [True], imaging).astype(np.float64)
    left, right = img[:, :64].sum(), img[:, 64:].sum()
    assert left == pytest.approx(right, rel=1e-6)
    single = render(samples[:1], [True], imaging).astype(np.float64)
    assert left == pytest.approx(0.5 * single.sum(), rel=1e-6)


@pytest.mark.parametrize("angle", [90.0, 30.0, -15.0])
def test_rotation_turns_the_crystal_counter_clockwise(angle: float) -> None:
    imaging = ImagingSettings.from_lab_units(
        shape=(201, 201), rotation_deg=angle, view_azimuth_deg=0.0
    )
    # An ion on the trap axis, 60 µm to the right of the centre when unrotated.
    _, mr, mc, _, _ = _moments(render(_one_ion(0.0, 0.2 * UM, 60 * UM), [True], imaging))
    t = math.radians(angle)
    # Counter-clockwise on screen (row 0 at the top): up is towards smaller rows.
    assert mc - 100 == pytest.approx(60 * math.cos(t), abs=0.8)
    assert mr - 100 == pytest.approx(-60 * math.sin(t), abs=0.8)


def test_default_view_is_ccmds_45_degrees_between_the_electrodes() -> None:
    """CCMD images along (x + y)/√2 with rows along (x − y)/√2."""
    ccmd = ImagingSettings.from_lab_units(shape=(101, 101), blur_um=1.0, dof_um=1e4)
    # An ion on the x axis: row offset x/√2, and in focus only because dof is huge.
    _, mr, _, _, _ = _moments(render(_one_ion(40 * UM, 0.0, 0.0), [True], ccmd))
    assert mr - 50 == pytest.approx(40 / math.sqrt(2), abs=0.6)
    # An ion on the line of sight (x = y) projects onto the axis row and is defocused.
    along = _one_ion(30 * UM, 30 * UM, 0.0)
    _, mr, _, _, _ = _moments(render(along, [True], ccmd))
    assert mr == pytest.approx(50, abs=0.6)
    sharp = ImagingSettings.from_lab_units(shape=(101, 101))
    soft = render(along, [True], sharp)
    _, _, _, vr_soft, _ = _moments(soft)
    depth = 30 * math.sqrt(2)
    assert math.sqrt(vr_soft) == pytest.approx(
        5 / math.sqrt(2) * (1 + (math.floor(depth) + 0.5) / 50), rel=0.01
    )


def test_trap_axis_is_horizontal_and_centred() -> None:
    rng = np.random.default_rng(3)
    n = 200
    pos = rng.normal(size=(n, 3)) * np.array([8 * UM, 8 * UM, 60 * UM])
    img = render(pos[None], np.ones(n, bool), ImagingSettings.from_lab_units(shape=(120, 200)))
    _, mr, mc, vr, vc = _moments(img.astype(np.float64))
    assert vc > 10 * vr
    assert mr == pytest.approx(59.5, abs=2.0) and mc == pytest.approx(99.5, abs=8.0)


def _flat(camera: CameraModel, seed: int = 0) -> np.ndarray:
    return camera.apply(np.zeros((400, 400)), np.random.default_rng(seed)).astype(np.float64)


def test_camera_shot_and_read_noise_statistics() -> None:
    cam = CameraModel(background=40.0, read_noise=3.0, offset=100.0, electrons_per_count=1.0)
    frame = _flat(cam)
    assert frame.mean() == pytest.approx(140.0, rel=0.003)
    # Poisson variance + read noise² + rounding (1/12).
    assert frame.var() == pytest.approx(40.0 + 9.0 + 1 / 12, rel=0.03)


def test_emccd_gain_doubles_the_shot_noise_variance() -> None:
    cam = CameraModel(
        background=20.0, em_gain=50.0, read_noise=10.0, electrons_per_count=5.0, offset=200.0
    )
    frame = _flat(cam, seed=4)
    assert frame.mean() == pytest.approx(200.0 + 20.0 * 50.0 / 5.0, rel=0.005)
    expected_var = (2 * 20.0 * 50.0**2 + 10.0**2) / 5.0**2
    assert frame.var() == pytest.approx(expected_var, rel=0.04)


def test_camera_signal_scales_with_photons_and_saturates() -> None:
    imaging = ImagingSettings.from_lab_units(
        shape=(64, 64),
        camera=CameraModel(
            photons_per_ion=1e6,
            background=0.0,
            shot_noise=False,
            read_noise=0.0,
            offset=0.0,
            bit_depth=12,
        ),
    )
    img = render(_one_ion(0.5 * UM, 0.0, 0.5 * UM), [True], imaging, rng=0)
    assert img.max() == 4095.0
    dim = ImagingSettings.from_lab_units(
        shape=(64, 64),
        camera=CameraModel(
            photons_per_ion=1e4, background=0.0, shot_noise=False, read_noise=0.0, offset=0.0
        ),
    )
    light = render(
        _one_ion(0.5 * UM, 0.0, 0.5 * UM), [True], ImagingSettings.from_lab_units(shape=(64, 64))
    )
    counts = render(_one_ion(0.5 * UM, 0.0, 0.5 * UM), [True], dim, rng=0)
    assert float(counts.sum()) == pytest.approx(1e4 * float(light.sum()), rel=0.01)


def test_seeds_reproduce_noisy_frames() -> None:
    imaging = ImagingSettings.from_lab_units(shape=(48, 64), camera=CameraModel(em_gain=30.0))
    ion = _one_ion(0.0, 0.0, 0.0)
    a = render(ion, [True], imaging, rng=7)
    b = render(ion, [True], imaging, rng=np.random.default_rng(7))
    c = render(ion, [True], imaging, rng=8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_settings_round_trip_through_lab_units() -> None:
    imaging = ImagingSettings.from_lab_units(
        pixel_size_um=1.6,
        shape=(300, 400),
        blur_um=3.0,
        dof_um=70.0,
        focal_offset_um=-5.0,
        rotation_deg=4.0,
        camera=CameraModel(em_gain=100.0),
    )
    again = ImagingSettings.from_dict(imaging.to_lab_units())
    assert again.shape == imaging.shape and again.camera == imaging.camera
    for name in ("pixel_size", "blur", "depth_of_field", "focal_offset", "rotation_deg"):
        assert getattr(again, name) == pytest.approx(getattr(imaging, name), rel=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"pixel_size_um": 0.0}, "pixel size"),
        ({"blur_um": -1.0}, "blur"),
        ({"dof_um": float("nan")}, "depth of field"),
        ({"shape": (0, 10)}, "shape"),
        ({"rotation_deg": float("inf")}, "rotation_deg"),
    ],
)
def test_bad_settings_name_the_parameter(kwargs: dict, word: str) -> None:
    with pytest.raises(InputError, match=word):
        ImagingSettings.from_lab_units(**kwargs)


def test_bad_samples_are_input_errors() -> None:
    imaging = ImagingSettings.from_lab_units(shape=(8, 8))
    with pytest.raises(InputError, match="samples"):
        render(np.zeros((2, 3, 2)), [True] * 3, imaging)
    with pytest.raises(InputError, match="fluorescing"):
        render(np.zeros((2, 3, 3)), [True] * 2, imaging)
    with pytest.raises(InputError, match="NaN"):
        render(np.full((1, 1, 3), np.nan), [True], imaging)
    with pytest.raises(InputError, match="em_gain"):
        CameraModel(em_gain=0.5)


def test_matches_a_direct_slice_by_slice_rendering() -> None:
    """The blur cascade equals blurring every slice on its own with its σ and summing."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(11)
    n, s = 60, 5
    pos = rng.normal(size=(s, n, 3)) * np.array([25 * UM, 25 * UM, 60 * UM])
    imaging = ImagingSettings.from_lab_units(
        shape=(100, 180), view_azimuth_deg=0.0, focal_offset_um=7.0
    )
    fast = render(pos, np.ones(n, bool), imaging).astype(np.float64)
    pad = 80  # light from ions outside the frame spills in: render those too
    big = np.zeros((100 + 2 * pad, 180 + 2 * pad))
    pts = pos.reshape(-1, 3) / UM
    for x, y, z in pts:
        r, c = int(np.floor(x + 50)) + pad, int(np.floor(z + 90)) + pad
        delta = abs(np.floor(y - 7.0) + 0.5)
        sigma = 5 / math.sqrt(2) * (1 + delta / 50)
        spot = np.zeros_like(big)
        spot[r, c] = (5 / math.sqrt(2) / sigma) ** 2 / s
        big += gaussian_filter(spot, sigma, mode="constant", truncate=6.0)
    ref = big[pad:-pad, pad:-pad]
    assert np.abs(fast - ref).max() < 2e-3 * ref.max()
