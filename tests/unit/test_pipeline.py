"""The pipeline: variants, cached features of a smoke build, and trained / cached / shipped detectors."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import xcalab.features.extract as extract
import xcalab.pipeline as pipeline
from xcalab.config import config_to_dict, get_preset
from xcalab.data.annotations import FeatureGrid, read_annotations
from xcalab.data.dataset import collate
from xcalab.data.phases import phases_path, step_phases
from xcalab.data.synth.benchmark import plan, read_phases
from xcalab.inference import predict
from xcalab.models.detector import load_detector
from xcalab.pipeline import (
    VARIANTS,
    check_variant,
    export_detector,
    features_dir_for,
    load_or_train_detector,
    prepare_features,
    run_dir_for,
    shipped_detector_path,
    variant_config,
    variant_slug,
)
from xcalab.train.checkpoint import BEST, CHECKPOINT

SMOKE = get_preset("smoke")
SWITCHES = ("long_term", "imagewise", "patchwise", "short_term", "generative_attention", "refinement", "phase_attention")
VARIANT = "STA"  # the smallest model with long-term attention: a few seconds to train in smoke


pytestmark = pytest.mark.usefixtures("one_thread_and_a_private_feature_cache")


# --------------------------------------------------------------------------------------------------
# Variants
# --------------------------------------------------------------------------------------------------


def test_variant_slugs_are_unique_and_file_safe():
    slugs = [variant_slug(v) for v in VARIANTS]
    assert len(set(slugs)) == len(VARIANTS)
    assert all(re.fullmatch(r"[a-z0-9+-]+", s) for s in slugs), slugs
    assert variant_slug("STA w/o S-T") == "sta-wo-st" and variant_slug("STA+ICon") == "sta+icon"
    assert variant_slug("STA-IPCon") == "sta-ipcon" and variant_slug("ActionFormer") == "actionformer"


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_variant_config_sets_exactly_the_switches(variant):
    cfg = SMOKE.replace(seed=5, setting=2)
    vcfg = variant_config(cfg, variant)
    assert set(VARIANTS[variant]) <= set(SWITCHES)
    for name in SWITCHES:
        assert getattr(vcfg.model, name) == VARIANTS[variant].get(name, getattr(cfg.model, name)), name
    # Everything else (sizes, training, seed, setting, paths) unchanged.
    assert dataclasses.replace(vcfg.model, **{n: getattr(cfg.model, n) for n in SWITCHES}) == cfg.model
    assert vcfg.replace(model=cfg.model) == cfg
    assert variant_config(vcfg, variant) == vcfg  # idempotent


def test_the_named_variants():
    af = variant_config(SMOKE, "ActionFormer").model
    assert (af.long_term, af.imagewise, af.patchwise, af.short_term) == ("none", False, False, True)
    assert variant_config(SMOKE, "STA-IPCon") == SMOKE  # the presets' model is the full one
    wo = variant_config(SMOKE, "TA w/o S-T").model
    assert (wo.long_term, wo.imagewise, wo.patchwise, wo.short_term) == ("TA", False, False, False)
    ipcon = variant_config(SMOKE, "STA+PCon").model
    assert (ipcon.long_term, ipcon.imagewise, ipcon.patchwise) == ("STA", False, True)


def test_unknown_variants_are_refused_naming_the_choices(tmp_path):
    choices = ", ".join(VARIANTS)
    calls = [lambda: check_variant("STA++"), lambda: variant_slug("STA++"), lambda: variant_config(SMOKE, "STA++"),
             lambda: shipped_detector_path("STA++"), lambda: run_dir_for(SMOKE, "STA++"),
             lambda: load_or_train_detector(SMOKE.replace(data_dir=tmp_path), "STA++", progress=False)]
    for call in calls:
        with pytest.raises(ValueError) as err:
            call()
        assert str(err.value) == f"unknown variant 'STA++'; choose one of: {choices}"
    assert not any(tmp_path.iterdir())  # refused before building anything


def test_paths():
    cfg = SMOKE.replace(data_dir=Path("/data"), seed=3)
    assert features_dir_for(cfg) == Path("/data/features/smoke-seed3-learned-s4")
    assert features_dir_for(cfg, "frangi", 2) == Path("/data/features/smoke-seed3-frangi-s2")
    assert run_dir_for(cfg, "STA w/o S-T") == Path("/data/runs/smoke-sta-wo-st-seed3")
    assert shipped_detector_path("STA-IPCon") == pipeline.WEIGHTS_DIR / "detector-teach-sta-ipcon-seed0.pt"
    assert shipped_detector_path("TA", "smoke", 2).name == "detector-smoke-ta-seed2.pt"


# --------------------------------------------------------------------------------------------------
# Features: built per subset, then completed, never recomputed
# --------------------------------------------------------------------------------------------------


def _snapshot(data):
    return SimpleNamespace(
        npz=sorted(p.stem for p in (data.build_dir / "sequences").glob("*.npz")),
        npy={p.stem: p.stat().st_mtime_ns for p in data.features_dir.glob("*.npy")},
        annotations=read_annotations(data.annotations_path),
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory, smoke_feature_cache):
    """A smoke build made in two steps: the test cines first, then the rest; then once more. Its SVS-Net
    features come from the run's feature cache (``smoke_feature_cache``, filled by ``prepare_features`` too)."""
    cfg = get_preset("smoke", data_dir=tmp_path_factory.mktemp("pipeline"))
    smoke_feature_cache(cfg.data_dir)
    test_only = prepare_features(cfg, subsets=("test",), workers=1, progress=False)
    first = _snapshot(test_only)
    full = prepare_features(cfg, workers=1, progress=False)
    second = _snapshot(full)
    again = prepare_features(cfg, workers=1, progress=False)
    return SimpleNamespace(cfg=cfg, test_only=test_only, full=full, again=again, first=first, second=second,
                           third=_snapshot(again), subsets={j["video_id"]: j["subset"] for j in plan(cfg)})


def _ids(subsets, subset):
    return sorted(v for v, s in subsets.items() if s == subset)


def test_features_of_the_test_cines_only(built):
    test_ids = _ids(built.subsets, "test")
    assert len(test_ids) == SMOKE.synth.split[2] == 2
    assert built.first.npz == test_ids and sorted(built.first.npy) == test_ids
    assert sorted(built.first.annotations) == test_ids
    assert {a.subset for a in built.first.annotations.values()} == {"test"}
    data = built.test_only
    assert data.video_ids() == data.video_ids("test") == test_ids and data.video_ids("train") == []
    assert data.features_dir == features_dir_for(built.cfg) and (data.source, data.stride) == ("learned", 4)
    assert data.annotations_path == data.features_dir / "annotations-setting0.json"


def test_feature_files_match_their_cines(built):
    grid = FeatureGrid(stride=SMOKE.features.stride, window=SMOKE.features.window)
    data = built.full
    for vid in data.video_ids():
        features = np.load(data.features_dir / f"{vid}.npy")
        cine = data.cine(vid)
        n_frames = cine.frames.shape[0]
        assert SMOKE.synth.frames[0] <= n_frames <= SMOKE.synth.frames[1]
        assert features.dtype == np.float32 and features.shape == (grid.n_steps(n_frames), 4096), vid
        assert np.isfinite(features).all() and features.std() > 0
        assert np.array_equal(data.features(vid), features)
        video = data.annotations[vid]
        assert tuple(video.keyframes) == tuple(cine.truth.keyframes) and video.fps == cine.fps
        assert round(video.duration * video.fps) == n_frames and video.setting == 0


def test_phase_labels_sit_beside_the_features(built):
    grid = FeatureGrid(stride=SMOKE.features.stride, window=SMOKE.features.window)
    data = built.full
    dataset = data.dataset("train")
    for vid in data.video_ids():
        labels = np.load(phases_path(data.features_dir / f"{vid}.npy"))
        frames = read_phases(data.build_dir / "sequences" / f"{vid}.npz")
        assert labels.dtype == np.int8 and labels.shape == (len(data.features(vid)),)
        assert np.array_equal(labels, step_phases(frames, len(labels), grid))
        assert set(labels.tolist()) >= {0, 1, 3}, vid  # every smoke cine shows pre-contrast, filling, washout
    item = dataset.video(0)
    assert item.phases is not None and item.phases.shape == (item.features.shape[1],)


def test_a_second_call_adds_the_other_cines(built):
    all_ids = sorted(built.subsets)
    assert len(all_ids) == SMOKE.synth.n_sequences
    assert built.second.npz == all_ids and sorted(built.second.npy) == all_ids
    assert {v: a.subset for v, a in built.second.annotations.items()} == built.subsets
    for subset in ("train", "validation", "test"):
        assert built.full.video_ids(subset) == _ids(built.subsets, subset)
    # The test cines' features were not computed again, and a third call rewrites nothing.
    assert {v: built.second.npy[v] for v in built.first.npy} == built.first.npy
    assert built.third.npy == built.second.npy


def test_feature_data_datasets(built):
    data = built.full
    test = data.dataset("test")
    assert [v.video_id for v in test.videos] == _ids(built.subsets, "test") and not test.training
    assert test.lengths == [data.features(v).shape[0] for v in _ids(built.subsets, "test")]
    assert test.grid == FeatureGrid(4, 4)
    train = data.dataset("train", training=True)
    assert len(train) == SMOKE.synth.split[0] and train.training and train.max_seq_len == SMOKE.train.max_seq_len
    assert len(data.dataset(None)) == SMOKE.synth.n_sequences


def test_unknown_subsets_build_nothing(tmp_path):
    cfg = get_preset("smoke", data_dir=tmp_path)
    with pytest.raises(ValueError, match="no cines of the subsets"):
        prepare_features(cfg, subsets=("tset",), workers=1, progress=False)
    assert not list(tmp_path.rglob("*.npz")) and not list(tmp_path.rglob("*.npy"))


@pytest.fixture(scope="module")
def raw_stride2(tmp_path_factory):
    """Raw-pixel features at stride 2 of the test cines (cheap: no network)."""
    cfg = get_preset("smoke", data_dir=tmp_path_factory.mktemp("raw2"))
    return prepare_features(cfg, subsets=("test",), source="raw", stride=2, workers=1, progress=False)


def test_other_sources_and_strides_have_their_own_folder(raw_stride2):
    data = raw_stride2
    assert data.features_dir.name == "smoke-seed0-raw-s2" and (data.source, data.stride) == ("raw", 2)
    grid = FeatureGrid(stride=2, window=4)
    for vid in data.video_ids():
        n_frames = data.cine(vid).frames.shape[0]
        assert data.features(vid).shape == (grid.n_steps(n_frames), 4096)


def test_feature_data_dataset_uses_the_features_stride(raw_stride2):
    assert raw_stride2.dataset("test").grid == FeatureGrid(stride=2, window=4)


def test_prepare_features_writes_only_below_data_dir(tmp_path, monkeypatch):
    repo_cache = tmp_path / "repo-data-cache-features"  # stands in for <repo>/data/cache/features
    monkeypatch.setattr(extract, "DEFAULT_CACHE", repo_cache)
    cfg = get_preset("smoke", data_dir=tmp_path / "data")
    prepare_features(cfg, subsets=("test",), source="raw", workers=1, progress=False)
    assert list((tmp_path / "data").rglob("*.npy"))
    assert not repo_cache.exists() or not any(repo_cache.rglob("*"))


# --------------------------------------------------------------------------------------------------
# Detectors: trained, cached, retrained, exported, shipped
# --------------------------------------------------------------------------------------------------


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def trained(built):
    """The smoke STA detector: trained on the first call, loaded from its run on the second."""
    first = load_or_train_detector(built.cfg, VARIANT, built.full, progress=False)
    first_state = _state(first.model)
    second = load_or_train_detector(built.cfg, VARIANT, built.full, progress=False)
    return SimpleNamespace(cfg=built.cfg, data=built.full, first=first, second=second, state=first_state,
                           run_dir=run_dir_for(built.cfg, VARIANT))


def _copy_run(trained, folder):
    return Path(shutil.copytree(trained.run_dir, folder))


def test_first_call_trains(trained):
    first = trained.first
    assert first.origin == "trained" and first.variant == VARIANT
    assert first.cfg == variant_config(trained.cfg, VARIANT)
    assert first.checkpoint == trained.run_dir / BEST and (trained.run_dir / CHECKPOINT).is_file()
    assert len(first.history) == SMOKE.train.epochs
    assert [h["epoch"] for h in first.history] == list(range(SMOKE.train.epochs))
    assert all(np.isfinite(h["loss"]) for h in first.history)
    assert not first.model.training and first.model.long_term.temporal is not None
    predictions = predict(first.model, trained.data.dataset("test"), first.cfg)
    assert [p.video_id for p in predictions] == trained.data.video_ids("test")


def test_second_call_loads_the_cached_run(trained, monkeypatch):
    first, second = trained.first, trained.second
    assert second.origin == "cached" and second.checkpoint == first.checkpoint
    assert second.cfg == first.cfg and second.history == first.history
    assert _same_weights(_state(second.model), trained.state) and not second.model.training

    # Without data: nothing is built when nothing has to be trained; device and paths do not matter.
    def no_features(*args, **kwargs):
        raise AssertionError("features were prepared")

    monkeypatch.setattr(pipeline, "prepare_features", no_features)
    third = load_or_train_detector(trained.cfg.replace(device="cpu"), VARIANT, progress=False)
    assert third.origin == "cached" and _same_weights(_state(third.model), trained.state)


@pytest.fixture(scope="module")
def one_more_epoch(trained, tmp_path_factory):
    """The module's run copied to a folder of its own and continued for one more epoch: (cfg, run_dir, result)."""
    run_dir = _copy_run(trained, tmp_path_factory.mktemp("longer") / "run")
    cfg = trained.cfg.replace(train=dataclasses.replace(trained.cfg.train, epochs=SMOKE.train.epochs + 1))
    return cfg, run_dir, load_or_train_detector(cfg, VARIANT, trained.data, progress=False, run_dir=run_dir)


def test_more_epochs_continue_the_cached_run(trained, one_more_epoch):
    """A run of another configuration is not reused: with one more epoch it is resumed for that epoch."""
    cfg, run_dir, longer = one_more_epoch
    assert longer.origin == "trained" and longer.checkpoint == run_dir / BEST
    assert len(longer.history) == SMOKE.train.epochs + 1
    assert [h["loss"] for h in longer.history[:-1]] == [h["loss"] for h in trained.first.history]
    assert longer.history[-1]["epoch"] == SMOKE.train.epochs and np.isfinite(longer.history[-1]["loss"])


def test_a_continued_run_is_cached_afterwards(trained, one_more_epoch):
    cfg, run_dir, longer = one_more_epoch
    again = load_or_train_detector(cfg, VARIANT, trained.data, progress=False, run_dir=run_dir)
    assert again.origin == "cached" and again.history == longer.history
    assert longer.cfg.train.epochs == again.cfg.train.epochs == SMOKE.train.epochs + 1


def test_a_cached_run_of_another_lr_is_not_reused(trained, tmp_path):
    run_dir = _copy_run(trained, tmp_path / "run")
    cfg = trained.cfg.replace(train=dataclasses.replace(trained.cfg.train, lr=2 * trained.cfg.train.lr))
    other = load_or_train_detector(cfg, VARIANT, trained.data, progress=False, run_dir=run_dir)
    assert other.origin == "trained" and other.cfg.train.lr == 2 * trained.cfg.train.lr
    assert len(other.history) == SMOKE.train.epochs
    assert not _same_weights(_state(other.model), trained.state)


def test_retrain_trains_again(trained, tmp_path):
    run_dir = _copy_run(trained, tmp_path / "run")
    written = (run_dir / CHECKPOINT).stat().st_mtime_ns
    again = load_or_train_detector(trained.cfg, VARIANT, trained.data, retrain=True, progress=False, run_dir=run_dir)
    assert again.origin == "trained" and len(again.history) == SMOKE.train.epochs
    assert (run_dir / CHECKPOINT).stat().st_mtime_ns != written  # a new run was saved
    assert [h["seconds"] for h in again.history] != [h["seconds"] for h in trained.first.history]


def test_a_run_on_learned_features_is_not_used_for_other_features(trained):
    frangi = dataclasses.replace(trained.data, source="frangi")
    other = load_or_train_detector(trained.cfg, VARIANT, frangi, progress=False)
    assert other.checkpoint != trained.first.checkpoint


def _outputs(model, data):
    batch = collate([data.dataset("test").video(i) for i in range(2)])
    with torch.no_grad():
        out = model(batch.features, batch.mask)
    return out.cls_logits + out.offsets


def test_export_writes_float16_weights_that_load(trained, tmp_path):
    path = export_detector(trained.run_dir, tmp_path / "w" / "detector.pt", "make weights", extra={"note": "test"})
    assert path == tmp_path / "w" / "detector.pt"
    saved = torch.load(path, weights_only=True)
    assert saved.keys() == {"format", "ema", "meta"} and saved["format"] == "xcalab-weights-1"
    for name, value in saved["ema"].items():
        if trained.state[name].is_floating_point():
            assert value.dtype == torch.float16, name
            assert torch.equal(value, trained.state[name].half()), name
        else:
            assert torch.equal(value, trained.state[name]), name
    assert path.stat().st_size < 0.7 * (trained.run_dir / BEST).stat().st_size

    meta = json.loads(saved["meta"])
    assert meta["history"] == trained.first.history and meta["command"] == "make weights" and meta["note"] == "test"
    assert meta["config"] == config_to_dict(trained.first.cfg)

    model, cfg = load_detector(path)
    assert cfg == trained.first.cfg and not model.training
    state = _state(model)
    for name, value in state.items():
        if value.is_floating_point():
            assert value.dtype == torch.float32 and torch.equal(value, trained.state[name].half().float()), name
    for ours, theirs in zip(_outputs(model, trained.data), _outputs(trained.first.model, trained.data)):
        torch.testing.assert_close(ours, theirs, atol=2e-2, rtol=1e-2)
    assert pipeline._history(path) == trained.first.history


def test_shipped_weights_come_first_with_the_default_folder(trained, tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "WEIGHTS_DIR", tmp_path / "weights")
    shipped = shipped_detector_path(VARIANT, "smoke", 0)
    assert shipped == tmp_path / "weights" / "detector-smoke-sta-seed0.pt"
    export_detector(trained.run_dir, shipped, "ship it")
    # A copy of the data folder, so that retraining there leaves the module's run alone.
    cfg = trained.cfg.replace(data_dir=tmp_path / "data")
    _copy_run(trained, run_dir_for(cfg, VARIANT))

    run = load_or_train_detector(cfg, VARIANT, progress=False)
    assert run.origin == "shipped" and run.checkpoint == shipped and run.history == trained.first.history
    assert run.cfg == trained.first.cfg and not run.model.training
    assert all(torch.equal(v, trained.state[k].half().float()) if v.is_floating_point() else torch.equal(v, trained.state[k])
               for k, v in _state(run.model).items())

    # Not with another run folder, other features, or retrain=True.
    elsewhere = load_or_train_detector(cfg, VARIANT, progress=False, run_dir=trained.run_dir)
    assert elsewhere.origin == "cached" and elsewhere.checkpoint == trained.run_dir / BEST
    frangi = dataclasses.replace(trained.data, source="frangi")
    assert load_or_train_detector(cfg, VARIANT, frangi, progress=False).origin != "shipped"
    retrained = load_or_train_detector(cfg, VARIANT, trained.data, retrain=True, progress=False)
    assert retrained.origin == "trained" and retrained.checkpoint == run_dir_for(cfg, VARIANT) / BEST
    # Another seed has no shipped file.
    assert not shipped_detector_path(VARIANT, "smoke", 1).exists()


#: Every teach detector in data/weights/ (notebooks 03-11 load them instead of training).
SHIPPED_TEACH = ["STA-IPCon", "ActionFormer", "ActionFormer+GAF", "ActionFormer+TSA", "Phase attention", "TA", "SA", "STA"]


@pytest.mark.parametrize("variant", SHIPPED_TEACH)
def test_the_shipped_teach_detector_is_the_teach_preset(variant):
    # If the teach preset (or a model default) changes, the shipped weights no longer match and notebooks
    # would silently retrain for minutes: re-export them (data/weights/README.md gives the commands).
    import json

    from xcalab.config import get_preset
    from xcalab.models.detector import load_detector, read_checkpoint
    from xcalab.pipeline import _same_training, shipped_detector_path, variant_config

    path = shipped_detector_path(variant)
    model, saved = load_detector(path)
    assert _same_training(saved, variant_config(get_preset("teach"), variant))
    meta = json.loads(read_checkpoint(path)["meta"])
    assert [h["epoch"] for h in meta["history"]] == list(range(saved.train.epochs))
    assert meta["test"]["average_map"] > 0.5 and meta["test"]["ad"] < 10
    assert all(p.dtype == torch.float32 for p in model.parameters())  # stored float16, runs float32


def test_trained_detector_exists_only_for_finished_runs_of_the_same_config(trained, tmp_path):
    from xcalab.pipeline import trained_detector_exists

    assert trained_detector_exists(trained.cfg, VARIANT)  # the module's finished run
    assert not trained_detector_exists(trained.cfg, "SA")  # never trained
    other_lr = trained.cfg.replace(train=dataclasses.replace(trained.cfg.train, lr=0.5))
    assert not trained_detector_exists(other_lr, VARIANT)
    # an unfinished run is not a trained detector: fake one by winding its checkpoint's epoch back
    copy = trained.cfg.replace(data_dir=tmp_path)
    run_dir = Path(shutil.copytree(trained.run_dir, run_dir_for(copy, VARIANT)))
    assert trained_detector_exists(copy, VARIANT)
    ckpt = torch.load(run_dir / CHECKPOINT, weights_only=True)
    ckpt["epoch"] = SMOKE.train.epochs - 1
    torch.save(ckpt, run_dir / CHECKPOINT)
    assert not trained_detector_exists(copy, VARIANT)


@pytest.mark.parametrize("variant", SHIPPED_TEACH)
def test_shipped_teach_files_are_safe_float16_with_their_test_scores(variant):
    path = shipped_detector_path(variant)
    saved = torch.load(path, map_location="cpu", weights_only=True)  # plain tensors and strings: no code runs
    assert saved.keys() == {"format", "ema", "meta"} and saved["format"] == "xcalab-weights-1"
    floats = [v for v in saved["ema"].values() if v.is_floating_point()]
    assert floats and all(v.dtype == torch.float16 for v in floats)
    test = pipeline.recorded_test_scores(path)
    assert test is not None and test["split"] == "XCA-Synth teach seed 0, test subset (29 cines)"
    assert test["protocol"] == "paper (top-1 per class)" and len(test["map_per_tiou"]) == 5
    assert test["average_map"] == pytest.approx(np.mean(test["map_per_tiou"]))
    assert 0 < test["average_map"] <= 1 and 0 <= test["ad"] < 10


# --------------------------------------------------------------------------------------------------
# Shipping: train or reuse a run, export float16, record the test scores of what was exported
# --------------------------------------------------------------------------------------------------


def test_ship_detector_reuses_the_run_and_records_the_scores_of_the_file(trained, tmp_path, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("the finished run should have been reused")

    monkeypatch.setattr(pipeline, "train", no_training)
    path = pipeline.ship_detector(trained.cfg, VARIANT, tmp_path / "w", trained.data, progress=False)
    assert path == tmp_path / "w" / "detector-smoke-sta-seed0.pt"
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # the scoring draft is gone
    meta = json.loads(torch.load(path, weights_only=True)["meta"])
    assert meta["command"] == "xcalab ship-detector STA --preset smoke --seed 0"
    assert meta["history"] == trained.first.history and meta["config"] == config_to_dict(trained.first.cfg)

    # The recorded scores are those of the float16 weights the file holds, on the 2 smoke test cines.
    model, cfg = load_detector(path)
    from xcalab.inference import evaluate

    again = evaluate(model, trained.data.dataset("test"), cfg)
    test = pipeline.recorded_test_scores(path)
    assert test == meta["test"] and test["split"] == "XCA-Synth smoke seed 0, test subset (2 cines)"
    assert test["average_map"] == pytest.approx(again.average_map) and test["ad"] == pytest.approx(again.ad)
    assert test["map_per_tiou"] == pytest.approx(again.map_top1.map.tolist()) and test["tious"] == pytest.approx(
        [0.3, 0.4, 0.5, 0.6, 0.7])
    assert test == pipeline.measure_test_scores(model, cfg, trained.data)

    # Where load_or_train_detector looks first, it is what the notebooks load.
    monkeypatch.setattr(pipeline, "WEIGHTS_DIR", tmp_path / "w")
    shipped = load_or_train_detector(trained.cfg, VARIANT, progress=False)
    assert shipped.origin == "shipped" and shipped.checkpoint == path


def test_an_export_without_scores_records_none(trained, tmp_path):
    path = export_detector(trained.run_dir, tmp_path / "plain.pt", "no scores")
    assert pipeline.recorded_test_scores(path) is None


def test_ship_detector_refuses_bad_variants_and_other_features(trained, tmp_path):
    with pytest.raises(ValueError, match=re.escape("unknown variant 'STA++'; choose one of: Baseline w/o S-T")):
        pipeline.ship_detector(trained.cfg, "STA++", tmp_path, trained.data, progress=False)
    frangi = dataclasses.replace(trained.data, source="frangi")
    with pytest.raises(ValueError, match="learned features, not 'frangi'"):
        pipeline.ship_detector(trained.cfg, VARIANT, tmp_path, frangi, progress=False)
    assert not any(tmp_path.iterdir())


def test_the_ship_detector_command_at_smoke_size(trained, tmp_path, capsys):
    from xcalab.cli import main

    out = tmp_path / "weights"
    argv = ["ship-detector", VARIANT, "--preset", "smoke", "--data-dir", str(trained.cfg.data_dir),
            "--weights-dir", str(out), "--no-progress"]
    assert main(argv) == 0
    path = out / "detector-smoke-sta-seed0.pt"
    assert f"STA: {path}" in capsys.readouterr().out
    meta = json.loads(torch.load(path, weights_only=True)["meta"])
    assert meta["command"] == "xcalab ship-detector STA --preset smoke --seed 0" and meta["test"]["average_map"] >= 0
    model, cfg = load_detector(path)
    assert cfg == trained.first.cfg  # the module's cached run, not a new one

    assert main([*argv[:1], "TA", "STA++", *argv[2:]]) == 2  # checked before anything is trained
    err = capsys.readouterr().err
    assert err.startswith("xcalab ship-detector: unknown variant 'STA++'") and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in out.iterdir()) == [path.name]
