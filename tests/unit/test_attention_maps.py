"""Captured maps say what they are: every map has a kind and a range, the ConvLSTM gates are the gates, and
the frame <-> feature-step bookkeeping of ``xcalab.attention_maps`` gives the answers worked out by hand."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from xcalab.attention_maps import SCORE_CURVES, VESSEL_CURVE, SequenceMaps, sequence_maps
from xcalab.config import ModelConfig
from xcalab.data.io import Cine
from xcalab.models.convlstm import ConvLSTM, ConvLSTMCell
from xcalab.models.detector import KeyframeDetector
from xcalab.models.maps import MapKind

KINDS = {"step", "band", "curve", "points"}


def _detector(mode: str, patchwise: bool = True) -> KeyframeDetector:
    torch.manual_seed(0)
    cfg = dataclasses.replace(ModelConfig(), long_term=mode, imagewise=mode in ("SA", "STA"), patchwise=patchwise,
                              channels=16, n_levels=3, n_heads=2,
                              regression_ranges=((0, 4), (4, 8), (8, 10000)))
    return KeyframeDetector(cfg, feature_dim=16 * 16, map_size=16).eval()


@pytest.mark.parametrize("mode", ["none", "TA", "SA", "STA"])
def test_every_captured_map_declares_a_kind_and_lies_in_its_range(mode):
    model = _detector(mode)
    features = torch.rand(2, 256, 12)
    mask = torch.ones(2, 12, dtype=torch.bool)
    mask[1, 9:] = False
    with torch.no_grad():
        out = model(features, mask, return_attention=True, generator=torch.Generator().manual_seed(0))
    assert set(out.kinds) == set(out.attention)
    assert {"X", "patchwise", "patch_centre"} <= set(out.kinds)
    assert any(name.startswith("transformer/") for name in out.kinds)
    for name, kind in out.kinds.items():
        assert isinstance(kind, MapKind) and kind.kind in KINDS, name
        value = out.attention[name]
        if kind.value_range is not None:
            lo, hi = kind.value_range
            assert value.min() >= lo - 1e-6 and value.max() <= hi + 1e-6, name
        if kind.kind == "band":
            assert kind.level is not None and value.shape[1] == model.cfg.n_heads
            assert torch.all(value.sum(-1) <= 1 + 1e-5)  # softmax weights over the window
    if mode in ("TA", "STA"):
        assert out.kinds["TA"].value_range == (-1.0, 1.0)
        assert {f"TA.{g}_gate" for g in ("input", "forget", "output")} <= set(out.kinds)
    if mode != "none":
        assert out.kinds["A"].value_range == (0.0, 1.0) and out.kinds["gated"].value_range is None
    else:
        assert "A" not in out.kinds and "TA" not in out.kinds
    for b in range(2):
        assert set(out.attention_of(b)) == set(out.kinds)


def test_capturing_maps_changes_no_prediction():
    model = _detector("STA")
    features, mask = torch.rand(1, 256, 10), torch.ones(1, 10, dtype=torch.bool)
    with torch.no_grad():
        plain = model(features, mask, generator=torch.Generator().manual_seed(1))
        captured = model(features, mask, return_attention=True, generator=torch.Generator().manual_seed(1))
    assert plain.kinds is None and plain.attention is None
    for a, b in zip(plain.cls_logits + plain.offsets, captured.cls_logits + captured.offsets):
        assert torch.equal(a, b)


def test_recorded_gates_are_the_cells_gates_step_by_step():
    """The gates ConvLSTM records equal a hand-run of its top cell (``probes.long_term.convlstm_gate_trace``)."""
    from xcalab.probes.long_term import convlstm_gate_trace

    torch.manual_seed(3)
    net = ConvLSTM(1, (1,), 3)
    x = torch.rand(1, 7, 1, 9, 9)
    gates: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        h = net(x, gates=gates)
        assert torch.allclose(h, net(x), atol=0)  # recording changes nothing
    trace = convlstm_gate_trace(net.cells[0], x[0, :, 0].numpy())
    for short, name in (("i", "input"), ("f", "forget"), ("o", "output")):
        assert gates[name].shape == (1, 7, 1, 9, 9)
        np.testing.assert_allclose(gates[name][0, :, 0].numpy(), trace[short], atol=1e-6)
    np.testing.assert_allclose(h[0, :, 0].numpy(), trace["h"], atol=1e-6)


def test_masked_steps_record_zero_gates():
    torch.manual_seed(0)
    net = ConvLSTM(1, (2, 1), 3)
    mask = torch.tensor([[True, True, False, True]])
    gates: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        net(torch.rand(1, 4, 1, 5, 5), mask, gates=gates)
    assert all(float(g[0, 2].abs().max()) == 0.0 for g in gates.values())
    assert all(float(g[0, 3].min()) > 0.0 for g in gates.values())
    assert isinstance(net.cells[0], ConvLSTMCell)


def _maps(n_frames: int, fps: float, frame_index, stride: int, window: int, n_steps: int) -> SequenceMaps:
    seq = Cine(np.zeros((n_frames, 8, 8), dtype=np.uint8), fps, video_id="toy")
    result = SimpleNamespace(sequence=seq, step_times=np.arange(n_steps, dtype=float), frame_index=frame_index,
                             record={}, scores=np.zeros((n_steps, 2)))
    maps = {"A": np.zeros((n_steps, 4, 4), dtype=np.float32), "R": np.linspace(-2, 3, n_steps * 16).reshape(n_steps, 4, 4)}
    kinds = {"A": MapKind("step", (0.0, 1.0)), "R": MapKind("step", None)}
    return SequenceMaps(result, maps, kinds, stride, window)


def test_frames_map_to_the_steps_worked_out_by_hand():
    # 42 frames at stride 4, window 4: steps 0..9 cover frames 0..39; frames 40 and 41 are past the last window.
    m = _maps(42, 15.0, None, stride=4, window=4, n_steps=10)
    assert [m.step_of_frame(f) for f in (0, 3, 4, 7, 39)] == [0, 0, 1, 1, 9]
    assert m.step_of_frame(40) is None and m.step_of_frame(41) is None
    assert m.frames_of_step(0) == (0, 3) and m.frames_of_step(9) == (36, 39) and m.last_window_frame() == 39
    # 30 fps resampled to 7.5 fps (frames 0, 4, 8, ...), stride 1, window 4: 10 analysed frames -> 7 steps.
    index = np.arange(0, 40, 4)
    r = _maps(40, 30.0, index, stride=1, window=4, n_steps=7)
    assert r.step_of_frame(0) == 0 and r.step_of_frame(1) == 0 and r.step_of_frame(2) == 0  # nearest kept: 0
    assert r.step_of_frame(3) == 1 and r.step_of_frame(13) == 3  # 13 -> kept frame 12 (j = 3)
    assert r.step_of_frame(30) == 6 and r.step_of_frame(39) == 6  # in the last window (j = 6..9)
    assert r.frames_of_step(6) == (24, 36)


def test_ranges_are_fixed_or_observed_and_bad_requests_fail():
    m = _maps(42, 15.0, None, stride=4, window=4, n_steps=10)
    assert m.value_range("A") == (0.0, 1.0) and m.range_is_fixed("A")
    assert m.value_range("R") == pytest.approx((-2.0, 3.0)) and not m.range_is_fixed("R")
    assert m.names("step") == ["A", "R"] and m.names("band") == [] and m.map_size == 4
    with pytest.raises(ValueError, match="outside the cine"):
        m.step_of_frame(42)
    with pytest.raises(ValueError, match="outside"):
        m.frames_of_step(10)
    with pytest.raises(ValueError, match="not a band"):
        m.band("A", 0)
    with pytest.raises(ValueError, match="unmatched"):
        SequenceMaps(m.result, {"A": m.maps["A"]}, {}, 4, 4)


def test_sequence_maps_of_a_real_cine_match_locate(teach_locator, small_cine):
    from xcalab.locator import locate_sequence

    maps = sequence_maps(small_cine, teach_locator)
    plain = locate_sequence(small_cine, teach_locator)
    assert maps.result.record["start"] == plain.record["start"] and maps.result.record["status"] == plain.record["status"]
    assert set(SCORE_CURVES) | {VESSEL_CURVE} <= set(maps.names("curve"))
    assert maps.n_steps == len(plain.step_times) and maps.maps["A"].shape[0] == maps.n_steps
    np.testing.assert_allclose(maps.maps["P(filling)"], plain.scores[:, 0])
    again = sequence_maps(small_cine, teach_locator, result=maps.result)
    assert again.result is maps.result  # a result that holds attention is reused, not recomputed
