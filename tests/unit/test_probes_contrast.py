"""contrast_embeddings: one (foreground, background) embedding pair per step of each true passage."""

import importlib.util
from pathlib import Path

import torch

from xcalab.config import apply_overrides, get_preset
from xcalab.data.annotations import read_annotations
from xcalab.data.dataset import dataset_for
from xcalab.models.contrastive import foreground_background
from xcalab.models.detector import build_detector
from xcalab.probes.contrast import contrast_embeddings

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "run-133b58f" / "make.py"


def _setup(tmp_path):
    spec = importlib.util.spec_from_file_location("make_run_133b58f", FIXTURE)
    make = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make)
    ann = make.feature_set(tmp_path)  # 4 train cines, 1 validation cine, 20 steps each
    cfg = apply_overrides(get_preset("smoke"), make.OVERRIDES)
    torch.manual_seed(0)
    return build_detector(cfg).eval(), cfg, ann


def test_one_row_per_step_of_each_passage_and_the_first_row_by_hand(tmp_path):
    model, cfg, ann = _setup(tmp_path)
    dataset = dataset_for(cfg, tmp_path, read_annotations(ann), "train")
    fg, bg = contrast_embeddings(model, dataset)

    inside = []
    for i in range(len(dataset)):
        seg = dataset.video(i).segments
        inside.append([t for t in range(20) if seg.min().item() <= t <= seg.max().item()])
    assert fg.shape == bg.shape == (sum(map(len, inside)), cfg.model.contrast_dim)

    item = dataset.video(0)  # the first row: the first cine's first step inside its passage, by hand
    with torch.no_grad():
        lt = model.long_term(item.features[None], torch.ones(1, 20, dtype=torch.bool))
        fore, back = foreground_background(lt.residual[0], lt.attention[0])
        t = inside[0][0]
        torch.testing.assert_close(fg[0], model.imagewise.projection(fore[:, t : t + 1].T)[0])
        torch.testing.assert_close(bg[0], model.imagewise.projection(back[:, t : t + 1].T)[0])


def test_a_subset_gives_the_rows_of_its_cines_whatever_else_is_in_the_set(tmp_path):
    model, cfg, ann = _setup(tmp_path)
    videos = read_annotations(ann)
    train = dataset_for(cfg, tmp_path, videos, "train")
    one = dataset_for(cfg, tmp_path, {"v0": videos["v0"]}, "train")
    fg_all, _ = contrast_embeddings(model, train)
    fg_one, _ = contrast_embeddings(model, one)
    torch.testing.assert_close(fg_all[: len(fg_one)], fg_one)
