"""Which part of the crystal's ellipse moves the count when the camera turns? (issue 27, point 1)

One simulated crystal (``tests/core/nn/test_orientation.py``'s: 150 Ca+, V_rf 200 V, seed 123)
rendered at 0, 30, ..., 330° on a 1.5 µm, 400 x 400 camera is prepared with ellipses that
mix the outline fit at each angle with the exact turn of the 0° fit, and counted by one model
(the first member of ``--model``, with ``pipeline_options.py``'s option set ``--options``):

- ``fit``: the fit at each angle, as counting does; ``exact``: the 0° fit turned exactly;
- ``fit centre`` / ``fit angle`` / ``fit semi-axes``: the exact ellipse with that part of the
  fit at each angle;
- ``symmetry``: the fit refined by ``ccount_core.image.symmetry`` (whatever the card says).

Prints, per variant, the largest deviation of a count from the mean over the angles (%), and
how far the fit's and the refinement's centre (px) and angle (deg) stray from the exact turn.

With ``--tta K`` it instead counts the twelve frames and two off-centre ones (as
``tests/core/nn/test_orientation.py``) with ``count_stack`` (the whole model, float32), without
test-time views and with K (the first the 180° turn), and prints each one's spread.

    python benchmarks/rotation_sources.py [--model default] [--options card] [--tta K]
"""

from __future__ import annotations

import argparse
import dataclasses
import math

import numpy as np

from ccount_core.image.ellipse import Ellipse, fit_ellipse, wrap_axis_angle
from ccount_core.image.preprocess import ROUND_RATIO, PreprocessConfig, prepare_frame
from ccount_core.image.symmetry import refine_by_symmetry
from ccount_core.nn.ensemble import load_counter
from ccount_core.nn.inference import predict
from pipeline_options import ANGLES, OPTIONS, with_options  # this folder is on the path

SHAPE = (400, 400)
PIXEL_UM = 1.5


def frames(off_centre: bool = False) -> list[np.ndarray]:
    """The test crystal at each of ``ANGLES`` (deg); ``off_centre``: then at 0 and 75° 40 px up
    and 55 px left of the frame's centre too."""
    from ccount_core.simulation import IonGroup, SimulationSettings, TrapSettings, simulate
    from ccount_core.simulation.render import ImagingSettings, render

    trap = TrapSettings.from_lab_units(v_rf=200.0, v_end=2.3375)
    md = simulate(trap, [IonGroup("Ca+", 150)], SimulationSettings(seed=123), None)
    lit = np.ones(md.samples.shape[1], bool)

    def frame(angle: float, shape: tuple[int, int] = SHAPE) -> np.ndarray:
        imaging = ImagingSettings.from_lab_units(
            pixel_size_um=PIXEL_UM, shape=shape, rotation_deg=angle
        )
        return 1000.0 * render(md.samples, lit, imaging)

    out = [frame(a) for a in ANGLES]
    if off_centre:
        out += [frame(a, (480, 510))[: SHAPE[0], : SHAPE[1]] for a in (0.0, 75.0)]
    return out


def view_spreads(model: str, tta: int) -> None:
    """Print the spread of ``count_stack``'s counts of :func:`frames` (off centre too) by
    ``model``, without test-time views and with ``tta``."""
    from ccount_core.nn.count import count_stack

    stack, counter = np.stack(frames(off_centre=True)), load_counter(model)
    for k in (0, tta):
        rows = count_stack(stack, counter, PIXEL_UM, tta=k, bf16=False)
        c = np.array([r["count"] for r in rows], float)
        print(
            f"{model} with {k} views: spread {np.abs(c / c.mean() - 1).max() * 100:.2f} %  "
            f"counts {c.min():.1f}-{c.max():.1f}"
        )


def turned(ell: Ellipse, deg: float) -> Ellipse:
    """``ell`` turned by ``deg`` (counter-clockwise as displayed) about the frame's centre,
    as the renderer turns the crystal."""
    t = math.radians(deg)
    mid_r, mid_c = (SHAPE[0] - 1) / 2, (SHAPE[1] - 1) / 2
    x, y = ell.center_col - mid_c, mid_r - ell.center_row
    x2, y2 = x * math.cos(t) - y * math.sin(t), x * math.sin(t) + y * math.cos(t)
    angle = wrap_axis_angle(ell.angle_deg + deg)
    return dataclasses.replace(ell, center_row=mid_r - y2, center_col=mid_c + x2, angle_deg=angle)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--options", default="card", choices=list(OPTIONS))
    ap.add_argument("--tta", type=int, default=0, help="count with count_stack and K views")
    args = ap.parse_args()
    if args.tta:
        view_spreads(args.model, args.tta)
        return
    net, card = with_options(load_counter(args.model), OPTIONS[args.options]).members[0]
    cfg = PreprocessConfig.from_dict(card["preprocess"])
    images = frames()
    fits = [fit_ellipse(f) for f in images]
    exact = [turned(fits[0], a) for a in ANGLES]
    refined = [refine_by_symmetry(f, e, ROUND_RATIO) for f, e in zip(images, fits, strict=True)]
    ref_exact = [turned(refined[0], a) for a in ANGLES]

    def part(e: Ellipse, f: Ellipse, keys: tuple[str, ...]) -> Ellipse:
        return dataclasses.replace(e, **{k: getattr(f, k) for k in keys})

    variants = {
        "fit": fits,
        "exact": exact,
        "fit centre": [
            part(e, f, ("center_row", "center_col")) for e, f in zip(exact, fits, strict=True)
        ],
        "fit angle": [part(e, f, ("angle_deg",)) for e, f in zip(exact, fits, strict=True)],
        "fit semi-axes": [
            part(e, f, ("semi_major", "semi_minor")) for e, f in zip(exact, fits, strict=True)
        ],
        "symmetry": refined,
    }
    print(f"model {args.model}, options {args.options}: {cfg.to_json()}")
    for name, ells in variants.items():
        prepared = np.stack(
            [
                prepare_frame(f, cfg, ellipse=e, camera_pixel_size_um=PIXEL_UM)[0]
                for f, e in zip(images, ells, strict=True)
            ]
        )
        c = predict(net, prepared)[:, 0]
        print(
            f"{name:14s} spread {np.abs(c / c.mean() - 1).max() * 100:.2f} %  counts "
            f"{c.min():.1f}-{c.max():.1f}"
        )
    for name, got, ref in (("fit", fits, exact), ("symmetry", refined, ref_exact)):
        shift = [
            math.hypot(g.center_row - r.center_row, g.center_col - r.center_col)
            for g, r in zip(got, ref, strict=True)
        ]
        turn = [
            abs(wrap_axis_angle(g.angle_deg - r.angle_deg)) for g, r in zip(got, ref, strict=True)
        ]
        print(
            f"{name:9s} off the exact turn: centre ≤ {max(shift):.2f} px, angle ≤ {max(turn):.2f}°"
        )


if __name__ == "__main__":
    main()
