"""Cines in and out: the ``Cine`` type, atomic writes, and (below) readers and writers.

A ``Cine`` is what every later stage consumes, whatever the source (a DICOM XA cine, a folder
of frames, a ``.npy`` array, or the XCA-Synth simulator):

    frames  float32 [N, H, W], display sense of MONOCHROME2 (0 = black), scaled to [0, 1]
    fps     frames per second (float > 0)
    meta    free-form metadata (source path, bits stored, photometric interpretation, R-wave frames, ...)
    truth   optional ground truth (keyframes, opacified-vessel maps, phases) -- simulator only

Readers (one entry point, ``read_sequence(path, fps=None)``, dispatches on what the path is):

    read_dicom(path, fps=None)       multi-frame DICOM XA (or RF) cine, compressed or not
    read_frame_folder(path, fps)     a folder of PNG / JPG / TIF / BMP frames in natural order
    read_npy(path, fps=None)         an [N, H, W] array, frame rate from a ``<stem>.json`` sidecar

Writers (``write_dicom``, ``write_npy``) are atomic: they write a temporary file next to the target
and rename it into place, so a failed write leaves nothing behind. Every problem with the input is
raised as one ``XcalabInputError`` that names the file and says what is wrong.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import get_decoder
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import format_number_as_ds

from xcalab.errors import XcalabInputError

# --------------------------------------------------------------------------------------------------
# The Cine type
# --------------------------------------------------------------------------------------------------


@dataclass
class Truth:
    """Exact ground truth for a cine (XCA-Synth provides it; real cines usually do not).

    keyframes     (start, apex, end) frame indices, start <= apex <= end
    vessel_maps   float32 [N, H, W] opacified-vessel map per frame (0..1), or None
    phases        int8 [N] phase per frame (0 pre-contrast, 1 filling, 2 apex plateau, 3 washout, 4 after),
                  or None
    """

    keyframes: tuple[int, int, int]
    vessel_maps: np.ndarray | None = None
    phases: np.ndarray | None = None


@dataclass
class Cine:
    """One angiography cine.

    Attributes:
        frames: float32 array [N, H, W] in [0, 1], MONOCHROME2 sense (vessels with contrast are dark).
        fps: frame rate in frames per second.
        video_id: a short name (file stem, folder name or XCA-Synth id).
        meta: metadata (always holds ``"source"``; DICOM adds ``bits_stored``, ``photometric``,
            ``rwave_frames``, ``transfer_syntax``, ...).
        truth: optional ``Truth``.
    """

    frames: np.ndarray
    fps: float
    video_id: str = "sequence"
    meta: dict[str, Any] = field(default_factory=dict)
    truth: Truth | None = None

    def __post_init__(self) -> None:
        where = self.meta.get("source", self.video_id)
        frames = np.asarray(self.frames)
        if frames.ndim != 3:
            raise XcalabInputError(where, f"frames must have shape [N, H, W], got shape {frames.shape}")
        if frames.shape[0] < 2:
            raise XcalabInputError(where, f"a cine needs at least 2 frames, got {frames.shape[0]}")
        if not np.all(np.isfinite(frames)):
            bad = np.unique(np.nonzero(~np.isfinite(frames))[0])
            raise XcalabInputError(where, f"frames contain NaN or infinite values (frames {bad[:5].tolist()})")
        if not (np.isfinite(self.fps) and self.fps > 0):
            raise XcalabInputError(where, f"frame rate must be a positive number, got {self.fps!r}")
        self.frames = frames.astype(np.float32, copy=False)
        self.fps = float(self.fps)

    @property
    def n_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def duration(self) -> float:
        """Length in seconds (N / fps), the ActivityNet ``duration`` of this cine."""
        return self.n_frames / self.fps

    def __repr__(self) -> str:
        n, h, w = self.frames.shape
        truth = f", keyframes={self.truth.keyframes}" if self.truth else ""
        return f"Cine({self.video_id!r}, {n} frames of {h}x{w} at {self.fps:g} fps{truth})"


# --------------------------------------------------------------------------------------------------
# Atomic writes: a temporary file in the same folder, renamed into place only on success
# --------------------------------------------------------------------------------------------------


# The process umask, read once (os.umask can only be read by setting it).
_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` if the block succeeds.

    If the block raises, the temporary file is removed and ``path`` is left as it was, so a
    killed or failed write never leaves a half-written file behind::

        with atomic_path("out.npy") as tmp:
            np.save(tmp, array)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.chmod(0o666 & ~_UMASK)  # mkstemp makes owner-only files; a written file should look like any other
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _require_exists(path: Path) -> None:
    """Fail early, and clearly, on a path that is not there (instead of deep inside a decoder)."""
    if not path.exists():
        raise XcalabInputError(path, "no such file or folder")


# --------------------------------------------------------------------------------------------------
# DICOM XA: reading
# --------------------------------------------------------------------------------------------------

#: Modalities read as X-ray cines. "RF" (radio-fluoroscopy) shares the XA/XRF image modules, and some
#: C-arms file cardiac runs under it; anything else (CT, MR, US, ...) is refused.
XRAY_MODALITIES = ("XA", "RF")

#: SOP Class of X-Ray Angiographic Image Storage, the class ``write_dicom`` writes.
XA_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.12.1")

_FRAME_TIME_TAG = 0x00181063  # (0018,1063) Frame Time: the Frame Increment Pointer of a cine


def read_dicom(path: str | Path, fps: float | None = None) -> Cine:
    """Read a multi-frame DICOM XA (or RF) cine.

    Pixels: stored values / (2**BitsStored - 1) -> float32 [N, H, W] in [0, 1]; MONOCHROME1 is flipped so
    the result is always MONOCHROME2 (0 = black). Compressed transfer syntaxes decode through pydicom's
    plugins (pylibjpeg + pylibjpeg-libjpeg for JPEG, -openjpeg for JPEG 2000).

    Frame rate: ``fps`` if given, else FrameTime (ms), FrameTimeVector (mean increment, ms), CineRate,
    RecommendedDisplayFrameRate -- the first one present and positive.

    ``meta`` holds source, format, modality, rows, columns, bits_stored, photometric (as stored),
    transfer_syntax (UID), transfer_syntax_name, fps_source, rwave_pointer (RWavePointer as stored:
    DICOM frame numbers, which start at 1) and rwave_frames (the same R waves as 0-based frame
    indices, the index space of every other frame number in xcalab). Patient identifiers are never copied.
    """
    path = Path(path)
    _require_exists(path)
    where = str(path)
    ds = _open_dicom(path)
    modality, photometric, n_frames = _check_xray_cine(ds, where)
    fps_source = "argument"
    if fps is None:
        fps, fps_source = _dicom_fps(ds, where)
    syntax = UID(str(ds.file_meta.get("TransferSyntaxUID", "")))
    frames = _unit_range(_decode_pixels(ds, syntax, where), ds, photometric)
    rwave_pointer = [int(p) for p in _as_list(ds.get("RWavePointer"))]
    meta = {
        "source": where,
        "format": "dicom",
        "modality": modality,
        "rows": int(ds.Rows),
        "columns": int(ds.Columns),
        "bits_stored": int(ds.BitsStored),
        "photometric": photometric,
        "transfer_syntax": str(syntax),
        "transfer_syntax_name": syntax.name,
        "fps_source": fps_source,
        "rwave_pointer": rwave_pointer,
        "rwave_frames": [p - 1 for p in rwave_pointer if 1 <= p <= n_frames],
    }
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    if slope is not None or intercept is not None:
        meta["rescale"] = [float(1.0 if slope is None else slope), float(intercept or 0.0)]
    return Cine(frames, fps, video_id=path.stem, meta=meta)


def read_dicom_series(folder: str | Path, fps: float | None = None) -> Cine:
    """Read a folder of single-frame DICOM XA files of one run (one file per frame) as a cine.

    Frames are ordered by InstanceNumber (then file name); every file must be a single greyscale X-ray
    frame of the same size, from one series. Frame rate: ``fps``, else the first file's FrameTime,
    CineRate or RecommendedDisplayFrameRate. ``meta`` is that of ``read_dicom`` (no patient identifiers)
    plus ``frame_files``.
    """
    folder = Path(folder)
    _require_exists(folder)
    files = [f for f in sorted(folder.iterdir(), key=_natural_key) if f.is_file() and not f.name.startswith(".")
             and _has_dicom_marker(f)]
    if not files:
        raise XcalabInputError(folder, "no DICOM files in the folder")
    records = []
    for file in files:
        ds = _open_dicom(file)
        modality, photometric, n = _check_xray_cine(ds, str(file), min_frames=1)
        if n != 1:
            raise XcalabInputError(file, f"holds {n} frames: a folder of DICOM files must hold one frame per file "
                                         "(pass a multi-frame file on its own)")
        records.append((int(ds.get("InstanceNumber") or 0), file, ds, modality, photometric))
    records.sort(key=lambda r: (r[0], _natural_key(r[1])))
    series = {str(r[2].get("SeriesInstanceUID", "")) for r in records}
    if len(series) > 1:
        raise XcalabInputError(folder, f"holds frames of {len(series)} different series; put one run per folder")
    first_ds, first_file = records[0][2], records[0][1]
    fps_source = "argument"
    if fps is None:
        fps, fps_source = _dicom_fps(first_ds, str(first_file))
    frames = []
    for _, file, ds, _, photometric in records:
        syntax = UID(str(ds.file_meta.get("TransferSyntaxUID", "")))
        frame = _unit_range(_decode_pixels(ds, syntax, str(file)).reshape(1, int(ds.Rows), int(ds.Columns)), ds,
                            photometric)[0]
        if frames and frame.shape != frames[0].shape:
            raise XcalabInputError(file, f"frame size {frame.shape[1]}x{frame.shape[0]} differs from the first "
                                         f"frame's ({frames[0].shape[1]}x{frames[0].shape[0]})")
        frames.append(frame)
    syntax = UID(str(first_ds.file_meta.get("TransferSyntaxUID", "")))
    meta = {
        "source": str(folder), "format": "dicom-series", "modality": records[0][3],
        "rows": int(first_ds.Rows), "columns": int(first_ds.Columns), "bits_stored": int(first_ds.BitsStored),
        "photometric": records[0][4], "transfer_syntax": str(syntax), "transfer_syntax_name": syntax.name,
        "fps_source": fps_source, "rwave_pointer": [], "rwave_frames": [], "frame_files": [r[1].name for r in records],
    }
    return Cine(np.stack(frames), fps, video_id=folder.resolve().name, meta=meta)


def _open_dicom(path: Path) -> Dataset:
    """Parse the file; a file without the 'DICM' marker after its 128-byte preamble is not DICOM."""
    if path.is_dir():
        raise XcalabInputError(path, "is a folder, not a DICOM file (read_sequence reads folders of frames)")
    try:
        return pydicom.dcmread(path)
    except InvalidDicomError as err:
        problem = "not a DICOM file (no 'DICM' marker after the 128-byte preamble)"
        raise XcalabInputError(path, problem) from err
    except Exception as err:  # truncated or corrupt: pydicom raises many types, all mean "bad file"
        raise XcalabInputError(path, f"cannot parse the DICOM file: {err}") from err


def _check_xray_cine(ds: Dataset, where: str, min_frames: int = 2) -> tuple[str, str, int]:
    """Refuse what is not a greyscale X-ray cine with pixel data; return (modality, photometric, N).

    ``min_frames=1`` accepts the single frames of a series stored one file per frame."""
    modality = str(ds.get("Modality", "") or "").upper()
    if modality not in XRAY_MODALITIES:
        raise XcalabInputError(
            where, f"not an X-ray angiography image (Modality is {modality!r}, expected 'XA' or 'RF')"
        )
    if "PixelData" not in ds:
        raise XcalabInputError(where, "no pixel data (the file has no (7FE0,0010) Pixel Data element)")
    for keyword in ("Rows", "Columns", "BitsStored"):
        if ds.get(keyword) in (None, ""):
            raise XcalabInputError(where, f"the image has no {keyword} attribute")
    photometric = str(ds.get("PhotometricInterpretation", "") or "").upper()
    samples = int(ds.get("SamplesPerPixel") or 1)
    if samples != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise XcalabInputError(
            where,
            f"not a greyscale image (PhotometricInterpretation {photometric!r}, SamplesPerPixel {samples}); "
            "X-ray cines are MONOCHROME1 or MONOCHROME2",
        )
    n_frames = int(ds.get("NumberOfFrames") or 1)
    if n_frames < min_frames:
        raise XcalabInputError(where, f"a single image, not a cine (NumberOfFrames is {n_frames}; need >= 2)")
    return modality, photometric, n_frames


def _as_list(value: Any) -> list[Any]:
    """A DICOM value of multiplicity 0, 1 or n as a list (pydicom returns a bare value when VM is 1)."""
    if value is None or value == "":
        return []
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        return [value]
    return list(value)


def _positive(value: Any) -> float | None:
    """A numeric attribute as a float, or None when it is absent, empty, zero or negative."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) and number > 0 else None


def _dicom_fps(ds: Dataset, where: str) -> tuple[float, str]:
    """The cine's frame rate and the attribute it came from, trying the most precise attribute first."""
    if (frame_time := _positive(ds.get("FrameTime"))) is not None:
        return _fps_from_frame_time(frame_time), "FrameTime"
    # Frame Time Vector holds one increment per frame; the first is 0 (nothing precedes frame 1).
    increments = [_positive(v) for v in _as_list(ds.get("FrameTimeVector"))[1:]]
    if increments and all(v is not None for v in increments):
        return 1000.0 / float(np.mean(increments)), "FrameTimeVector"
    for keyword in ("CineRate", "RecommendedDisplayFrameRate"):
        if (rate := _positive(ds.get(keyword))) is not None:
            return rate, keyword
    raise XcalabInputError(
        where,
        "no frame rate in the file (no FrameTime, FrameTimeVector, CineRate or "
        "RecommendedDisplayFrameRate); pass fps= explicitly",
    )


def _fps_from_frame_time(ms: float) -> float:
    """1000 / FrameTime, undoing the decimal rounding a writer applied to 1000 / fps.

    FrameTime is a decimal string of at most 16 characters, so a 15 fps cine stores 66.6666666666667 ms
    and 1000 / that is 14.999999999999993. When a short rate (at most 12 significant digits) spells
    exactly the stored FrameTime, that is the rate the writer meant; otherwise 1000 / FrameTime stands.
    """
    fps = 1000.0 / ms
    for digits in range(1, 13):
        short = float(f"{fps:.{digits}g}")
        if float(format_number_as_ds(1000.0 / short)) == ms:
            return short
    return fps


def _decode_pixels(ds: Dataset, syntax: UID, where: str) -> np.ndarray:
    """Stored pixel values, integers [N, H, W]; decoder failures become one clear error."""
    try:
        return ds.pixel_array
    except Exception as err:  # pydicom and its plugins raise RuntimeError, ValueError, NotImplementedError...
        raise XcalabInputError(where, _decode_problem(syntax, err)) from err


def _decode_problem(syntax: UID, err: Exception) -> str:
    """Say which package to install when the decoder plugin is missing, else what went wrong."""
    label = f"{syntax.name or 'unknown transfer syntax'} ({syntax})"
    if "missing dependencies" in str(err) or not _decoder_available(syntax):
        return (
            f"cannot decode {label} pixel data: no decoder plugin is installed; "
            f"install one with `pip install {_decoder_packages(syntax)}` (or python-gdcm)"
        )
    return f"cannot decode {label} pixel data: {err}"


def _decoder_available(syntax: UID) -> bool:
    """True when pydicom has a decoder for ``syntax`` with at least one working plugin."""
    try:
        return get_decoder(syntax).is_available
    except (NotImplementedError, ValueError):  # no decoder at all: not a missing plugin
        return True


def _decoder_packages(syntax: UID) -> str:
    """The pylibjpeg plugins that decode a compressed transfer syntax."""
    if syntax.startswith("1.2.840.10008.1.2.4.9") or syntax.startswith("1.2.840.10008.1.2.4.20"):
        return "pylibjpeg pylibjpeg-openjpeg"  # JPEG 2000 and HTJ2K
    if syntax == "1.2.840.10008.1.2.5":
        return "pylibjpeg pylibjpeg-rle"
    return "pylibjpeg pylibjpeg-libjpeg"  # JPEG baseline, extended, lossless and JPEG-LS


def _unit_range(pixels: np.ndarray, ds: Dataset, photometric: str) -> np.ndarray:
    """Stored values [N, H, W] -> float32 [N, H, W] in [0, 1], MONOCHROME2 sense.

    Divide by the stored range 2**BitsStored - 1. A linear Modality LUT (RescaleSlope m, RescaleIntercept
    b) maps that range onto [b, m (2**bits - 1) + b]; normalising over the mapped range gives back the same
    image, flipped when m < 0. MONOCHROME1 (0 = white) flips once more to MONOCHROME2 (0 = black).
    """
    bits = int(ds.BitsStored)
    frames = pixels.astype(np.float32)
    if int(ds.get("PixelRepresentation") or 0) == 1:
        frames += 2 ** (bits - 1)  # two's complement: shift -2**(bits-1).. to 0..
    frames /= np.float32(2**bits - 1)
    slope = float(ds.get("RescaleSlope") or 1.0)
    if (slope < 0) != (photometric == "MONOCHROME1"):
        np.subtract(1.0, frames, out=frames)
    # Clip: bits above BitsStored may hold overlay or garbage in some files.
    return np.clip(frames, 0.0, 1.0, out=frames)


# --------------------------------------------------------------------------------------------------
# DICOM XA: writing (so a synthetic cine is read back exactly like a real one)
# --------------------------------------------------------------------------------------------------


def write_dicom(seq: Cine, path: str | Path, bits_stored: int = 8) -> Path:
    """Write ``seq`` as a multi-frame XA DICOM file (Explicit VR Little Endian, uncompressed), atomically.

    Pixel value = round(frame * (2**bits_stored - 1)), stored as uint8 (bits_stored 8) or uint16 (9..16);
    frames must lie in [0, 1]. MONOCHROME2; FrameTime = 1000 / fps (the Frame Increment Pointer), CineRate
    = round(fps); RWavePointer from ``seq.meta["rwave_frames"]`` (0-based, written 1-based). UIDs derive
    from video_id (and the pixels), dates are fixed and the patient is "XCA-Synth^<id>", so the same
    sequence always gives the same bytes and no real person is named.
    """
    path = Path(path)
    if isinstance(bits_stored, bool) or bits_stored not in range(8, 17):
        raise XcalabInputError(path, f"bits_stored must be an integer in 8..16, got {bits_stored!r}")
    bits_stored = int(bits_stored)
    pixels = _quantise(seq, bits_stored, path)
    ds = _xa_dataset(seq, pixels, bits_stored, path)
    with atomic_path(path) as tmp:
        pydicom.dcmwrite(tmp, ds, enforce_file_format=True)
    return path


def _quantise(seq: Cine, bits: int, path: Path) -> np.ndarray:
    """float32 [N, H, W] in [0, 1] -> uint8 / uint16 [N, H, W] on the 2**bits - 1 grid."""
    lo, hi = float(seq.frames.min()), float(seq.frames.max())
    if lo < 0.0 or hi > 1.0:
        raise XcalabInputError(
            path, f"frames of {seq.video_id!r} must lie in [0, 1] to be written, got [{lo:.4g}, {hi:.4g}]"
        )
    dtype = np.uint8 if bits <= 8 else np.uint16
    return np.rint(seq.frames * np.float32(2**bits - 1)).astype(dtype)


def _dicom_safe(text: str, limit: int) -> str:
    """ASCII letters, digits, '.', '_', '-' only: no PN component separators, no character set needed."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)[:limit] or "sequence"


def _xa_dataset(seq: Cine, pixels: np.ndarray, bits: int, path: Path) -> Dataset:
    """The XA dataset for ``pixels`` [N, H, W]: the XA IOD's required attributes and a few descriptive ones."""
    name = _dicom_safe(seq.video_id, 48)
    rwave = [int(f) for f in seq.meta.get("rwave_frames", [])]
    if any(not 0 <= f < seq.n_frames for f in rwave):
        raise XcalabInputError(path, f"rwave_frames {rwave} are not frame indices in [0, {seq.n_frames})")
    # Study and series are named by the video; the instance also by its content, so a different cine
    # under the same name gets a different SOP Instance UID.
    digest = hashlib.sha256(pixels.tobytes() + repr((seq.fps, bits, rwave)).encode()).hexdigest()
    study = generate_uid(entropy_srcs=["xcalab", seq.video_id, "study"])
    series = generate_uid(entropy_srcs=["xcalab", seq.video_id, "series"])
    instance = generate_uid(entropy_srcs=["xcalab", seq.video_id, "instance", digest])

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = XA_IMAGE_STORAGE
    ds.file_meta.MediaStorageSOPInstanceUID = instance
    ds.SOPClassUID, ds.SOPInstanceUID = XA_IMAGE_STORAGE, instance
    # Patient, study, series, equipment: synthetic and fixed (type-2 attributes present but empty).
    ds.PatientName, ds.PatientID = f"XCA-Synth^{name}", name
    ds.PatientBirthDate, ds.PatientSex = "", ""
    ds.StudyInstanceUID, ds.StudyDate, ds.StudyTime = study, "20000101", "000000"
    ds.ReferringPhysicianName, ds.StudyID, ds.AccessionNumber = "", "", ""
    ds.Modality, ds.SeriesInstanceUID, ds.SeriesNumber = "XA", series, 1
    ds.SeriesDescription, ds.Manufacturer = "xcalab cine", "xcalab"
    ds.InstanceNumber, ds.ContentDate, ds.ContentTime = 1, "20000101", "000000"
    ds.PatientOrientation, ds.BurnedInAnnotation = "", "NO"
    # X-ray image and acquisition: a single-plane graphy run shown as stored.
    ds.ImageType = ["DERIVED", "SECONDARY", "SINGLE PLANE"]
    ds.PixelIntensityRelationship, ds.RadiationSetting = "DISP", "GR"
    ds.KVP, ds.PositionerPrimaryAngle, ds.PositionerSecondaryAngle = "", "", ""
    # Cine timing: frames are spaced by FrameTime; CineRate is the preferred playback rate.
    ds.FrameIncrementPointer = _FRAME_TIME_TAG
    ds.FrameTime = format_number_as_ds(1000.0 / seq.fps)
    if round(seq.fps) >= 1:
        ds.CineRate = round(seq.fps)
    if rwave:
        ds.RWavePointer = [f + 1 for f in rwave]  # DICOM frame numbers start at 1
    ds.set_pixel_data(pixels, "MONOCHROME2", bits, generate_instance_uid=False)
    return ds


# --------------------------------------------------------------------------------------------------
# Folders of frames
# --------------------------------------------------------------------------------------------------

#: File types read as frames (case-insensitive).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def read_frame_folder(path: str | Path, fps: float | None) -> Cine:
    """Read a folder of image files as a cine: frames float32 [N, H, W] in [0, 1].

    Files with an image suffix are taken in natural order (frame2 before frame10), made grey by Pillow
    (ITU-R 601 luma for colour) and divided by their type's maximum (255 for 8-bit, 65535 for 16-bit).
    Image files carry no frame rate, so ``fps`` is required. ``meta["frame_files"]`` lists the file
    behind each frame.
    """
    folder = Path(path)
    _require_exists(folder)
    if not folder.is_dir():
        raise XcalabInputError(folder, "not a folder")
    if fps is None:
        raise XcalabInputError(folder, "a folder of frames has no frame rate; pass fps= (for example fps=15)")
    files = sorted(
        (f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()),
        key=_natural_key,
    )
    files = [f for f in files if not f.name.startswith(".")]  # skip hidden files (macOS ._frame1.png)
    if not files:
        raise XcalabInputError(folder, f"no image files ({', '.join(IMAGE_SUFFIXES)}) in the folder")
    first = _read_image(files[0])
    frames = np.empty((len(files), *first.shape), dtype=np.float32)
    frames[0] = first
    for i, file in enumerate(files[1:], start=1):
        frame = _read_image(file)
        if frame.shape != first.shape:
            raise XcalabInputError(
                file,
                f"image size {_size(frame)} differs from the first frame {files[0].name} ({_size(first)}); "
                "all frames must have the same size",
            )
        frames[i] = frame
    meta = {"source": str(folder), "format": "frames", "frame_files": [f.name for f in files]}
    return Cine(frames, fps, video_id=folder.resolve().name, meta=meta)


def _natural_key(path: Path) -> tuple[list[Any], str]:
    """Sort key that orders runs of digits by value: frame2 < frame10 (plain sorting puts 10 first).

    re.split with a group alternates text and digits, so digits sit at the odd positions and two keys
    only ever compare text with text and numbers with numbers.
    """
    parts = re.split(r"(\d+)", path.name.lower())
    return [int(p) if i % 2 else p for i, p in enumerate(parts)], path.name


def _size(frame: np.ndarray) -> str:
    """'W x H' of a frame [H, W], the way image viewers report it."""
    return f"{frame.shape[1]}x{frame.shape[0]}"


def _read_image(path: Path) -> np.ndarray:
    """One image file -> float32 [H, W] in [0, 1]."""
    try:
        with Image.open(path) as img:
            mode = img.mode
            if mode.startswith("I"):  # 16-bit grey (Pillow may open it as 32-bit "I")
                grey, peak = np.asarray(img), 65535.0
            elif mode == "F":  # 32-bit float TIFF: taken as already in [0, 1]
                grey, peak = np.asarray(img), 1.0
            else:
                grey, peak = np.asarray(img.convert("L")), 255.0
    except (OSError, ValueError) as err:  # UnidentifiedImageError is an OSError
        raise XcalabInputError(path, f"cannot read the image: {err}") from err
    if not (grey.min() >= 0 and grey.max() <= peak):  # also catches NaN in float images
        raise XcalabInputError(path, f"{mode} pixel values outside 0..{peak:g}")
    return grey.astype(np.float32) / np.float32(peak)


# --------------------------------------------------------------------------------------------------
# .npy arrays (+ a JSON sidecar for the frame rate)
# --------------------------------------------------------------------------------------------------


def read_npy(path: str | Path, fps: float | None = None) -> Cine:
    """Read an [N, H, W] array saved with ``np.save`` (pickles are refused).

    Frame rate: ``fps`` if given, else ``<stem>.json`` (``{"fps": ..., "video_id": ...}``, as written
    by ``write_npy``). Values: unsigned integers are divided by their type's maximum; floats (and signed
    integers) already in [0, 1] are kept, otherwise min-max scaled over the whole cine -- one scale for all
    frames, so the brightness curve over time survives -- and ``meta["rescaled_from"]`` records [min, max].
    """
    path = Path(path)
    _require_exists(path)
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise XcalabInputError(path, f"not a readable .npy array: {err}") from err
    if not isinstance(array, np.ndarray):
        array.close()  # np.load opened an .npz archive
        raise XcalabInputError(path, "an .npz archive, not a single .npy array")
    sidecar = _read_sidecar(path)
    fps_source = "argument"
    if fps is None:
        fps, fps_source = sidecar.get("fps"), "sidecar"
    if fps is None:
        raise XcalabInputError(
            path, f'no frame rate: pass fps= or write {{"fps": ...}} to {path.with_suffix(".json").name}'
        )
    frames, meta = _npy_unit_range(array, path)
    meta.update(source=str(path), format="npy", fps_source=fps_source)
    return Cine(frames, fps, video_id=str(sidecar.get("video_id", path.stem)), meta=meta)


def _read_sidecar(path: Path) -> dict[str, Any]:
    """The ``<stem>.json`` next to an array, or {} when there is none."""
    side = path.with_suffix(".json")
    if not side.exists():
        return {}
    try:
        data = json.loads(side.read_text())
    except (OSError, ValueError) as err:
        raise XcalabInputError(side, f"unreadable sidecar JSON: {err}") from err
    if not isinstance(data, dict):
        raise XcalabInputError(side, 'the sidecar must hold a JSON object such as {"fps": 15}')
    return data


def _npy_unit_range(array: np.ndarray, path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    """Any numeric array -> float32 in [0, 1], and what was done to it (for ``meta``)."""
    kind = array.dtype.kind
    if kind not in "buif":
        raise XcalabInputError(path, f"unsupported array dtype {array.dtype}; expected numbers")
    if kind == "u":
        peak = np.iinfo(array.dtype).max
        return array.astype(np.float32) / np.float32(peak), {"scaled_by": int(peak)}
    frames = array.astype(np.float32)
    if frames.size == 0 or not np.isfinite(frames).all():
        return frames, {}  # Cine reports the empty shape or the NaN frames, naming the file
    lo, hi = float(frames.min()), float(frames.max())
    if lo >= 0.0 and hi <= 1.0:
        return frames, {}
    frames = (frames - lo) / np.float32(hi - lo if hi > lo else 1.0)
    return frames, {"rescaled_from": [lo, hi]}


def write_npy(seq: Cine, path: str | Path) -> Path:
    """Write frames float32 [N, H, W] to ``path`` (.npy) and fps + video_id to ``<stem>.json``, atomically.

    Both files appear together or not at all.
    """
    path = Path(path)
    if path.suffix.lower() != ".npy":
        raise XcalabInputError(path, "write_npy needs a path ending in .npy")
    sidecar = {"fps": seq.fps, "video_id": seq.video_id}
    with atomic_path(path) as tmp_array, atomic_path(path.with_suffix(".json")) as tmp_side:
        with open(tmp_array, "wb") as fh:  # a file handle: np.save would append .npy to a bare name
            np.save(fh, seq.frames.astype(np.float32, copy=False))
        tmp_side.write_text(json.dumps(sidecar, indent=2) + "\n")
    return path


# --------------------------------------------------------------------------------------------------
# One entry point
# --------------------------------------------------------------------------------------------------


def read_sequence(path: str | Path, fps: float | None = None) -> Cine:
    """Read a cine from whatever ``path`` is: a folder of frames, a folder of single-frame DICOM files, an
    ``.npy`` array, or a DICOM file.

    ``fps`` overrides the file's own frame rate and is required for a folder of frames. Files other
    than folders and ``.npy`` are read as DICOM whatever their name (.dcm, no extension, ...).
    """
    path = Path(path)
    _require_exists(path)
    if path.is_dir():
        if _holds_dicom_files(path):
            return read_dicom_series(path, fps)
        return read_frame_folder(path, fps)
    if path.suffix.lower() == ".npy":
        return read_npy(path, fps)
    if path.suffix.lower() in IMAGE_SUFFIXES and not _has_dicom_marker(path):
        raise XcalabInputError(path, "a single image is not a cine; pass the folder that holds the frames")
    return read_dicom(path, fps)


def _holds_dicom_files(folder: Path) -> bool:
    """True when a folder holds DICOM files and no image files (a series stored one frame per file)."""
    files = [f for f in folder.iterdir() if f.is_file() and not f.name.startswith(".")]
    if any(f.suffix.lower() in IMAGE_SUFFIXES for f in files):
        return False
    return any(_has_dicom_marker(f) for f in files)


def _has_dicom_marker(path: Path) -> bool:
    """True when bytes 128..131 spell 'DICM', the signature of a DICOM Part 10 file."""
    with open(path, "rb") as fh:
        fh.seek(128)
        return fh.read(4) == b"DICM"
