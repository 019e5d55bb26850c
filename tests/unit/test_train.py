"""Training: optimiser groups, lr schedule, EMA, config overrides, exact resume, checkpoints, overfitting."""

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from torch import nn
from toy_data import FOUR_VIDEOS, STRIDE, toy_feature_set

from xcalab.cli import train_command
from xcalab.config import apply_overrides, config_from_dict, config_to_dict, get_preset
from xcalab.data.dataset import dataset_for
from xcalab.errors import XcalabInputError
from xcalab.inference import evaluate, predict
from xcalab.models.detector import KeyframeDetector, load_detector
from xcalab.train.checkpoint import RunLock
from xcalab.train.loop import train
from xcalab.train.losses import pad_segments
from xcalab.train.optim import (
    ModelEMA,
    WarmupCosineSchedule,
    build_optimizer,
    build_scheduler,
    decay_split,
    warmup_cosine_lr,
)

SMOKE = get_preset("smoke")


def _with(cfg, **sections):
    """cfg with some fields of its sections changed, e.g. _with(cfg, train={"epochs": 2})."""
    return apply_overrides(cfg, sections)


# --------------------------------------------------------------------------------------------------
# AdamW groups, lr schedule, EMA
# --------------------------------------------------------------------------------------------------


def test_weight_decay_groups_follow_the_reference():
    model = KeyframeDetector(SMOKE.model.ablation(drop_path=0.1))  # drop-path builds AffineDropPath scales
    decay, no_decay = decay_split(model)
    assert sorted(decay + no_decay) == sorted(n for n, _ in model.named_parameters())
    assert not set(decay) & set(no_decay)
    for name in [
        "long_term.temporal.cells.0.gates.weight",  # ConvLSTM Conv2d
        "long_term.spatial.0.weight",  # SA Conv2d
        "long_term.spatial.1.weight",  # SA BatchNorm: decayed, as nested in the reference's first conv
        "imagewise.projection.0.weight",  # ICon Linear
        "pyramid.embedding.convs.0.conv.weight",  # MaskedConv1d
        "pyramid.stem.0.attention.query.weight",  # 1x1 Conv1d
        "pyramid.stem.0.mlp.0.weight",
        "cls_head.trunk.out.conv.weight",
    ]:
        assert name in decay, name
    for name in [
        "long_term.spatial.1.bias",
        "imagewise.projection.0.bias",
        "cls_head.trunk.out.conv.bias",
        "pyramid.level_norms.0.weight",  # LayerNorm
        "pyramid.stem.0.attention.key_norm.weight",
        "reg_head.scales.0.scale",  # Scale
        "pyramid.stem.0.attention_path.scale",  # AffineDropPath
    ]:
        assert name in no_decay, name
    assert all(n.endswith("weight") for n in decay)


def test_optimizer_groups_and_unknown_parameters():
    model = KeyframeDetector(SMOKE.model)
    opt = build_optimizer(model, SMOKE.train)
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert decay["lr"] == SMOKE.train.lr and decay["betas"] == (0.9, 0.999) and decay["eps"] == 1e-8
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))

    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.gain = nn.Parameter(torch.ones(3))

    with pytest.raises(ValueError, match=r"no weight-decay rule for: gain \(Odd\)"):
        decay_split(Odd())


def test_lr_at_hand_worked_iterations():
    base, eta = 1e-4, 1e-8
    # 2 iterations per epoch, 5 warm-up epochs, cosine over 25 more: W = 10, H = 60.
    assert warmup_cosine_lr(0, base, 10, 60) == 0.0
    assert warmup_cosine_lr(5, base, 10, 60) == pytest.approx(5e-5)
    assert warmup_cosine_lr(10, base, 10, 60) == pytest.approx(1e-4)
    assert warmup_cosine_lr(35, base, 10, 60) == pytest.approx(eta + (base - eta) / 2)  # cos(pi/2) = 0
    assert warmup_cosine_lr(60, base, 10, 60) == pytest.approx(eta)
    assert warmup_cosine_lr(99, base, 10, 60) == pytest.approx(eta)  # stays at the floor
    # The reference: warm-up 5, horizon 60 epochs, stops after 50 -> last lr ~7.9e-6.
    assert warmup_cosine_lr(50, base, 5, 60) == pytest.approx(eta + (base - eta) * (1 + math.cos(math.pi * 45 / 55)) / 2)
    assert warmup_cosine_lr(50, base, 5, 60) == pytest.approx(7.9e-6, rel=0.01)


def test_schedule_steps_the_optimizer_per_iteration():
    param = nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([param], lr=1e-4)
    sched = build_scheduler(opt, dataclasses.replace(SMOKE.train, lr=1e-4, warmup_epochs=5, cosine_epochs=25), 2)
    assert isinstance(sched, WarmupCosineSchedule) and (sched.warmup_steps, sched.total_steps) == (10, 60)
    seen = []
    for _ in range(61):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([warmup_cosine_lr(i, 1e-4, 10, 60) for i in range(61)])
    again = WarmupCosineSchedule(torch.optim.AdamW([nn.Parameter(torch.zeros(1))], lr=1e-4), 10, 60)
    again.load_state_dict(sched.state_dict())
    assert again.last_epoch == 61


def _moved(model):
    old = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model[0].weight.add_(1.0)
    model.train()(torch.randn(8, 2))  # moves BatchNorm's running statistics and counter
    return old, model.state_dict()


def test_ema_reference_averages_every_state_entry():
    model = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))
    ema = ModelEMA(model, decay=0.9, warmup=False, average_buffers=True)
    assert not ema.module.training and not any(p.requires_grad for p in ema.module.parameters())
    old, new = _moved(model)
    ema.update(model, step=0)
    for name, value in ema.state_dict().items():
        if value.dtype.is_floating_point:
            assert torch.allclose(value, 0.9 * old[name] + 0.1 * new[name]), name
    assert torch.allclose(ema.state_dict()["1.running_mean"], 0.1 * new["1.running_mean"])  # buffers too
    assert int(ema.state_dict()["1.num_batches_tracked"]) == 1  # integers are copied
    with pytest.raises(ValueError, match="decay"):
        ModelEMA(model, decay=1.5)


def test_ema_default_warms_up_and_copies_batchnorm_statistics():
    model = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))
    ema = ModelEMA(model, decay=0.999)
    # decay_t = min(0.999, (1 + t) / (10 + t)): 0.1 at the first update, 0.5 at t = 8, capped at 0.999
    assert ema.decay_at(0) == pytest.approx(0.1) and ema.decay_at(8) == pytest.approx(0.5)
    assert ema.decay_at(10**6) == 0.999
    old, new = _moved(model)
    ema.update(model, step=8)
    state = ema.state_dict()
    assert torch.allclose(state["0.weight"], 0.5 * old["0.weight"] + 0.5 * new["0.weight"])
    assert torch.equal(state["1.running_var"], new["1.running_var"])  # copied, not averaged
    assert torch.equal(state["1.running_mean"], new["1.running_mean"])


def test_pad_segments():
    segments, labels, mask = pad_segments([torch.tensor([[1.0, 2.0]]), torch.zeros(0, 2)], [torch.tensor([1]), torch.zeros(0)])
    assert segments.shape == (2, 1, 2) and labels.tolist() == [[1], [0]] and mask.tolist() == [[True], [False]]


# --------------------------------------------------------------------------------------------------
# Configuration overrides
# --------------------------------------------------------------------------------------------------


def test_overrides_and_config_round_trip():
    cfg = apply_overrides(SMOKE, {"model": {"long_term": "none", "imagewise": False}, "train": {"epochs": 3,
                                  "crop_ratio": [0.5, 1.0]}, "seed": 7})
    assert cfg.model.long_term == "none" and cfg.train.epochs == 3 and cfg.seed == 7
    assert cfg.train.crop_ratio == (0.5, 1.0) and cfg.model.patchwise is True
    assert config_from_dict(config_to_dict(cfg)) == cfg
    assert config_from_dict(json.loads(json.dumps(config_to_dict(get_preset("paper"))))) == get_preset("paper")
    with pytest.raises(XcalabInputError, match=r"over\.json: unknown train setting\(s\) \['epoch'\]"):
        apply_overrides(SMOKE, {"train": {"epoch": 3}}, where="over.json")
    with pytest.raises(XcalabInputError, match="over.json: unknown setting 'trian'"):
        apply_overrides(SMOKE, {"trian": {}}, where="over.json")
    with pytest.raises(XcalabInputError, match="over.json: model: long_term must be"):
        apply_overrides(SMOKE, {"model": {"long_term": "XX"}}, where="over.json")


# --------------------------------------------------------------------------------------------------
# The training loop
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def toy_set(tmp_path_factory):
    folder = tmp_path_factory.mktemp("toy")
    toy_feature_set(folder, {**FOUR_VIDEOS, "v": ("validation", 16, (12, 24, 54))})
    return folder


RESUME_OVERRIDES = {"model": {"drop_path": 0.1}, "train": {"max_seq_len": 20, "select_after": 0}, "device": "cpu"}


def test_resuming_continues_exactly(toy_set, tmp_path, capsys):
    """2 epochs in one go == 1 epoch with the command, resume, 1 more (bitwise on the CPU)."""
    ann = toy_set / "annotations.json"
    cfg = _with(SMOKE, **RESUME_OVERRIDES)
    straight = train(_with(cfg, train={"epochs": 2}), toy_set, ann, tmp_path / "straight", progress=False)

    common = ["--preset", "smoke", "--features", str(toy_set), "--annotations", str(ann), "--no-progress"]
    for epochs, extra in ((1, []), (2, ["--resume"])):
        overrides = tmp_path / f"over{epochs}.json"
        overrides.write_text(json.dumps({**RESUME_OVERRIDES, "train": {**RESUME_OVERRIDES["train"], "epochs": epochs}}))
        assert train_command([*common, "--config", str(overrides), "--out", str(tmp_path / "resumed"), *extra]) == 0
    assert "trained 2 epochs on 1 process(es)" in capsys.readouterr().out

    a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)
    for part in ("model", "ema"):
        assert a[part].keys() == b[part].keys()
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part]), part
    for k, v in a["optimizer"]["state"].items():
        assert torch.equal(v["exp_avg_sq"], b["optimizer"]["state"][k]["exp_avg_sq"])
    assert a["scheduler"] == b["scheduler"] and a["normaliser"] == b["normaliser"] and a["best"] == b["best"]
    assert [h["loss"] for h in a["history"]] == [h["loss"] for h in b["history"]]
    assert straight.best_epoch == b["best"]["epoch"] and straight.best_score == b["best"]["score"]

    # Logs: one record per step and per epoch, the interrupted run's included exactly once.
    lines = [json.loads(line) for line in (tmp_path / "resumed" / "log.jsonl").read_text().splitlines()]
    straight_lines = [json.loads(line) for line in (tmp_path / "straight" / "log.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in lines] == ["step", "step", "epoch"] * 2
    assert [r["loss"] for r in lines if r["kind"] == "step"] == [r["loss"] for r in straight_lines if r["kind"] == "step"]
    assert {"lr", "cls", "reg", "con", "num_pos", "normaliser", "grad_norm"} <= lines[0].keys()
    assert lines[0]["con"] is not None and lines[3]["con"] is None  # contrast epochs (0, 2) in smoke
    assert (tmp_path / "resumed" / "epochs.csv").read_text().count("\n") == 3  # header + 2 epochs


def test_refuses_to_overwrite_or_to_resume_something_else(toy_set, tmp_path):
    ann = toy_set / "annotations.json"
    cfg = _with(_with(SMOKE, **RESUME_OVERRIDES), train={"epochs": 1})
    train(cfg, toy_set, ann, tmp_path, progress=False)
    with pytest.raises(XcalabInputError, match="already holds a training run"):
        train(cfg, toy_set, ann, tmp_path, progress=False)
    with pytest.raises(XcalabInputError, match=r"cannot resume: .*\['train.lr'\]"):
        train(_with(cfg, train={"lr": 0.5}), toy_set, ann, tmp_path, resume=True, progress=False)
    with pytest.raises(XcalabInputError, match="no checkpoint to resume from"):
        train(cfg, toy_set, ann, tmp_path / "empty", resume=True, progress=False)

    # Checkpoints hold tensors and plain values only.
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert {"model", "ema", "optimizer", "scheduler", "normaliser", "rng", "epoch", "best", "history", "meta"} <= ckpt.keys()
    assert ckpt["epoch"] == 1 and len(ckpt["rng"]) == 1
    assert {"python", "numpy", "torch", "cuda"} == ckpt["rng"][0].keys()
    meta = json.loads(ckpt["meta"])
    assert meta["config"] == config_to_dict(cfg) and "torch" in meta["versions"]
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    assert best.keys() == {"format", "ema", "meta"} and json.loads(best["meta"])["epoch"] == 0
    model, loaded = load_detector(tmp_path / "best.pt")
    assert loaded == cfg and not model.training
    assert all(torch.equal(v, best["ema"][k]) for k, v in model.state_dict().items())


def test_bad_input_is_one_clear_line(tmp_path, capsys):
    code = train_command(["--preset", "smoke", "--features", str(tmp_path / "nowhere"), "--annotations", str(tmp_path / "a.json"),
                 "--out", str(tmp_path / "out"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("xcalab: ") and "a.json" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_a_smoke_model_overfits_four_cines_to_their_keyframes(tmp_path):
    """The whole loop learns: after 80 steps the four training cines' keyframes are found within one
    feature step (4 frames). 16 x 16 maps keep it fast; crops are off so the four cines can be memorised."""
    folder = tmp_path / "four"
    toy_feature_set(folder, FOUR_VIDEOS, size=16)
    cfg = _with(
        SMOKE, device="cpu", features={"map_size": 16},
        train={"epochs": 40, "warmup_epochs": 5, "cosine_epochs": 40, "lr": 3e-3, "max_seq_len": 20,
               "crop_ratio": (1.0, 1.0), "ema_decay": 0.9},
    )
    result = train(cfg, folder, folder / "annotations.json", tmp_path / "run", progress=False)
    assert result.best_epoch == 39 and result.best_score is None  # no validation cines: the last epoch

    model, cfg = load_detector(result.best_checkpoint)
    cines = dataset_for(cfg, folder, folder / "annotations.json", "train")
    predictions = predict(model, cines, cfg)
    for prediction, video in zip(predictions, cines.videos):
        assert prediction.keyframes is not None, prediction.missing
        error = np.abs(np.array(prediction.keyframes) - np.array(video.keyframes))
        assert error.max() <= STRIDE, (video.video_id, prediction.keyframes, video.keyframes)

    scores = evaluate(model, cines, cfg, predictions)
    assert scores.average_map == 1.0 and scores.n_missing == 0
    assert scores.ad <= STRIDE and scores.prf.f1 > 0.8
    assert scores.as_dict()["map_top1"]["average_map"] == 1.0


def test_a_second_process_cannot_train_into_a_locked_folder(tmp_path):
    import os
    import subprocess
    import sys

    from xcalab.errors import XcalabInputError

    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (tmp_path / RunLock.NAME).write_text(str(other.pid))  # a live process holds the folder
        with pytest.raises(XcalabInputError, match=f"pid {other.pid}"):
            with RunLock(tmp_path, enabled=True):
                pass
    finally:
        other.kill()
        other.wait()
    # its process is gone: the stale lock is taken over, and released afterwards
    with RunLock(tmp_path, enabled=True):
        assert (tmp_path / RunLock.NAME).read_text() == str(os.getpid())
    assert not (tmp_path / RunLock.NAME).exists()
