"""The other seed papers' modules inside the detector and the training loop: GAF, TSA + TPP, the phase recogniser.

Each module is a ``ModelConfig`` switch. Here: its maps come out through the detector's attention capture, padding
never changes a valid step's output, every new parameter learns from the step's loss, its loss terms are logged,
and a run with it resumes exactly.
"""

import csv
import dataclasses

import pytest
import torch
from toy_data import FOUR_VIDEOS, STRIDE, toy_feature_set

from xcalab.config import apply_overrides, get_preset
from xcalab.data.dataset import collate, dataset_for
from xcalab.data.phases import PHASE_NAMES
from xcalab.models.detector import KeyframeDetector, build_detector
from xcalab.train.distributed import Distributed
from xcalab.train.generative import GenerativeAttentionTask, frozen
from xcalab.train.loop import train
from xcalab.train.losses import LossNormaliser
from xcalab.train.task import DetectionTask

SMOKE = get_preset("smoke")
SWITCHES = {
    "gaf": {"generative_attention": True, "gaf_hidden": 16},
    "tsa": {"refinement": True},
    "phase": {"phase_attention": True},
}
MAPS = {
    "gaf": {"GAF.lambda", "GAF.lambda_mean", "GAF.foreground", "GAF.background", "GAF.reconstruction"},
    "tsa": {"TSA.dot_product", "TSA.agreement", "TSA.overlap", "TSA.fused", "TPP.actionness"},
    "phase": {"phase.response", "phase.peaks", "phase.discriminative", "phase.complementary",
              "phase.resampled_discriminative", "phase.resampled_complementary",
              *(f"P({name})" for name in PHASE_NAMES)},
}
MAP_SIZE = 16


def detector(name: str, seed: int = 0) -> KeyframeDetector:
    torch.manual_seed(seed)
    cfg = dataclasses.replace(SMOKE.model, **SWITCHES.get(name, {}))
    return KeyframeDetector(cfg, feature_dim=MAP_SIZE**2, map_size=MAP_SIZE)


def inputs(lengths=(12, 9), steps=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(len(lengths), MAP_SIZE**2, steps, generator=g)
    mask = torch.arange(steps)[None] < torch.tensor(lengths)[:, None]
    return x * mask[:, None], mask


@pytest.mark.parametrize("name", SWITCHES)
def test_each_module_adds_its_maps_to_the_detectors(name):
    model = detector(name).eval()
    x, mask = inputs()
    with torch.no_grad():
        out = model(x, mask, return_attention=True, generator=torch.Generator().manual_seed(0))
    plain = set(detector("none").eval()(x, mask, return_attention=True).kinds)
    assert set(out.kinds) == plain | MAPS[name]
    one = out.attention_of(1)  # the second video: 9 valid steps
    for map_name in MAPS[name]:
        kind, value = out.kinds[map_name], one[map_name]
        expected = {"step": (9, MAP_SIZE, MAP_SIZE), "matrix": (9, 9), "curve": (9,)}[kind.kind]
        assert value.shape == expected, map_name
        if kind.value_range is not None:
            assert kind.value_range[0] <= float(value.min()) and float(value.max()) <= kind.value_range[1], map_name


@pytest.mark.parametrize("name", ["gaf", "tsa"])
def test_a_module_is_built_last_so_the_rest_starts_the_same(name):
    plain, switched = detector("none").state_dict(), detector(name).state_dict()
    assert plain.keys() < switched.keys()
    assert all(torch.equal(plain[k], switched[k]) for k in plain)


@pytest.mark.parametrize("name", SWITCHES)
def test_padding_never_changes_a_valid_steps_output(name):
    model = detector(name).eval()
    model.patchwise.centre = (8, 8)  # PCon's patch, else drawn per call
    x, mask = inputs(lengths=(12, 9))
    with torch.no_grad():
        batched = model(x, mask)
        alone = model(x[1:, :, :9], mask[1:, :9])
        longer = model(torch.cat((x[1:], torch.zeros(1, MAP_SIZE**2, 5)), dim=2), torch.cat((mask[1:], torch.zeros(1, 5, dtype=torch.bool)), dim=1))
    for level, logits in enumerate(alone.cls_logits):
        n = logits.shape[-1]
        torch.testing.assert_close(batched.cls_logits[level][1, :, :n], logits[0], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(longer.cls_logits[level][0, :, :n], logits[0], atol=1e-5, rtol=1e-4)


@pytest.fixture(scope="module")
def toy_set(tmp_path_factory):
    folder = tmp_path_factory.mktemp("toy-modules")
    toy_feature_set(folder, {**FOUR_VIDEOS, "v": ("validation", 16, (12, 24, 54))}, size=MAP_SIZE)
    return folder


def config(name: str, **train):
    return apply_overrides(SMOKE, {"device": "cpu", "features": {"map_size": MAP_SIZE}, "model": SWITCHES[name],
                                   "train": {"max_seq_len": 20, "select_after": 0, **train}})


@pytest.mark.parametrize("name", SWITCHES)
def test_every_new_parameter_learns_from_the_step_loss(name, toy_set):
    cfg = config(name)
    model = build_detector(cfg).train()
    batch = collate([dataset_for(cfg, toy_set, toy_set / "annotations.json", "train")[i] for i in range(2)], pad_to=20)
    task = GenerativeAttentionTask() if name == "gaf" else DetectionTask()
    loss, terms = task.step_loss(model, model, batch, cfg, 1, 0, LossNormaliser(100.0), Distributed.start("cpu"))
    loss.backward()
    module = {"gaf": model.generative, "tsa": model.pyramid.refinement, "phase": model.phase}[name]
    frozen_cvae = {id(p) for p in model.generative.cvae_parameters()} if name == "gaf" else set()
    for pname, p in module.named_parameters():
        if id(p) in frozen_cvae:  # GAF's detector phase leaves the CVAE alone
            assert p.grad is None, pname
        else:
            assert p.grad is not None and p.grad.abs().sum() > 0, pname
    expected = {"gaf": {"gaf_bg", "gaf_recon"}, "tsa": {"tsa"}, "phase": {"phase"}}[name]
    assert expected <= terms.keys() and all(terms[k] > 0 for k in expected)
    if name == "gaf":  # ... and the CVAE phase trains the CVAE alone
        model.zero_grad(set_to_none=True)
        model.generative.cvae_step_loss(batch.features, batch.mask)[0].backward()
        assert all(p.grad is not None for p in model.generative.cvae_parameters())
        assert all(p.grad is None for p in model.generative.attention_parameters())


def test_frozen_restores_what_it_froze():
    a, b = torch.nn.Parameter(torch.ones(1)), torch.nn.Parameter(torch.ones(1), requires_grad=False)
    with frozen([a, b]):
        assert not a.requires_grad and not b.requires_grad
    assert a.requires_grad and not b.requires_grad


def test_the_phase_recogniser_needs_phase_labels(toy_set):
    cfg = config("phase")
    model = build_detector(cfg).train()
    batch = collate([dataset_for(cfg, toy_set, toy_set / "annotations.json", "train")[0]], pad_to=20)._replace(phases=None)
    with pytest.raises(Exception, match="phase labels"):
        DetectionTask().step_loss(model, model, batch, cfg, 1, 0, LossNormaliser(100.0), Distributed.start("cpu"))


@pytest.mark.parametrize("name", SWITCHES)
def test_a_run_with_the_module_logs_its_terms_and_resumes_exactly(name, toy_set, tmp_path):
    ann = toy_set / "annotations.json"
    straight = train(config(name, epochs=2), toy_set, ann, tmp_path / "straight", progress=False)
    train(config(name, epochs=1), toy_set, ann, tmp_path / "resumed", progress=False)
    resumed = train(config(name, epochs=2), toy_set, ann, tmp_path / "resumed", resume=True, progress=False)

    a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)
    for part in ("model", "ema"):
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part]), part
    assert [h["loss"] for h in straight.history] == [h["loss"] for h in resumed.history]
    terms = {"gaf": ("gaf_cvae", "gaf_bg", "gaf_recon"), "tsa": ("tsa",), "phase": ("phase",)}[name]
    for record in straight.history:
        assert all(record[k] > 0 for k in terms if not (k == "gaf_recon" and record["epoch"] == 0))
    with open(tmp_path / "straight" / "epochs.csv") as f:
        assert set(terms) <= set(next(csv.reader(f)))
    if name == "gaf":
        assert a["side_optimizers"].keys() == {"cvae"}
        for k, v in a["side_optimizers"]["cvae"]["state"].items():
            assert torch.equal(v["exp_avg_sq"], b["side_optimizers"]["cvae"]["state"][k]["exp_avg_sq"])
    else:
        assert "side_optimizers" not in a


def test_gaf_refuses_several_processes():
    class TwoProcesses:
        world_size = 2

    with pytest.raises(ValueError, match="one process"):
        GenerativeAttentionTask().before_epoch(None, [], SMOKE, 0, TwoProcesses())


@pytest.mark.slow
@pytest.mark.parametrize("name", SWITCHES)
def test_a_smoke_model_with_the_module_overfits_four_cines(name, tmp_path):
    """As the plain detector does (test_train): after 80 steps the keyframes of the four training cines are found
    within one feature step."""
    from xcalab.inference import predict
    from xcalab.models.detector import load_detector

    folder = tmp_path / "four"
    toy_feature_set(folder, FOUR_VIDEOS, size=16)
    # No validation cines, so the last epoch is the one kept whichever epoch selection starts at (test_train
    # checks that); starting it at the last epoch writes best.pt once instead of after every epoch.
    cfg = config(name, epochs=40, warmup_epochs=5, cosine_epochs=40, lr=3e-3, crop_ratio=(1.0, 1.0), ema_decay=0.9,
                 select_after=39)
    result = train(cfg, folder, folder / "annotations.json", tmp_path / "run", progress=False)
    assert result.best_epoch == 39
    model, cfg = load_detector(result.best_checkpoint)
    cines = dataset_for(cfg, folder, folder / "annotations.json", "train")
    for prediction, video in zip(predict(model, cines, cfg), cines.videos):
        assert prediction.keyframes is not None, prediction.missing
        error = max(abs(p - t) for p, t in zip(prediction.keyframes, video.keyframes))
        assert error <= STRIDE, (name, video.video_id, prediction.keyframes, video.keyframes)


def test_a_modules_settings_identify_a_run_only_when_it_is_on():
    other = {"model": {"gaf_hidden": 7}, "train": {"gaf_cvae_lr": 0.5, "refinement_weight": 3.0, "phase_weight": 2.0}}
    assert SMOKE.training_identity() == apply_overrides(SMOKE, other).training_identity()
    assert "gaf_hidden" not in SMOKE.training_identity()["model"]
    for name in SWITCHES:
        on = apply_overrides(SMOKE, {"model": SWITCHES[name]})
        assert on.training_identity() != apply_overrides(on, other).training_identity(), name


def test_predict_phases_is_the_argmax_of_each_videos_fused_probabilities(toy_set):
    from xcalab.data.dataset import FeatureDataset
    from xcalab.inference import predict_phases

    model = detector("phase").eval()
    data = FeatureDataset(toy_set, toy_set / "annotations.json", subset="train", feature_dim=MAP_SIZE**2)
    phases = predict_phases(model, data)
    assert len(phases) == len(data) == 4 and not model.training
    for i, found in enumerate(phases):
        item = data.video(i)
        with torch.no_grad():
            probs = model(item.features[None], torch.ones(1, item.features.shape[1], dtype=torch.bool)).phases.probabilities
        assert found.shape == (item.features.shape[1],) and found.dtype.kind == "i"
        assert found.tolist() == probs[0].argmax(dim=0).tolist()
    model.train()
    predict_phases(model, data)
    assert model.training  # put back as it was
    with pytest.raises(ValueError, match="no phase recogniser"):
        predict_phases(detector("none"), data)
