"""Frames unlike one crystal on a small camera frame: several crystals, saturated pixels, a
small crystal in a very large frame (ellipse._separate_blobs, ellipse._zoomed_coarse,
preprocess.saturation_note)."""

from __future__ import annotations

import numpy as np
import pytest

from ccount_core.dataset.samples import load_sample
from ccount_core.image.ellipse import Ellipse, fit_ellipse
from ccount_core.image.preprocess import PreprocessConfig, prepare_frame, prepare_stack


@pytest.fixture(scope="module")
def crystal() -> np.ndarray:
    """The sample's one crystal, ``(256, 400)`` uint16, 1.5 µm pixels."""
    stack, _ = load_sample("single_crystal")
    return stack[0]


def _background(crystal: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    rng = np.random.default_rng(1)
    noise = rng.normal(np.median(crystal), 3.0, shape)
    return noise.clip(0).astype(crystal.dtype)


def test_two_crystals_side_by_side_are_noted_one_crystal_is_not(crystal: np.ndarray) -> None:
    one = crystal[:, 60:340]  # the crystal with a little background on either side
    for gap in (0, 60):
        frame = _background(crystal, (256, 2 * one.shape[1] + gap))
        frame[:, : one.shape[1]] = one
        frame[:, one.shape[1] + gap :] = one
        (note,) = fit_ellipse(frame).notes
        assert note.startswith("several crystals or bright blobs in the frame: 2 ")
    assert fit_ellipse(crystal).notes == ()


def test_a_dark_core_splitting_the_shell_is_not_several_crystals() -> None:
    # The late frames of the sample series show the shell as two thin rows around a dark
    # core (frame 14 splits into two parts): one crystal, no note.
    stack, _ = load_sample("reaction_series")
    assert [fit_ellipse(frame).notes for frame in stack] == [()] * len(stack)


def test_notes_leave_the_geometry_alone() -> None:
    plain = Ellipse(10.0, 20.0, 8.0, 4.0, 5.0, 0.9)
    noted = Ellipse(10.0, 20.0, 8.0, 4.0, 5.0, 0.9, ("several crystals",))
    assert plain == noted and plain.to_dict() == noted.to_dict()
    assert "notes" not in noted.to_dict()


def _saturation(prepared) -> list[str]:
    """The saturation notes of a one-frame PreparedStack (a clipped top also reads as
    noisier: its light is cut while the noise stays)."""
    return [n for n in prepared.ellipses[0].notes if n.startswith("saturated")]


def test_saturated_crystal_pixels_are_noted_with_their_share(crystal: np.ndarray) -> None:
    cfg = PreprocessConfig()
    clean = prepare_stack(crystal[None], cfg, camera_pixel_size_um=1.5)
    assert clean.ellipses[0].notes == ()
    ell = clean.ellipses[0]
    rows, cols = np.indices(crystal.shape)
    inside = np.flatnonzero(ell.normalized_radius2(rows, cols).ravel() <= 1.0)
    # A brighter exposure: the crystal's brightest 2 % of pixels clip at the uint16 maximum.
    gain = 65535.0 / np.quantile(crystal.ravel()[inside], 0.98)
    clipped = np.minimum(crystal * gain, 65535).astype(np.uint16)
    (note,) = _saturation(prepare_stack(clipped[None], cfg, camera_pixel_size_um=1.5))
    share = float(note.split("saturated: ")[1].split(" %")[0])
    assert 1.0 < share < 3.0  # 2 % of the clean fit's ellipse; the note counts a 10 % larger one
    assert "uint16 maximum 65535" in note
    flat = np.minimum(crystal.astype(np.float32), np.float32(np.quantile(crystal, 0.995)))
    (note,) = _saturation(prepare_stack(flat[None], cfg, camera_pixel_size_um=1.5))
    assert "flat top" in note
    twelve_bit = (clipped >> 4).astype(np.uint16)  # the same exposure on a 12-bit camera
    (note,) = _saturation(prepare_stack(twelve_bit[None], cfg, camera_pixel_size_um=1.5))
    assert "12-bit camera" in note


def test_small_crystal_in_a_4000_px_frame_is_found_and_prepared(crystal: np.ndarray) -> None:
    # At 4000 px the coarse search's 128 px copy holds the crystal in ~3 x 9 px, blurred to
    # a blob 2-4 times its size, which "did not fit the output field" (8000 px: by hand).
    frame = _background(crystal.astype(np.float32), (4000, 4000)).astype(np.float32)
    frame[1872:2128, 1800:2200] = crystal
    small = fit_ellipse(crystal)
    big = fit_ellipse(frame)
    assert big.center_row - 1872 == pytest.approx(small.center_row, abs=1.5)
    assert big.center_col - 1800 == pytest.approx(small.center_col, abs=1.5)
    assert big.semi_major == pytest.approx(small.semi_major, rel=0.03)
    assert big.semi_minor == pytest.approx(small.semi_minor, rel=0.03)
    out, _ = prepare_frame(frame, PreprocessConfig(), camera_pixel_size_um=1.5)
    assert out.shape == (320, 192) and out.max() > 0


def _spots_frame(noise: float, seed: int = 0) -> np.ndarray:
    """A 160 x 240 frame: Gaussian ion spots (σ 1.5 px, peak 1000) 5 px apart inside an
    ellipse of semi-axes 80 x 30 px on a background of 100, plus Gaussian pixel noise of
    ``noise`` times the peak."""
    rows, cols = np.indices((160, 240), dtype=np.float64)
    img = np.full(rows.shape, 100.0)
    for r in range(80 - 28, 80 + 29, 5):
        for c in range(120 - 78, 120 + 79, 5):
            if ((r - 80) / 30) ** 2 + ((c - 120) / 80) ** 2 <= 1.0:
                img += 1000.0 * np.exp(-((rows - r) ** 2 + (cols - c) ** 2) / (2 * 1.5**2))
    rng = np.random.default_rng(seed)
    return (img + rng.normal(0.0, noise * 1000.0, img.shape)).astype(np.float32)


def test_pixel_noise_is_measured_and_a_noisy_frame_noted() -> None:
    """Pixel noise grows with the noise added, a smooth frame reads about 0, and only a frame
    above NOISE_LIMIT (an EMCCD at high gain, not an sCMOS-like camera) carries the note."""
    from ccount_core.image.preprocess import NOISE_LIMIT, noise_note, pixel_noise

    levels = [pixel_noise(f, fit_ellipse(f)) for f in map(_spots_frame, (0.0, 0.05, 0.4))]
    assert levels[0] < 0.005 < levels[1] < NOISE_LIMIT < levels[2]
    quiet, noisy = _spots_frame(0.05), _spots_frame(0.4)
    assert noise_note(pixel_noise(quiet, fit_ellipse(quiet))) is None
    notes = prepare_stack(noisy[None], PreprocessConfig(), camera_pixel_size_um=2.0).ellipses[0]
    (note,) = notes.notes
    assert note.startswith("noisy: pixel noise ") and "lower the EM gain" in note
    assert (
        prepare_stack(quiet[None], PreprocessConfig(), camera_pixel_size_um=2.0).ellipses[0].notes
        == ()
    )
