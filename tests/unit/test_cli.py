"""The xcalab command: inspect a cine, clear errors, notebook selection."""

import numpy as np

from xcalab.cli import main
from xcalab.data.io import Cine, write_dicom


def test_inspect_a_dicom_cine(tmp_path, capsys):
    frames = np.linspace(0, 1, 3 * 8 * 8, dtype=np.float32).reshape(3, 8, 8)
    path = write_dicom(Cine(frames, fps=15.0, video_id="demo"), tmp_path / "demo.dcm")
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "Cine('demo', 3 frames of 8x8 at 15 fps)" in out and "modality: XA" in out


def test_inspect_bad_input_is_one_clear_line(tmp_path, capsys):
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    assert main(["inspect", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("xcalab: ") and "notes.txt" in err and len(err.strip().splitlines()) == 1


def test_inspect_shortens_long_lists(tmp_path, capsys):
    from PIL import Image

    for i in range(8):
        Image.fromarray(np.full((4, 4), 30 * i, dtype=np.uint8)).save(tmp_path / f"f{i}.png")
    assert main(["inspect", str(tmp_path), "--fps", "10"]) == 0
    assert "... 8 items]" in capsys.readouterr().out


def test_notebooks_unknown_name(capsys):
    assert main(["notebooks", "77_nothing"]) == 2
    assert "no notebook matches" in capsys.readouterr().err


def test_simulate_is_forwarded(tmp_path):
    from xcalab.data.synth import load_benchmark

    out = tmp_path / "build"
    assert main(["simulate", "--preset", "smoke", "--seed", "1", "--out", str(out), "--quiet"]) == 0
    bench = load_benchmark(out)
    assert len(bench.annotations) == 8


def test_features_extract_is_forwarded(tmp_path, capsys):
    from PIL import Image

    frames = tmp_path / "cine"
    frames.mkdir()
    for i in range(9):
        Image.fromarray(np.full((32, 32), 20 * i, dtype=np.uint8)).save(frames / f"f{i}.png")
    out = tmp_path / "feats"
    assert main(["features", "extract", str(frames), "--out", str(out), "--source", "raw", "--fps", "15",
                 "--no-cache", "--no-progress"]) == 0
    assert np.load(out / "cine.npy").shape == (2, 4096)  # 9 frames, window 4, stride 4 -> 2 steps
    assert main(["features"]) == 2 and "train,extract" in capsys.readouterr().err


def test_train_is_forwarded(capsys):
    import pytest

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "usage: xcalab train" in capsys.readouterr().out


def test_ship_detector_refuses_an_unknown_variant_before_any_work(tmp_path, capsys):
    argv = ["ship-detector", "SA", "Spatial", "--preset", "smoke", "--data-dir", str(tmp_path / "data"),
            "--weights-dir", str(tmp_path / "weights")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("xcalab ship-detector: unknown variant 'Spatial'; choose one of: ") and "STA-IPCon" in err
    assert len(err.strip().splitlines()) == 1 and not any(tmp_path.iterdir())  # nothing built, nothing written
