"""``xcalab reproduce``: the tables, their rows and the paper's numbers; aggregation over seeds; the
Markdown and CSV tables; the command end to end on the smoke preset (what CI runs) and its cache."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import itertools
import json
import math
import re

import pytest

from xcalab.cli import main
from xcalab.config import get_preset
from xcalab.features.extract import SOURCES
from xcalab.metrics import PAPER_TIOUS
from xcalab.pipeline import VARIANTS, variant_config
from xcalab.reproduce import (
    PAPER,
    TABLES,
    Row,
    Table,
    _columns,
    csv_text,
    markdown,
    phase_predictions,
    reproduce,
    resolve_better,
    row_config,
    run_one,
    summarise,
)

SMOKE = get_preset("smoke")
AP_COLS = [f"AP@{t:g}" for t in PAPER_TIOUS] + ["mAP"]


pytestmark = pytest.mark.usefixtures("one_thread_and_a_private_feature_cache")


# --------------------------------------------------------------------------------------------------
# The tables and the paper's numbers
# --------------------------------------------------------------------------------------------------


def test_tables_are_well_formed():
    assert list(TABLES) == ["II", "IV", "V", "VI", "VII", "VIII", "seeds"]
    for name, table in TABLES.items():
        assert table.name == name and table.rows
        labels = [r.label for r in table.rows]
        keys = [r.key() for r in table.rows]
        assert len(set(labels)) == len(labels), name
        assert len(set(keys)) == len(keys), name  # every row has its own cache folder
        for row in table.rows:
            assert row.variant in VARIANTS, (name, row)
            assert row.source in SOURCES and row.setting in (0, 1, 2), (name, row)
    assert [r.key() for r in TABLES["IV"].rows] == [
        "baseline-wo-st", "ta-wo-st", "sa-wo-st", "sta-wo-st", "actionformer", "ta", "sa", "sta"]
    assert [r.key() for r in TABLES["VI"].rows] == [
        "actionformer", "actionformer-frangi", "sta-ipcon-s1", "sta-ipcon-s2", "sta-ipcon-s4"]
    assert [r.key() for r in TABLES["VII"].rows] == ["sta-ipcon", "sta-ipcon-patch1", "sta-ipcon-patch2"]
    assert [r.key() for r in TABLES["VIII"].rows] == ["sta-ipcon", "sta-ipcon-setting1", "sta-ipcon-setting2"]
    assert TABLES["VIII"].keyframes_only and not any(t.keyframes_only for n, t in TABLES.items() if n != "VIII")


def test_the_seeds_table():
    table = TABLES["seeds"]
    assert [r.key() for r in table.rows] == [
        "actionformer", "sta-ipcon", "actionformer+gaf", "actionformer+tsa", "sta-ipcon-better", "phase-attention",
        "phase-attention-phases", "phase-attention-majority"]
    assert [r.later for r in table.rows] == [False] * 4 + [True, False, True, True]
    assert table.rows[table.pr_row].better_of == ("ActionFormer+GAF", "ActionFormer+TSA")
    # Both resolutions of the better row are variants.
    for module in ("GAF", "TSA"):
        assert f"STA-IPCon+{module}" in VARIANTS


GAF, TSA = "ActionFormer+GAF", "ActionFormer+TSA"
BETTER = Row("STA-IPCon + the better module", "STA-IPCon", better_of=(GAF, TSA))


def test_the_better_module_is_the_one_with_the_higher_mean_map():
    tsa = resolve_better(BETTER, {GAF: 70.0, TSA: 80.0, "ActionFormer": 90.0})
    assert tsa.variant == "STA-IPCon+TSA" and tsa.key() == "sta-ipcon+tsa" and tsa.better_of == ()
    assert tsa.label == "STA-IPCon + TSA (the better module)"
    assert resolve_better(BETTER, {GAF: 80.0, TSA: 70.0}).variant == "STA-IPCon+GAF"
    assert resolve_better(BETTER, {GAF: 75.0, TSA: 75.0}).variant == "STA-IPCon+GAF"  # a tie: the first listed
    plain = Row("STA", "STA")
    assert resolve_better(plain, {}) is plain
    with pytest.raises(ValueError, match="needs the scores of ActionFormer\\+TSA first"):
        resolve_better(BETTER, {GAF: 80.0})
    with pytest.raises(ValueError, match="a detector \\+ a module"):
        resolve_better(Row("x", "STA-IPCon", better_of=("STA",)), {"STA": 1.0})
    with pytest.raises(ValueError, match="unknown variant 'STA\\+TSA'"):  # no such variant to train
        resolve_better(Row("x", "STA", better_of=(TSA,)), {TSA: 1.0})
    with pytest.raises(ValueError, match="not resolved yet"):
        run_one(SMOKE, BETTER, seed=0)


def test_a_readout_is_phases_or_majority():
    assert Row("x", "Phase attention", readout="phases").key() == "phase-attention-phases"
    with pytest.raises(ValueError, match='readout must be None, "phases" or "majority"'):
        Row("x", "Phase attention", readout="frames")


def test_phase_predictions_read_keyframes_off_the_phases(tmp_path):
    from toy_data import STRIDE, toy_feature_set

    from xcalab.data.dataset import FeatureDataset
    from xcalab.data.phases import keyframes_from_phases

    toy_feature_set(tmp_path, {"a": ("test", 20, (10, 30, 60)), "b": ("test", 16, (8, 20, 50))}, size=8)
    test = FeatureDataset(tmp_path, tmp_path / "annotations.json", subset="test", feature_dim=64)
    truth = [test.video(i).phases.numpy() for i in range(len(test))]
    for p, video, phases in zip(phase_predictions(test, truth), test.videos, truth):
        n_frames = round(video.duration * video.fps)
        assert p.video_id == video.video_id and p.keyframes == keyframes_from_phases(phases, n_frames, test.grid)
        assert max(abs(a - b) for a, b in zip(p.keyframes, video.keyframes)) <= (STRIDE - 1) / 2
    # A constant phase: the plateau at every step puts start and apex first and end last.
    for p, video in zip(phase_predictions(test, 2), test.videos):
        assert p.keyframes == (0.5, 0.5, round(video.duration * video.fps) - 1.0)
    with pytest.raises(ValueError, match="a: 3 phases for 20 feature steps"):
        phase_predictions(test, [truth[0][:3], truth[1]])


def test_row_keys_differ_whenever_rows_differ():
    rows = [Row("x", v, source, stride, setting, patch) for v, source, stride, setting, patch in itertools.product(
        VARIANTS, SOURCES, (None, 1, 2, 4), (0, 1, 2), (None, 1, 2))]
    keys = [r.key() for r in rows]
    assert len(set(keys)) == len(rows)
    assert all(re.fullmatch(r"[a-z0-9+-]+", k) for k in keys)  # file names
    assert Row("a", "STA").key() == Row("b", "STA").key() == "sta"  # the label is not part of the key
    assert Row("a", "STA w/o S-T", "frangi", 2, 1, 3).key() == "sta-wo-st-frangi-s2-setting1-patch3"
    with pytest.raises(ValueError, match="unknown variant"):
        Row("a", "STA++").key()


def test_every_paper_entry_names_a_row_of_its_table():
    assert set(PAPER) == set(TABLES) - {"seeds"}  # "seeds" is xcalab's own comparison
    for name, entries in PAPER.items():
        labels = {r.label for r in TABLES[name].rows}
        assert set(entries) <= labels, (name, sorted(set(entries) - labels))
        n_columns = len(_columns(TABLES[name], list(PAPER_TIOUS)))
        for label, values in entries.items():
            assert len(values) == n_columns, (name, label)


def test_paper_numbers_are_consistent():
    """Transcription check: mAP is the mean of the five APs (to the paper's rounding), P/R/F are fractions,
    and a row that appears in several tables has the same numbers everywhere."""
    for name, entries in PAPER.items():
        for label, values in entries.items():
            cols = [c for c, _ in _columns(TABLES[name], list(PAPER_TIOUS))]
            v = dict(zip(cols, values))
            if "mAP" in v:
                assert v["mAP"] == pytest.approx(sum(v[c] for c in AP_COLS[:5]) / 5, abs=0.01), (name, label)
                assert all(0 < v[c] <= 100 for c in AP_COLS), (name, label)
            if "P" in v:
                assert all(0 < v[c] < 1 for c in "PRF") and v["AD"] > 1, (name, label)
    ours, baseline = PAPER["V"]["STA+IPCon"], PAPER["IV"]["Baseline [6]"]
    assert PAPER["II"]["Ours (STA-IPCon)"] == ours[:6] + ours[9:] and PAPER["II"]["ActionFormer [6]"] == baseline[:6] + baseline[9:]
    assert PAPER["VI"]["Ours (stride = 4)"] == ours == PAPER["VII"]["Ours"]
    assert PAPER["VIII"]["Ours"] == ours[6:]
    assert PAPER["VI"]["Baseline, SVS-Net"] == baseline
    assert PAPER["IV"]["STA"] == PAPER["V"]["STA"]


def test_row_config_applies_stride_setting_seed_and_variant():
    cfg = row_config(SMOKE, Row("r", "TA", source="frangi", stride=2, setting=1, patch=1), seed=3)
    assert cfg.seed == 3 and cfg.setting == 1 and cfg.features.stride == 2
    assert cfg.features.window == SMOKE.features.window and cfg.features.map_size == SMOKE.features.map_size
    assert (cfg.model.long_term, cfg.model.imagewise, cfg.model.patchwise, cfg.model.short_term) == ("TA", False, False, True)
    assert cfg.model.channels == SMOKE.model.channels and cfg.train == SMOKE.train and cfg.synth == SMOKE.synth
    assert cfg.name == SMOKE.name and cfg.data_dir == SMOKE.data_dir
    # Without a stride the preset's is kept; the default row is the variant's configuration with the seed.
    plain = row_config(SMOKE, Row("r", "STA-IPCon"), seed=0)
    assert plain == variant_config(SMOKE, "STA-IPCon") == SMOKE
    assert row_config(SMOKE, Row("r", "SA w/o S-T"), seed=1) == variant_config(SMOKE.replace(seed=1), "SA w/o S-T")


# --------------------------------------------------------------------------------------------------
# Aggregation and the written tables
# --------------------------------------------------------------------------------------------------


def _metrics(aps, prf, ad, ad_paper=None, map_all=0.5, n_missing=0, seconds=1.0):
    """One (row, seed) as run_one returns it: AP fractions per tIoU, P/R/F fractions, AD in frames."""
    paper = {"tiou": list(PAPER_TIOUS), "map_per_tiou": list(aps), "mAP": sum(aps) / len(aps),
             "prf": {"paper": None if prf is None else dict(zip(("precision", "recall", "f1"), prf))},
             "ad": ad, "ad_paper": ad_paper, "n_missing": n_missing}
    return {"paper": paper, "all": {"mAP": map_all}, "seconds": seconds}


TOY = Table("T", "toy", (Row("Three seeds", "STA"), Row("One seed", "TA"), Row("No keyframes", "SA")))
PER_ROW = {
    "sta": [_metrics([0.5] * 5, (0.6, 0.7, None), 2.0, 4.0, 0.4, 0, 10.0),
            _metrics([0.6] * 5, (0.8, 0.7, 0.5), 4.0, 6.0, 0.5, 1, 11.0),
            _metrics([0.7, 0.7, 0.7, 0.7, 0.2], (0.7, 0.7, 0.6), 9.0, 11.0, 0.6, 0, 12.0)],
    "ta": [_metrics([0.9, 0.8, 0.7, 0.6, 0.5], (0.5, 0.25, 0.125), 3.0)],
    "sa": [_metrics([0.1] * 5, None, None), _metrics([0.3] * 5, None, None)],
}


def test_summarise_known_means_and_stds():
    rows = summarise(TOY.rows, PER_ROW)
    assert [r["label"] for r in rows] == ["Three seeds", "One seed", "No keyframes"]
    assert [r["key"] for r in rows] == ["sta", "ta", "sa"] and rows[0]["variant"] == "STA"
    three, one, none = rows
    assert [len(r["per_seed"]) for r in rows] == [3, 1, 2]
    # mAP per seed: 50, 60, 60 (the third seed's APs average to 0.6).
    assert three["per_seed"][2]["mAP"] == pytest.approx(60.0) and three["per_seed"][2]["AP@0.7"] == pytest.approx(20.0)
    assert three["mean"]["mAP"] == pytest.approx(170 / 3)
    assert three["std"]["mAP"] == pytest.approx(math.sqrt(((50 - 170 / 3) ** 2 + 2 * (60 - 170 / 3) ** 2) / 2))
    assert three["mean"]["AP@0.3"] == pytest.approx(60.0) and three["std"]["AP@0.3"] == pytest.approx(10.0)
    assert three["mean"]["AD"] == pytest.approx(5.0) and three["std"]["AD"] == pytest.approx(math.sqrt(13))
    assert three["mean"]["AD (reference)"] == pytest.approx(7.0)
    assert three["mean"]["P"] == pytest.approx(0.7) and three["std"]["P"] == pytest.approx(0.1)
    assert three["mean"]["R"] == pytest.approx(0.7) and three["std"]["R"] == pytest.approx(0.0, abs=1e-12)
    # A value missing in one seed: mean and std over the others.
    assert three["mean"]["F"] == pytest.approx(0.55) and three["std"]["F"] == pytest.approx(math.sqrt(0.005))
    assert three["map_all"] == pytest.approx([40.0, 50.0, 60.0]) and three["n_missing"] == [0, 1, 0]
    assert three["seconds"] == [10.0, 11.0, 12.0]
    # One seed: std 0.
    assert one["mean"]["mAP"] == pytest.approx(70.0) and one["std"]["mAP"] == 0.0
    assert all(v == 0.0 for v in one["std"].values() if v is not None)
    assert one["mean"]["F"] == pytest.approx(0.125) and one["mean"]["AD (reference)"] is None
    assert one["std"]["AD (reference)"] is None
    # No keyframe metrics at all: None, not 0.
    assert none["mean"]["mAP"] == pytest.approx(20.0) and none["std"]["mAP"] == pytest.approx(math.sqrt(200))
    assert all(none["mean"][c] is None and none["std"][c] is None for c in ("P", "R", "F", "AD"))


INFO = {"tious": list(PAPER_TIOUS), "preset": "smoke", "seeds": [0, 1, 2], "data_seed": 0, "n_test": 2,
        "command": "xcalab reproduce --table IV", "wall_seconds": 90.0, "machine": "test machine"}


def _iv_rows():
    """Table IV's rows with made-up numbers: row i has mAP 10 i %, P = R = F = 0.5, AD = i + 1 (reference i + 3)."""
    per_row = {r.key(): [_metrics([i / 10] * 5, (0.5, 0.5, 0.5), i + 1.0, i + 3.0)]
               for i, r in enumerate(TABLES["IV"].rows)}
    return summarise(TABLES["IV"].rows, per_row)


def test_markdown_has_every_row_the_protocol_and_the_paper():
    table = TABLES["IV"]
    rows = _iv_rows()
    text = markdown(table, rows, INFO)
    lines = text.splitlines()
    assert lines[0] == "### Table IV on XCA-Synth `smoke`: Ablation of the spatiotemporal attention module"
    assert "mAP with the paper's protocol (top-1 segment per class)" in text
    assert "mean ± std over training seeds [0, 1, 2] (data seed 0); test split, 2 cines" in text
    assert lines[4] == "| Method | " + " | ".join(AP_COLS + ["P", "R", "F", "AD", "AD (reference)"]) + " |"
    body = [line for line in lines if line.startswith("| ") and not line.startswith("| Method")]
    assert [line.split(" | ")[0][2:] for line in body] == [r.label for r in table.rows]
    first = body[0].split(" | ")
    assert first[1] == "0.00 ± 0.00 [82.35]" and first[6] == "0.00 ± 0.00 [40.84]"
    # The paper's AD was measured with the reference's 2-frame shift: its bracket sits on "AD (reference)".
    assert first[7] == "0.5000 ± 0.0000 [0.7189]" and first[10] == "1.00 ± 0.00" and first[11] == "3.00 ± 0.00 [11.14] |"
    assert body[-1].split(" | ")[6] == "70.00 ± 0.00 [70.21]"
    assert "this invocation: 1.5 min wall on test machine" in text and "`xcalab reproduce --table IV`" in text


def test_markdown_of_other_tables():
    # Table II: AP, mAP and AD, and its notes.
    per_row = {"actionformer": [_metrics([0.5] * 5, None, None)], "sta-ipcon": [_metrics([0.6] * 5, None, None)]}
    text = markdown(TABLES["II"], summarise(TABLES["II"].rows, per_row), INFO)
    assert "| Method | " + " | ".join(AP_COLS) + " | AD | AD (reference) |" in text
    assert "| Ours (STA-IPCon) | 60.00 ± 0.00 [98.44] |" in text
    assert "Note: The paper's Table II also lists AFSD" in text
    # Table VIII: keyframe columns only; a missing value is a dash, still next to the paper's.
    rows = summarise(TABLES["VIII"].rows, {r.key(): [_metrics([0.5] * 5, None, None)] for r in TABLES["VIII"].rows})
    lines = markdown(TABLES["VIII"], rows, INFO).splitlines()
    text = "\n".join(lines)
    assert lines[4] == "| Method | P | R | F | AD | AD (reference) |"
    assert "| Ours (setting-2) | – [0.5808] | – [0.5551] | – [0.5563] | – | – [10.31] |" in text


def test_csv_parses_to_one_line_per_row():
    table = TABLES["IV"]
    rows = _iv_rows()
    parsed = list(csv.reader(io.StringIO(csv_text(table, rows, list(PAPER_TIOUS)))))
    assert len(parsed) == len(rows) + 1
    cols = AP_COLS + ["P", "R", "F", "AD", "AD (reference)"]
    assert parsed[0] == ["method"] + [f"{c} {s}" for c in cols for s in ("mean", "std")]
    for line, row in zip(parsed[1:], rows):
        assert len(line) == len(parsed[0]) and line[0] == row["label"]
        values = dict(zip(parsed[0][1:], map(float, line[1:])))
        for c in cols:
            assert values[f"{c} mean"] == pytest.approx(row["mean"][c], rel=1e-5)
            assert values[f"{c} std"] == 0.0


def test_csv_quotes_labels_and_leaves_missing_values_empty():
    table = TABLES["VI"]  # "Baseline, Frangi" holds a comma
    per_row = {r.key(): [_metrics([0.5] * 5, None, None)] for r in table.rows}
    parsed = list(csv.reader(io.StringIO(csv_text(table, summarise(table.rows, per_row), list(PAPER_TIOUS)))))
    assert [line[0] for line in parsed[1:]] == [r.label for r in table.rows]
    header = parsed[0]
    for line in parsed[1:]:
        assert len(line) == len(header)
        cells = dict(zip(header, line))
        assert float(cells["mAP mean"]) == 50.0 and cells["AD mean"] == cells["AD std"] == cells["P mean"] == ""


# --------------------------------------------------------------------------------------------------
# The command, end to end on the smoke preset
# --------------------------------------------------------------------------------------------------

ROW_FILES = ("table-IV-smoke.md", "table-IV-smoke.csv", "table-IV-smoke.json")
FIGURES = ("table-IV-smoke-bars.png", "table-IV-smoke-pr.png", "table-IV-smoke-deviations.png")


def _argv(tmp):
    return ["reproduce", "--table", "IV", "--preset", "smoke", "--seeds", "1", "--data-dir", str(tmp / "data"),
            "--out", str(tmp / "out"), "--no-progress"]


@pytest.fixture(scope="module")
def table_iv(tmp_path_factory, smoke_feature_cache):
    """``xcalab reproduce --table IV --preset smoke --seeds 1``, once for the module. The smoke cines' SVS-Net
    features come from the run's feature cache (``smoke_feature_cache``); the command still simulates the cines,
    writes every export and trains and scores every row itself."""
    tmp = tmp_path_factory.mktemp("reproduce")
    smoke_feature_cache(tmp / "data")
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(_argv(tmp))
    return tmp, code, stdout.getvalue()


def test_the_command_writes_the_table_and_figures(table_iv):
    tmp, code, stdout = table_iv
    out = tmp / "out"
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(ROW_FILES + FIGURES)
    for name in FIGURES:
        data = (out / name).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5000, name
    md = (out / "table-IV-smoke.md").read_text()
    assert md in stdout and f"wrote {out / 'table-IV-smoke'}.md/.csv/.json and 3 figures" in stdout
    for row in TABLES["IV"].rows:
        assert f"| {row.label} | " in md
    assert "mAP with the paper's protocol" in md
    assert len(list(csv.reader(io.StringIO((out / "table-IV-smoke.csv").read_text())))) == 9


def test_the_json_has_every_row_and_seed(table_iv):
    tmp, _, _ = table_iv
    record = json.loads((tmp / "out" / "table-IV-smoke.json").read_text())
    assert record["table"] == "IV" and record["preset"] == "smoke" and record["seeds"] == [0]
    assert record["tious"] == list(PAPER_TIOUS) and record["n_test"] == 2 and record["paper"] == PAPER["IV"]
    assert record["command"] == "xcalab reproduce " + " ".join(_argv(tmp)[1:])
    rows = record["rows"]
    assert [r["label"] for r in rows] == [r.label for r in TABLES["IV"].rows]
    assert [r["key"] for r in rows] == [r.key() for r in TABLES["IV"].rows]
    for r in rows:
        assert len(r["per_seed"]) == 1 and len(r["map_all"]) == 1 and len(r["seconds"]) == 1
        seed = r["per_seed"][0]
        for c in AP_COLS:
            assert 0.0 <= seed[c] <= 100.0 and r["mean"][c] == seed[c] and r["std"][c] == 0.0, (r["label"], c)
        assert seed["mAP"] == pytest.approx(sum(seed[c] for c in AP_COLS[:5]) / 5)
        assert 0.0 <= r["map_all"][0] <= 100.0
        for c in ("P", "R", "F"):
            assert seed[c] is None or 0.0 <= seed[c] <= 1.0
        assert seed["AD"] is None or seed["AD"] >= 0.0


def test_every_row_and_seed_is_cached(table_iv):
    tmp, _, _ = table_iv
    cache = tmp / "data" / "reproduce" / "smoke"
    assert sorted(p.name for p in cache.iterdir()) == sorted(f"{r.key()}-data0-seed0" for r in TABLES["IV"].rows)
    for folder in cache.iterdir():
        scores = json.loads((folder / "scores.json").read_text())
        assert {"paper", "all", "deviations", "trained_with", "origin", "train_epochs"} <= scores.keys()
        assert scores["train_epochs"] == SMOKE.train.epochs and (folder / "predictions.json").is_file()
        for devs in scores["deviations"].values():
            assert len(devs) == 3  # start, apex, end of one test cine


def test_running_again_reuses_everything(table_iv, monkeypatch):
    """The second run trains and scores nothing and gives the same rows; a score whose configuration is
    stale is computed again (from the cached training run) and comes out the same."""
    import xcalab.pipeline as pipeline

    def refuse(*args, **kwargs):
        raise AssertionError("reproduce did the work again")

    tmp, _, _ = table_iv
    out = tmp / "out" / "table-IV-smoke.json"
    before = json.loads(out.read_text())
    with monkeypatch.context() as mp, contextlib.redirect_stdout(io.StringIO()):
        mp.setattr(pipeline, "load_or_train_detector", refuse)
        assert main(_argv(tmp)) == 0
    assert json.loads(out.read_text())["rows"] == before["rows"]

    stale = tmp / "data" / "reproduce" / "smoke" / "ta-data0-seed0" / "scores.json"
    scores = json.loads(stale.read_text())
    stale.write_text(json.dumps({**scores, "trained_with": {"train": "something else"}}))
    monkeypatch.setattr(pipeline, "train", refuse)
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(_argv(tmp)) == 0
    after = json.loads(out.read_text())
    for new, old in zip(after["rows"], before["rows"]):
        if new["key"] != "ta":
            assert new == old
        else:  # scored again: only the time it took differs
            assert {**new, "seconds": None} == {**old, "seconds": None}
    rescored = json.loads(stale.read_text())
    assert rescored["trained_with"] == scores["trained_with"] and rescored["origin"] == "cached"
    assert rescored["paper"]["mAP"] == scores["paper"]["mAP"] and rescored["deviations"] == scores["deviations"]


def test_bad_arguments(tmp_path, capsys):
    with pytest.raises(SystemExit) as err:
        main(["reproduce", "--table", "III", "--preset", "smoke", "--out", str(tmp_path / "out")])
    assert err.value.code == 2 and "invalid choice: 'III'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as err:
        main(["reproduce", "--table", "IV", "--preset", "tiny"])
    assert err.value.code == 2 and "invalid choice: 'tiny'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as err:
        main(["reproduce", "--preset", "smoke"])
    assert err.value.code == 2 and "--table" in capsys.readouterr().err
    for seeds in ("0", "-1"):
        argv = ["reproduce", "--table", "IV", "--preset", "smoke", "--seeds", seeds,
                "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "out")]
        assert main(argv) == 2
        assert "--seeds must be >= 1" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and not (tmp_path / "data").exists()  # refused before any work


def test_the_function_refuses_bad_arguments_before_any_work(tmp_path):
    with pytest.raises(ValueError, match=r"unknown table 'III'; choose one of II, IV, V, VI, VII, VIII, seeds"):
        reproduce("III", "smoke", out_dir=tmp_path / "out", data_dir=tmp_path / "data")
    with pytest.raises(ValueError, match="--seeds must be >= 1, got 0"):
        reproduce("IV", "smoke", seeds=0, out_dir=tmp_path / "out", data_dir=tmp_path / "data")
    with pytest.raises(ValueError, match="unknown preset 'tiny'"):
        reproduce("IV", "tiny", out_dir=tmp_path / "out", data_dir=tmp_path / "data")
    assert not any(tmp_path.iterdir())


def test_summarise_needs_every_row():
    with pytest.raises(KeyError):
        summarise(TOY.rows, {k: v for k, v in PER_ROW.items() if k != "ta"})
    # Dataclass rows are frozen: a table cannot be changed by accident.
    with pytest.raises(dataclasses.FrozenInstanceError):
        TABLES["IV"].rows[0].label = "x"


@pytest.fixture(scope="module")
def table_seeds(tmp_path_factory, smoke_feature_cache):
    """``xcalab reproduce --table seeds --preset smoke --seeds 1``, once for the module (the smoke cines' SVS-Net
    features come from the run's feature cache, as for table IV)."""
    tmp = tmp_path_factory.mktemp("reproduce-seeds")
    smoke_feature_cache(tmp / "data")
    argv = ["reproduce", "--table", "seeds", "--preset", "smoke", "--seeds", "1", "--data-dir", str(tmp / "data"),
            "--out", str(tmp / "out"), "--no-progress"]
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    return tmp, code


@pytest.mark.slow
def test_the_seeds_table_end_to_end(table_seeds):
    tmp, code = table_seeds
    assert code == 0
    record = json.loads((tmp / "out" / "table-seeds-smoke.json").read_text())
    rows = {r["key"]: r for r in record["rows"]}
    # The better row became STA-IPCon + the module whose plain-detector row scored the higher mean mAP.
    gaf, tsa = rows["actionformer+gaf"]["mean"]["mAP"], rows["actionformer+tsa"]["mean"]["mAP"]
    better = "sta-ipcon+tsa" if tsa > gaf else "sta-ipcon+gaf"
    assert list(rows) == ["actionformer", "sta-ipcon", "actionformer+gaf", "actionformer+tsa", better,
                          "phase-attention", "phase-attention-phases", "phase-attention-majority"]
    assert rows[better]["label"] == f"STA-IPCon + {better[-3:].upper()} (the better module)"
    cache = tmp / "data" / "reproduce" / "smoke"
    scores = {k: json.loads((cache / f"{k}-data0-seed0" / "scores.json").read_text()) for k in rows}
    # The phase readout reads the phase-attention row's own model; the majority baseline trains nothing.
    assert scores["phase-attention-phases"]["trained_with"] == scores["phase-attention"]["trained_with"]
    assert scores["phase-attention-phases"]["origin"] == "cached"
    assert scores["phase-attention-majority"]["origin"] == "none"
    assert scores["phase-attention-majority"]["train_epochs"] == 0
    for key in ("phase-attention-phases", "phase-attention-majority"):
        results = json.loads((cache / f"{key}-data0-seed0" / "predictions.json").read_text())["results"]
        assert len(results) == record["n_test"]
        for entries in results.values():  # one segment per class, score 1, filling ending where disappearing starts
            assert [e["label_id"] for e in entries] == [0, 1] and {e["score"] for e in entries} == {1.0}
            assert entries[0]["segment"][1] == entries[1]["segment"][0]
    md = (tmp / "out" / "table-seeds-smoke.md").read_text()
    assert md.startswith("### The four seed papers' attention modules side by side, on XCA-Synth `smoke`")
    assert "[brackets]" not in md and "Note: STA-IPCon + the better module adds" in md
