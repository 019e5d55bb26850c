"""Cines in and out: DICOM XA, folders of frames, .npy, one entry point, atomic writes, clear errors.

Synthetic files are written into ``tmp_path``: by ``write_dicom`` for round trips, and by hand with
pydicom (``_xa_by_hand``) when a test needs what the writer never produces (MONOCHROME1, a CT modality,
no frame rate, a JPEG-compressed cine). The two real XA fixtures are read in place and skipped when the
shared folder is absent (a fresh clone does not have it).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels import get_decoder
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit, JPEGLosslessSV1, generate_uid

from xcalab.data.io import (
    Cine,
    read_dicom,
    read_frame_folder,
    read_npy,
    read_sequence,
    write_dicom,
    write_npy,
)
from xcalab.errors import XcalabInputError

REAL = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "real"
RCA_CINE = REAL / "xa_rca_cine_96f_30fps.dcm"
PHANTOM = REAL / "xa_static_phantom_8f_jpegls.dcm"


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


def _real(path: Path) -> Path:
    """The real fixture, or a skip that says why."""
    if not path.exists():
        pytest.skip(f"real XA fixture {path.name} not found in {REAL} (only present next to the repo)")
    return path


def _cine(n: int = 6, h: int = 9, w: int = 11, fps: float = 15.0, seed: int = 0, **kw) -> Cine:
    """A random cine, frames float32 [n, h, w] in [0, 1] (odd sizes catch padding bugs)."""
    frames = np.random.default_rng(seed).random((n, h, w), dtype=np.float32)
    return Cine(frames, fps, **kw)


@contextlib.contextmanager
def raises_input_error(where: str | Path, *phrases: str) -> Iterator[None]:
    """Expect an XcalabInputError whose message names ``where`` and contains every phrase."""
    with pytest.raises(XcalabInputError) as info:
        yield
    message = str(info.value)
    assert Path(where).name in message, message
    for phrase in phrases:
        assert phrase.lower() in message.lower(), f"{phrase!r} not in {message!r}"


def _xa_by_hand(path: Path, pixels: np.ndarray, photometric: str = "MONOCHROME2", bits: int = 8, **attrs):
    """Write a minimal multi-frame XA file with pydicom alone, independent of ``write_dicom``.

    pixels: uint8 / uint16 [N, H, W] stored values. ``attrs`` set DICOM attributes; None deletes one.
    """
    uid = generate_uid()
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.12.1"
    ds.file_meta.MediaStorageSOPInstanceUID = uid
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.12.1", uid
    ds.Modality, ds.PatientName, ds.PatientID = "XA", "Doe^Jane", "PID-12345"
    ds.FrameTime, ds.FrameIncrementPointer = "100", 0x00181063
    ds.set_pixel_data(pixels, photometric, bits, generate_instance_uid=False)
    for keyword, value in attrs.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    ds.save_as(path, enforce_file_format=True)
    return path


def _jpeg_by_hand(path: Path, pixels: np.ndarray) -> Path:
    """A real JPEG Baseline XA cine: each uint8 frame [H, W] JPEG-encoded by Pillow and encapsulated."""
    _xa_by_hand(path, pixels)
    encoded = []
    for frame in pixels:
        buffer = BytesIO()
        Image.fromarray(frame).save(buffer, "JPEG", quality=95)
        encoded.append(buffer.getvalue())
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PixelData = encapsulate(encoded)
    ds["PixelData"].VR, ds["PixelData"].is_undefined_length = "OB", True
    ds.save_as(path, enforce_file_format=True)
    return path


def _without_decoder_plugins(monkeypatch: pytest.MonkeyPatch, syntax: str) -> None:
    """Make pydicom behave as on a machine where no plugin for ``syntax`` is installed.

    pydicom keeps, per transfer syntax, a decoder with tables of available and unavailable plugins;
    emptying the first makes pydicom itself raise its "all plugins are missing dependencies" error.
    """
    decoder = get_decoder(syntax)
    monkeypatch.setattr(decoder, "_available", {})
    monkeypatch.setattr(decoder, "_unavailable", {"pylibjpeg": ("pylibjpeg", "pylibjpeg-libjpeg")})


def _disk_full(*args, **kwargs):
    """Stand-in for a write that fails (the disk filled up, the process was interrupted, ...)."""
    raise OSError("disk full")


def _ramp(n: int = 4, h: int = 6, w: int = 8) -> np.ndarray:
    """uint8 [n, h, w] stored values covering 0..255."""
    return np.linspace(0, 255, n * h * w).round().astype(np.uint8).reshape(n, h, w)


# --------------------------------------------------------------------------------------------------
# DICOM: round trips through write_dicom
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [8, 12])
def test_dicom_round_trip_reproduces_quantised_frames(tmp_path, bits):
    seq = _cine(meta={"rwave_frames": [0, 4]}, video_id="synth_0007")
    back = read_dicom(write_dicom(seq, tmp_path / "synth_0007.dcm", bits_stored=bits))

    peak = 2**bits - 1
    assert back.frames.shape == seq.frames.shape and back.frames.dtype == np.float32
    np.testing.assert_array_equal(np.rint(back.frames * peak), np.rint(seq.frames * peak))
    assert np.abs(back.frames - seq.frames).max() <= 0.5 / peak + 1e-6
    assert back.fps == seq.fps and back.n_frames == seq.n_frames
    assert back.video_id == "synth_0007"
    assert back.meta["bits_stored"] == bits and back.meta["photometric"] == "MONOCHROME2"
    assert back.meta["rwave_frames"] == [0, 4] and back.meta["rwave_pointer"] == [1, 5]
    assert back.meta["modality"] == "XA" and back.meta["fps_source"] == "FrameTime"


@pytest.mark.parametrize("fps", [15.0, 30.0, 7.5, 29.97, 1000 / 33, 12.5, 60.0])
def test_dicom_round_trip_keeps_fps_exactly(tmp_path, fps):
    # FrameTime = 1000 / fps is a 16-character decimal; the reader must still give back fps itself.
    back = read_dicom(write_dicom(_cine(fps=fps), tmp_path / "c.dcm"))
    assert back.fps == fps


def test_same_sequence_gives_identical_bytes(tmp_path):
    seq = _cine(video_id="synth_0001")
    first = write_dicom(seq, tmp_path / "a.dcm").read_bytes()
    assert write_dicom(seq, tmp_path / "b.dcm").read_bytes() == first
    # A different cine under the same name is a different instance.
    other = write_dicom(_cine(seed=1, video_id="synth_0001"), tmp_path / "c.dcm")
    assert pydicom.dcmread(other).SOPInstanceUID != pydicom.dcmread(tmp_path / "a.dcm").SOPInstanceUID


def test_written_file_is_a_synthetic_xa_cine(tmp_path):
    ds = pydicom.dcmread(write_dicom(_cine(fps=15.0, video_id="v/1^x"), tmp_path / "v.dcm"))
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.12.1" and ds.Modality == "XA"
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert str(ds.PatientName) == "XCA-Synth^v_1_x"  # separators in the id cannot break the name
    assert int(ds.NumberOfFrames) == 6 and int(ds.CineRate) == 15
    assert float(ds.FrameTime) == pytest.approx(1000 / 15)


def test_write_dicom_refuses_bad_input_and_writes_nothing(tmp_path):
    target = tmp_path / "bad.dcm"
    with raises_input_error(target, "bits_stored"):
        write_dicom(_cine(), target, bits_stored=20)
    too_bright = Cine(np.full((3, 4, 4), 1.5, np.float32), 10.0)
    with raises_input_error(target, "[0, 1]"):
        write_dicom(too_bright, target)
    with raises_input_error(target, "rwave_frames"):
        write_dicom(_cine(meta={"rwave_frames": [99]}), target)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------------
# DICOM: files written by hand (what the writer never produces)
# --------------------------------------------------------------------------------------------------


def test_monochrome1_is_inverted_to_monochrome2(tmp_path):
    stored = _ramp()
    path = _xa_by_hand(tmp_path / "mono1.dcm", stored, photometric="MONOCHROME1")
    seq = read_dicom(path)
    np.testing.assert_allclose(seq.frames, 1.0 - stored / 255.0, atol=1e-6)
    assert seq.meta["photometric"] == "MONOCHROME1"  # the original, for the record


def test_twelve_bits_in_sixteen_scale_by_bits_stored(tmp_path):
    stored = (np.arange(4 * 5 * 6).reshape(4, 5, 6) * 34).astype(np.uint16)  # 0..4046, above 8 bits
    seq = read_dicom(_xa_by_hand(tmp_path / "b12.dcm", stored, bits=12))
    np.testing.assert_allclose(seq.frames, stored / 4095.0, atol=1e-6)


def test_patient_identifiers_are_not_copied(tmp_path):
    meta = read_dicom(_xa_by_hand(tmp_path / "p.dcm", _ramp())).meta
    assert "Doe" not in repr(meta) and "PID-12345" not in repr(meta)


@pytest.mark.parametrize(
    ("attrs", "fps_arg", "expected", "source"),
    [
        ({"FrameTime": "40", "CineRate": 10}, None, 25.0, "FrameTime"),
        ({"FrameTime": None, "FrameTimeVector": ["0", "50", "50", "50"], "CineRate": 10}, None, 20.0,
         "FrameTimeVector"),
        ({"FrameTime": None, "CineRate": 12, "RecommendedDisplayFrameRate": 30}, None, 12.0, "CineRate"),
        ({"FrameTime": None, "RecommendedDisplayFrameRate": 30}, None, 30.0, "RecommendedDisplayFrameRate"),
        ({"FrameTime": "40"}, 7.0, 7.0, "argument"),
    ],
)
def test_fps_sources_in_priority_order(tmp_path, attrs, fps_arg, expected, source):
    seq = read_dicom(_xa_by_hand(tmp_path / "t.dcm", _ramp(), **attrs), fps=fps_arg)
    assert seq.fps == pytest.approx(expected) and seq.meta["fps_source"] == source


def test_rf_modality_is_accepted(tmp_path):
    assert read_dicom(_xa_by_hand(tmp_path / "rf.dcm", _ramp(), Modality="RF")).meta["modality"] == "RF"


@pytest.mark.parametrize(
    ("make", "phrases"),
    [
        (lambda p: p.write_text("just some text, not an image\n" * 10), ["not a DICOM file"]),
        (lambda p: _xa_by_hand(p, _ramp(), Modality="CT"), ["not an X-ray angiography", "'CT'"]),
        (lambda p: _xa_by_hand(p, _ramp(n=1)), ["single image", "NumberOfFrames is 1"]),
        (lambda p: _xa_by_hand(p, _ramp(), PixelData=None), ["no pixel data"]),
        (lambda p: _xa_by_hand(p, _ramp(), FrameTime=None), ["no frame rate", "fps="]),
        (lambda p: _xa_by_hand(p, _ramp(), NumberOfFrames=9), ["cannot decode", "Explicit VR Little Endian"]),
    ],
    ids=["not-dicom", "not-xa", "one-frame", "no-pixel-data", "no-frame-rate", "truncated-pixels"],
)
def test_bad_dicom_raises_one_clear_error(tmp_path, make, phrases):
    path = tmp_path / "bad_input.dcm"
    make(path)
    with raises_input_error(path, *phrases):
        read_dicom(path)


def test_jpeg_compressed_cine_decodes(tmp_path):
    stored = np.repeat(np.linspace(20, 230, 16, dtype=np.uint8)[None, None, :], 16, axis=1)
    stored = np.stack([stored[0], stored[0][::-1]])  # [2, 16, 16]: smooth ramps JPEG keeps well
    seq = read_dicom(_jpeg_by_hand(tmp_path / "jpeg.dcm", stored))
    assert seq.meta["transfer_syntax"] == JPEGBaseline8Bit
    assert np.abs(seq.frames - stored / 255.0).max() < 0.05


def _synthetic_jpeg(tmp_path: Path) -> Path:
    return _jpeg_by_hand(tmp_path / "jpeg.dcm", np.full((2, 16, 16), 128, np.uint8))


@pytest.mark.parametrize(
    ("make", "syntax"),
    [(_synthetic_jpeg, JPEGBaseline8Bit), (lambda _: _real(PHANTOM), JPEGLosslessSV1)],
    ids=["synthetic-jpeg-baseline", "real-jpeg-lossless"],
)
def test_missing_decoder_plugin_names_syntax_and_package(tmp_path, monkeypatch, make, syntax):
    path = make(tmp_path)
    _without_decoder_plugins(monkeypatch, syntax)
    with pytest.raises(RuntimeError, match="missing dependencies"):  # pydicom's own error, simulated faithfully
        _ = pydicom.dcmread(path).pixel_array
    with raises_input_error(path, syntax.name, "no decoder plugin", "pylibjpeg-libjpeg"):
        read_dicom(path)


# --------------------------------------------------------------------------------------------------
# DICOM: the real fixtures, read in place
# --------------------------------------------------------------------------------------------------


@pytest.mark.real_data
def test_real_rca_cine():
    seq = read_dicom(_real(RCA_CINE))
    assert seq.frames.shape == (96, 512, 512) and seq.frames.dtype == np.float32
    assert seq.fps == pytest.approx(1000 / 33) and seq.meta["fps_source"] == "FrameTime"
    assert 0.0 <= seq.frames.min() and seq.frames.max() <= 1.0
    assert seq.frames.std() > 0.1 and seq.frames.max() - seq.frames.min() > 0.5
    assert seq.meta["rwave_pointer"] == [20, 53, 77] and seq.meta["rwave_frames"] == [19, 52, 76]
    assert seq.meta["photometric"] == "MONOCHROME2" and seq.meta["transfer_syntax"] == "1.2.840.10008.1.2.4.50"
    assert "Rubo" not in repr(seq.meta) and "556342B" not in repr(seq.meta)


@pytest.mark.real_data
def test_real_jpeg_lossless_phantom():
    seq = read_sequence(_real(PHANTOM))
    assert seq.frames.shape == (8, 512, 512)
    assert seq.fps == pytest.approx(1000 / 66.6667) and seq.fps == pytest.approx(15.0, abs=1e-4)
    assert 0.0 <= seq.frames.min() and seq.frames.max() <= 1.0 and seq.frames.std() > 0.05
    assert seq.meta["transfer_syntax"] == "1.2.840.10008.1.2.4.70" and seq.meta["rwave_frames"] == []


# --------------------------------------------------------------------------------------------------
# Atomic writes: a failed write leaves nothing behind
# --------------------------------------------------------------------------------------------------


def test_failed_dicom_write_leaves_no_file(tmp_path, monkeypatch):
    def half_write(filename, dataset, **kwargs):
        Path(filename).write_bytes(b"\0" * 128 + b"DICM half")
        raise OSError("disk full")

    monkeypatch.setattr(pydicom, "dcmwrite", half_write)
    with pytest.raises(OSError, match="disk full"):
        write_dicom(_cine(), tmp_path / "out.dcm")
    assert list(tmp_path.iterdir()) == []


def test_failed_dicom_write_keeps_the_old_file(tmp_path, monkeypatch):
    target = write_dicom(_cine(), tmp_path / "out.dcm")
    before = target.read_bytes()
    monkeypatch.setattr(pydicom, "dcmwrite", _disk_full)
    with pytest.raises(OSError):
        write_dicom(_cine(seed=3), target)
    assert target.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["out.dcm"]


def test_failed_npy_write_leaves_neither_array_nor_sidecar(tmp_path, monkeypatch):
    # The array is fully written (to its temporary file) before the sidecar fails.
    monkeypatch.setattr(json, "dumps", _disk_full)
    with pytest.raises(OSError):
        write_npy(_cine(), tmp_path / "out.npy")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------------
# Folders of frames
# --------------------------------------------------------------------------------------------------


def _save_frame(path: Path, value: int, size: tuple[int, int] = (8, 8), mode: str = "L") -> None:
    """A constant image file of ``size`` (W, H)."""
    Image.new(mode, size, value).save(path)


def test_frame_folder_natural_order(tmp_path):
    for i in (10, 2, 1, 12, 3, 11):  # created out of order; plain sorting would put 10 before 2
        _save_frame(tmp_path / f"frame{i}.png", 10 * i)
    (tmp_path / "notes.txt").write_text("not a frame")
    seq = read_frame_folder(tmp_path, fps=12.5)
    assert seq.meta["frame_files"] == [f"frame{i}.png" for i in (1, 2, 3, 10, 11, 12)]
    np.testing.assert_allclose(seq.frames[:, 0, 0], np.array([1, 2, 3, 10, 11, 12]) * 10 / 255, atol=1e-6)
    assert seq.fps == 12.5 and seq.video_id == tmp_path.name and seq.meta["format"] == "frames"


def test_frame_folder_scales_16_bit_and_greys_colour(tmp_path):
    sixteen = tmp_path / "sixteen"
    sixteen.mkdir()
    for i, value in enumerate((1000, 65535)):
        Image.fromarray(np.full((4, 5), value, np.uint16)).save(sixteen / f"f{i}.png")
    np.testing.assert_allclose(read_frame_folder(sixteen, 10).frames[:, 0, 0], [1000 / 65535, 1.0])

    colour = tmp_path / "colour"
    colour.mkdir()
    for i in range(2):
        _save_frame(colour / f"f{i}.jpg", (255, 255, 255) if i else (255, 0, 0), mode="RGB")
    frames = read_frame_folder(colour, 10).frames
    assert frames[0].mean() == pytest.approx(0.299, abs=0.02) and frames[1].mean() == pytest.approx(1.0)


def test_frame_folder_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no frames here")
    with raises_input_error(empty, "no image files"):
        read_frame_folder(empty, fps=10)

    mixed = tmp_path / "mixed"
    mixed.mkdir()
    _save_frame(mixed / "f1.png", 0, size=(8, 8))
    _save_frame(mixed / "f2.png", 0, size=(12, 8))
    with raises_input_error(mixed / "f2.png", "12x8", "f1.png", "8x8"):
        read_frame_folder(mixed, fps=10)
    with raises_input_error(mixed, "no frame rate", "fps="):
        read_frame_folder(mixed, fps=None)


# --------------------------------------------------------------------------------------------------
# .npy arrays
# --------------------------------------------------------------------------------------------------


def test_npy_round_trip_with_sidecar(tmp_path):
    seq = _cine(fps=29.97, video_id="synth_0003")
    path = write_npy(seq, tmp_path / "cine.npy")
    assert json.loads((tmp_path / "cine.json").read_text()) == {"fps": 29.97, "video_id": "synth_0003"}
    back = read_npy(path)
    np.testing.assert_array_equal(back.frames, seq.frames)
    assert back.fps == 29.97 and back.video_id == "synth_0003" and back.meta["fps_source"] == "sidecar"
    assert read_npy(path, fps=5.0).fps == 5.0  # an explicit rate wins over the sidecar


def test_npy_scaling_rules(tmp_path):
    np.save(tmp_path / "u8.npy", np.array([[[0, 255]], [[51, 102]]], np.uint8))
    np.testing.assert_allclose(read_npy(tmp_path / "u8.npy", fps=1).frames.ravel(), [0, 1, 0.2, 0.4])
    np.save(tmp_path / "f.npy", np.array([[[100.0, 300.0]], [[200.0, 500.0]]]))  # outside [0, 1]
    seq = read_npy(tmp_path / "f.npy", fps=1)  # one min-max scale for the whole cine
    np.testing.assert_allclose(seq.frames.ravel(), [0.0, 0.5, 0.25, 1.0])
    assert seq.meta["rescaled_from"] == [100.0, 500.0]


def test_npy_errors(tmp_path):
    nan = tmp_path / "nan.npy"
    frames = np.zeros((3, 4, 4), np.float32)
    frames[1, 2, 2] = np.nan
    np.save(nan, frames)
    with raises_input_error(nan, "NaN", "[1]"):
        read_npy(nan, fps=10)
    with raises_input_error(nan, "no frame rate", "nan.json"):
        read_npy(nan)
    garbage = tmp_path / "garbage.npy"
    garbage.write_bytes(b"definitely not numpy")
    with raises_input_error(garbage, "not a readable .npy"):
        read_npy(garbage, fps=10)
    with raises_input_error(tmp_path / "cine.dat", ".npy"):
        write_npy(_cine(), tmp_path / "cine.dat")


# --------------------------------------------------------------------------------------------------
# One entry point
# --------------------------------------------------------------------------------------------------


def test_read_sequence_dispatches_on_what_the_path_is(tmp_path):
    seq = _cine()
    dicom = write_dicom(seq, tmp_path / "cine.dcm")
    bare = tmp_path / "IM0001"  # DICOM files often have no extension
    bare.write_bytes(dicom.read_bytes())
    npy = write_npy(seq, tmp_path / "arr.npy")
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(3):
        _save_frame(folder / f"{i}.png", 40 * i)

    assert read_sequence(dicom).meta["format"] == "dicom"
    assert read_sequence(bare).meta["format"] == "dicom"
    assert read_sequence(npy).meta["format"] == "npy"
    assert read_sequence(folder, fps=10).meta["format"] == "frames"
    with raises_input_error(folder, "fps="):
        read_sequence(folder)


def test_read_sequence_bad_paths(tmp_path):
    with raises_input_error(tmp_path / "missing.dcm", "no such file"):
        read_sequence(tmp_path / "missing.dcm")
    text = tmp_path / "notes.txt"
    text.write_text("hello " * 40)
    with raises_input_error(text, "not a DICOM file"):
        read_sequence(text)
    single = tmp_path / "frame.png"
    _save_frame(single, 0)
    with raises_input_error(single, "single image", "folder"):
        read_sequence(single)


def test_atomic_writes_follow_the_umask(tmp_path):
    import os
    import stat

    from xcalab.data.io import _UMASK, atomic_path

    with atomic_path(tmp_path / "f.txt") as tmp:
        tmp.write_text("x")
    assert stat.S_IMODE(os.stat(tmp_path / "f.txt").st_mode) == 0o666 & ~_UMASK
