"""Example cines: the shared real cine when present, else a synthetic DICOM that reads back like a real one."""

import numpy as np

import xcalab.data.samples as samples
from xcalab.data.io import read_sequence


def test_fallback_writes_a_synthetic_dicom_with_exact_keyframes(tmp_path, monkeypatch):
    monkeypatch.setattr(samples, "real_cine_path", lambda name="": None)
    example = samples.example_cine(workdir=tmp_path, seed=3, image_size=64)
    assert example.path.parent == tmp_path and example.path.suffix == ".dcm"
    seq = read_sequence(example.path)
    assert seq.n_frames == 96 and seq.fps == 30.0 and seq.frames.shape[1:] == (64, 64)
    start, apex, end = example.keyframes
    assert 0 <= start <= apex <= end < 96
    # the file holds the simulator's cine, up to 8-bit quantisation
    from xcalab.data.synth.simulator import simulate_sequence

    direct = simulate_sequence(3, image_size=64, n_frames=96, fps=30.0, tree="right")
    assert direct.truth.keyframes == example.keyframes
    assert np.abs(direct.frames - seq.frames).max() <= 0.5 / 255 + 1e-6
    again = samples.example_cine(workdir=tmp_path / "again", seed=3, image_size=64)
    assert again.keyframes == example.keyframes
    assert np.array_equal(read_sequence(again.path).frames, seq.frames)


def test_explicit_path_wins(tmp_path):
    example = samples.example_cine(tmp_path / "mine.dcm")
    assert example.path == tmp_path / "mine.dcm" and example.keyframes is None


def test_real_cine_when_shared_is_present():
    real = samples.real_cine_path()
    example = samples.example_cine()
    if real is None:
        assert example.path.suffix == ".dcm" and "XCA-Synth" in example.description
    else:
        assert example.path == real and example.keyframes == (18, 40, 95)


def test_example_archive_one_file_per_scenario_and_size(tmp_path):
    from xcalab.data.io import read_sequence
    from xcalab.data.samples import example_archive

    small = example_archive(tmp_path, image_size=32, scenarios=("ok", "no_contrast"))
    assert [e.path.name for e in small] == ["xcasynth-ok-seed0-32px.dcm", "xcasynth-no-contrast-seed0-32px.dcm"]
    assert small[1].keyframes is None and len(small[0].keyframes) == 3
    assert read_sequence(small[0].path).frames.shape[1:] == (32, 32)
    larger = example_archive(tmp_path, image_size=48, scenarios=("ok",))  # another size: another file
    assert read_sequence(larger[0].path).frames.shape[1:] == (48, 48)
