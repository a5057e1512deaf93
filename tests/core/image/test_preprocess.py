"""Preprocessing pipeline: ellipse finding, steps, config, stacks and bad input.

Truth comes from the synthetic crystals of the ``synthetic_crystal`` fixture (conftest.py here,
ion shells of known geometry), not from the code under test.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pickle
import subprocess
import sys
from dataclasses import replace

import dask
import dask.array as da
import numpy as np
import pytest
from scipy import ndimage as ndi

from ccount_core.errors import InputError
from ccount_core.image.preprocess import (
    Ellipse,
    PreparedStack,
    PreprocessConfig,
    apply_mask,
    background_plane,
    enhance_outer_layer,
    fit_ellipse,
    frame_transform,
    median_filter,
    normalize_brightness,
    prepare_frame,
    prepare_stack,
    resample,
    turn_needed,
)

# Every step off except the geometry: for checks of the geometry alone.
GEOMETRY_ONLY = PreprocessConfig(
    background="none", mask=False, median_size=0, normalize=False, output_shape=(320, 320)
)


def angle_diff(a: float, b: float) -> float:
    """Difference of two axis directions (deg), modulo 180, in [-90, 90)."""
    return (a - b + 90.0) % 180.0 - 90.0


def assert_close_ellipse(fit: Ellipse, truth: Ellipse) -> None:
    assert abs(fit.center_row - truth.center_row) < 1.0, (fit, truth)
    assert abs(fit.center_col - truth.center_col) < 1.0, (fit, truth)
    assert abs(fit.semi_major / truth.semi_major - 1) < 0.02, (fit, truth)
    assert abs(fit.semi_minor / truth.semi_minor - 1) < 0.02, (fit, truth)
    assert abs(angle_diff(fit.angle_deg, truth.angle_deg)) < 1.0, (fit, truth)


# ----------------------------------------------------------------------------- ellipse fit

FIT_CASES = {
    "clean": {},
    "noisy_snr3": {"snr": 3.0},
    "hot_pixels": {"hot_pixels": 80, "snr": 10.0},
    "noisy_hot_tilted": {"snr": 3.0, "hot_pixels": 80, "angle_deg": -23.0},
    "gradient": {"gradient": 0.6, "snr": 5.0},
    "hollow_core": {"hollow": 0.55, "snr": 5.0},
    "dim_outer_shell": {"dim_outer": 0.4, "snr": 5.0},
    "uneven_brightness": {"uneven": 0.6, "snr": 5.0},
    "flattened": {"a_t": 48.0, "a_r": 80.0, "angle_deg": 8.0, "snr": 5.0},
    "off_centre_steep": {"center": (110.0, 140.0), "angle_deg": 41.0, "snr": 3.0},
}


@pytest.mark.parametrize("case", sorted(FIT_CASES))
@pytest.mark.parametrize("seed", [0, 1])
def test_fit_ellipse_recovers_truth(case: str, seed: int, synthetic_crystal) -> None:
    img, truth = synthetic_crystal(seed=seed, **FIT_CASES[case])
    fit = fit_ellipse(img)
    assert_close_ellipse(fit, truth)
    assert 0.5 < fit.quality <= 1.0


def test_fit_ellipse_large_frame_and_integer_types(synthetic_crystal) -> None:
    img, truth = synthetic_crystal(
        shape=(512, 480),
        center=(250, 230),
        a_t=150,
        a_r=85,
        spacing=13,
        spot_sigma=2.4,
        depth_of_field=18,
        snr=3,
        angle_deg=5,
        hot_pixels=200,
    )
    assert_close_ellipse(fit_ellipse(img), truth)
    # uint32/int64 with values far above float32's 2^24 exact range: converted, not wrapped.
    big = (img.astype(np.float64) - img.min()) * 3e4 + 3e9  # max < 2^32
    for dtype in (np.uint32, np.int64, np.uint64):
        assert_close_ellipse(fit_ellipse(big.astype(dtype)), truth)


def test_quality_low_without_a_shell_ring() -> None:
    # A smooth filled blob (no ion shells): found coarsely, flagged by a low quality.
    rr, cc = np.mgrid[0:200, 0:200]
    inside = ((rr - 100) / 60.0) ** 2 + ((cc - 100) / 35.0) ** 2 < 1
    blob = ndi.gaussian_filter(inside.astype(np.float64), 4.0)
    fit = fit_ellipse(blob * 100 + 5)
    assert fit.quality <= 0.3
    assert abs(fit.center_row - 100) < 1 and abs(fit.center_col - 100) < 1


def test_ellipse_angle_convention_and_f() -> None:
    # Major axis 30 deg counter-clockwise (as displayed) from +col: up and to the right.
    e = Ellipse(50.0, 50.0, 20.0, 10.0, 30.0)
    dr, dc = e.major_direction
    assert dr < 0 and dc > 0
    end = (50 + 20 * dr, 50 + 20 * dc)
    assert math.isclose(e.normalized_radius2(end[0], end[1]), 1.0)
    side = (50 + 10 * dc, 50 - 10 * dr)  # along the minor axis
    assert math.isclose(e.normalized_radius2(side[0], side[1]), 1.0)
    assert Ellipse.from_axes(0, 0, 5, 9, 10).angle_deg == pytest.approx(-80.0)
    assert Ellipse.from_dict(e.to_dict()) == e
    with pytest.raises(InputError, match="semi_major"):
        Ellipse(0, 0, 1, 2, 0)


# -------------------------------------------------------------------------- pipeline steps


def test_user_ellipse_is_used_as_given(synthetic_crystal) -> None:
    img, _ = synthetic_crystal(snr=5.0)
    user = Ellipse(128.0, 128.0, 70.0, 40.0, 0.0)
    _, ell = prepare_frame(img, PreprocessConfig(), ellipse=user)
    assert ell is user
    with pytest.raises(InputError, match="ellipse"):
        prepare_frame(img, PreprocessConfig(), ellipse=(1, 2, 3))  # type: ignore[arg-type]


@pytest.mark.parametrize("margin_um", [0.0, 6.0])
def test_mask_leaves_nothing_outside_the_ellipse(margin_um: float, synthetic_crystal) -> None:
    img, _ = synthetic_crystal(snr=3.0, angle_deg=12.0, gradient=0.3)
    cfg = PreprocessConfig(mask_margin_um=margin_um, model_pixel_size_um=1.5)
    out, ell = prepare_frame(img, cfg, camera_pixel_size_um=1.5)
    tf = frame_transform(ell, cfg, 1.5)
    # Map every output pixel back to the input frame; outside the grown input ellipse -> 0.
    rr, cc = np.mgrid[0 : out.shape[0], 0 : out.shape[1]]
    pts = tf.to_input(np.column_stack([rr.ravel(), cc.ravel()]))
    m = margin_um / 1.5
    grown = Ellipse(
        ell.center_row, ell.center_col, ell.semi_major + m, ell.semi_minor + m, ell.angle_deg
    )
    f = grown.normalized_radius2(pts[:, 0], pts[:, 1]).reshape(out.shape)
    assert np.all(out[f > 1.0 + 1e-6] == 0.0)
    assert np.count_nonzero(out[f < 0.9]) > 0.9 * np.count_nonzero(f < 0.9)  # crystal kept


@pytest.mark.parametrize("target", [1.0, 37.5])
@pytest.mark.parametrize("amp", [0.0, 2.0])
def test_brightness_density_equals_target(target: float, amp: float, synthetic_crystal) -> None:
    img, _ = synthetic_crystal(snr=3.0, hot_pixels=40)
    cfg = PreprocessConfig(brightness_density=target, enhance_amplitude=amp)
    out, _ = prepare_frame(img, cfg)
    nz = out[out != 0]
    assert nz.size > 1000
    assert nz.sum(dtype=np.float64) / nz.size == pytest.approx(target, rel=1e-5)
    assert np.all(out >= 0)


def test_outer_layer_enhancement_follows_eq_2_3(synthetic_crystal) -> None:
    img, _ = synthetic_crystal(offset=0.0)
    base = PreprocessConfig(background="none", median_size=0, normalize=False, mask=False)
    enh = PreprocessConfig(
        background="none", median_size=0, normalize=False, mask=False, enhance_amplitude=1.5
    )
    out0, ell = prepare_frame(img, base)
    out1, _ = prepare_frame(img, enh, ellipse=ell)
    # Independent f: in the output the trap axis is vertical and the centre is the middle.
    h, w = out0.shape
    rr, cc = np.mgrid[0:h, 0:w]
    f = ((rr - (h - 1) / 2) / 80.0) ** 2 + ((cc - (w - 1) / 2) / 45.0) ** 2  # truth axes
    sel = out0 > 0.05 * out0.max()
    ratio = out1[sel] / out0[sel]
    assert np.allclose(ratio, 1 + 1.5 * f[sel] ** 2, rtol=0.06, atol=0.06)
    assert ratio.max() > 2.2  # the outer layer really is brightened (~1 + A at f = 1)


@pytest.mark.parametrize(("resampling", "turn"), [("bilinear", False), ("area", True)])
def test_pipeline_is_the_composition_of_the_step_functions(
    resampling: str, turn: bool, synthetic_crystal
) -> None:
    img, _ = synthetic_crystal(snr=3.0, angle_deg=-7.0, gradient=0.4, hot_pixels=30)
    cfg = PreprocessConfig(
        model_pixel_size_um=2.0,
        enhance_amplitude=0.8,
        mask_margin_um=4.0,
        brightness_density=3.0,
        resampling=resampling,
        canonical_turn=turn,
    )
    prepared, ell = prepare_frame(img, cfg, camera_pixel_size_um=1.0)
    assert ell == fit_ellipse(img)
    tf = frame_transform(ell, cfg, 1.0)
    assert tf.zoom == 0.5
    margin_px = 4.0 / 2.0
    out = resample(
        img,
        tf,
        cfg.output_shape,
        background_plane(img, ell, "plane", margin_px / tf.zoom),
        resampling,
    )
    if turn and turn_needed(out):
        out = out[::-1, ::-1]
    out = median_filter(out, 3, "cross")
    out = apply_mask(out, tf.output_ellipse, margin_px)
    out = enhance_outer_layer(out, tf.output_ellipse, 0.8)
    out = normalize_brightness(out, 3.0)
    assert np.allclose(prepared, out, rtol=1e-5, atol=1e-6)
    with pytest.raises(InputError, match="non-zero"):
        normalize_brightness(np.zeros((5, 5)), 1.0)


def test_median_is_five_point_cross() -> None:
    rng = np.random.default_rng(5)
    a = rng.normal(size=(40, 30)).astype(np.float32)
    cross = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=bool)
    ref = ndi.median_filter(a, footprint=cross, mode="nearest")
    from ccount_core.image.preprocess import median_filter

    assert np.array_equal(median_filter(a, 3, "cross"), ref)
    assert np.array_equal(median_filter(a, 5, "square"), ndi.median_filter(a, 5, mode="nearest"))


@pytest.mark.parametrize(("a_t", "a_r", "angle"), [(80.0, 45.0, 17.0), (45.0, 75.0, -9.0)])
def test_rotation_makes_trap_axis_vertical_and_round_trips(
    a_t: float, a_r: float, angle: float, synthetic_crystal
) -> None:
    img, truth = synthetic_crystal(
        a_t=a_t, a_r=a_r, angle_deg=angle, offset=0.0, center=(120.0, 135.0)
    )
    # The trap axis stated: an oblate crystal (a_t < a_r) keeps its true axis.
    out, ell = prepare_frame(img, GEOMETRY_ONLY, trap_axis=angle)
    # The fitted ellipse of the prepared frame: centred, trap-axis semi-axis along the rows.
    fit = fit_ellipse(out)
    assert abs(fit.center_row - 159.5) < 1 and abs(fit.center_col - 159.5) < 1
    vertical = 90.0 if a_t > a_r else 0.0
    assert abs(angle_diff(fit.angle_deg, vertical)) < 1.0
    assert fit.semi_major == pytest.approx(max(a_t, a_r), rel=0.02)
    # Round trip: map the prepared frame back into the input frame; it matches the input.
    tf = frame_transform(ell, GEOMETRY_ONLY, trap_axis=angle)
    inv = np.linalg.inv(tf.matrix)
    back = ndi.affine_transform(
        out,
        inv,
        offset=np.asarray(tf.output_center) - inv @ np.asarray(tf.input_center),
        output_shape=img.shape,
        order=1,
    )
    region = truth.normalized_radius2(*np.mgrid[0 : img.shape[0], 0 : img.shape[1]]) < 1.2
    err = np.abs(back[region] - img[region]).mean() / img[region].mean()
    assert err < 0.08
    pts = np.array([[10.0, 20.0], [200.0, 31.5]])
    assert np.allclose(tf.to_input(tf.to_output(pts)), pts)


@pytest.mark.parametrize("angle", [0.0, 20.0])
def test_rotation_is_a_clockwise_turn_not_a_mirror(angle: float, synthetic_crystal) -> None:
    """The frame turns clockwise (as displayed) by 90° + trap-axis angle: right -> down."""
    img, truth = synthetic_crystal(angle_deg=angle, offset=0.0, center=(128.0, 128.0))
    # A bright marker 60 px from the centre along the trap axis, 30 px across it (to the
    # left of the axis when looking along it, i.e. counter-clockwise of it).
    t = math.radians(angle)
    along, across = np.array([-math.sin(t), math.cos(t)]), np.array([-math.cos(t), -math.sin(t)])
    r, c = np.array([128.0, 128.0]) + 60 * along + 30 * across
    img[round(r) - 1 : round(r) + 2, round(c) - 1 : round(c) + 2] += 50 * img.max()
    cfg = replace(GEOMETRY_ONLY, median_size=0)
    out, _ = prepare_frame(img, cfg, ellipse=truth)
    pr, pc = np.unravel_index(np.argmax(out), out.shape)
    # Turned clockwise: along the trap axis -> down (+rows), counter-clockwise of it -> right.
    assert abs(pr - (159.5 + 60)) <= 1.5 and abs(pc - (159.5 + 30)) <= 1.5


def test_given_rotation_angle_and_no_rotation(synthetic_crystal) -> None:
    img, _ = synthetic_crystal(angle_deg=12.0, offset=0.0)
    auto, ell = prepare_frame(img, GEOMETRY_ONLY)
    fixed, _ = prepare_frame(img, replace(GEOMETRY_ONLY, rotation_deg=12.0), ellipse=ell)
    assert np.abs(auto - fixed).max() < 0.05 * auto.max()  # fitted angle within ~0.3 deg
    cfg = replace(GEOMETRY_ONLY, rotate=False)
    kept, _ = prepare_frame(img, cfg, ellipse=ell)
    assert abs(angle_diff(fit_ellipse(kept).angle_deg, 12.0)) < 1.0
    assert frame_transform(ell, cfg).output_ellipse.angle_deg == pytest.approx(ell.angle_deg)
    # A round crystal's angle is noise: the camera's orientation is kept (trap axis 0 deg).
    round_ell = Ellipse(128.0, 128.0, 50.0, 49.0, 37.0)
    assert frame_transform(round_ell, PreprocessConfig()).trap_axis_deg == 0.0
    # An oblate crystal tilted 10 deg: auto takes its long axis, a stated horizontal trap
    # axis its minor axis, and a vertical one its major axis.
    oblate = Ellipse(128.0, 128.0, 70.0, 40.0, -80.0)
    assert frame_transform(oblate, PreprocessConfig()).trap_axis_deg == pytest.approx(-80.0)
    assert frame_transform(oblate, PreprocessConfig(), trap_axis=0.0).trap_axis_deg == 10.0
    assert frame_transform(oblate, PreprocessConfig(), trap_axis=90.0).trap_axis_deg == -80.0
    # A list of frames is accepted as a stack.
    out = prepare_stack([img, img], cfg, ellipses=ell)
    assert np.array_equal(out.images[1], kept)


def test_resampling_keeps_physical_scale_and_stretch_fills(synthetic_crystal) -> None:
    img, truth = synthetic_crystal(snr=5.0)
    # Camera 1.5 µm/px, model 3 µm/px: the crystal halves in pixels, whatever output shape.
    for shape in [(200, 120), (320, 192)]:
        cfg = PreprocessConfig(
            model_pixel_size_um=3.0,
            output_shape=shape,
            mask=False,
            normalize=False,
            background="none",
        )
        out, _ = prepare_frame(img, cfg, camera_pixel_size_um=1.5)
        fit = fit_ellipse(np.pad(out, 20))
        assert fit.semi_major == pytest.approx(truth.semi_major / 2, rel=0.03)
        assert fit.semi_minor == pytest.approx(truth.semi_minor / 2, rel=0.03)
    cfg = PreprocessConfig(output_shape=(200, 200), stretch_to_fit=True, mask_margin_um=0.0)
    out, ell = prepare_frame(img, cfg)
    oe = frame_transform(ell, cfg).output_ellipse
    assert oe.semi_major == pytest.approx(99.5 - 1.0, rel=1e-6)  # fills the rows


def test_stretch_to_fit_keeps_the_margin_in_micrometres(synthetic_crystal) -> None:
    # The same crystal, once small and once twice as large in pixels: stretched, both fill
    # the output with the crystal plus a 10 µm margin, whatever the zoom.
    small, _ = synthetic_crystal(a_t=40.0, a_r=22.0, spacing=3.5, spot_sigma=0.65)
    large, _ = synthetic_crystal(a_t=80.0, a_r=45.0)
    cfg = PreprocessConfig(output_shape=(96, 48), stretch_to_fit=True, mask_margin_um=10.0)
    outs = []
    for img, cam in [(small, 2.0), (large, 1.0)]:
        out, ell = prepare_frame(img, cfg, camera_pixel_size_um=cam)
        tf = frame_transform(ell, cfg, camera_pixel_size_um=cam)
        assert tf.margin_px / tf.zoom * cam == pytest.approx(10.0)  # µm at the camera's scale
        oe = tf.output_ellipse
        fill = max(
            (oe.semi_major + tf.margin_px) / (47.5 - 1.0),
            (oe.semi_minor + tf.margin_px) / (23.5 - 1.0),
        )
        assert fill == pytest.approx(1.0, rel=1e-6)  # the wider side fills its output side
        outs.append(out)
    assert outs[0].shape == outs[1].shape == (96, 48)
    # the two prepared images show the same crystal: nearly the same picture
    assert np.corrcoef(outs[0].ravel(), outs[1].ravel())[0, 1] > 0.8
    # without stretching, the margin is mask_margin_um at the model's pixel size
    plain = PreprocessConfig(model_pixel_size_um=4.0, output_shape=(96, 48))
    _, ell = prepare_frame(large, plain, camera_pixel_size_um=1.0)
    assert frame_transform(ell, plain, 1.0).margin_px == pytest.approx(2.5)


def test_crystal_larger_than_output_is_refused(synthetic_crystal) -> None:
    img, _ = synthetic_crystal()
    with pytest.raises(InputError, match="does not fit the output field"):
        prepare_frame(img, PreprocessConfig(output_shape=(100, 100)))
    with pytest.raises(InputError, match="camera_pixel_size_um"):
        prepare_frame(img, PreprocessConfig(), camera_pixel_size_um=-1.0)


def test_background_plane_removes_gradient(synthetic_crystal) -> None:
    img, _ = synthetic_crystal(gradient=2.0, offset=500.0)
    flat, _ = synthetic_crystal(offset=0.0)
    cfg = PreprocessConfig(median_size=0, normalize=False, mask=False)
    out, ell = prepare_frame(img, cfg)
    ref, _ = prepare_frame(
        flat,
        PreprocessConfig(median_size=0, normalize=False, mask=False, background="none"),
        ellipse=ell,
    )
    assert np.abs(out - ref).max() < 0.01 * ref.max()


# ---------------------------------------------------------------------------------- config


def test_config_round_trip_equality_and_fingerprint() -> None:
    cfg = PreprocessConfig(
        model_pixel_size_um=2.5,
        output_shape=(256, 160),
        rotation_deg=4.0,
        enhance_amplitude=0.7,
        median_size=5,
        median_shape="square",
    )
    again = PreprocessConfig.from_json(cfg.to_json())
    assert again == cfg and hash(again) == hash(cfg)
    assert PreprocessConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert again.fingerprint() == cfg.fingerprint()
    assert PreprocessConfig().fingerprint() != cfg.fingerprint()
    # The fingerprint does not depend on the process (hash randomisation, dict order).
    code = (
        "from ccount_core.image.preprocess import PreprocessConfig as P; import sys; "
        "print(P.from_json(sys.argv[1]).fingerprint())"
    )
    fp = subprocess.run(
        [sys.executable, "-c", code, cfg.to_json()],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "123"},
    ).stdout.strip()
    assert fp == cfg.fingerprint()


def test_equal_configs_prepare_identically(synthetic_crystal) -> None:
    img, _ = synthetic_crystal(snr=3.0, angle_deg=6.0)
    a = PreprocessConfig(enhance_amplitude=1.0)
    b = PreprocessConfig.from_json(a.to_json())
    out_a, ell_a = prepare_frame(img, a)
    out_b, ell_b = prepare_frame(img.copy(), b)
    assert np.array_equal(out_a, out_b) and ell_a == ell_b


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"model_pixel_size_um": 0.0}, "model_pixel_size_um"),
        ({"output_shape": (10, 300)}, "output_shape"),
        ({"output_shape": (100.5, 30)}, "output_shape"),
        ({"background": "rolling"}, "background"),
        ({"median_size": 4}, "median_size"),
        ({"median_shape": "disk"}, "median_shape"),
        ({"enhance_amplitude": -1.0}, "enhance_amplitude"),
        ({"brightness_density": float("nan")}, "brightness_density"),
        ({"mask": "yes"}, "mask"),
    ],
)
def test_bad_config_names_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(InputError, match=field):
        PreprocessConfig(**kwargs)


def test_config_argument_must_be_a_config(synthetic_crystal) -> None:
    img, _ = synthetic_crystal()
    with pytest.raises(InputError, match="cfg"):
        prepare_frame(img, {"output_shape": (320, 192)})  # type: ignore[arg-type]
    with pytest.raises(InputError, match="cfg"):
        prepare_stack(img[None], None)  # type: ignore[arg-type]


def test_config_from_dict_refuses_unknown_and_newer() -> None:
    d = PreprocessConfig().to_dict()
    with pytest.raises(InputError, match="unknown field"):
        PreprocessConfig.from_dict({**d, "sharpen": True})
    with pytest.raises(InputError, match="pipeline_version"):
        PreprocessConfig.from_dict({**d, "pipeline_version": 99})
    with pytest.raises(InputError, match="JSON"):
        PreprocessConfig.from_json("{not json")


# ---------------------------------------------------------------------------------- stacks


@pytest.fixture
def crystal_stack(synthetic_crystal):
    """``crystal_stack(n)``: ``n`` noisy crystals, each turned and moved a little, stacked,
    with their truth ellipses."""

    def crystal_stack(n: int = 4) -> tuple[np.ndarray, list[Ellipse]]:
        frames, truths = [], []
        for i in range(n):
            img, t = synthetic_crystal(
                seed=i, snr=4.0, angle_deg=3.0 * i, center=(128.0 + i, 126.0 - i)
            )
            frames.append(img)
            truths.append(t)
        return np.stack(frames), truths

    return crystal_stack


def test_numpy_stack_with_bad_frames_reports_them_and_processes_the_rest(
    synthetic_crystal, crystal_stack
) -> None:
    stack, truths = crystal_stack(6)
    rng = np.random.default_rng(1)
    stack[1, 5, 7] = np.nan
    stack[2] = 0.0
    stack[3] = rng.normal(100.0, 10.0, stack[3].shape)  # noise only: no crystal
    edge, _ = synthetic_crystal(center=(128.0, 30.0))  # crystal cut by the left border
    stack[4] = edge
    calls: list[tuple[int, int]] = []
    out = prepare_stack(stack, PreprocessConfig(), progress=lambda d, t: calls.append((d, t)))
    assert isinstance(out, PreparedStack)
    assert out.images.shape == (6, 320, 192) and out.images.dtype == np.float32
    assert sorted(out.bad_frames) == [1, 2, 3, 4]
    assert "NaN" in out.bad_frames[1]
    assert "constant" in out.bad_frames[2]
    assert "no crystal" in out.bad_frames[3]
    assert "border" in out.bad_frames[4]
    for i in (0, 5):
        assert_close_ellipse(out.ellipses[i], truths[i])
        assert out.images[i].max() > 0
    for i in (1, 2, 3, 4):
        assert not out.images[i].any()
    assert out.ellipses[2] is None
    assert calls[-1] == (6, 6) and len(calls) == 6


def test_dask_stack_is_lazy_frame_by_frame_and_matches_numpy(crystal_stack) -> None:
    stack, _ = crystal_stack(5)
    stack[3] = 7.0  # a bad frame
    loads: list[int] = []

    def load(i: int) -> np.ndarray:
        loads.append(i)
        return stack[i]

    lazy = da.stack(
        [
            da.from_delayed(dask.delayed(load)(i), shape=stack.shape[1:], dtype=stack.dtype)
            for i in range(5)
        ]
    )
    cfg = PreprocessConfig(enhance_amplitude=0.5)
    out = prepare_stack(lazy, cfg)
    assert loads == []  # nothing read at construction
    assert isinstance(out.images, da.Array) and out.images.shape == (5, 320, 192)
    one = out.images[2].compute(scheduler="synchronous")
    assert loads == [2]
    ref = prepare_stack(stack, cfg)
    assert np.array_equal(one, ref.images[2])
    full = out.images.compute(scheduler="threads")
    assert np.array_equal(full, ref.images)
    assert out.bad_frames.keys() == ref.bad_frames.keys() == {3}
    assert out.ellipses == ref.ellipses


def test_lazy_images_survive_pickling_for_distributed_schedulers(crystal_stack) -> None:
    stack, _ = crystal_stack(2)
    out = prepare_stack(
        da.from_array(stack, chunks=(1, -1, -1)), PreprocessConfig(), progress=lambda d, t: None
    )
    copy = pickle.loads(pickle.dumps(out.images))
    assert np.array_equal(
        copy.compute(scheduler="synchronous"), prepare_stack(stack, PreprocessConfig()).images
    )


def test_dask_compute_prepares_each_frame_once(crystal_stack) -> None:
    stack, _ = crystal_stack(3)
    stack[1] = 0.0
    loads: list[int] = []

    def load(i: int) -> np.ndarray:
        loads.append(i)
        return stack[i]

    lazy = da.stack(
        [
            da.from_delayed(dask.delayed(load)(i), shape=stack.shape[1:], dtype=stack.dtype)
            for i in range(3)
        ]
    )
    done = prepare_stack(lazy, PreprocessConfig()).compute(scheduler="threads")
    assert isinstance(done.images, np.ndarray)
    assert done.bad_frames.keys() == {1} and done.ellipses[1] is None
    assert sorted(loads) == [0, 1, 2]  # each frame read once


def test_dask_stack_ellipses_without_computing_images(crystal_stack) -> None:
    stack, truths = crystal_stack(3)
    out = prepare_stack(
        da.from_array(stack, chunks=(2, -1, -1)),
        PreprocessConfig(),
        ellipses=[None, truths[1], None],
    )
    assert out.bad_frames == {}
    # The given ellipse is used as given; the camera checks record the frame's pixel noise.
    assert out.ellipses[1] == truths[1] and np.isnan(truths[1].pixel_noise)
    assert 0.0 < out.ellipses[1].pixel_noise < 0.08
    assert_close_ellipse(out.ellipses[0], truths[0])


# ------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (np.zeros((64,)), "2-D"),
        (np.zeros((4, 64, 64)), "2-D"),
        (np.zeros((64, 64, 3)), "RGB"),
        (np.zeros((64, 64, 4), np.uint8), "RGB"),
        (np.zeros((64, 64), bool), "boolean"),
        (np.zeros((64, 64), complex), "real number"),
        (np.array([["a"] * 20] * 20), "real number"),
        (np.zeros((8, 8)), "too small"),
        (np.zeros((64, 64)), "constant"),
        (np.full((64, 64), 12, np.uint16), "constant"),
        (np.where(np.eye(64) > 0, np.nan, 1.0), "NaN"),
        (np.full((64, 64), 1e300), "NaN or infinite"),
    ],
)
def test_bad_frames_get_a_clear_one_line_error(frame: np.ndarray, message: str) -> None:
    for call in (fit_ellipse, lambda f: prepare_frame(f, PreprocessConfig())):
        with pytest.raises(InputError, match=message) as info:
            call(frame)
        assert "\n" not in str(info.value) and str(info.value).startswith("frame:")


def test_no_crystal_and_border_crystal_are_refused(synthetic_crystal) -> None:
    rng = np.random.default_rng(0)
    noise = rng.normal(100.0, 5.0, (128, 128))
    with pytest.raises(InputError, match="no crystal"):
        fit_ellipse(noise)
    # Many hot pixels (0.5 %) on noise and a gradient are not a crystal either.
    hot = rng.normal(100.0, 10.0, (256, 256)) + np.linspace(0, 50, 256)[None, :]
    hot.ravel()[rng.choice(hot.size, 330, replace=False)] = 30000.0
    with pytest.raises(InputError, match="no crystal"):
        fit_ellipse(hot)
    cut, _ = synthetic_crystal(center=(20.0, 128.0), snr=5.0)
    with pytest.raises(InputError, match="border"):
        prepare_frame(cut, PreprocessConfig())


@pytest.mark.parametrize(
    ("stack", "message"),
    [
        (np.zeros((64, 64)), "prepare_frame"),
        (np.zeros((64, 64, 3)), "RGB"),
        (np.zeros((2, 64, 64, 3)), "RGB"),
        (np.zeros((2, 2, 64, 64)), "3-D"),
        (np.zeros((0, 64, 64)), "no frames"),
        (np.zeros((2, 64, 64), complex), "real number"),
    ],
)
def test_bad_stacks_are_refused_before_work(stack: np.ndarray, message: str) -> None:
    with pytest.raises(InputError, match=message):
        prepare_stack(stack, PreprocessConfig())


def test_stack_ellipse_arguments_checked(crystal_stack) -> None:
    stack, truths = crystal_stack(2)
    with pytest.raises(InputError, match="2 frames"):
        prepare_stack(stack, PreprocessConfig(), ellipses=[truths[0]])
    out = prepare_stack(stack, PreprocessConfig(), ellipses=truths[0])
    assert out.ellipses == [truths[0], truths[0]]


def _lit_crystal() -> np.ndarray:
    """A fixed 240 x 320 frame: 150 spots in an ellipse turned 12°, on a gradient with noise."""
    rng = np.random.default_rng(2026)
    rows, cols = np.mgrid[0:240, 0:320].astype(np.float64)
    img = 20.0 + 0.05 * cols + rng.normal(0, 2.0, rows.shape)
    t = np.radians(12.0)
    for _ in range(150):
        u, v = rng.uniform(-1, 1, 2)
        if u * u + v * v > 1:
            continue
        x, y = 95 * u, 38 * v
        r0, c0 = 121.3 - x * np.sin(t) + y * np.cos(t), 158.6 + x * np.cos(t) + y * np.sin(t)
        img += 300.0 * np.exp(-((rows - r0) ** 2 + (cols - c0) ** 2) / (2 * 1.6**2))
    return img.astype(np.float32)


# The shipped default card's preprocessing (pipeline version 1, written before the options
# ``resampling`` and ``canonical_turn`` existed), and what version 1's code (git main before
# issue 27) made of _lit_crystal() with it: camera px (µm) -> sum of squares, brightest pixel.
V1_CARD = {
    "background": "plane",
    "brightness_density": 1.0,
    "enhance_amplitude": 0.0,
    "mask": True,
    "mask_margin_um": 10.0,
    "median_shape": "cross",
    "median_size": 3,
    "model_pixel_size_um": 6.0,
    "normalize": True,
    "output_shape": [96, 48],
    "pipeline_version": 1,
    "rotate": True,
    "rotation_deg": None,
    "stretch_to_fit": False,
}
V1_PREPARED = {2.0: (2783.07502666089, (26, 24)), 0.7: (302.9403812724256, (41, 26))}


@pytest.mark.parametrize("px", sorted(V1_PREPARED))
def test_a_version_1_card_prepares_as_version_1_did(px: float) -> None:
    cfg = PreprocessConfig.from_dict(V1_CARD)
    assert cfg.to_dict() == V1_CARD  # reads, compares and fingerprints as before
    assert cfg.fingerprint() == "0427b02327369f7c"
    sum_sq, peak = V1_PREPARED[px]
    for axis in ("auto", "horizontal"):
        out, _ = prepare_frame(_lit_crystal(), cfg, camera_pixel_size_um=px, trap_axis=axis)
        assert float((out.astype(np.float64) ** 2).sum()) == pytest.approx(sum_sq, rel=1e-6)
        assert np.unravel_index(out.argmax(), out.shape) == peak
    # The options change the arithmetic, and are written into the configuration.
    area = dataclasses.replace(cfg, resampling="area")
    assert area.to_dict()["resampling"] == "area"
    assert PreprocessConfig.from_dict(area.to_dict()) == area
    out, _ = prepare_frame(_lit_crystal(), area, camera_pixel_size_um=px)
    assert abs(float((out.astype(np.float64) ** 2).sum()) / sum_sq - 1.0) > 1e-3


def test_bilinear_area_is_version_1_where_blocks_are_averaged_and_area_where_not() -> None:
    """``"bilinear-area"`` prepares bit for bit as version 1 where the camera's pixels are at
    most half the model's (9 µm here: 2, 0.7 and 4.5 µm), and as ``"area"`` where coarser (6 µm:
    version 1 took one bilinear sample per output pixel there)."""
    crystal = _lit_crystal()
    v1 = PreprocessConfig.from_dict(
        {**V1_CARD, "model_pixel_size_um": 9.0, "output_shape": [160, 96]}
    )
    mixed = dataclasses.replace(v1, resampling="bilinear-area")
    assert PreprocessConfig.from_dict(mixed.to_dict()) == mixed
    for px in (2.0, 0.7, 4.5):
        a, _ = prepare_frame(crystal, mixed, camera_pixel_size_um=px)
        b, _ = prepare_frame(crystal, v1, camera_pixel_size_um=px)
        assert np.array_equal(a, b)
    area = dataclasses.replace(v1, resampling="area")
    a, _ = prepare_frame(crystal, mixed, camera_pixel_size_um=6.0)
    b, _ = prepare_frame(crystal, area, camera_pixel_size_um=6.0)
    c, _ = prepare_frame(crystal, v1, camera_pixel_size_um=6.0)
    assert np.array_equal(a, b) and not np.allclose(a, c, rtol=1e-3)


def test_canonical_turn_prepares_a_frame_and_its_half_turn_alike() -> None:
    img = _lit_crystal()
    turned = np.ascontiguousarray(img[::-1, ::-1])
    opts = PreprocessConfig.from_dict(V1_CARD)
    on = dataclasses.replace(opts, resampling="area", canonical_turn=True)
    a, _ = prepare_frame(img, on, camera_pixel_size_um=2.0)
    b, _ = prepare_frame(turned, on, camera_pixel_size_um=2.0)
    assert np.abs(a - b).max() < 1e-3 * a.max()
    # Without the turn the two differ (the crystal's spots are not symmetric).
    a, _ = prepare_frame(img, opts, camera_pixel_size_um=2.0)
    b, _ = prepare_frame(turned, opts, camera_pixel_size_um=2.0)
    assert np.abs(a - b).max() > 0.1 * a.max()
    with pytest.raises(InputError, match="resampling"):
        PreprocessConfig(resampling="nearest")


def test_warm_up_loads_the_pipeline_kernels_in_a_fresh_process() -> None:
    """warm_up prepares its synthetic crystal without error and leaves the kernels a count
    uses compiled (the plugin runs it in the background before the first count)."""
    import subprocess
    import sys

    code = (
        "from ccount_core.image import preprocess as p\n"
        "kernels = (p._warp, p._mask_enhance, p._top_inside)\n"
        "assert not any(k.signatures for k in kernels)\n"
        "p.warm_up()\n"
        "print([len(k.signatures) for k in kernels])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=600, check=True
    )
    assert all(int(n) >= 1 for n in out.stdout.strip(" []\n").split(","))
