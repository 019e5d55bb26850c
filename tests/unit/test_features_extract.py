"""Feature export: the (T, 4096) contract, the feature-time grid, the cache, the command and bad input."""

import json

import numpy as np
import pytest
import torch

from xcalab.data.annotations import FeatureGrid
from xcalab.data.io import Cine, Truth, write_npy
from xcalab.errors import XcalabInputError
from xcalab.features.extract import (
    FeatureCache,
    export_features,
    extract_features,
    feature_times,
    main,
    pool_to_grid,
    window_centres,
    window_starts,
)
from xcalab.features.svsnet import SIZES, SVSNet
from xcalab.features.weights import Extractor


def _cine(n: int = 30, size: int = 32, fps: float = 15.0, video_id: str = "cine") -> Cine:
    """Frame f is uniformly (f + 1) / (n + 1) grey; its "true vessel map" is uniformly f / n."""
    levels = (np.arange(n, dtype=np.float32) + 1) / (n + 1)
    frames = np.broadcast_to(levels[:, None, None], (n, size, size)).copy()
    maps = np.broadcast_to((np.arange(n, dtype=np.float32) / n)[:, None, None], (n, size, size)).copy()
    return Cine(frames, fps, video_id=video_id, truth=Truth((5, 12, 25), vessel_maps=maps))


def _untrained(work_size: int = 32) -> Extractor:
    torch.manual_seed(0)
    return Extractor(SVSNet(SIZES["tiny"]).eval(), work_size)


@pytest.mark.parametrize("stride", [1, 2, 4])
def test_feature_time_contract(stride):
    n, fps = 30, 15.0
    seq = _cine(n, fps=fps)
    grid = FeatureGrid(stride=stride, window=4)
    t_expected = (n - 4) // stride + 1
    assert t_expected == grid.n_steps(n)
    np.testing.assert_array_equal(window_starts(n, stride), stride * np.arange(t_expected))
    np.testing.assert_array_equal(window_centres(n, stride), stride * np.arange(t_expected) + 2)
    np.testing.assert_allclose(feature_times(n, fps, stride), (stride * np.arange(t_expected) + 2) / fps)
    for source in ("raw", "oracle", "frangi"):
        feats = extract_features(seq, source, stride=stride, work_size=None)  # native 32 x 32: fast
        assert feats.shape == (t_expected, 4096) and feats.dtype == np.float32
    # Row k describes the window's centre frame s*k + 2 (the frame SVS-Net segments).
    oracle = extract_features(seq, "oracle", stride=stride)
    np.testing.assert_allclose(oracle[:, 0], (stride * np.arange(t_expected) + 2) / n, rtol=1e-6)
    raw = extract_features(seq, "raw", stride=stride)
    np.testing.assert_allclose(raw[:, 123], 1 - (stride * np.arange(t_expected) + 3) / (n + 1), rtol=1e-6)


def test_learned_features_shape_and_range():
    seq = _cine(22, size=48)
    feats = extract_features(seq, "learned", stride=2, extractor=_untrained(), batch_size=3)
    assert feats.shape == (10, 4096) and feats.min() >= 0 and feats.max() <= 1


def test_pool_is_row_major():
    maps = torch.zeros(1, 128, 128)
    maps[0, :2, 4:6] = 1.0  # top row of the 64 x 64 grid, column 2
    feats = pool_to_grid(maps).numpy()
    assert feats[0].argmax() == 0 * 64 + 2 and feats[0].reshape(64, 64)[0, 2] == 1.0


def test_cache_hits_and_misses(tmp_path):
    seq, extractor = _cine(), _untrained()
    cache = FeatureCache(tmp_path / "cache")
    first = extract_features(seq, "learned", extractor=extractor, cache=cache)
    again = extract_features(seq, "learned", extractor=extractor, cache=cache)
    assert (cache.misses, cache.hits) == (1, 1) and np.array_equal(first, again)
    extract_features(seq, "learned", stride=2, extractor=extractor, cache=cache)  # another grid
    other = _untrained()
    with torch.no_grad():
        other.model.head.bias += 1.0  # other weights, other version
    extract_features(seq, "learned", extractor=other, cache=cache)
    changed = _cine()
    changed.frames[3, 0, 0] += 0.01  # other pixels
    extract_features(changed, "learned", extractor=extractor, cache=cache)
    assert (cache.misses, cache.hits) == (4, 1)


def test_export_and_reload_round_trip(tmp_path):
    a, b = _cine(30, video_id="alpha"), _cine(26, video_id="beta")
    write_npy(a, tmp_path / "in" / "alpha.npy")
    write_npy(b, tmp_path / "in" / "beta.npy")
    out = tmp_path / "features"
    manifest = export_features([tmp_path / "in" / "alpha.npy", tmp_path / "in" / "beta.npy"], out,
                               source="raw", stride=2, cache=None, progress=False)
    assert sorted(p.name for p in out.glob("*.npy")) == ["alpha.npy", "beta.npy"]
    for seq in (a, b):
        saved = np.load(out / f"{seq.video_id}.npy")
        np.testing.assert_allclose(saved, extract_features(seq, "raw", stride=2), rtol=1e-6)
        record = manifest["videos"][seq.video_id]
        assert record["T"] == saved.shape[0] == (seq.n_frames - 4) // 2 + 1
        assert record["first_step_seconds"] == pytest.approx(2 / seq.fps)
    on_disk = json.loads((out / "features.json").read_text())
    assert on_disk["stride"] == 2 and on_disk["window"] == 4 and on_disk["source"] == "raw"
    assert not list(out.glob(".*.tmp*"))  # nothing half-written left behind


def test_cli_extract_from_a_frame_folder(tmp_path, capsys):
    from PIL import Image

    folder = tmp_path / "run7"
    folder.mkdir()
    for i in range(9):
        Image.fromarray(np.full((20, 24), 20 * i, np.uint8)).save(folder / f"f{i}.png")
    code = main([str(folder), "--out", str(tmp_path / "out"), "--fps", "15", "--source", "raw", "--stride", "1",
                 "--no-progress", "--cache", str(tmp_path / "cache")])
    assert code == 0
    feats = np.load(tmp_path / "out" / "run7.npy")
    assert feats.shape == (6, 4096)
    np.testing.assert_allclose(feats[:, 0], 1 - 20 * (np.arange(6) + 2) / 255, rtol=1e-5)
    assert "1 feature files" in capsys.readouterr().out


def test_synth_build_exports_features_next_to_its_annotations(tmp_path):
    from xcalab.config import get_preset
    from xcalab.data.annotations import read_annotations
    from xcalab.data.synth.benchmark import build_benchmark

    cfg = get_preset("smoke", data_dir=tmp_path)
    build = build_benchmark(cfg, tmp_path / "build", progress=False)
    out = tmp_path / "features"
    manifest = export_features([build], out, source="oracle", stride=2, cache=None, progress=False)
    built, exported = read_annotations(build / "annotations.json"), read_annotations(out / "annotations.json")
    assert sorted(exported) == sorted(built) == sorted(manifest["videos"]) == sorted(p.stem for p in out.glob("*.npy"))
    grid = FeatureGrid(stride=2, window=4)
    for vid, ann in exported.items():
        assert ann.keyframes == built[vid].keyframes and ann.subset == built[vid].subset
        feats = np.load(out / f"{vid}.npy")
        n_frames = round(ann.duration * ann.fps)
        assert feats.shape == (grid.n_steps(n_frames), 4096)
        # the apex's feature step, found through the one conversion, holds (nearly) the most vessel
        apex_step = round(grid.seconds_to_grid(ann.actions[0].segment[1], ann.fps))
        assert feats[apex_step].mean() >= 0.5 * feats.mean(axis=1).max()


def test_bad_inputs_name_the_problem(tmp_path, capsys):
    with pytest.raises(XcalabInputError, match="missing.dcm: no such file"):
        export_features([tmp_path / "missing.dcm"], tmp_path / "out", source="raw", progress=False)
    short = Cine(np.zeros((3, 8, 8), np.float32), 15.0, video_id="short")
    with pytest.raises(XcalabInputError, match="short: 3 frames is too short"):
        extract_features(short, "raw")
    no_truth = Cine(np.zeros((8, 8, 8), np.float32), 15.0, video_id="plain")
    with pytest.raises(XcalabInputError, match="plain: oracle features need true vessel maps"):
        extract_features(no_truth, "oracle")
    with pytest.raises(ValueError, match="stride must be one of"):
        extract_features(no_truth, "raw", stride=3)
    with pytest.raises(ValueError, match="source must be one of"):
        extract_features(no_truth, "sobel")
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"not an array")
    assert main([str(bad), "--out", str(tmp_path / "o"), "--fps", "15", "--source", "raw", "--no-cache"]) == 2
    assert "bad.npy" in capsys.readouterr().err
    write_npy(_cine(video_id="twin"), tmp_path / "a" / "twin.npy")
    write_npy(_cine(video_id="twin"), tmp_path / "b" / "twin.npy")
    with pytest.raises(XcalabInputError, match="'twin' appears twice"):
        export_features([tmp_path / "a" / "twin.npy", tmp_path / "b" / "twin.npy"], tmp_path / "o2", source="raw",
                        cache=None, progress=False)


def test_out_dir_of_another_kind_is_refused(tmp_path):
    write_npy(_cine(video_id="v"), tmp_path / "v.npy")
    export_features([tmp_path / "v.npy"], tmp_path / "out", source="raw", cache=None, progress=False)
    with pytest.raises(XcalabInputError, match="holds features of another kind"):
        export_features([tmp_path / "v.npy"], tmp_path / "out", source="raw", stride=2, cache=None, progress=False)
