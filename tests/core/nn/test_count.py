"""Counting a stack: rows per frame, CSV written as it goes and resumed, TTA, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ccount_core.dataset.samples import load_sample
from ccount_core.errors import InputError
from ccount_core.image.io import write_tiff
from ccount_core.image.preprocess import PreprocessConfig
from ccount_core.nn.count import count_file, count_stack, validation_error
from ccount_core.nn.counts_file import COLUMNS, read_counts

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# A coarse pipeline so that the tiny test network runs fast: 12 µm pixels, 48 x 32 inputs.
PRE = PreprocessConfig(model_pixel_size_um=12.0, output_shape=(48, 32))


@pytest.fixture(scope="module")
def model_dir(write_model, tmp_path_factory):
    """A tiny Ca+ model (seed 0, float16 weights) on PRE, trained on 30-350 ions."""
    return write_model(
        tmp_path_factory.mktemp("model") / "tiny.safetensors",
        preprocess=PRE,
        half=True,
        card={"label_range": [30, 350]},
    )


@pytest.fixture(scope="module")
def sample():
    stack, meta = load_sample("reaction_series")
    return stack[:4], meta


def test_rows_per_frame_with_ellipse_time_and_tta_uncertainty(model_dir, sample):
    stack, meta = sample
    rows = count_stack(
        stack,
        model_dir,
        meta["pixel_size_um"],
        frame_interval_s=10.0,
        batch_size=2,
        tta=3,
        bf16=False,
    )
    assert [r["frame"] for r in rows] == [0, 1, 2, 3]
    assert [r["time_s"] for r in rows] == [0.0, 10.0, 20.0, 30.0]
    for r in rows:
        assert set(COLUMNS) <= set(r)
        assert np.isfinite(r["count"]) and r["uncertainty"] > 0
        # the sample is 400 px wide with the crystal near the centre
        assert 100 < r["ellipse_center_col"] < 300 and r["ellipse_semi_major"] > 20
        assert "pixel size unknown" not in r["warning"]
    plain = count_stack(stack[:1], model_dir, meta["pixel_size_um"], tta=0)
    assert plain[0]["uncertainty"] is None and plain[0]["time_s"] is None  # card: no metrics


# an evaluation as `ccount evaluate` writes it: RMS error 2 ions near 50, 10 near 350 (and a
# bin of too few images, left out)
BINS = [
    {"true_mean": 50.0, "rms": 2.0, "n": 40},
    {"true_mean": 200.0, "rms": 99.0, "n": 2},
    {"true_mean": 350.0, "rms": 10.0, "n": 40},
]


def test_validation_error_interpolates_the_card():
    card = {"metrics": {"ccount_evaluate": {"bins": BINS}}}
    np.testing.assert_allclose(
        validation_error(card, np.array([10, 50, 200, 350, 900])), [2.0, 2.0, 6.0, 10.0, 10.0]
    )
    assert np.isnan(validation_error({}, np.array([100.0]))).all()


def test_uncertainty_is_the_validation_error_joined_with_the_tta_spread(
    sample, tmp_path, write_model
):
    path = write_model(
        tmp_path / "evaluated.safetensors",
        preprocess=PRE,
        card={"label_range": [30, 350], "metrics": {"ccount_evaluate": {"bins": BINS}}},
    )
    stack, meta = sample
    card = {"metrics": {"ccount_evaluate": {"bins": BINS}}}
    # float32: an untrained network's outsized activations make bfloat16 (which a CPU with
    # bfloat16 units would pick) scatter its counts with the batch size
    plain = count_stack(stack[:2], path, meta["pixel_size_um"], tta=0, bf16=False)
    for r in plain:
        assert r["uncertainty"] == pytest.approx(validation_error(card, r["count"]), rel=1e-5)
    views = count_stack(stack[:2], path, meta["pixel_size_um"], tta=3, bf16=False)
    for r in views:  # the spread of the views adds in quadrature: larger than the model's part
        assert r["uncertainty"] > validation_error(card, r["count"])


def test_a_dark_species_count_has_its_own_uncertainty(sample, tmp_path, write_model):
    """Each further label's uncertainty comes from its own bins in the card (``other_bins``):
    finite, written to the CSV as ``uncertainty_ND3+``; none where the card has no bins."""
    nd3_bins = [{"true_mean": 0.0, "rms": 0.5, "n": 40}, {"true_mean": 100.0, "rms": 4.5, "n": 40}]
    evaluation = {"bins": BINS, "other_bins": {"ND3+": nd3_bins}}
    card = {"label_names": ["Ca+", "ND3+"], "metrics": {"ccount_evaluate": evaluation}}
    path = write_model(
        tmp_path / "dark.safetensors",
        ("Ca+", "ND3+"),
        preprocess=PRE,
        card={"label_range": [30, 350], "metrics": card["metrics"]},
    )
    stack, meta = sample
    rows = count_stack(stack[:2], path, meta["pixel_size_um"], tta=0)
    for r in rows:
        assert r["uncertainty"] == pytest.approx(validation_error(card, r["count"]), rel=1e-5)
        want = validation_error(card, np.array(r["count_ND3+"]), "ND3+")
        assert np.isfinite(r["uncertainty_ND3+"]) and 0.5 <= r["uncertainty_ND3+"] <= 4.5
        assert r["uncertainty_ND3+"] == pytest.approx(want, rel=1e-5)
    tif = tmp_path / "stack.tif"
    write_tiff(tif, stack[:2], pixel_size_um=meta["pixel_size_um"])
    count_file(tif, tmp_path / "counts.csv", path)
    _, written = read_counts(tmp_path / "counts.csv")
    assert [float(w["uncertainty_ND3+"]) for w in written] == pytest.approx(
        [r["uncertainty_ND3+"] for r in rows], abs=0.005
    )
    # an older card (ND3+ figures over all images only): the ND3+ count has no uncertainty
    old = write_model(
        tmp_path / "old.safetensors",
        ("Ca+", "ND3+"),
        preprocess=PRE,
        card={"metrics": {"ccount_evaluate": {"bins": BINS, "other_labels": {"ND3+": {}}}}},
    )
    rows = count_stack(stack[:1], old, meta["pixel_size_um"], tta=0)
    assert rows[0]["uncertainty_ND3+"] is None and rows[0]["uncertainty"] is not None


def test_csv_written_per_batch_and_resumed_after_a_kill(model_dir, sample, tmp_path):
    stack, meta = sample
    tif = tmp_path / "stack.tif"
    write_tiff(tif, stack, pixel_size_um=meta["pixel_size_um"], frame_interval_s=10.0)
    out = tmp_path / "counts.csv"

    class Killed(Exception):
        pass

    def kill_after_first_batch(done: int, total: int) -> None:
        raise Killed

    with pytest.raises(Killed):
        count_file(
            tif, out, model_dir, batch_size=2, tta=2, bf16=False, progress=kill_after_first_batch
        )
    meta_csv, rows = read_counts(out)
    assert [int(r["frame"]) for r in rows] == [0, 1]  # the first batch was on disk
    assert meta_csv["pixel_size_um"] == meta["pixel_size_um"]
    assert meta_csv["preprocess"] == PRE.to_dict() | {"output_shape": [48, 32]}
    with out.open("a") as fh:  # a line the killed writer left half-written
        fh.write("2,20.0,12")
    new = count_file(tif, out, model_dir, batch_size=2, tta=2, bf16=False)
    assert [r["frame"] for r in new] == [2, 3]
    _, rows = read_counts(out)
    assert [int(r["frame"]) for r in rows] == [0, 1, 2, 3]
    full = count_stack(stack, model_dir, meta["pixel_size_um"], batch_size=2, tta=2, bf16=False)
    np.testing.assert_allclose(
        [float(r["count"]) for r in rows], [r["count"] for r in full], rtol=1e-5
    )
    with pytest.raises(InputError, match="another source"):
        count_file(tif, out, model_dir, pixel_size_um=2.0, batch_size=2)


def test_cli_count_says_a_truncated_tiff_lost_frames(model_dir, sample, tmp_path, capsys):
    # cli/count.py prints io.open_stack's warning before counting the complete frames.
    from ccount_core.cli import main

    stack, meta = sample
    tif = write_tiff(tmp_path / "cut.tif", stack, pixel_size_um=meta["pixel_size_um"])
    data = tif.read_bytes()
    tif.write_bytes(data[: len(data) * 3 // 5])  # 2 of the 4 frames whole, the third cut
    out = tmp_path / "counts.csv"
    argv = ["count", str(tif), "-o", str(out), "--model", str(model_dir), "--no-bf16"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "ccount: warning:" in err and "2 complete frame(s) of 4 declared (2 lost)" in err
    assert [int(r["frame"]) for r in read_counts(out)[1]] == [0, 1]


def test_bad_input_is_refused_with_one_line(model_dir, tmp_path):
    with pytest.raises(InputError, match="no frames"):
        count_stack(np.zeros((0, 64, 64)), model_dir)
    with pytest.raises(InputError, match="too small"):
        count_stack(np.zeros((2, 8, 8)), model_dir)
    with pytest.raises(InputError, match="does not exist"):
        count_file(tmp_path / "missing.tif", tmp_path / "c.csv", model_dir)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\0" * 64)
    with pytest.raises(InputError, match="card"):
        count_stack(np.zeros((1, 64, 64)), junk, 1.0)
    with pytest.raises(InputError, match=r"pixel size unknown: .*--pixel-size-um"):
        count_stack(np.zeros((1, 64, 64)), model_dir)
    with pytest.raises(InputError, match="trap_axis: expected auto, horizontal"):
        count_stack(np.zeros((1, 64, 64)), model_dir, 1.0, trap_axis="sideways")
    with pytest.raises(InputError, match="preprocessing configuration differs"):
        count_stack(
            np.zeros((1, 64, 64)),
            model_dir,
            1.0,
            expected_config=PreprocessConfig(model_pixel_size_um=3.0),
        )


# nn/count.py count_file: every argument, the stack and the model are checked before the CSV
# is created; a refused command leaves no file that would block the corrected one.
REFUSED = [
    (["--pixel-size-um", "-2"], "pixel_size_um: must be a positive number"),
    (["--pixel-size-um", "nan"], "pixel_size_um: must be a positive number"),
    (["--batch-size", "0"], "batch_size: must be at least 1, got 0"),
    (["--threads", "0"], "threads: must be at least 1, got 0"),
    (["--tta", "-1"], "tta: must be at least 0, got -1"),
    (["--device", "abacus"], "device: 'abacus' is not a torch device"),
    (["--device", "cuda:0"], "no CUDA GPU is available"),
    (["--device", "meta"], "device: 'meta' cannot be used here"),
    (["--model", "JUNK"], "card"),
]


@pytest.mark.parametrize(("argv", "message"), REFUSED)
def test_a_refused_count_leaves_no_file_and_the_corrected_one_runs(
    model_dir, sample, tmp_path, capsys, monkeypatch, argv, message
):
    from ccount_core.cli import main

    stack, meta = sample
    tif = tmp_path / "stack.tif"
    write_tiff(tif, stack[:1], pixel_size_um=meta["pixel_size_um"])
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\0" * 64)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "out" / "counts.csv"
    base = ["count", str(tif), "-o", str(out), "--model", str(model_dir), "--no-bf16"]
    bad = [a.replace("JUNK", str(junk)) for a in argv]
    assert main([*base, *bad]) == 1
    err = capsys.readouterr().err.splitlines()[-1]  # after the (empty) progress bar
    assert err.startswith("ccount: error: ") and message in err
    assert not out.exists() and not out.parent.exists()
    assert main(base) == 0  # the corrected command, same -o
    assert [int(r["frame"]) for r in read_counts(out)[1]] == [0]


def test_a_killed_runs_temporary_file_is_removed_on_the_next_count(model_dir, sample, tmp_path):
    # count_file calls files.remove_stale_temps for its CSV before starting it
    stack, meta = sample
    tif = tmp_path / "stack.tif"
    write_tiff(tif, stack[:1], pixel_size_um=meta["pixel_size_um"])
    leftover, foreign = tmp_path / ".counts.csv.k1lled_0.csv", tmp_path / ".counts.csv.old"
    for f in (leftover, foreign):
        f.write_text("# ccount counts {")
    count_file(tif, tmp_path / "counts.csv", model_dir, bf16=False)
    assert not leftover.exists() and foreign.exists()
    assert len(read_counts(tmp_path / "counts.csv")[1]) == 1


def test_a_stack_of_text_is_refused_before_counting(model_dir):
    with pytest.raises(InputError, match=r"stack: pixel type <U1 is not a real number type"):
        count_stack(np.full((1, 64, 64), "a"), model_dir)


def test_unprepared_frame_gets_a_warning_not_a_count(model_dir):
    frames = np.zeros((1, 64, 64), np.float32)  # blank: no crystal to find
    (row,) = count_stack(frames, model_dir, pixel_size_um=2.0)
    assert row["count"] is None and row["warning"].startswith("not counted")


def test_rows_carry_what_the_preparation_noticed(model_dir, sample):
    # count._row joins the ellipse's notes (image/ellipse.py, image/preprocess.py): the frame
    # reaches the preparation in its own dtype, so clipping at the uint16 maximum is seen.
    stack, meta = sample
    bright = np.minimum(stack[:1] * 200.0, 65535).astype(np.uint16)
    (row,) = count_stack(bright, model_dir, meta["pixel_size_um"], bf16=False)
    assert row["count"] is not None and "saturated: " in row["warning"]
    assert "uint16 maximum" in row["warning"]
    (plain,) = count_stack(stack[:1], model_dir, meta["pixel_size_um"], bf16=False)
    assert "saturated" not in plain["warning"]


def _warning(
    count: float, unc: float, spread: float = float("nan"), unlike: tuple[str, ...] = ()
) -> str:
    from ccount_core.nn.count import _row

    row = _row(
        0,
        0,
        np.array([count]),
        np.array([unc]),
        spread,
        {},
        [None],
        ["Ca+"],
        None,
        30.0,
        350.0,
        "views disagree",
        "try the ensemble",
        unlike,
    )
    return row["warning"]


def test_training_range_warning_allows_the_counts_own_error():
    assert _warning(350.4, 9.0) == ""  # 0.4 over the top, well inside its ±9 ions
    assert "outside the training range 30-350" in _warning(360.0, 9.0)
    assert "outside the training range" in _warning(350.4, float("nan"))  # no error known
    assert "outside the training range" in _warning(25.0, 1.0)
    assert _warning(29.0, 1.0) == ""


def test_a_count_whose_two_sigma_band_passes_ten_percent_is_noted_imprecise():
    assert _warning(100.0, 4.9) == ""  # ±2σ = ±9.8 %
    assert _warning(100.0, 5.1) == "imprecise: ±2σ is ±10.2 % of the count; try the ensemble"
    assert _warning(40.0, 2.4).startswith("imprecise: ±2σ is ±12.0 %")
    # a frame with a reason to doubt it names that reason alone (its σ was widened for it)
    assert _warning(100.0, 12.0, spread=11.0) == "views disagree"
    assert _warning(100.0, 12.0, unlike=("unlike: a dark core",)) == "unlike: a dark core"
    assert _warning(100.0, float("nan")) == ""  # no σ known: nothing to say


def test_count_stack_notes_a_wide_band_with_the_single_models_fix(sample, tmp_path, write_model):
    """A card whose validation RMS is 20 % of every count: each row without another warning
    is noted imprecise, pointing a single model's user to the ensemble."""
    bins = [{"true_mean": n, "rms": 0.2 * n, "n": 40} for n in (1.0, 1000.0)]
    path = write_model(
        tmp_path / "wide.safetensors",
        preprocess=PRE,
        card={"metrics": {"ccount_evaluate": {"bins": bins}}},
    )
    stack, meta = sample
    rows = count_stack(stack[:2], path, meta["pixel_size_um"], bf16=False)
    assert [r["warning"] for r in rows] == [
        "imprecise: ±2σ is ±40.0 % of the count; the ensemble model counts closer "
        "(--model ensemble)"
    ] * 2


def test_device_is_chosen_automatically_and_checked(model_dir, sample, monkeypatch):
    from ccount_core.nn.count import pick_device

    stack, _ = sample
    assert pick_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device() == torch.device("cpu")
    with pytest.raises(InputError, match="no CUDA GPU"):
        count_stack(stack[:1], model_dir, 1.5, device="cuda")
    with pytest.raises(InputError, match="not a torch device"):
        count_stack(stack[:1], model_dir, 1.5, device="abacus")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device() == torch.device("cuda")


@pytest.mark.parametrize(
    ("native", "pays", "agrees"),
    [(False, True, True), (True, False, True), (True, True, True), (True, True, False)],
)
def test_bf16_follows_the_cpu_unless_asked(model_dir, sample, monkeypatch, native, pays, agrees):
    import ccount_core.nn.count as count_mod
    from ccount_core.nn.ensemble import IonCounter

    stack, meta = sample
    timed: list[tuple[int, ...]] = []

    def fake_pays(net, shape, batch_size):
        timed.append((*shape, batch_size))
        return pays

    monkeypatch.setattr(count_mod, "native_bf16", lambda: native)
    monkeypatch.setattr(count_mod, "_bf16_pays", fake_pays)
    monkeypatch.setattr(IonCounter, "bf16_agrees", lambda self, tolerance: agrees)
    ran: list[bool] = []  # the precision each network call ran in
    real_infer = count_mod.infer
    monkeypatch.setattr(
        count_mod,
        "infer",
        lambda net, images, tta, seed, bf16: (
            ran.append(bf16) or real_infer(net, images, tta, seed, bf16)
        ),
    )
    use = native and pays and agrees  # native bfloat16, faster here, and the model agrees
    auto = count_stack(stack[:2], model_dir, meta["pixel_size_um"], device="cpu", batch_size=8)
    assert timed == ([(*PRE.output_shape, 8)] if native else [])
    assert ran == [use] and len(auto) == 2
    for asked in (use, not use):
        count_stack(stack[:2], model_dir, meta["pixel_size_um"], device="cpu", bf16=asked)
        assert ran[-1] is asked
    assert len(timed) == (1 if native else 0)  # an explicit choice is not timed


def test_bf16_is_chosen_only_for_a_model_that_counts_alike_in_it() -> None:
    """The shipped default counts a probe batch in bfloat16 within 0.3 % of float32; a network
    whose bfloat16 counts stray is refused (and the answer remembered)."""
    from ccount_core.nn.count import BF16_TOLERANCE
    from ccount_core.nn.ensemble import IonCounter, load_counter

    assert load_counter("default").bf16_agrees(BF16_TOLERANCE)
    assert not load_counter("default").bf16_agrees(1e-9)  # it does round

    class Stray(torch.nn.Module):
        """Counts 100 in float32 and 110 under bfloat16 autocast."""

        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            off = 10.0 if torch.is_autocast_enabled("cpu") else 0.0
            return torch.full((x.shape[0], 1), 100.0 + off) + self.w

    card = {"input_shape": [16, 16], "label_names": ["Ca+"]}
    counter = IonCounter([(Stray(), card)], card)
    assert not counter.bf16_agrees(BF16_TOLERANCE)
    assert counter.bf16_agrees(0.5) is False  # remembered


def test_two_batches_at_once_count_the_same_in_order(model_dir, sample):
    from ccount_core.nn.count import _parallel_batches

    stack, meta = sample
    cpu = torch.device("cpu")
    assert _parallel_batches(cpu, 2, 4) == (2, 1)
    assert _parallel_batches(cpu, 8, 4) == (2, 4)
    assert _parallel_batches(cpu, 2, 1) == (1, 2)  # one batch keeps every thread
    assert _parallel_batches(cpu, 1, 4) == (1, 1)
    assert _parallel_batches(torch.device("cuda"), 8, 4) == (1, 8)
    with pytest.raises(InputError, match="threads: must be at least 1"):
        count_stack(stack, model_dir, threads=0)  # checked with the other arguments
    batches: list[list[int]] = []
    # float32: the random test network magnifies rounding, and bfloat16 is chosen per thread
    # count where the CPU has it
    one = count_stack(
        stack, model_dir, meta["pixel_size_um"], batch_size=1, threads=1, tta=2, bf16=False
    )
    two = count_stack(
        stack,
        model_dir,
        meta["pixel_size_um"],
        batch_size=1,
        threads=2,
        tta=2,
        bf16=False,
        on_rows=lambda rows: batches.append([r["frame"] for r in rows]),
    )
    assert batches == [[0], [1], [2], [3]]  # delivered in frame order
    assert [r["frame"] for r in two] == [0, 1, 2, 3]
    np.testing.assert_allclose([r["count"] for r in two], [r["count"] for r in one], rtol=1e-5)
    np.testing.assert_allclose(
        [r["uncertainty"] for r in two], [r["uncertainty"] for r in one], rtol=1e-5
    )


def test_a_failing_callback_stops_the_parallel_count(model_dir, sample):
    stack, meta = sample
    seen: list[int] = []

    def stop_after_first(rows):
        seen.extend(r["frame"] for r in rows)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        count_stack(
            np.concatenate([stack] * 3),
            model_dir,
            meta["pixel_size_um"],
            batch_size=1,
            threads=2,
            on_rows=stop_after_first,
        )
    assert seen == [0]


def test_a_resumed_count_equals_an_uninterrupted_one(model_dir, sample, tmp_path, monkeypatch):
    # count_stack packs by the whole stack's length (PACK_MIN_FRAMES), not the frames left, so
    # a count resumed with fewer frames left than that runs the same (packed) network
    import ccount_core.nn.count as count_mod

    stack, meta = sample
    monkeypatch.setattr(count_mod, "PACK_MIN_FRAMES", len(stack))
    tif = tmp_path / "stack.tif"
    write_tiff(tif, stack, pixel_size_um=meta["pixel_size_um"])
    whole, resumed = tmp_path / "whole.csv", tmp_path / "resumed.csv"
    count_file(tif, whole, model_dir, batch_size=1, bf16=False, device="cpu")

    class Killed(Exception):
        pass

    def kill_after_three_frames(done: int, total: int) -> None:
        if done == 3:
            raise Killed

    with pytest.raises(Killed):
        count_file(
            tif,
            resumed,
            model_dir,
            batch_size=1,
            bf16=False,
            device="cpu",
            progress=kill_after_three_frames,
        )
    assert len(read_counts(resumed)[1]) == 3
    assert len(count_file(tif, resumed, model_dir, batch_size=1, bf16=False, device="cpu")) == 1
    assert resumed.read_bytes() == whole.read_bytes()


def test_a_member_s_own_notes_reach_the_row_once_per_kind() -> None:
    from types import SimpleNamespace

    from ccount_core.image.ellipse import Ellipse
    from ccount_core.nn.count import _with_members_notes

    plain = Ellipse(50.0, 60.0, 30.0, 12.0, 0.0, notes=("noisy: pixel noise 9 %",))
    own = [plain, None]
    member = SimpleNamespace(
        ellipses=[
            Ellipse(50.0, 60.0, 30.0, 12.0, 0.0, notes=(*plain.notes, "beam: tips at 40 %")),
            None,
        ]
    )
    also = SimpleNamespace(
        ellipses=[Ellipse(50.0, 60.0, 30.0, 12.0, 0.0, notes=("beam: 45 %",)), None]
    )
    merged = _with_members_notes(own, [SimpleNamespace(ellipses=own), member, also])
    assert merged[0].notes == ("noisy: pixel noise 9 %", "beam: tips at 40 %")
    assert merged[1] is None and own[0].notes == plain.notes  # the inputs untouched
