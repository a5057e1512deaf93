"""Camera imperfections: each effect's numbers, and render() unchanged without them."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ccount_core.errors import InputError
from ccount_core.simulation.camera import (
    Background,
    CameraEffects,
    EdgeLaserProfile,
    HotPixels,
    LaserProfile,
    PsfWings,
    apply_effects,
    background_plane,
    defocus_blur,
    hot_pixels,
    laser_profile,
    psf_wings,
)
from ccount_core.simulation.render import CameraModel, ImagingSettings, render

UM = 1e-6


def point(shape: tuple[int, int] = (64, 80)) -> np.ndarray:
    img = np.zeros(shape)
    img[shape[0] // 2, shape[1] // 2] = 1.0
    return img


def test_laser_profile_is_the_gaussian_beam_along_or_across_the_axis() -> None:
    ones = np.ones((100, 120))
    # 2 µm pixels; pixel centres at (i + 0.5 - n/2) · p from the trap centre
    along = laser_profile(ones, LaserProfile(40 * UM), 2 * UM)
    r = 50 + 20  # radial distance 20.5 px = 41 µm
    assert along[r, 7] == pytest.approx(math.exp(-2 * (41 / 40) ** 2))
    assert np.ptp(along[r]) == 0  # a beam along the axis: constant along the columns
    across = laser_profile(ones, LaserProfile(40 * UM, offset=10 * UM, along_axis=False), 2 * UM)
    assert across[3, 60 + 20] == pytest.approx(math.exp(-2 * ((41 - 10) / 40) ** 2))
    turned = laser_profile(ones, LaserProfile(40 * UM), 2 * UM, rotation_deg=90)
    assert np.ptp(turned[:, 11]) == pytest.approx(
        0, abs=1e-12
    )  # the radial axis now runs along columns


@pytest.mark.parametrize("half_px", [10, 30])
def test_an_edge_level_beam_dims_any_crystals_edge_to_that_level(half_px: int) -> None:
    # a bar of light across the axis (radial half-extent half_px + 0.5 px), any size
    light = np.zeros((100, 120))
    light[50 - half_px - 1 : 50 + half_px + 1, 40:80] = 1.0
    out = laser_profile(light, EdgeLaserProfile(0.4), 2 * UM)
    assert out[50 + half_px, 60] == pytest.approx(0.4)  # the outermost lit row
    assert out[49, 60] > 0.99  # the centre is lit fully
    effects = CameraEffects.from_lab_units({"laser_edge_level": 0.4, "laser_along_axis": False})
    assert effects.profile == EdgeLaserProfile(0.4, 0.0, False)
    with pytest.raises(InputError, match="not both"):
        CameraEffects.from_lab_units({"laser_edge_level": 0.4, "laser_waist_um": 100})
    with pytest.raises(InputError, match="below 1"):
        EdgeLaserProfile(1.0)


def test_psf_wings_keep_the_light_and_move_the_fraction_out_of_the_core() -> None:
    img = point((201, 201))
    out = psf_wings(img, PsfWings(0.3, 4 * UM, beta=2.5), 1 * UM)
    assert out.sum() == pytest.approx(1.0, rel=1e-3)
    assert 0.7 < out[100, 100] < 0.72  # the core keeps 1 - fraction (+ the wings' own peak)
    assert out[100, 130] > 0  # 30 px out: the wings reach it


def test_defocus_is_a_disk_of_the_given_radius() -> None:
    out = defocus_blur(point((61, 61)), 10 * UM, 2 * UM)  # 5 px
    assert out.sum() == pytest.approx(1.0)
    assert out[30, 34] == pytest.approx(out[30, 30], rel=1e-6)  # flat inside
    assert out[30, 36] < 1e-9 and out[36, 30] < 1e-9  # nothing beyond the rim
    assert np.array_equal(defocus_blur(point(), 0.4 * UM, 1 * UM), point())  # < half a pixel


def test_background_runs_from_level_to_level_plus_gradient_in_its_direction() -> None:
    plane = background_plane((30, 40), Background(0.05, 0.15, 0.0), peak=2.0)
    assert plane.min() == pytest.approx(0.1) and plane.max() == pytest.approx(0.4)
    assert np.ptp(plane[:, 5]) == 0 and plane[0, -1] > plane[0, 0]  # rising to the right
    up = background_plane((30, 40), Background(0.0, 0.1, 90.0), peak=1.0)
    assert up[0, 0] == pytest.approx(0.1) and up[-1, 0] == 0  # 90°: rising upwards


def test_hot_pixels_are_the_fraction_and_clip_at_full_scale() -> None:
    img = np.full((100, 100), 10.0)
    out = hot_pixels(img, HotPixels(1e-3, 1.0), 255.0, np.random.default_rng(0))
    assert (out == 255).sum() == 10 and (out == 10).sum() == 9990


def test_without_effects_render_is_unchanged_and_empty_effects_add_nothing() -> None:
    rng = np.random.default_rng(3)
    samples = rng.normal(0, 20 * UM, (5, 40, 3))
    mask = np.ones(40, bool)
    imaging = ImagingSettings.from_lab_units(shape=(64, 96), camera=CameraModel())
    plain = render(samples, mask, imaging, 5)
    assert np.array_equal(plain, render(samples, mask, imaging, 5, effects=CameraEffects()))
    light = render(samples, mask, ImagingSettings.from_lab_units(shape=(64, 96)))
    assert np.array_equal(plain, imaging.camera.apply(light, np.random.default_rng(5)))


def test_exposure_puts_the_noise_free_peak_at_its_share_of_full_scale() -> None:
    light = defocus_blur(point(), 3 * UM, 1 * UM)
    cam = CameraModel(shot_noise=False, read_noise=0.0, bit_depth=8, offset=10.0)
    imaging = ImagingSettings.from_lab_units(shape=(64, 80), camera=cam)
    out = apply_effects(light, CameraEffects(exposure=0.5), imaging, np.random.default_rng(0))
    assert out.max() == pytest.approx(round(0.5 * 255))


@pytest.mark.parametrize(
    "make",
    [
        lambda: PsfWings(1.5, 1e-6),
        lambda: HotPixels(-0.1),
        lambda: LaserProfile(0.0),
        lambda: CameraEffects.from_lab_units({"laser_wasit_um": 100}),
    ],
)
def test_bad_effects_are_one_line_input_errors(make) -> None:
    with pytest.raises(InputError) as err:
        make()
    assert "\n" not in str(err.value)
