"""SVS-Net: shapes, sizes, and that every skip's temporal collapse really reads all four frames."""

import pytest
import torch

from xcalab.features.svsnet import (
    SIZES,
    WINDOW,
    ChannelAttention3D,
    SVSNet,
    SVSNetConfig,
    TemporalCollapse,
)
from xcalab.runtime import count_parameters


@pytest.mark.parametrize("shape", [(2, 4, 64, 64), (1, 4, 50, 70), (3, 4, 16, 16)])
def test_forward_shapes_any_size(shape):
    torch.manual_seed(0)
    model = SVSNet(SIZES["tiny"]).eval()
    out = model(torch.rand(shape))
    assert out.shape == (shape[0], *shape[2:])
    prob = model.predict(torch.rand(shape))
    assert prob.min() >= 0 and prob.max() <= 1


def test_wrong_window_is_refused():
    with pytest.raises(ValueError, match=r"\(B, 4, H, W\)"):
        SVSNet(SIZES["tiny"])(torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match="levels"):
        SVSNetConfig(levels=0)


def test_sizes_small_default_and_paper():
    assert 0.5e6 < count_parameters(SVSNet(SIZES["small"])) < 0.8e6  # SVS-Net-small, 4 levels of base 8: ~0.64 M
    paper = SVSNet(SIZES["paper"])
    assert abs(count_parameters(paper) - 10.19e6) < 0.05e6  # the released model: ~10.19 M (we drop biases before BN)
    assert len(paper.encoders) == 6 and paper.config.channels == (8, 16, 32, 64, 128, 256)


def test_skips_and_bottleneck_collapse_time():
    model = SVSNet(SVSNetConfig(levels=3, base=4))
    skips, bottom = model.encode(torch.rand(2, WINDOW, 32, 32))
    assert [tuple(s.shape) for s in skips] == [(2, 4, 32, 32), (2, 8, 16, 16), (2, 16, 8, 8)]
    assert tuple(bottom.shape) == (2, 32, 4, 4)
    # channel attention sits on the deepest skip only
    assert sum(isinstance(m, ChannelAttention3D) for m in model.modules()) == 1


def test_temporal_collapse_sees_all_four_frames():
    torch.manual_seed(0)
    collapse = TemporalCollapse(channels=3)
    x = torch.rand(1, 3, WINDOW, 5, 5, requires_grad=True)
    collapse(x)[0, :, 2, 2].sum().backward()
    per_frame = x.grad[0, :, :, 2, 2].abs().sum(dim=0)  # (4,)
    assert (per_frame > 0).all()
    assert x.grad[0, :, :, 0, 0].abs().sum() == 0  # a (4,1,1) kernel: time only, no spatial mixing


def test_network_output_depends_on_every_frame():
    torch.manual_seed(0)
    model = SVSNet(SIZES["tiny"]).eval()
    x = torch.rand(1, WINDOW, 32, 32, requires_grad=True)
    model(x)[0, 12:20, 12:20].sum().backward()  # a patch: a single pixel may sit behind a dead ReLU
    per_frame = x.grad[0].abs().sum(dim=(1, 2))
    assert (per_frame > 0).all(), per_frame


def test_same_seed_same_weights():
    torch.manual_seed(3)
    a = SVSNet(SIZES["tiny"]).state_dict()
    torch.manual_seed(3)
    b = SVSNet(SIZES["tiny"]).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
