"""Archive-like XCA-Synth scenarios: status and truth of truncated and contrast-free cines, their crop out of the
natural run, durations, determinism, balanced builds with status annotations, and today's builds unchanged.

Tiny sizes: 64^2 cines at 7.5 fps (27-52 frames) unless a test needs another rate.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import math

import numpy as np
import pytest

from xcalab.config import CONFIGS, PRESETS, SCENARIOS, SynthConfig, frame_counts, get_preset, locate_config
from xcalab.data.annotations import VideoAnnotation, read_annotations, write_annotations
from xcalab.data.synth import (
    KeyframeRule,
    build_benchmark,
    keyframes_from_curve,
    load_benchmark,
    simulate_sequence,
)
from xcalab.data.synth import scenarios as scenario_module
from xcalab.data.synth.benchmark import _build_info, default_out_dir, main, plan, read_summary
from xcalab.data.synth.params import sample_injection, sample_params
from xcalab.data.synth.scenarios import KEYFRAMES_PRESENT, MARGINS_S, STATUS, plan_scenario, simulate_scenario
from xcalab.data.synth.simulator import contrast_passage, render
from xcalab.errors import XcalabInputError

FPS = 7.5
RULE = KeyframeRule()


def _frames(margin: str, fps: float = FPS) -> int:
    return math.ceil(MARGINS_S[margin] * fps - 1e-9)


@pytest.fixture(scope="module")
def cines():
    """One 64^2, 7.5 fps cine per scenario (seed (5, k), alternating trees)."""
    return {name: simulate_scenario((5, k), name, fps=FPS, image_size=64, tree=("left", "right")[k % 2])
            for k, name in enumerate(SCENARIOS)}


def _mass(seq) -> np.ndarray:
    return np.array(seq.meta["curves"]["iodine_mass_mg"])


# --------------------------------------------------------------------------------------------------
# Status and truth of each scenario
# --------------------------------------------------------------------------------------------------


def test_every_scenario_states_its_status_and_which_keyframes_it_holds(cines):
    assert STATUS == {"ok": "ok", "partial_end": "partial", "partial_start": "partial", "no_contrast": "no_contrast"}
    for name, seq in cines.items():
        n, meta = seq.n_frames, seq.meta
        present = KEYFRAMES_PRESENT[name]
        assert meta["scenario"] == name and meta["status"] == STATUS[name] and meta["keyframes_present"] == list(present)
        kf = seq.truth.keyframes
        assert all(isinstance(k, int) for k in kf) and 0 <= kf[0] <= kf[1] <= kf[2] <= n - 1
        assert meta["keyframes_true"] == [k if p else None for k, p in zip(kf, present)]
        assert [o is None for o in meta["keyframes_outside"]] == [p or name == "no_contrast" for p in present]
        assert meta["params"]["contrast"]["time_scale"] == 1.0  # nothing squeezed
        assert seq.truth.phases.shape == (n,) and seq.truth.vessel_maps.shape == (n, 64, 64)
        json.dumps(meta)  # still plain JSON


def test_ok_holds_the_whole_passage_with_margins_and_the_rule_finds_it_in_the_cine(cines):
    seq = cines["ok"]
    s, a, e = seq.truth.keyframes
    assert s >= _frames("before_start") and e <= seq.n_frames - 1 - _frames("after_end")
    # The whole passage is in view, so the rule read off the cine's own curve gives the run's keyframes.
    assert keyframes_from_curve(_mass(seq), RULE) == ((s, a, e), False)
    assert not seq.meta["end_censored"] and seq.truth.phases[0] == 0 and seq.truth.phases[-1] == 4


def test_partial_end_stops_while_still_opacified_and_its_end_lies_after_the_cine(cines):
    seq = cines["partial_end"]
    n, m = seq.n_frames, _mass(seq)
    s, a, e = seq.truth.keyframes
    assert e == n - 1 and s >= _frames("before_start")  # the missing end stored as the last frame
    assert n - 1 - a >= _frames("end_after_apex")
    assert m[-1] > RULE.end_fraction * m.max()  # still above the end threshold at the last frame
    true_end = seq.meta["keyframes_outside"][2]
    assert true_end - (n - 1) >= _frames("end_before_end")
    assert seq.meta["end_censored"] and keyframes_from_curve(m, RULE)[1]  # the rule agrees: censored
    assert seq.truth.phases[-1] in (2, 3) and 4 not in seq.truth.phases


def test_partial_start_opens_with_contrast_and_its_start_lies_before_the_cine(cines):
    seq = cines["partial_start"]
    n, m = seq.n_frames, _mass(seq)
    s, a, e = seq.truth.keyframes
    assert s == 0 and a >= _frames("start_before_apex") and e <= n - 1 - _frames("after_end")
    assert m[0] >= RULE.start_fraction * m.max()  # contrast already in at the first frame
    assert seq.meta["keyframes_outside"][0] <= -_frames("start_after_start")
    assert seq.truth.phases[0] == 1 and 0 not in seq.truth.phases  # filling from frame 0, never pre-contrast
    assert not seq.meta["end_censored"]


def test_no_contrast_has_catheter_and_motion_but_no_iodine_at_any_frame(cines):
    seq = cines["no_contrast"]
    assert seq.truth.keyframes == (0, 0, 0) and seq.meta["keyframes_exact"] == [0, 0, 0]
    assert not seq.truth.vessel_maps.any() and not seq.truth.phases.any()
    assert seq.meta["keyframes_outside"] == [None, None, None] and seq.meta["keyframes_true"] == [None, None, None]
    curves = seq.meta["curves"]
    for name in ("iodine_mass_mg", "opacified_area_px", "injection", "blush"):
        assert not any(curves[name]), name
    assert seq.meta["params"]["contrast"]["c_lumen_mg_ml"] == 0.0
    assert np.ptp(curves["contraction"]) > 0  # the heart still beats
    assert np.abs(np.diff(seq.frames, axis=0)).mean() > 0  # and frames change (motion, noise)


def test_contrast_passage_accepts_zero_iodine_only_for_a_run_without_contrast(monkeypatch):
    import dataclasses

    from xcalab.data.synth import simulator

    params = sample_params(3, image_size=32, n_frames=20)
    dry = dataclasses.replace(params, contrast=dataclasses.replace(params.contrast, c_lumen_mg_ml=0.0))
    _, passage, _, (exact, censored, keyframes, phases) = contrast_passage(dry)
    assert (exact, censored, keyframes) == ((0, 0, 0), False, (0, 0, 0)) and not phases.any()
    assert not passage.iodine_mass_mg.any() and not passage.injection.any() and not passage.blush.any()
    monkeypatch.setattr(simulator, "_in_view", lambda tree, p, fov: np.zeros(len(tree.points)))  # nothing in view
    with pytest.raises(RuntimeError, match="no opacified vessel"):
        contrast_passage(params)  # iodine in the lumen, none in view: still a bug
    with pytest.raises(ValueError, match="positive maximum"):
        keyframes_from_curve(np.zeros(10))  # the curve rule itself stays strict


# --------------------------------------------------------------------------------------------------
# The crop out of the natural run
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["partial_end", "partial_start"])
def test_a_cropped_cine_is_the_window_of_its_natural_run(name):
    seed, kw = (7, 1), dict(fps=FPS, image_size=64, tree="right")
    p = plan_scenario(seed, name, **kw)
    seq = simulate_scenario(seed, name, **kw)
    full = render(p.params)  # the whole natural run of the same seed
    f0, n = p.first_frame, p.n_frames
    assert seq.n_frames == n and seq.meta["window"] == {"first_frame": f0, "n_frames": n, "run_frames": p.params.n_frames}
    assert np.array_equal(seq.truth.vessel_maps, full.truth.vessel_maps[f0 : f0 + n])
    assert np.array_equal(seq.truth.phases, full.truth.phases[f0 : f0 + n])
    for curve in ("iodine_mass_mg", "opacified_area_px", "injection", "blush", "contraction"):
        assert seq.meta["curves"][curve] == full.meta["curves"][curve][f0 : f0 + n], curve
    assert seq.meta["rwave_frames"] == [f - f0 for f in full.meta["rwave_frames"] if f0 <= f < f0 + n]
    run_kf = full.truth.keyframes
    assert p.keyframes_run == run_kf and full.meta["params"]["contrast"]["time_scale"] == 1.0
    for i, present in enumerate(KEYFRAMES_PRESENT[name]):
        key = "keyframes_true" if present else "keyframes_outside"
        assert seq.meta[key][i] == run_kf[i] - f0


def test_a_full_window_renders_exactly_the_run():
    params = sample_params(4, image_size=32, n_frames=16)
    whole, window = render(params), render(params, window=(0, 16))
    assert window.frames.tobytes() == whole.frames.tobytes()
    assert {k: v for k, v in window.meta.items() if k != "window"} == whole.meta
    for bad in ((-1, 5), (0, 0), (10, 7)):
        with pytest.raises(ValueError, match="inside the run"):
            render(params, window=bad)


def test_a_redraw_changes_only_the_injection():
    # Seeds (0, 0..11), "ok" at 7.5 fps: some need a redraw; a redraw keeps every other stage of the seed.
    plans = [plan_scenario((0, i), "ok", fps=FPS, image_size=32, tree=("left", "right")[i % 2]) for i in range(12)]
    assert any(p.draw > 0 for p in plans) and any(p.draw == 0 for p in plans)
    for i, p in enumerate(plans):
        own = sample_params((0, i), image_size=32, fps=FPS, tree=("left", "right")[i % 2], n_frames=p.params.n_frames)
        assert p.params.contrast == sample_injection((0, i), ("left", "right")[i % 2], draw=p.draw)
        assert (p.params.contrast == own.contrast) == (p.draw == 0)
        assert p.params.anatomy == own.anatomy and p.params.camera == own.camera and p.params.imaging == own.imaging


# --------------------------------------------------------------------------------------------------
# Durations, rates, determinism
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fps", [7.5, 15.0, 30.0])
def test_durations_lie_in_range_and_nothing_is_squeezed_at_every_rate(fps):
    assert frame_counts((3.5, 7.0), fps) == range(math.ceil(3.5 * fps), math.floor(7.0 * fps) + 1)
    for k, name in enumerate(SCENARIOS):
        p = plan_scenario((2, k), name, fps=fps, image_size=32, tree=("left", "right")[k % 2])
        assert 3.5 <= p.n_frames / fps <= 7.0
        assert p.first_frame + p.n_frames <= p.params.n_frames
        assert p.params.contrast.time_scale == 1.0
        assert p.params.n_frames >= p.params.contrast.natural_duration() * fps  # the run holds its whole passage


def test_a_30_fps_cine_has_the_planned_frames():
    seq = simulate_scenario(3, "partial_end", fps=30.0, image_size=64, durations_s=(3.5, 4.0))
    assert 105 <= seq.n_frames <= 120 and seq.fps == 30.0 and seq.meta["durations_s"] == [3.5, 4.0]
    assert seq.n_frames == plan_scenario(3, "partial_end", fps=30.0, image_size=64, durations_s=(3.5, 4.0)).n_frames


def test_same_seed_same_bytes_other_seed_other_cine():
    a = simulate_scenario(9, "partial_start", fps=FPS, image_size=32)
    b = simulate_scenario(9, "partial_start", fps=FPS, image_size=32)
    c = simulate_scenario(10, "partial_start", fps=FPS, image_size=32)
    assert a.frames.tobytes() == b.frames.tobytes() and a.truth.vessel_maps.tobytes() == b.truth.vessel_maps.tobytes()
    assert a.meta == b.meta and a.truth.keyframes == b.truth.keyframes
    assert a.meta["params"] != c.meta["params"]
    assert a.frames.shape != c.frames.shape or a.frames.tobytes() != c.frames.tobytes()
    assert a.video_id == "xcasynth-9-partial_start"


# --------------------------------------------------------------------------------------------------
# Bad inputs
# --------------------------------------------------------------------------------------------------


def test_bad_scenario_arguments_raise_clear_errors(monkeypatch):
    with pytest.raises(ValueError, match="unknown scenario 'truncated'"):
        simulate_scenario(0, "truncated")
    with pytest.raises(ValueError, match="0 < min <= max"):
        plan_scenario(0, "ok", durations_s=(7.0, 3.5))
    with pytest.raises(ValueError, match="0 < min <= max"):
        plan_scenario(0, "ok", durations_s=(-1.0, 3.5))
    with pytest.raises(ValueError, match=r"\(min, max\) seconds"):
        plan_scenario(0, "ok", durations_s=(3.5,))
    with pytest.raises(ValueError, match="no cine of >= 8 whole frames at 7.5 fps"):
        plan_scenario(0, "ok", fps=7.5, durations_s=(0.5, 1.0))
    with pytest.raises(ValueError, match="fps must be a positive"):
        plan_scenario(0, "ok", fps=0.0)
    with pytest.raises(ValueError, match="tree must be"):
        plan_scenario(0, "ok", tree="middle")
    with pytest.raises(ValueError, match="contrast_draw"):
        sample_params(0, image_size=32, n_frames=16, contrast_draw=-1)
    # A passage of >= 2 s cannot fit a 1.2 s "ok" cine: the redraws give up with a clear message.
    monkeypatch.setattr(scenario_module, "MAX_DRAWS", 3)
    with pytest.raises(ValueError, match=r"none of 3 injection draws fits scenario 'ok' into 1.1-1.2 s at 7.5 fps"):
        plan_scenario(1, "ok", fps=7.5, image_size=32, durations_s=(1.1, 1.2))


def test_bad_synth_configs_raise_clear_errors():
    base = dict(n_sequences=8, split=(4, 2, 2), image_size=64, frames=(26, 210))
    with pytest.raises(ValueError, match="need durations_s"):
        SynthConfig(**base, scenarios=("ok",))
    with pytest.raises(ValueError, match="durations_s needs scenarios"):
        SynthConfig(**base, durations_s=(3.5, 7.0))
    with pytest.raises(ValueError, match="unknown scenario 'maybe'"):
        SynthConfig(**base, durations_s=(3.5, 7.0), scenarios=("ok", "maybe"))
    with pytest.raises(ValueError, match="0 < min <= max"):
        SynthConfig(**base, durations_s=(7.0, 3.5), scenarios=("ok",))
    with pytest.raises(ValueError, match="tuple of scenario names"):
        SynthConfig(**base, durations_s=(3.5, 7.0), scenarios="ok")
    with pytest.raises(ValueError, match=r"frames \(32, 48\) must cover durations_s \(3.5, 7.0\) at 7.5 fps"):
        SynthConfig(**{**base, "frames": (32, 48)}, durations_s=(3.5, 7.0), scenarios=("ok",))


# --------------------------------------------------------------------------------------------------
# Plans and configs
# --------------------------------------------------------------------------------------------------


def test_todays_default_plans_are_unchanged():
    digests = {name: hashlib.sha256(json.dumps(plan(get_preset(name)), sort_keys=True).encode()).hexdigest()
               for name in PRESETS}
    assert digests == {  # the plans before scenarios existed
        "smoke": "309d15752da263f55d4f63799a740ae23c23213e3cb46748a976eb4ce27e374e",
        "teach": "d6a6fa10ae205af0d5b7f327fe56d987feb7685d9e56b4af9659007fabf3f553",
        "paper": "44df020177be960534bab8a71a01b5f54828c2217b36381d2719c7d7ced6c664",
    }
    teach = plan(get_preset("teach"))
    assert teach[0] == {  # readable when the digest changes
        "index": 0, "video_id": "synth-0000", "subset": "train", "seed": [0, 0], "image_size": 256,
        "frames_range": [40, 160], "fps": 7.5, "tree": "left",
        "knobs": {"vessel_contrast": 1.0, "dose": 1.0, "motion": 1.0, "onset_sharpness": 1.0, "blush": 1.0,
                  "table_pan": 0.1, "stenoses": True, "annotator_jitter": 0.0, "postprocess": True, "bits": 8},
        "rule": {"start_fraction": 0.03, "apex": "first", "apex_tolerance": 0.01, "end_fraction": 0.1,
                 "plateau_fraction": 0.95},
    }
    assert (teach[119]["fps"], teach[119]["tree"], teach[119]["subset"]) == (30.0, "right", "test")
    # build.json of a preset records the synth fields it always did, no more.
    info = _build_info(get_preset("teach"), teach, False)
    assert sorted(info["synth"]) == ["fps_choices", "frames", "image_size", "n_sequences", "split", "trees"]


def test_locate_config_is_a_named_config_not_a_preset():
    cfg = locate_config(2)
    teach = get_preset("teach")
    assert cfg.name == "locate" and cfg.seed == 2 and "locate" not in PRESETS and CONFIGS["locate"] is locate_config
    assert (cfg.model, cfg.features) == (teach.model, teach.features)
    # The teach training, plus the feature gain that randomises for real cines' denser trees.
    assert cfg.train.feature_gain == (0.7, 2.5) and cfg.train.feature_clutter == (0.0, 0.05)
    assert dataclasses.replace(cfg.train, feature_gain=None, feature_clutter=None) == teach.train
    assert default_out_dir(cfg).name == "xca-synth-locate-seed2"
    assert cfg.synth.durations_s == (3.5, 7.0) and cfg.synth.frames == (26, 210)


@pytest.mark.parametrize("seed", [0, 1])
def test_locate_test_split_holds_every_status_and_rate(seed):
    jobs = [j for j in plan(locate_config(seed)) if j["subset"] == "test"]
    assert len(jobs) == 120
    statuses = collections.Counter(STATUS[j["scenario"]] for j in jobs)
    rates = collections.Counter(j["fps"] for j in jobs)
    assert min(statuses[s] for s in ("ok", "partial", "no_contrast")) >= 20 and len(statuses) == 3
    assert min(rates[f] for f in (7.5, 15.0, 30.0)) >= 20 and len(rates) == 3
    assert statuses == {"ok": 48, "partial": 48, "no_contrast": 24}


def test_plan_balances_scenarios_rates_and_trees_in_every_subset():
    cfg = locate_config(1)
    weights = collections.Counter(cfg.synth.scenarios)  # "ok" twice
    for subset in ("train", "validation", "test"):
        jobs = [j for j in plan(cfg) if j["subset"] == subset]
        combos = collections.Counter((j["scenario"], j["fps"], j["tree"]) for j in jobs)
        assert len(combos) == 4 * 3 * 2
        per_weight = {count / weights[combo[0]] for combo, count in combos.items()}
        assert len(per_weight) == 1, subset  # each combination as often as its scenario's weight says
        assert all(j["durations_s"] == [3.5, 7.0] for j in jobs)
    # Small subsets mix scenarios too: any 6 consecutive cines of a 3-scenario plan hold all three.
    small = get_preset("smoke").replace(synth=SynthConfig(
        n_sequences=12, split=(6, 3, 3), image_size=64, frames=(26, 210), fps_choices=(7.5, 15.0, 30.0),
        durations_s=(3.5, 7.0), scenarios=("ok", "partial_end", "no_contrast")))
    names = [j["scenario"] for j in plan(small)]
    assert all(set(names[i : i + 6]) == {"ok", "partial_end", "no_contrast"} for i in range(7))


def test_simulate_command_takes_the_locate_config(monkeypatch, capsys):
    from xcalab.data.synth import benchmark

    seen = {}

    def fake_build(cfg, out, **kw):
        seen["cfg"] = cfg
        raise XcalabInputError(out or "out", "stopped by the test")

    monkeypatch.setattr(benchmark, "build_benchmark", fake_build)
    assert main(["--config", "locate", "--seed", "3", "--workers", "2", "--dicom", "--quiet"]) == 2
    assert seen["cfg"].name == "locate" and seen["cfg"].seed == 3 and seen["cfg"].synth.scenarios
    assert main(["--preset", "smoke", "--quiet"]) == 2 and seen["cfg"].name == "smoke"  # --preset as before
    assert "stopped by the test" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "--config {locate}" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------------
# Builds and annotations
# --------------------------------------------------------------------------------------------------


def _tiny_scenario_config():
    synth = SynthConfig(n_sequences=8, split=(4, 2, 2), image_size=32, frames=(26, 60), fps_choices=(7.5,),
                        durations_s=(3.5, 7.0), scenarios=SCENARIOS)
    return get_preset("smoke").replace(name="locate", synth=synth)


def _files(root) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_scenario_build_annotates_status_and_resumes_byte_identically(tmp_path):
    cfg = _tiny_scenario_config()
    root = build_benchmark(cfg, tmp_path / "full", progress=False)
    info = json.loads((root / "build.json").read_text())
    assert info["synth"]["scenarios"] == list(SCENARIOS) and info["synth"]["durations_s"] == [3.5, 7.0]
    bench = load_benchmark(root)
    for job in plan(cfg):
        vid, name = job["video_id"], job["scenario"]
        ann, seq = bench.annotations[vid], bench.load(vid)
        assert seq.meta["scenario"] == name and ann.status == STATUS[name]
        assert ann.keyframes_present == KEYFRAMES_PRESENT[name]
        assert read_summary(root / "sequences" / f"{vid}.npz")["status"] == STATUS[name]
        n, fps = seq.n_frames, seq.fps
        if name == "no_contrast":
            assert ann.actions == [] and ann.keyframes is None
            continue
        filling, disappearing = (a.segment for a in sorted(ann.actions, key=lambda a: a.label_id))
        assert tuple(ann.keyframes) == seq.truth.keyframes
        if name == "partial_end":
            assert disappearing[1] == pytest.approx((n - 1) / fps)  # stops at the last frame
        if name == "partial_start":
            assert filling[0] == 0.0  # starts at frame 0
    # Killed after 3 cines, resumed: the same bytes.
    resumed = build_benchmark(cfg, tmp_path / "resumed", progress=False, limit=3)
    assert not (resumed / "annotations.json").exists()
    build_benchmark(cfg, resumed, progress=False)
    assert _files(resumed) == _files(root)


def test_a_default_cine_summary_is_unchanged(tmp_path):
    from xcalab.data.synth.benchmark import write_sequence_npz

    seq = simulate_sequence(1, image_size=32, n_frames=16)
    summary = read_summary(write_sequence_npz(seq, tmp_path / "s.npz"))
    assert summary == {"keyframes": list(seq.truth.keyframes), "fps": 15.0, "n_frames": 16}


def test_annotations_round_trip_status_presence_and_an_empty_action_list(tmp_path):
    partial = VideoAnnotation.from_keyframes("p", (0, 9, 40), 15.0, 45, subset="test", status="partial",
                                             keyframes_present=(False, True, True))
    none = VideoAnnotation.without_contrast("n", 7.5, 30, subset="validation")
    plain = VideoAnnotation.from_keyframes("d", (3, 9, 20), 15.0, 30)
    path = write_annotations(tmp_path / "a.json", [partial, none, plain])
    raw = json.loads(path.read_text())["database"]
    assert raw["n"]["annotations"] == [] and raw["n"]["status"] == "no_contrast" and "keyframes" not in raw["n"]
    assert raw["p"]["keyframes_present"] == [False, True, True] and raw["p"]["status"] == "partial"
    assert "status" not in raw["d"] and "keyframes_present" not in raw["d"]  # records as before
    back = read_annotations(path)
    assert back == {"p": partial, "n": none, "d": plain}
    assert back["n"].duration == 4.0 and back["d"].status is None
    assert partial.actions[0].segment == (0.0, 9 / 15.0)


@pytest.mark.parametrize("change, problem", [
    ({"status": "maybe"}, '"status" must be one of'),
    ({"keyframes_present": [True, True]}, "three booleans"),
    ({"keyframes_present": [1, 1, 1]}, "three booleans"),
    ({"status": "ok", "keyframes_present": [True, True, False]}, 'status "ok" means every keyframe'),
    ({"status": "partial", "keyframes_present": [True, True, True]}, 'status "partial" means'),
    ({"status": "partial", "keyframes_present": [True, False, True]}, 'status "partial" means'),
    ({"status": "no_contrast"}, 'status "no_contrast" means no actions'),
    ({"status": "no_contrast", "annotations": [], "keyframes_present": [False, True, False]}, "no keyframe is in"),
])
def test_bad_status_records_raise_clear_errors(tmp_path, change, problem):
    record = VideoAnnotation.from_keyframes("v", (3, 9, 20), 15.0, 30).to_json()
    record.update(change)
    if record.get("annotations") == []:
        record.pop("keyframes")
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"database": {"v": record}}))
    with pytest.raises(XcalabInputError, match=problem) as err:
        read_annotations(path)
    assert "bad.json" in str(err.value) and "'v'" in str(err.value)


def test_constructing_a_bad_status_raises():
    with pytest.raises(XcalabInputError, match="without_contrast"):
        VideoAnnotation.from_keyframes("v", (0, 0, 0), 15.0, 30, status="no_contrast")
    with pytest.raises(XcalabInputError, match='"status" must be one of'):
        VideoAnnotation.from_keyframes("v", (3, 9, 20), 15.0, 30, status="fine")
    with pytest.raises(XcalabInputError, match="no actions and no keyframes"):
        VideoAnnotation("v", "train", 15.0, 2.0, [], (1, 2, 3), 0, "no_contrast")
