"""XCA-Synth benchmark builds: byte-identical across workers, resumable after a kill, readable back; DICOM."""

from __future__ import annotations

import filecmp
from pathlib import Path

import numpy as np
import pytest

from xcalab.config import get_preset
from xcalab.data.annotations import read_annotations
from xcalab.data.io import read_dicom, write_dicom
from xcalab.data.synth import build_benchmark, load_benchmark, read_sequence_npz, simulate_sequence
from xcalab.data.synth.benchmark import main, write_sequence_npz
from xcalab.errors import XcalabInputError


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """The smoke preset built uninterrupted with one worker (the reference build)."""
    cfg = get_preset("smoke")
    root = build_benchmark(cfg, tmp_path_factory.mktemp("full"), workers=1, progress=False)
    return cfg, root


def test_a_build_has_the_preset_sizes_and_reads_back(smoke):
    cfg, root = smoke
    bench = load_benchmark(root)
    assert len(bench) == cfg.synth.n_sequences
    assert [len(bench.video_ids(s)) for s in ("train", "validation", "test")] == list(cfg.synth.split)
    trees = {bench.load(v).meta["params"]["anatomy"]["tree"] for v in bench.video_ids("train")}
    assert trees == {"left", "right"}  # balanced by construction
    seq = bench.load("synth-0003")
    n = seq.n_frames
    assert cfg.synth.frames[0] <= n <= cfg.synth.frames[1] and seq.frames.shape[1:] == (64, 64)
    assert seq.truth.vessel_maps.shape == (n, 64, 64) and seq.truth.phases.shape == (n,)
    ann = read_annotations(root / "annotations.json")["synth-0003"]
    assert tuple(ann.keyframes) == seq.truth.keyframes and ann.fps == seq.fps
    assert ann.duration == pytest.approx(n / seq.fps)
    # The stored cine is the simulator's cine (frames exactly; vessel maps to 1/255).
    again = simulate_sequence((cfg.seed, 3), image_size=64, fps=seq.fps, tree=seq.meta["params"]["anatomy"]["tree"],
                              frames_range=cfg.synth.frames)
    assert np.array_equal(again.frames, seq.frames)
    assert np.abs(again.truth.vessel_maps - seq.truth.vessel_maps).max() <= 0.5 / 255 + 1e-6


def test_killed_then_resumed_build_equals_an_uninterrupted_one_even_with_two_workers(smoke, tmp_path):
    cfg, reference = smoke
    # "Kill" after 3 cines: no annotations yet, and a stale temporary file as a SIGKILL would leave.
    root = build_benchmark(cfg, tmp_path / "resumed", workers=1, progress=False, limit=3)
    assert len(list((root / "sequences").glob("*.npz"))) == 3 and not (root / "annotations.json").exists()
    (root / "sequences" / ".synth-0003.npz.x1y2.tmp.npz").write_bytes(b"half a file")
    with pytest.raises(XcalabInputError, match="unfinished"):
        load_benchmark(root)
    build_benchmark(cfg, root, workers=2, progress=False)  # resume in two processes
    assert _files(root) == _files(reference)


def test_two_workers_from_scratch_give_the_same_bytes(smoke, tmp_path):
    cfg, reference = smoke
    root = build_benchmark(cfg, tmp_path / "two", workers=2, progress=False)
    cmp = filecmp.dircmp(root / "sequences", reference / "sequences")
    assert not cmp.diff_files and not cmp.left_only and not cmp.right_only
    assert _files(root) == _files(reference)


def test_command_line_finishes_a_complete_build_without_work_and_refuses_another_build(smoke, capsys):
    cfg, root = smoke
    before = _files(root)
    assert main(["--preset", "smoke", "--out", str(root), "--quiet"]) == 0
    assert "8 cines" in capsys.readouterr().out and _files(root) == before
    assert main(["--preset", "smoke", "--seed", "1", "--out", str(root), "--quiet"]) == 2
    assert "different XCA-Synth build" in capsys.readouterr().err


def test_bad_files_give_clear_errors(tmp_path):
    bad = tmp_path / "x.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(XcalabInputError, match="not a readable XCA-Synth"):
        read_sequence_npz(bad)
    with pytest.raises(XcalabInputError, match="no build.json"):
        load_benchmark(tmp_path)


def test_npz_round_trip_keeps_12_bit_frames(tmp_path):
    from xcalab.data.synth import Knobs

    seq = simulate_sequence(1, image_size=32, n_frames=16, knobs=Knobs(bits=12))
    back = read_sequence_npz(write_sequence_npz(seq, tmp_path / "s.npz"))
    assert np.array_equal(back.frames, seq.frames) and back.meta["bits_stored"] == 12
    assert len(np.unique(seq.frames)) > 256  # more than 8 bits of grey levels


def test_synthetic_cine_survives_dicom_xa_round_trip(tmp_path):
    seq = simulate_sequence(12, image_size=48, n_frames=24, fps=15.0, tree="right")
    back = read_dicom(write_dicom(seq, tmp_path / "cine.dcm", bits_stored=8))
    assert back.frames.shape == seq.frames.shape
    assert np.abs(back.frames - seq.frames).max() <= 0.5 / 255  # unchanged up to 8-bit quantisation
    assert back.fps == pytest.approx(seq.fps, rel=1e-3)
    assert back.meta["rwave_frames"] == seq.meta["rwave_frames"]


def test_dicom_build_writes_readable_cines(tmp_path):
    cfg = get_preset("smoke")
    root = build_benchmark(cfg, tmp_path / "d", workers=1, progress=False, dicom=True, limit=1)
    dcm = root / "dicom" / "synth-0000.dcm"
    assert np.array_equal(read_dicom(dcm).frames, read_sequence_npz(root / "sequences" / "synth-0000.npz").frames)
