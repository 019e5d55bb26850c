"""A run written before the training package was reshaped (commit 133b58f) still loads and resumes: to float32
rounding since the ConvLSTM's backward pass is written out (before that, bit for bit)."""

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from toy_data import GAUGE

from xcalab.config import apply_overrides, get_preset
from xcalab.data.dataset import dataset_for
from xcalab.inference import predict
from xcalab.models.detector import load_detector
from xcalab.train.checkpoint import BEST, CHECKPOINT
from xcalab.train.loop import train

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "run-133b58f"


def _maker():
    spec = importlib.util.spec_from_file_location("make_run_133b58f", FIXTURE / "make.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _config(make, epochs):
    return apply_overrides(get_preset("smoke"), {**make.OVERRIDES, "train": {**make.OVERRIDES["train"], "epochs": epochs}})


def test_an_old_run_resumes_to_the_weights_two_fresh_epochs_give(tmp_path, one_thread_and_a_private_feature_cache):
    make = _maker()
    ann = make.feature_set(tmp_path)
    old = tmp_path / "old"
    shutil.copytree(FIXTURE, old)
    resumed = train(_config(make, 2), tmp_path, ann, old, resume=True, progress=False)
    fresh = train(_config(make, 2), tmp_path, ann, tmp_path / "fresh", progress=False)

    assert [r["epoch"] for r in resumed.history] == [0, 1]
    a = torch.load(old / CHECKPOINT, weights_only=True)
    b = torch.load(tmp_path / "fresh" / CHECKPOINT, weights_only=True)
    for part in ("model", "ema"):
        assert a[part].keys() == b[part].keys()
        # The fixture's first epoch ran the ConvLSTM's backward through autograd, the fresh run by hand.
        compared = [k for k in a[part] if not k.endswith(GAUGE)]
        assert len(compared) > 0.9 * len(a[part])
        worst = max((float((a[part][k].double() - b[part][k].double()).abs().max()), k) for k in compared)
        assert worst[0] <= 5e-5, (part, worst)
    assert resumed.history[1]["loss"] == pytest.approx(fresh.history[1]["loss"], rel=1e-5)


def test_old_best_weights_load_and_predict(tmp_path, one_thread_and_a_private_feature_cache):
    make = _maker()
    ann = make.feature_set(tmp_path)
    model, cfg = load_detector(FIXTURE / BEST)
    assert cfg.features.map_size == 16 and cfg.model.channels == 8
    predictions = predict(model, dataset_for(cfg, tmp_path, ann, "validation"), cfg)
    assert len(predictions) == 1 and np.isfinite(predictions[0].scores.numpy()).all()
