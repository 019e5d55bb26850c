"""Training figures: curves carry the logged numbers, timelines carry the segments and keyframes."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from xcalab.data.annotations import VideoAnnotation
from xcalab.metrics import Detection
from xcalab.postprocess import VideoPrediction
from xcalab.viz import training as vz


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def history(n: int = 6, contrast=(0, 2)) -> list[dict]:
    return [{"epoch": e, "loss": 1.0 / (e + 1), "cls": 0.5 / (e + 1), "reg": 0.3 / (e + 1),
             "con": 0.2 if e in contrast else None, "lr": 1e-3 * min(1, (e + 1) / 2),
             "val_average_map": None if e < 3 else 0.1 * e, "val_ad": None if e < 3 else 10.0 - e,
             "best_epoch": 5} for e in range(n)]


def test_training_history_draws_the_logged_values():
    h = history()
    fig = vz.plot_training_history(h, contrast_epochs=(0, 2, 40), best_epoch=5)
    assert isinstance(fig, Figure)
    ax_loss, ax_val = fig.axes[0], fig.axes[1]
    lines = {line.get_label(): line for line in ax_loss.get_lines()}
    np.testing.assert_allclose(lines["total"].get_ydata(), [r["loss"] for r in h])
    con = lines["contrastive (SNN, eq. 10)"].get_ydata()
    assert np.isfinite(con).sum() == 2  # only the contrastive epochs have a value
    # Two shaded contrastive epochs (epoch 40 lies beyond the history and is not drawn).
    assert len(ax_loss.patches) == 2
    val = ax_val.get_lines()[0].get_ydata()
    np.testing.assert_allclose(val[3:], [30.0, 40.0, 50.0])
    assert np.isnan(val[:3]).all()
    assert any(line.get_label() == "selected epoch 5" for line in ax_val.get_lines())


def test_learning_rate_curve_and_empty_history():
    fig = vz.plot_learning_rate(history())
    np.testing.assert_allclose(fig.axes[0].get_lines()[0].get_ydata(), [r["lr"] for r in history()])
    with pytest.raises(ValueError, match="empty"):
        vz.plot_training_history([])


def prediction(video_id: str, fps: float, found: bool = True) -> VideoPrediction:
    # filling [1.0 s, 2.0 s], disappearing [2.0 s, 4.0 s] -> keyframes at 10, 20, 40 frames at 10 fps
    top1 = (Detection(video_id, 0, 1.0, 2.0, 0.9), Detection(video_id, 1, 2.0, 4.0, 0.8)) if found else ()
    from xcalab.data.annotations import Keyframes

    return VideoPrediction(video_id, torch.zeros(0, 2), torch.zeros(0), torch.zeros(0, dtype=torch.long),
                           ("filling", "disappearing"), top1, Keyframes(10.0, 20.0, 40.0) if found else None,
                           True if found else None, {} if found else {"filling": "no candidate"}, 0, fps)


def test_timeline_records_convert_seconds_to_frames_and_plot():
    fps = 10.0
    truth = {v: VideoAnnotation.from_keyframes(v, (12, 20, 37), fps, 50, subset="test") for v in ("a", "b")}
    preds = [prediction("a", fps), prediction("b", fps, found=False)]
    features = {"a": np.ones((12, 4096), np.float32)}
    records = vz.timeline_records(preds, truth, features, stride=4)
    a, b = records
    assert a["pred_segments"] == [(0, 10.0, 20.0, 0.9), (1, 20.0, 40.0, 0.8)]
    assert a["pred_keyframes"] == (10, 20, 40) and a["true_keyframes"] == (12, 20, 37)
    np.testing.assert_array_equal(a["curve"][0], 4 * np.arange(12) + 2)
    assert b["pred_keyframes"] is None and "curve" not in b and b["missing"] == {"filling": "no candidate"}

    fig = vz.plot_predicted_segments(records)
    assert len(fig.axes) == 2
    assert fig.axes[0].get_title(loc="left") == "a: predicted - true = start -2, apex +0, end +3 frames"
    assert fig.axes[1].get_title(loc="left").startswith("b: no keyframes (filling: no candidate")
    # true keyframes (3 solid) + predicted (3 dashed) in the first row, only the 3 true ones in the second
    assert len(fig.axes[0].get_lines()) == 6 and len(fig.axes[1].get_lines()) == 3
    with pytest.raises(ValueError):
        vz.plot_predicted_segments([])
