"""Training SVS-Net: it learns on the smoke config, it resumes exactly, and extractors save and load safely."""

import json
import shutil

import numpy as np
import pytest
import torch

from xcalab.errors import XcalabInputError
from xcalab.features.svsnet import SVSNet
from xcalab.features.train import (
    SMOKE,
    ExtractorTrainConfig,
    WindowPool,
    check_scores,
    dice_bce_loss,
    front_weights,
    pixel_auc,
    randomise_domain,
    segmentation_scores,
    synth_sequences,
    train_extractor,
    validation_scores,
    validation_windows,
)
from xcalab.features.weights import DEFAULT_WEIGHTS, Extractor, load_extractor, save_extractor


@pytest.fixture(scope="module")
def smoke_cines():
    return synth_sequences("train", SMOKE), synth_sequences("validation", SMOKE)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, smoke_cines):
    """The smoke training run, with its checkpoints: (run folder, result). Trained once for the module."""
    train, val = smoke_cines
    run_dir = tmp_path_factory.mktemp("extractor-run")
    return run_dir, train_extractor(SMOKE, run_dir, train, val, progress=False)


def test_training_beats_an_untrained_network(smoke_cines, smoke_run):
    _, val = smoke_cines
    _, result = smoke_run
    torch.manual_seed(SMOKE.seed)
    untrained = validation_scores(SVSNet(SMOKE.net), *validation_windows(val, SMOKE.val_windows))
    trained = result.validation[-1]
    losses = np.array(result.losses)
    assert losses[-10:].mean() < losses[:10].mean()  # the training loss falls
    assert trained["loss"] < untrained["loss"] - 0.05
    assert trained["dice"] > untrained["dice"] + 0.1  # the Dice rises (an untrained network's is ~0)
    assert trained["soft_dice"] > untrained["soft_dice"] + 0.05
    assert trained["auc"] > untrained["auc"] + 0.1


def test_killed_training_resumes_to_the_same_weights(tmp_path, smoke_cines):
    train, val = smoke_cines
    cfg = ExtractorTrainConfig(**{**SMOKE.to_dict(), "steps": 6, "checkpoint_every": 2, "frames": (24, 32),
                         "fps_choices": (15.0,), "trees": ("left", "right")})
    whole = train_extractor(cfg, tmp_path / "whole", train, val, progress=False)

    class Killed(Exception):
        pass

    def kill_at_5(step, loss):
        if step == 5:  # after the checkpoint of step 4: step 5 is lost and must be redone
            raise Killed

    with pytest.raises(Killed):
        train_extractor(cfg, tmp_path / "resumed", train, val, progress=False, on_step=kill_at_5)
    resumed = train_extractor(cfg, tmp_path / "resumed", train, val, progress=False)
    a, b = whole.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.losses == pytest.approx(whole.losses, abs=0)
    assert resumed.validation == whole.validation and whole.validation[-1]["step"] == 6
    # a checkpoint of another config is refused, not silently continued
    other = ExtractorTrainConfig(**{**cfg.to_dict(), "lr": 1e-4})
    with pytest.raises(XcalabInputError, match="different training config"):
        train_extractor(other, tmp_path / "whole", train, val, progress=False)


def test_a_finished_run_is_exported_again_without_simulating(smoke_run, monkeypatch):
    import xcalab.features.train as train_module
    from xcalab.features.train import training_history

    run_dir, first = smoke_run
    assert SMOKE.steps % 10 == 0 and SMOKE.steps > 10

    def no_simulation(*args, **kwargs):
        raise AssertionError("a finished run must not simulate cines again")

    monkeypatch.setattr(train_module, "synth_sequences", no_simulation)
    again = train_extractor(SMOKE, run_dir, progress=False)
    a, b = first.model.state_dict(), again.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert again.validation == first.validation and 0 < again.seconds <= first.seconds  # time up to the last checkpoint
    history = training_history(again, every=10)
    # the loss curve: block means of 10 steps, by hand from the per-step losses
    assert history["loss_steps"] == list(range(10, SMOKE.steps + 1, 10))
    blocks = [sum(first.losses[i:i + 10]) / 10 for i in range(0, SMOKE.steps, 10)]
    assert history["loss"] == pytest.approx(blocks, abs=1e-5)
    assert history["validation"][-1]["step"] == SMOKE.steps


def test_windows_oversample_the_front_and_washout(smoke_cines):
    seq = smoke_cines[0][0]
    w = front_weights(seq, 4.0)
    phases = seq.truth.phases[2 : seq.n_frames - 1]
    assert np.all(w[np.isin(phases, (1, 3))] == 4.0) and np.all(w[~np.isin(phases, (1, 3))] == 1.0)
    pool = WindowPool(smoke_cines[0], front_weight=4.0)
    x1, y1 = pool.sample(np.random.default_rng([0, 7]), 3, 32)
    x2, y2 = pool.sample(np.random.default_rng([0, 7]), 3, 32)
    assert x1.shape == (3, 4, 32, 32) and y1.shape == (3, 32, 32)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)  # same seed, same batch


def test_domain_randomisation_stays_in_range():
    frames = np.random.default_rng(0).random((4, 24, 24)).astype(np.float32)
    for seed in range(5):
        out = randomise_domain(frames, np.random.default_rng(seed))
        assert out.shape == frames.shape and out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1


def test_loss_and_scores():
    target = torch.zeros(2, 8, 8)
    target[:, 3:5] = 1.0
    good, bad = (target * 20 - 10), -(target * 20 - 10)
    assert dice_bce_loss(good, target) < 0.05 < dice_bce_loss(bad, target)
    assert torch.isfinite(dice_bce_loss(torch.full((1, 4, 4), -5.0), torch.zeros(1, 4, 4)))
    s = segmentation_scores(target.numpy(), target.numpy())
    assert s["dice"] == 1.0 and s["auc"] == 1.0
    assert pixel_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == 0.75


def test_save_and_load_extractor(tmp_path):
    torch.manual_seed(0)
    model = SVSNet(SMOKE.net).eval()
    path = save_extractor(model, tmp_path / "x.pt", work_size=64, meta={"note": "test"})
    extractor = load_extractor(path)
    assert extractor.work_size == 64 and extractor.meta["note"] == "test"
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), extractor.model.state_dict().values()))
    assert extractor.version == Extractor(model, 64).version or len(extractor.version) == 16
    # a changed file no longer matches its recorded hash
    path.write_bytes(path.read_bytes()[:-3] + b"xyz")
    with pytest.raises(XcalabInputError, match="do not match the SHA-256"):
        load_extractor(path)
    with pytest.raises(XcalabInputError, match="no such weights file"):
        load_extractor(tmp_path / "none.pt")
    shutil.copy(tmp_path / "x.json", tmp_path / "y.json")
    (tmp_path / "y.pt").write_bytes(b"junk")
    meta = json.loads((tmp_path / "y.json").read_text())
    meta.pop("sha256")
    (tmp_path / "y.json").write_text(json.dumps(meta))
    with pytest.raises(XcalabInputError, match="cannot load the weights"):
        load_extractor(tmp_path / "y.pt")


def test_weights_never_run_code(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.manual_seed(0)
    save_extractor(SVSNet(SMOKE.net), tmp_path / "evil.pt", work_size=64)
    torch.save({"x": Payload()}, tmp_path / "evil.pt")
    meta = json.loads((tmp_path / "evil.json").read_text())
    meta.pop("sha256")
    (tmp_path / "evil.json").write_text(json.dumps(meta))
    with pytest.raises(XcalabInputError, match="cannot load the weights"):
        load_extractor(tmp_path / "evil.pt")


def test_shipped_weights_reproduce_their_recorded_score():
    assert DEFAULT_WEIGHTS.is_file(), f"{DEFAULT_WEIGHTS} is missing: see data/weights/README.md"
    extractor = load_extractor()  # torch.load(weights_only=True) and the SHA-256 of the JSON
    assert extractor.meta["bytes"] < 5e6 and extractor.work_size == 256
    recorded = extractor.meta["check"]
    scores = check_scores(extractor)
    if scores["fingerprint"] != recorded["fingerprint"]:
        pytest.fail(
            "XCA-Synth renders the check set differently from when the shipped weights were scored "
            f"(fingerprint {scores['fingerprint']} now, {recorded['fingerprint']} recorded; Dice {scores['dice']:.3f} "
            f"now, {recorded['dice']:.3f} recorded). Retrain with `{extractor.meta['command']}`, or only re-record "
            "the scores with `python -m xcalab.features.train --rescore data/weights/svsnet_small.pt`."
        )
    for name in ("dice", "soft_dice", "auc", "loss"):
        assert scores[name] == pytest.approx(recorded[name], abs=1e-3), name
