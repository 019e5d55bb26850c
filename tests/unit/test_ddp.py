"""Distributed training: two gloo processes (torchrun) learn the same weights as one process, same global batch."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from toy_data import GAUGE

from xcalab.config import apply_overrides, get_preset
from xcalab.data.annotations import Action, VideoAnnotation, write_annotations
from xcalab.train.loop import train

FPS, STEPS = 15.0, 16
#: The smoke model without PCon (its random patch comes from each process's own stream, so a split batch
#: draws other patches than the whole batch); 2 epochs: the first with the contrastive loss, the second without.
OVERRIDES = {"model": {"patchwise": False}, "train": {"epochs": 2, "max_seq_len": STEPS, "select_after": 1}, "device": "cpu"}

#: Tolerance for every other entry (observed: 2e-5, float32 rounding of sums taken in another order, which
#: Adam's normalised steps carry into the weights; a wrong gradient average differs by ~lr = 1e-3).
ATOL = 5e-5


def _feature_set(folder, n_train=4):
    """Random features; filling [9.7, 10.5] and disappearing [10.3, 11.5] grid units, shifted by 0-2 steps.

    ICon draws its samples from the half of each segment next to the apex; here that half holds one
    step only (step 10 + shift for both), so the draw has a single outcome in any process.
    """
    rng = np.random.default_rng(0)
    videos = []
    for i in range(n_train + 1):
        shift = i % 3
        np.save(folder / f"v{i}.npy", rng.random((STEPS, 4096), dtype=np.float32))
        seconds = [(4 * (g + shift) + 2) / FPS for g in (9.7, 10.5, 10.3, 11.5)]
        actions = [Action("filling", 0, tuple(seconds[:2])), Action("disappearing", 1, tuple(seconds[2:]))]
        subset = "train" if i < n_train else "validation"
        videos.append(VideoAnnotation(f"v{i}", subset, FPS, 4 * STEPS / FPS, actions))
    return write_annotations(folder / "annotations.json", videos)


@pytest.mark.slow
def test_two_gloo_processes_train_like_one(tmp_path):
    ann = _feature_set(tmp_path)
    overrides = tmp_path / "overrides.json"
    overrides.write_text(json.dumps(OVERRIDES))
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "xcalab.cli", "train", "--preset", "smoke", "--config", str(overrides),
        "--features", str(tmp_path), "--annotations", str(ann), "--out", str(tmp_path / "two"), "--no-progress",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "trained 2 epochs on 2 process(es)" in done.stdout
    # DDP leaves the ICon projection alone instead of searching the graph for unused parameters every step
    assert "unused parameters" not in done.stderr and "find_unused_parameters" not in done.stderr, done.stderr[-2000:]

    one = train(apply_overrides(get_preset("smoke"), OVERRIDES), tmp_path, ann, tmp_path / "one", progress=False)
    a = torch.load(tmp_path / "one" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "two" / "checkpoint.pt", weights_only=True)
    for part in ("model", "ema"):
        compared = [k for k in a[part] if not k.endswith(GAUGE)]
        assert len(compared) > 0.9 * len(a[part])
        worst = max((float((a[part][k].double() - b[part][k].double()).abs().max()), k) for k in compared)
        assert worst[0] <= ATOL, (part, worst)
    for h1, h2 in zip(a["history"], b["history"]):
        assert h2["loss"] == pytest.approx(h1["loss"], rel=1e-5) and h2["cls"] == pytest.approx(h1["cls"], rel=1e-5)
    assert a["history"][0]["con"] == pytest.approx(b["history"][0]["con"], rel=1e-5)  # ICon saw the global batch
    assert b["best"]["epoch"] == one.best_epoch == 1

    # Rank 0 alone wrote the files; the checkpoint holds both processes' RNG states.
    assert len(b["rng"]) == 2 and not torch.equal(b["rng"][0]["torch"], b["rng"][1]["torch"])
    kinds = [json.loads(line)["kind"] for line in (tmp_path / "two" / "log.jsonl").read_text().splitlines()]
    assert kinds == ["step", "step", "epoch"] * 2
    assert json.loads(b["meta"])["world_size"] == 2


def test_ddp_leaves_alone_only_the_icon_projection():
    from xcalab.models.detector import KeyframeDetector
    from xcalab.train.distributed import Distributed, occasional_parameters

    cfg = get_preset("smoke")
    detector = KeyframeDetector(cfg.model)
    names = list(occasional_parameters(detector))
    assert names and all(n.startswith("imagewise.projection.") for n in names)
    assert len(names) == 4  # two Linear layers: weight and bias each
    plain = KeyframeDetector(cfg.model.ablation(imagewise=False))
    assert occasional_parameters(plain) == {}
    # alone, averaging is a no-op that keeps a missing gradient missing
    p = torch.nn.Parameter(torch.ones(3))
    Distributed().average_gradients([p])
    assert p.grad is None
