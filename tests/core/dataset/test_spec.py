"""Data-set specs: parsing, checks, grid/random expansion and the stable hash split."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from ccount_core.dataset import canonical_key, load_spec, normalise_spec, plan, split_of
from ccount_core.dataset.spec import MdPoint, stable_hash
from ccount_core.dataset.sweep import check_physics
from ccount_core.errors import InputError

SPECS = Path(__file__).resolve().parents[3] / "src" / "ccount_core" / "specs"


def base_spec(**params: object) -> dict:
    p = {"n_ions": [30, 40], "v_rf": [200], "v_end": [2.0, 2.5], "eta": 0.244, "seeds": [1, 2]}
    p.update(params)
    return {"imaging": {"shape": [32, 48]}, "parameters": p}


@pytest.mark.slow
def test_paper_grid_is_the_papers_698544_images_split_5_1_1() -> None:
    spec = load_spec(SPECS / "paper_grid.yaml")
    par = spec["parameters"]
    assert [len(par[k]["values"]) for k in ("n_ions", "v_rf", "v_end", "eta")] == [33, 14, 21, 24]
    assert par["seeds"] == [1, 2, 3]
    assert par["n_ions"]["values"][:2] == [30, 40] and par["n_ions"]["values"][-1] == 350
    assert par["v_end"]["values"][-1] == 3.5 and par["eta"]["values"][-1] == 0.355
    p = plan(spec)
    assert p.n_rows == 698_544 and p.n_renders == 1 and p.duplicates == 0
    check_physics(p)  # every trap of the grid is stable and holds its largest crystal
    mod = np.array([stable_hash(k) % 7 for k in p.keys])
    frac = np.bincount(mod, minlength=7) / mod.size
    # sha256 is uniform: each residue within 0.5 % (absolute) of 1/7 at this size
    assert np.all(np.abs(frac - 1 / 7) < 0.005)


def test_small_spec_and_toml_equal_yaml(tmp_path: Path, monkeypatch) -> None:
    spec = load_spec(SPECS / "small.yaml")
    assert load_spec("small") == spec  # shipped specs by name
    # ... also beside a folder of that name (`generate small -o small/data.zarr` makes one)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "small").mkdir()
    assert load_spec("small") == spec
    p = plan(spec)
    assert p.n_renders == 2 and len(p.points) == 16
    toml = tmp_path / "s.toml"
    toml.write_text(
        'name = "small"\n[imaging]\nshape = [32, 48]\n'
        "[parameters]\nn_ions = [30, 40]\nv_rf = [200]\nv_end = [2.0, 2.5]\neta = 0.244\n"
        "seeds = [1, 2]\n"
    )
    yaml_ = tmp_path / "s.yaml"
    yaml_.write_text(
        "name: small\nimaging: {shape: [32, 48]}\nparameters:\n  n_ions: [30, 40]\n"
        "  v_rf: [200]\n  v_end: [2.0, 2.5]\n  eta: 0.244\n  seeds: [1, 2]\n"
    )
    assert load_spec(toml) == load_spec(yaml_)


def test_canonical_key_and_hash_are_stable() -> None:
    point = MdPoint((("Ca+", 300), ("ND3+", 0)), 200.0, 2.3, 0.244, 1)
    key = canonical_key(point)
    assert key == "ccount-key-1|Ca+=300|v_rf=200|v_end=2.3|eta=0.244|seed=1"
    digest = hashlib.sha256(key.encode()).digest()
    assert stable_hash(key) == int.from_bytes(digest[:8], "big")
    # pinned: the split of a sample must never change between versions or machines
    assert stable_hash(key) == 0x0AE691F4AF5FC24B
    assert split_of(stable_hash(key)) == "test"  # 0x0AE691F4AF5FC24B % 7 == 1
    assert canonical_key(point, exclude=["seed"]) == key.rsplit("|", 1)[0]


def test_split_rule_is_the_papers() -> None:
    assert [split_of(7 * 11 + r) for r in range(7)] == (["validation", "test"] + ["train"] * 5)


def test_float_noise_does_not_change_keys() -> None:
    a = MdPoint((("Ca+", 30),), 200.0, 0.1 + 0.2, 0.24 + 3 * 0.005, 1)
    b = MdPoint((("Ca+", 30),), 200.0, 0.3, 0.255, 1)
    assert canonical_key(a) == canonical_key(b)


def test_all_renders_of_an_md_run_share_its_key() -> None:
    spec = normalise_spec({**base_spec(), "renders": {"focal_offset_um": [0, 10, 20]}})
    p = plan(spec)
    assert p.n_renders == 3 and p.n_rows == 3 * len(p.points)
    assert [r["focal_offset_um"] for r in p.renders] == [0.0, 10.0, 20.0]
    assert len(set(p.keys)) == len(p.points)  # one key per MD run, renders add none


def test_zero_dark_ions_give_the_pure_crystals_key() -> None:
    pure = plan(normalise_spec(base_spec()))
    mixed = plan(
        normalise_spec({**base_spec(), "species": {"dark": {"ND3+": {"number": [0, 10]}}}})
    )
    assert set(pure.keys) < set(mixed.keys)
    assert len(mixed.points) == 2 * len(pure.points)
    assert mixed.label_names == ("Ca+", "ND3+")


def test_dark_fraction_is_share_of_the_whole_crystal() -> None:
    spec = normalise_spec(
        {
            **base_spec(n_ions=[200], v_end=[2.0], seeds=[1]),
            "species": {"dark": {"CaF+": {"fraction": [0.2]}, "ND3+": {"number": [25]}}},
        }
    )
    (point,) = plan(spec).points
    # 200 Ca+ and 25 ND3+ are 80 % of the crystal: 225 / 0.8 = 281.25 in all, 20 % is 56
    assert point.counts == (("Ca+", 200), ("CaF+", 56), ("ND3+", 25))


def test_n_ions_may_count_the_whole_crystal_as_in_a_reaction_series() -> None:
    spec = normalise_spec(
        {
            **base_spec(n_ions=[201], v_end=[2.0], seeds=[1]),
            "species": {
                "n_ions": "total",
                "dark": {"CaF+": {"fraction": [0.2]}, "ND3+": {"fraction": [0.5]}},
            },
        }
    )
    (point,) = plan(spec).points
    # 201 ions in all: 20 % is 40.2 -> 40 CaF+, 50 % is 100.5 -> 100 ND3+, 61 Ca+ left
    assert point.counts == (("Ca+", 61), ("CaF+", 40), ("ND3+", 100))
    spec["parameters"]["n_ions"]["values"] = [100]
    spec["species"]["dark"]["CaF+"]["fraction"]["values"] = [0.29]
    (point,) = plan(spec).points
    assert point.counts == (("Ca+", 21), ("CaF+", 29), ("ND3+", 50))


def test_the_default_n_ions_leaves_a_specs_digest_as_it_was() -> None:
    raw = {**base_spec(), "species": {"dark": {"ND3+": {"fraction": [0.2]}}}}
    assert normalise_spec(raw) == normalise_spec(
        {**raw, "species": {**raw["species"], "n_ions": "cooled"}}
    )
    assert "n_ions" not in normalise_spec(raw)["species"]


def test_random_sampling_is_seeded_and_within_ranges() -> None:
    raw = {
        "imaging": {"shape": [32, 48]},
        "seed": 5,
        "parameters": {
            "sampling": "random",
            "n_samples": 200,
            "n_ions": {"min": 30, "max": 350},
            "v_rf": {"min": 170, "max": 300},
            "v_end": [1.5, 2.5, 3.5],
            "eta": 0.244,
            "seeds": [1, 2],
        },
    }
    a, b = plan(normalise_spec(raw)), plan(normalise_spec(raw))
    assert a.points == b.points and len(a.points) + a.duplicates == 400
    c = plan(normalise_spec({**raw, "seed": 6}))
    assert a.points != c.points
    n = np.array([p.counts[0][1] for p in a.points])
    v = np.array([p.v_rf for p in a.points])
    assert n.min() >= 30 and n.max() <= 350 and np.all(n == np.round(n))
    assert v.min() >= 170 and v.max() <= 300 and np.unique(v).size > 150
    assert {p.v_end for p in a.points} == {1.5, 2.5, 3.5}


def test_duplicate_points_are_dropped() -> None:
    p = plan(normalise_spec(base_spec(n_ions=[30, 30, 40])))
    assert p.duplicates == 4 and len(p.points) == 8


def test_exclude_seed_keeps_seeds_of_a_point_in_one_split() -> None:
    p = plan(
        normalise_spec(
            {
                **base_spec(seeds=[1, 2, 3]),
                "split": {"exclude": ["seed"]},
                "store": {"order": "grid"},
            }
        )
    )
    keys = np.array(p.keys).reshape(-1, 3)
    assert np.all(keys == keys[:, :1])


def test_shuffled_order_is_a_permutation_of_the_grid() -> None:
    grid = plan(
        normalise_spec({**base_spec(n_ions=list(range(30, 100))), "store": {"order": "grid"}})
    )
    shuffled = plan(normalise_spec(base_spec(n_ions=list(range(30, 100)))))
    assert sorted(grid.keys) == sorted(shuffled.keys) and grid.keys != shuffled.keys
    assert dict(zip(grid.keys, grid.points, strict=True)) == dict(
        zip(shuffled.keys, shuffled.points, strict=True)
    )


@pytest.mark.parametrize(
    ("change", "names"),
    [
        ({"bogus": 1}, "bogus"),
        ({"parameters": {"v_rf": [200], "v_end": 2, "eta": 0.2}}, "parameters.n_ions"),
        ({"parameters": {**base_spec()["parameters"], "n_ions": [0]}}, "parameters.n_ions"),
        ({"parameters": {**base_spec()["parameters"], "n_ions": [2.5]}}, "parameters.n_ions"),
        (
            {"parameters": {**base_spec()["parameters"], "v_rf": {"min": 1, "max": 2}}},
            "parameters.v_rf",
        ),
        (
            {
                "parameters": {
                    **base_spec()["parameters"],
                    "eta": {"start": 1, "stop": 0, "step": 1},
                }
            },
            "parameters.eta",
        ),
        ({"parameters": {**base_spec()["parameters"], "sampling": "sobol"}}, "parameters.sampling"),
        (
            {"parameters": {**base_spec()["parameters"], "sampling": "random"}},
            "parameters.n_samples",
        ),
        ({"parameters": {**base_spec()["parameters"], "seeds": [1, 1]}}, "parameters.seeds"),
        ({"species": {"dark": {"ND3+": {"fraction": [1.2]}}}}, "species.dark.ND3+.fraction"),
        ({"species": {"dark": {"ND3+": {"count": [1]}}}}, "species.dark.ND3+"),
        ({"species": {"n_ions": "all"}}, "species.n_ions"),
        ({"species": {"n_ions": "total", "dark": {"ND3+": {"number": [5]}}}}, "species.n_ions"),
        ({"species": {"dark": {"A+": {"fraction": 0.6}, "B+": {"fraction": 0.5}}}}, "species.dark"),
        ({"imaging": {"shape": [32, 48], "blur_um": -1}}, "imaging"),
        ({"imaging": {"shape": [32, 48], "zoom": 2}}, "zoom"),
        ({"renders": {"noise_draws": 2}}, "renders.noise_draws"),
        ({"renders": {"focal_offset_um": []}}, "renders.focal_offset_um"),
        ({"store": {"dtype": "float64"}}, "store.dtype"),
        ({"trap": {"r0_um": 0}}, "trap.r0_um"),
        ({"split": {"exclude": ["render"]}}, "split.exclude"),
    ],
)
def test_bad_specs_give_one_line_errors_naming_the_key(change: dict, names: str) -> None:
    with pytest.raises(InputError) as exc:
        plan(normalise_spec({**base_spec(), **change}))
    message = str(exc.value)
    assert names in message and "\n" not in message


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        load_spec(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("parameters: [1, 2\n")
    with pytest.raises(InputError, match="not valid yaml"):
        load_spec(bad)


def test_shipped_models_data_specs_are_read_as_they_were_before_camera_effects() -> None:
    import json

    models = SPECS.parent / "models"
    checked = 0
    for card in models.glob("*.json"):
        for entry in json.loads(card.read_text()).get("data", []):
            name = entry["spec"]["name"]
            if (SPECS / f"{name}.yaml").is_file():
                assert load_spec(name) == entry["spec"], name
                assert "camera_effects" not in plan(load_spec(name)).renders[0]
                checked += 1
    assert checked >= 4


def test_camera_effects_are_drawn_per_image_within_their_ranges() -> None:
    from ccount_core.dataset.spec import draw_camera_effects

    spec = load_spec("camera_v1")
    section = plan(spec).renders[0]["camera_effects"]
    draws = [draw_camera_effects(section, np.random.default_rng(s)) for s in range(50)]
    assert draws[0] == draw_camera_effects(section, np.random.default_rng(0))
    assert draws[0] != draws[1]
    gradients = [d["background_gradient"] for d in draws]
    assert 0 <= min(gradients) and max(gradients) <= 0.15
    assert {d["camera"]["bit_depth"] for d in draws} == {8, 12, 16}


def test_camera_v2_draws_the_beam_by_the_level_it_leaves_at_the_edge() -> None:
    from ccount_core.dataset.spec import draw_camera_effects, effects_from_draw
    from ccount_core.simulation.camera import EdgeLaserProfile

    section = plan(load_spec("camera_v2")).renders[0]["camera_effects"]
    assert "laser_waist_um" not in section
    draws = [draw_camera_effects(section, np.random.default_rng(s)) for s in range(20)]
    levels = [d["laser_edge_level"] for d in draws]
    assert 0.3 <= min(levels) < max(levels) <= 0.7
    assert isinstance(effects_from_draw(draws[0]).profile, EdgeLaserProfile)


def test_camera_dark_v1_is_dark_v2_crystals_through_camera_v2() -> None:
    dark, camera, both = (load_spec(n) for n in ("dark_v2", "camera_v2", "camera_dark_v1"))
    for key in ("species", "trap"):
        assert both[key] == dark[key], key
    same = {k: v for k, v in both["parameters"].items() if k != "n_samples"}
    assert same == {k: v for k, v in dark["parameters"].items() if k != "n_samples"}
    assert both["parameters"]["n_samples"] == camera["parameters"]["n_samples"]
    for key in ("camera_effects", "imaging", "renders"):
        assert both[key] == camera[key], key
    assert len({dark["seed"], camera["seed"], both["seed"]}) == 3
    draws = plan(load_spec("camera_dark_v1"))
    assert draws.n_renders == 4 and "ND3+" in draws.label_names


def test_render_real_applies_the_drawn_effects() -> None:
    from ccount_core.dataset.spec import draw_camera_effects, effects_from_draw
    from ccount_core.dataset.sweep import render_real
    from ccount_core.simulation.render import ImagingSettings, render

    raw = {
        **base_spec(),
        "imaging": {"shape": [40, 48], "camera": {}},
        "camera_effects": {
            "background_gradient": {"min": 0.1, "max": 0.15},
            "camera": {"bit_depth": [8, 12]},
        },
    }
    imaging = plan(normalise_spec(raw)).renders[0]
    samples = np.random.default_rng(0).normal(0, 8e-6, (3, 20, 3))
    mask = np.ones(20, bool)
    settings = {k: v for k, v in imaging.items() if k != "noise_draw"}
    got = render_real(samples, mask, settings, np.random.default_rng(4))
    rng = np.random.default_rng(4)
    draw = draw_camera_effects(imaging["camera_effects"], rng)
    plain = {k: v for k, v in settings.items() if k != "camera_effects"}
    plain["camera"] = {**plain["camera"], **draw["camera"]}
    expected = render(samples, mask, ImagingSettings.from_dict(plain), rng, effects_from_draw(draw))
    assert np.array_equal(got, expected) and got.max() <= 2 ** draw["camera"]["bit_depth"] - 1


@pytest.mark.parametrize(
    ("section", "names"),
    [
        ({"laser_wasit_um": 100}, "laser_wasit_um"),
        ({"psf_wing_fraction": {"min": 0, "max": 2}}, "psf wing fraction"),
        ({"camera": {"bit_depth": [8]}}, "imaging.camera"),
        ({"laser_along_axis": "yes"}, "laser_along_axis"),
    ],
)
def test_bad_camera_effects_name_the_key(section: dict, names: str) -> None:
    with pytest.raises(InputError, match=names):
        normalise_spec({**base_spec(), "camera_effects": section})


def test_camera_effects_refuse_an_offset_no_exposure_clears() -> None:
    # 8-bit at 30 % exposure tops out at 76 counts: an offset of 200 leaves no signal; the
    # check takes every combination of the ranges' ends, not only all-min and all-max
    section = {
        "exposure": {"min": 0.3, "max": 0.9},
        "camera": {"offset": {"min": 0, "max": 200}, "bit_depth": [8, 16]},
    }
    raw = {**base_spec(), "imaging": {"shape": [40, 48], "camera": {}}}
    with pytest.raises(InputError, match=r"8-bit.*offset 200"):
        normalise_spec({**raw, "camera_effects": section})
    section["camera"]["offset"] = {"min": 0, "max": 20}
    assert "camera_effects" in normalise_spec({**raw, "camera_effects": section})
