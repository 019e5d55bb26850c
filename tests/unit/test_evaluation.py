"""xcalab evaluate: hand-worked AP, AD and P/R/F from prediction files, the output files, the command's
errors, and a checkpoint scored exactly as the training loop scores it."""

import csv
import json
import math

import numpy as np
import pytest
import torch
from scipy import stats

from xcalab.cli import main
from xcalab.config import config_to_dict, get_preset
from xcalab.data.annotations import VideoAnnotation, write_annotations
from xcalab.data.dataset import dataset_for
from xcalab.evaluation import evaluate_checkpoint, evaluate_files
from xcalab.frame_metrics import PAPER_POPMEANS
from xcalab.inference import evaluate
from xcalab.metrics import Detection
from xcalab.models.detector import build_detector, load_detector
from xcalab.postprocess import top1_keyframes
from xcalab.results_table import results_table_markdown
from xcalab.train.checkpoint import save_checkpoint

FPS, N_FRAMES = 10.0, 50
# Two test cines and one training cine, keyframes in frames; at 10 fps the actions are
#   v1: filling [1.0, 2.0] s, disappearing [2.0, 4.0] s      v2 and v3: [0.5, 1.5] s, [1.5, 3.5] s
KEYFRAMES = {"v1": ((10, 20, 40), "test"), "v2": ((5, 15, 35), "test"), "v3": ((5, 15, 35), "train")}


def entry(label, score, t0, t1):
    return {"label": label, "score": score, "segment": [t0, t1]}


PERFECT = {
    "v1": [entry("filling", 0.9, 1.0, 2.0), entry("disappearing", 0.8, 2.0, 4.0)],
    "v2": [entry("filling", 0.9, 0.5, 1.5), entry("disappearing", 0.8, 1.5, 3.5)],
}
# Filling: a false positive on v1 ranked first (score 0.9), then the two true segments (0.8 on v2, 0.6 on v1).
# Disappearing: perfect.
HAND = {
    "v1": [entry("filling", 0.9, 3.0, 4.5), entry("filling", 0.6, 1.0, 2.0), entry("disappearing", 0.7, 2.0, 4.0)],
    "v2": [entry("filling", 0.8, 0.5, 1.5), entry("disappearing", 0.7, 1.5, 3.5)],
}


@pytest.fixture
def gt(tmp_path):
    videos = [VideoAnnotation.from_keyframes(v, kf, FPS, N_FRAMES, subset) for v, (kf, subset) in KEYFRAMES.items()]
    return write_annotations(tmp_path / "gt.json", videos)


def write_predictions(path, results):
    path.write_text(json.dumps({"results": results}))
    return path


def run(tmp_path, gt, results, **options):
    tmp_path.mkdir(exist_ok=True)
    pred = write_predictions(tmp_path / "pred.json", results)
    return evaluate_files(pred, gt, tmp_path / "out", **options)


# --------------------------------------------------------------------------------------------------
# Numbers worked out by hand
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["all", "paper"])
def test_a_perfect_prediction_scores_one_and_deviates_by_nothing(tmp_path, gt, protocol):
    m = run(tmp_path, gt, PERFECT, protocol=protocol)
    assert m["protocol"] == protocol and m["tiou"] == [0.3, 0.4, 0.5, 0.6, 0.7]
    assert m["ap"] == {"filling": [1.0] * 5, "disappearing": [1.0] * 5}
    assert m["map_per_tiou"] == [1.0] * 5 and m["mAP"] == 1.0
    assert m["ad"] == 0.0 and m["deviations"]["ad"] == {"start": 0.0, "apex": 0.0, "end": 0.0}
    assert m["ad_paper"] == 2.0  # the reference compares with int(true - 2): a perfect answer is 2 frames off
    assert m["prf"]["paper"] == m["prf"]["foreground"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    assert m["n_videos"] == 2 and m["n_missing"] == 0 and m["n_keyframes"] == 2 and m["subset"] == "test"


@pytest.mark.parametrize(
    "protocol, filling_ap",
    [
        # every detection, ranked F T T: precision 0, 1/2, 2/3 -> envelope 2/3 at both hits -> (2/3 + 2/3) / 2
        ("all", 2 / 3),
        # top-1 per class and video drops v1's true segment (0.6 < 0.9): F T -> (1/2) / 2
        ("paper", 1 / 4),
    ],
)
def test_hand_worked_ap_differs_between_the_protocols(tmp_path, gt, protocol, filling_ap):
    m = run(tmp_path, gt, HAND, protocol=protocol)
    assert m["ap"]["filling"] == pytest.approx([filling_ap] * 5, abs=1e-12)
    assert m["ap"]["disappearing"] == [1.0] * 5
    assert m["mAP"] == pytest.approx((filling_ap + 1) / 2, abs=1e-12)  # 5/6 and 5/8

    # Keyframes use the top-1 segments whatever the protocol. v1: filling [3.0, 4.5], disappearing
    # [2.0, 4.0] -> (30, (45 + 20) / 2 = 32.5 -> 33, 40) against (10, 20, 40): deviations 20, 13, 0.
    # v2 is exact. AD = (33/3 + 0) / 2 = 5.5.
    assert m["ad"] == pytest.approx(5.5)
    assert m["deviations"]["ad"] == pytest.approx({"start": 10.0, "apex": 6.5, "end": 0.0})
    # Reference: truncated (30, 32, 40) vs int(true - 2) = (8, 18, 38) -> 22, 14, 2; v2: 2, 2, 2 -> 22/3.
    assert m["ad_paper"] == pytest.approx(22 / 3)
    # Frame labels of v1 (50 frames): predicted filling [30, 33), disappearing [33, 40), background 40 frames;
    # true filling [10, 20), disappearing [20, 40), background 20. Per class (P, R, F): filling (0, 0, 0),
    # disappearing (1, 7/20, 14/27), background (1/2, 1, 2/3). v2 scores 1 everywhere.
    assert m["prf"]["paper"] == pytest.approx({"precision": (1.5 / 3 + 1) / 2, "recall": (1.35 / 3 + 1) / 2,
                                               "f1": (32 / 81 + 1) / 2})
    assert m["prf"]["foreground"] == pytest.approx({"precision": (1 / 2 + 1) / 2, "recall": (0.35 / 2 + 1) / 2,
                                                    "f1": (7 / 27 + 1) / 2})


def test_statistics_are_those_of_the_pooled_deviations(tmp_path, gt):
    m = run(tmp_path, gt, HAND)
    pooled = [20, 13, 0, 0, 0, 0]  # |deviation| of v1's and v2's keyframes (see above)
    assert m["ttest"]["popmeans"] == list(PAPER_POPMEANS)
    for test, tau in zip(m["ttest"]["ad"], PAPER_POPMEANS):
        expected = stats.ttest_1samp(pooled, tau, alternative="less")
        assert test["popmean"] == tau
        assert test["statistic"] == pytest.approx(expected.statistic) and test["pvalue"] == pytest.approx(expected.pvalue)
    half = stats.t.ppf(0.975, 5) * stats.sem(pooled)
    assert m["ci"]["level"] == 0.95 and m["ci"]["ad"] == pytest.approx([5.5 - half, 5.5 + half])


def test_label_ids_instead_of_names_give_the_same_numbers(tmp_path, gt):
    ids = {"filling": 0, "disappearing": 1}
    by_id = {v: [{"label_id": ids[e["label"]], "score": e["score"], "segment": e["segment"]} for e in entries]
             for v, entries in HAND.items()}
    named = run(tmp_path / "named", gt, HAND)
    numbered = run(tmp_path / "numbered", gt, by_id)
    for key in ("ap", "map_per_tiou", "mAP", "ad", "ad_paper", "prf", "deviations", "ttest", "ci", "n_missing"):
        assert numbered[key] == named[key], key


def test_missing_videos_are_misses_and_other_subsets_are_false_positives(tmp_path, gt):
    results = {
        "v1": PERFECT["v1"],  # v2 (test) has no entry: both of its actions are missed
        "v3": [entry("filling", 0.95, 0.5, 1.5)],  # a training cine: a false positive, ranked first
    }
    m = run(tmp_path, gt, results)
    # filling: F (v3) T (v1) with 2 true segments -> (1/2) / 2; disappearing: T with 2 -> 1/2.
    assert m["ap"]["filling"] == pytest.approx([0.25] * 5) and m["ap"]["disappearing"] == pytest.approx([0.5] * 5)
    assert m["mAP"] == pytest.approx(3 / 8)
    assert m["n_outside_subset"] == 1 and m["n_detections"] == 3
    assert m["n_missing"] == 1 and m["missing"] == {"v2": ["filling", "disappearing"]}
    assert m["n_keyframes"] == 1 and m["ad"] == 0.0  # AD over v1, the one video with keyframes


def test_tiou_thresholds_are_honoured(tmp_path, gt):
    results = {v: [dict(e) for e in entries] for v, entries in PERFECT.items()}
    # tIoU 1 / 1.5 = 2/3 with filling [1.0, 2.0]; ranked after v2's exact segment
    results["v1"][0].update(segment=[1.0, 2.5], score=0.5)
    m = run(tmp_path, gt, results, tious=[0.6, 0.7])
    assert m["tiou"] == [0.6, 0.7]
    assert m["ap"]["filling"] == pytest.approx([1.0, 0.5])  # T T at 0.6; T F at 0.7 -> (1) / 2
    assert m["mAP"] == pytest.approx((1.0 + 0.75) / 2)


def test_plain_activitynet_ground_truth_gives_map_without_keyframes(tmp_path):
    database = {"a": {"subset": "test", "duration": 5.0,
                      "annotations": [{"segment": [1.0, 2.0], "label": "filling", "label_id": 0}]}}
    gt = tmp_path / "anet.json"
    gt.write_text(json.dumps({"database": database}))
    m = run(tmp_path, gt, {"a": [entry("filling", 0.5, 1.0, 2.0)]})
    assert m["mAP"] == 1.0 and m["ad"] is None and m["prf"] is None and m["n_keyframes"] == 0
    assert "frame rates" in m["keyframe_note"]
    assert "No keyframe metrics" in results_table_markdown(m)


def test_top1_keyframes_take_the_best_segment_of_each_class_and_the_first_on_ties():
    dets = [Detection("v", 0, 1.0, 2.0, 0.5), Detection("v", 0, 0.0, 2.0, 0.5), Detection("v", 1, 2.0, 4.0, 0.4),
            Detection("v", 0, 3.0, 4.0, 0.1)]
    assert tuple(top1_keyframes(dets, fps=10.0)) == (10.0, 20.0, 40.0)
    assert top1_keyframes(dets[:2], fps=10.0) is None  # no disappearing segment


# --------------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------------


def test_metrics_json_markdown_and_csv_parse_and_name_the_protocol(tmp_path, gt):
    m = run(tmp_path, gt, HAND, protocol="paper")
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "results.csv", "results.md"]

    def strict(constant):
        raise ValueError(f"not strict JSON: {constant}")

    saved = json.loads((out / "metrics.json").read_text(), parse_constant=strict)
    assert saved["protocol"] == "paper" and saved["mAP"] == m["mAP"] and saved["n_videos"] == 2
    assert all(0.0 <= a <= 1.0 for row in saved["ap"].values() for a in row)
    assert all(0.0 <= a <= 1.0 for a in saved["map_per_tiou"])

    md = (out / "results.md").read_text()
    assert md == results_table_markdown(saved)
    header, _, columns, _, filling, disappearing, mean = md.splitlines()[:7]
    assert "Protocol `paper`" in header and "tIoU 0.3, 0.4, 0.5, 0.6, 0.7" in header
    assert columns.split("|")[2:-1] == [f" {c} " for c in
                                         ("AP@0.3", "AP@0.4", "AP@0.5", "AP@0.6", "AP@0.7", "mAP", "P", "R", "F", "AD",
                                          "AD ref.")]
    assert filling.startswith("| filling | 25.00 | 25.00 |") and disappearing.startswith("| disappearing | 100.00 |")
    assert mean == "| mean | 62.50 | 62.50 | 62.50 | 62.50 | 62.50 | 62.50 | 75.00 | 72.50 | 69.75 | 5.50 | 7.33 |"

    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [r["row"] for r in rows] == ["filling", "disappearing", "mean"]
    assert {r["protocol"] for r in rows} == {"paper"}
    assert float(rows[2]["mAP (%)"]) == pytest.approx(62.5) and float(rows[2]["AD (frames)"]) == pytest.approx(5.5)
    assert rows[0]["AD (frames)"] == ""


# --------------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------------


def test_the_command_scores_and_says_where_the_files_went(tmp_path, gt, capsys):
    pred = write_predictions(tmp_path / "pred.json", HAND)
    out = tmp_path / "eval"
    code = main(["evaluate", "--predictions", str(pred), "--annotations", str(gt), "--out", str(out),
                 "--protocol", "paper", "--tiou", "0.5", "0.7"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "Protocol `paper`" in printed and "tIoU 0.5, 0.7" in printed and str(out / "metrics.json") in printed
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["tiou"] == [0.5, 0.7] and saved["mAP"] == pytest.approx(5 / 8)


def test_the_command_explains_itself(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "usage: xcalab evaluate" in text and "--protocol {all,paper}" in text and "--checkpoint" in text


def _bad(name, content):
    """A file of ``content`` (text, or JSON for anything else) in the test's folder."""

    def make(d):
        path = d / name
        path.write_text(content if isinstance(content, str) else json.dumps(content))
        return path

    return make


def _scored(d, pred_maker, *extra):
    return ["--predictions", str(pred_maker(d)), "--annotations", str(d / "gt.json"), *extra]


BAD_INPUTS = {
    "predictions missing": (lambda d: ["--predictions", str(d / "nope.json"), "--annotations", str(d / "gt.json")],
                            ["nope.json", "no such"]),
    "predictions not JSON": (lambda d: _scored(d, _bad("broken.json", "{")), ["broken.json", "JSON"]),
    "no results": (lambda d: _scored(d, _bad("pred.json", {"result": {}})), ["pred.json", '"results"']),
    "results not a list": (lambda d: _scored(d, _bad("pred.json", {"results": {"v1": {}}})), ["pred.json", "v1"]),
    "unknown label": (lambda d: _scored(d, _bad("pred.json", {"results": {"v1": [entry("flowing", 1, 0, 1)]}})),
                      ["pred.json", "flowing"]),
    "unknown label_id": (lambda d: _scored(d, _bad("pred.json", {"results": {"v1": [
        {"label_id": 7, "score": 1, "segment": [0, 1]}]}})), ["pred.json", "label_id 7"]),
    "unknown video": (lambda d: _scored(d, _bad("pred.json", {"results": {"v9": []}})), ["pred.json", "v9"]),
    "reversed segment": (lambda d: _scored(d, _bad("pred.json", {"results": {"v1": [entry("filling", 1, 2, 1)]}})),
                         ["pred.json", "negative duration"]),
    "bad score": (lambda d: _scored(d, _bad("pred.json", {"results": {"v1": [entry("filling", "high", 0, 1)]}})),
                  ["pred.json", "score"]),
    "annotations missing": (lambda d: ["--predictions", str(d / "gt.json"), "--annotations", str(d / "none.json")],
                            ["none.json", "no such"]),
    "annotations not JSON": (lambda d: ["--predictions", str(d / "gt.json"),
                                        "--annotations", str(_bad("gt2.json", "[1,")(d))], ["gt2.json", "JSON"]),
    "annotations without database": (lambda d: ["--predictions", str(d / "gt.json"),
                                                "--annotations", str(_bad("gt2.json", {"results": {}})(d))],
                                     ["gt2.json", '"database"']),
    "empty subset": (lambda d: _scored(d, _bad("pred.json", {"results": {}}), "--subset", "validation"),
                     ["gt.json", "validation"]),
    "setting disagrees": (lambda d: _scored(d, _bad("pred.json", {"results": {}}), "--setting", "1"),
                          ["gt.json", "setting"]),
    "tIoU above 1": (lambda d: _scored(d, _bad("pred.json", {"results": {}}), "--tiou", "0.5", "1.5"),
                     ["--tiou", "(0, 1]"]),
    "window zero": (lambda d: _scored(d, _bad("pred.json", {"results": {}}), "--window", "0"), ["--window"]),
    "tIoU zero": (lambda d: _scored(d, _bad("pred.json", {"results": {}}), "--tiou", "0"), ["--tiou"]),
    "out is a file": (lambda d: [*_scored(d, _bad("pred.json", {"results": {}})), "--out",
                                 str(_bad("taken.txt", "x")(d))], ["taken.txt", "folder"]),
    "both sources": (lambda d: [*_scored(d, _bad("pred.json", {"results": {}})), "--checkpoint", str(d / "c.pt")],
                     ["--checkpoint", "--predictions"]),
    "neither source": (lambda d: ["--annotations", str(d / "gt.json")], ["--checkpoint", "--predictions"]),
    "predictions without annotations": (lambda d: ["--predictions", str(d / "gt.json")], ["--annotations"]),
    "features with predictions": (lambda d: [*_scored(d, _bad("pred.json", {"results": {}})), "--features", str(d)],
                                  ["--features"]),
    "checkpoint without features": (lambda d: ["--checkpoint", str(d / "c.pt")], ["--features"]),
    "checkpoint missing": (lambda d: ["--checkpoint", str(d / "gone.pt"), "--features", str(d)], ["gone.pt"]),
    "checkpoint not a checkpoint": (lambda d: ["--checkpoint", str(_bad("junk.pt", "junk")(d)), "--features", str(d)],
                                    ["junk.pt", "checkpoint"]),
    "feature folder missing": (lambda d: ["--checkpoint", str(d / "c.pt"), "--features", str(d / "nofeatures")],
                               ["nofeatures", "feature folder"]),
}


@pytest.mark.parametrize("case", BAD_INPUTS, ids=list(BAD_INPUTS))
def test_bad_input_is_one_line_naming_the_file(tmp_path, gt, capsys, case):
    make_args, expected = BAD_INPUTS[case]
    args = make_args(tmp_path)
    if "--out" not in args:
        args += ["--out", str(tmp_path / "out")]
    assert main(["evaluate", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("xcalab: ") and len(err.strip().splitlines()) == 1, err
    for word in expected:
        assert word in err, (word, err)
    assert not (tmp_path / "out" / "metrics.json").exists()


# --------------------------------------------------------------------------------------------------
# A checkpoint: predict, write predictions.json, score as the training loop does
# --------------------------------------------------------------------------------------------------


def test_a_checkpoint_is_scored_as_the_engine_scores_it(tmp_path, one_thread):
    cfg = get_preset("smoke", device="cpu")
    torch.manual_seed(0)
    untrained = build_detector(cfg)
    checkpoint = save_checkpoint(tmp_path / "best.pt", {
        "format": "xcalab-weights-1", "ema": untrained.state_dict(), "meta": json.dumps({"config": config_to_dict(cfg)}),
    })
    features = tmp_path / "features"
    features.mkdir()
    rng = np.random.default_rng(0)
    videos = []
    for vid, steps, keyframes in [("a", 12, (6, 18, 40)), ("b", 16, (10, 26, 58)), ("c", 10, (4, 12, 36))]:
        np.save(features / f"{vid}.npy", rng.random((steps, 4096), dtype=np.float32))
        videos.append(VideoAnnotation.from_keyframes(vid, keyframes, 15.0, 4 * steps, "test"))
    write_annotations(features / "annotations.json", videos)

    out = tmp_path / "eval"
    m = evaluate_checkpoint(checkpoint, features, out, protocol="all", device="cpu")  # annotations from features/
    model, loaded = load_detector(checkpoint)
    engine = evaluate(model, dataset_for(loaded, features, features / "annotations.json", "test"), loaded)

    assert m["mAP"] == engine.map_all.average_map and m["map_per_tiou"] == engine.map_all.map.tolist()
    assert m["n_videos"] == 3 and m["n_missing"] == engine.n_missing
    assert engine.ad is not None  # the seeded random model finds both classes everywhere: keyframes to compare
    assert m["ad"] == engine.ad and m["ad_paper"] == engine.ad_paper and m["n_keyframes"] == 3
    assert m["prf"]["paper"] == engine.prf._asdict()

    # predictions.json re-scores to the same numbers, and with the paper's protocol to the engine's top-1 mAP.
    written = json.loads((out / "predictions.json").read_text())["results"]
    assert sorted(written) == ["a", "b", "c"]
    assert sum(map(len, written.values())) == sum(len(p.segments) for p in engine.predictions)
    again = evaluate_files(out / "predictions.json", features / "annotations.json", tmp_path / "again")
    drop = ("source", "files")
    assert {k: v for k, v in again.items() if k not in drop} == {k: v for k, v in m.items() if k not in drop}
    paper = evaluate_files(out / "predictions.json", features / "annotations.json", tmp_path / "paper", protocol="paper")
    assert paper["mAP"] == engine.map_top1.average_map
    assert m["source"]["checkpoint"] == str(checkpoint) and m["files"]["predictions"] == str(out / "predictions.json")
    assert not math.isnan(m["mAP"])


def test_activitynet_subset_names_score_the_same(tmp_path, gt):
    ours = run(tmp_path / "a", gt, PERFECT, subset="test")
    theirs = run(tmp_path / "b", gt, PERFECT, subset="testing")  # ActivityNet-1.3's name of the split
    assert theirs["mAP"] == ours["mAP"] == 1.0 and theirs["n_videos"] == ours["n_videos"] == 2
    assert theirs["subset"] == "test"
