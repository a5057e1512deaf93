"""The ellipse fit and the preparation against each camera imperfection alone, at its strongest.

Two simulated crystals (150 and 300 Ca+ ions, 2 µm pixels as the training renders) are
prepared clean and through one imperfection of ``ccount_core.simulation.camera``. Measures:

- the fit: centre shift / clean semi-major axis (ragged tips move it along the axis), and
  each semi-axis' relative change (in µm, so that other pixel sizes compare);
- the prepared image: ``prepared_difference`` = Σ|G·P - G·P0| / Σ G·P0, P and P0 the prepared
  images (model grid) with and without the imperfection, G a Gaussian of 1 model pixel (so
  that pixel noise within a spot does not count, a moved or rescaled crystal does).

Held: within 3 % (centre), 5 % (semi-axes) and 5 % (prepared image). Each case runs with the
shipped models' preparation and with ``fit_footprint`` (the fit's shell profiles smoothed over a
pixel, a card option for new models). The imperfections a preparation does not yet hold against
are marked xfail (strict: a fix makes them fail as passes), or listed in ``KNOWN_FAILURES`` for
one crystal (checked both ways as well).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from ccount_core.image.ellipse import fit_ellipse
from ccount_core.image.preprocess import PreprocessConfig, prepare_frame
from ccount_core.simulation import IonGroup, SimulationSettings, TrapSettings, simulate
from ccount_core.simulation.camera import (
    Background,
    CameraEffects,
    HotPixels,
    LaserProfile,
    PsfWings,
)
from ccount_core.simulation.render import CameraModel, ImagingSettings, render

CFG = PreprocessConfig(model_pixel_size_um=6.0, output_shape=(96, 48))  # the shipped models'
FIELD_UM = (480.0, 640.0)
CAMERA = CameraModel(photons_per_ion=2000.0, background=2.0, read_noise=2.0, offset=100.0)
EMCCD = CameraModel(photons_per_ion=300.0, background=1.0, em_gain=300.0, read_noise=30.0)


def prepared_difference(p: np.ndarray, p0: np.ndarray) -> float:
    """Σ|G·p - G·p0| / Σ G·p0 with G a Gaussian of σ = 1 px (see the module docstring)."""
    g, g0 = gaussian_filter(p, 1.0), gaussian_filter(p0, 1.0)
    return float(np.abs(g - g0).sum() / g0.sum())


@pytest.fixture(scope="module", params=[150, 300])
def crystal(request) -> np.ndarray:
    trap = TrapSettings.from_lab_units(v_rf=220.0, v_end=2.5, eta=0.28)
    res = simulate(trap, [IonGroup("Ca+", request.param)], SimulationSettings(seed=27), None)
    return res.samples


def image(samples: np.ndarray, pixel_um: float = 2.0, camera=None, effects=None) -> np.ndarray:
    shape = (round(FIELD_UM[0] / pixel_um), round(FIELD_UM[1] / pixel_um))
    imaging = ImagingSettings.from_lab_units(pixel_size_um=pixel_um, shape=shape, camera=camera)
    return render(samples, np.ones(samples.shape[1], bool), imaging, 1, effects)


def edge_waist(samples: np.ndarray) -> float:
    """Waist (m) of a beam along the trap axis that leaves the outer layers at 30 %."""
    mean = samples.mean(axis=0)
    half = float(np.abs(mean[:, 0] - mean[:, 1]).max() / math.sqrt(2.0))
    return half * math.sqrt(2.0 / math.log(1.0 / 0.3))


FIT_FAILS = pytest.mark.xfail(
    strict=True, reason="the shipped fit moves with the pixel size (fit_footprint holds; issue 27)"
)
# The fit holds (centre < 1 %, semi-axes < 2 %), the prepared image differs by 5.7-7.1 %: the
# EMCCD's pixel noise, which a preparation cannot take out.
NOISY = pytest.mark.xfail(strict=True, reason="the EMCCD's pixel noise in the prepared image")
RAW_CASES = [
    ("gradient 15 %", 2.0, None, CameraEffects(background=Background(0, 0.15, 30))),
    ("background 15 %", 2.0, None, CameraEffects(background=Background(0.15))),
    (
        "hot pixels 0.1 % saturated",
        2.0,
        CAMERA,
        CameraEffects(hot_pixels=HotPixels(1e-3), exposure=0.6),
    ),
    ("PSF wings 30 %", 2.0, None, CameraEffects(wings=PsfWings(0.3, 10e-6))),
    (
        "8-bit",
        2.0,
        CameraModel(photons_per_ion=2000.0, offset=5.0, bit_depth=8),
        CameraEffects(exposure=0.8),
    ),
    ("pixels 0.5 µm", 0.5, None, None),
    ("pixels 5 µm", 5.0, None, None),
    ("EMCCD gain 300", 2.0, EMCCD, CameraEffects(exposure=0.6)),
]
#: Cases each preparation does not hold against yet: the shipped one's fit moves with the
#: pixel size (semi-minor axis 5-7 % long at 5 µm); with ``fit_footprint`` only the noise is left.
NOT_YET = {
    False: {"pixels 5 µm": FIT_FAILS, "EMCCD gain 300": NOISY},
    True: {"EMCCD gain 300": NOISY},
}
CASES = [
    pytest.param(
        footprint,
        *case,
        marks=NOT_YET[footprint].get(case[0], ()),
        id=f"{'footprint' if footprint else 'shipped'}-{case[0]}",
    )
    for footprint in (False, True)
    for case in RAW_CASES
]


KNOWN_FAILURES = {(False, "pixels 0.5 µm", 150)}  # semi-minor axis 7 % short


@pytest.mark.parametrize(("footprint", "name", "pixel_um", "camera", "effects"), CASES)
def test_fit_and_preparation_hold(crystal, footprint, name, pixel_um, camera, effects) -> None:
    cfg = dataclasses.replace(CFG, fit_footprint=footprint)
    p0, e0 = prepare_frame(image(crystal), cfg, camera_pixel_size_um=2.0)
    p, e = prepare_frame(
        image(crystal, pixel_um, camera, effects), cfg, camera_pixel_size_um=pixel_um
    )
    s = pixel_um / 2.0  # µm per px against the clean 2 µm
    shift = math.hypot(e.center_row * s - e0.center_row, e.center_col * s - e0.center_col)
    held = (
        shift / e0.semi_major < 0.03
        and abs(e.semi_major * s / e0.semi_major - 1) < 0.05
        and abs(e.semi_minor * s / e0.semi_minor - 1) < 0.05
        and prepared_difference(p, p0) < 0.05
    )
    assert held == ((footprint, name, crystal.shape[1]) not in KNOWN_FAILURES), (name, e, e0)


def test_the_footprint_fit_does_not_depend_on_the_pixel_size(crystal) -> None:
    """The same crystal at 0.5-5 µm pixels: with ``fit_footprint`` the fitted semi-minor axes
    (µm) stay within 3 % of each other and the semi-major within 5 % (measured 1.8 / 2.0 % and
    3.7 / 0.7 % for 150 / 300 ions; without it 13.2 / 10.6 % and 5.8 / 2.1 %, the semi-minor
    axis past the outermost ions at 3-5 µm), inside the outermost ions."""
    outer = float(np.hypot(*crystal.mean(axis=0)[:, :2].T).max()) * 1e6  # µm
    minor, major = [], []
    for pixel_um in (0.5, 1.0, 2.0, 3.0, 4.0, 5.0):
        e = fit_ellipse(image(crystal, pixel_um), footprint=True)
        minor.append(e.semi_minor * pixel_um)
        major.append(e.semi_major * pixel_um)
    assert max(minor) / min(minor) < 1.03, minor
    assert max(major) / min(major) < 1.05, major
    assert max(minor) < outer, (minor, outer)  # the shell's ring peaks inside its limb


def test_fit_holds_against_a_cooling_beam_dimming_the_outer_layers_to_30_percent(crystal) -> None:
    """Only the fit: the beam changes the image itself (the network must learn it)."""
    _, e0 = prepare_frame(image(crystal), CFG, camera_pixel_size_um=2.0)
    dimmed = image(crystal, effects=CameraEffects(profile=LaserProfile(edge_waist(crystal))))
    _, e = prepare_frame(dimmed, CFG, camera_pixel_size_um=2.0)
    assert e.semi_minor == pytest.approx(e0.semi_minor, rel=0.05)
    assert e.semi_major == pytest.approx(e0.semi_major, rel=0.05)
