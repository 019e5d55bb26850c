"""GAF's generative frame attention: lambda head, CVAE, losses, attended features (seed paper 002, released code)."""

import math

import pytest
import torch

from xcalab.models.generative_attention import (
    ConditionalVAE,
    FrameAttention,
    GenerativeAttention,
    attended_features,
    cvae_loss,
    reconstruction_loss,
    reconstruction_weight,
)
from xcalab.models.maps import UNIT_RANGE, MapKind

D, S, HIDDEN = 16, 4, 12  # 4 x 4 maps


def _sequences(lengths, steps, seed=0, dim=D):
    """Features (B, dim, steps) in [0, 1] and the mask of the given lengths; padded steps hold garbage (5.0)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(len(lengths), dim, steps, generator=g)
    mask = torch.arange(steps)[None, :] < torch.tensor(lengths)[:, None]
    return x.masked_fill(~mask[:, None, :], 5.0), mask


def _pad(x, mask, extra, value=-7.0):
    """The same batch with ``extra`` more padded steps holding ``value``."""
    b, d, _ = x.shape
    return (torch.cat([x, torch.full((b, d, extra), value)], dim=2),
            torch.cat([mask, torch.zeros(b, extra, dtype=torch.bool)], dim=1))


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _model(seed=0, **kwargs):
    torch.manual_seed(seed)
    return GenerativeAttention(D, hidden=HIDDEN, **kwargs)


# --------------------------------------------------------------------------------------------------
# Losses: hand-worked values
# --------------------------------------------------------------------------------------------------

# One video, D = 2, T = 3, step 2 padded (holding garbage that must not count). Entries (d, t), valid t = 0, 1:
#   x      d0: [1, 0]     d1: [0.5, 2]        x_hat  d0: [0, 0]    d1: [0.5, 1]
#   (x - x_hat)^2 = 1, 0, 0, 1                 -> recon = 2 / 4 = 0.5
#   mu     d0: [0.5, 0]   d1: [1, 0]          lambda d0: [0.5, 0.5] d1: [0, 0.5]
#   (mu - lambda)^2 = 0, 0.25, 1, 0.25
#   log sigma^2 d0: [0, ln 2] d1: [0, 0]      sigma^2 = 1, 2, 1, 1
#   1 + log sigma^2 - (mu - lambda)^2 - sigma^2 = 0, ln 2 - 1.25, -1, -0.25   (sum ln 2 - 2.5)
#   KL = -1/2 * (ln 2 - 2.5) / 4 = (2.5 - ln 2) / 8 = 0.2258566
#   total = 0.5 + 0.1 * 0.2258566 = 0.5225857
def _hand_case():
    def seq(d0, d1, garbage):
        return torch.tensor([[d0 + [garbage], d1 + [garbage]]])

    x = seq([1.0, 0.0], [0.5, 2.0], 7.0)
    recon = seq([0.0, 0.0], [0.5, 1.0], -3.0)
    mu = seq([0.5, 0.0], [1.0, 0.0], 5.0)
    logvar = seq([0.0, math.log(2.0)], [0.0, 0.0], 2.0)
    lam = seq([0.5, 0.5], [0.0, 0.5], 0.9)
    mask = torch.tensor([[True, True, False]])
    return x, recon, mu, logvar, lam, mask


def test_cvae_loss_hand_worked_value_and_padding_does_not_count():
    x, recon, mu, logvar, lam, mask = _hand_case()
    total, terms = cvae_loss(x, recon, mu, logvar, lam, mask)
    kl = (2.5 - math.log(2.0)) / 8
    assert terms["recon"].item() == pytest.approx(0.5, abs=1e-6)
    assert terms["kl"].item() == pytest.approx(kl, abs=1e-6)
    assert total.item() == pytest.approx(0.5 + 0.1 * kl, abs=1e-6)
    assert cvae_loss(x, recon, mu, logvar, lam, mask, kl_weight=2.0)[0].item() == pytest.approx(0.5 + 2 * kl, abs=1e-6)
    # Counting the padded step would change both terms.
    all_valid = torch.ones_like(mask)
    _, with_padding = cvae_loss(x, recon, mu, logvar, lam, all_valid)
    assert with_padding["recon"].item() != pytest.approx(0.5, abs=1e-3)
    assert with_padding["kl"].item() != pytest.approx(kl, abs=1e-3)


def test_kl_is_zero_when_the_posterior_is_the_prior():
    lam = torch.rand(2, 3, 4, generator=_gen())
    zeros = torch.zeros_like(lam)
    _, terms = cvae_loss(zeros, zeros, lam.clone(), zeros, lam, torch.ones(2, 4, dtype=torch.bool))
    assert terms["kl"].item() == pytest.approx(0.0, abs=1e-7)


def test_reconstruction_loss_is_pooled_over_the_valid_elements_of_the_batch():
    x, recon, *_, mask = _hand_case()
    assert reconstruction_loss(x, recon, mask).item() == pytest.approx(0.5, abs=1e-6)
    # A second video with one valid step and no error: squares 2 over 4 + 2 = 6 valid elements -> 1/3
    # (a mean of the per-video means would give (0.5 + 0) / 2 = 0.25).
    x2 = torch.cat([x, torch.tensor([[[1.0, 9.0, 9.0], [2.0, 9.0, 9.0]]])])
    recon2 = torch.cat([recon, torch.tensor([[[1.0, 0.0, 0.0], [2.0, 0.0, 0.0]]])])
    mask2 = torch.tensor([[True, True, False], [True, False, False]])
    assert reconstruction_loss(x2, recon2, mask2).item() == pytest.approx(1 / 3, abs=1e-6)


def test_reconstruction_weight_ramps_to_half():
    assert reconstruction_weight(0, 300) == 0.0
    assert reconstruction_weight(150, 300) == pytest.approx(0.25)
    assert reconstruction_weight(300, 300) == pytest.approx(0.5)
    assert reconstruction_weight(4, 16, final=1.0) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="max_epoch must be positive"):
        reconstruction_weight(0, 0)
    with pytest.raises(ValueError, match="epoch must lie in"):
        reconstruction_weight(17, 16)


# --------------------------------------------------------------------------------------------------
# Attended features
# --------------------------------------------------------------------------------------------------


def test_attended_features_equal_the_formula_in_every_mode():
    x, mask = _sequences([6, 3], 6, seed=1)
    lam = torch.rand(2, D, 6, generator=_gen(2)) * mask[:, None, :]
    lengths = [6, 3]
    valid_lam = [lam[b, :, :n] for b, n in enumerate(lengths)]
    batch_fg = sum(v.sum() for v in valid_lam)
    batch_bg = sum((1 - v).sum() for v in valid_lam)
    for mode in ("batch", "video", "none"):
        fg, bg = attended_features(x, lam, mask, normalise=mode)
        for b, n in enumerate(lengths):
            xb, lb = x[b, :, :n], lam[b, :, :n]
            s_fg, s_bg = {"batch": (batch_fg, batch_bg), "video": (lb.mean(), (1 - lb).mean()), "none": (1, 1)}[mode]
            torch.testing.assert_close(fg[b, :, :n], xb * lb / s_fg)
            torch.testing.assert_close(bg[b, :, :n], xb * (1 - lb) / s_bg)
            assert (fg[b, :, n:] == 0).all() and (bg[b, :, n:] == 0).all(), mode


def test_constant_lambda_hand_values():
    # lambda = 1/4 everywhere: "video" gives x * (1/4) / (1/4) = x and x * (3/4) / (3/4) = x;
    # "batch" over N = 16 * 5 valid elements gives x / N twice; "none" gives x / 4 and 3x / 4.
    x, mask = _sequences([5], 5, seed=3)
    lam = torch.full_like(x, 0.25)
    fg, bg = attended_features(x, lam, mask, "video")
    torch.testing.assert_close(fg, x)
    torch.testing.assert_close(bg, x)
    fg, bg = attended_features(x, lam, mask, "batch")
    torch.testing.assert_close(fg, x / 80)
    torch.testing.assert_close(bg, x / 80)
    fg, bg = attended_features(x, lam, mask, "none")
    torch.testing.assert_close(fg, x / 4)
    torch.testing.assert_close(bg, 3 * x / 4)


def test_video_normalisation_is_batch_independent_and_batch_normalisation_is_not():
    x, mask = _sequences([5, 4], 5, seed=4)
    lam = torch.rand(2, D, 5, generator=_gen(5)) * mask[:, None, :]
    alone = {mode: attended_features(x[:1], lam[:1], mask[:1], mode) for mode in ("video", "batch")}
    together = {mode: attended_features(x, lam, mask, mode) for mode in ("video", "batch")}
    for part in (0, 1):
        torch.testing.assert_close(together["video"][part][:1], alone["video"][part])
        assert not torch.allclose(together["batch"][part][:1], alone["batch"][part])


def test_a_video_without_valid_steps_gives_zero_features():
    x, mask = _sequences([3, 0], 3)
    lam = torch.rand(2, D, 3, generator=_gen()) * mask[:, None, :]
    fg, bg = attended_features(x, lam, mask, "video")
    assert torch.isfinite(fg).all() and (fg[1] == 0).all() and (bg[1] == 0).all()


# --------------------------------------------------------------------------------------------------
# The lambda head
# --------------------------------------------------------------------------------------------------


def test_lambda_is_in_the_unit_interval_and_zero_at_padding():
    torch.manual_seed(0)
    head = FrameAttention(D, HIDDEN)
    x, mask = _sequences([7, 4], 7, seed=6)
    lam = head(x, mask)
    assert lam.shape == x.shape
    valid = mask[:, None, :].expand_as(lam)
    assert (lam[valid] > 0).all() and (lam[valid] < 1).all()
    assert (lam[~valid] == 0).all()


def test_padding_and_other_videos_never_change_lambda():
    torch.manual_seed(0)
    head = FrameAttention(D, HIDDEN)
    x, mask = _sequences([8, 5], 8, seed=7)
    lam = head(x, mask)
    padded_x, padded_mask = _pad(x, mask, 4)
    torch.testing.assert_close(head(padded_x, padded_mask)[:, :, :8], lam)
    # Video 1 alone, cut to its length, with different garbage in its padding: the same lambda.
    torch.testing.assert_close(head(x[1:, :, :5], mask[1:, :5]), lam[1:, :, :5])


def test_lambda_at_a_step_sees_the_whole_cine():
    # The convolutions reach 2 steps each side; only the context term carries step 0 to step 11.
    torch.manual_seed(0)
    head = FrameAttention(D, HIDDEN)
    x, mask = _sequences([12], 12, seed=8)
    changed = x.clone()
    changed[:, :, 0] += 1.0
    assert not torch.allclose(head(changed, mask)[:, :, 11], head(x, mask)[:, :, 11])
    head.context.weight.data.zero_()
    torch.testing.assert_close(head(changed, mask)[:, :, 11], head(x, mask)[:, :, 11])


# --------------------------------------------------------------------------------------------------
# The CVAE
# --------------------------------------------------------------------------------------------------


def _cvae_and_inputs(lengths=(6, 4), steps=6):
    torch.manual_seed(0)
    cvae = ConditionalVAE(D, HIDDEN)
    x, mask = _sequences(list(lengths), steps, seed=9)
    lam = torch.rand(x.shape, generator=_gen(10)) * mask[:, None, :]
    return cvae, x, lam, mask


def test_cvae_outputs_are_padding_invariant_with_a_fixed_generator():
    cvae, x, lam, mask = _cvae_and_inputs()
    outputs = cvae(x, lam, mask, _gen(3))
    padded_x, padded_mask = _pad(x, mask, 3)
    padded_lam, _ = _pad(lam, mask, 3, value=0.3)
    for a, b in zip(cvae(padded_x, padded_lam, padded_mask, _gen(3)), outputs):
        torch.testing.assert_close(a[:, :, :6], b)
        assert (a[:, :, 6:] == 0).all()
    for a, b in zip(cvae.reconstruct_from_attention(padded_lam, padded_mask, _gen(4)),
                    cvae.reconstruct_from_attention(lam, mask, _gen(4))):
        torch.testing.assert_close(a[:, :6], b)
    for out in outputs:
        assert (out[1, :, 4:] == 0).all()  # video 1's padded steps


def test_the_same_seed_gives_the_same_reconstruction_and_another_seed_does_not():
    cvae, x, lam, mask = _cvae_and_inputs()
    torch.testing.assert_close(cvae(x, lam, mask, _gen(1))[0], cvae(x, lam, mask, _gen(1))[0])
    assert not torch.allclose(cvae(x, lam, mask, _gen(1))[0], cvae(x, lam, mask, _gen(2))[0])
    once = cvae.reconstruct_from_attention(lam, mask, _gen(1))
    torch.testing.assert_close(cvae.reconstruct_from_attention(lam, mask, _gen(1)), once)
    assert not torch.allclose(cvae.reconstruct_from_attention(lam, mask, _gen(2)), once)


def test_cvae_samples_z_as_mu_plus_sigma_eps_and_reconstructs_from_lambda_plus_eps():
    cvae, x, lam, mask = _cvae_and_inputs(lengths=(6, 6))
    eps = torch.randn(12, D, generator=_gen(5)).view(2, 6, D).transpose(1, 2)  # (video, step) order
    recon, mu, logvar = cvae(x, lam, mask, _gen(5))
    torch.testing.assert_close(recon, cvae.decode(mu + torch.exp(0.5 * logvar) * eps, lam, mask))
    torch.testing.assert_close(cvae.reconstruct_from_attention(lam, mask, _gen(5)), cvae.decode(lam + eps, lam, mask))
    # The encoder is per step: mu at a step is the MLP of [x_t ; lambda_t].
    row = cvae.encoder(torch.cat([x[0, :, 2], lam[0, :, 2]]))
    torch.testing.assert_close(mu[0, :, 2], row[:D])
    torch.testing.assert_close(logvar[0, :, 2], row[D:])


# --------------------------------------------------------------------------------------------------
# The module: outputs, maps, gradients, training
# --------------------------------------------------------------------------------------------------


def test_forward_composes_the_parts_and_captures_detached_maps():
    model = _model()
    x, mask = _sequences([5, 3], 5, seed=11)
    out = model(x, mask, return_attention=True, generator=_gen(6))
    lam = model.lambda_head(x, mask)
    torch.testing.assert_close(out.lam, lam)
    fg, bg = attended_features(x, lam, mask, "video")
    torch.testing.assert_close(out.foreground, fg)
    torch.testing.assert_close(out.background, bg)
    torch.testing.assert_close(out.recon, model.cvae.reconstruct_from_attention(lam, mask, _gen(6)))

    expected = {"GAF.lambda": out.lam, "GAF.foreground": fg, "GAF.background": bg, "GAF.reconstruction": out.recon}
    assert set(out.attention) == set(expected) | {"GAF.lambda_mean"} == set(out.kinds)
    for name, value in expected.items():
        captured = out.attention[name]
        assert captured.shape == (2, 5, S, S) and not captured.requires_grad
        # Step t's map is the row-major S x S view of that step's D features.
        torch.testing.assert_close(captured[1, 2], value[1, :, 2].reshape(S, S))
    torch.testing.assert_close(out.attention["GAF.lambda_mean"], out.lam.mean(dim=1))
    assert out.kinds["GAF.lambda"] == MapKind("step", UNIT_RANGE)
    assert out.kinds["GAF.lambda_mean"] == MapKind("curve", UNIT_RANGE)
    assert all(out.kinds[n] == MapKind("step", None) for n in ("GAF.foreground", "GAF.background", "GAF.reconstruction"))

    plain = model(x, mask, generator=_gen(6))
    assert plain.attention is None and plain.kinds is None


@pytest.mark.parametrize("normalise", ["video", "batch"])
def test_foreground_is_padding_invariant(normalise):
    model = _model(normalise=normalise)
    x, mask = _sequences([6, 4], 6, seed=12)
    out = model(x, mask, generator=_gen(7))
    padded = model(*_pad(x, mask, 5), generator=_gen(7))
    for a, b in zip(padded[:4], out[:4]):
        torch.testing.assert_close(a[:, :, :6], b)


def test_parameter_groups_split_the_module():
    model = _model()
    head, cvae = model.attention_parameters(), model.cvae_parameters()
    assert {id(p) for p in head}.isdisjoint(id(p) for p in cvae)
    assert {id(p) for p in head} | {id(p) for p in cvae} == {id(p) for p in model.parameters()}


def test_detector_phase_losses_reach_every_lambda_head_parameter():
    model = _model()
    x, mask = _sequences([6, 4], 6, seed=13)
    out = model(x, mask, generator=_gen(8))
    weights = torch.randn(x.shape, generator=_gen(9))  # a stand-in for the detector's loss on the foreground
    ((out.foreground * weights).sum() + reconstruction_loss(x, out.recon, mask)).backward()
    for name, p in model.lambda_head.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_cvae_step_loss_trains_the_cvae_only():
    model = _model()
    x, mask = _sequences([6, 4], 6, seed=14)
    loss, terms = model.cvae_step_loss(x, mask, _gen(10))
    assert set(terms) == {"recon", "kl"}
    loss.backward()
    for name, p in model.cvae.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert all(p.grad is None for p in model.attention_parameters())


def test_cvae_step_loss_equals_cvae_loss_on_the_detached_lambda():
    model = _model(kl_weight=0.3)
    x, mask = _sequences([5], 5, seed=15)
    loss, _ = model.cvae_step_loss(x, mask, _gen(11))
    lam = model.lambda_head(x, mask).detach()
    recon, mu, logvar = model.cvae(x, lam, mask, _gen(11))
    torch.testing.assert_close(loss, cvae_loss(x, recon, mu, logvar, lam, mask, kl_weight=0.3)[0])


def test_a_tiny_cvae_overfits_two_sequences():
    # Two cine-like sequences of 8 x 8 maps: a faint background plus a vessel pattern whose contrast rises
    # and falls (one number per step). The loss is measured with the same four fresh eps draws before and
    # after training, so a lucky draw cannot pass. (On i.i.d. uniform features the CVAE only learns the
    # mean in 200 steps -- the KL price of using z is too high -- and the loss falls ~5x.)
    dim = 64
    g = _gen(16)
    background, vessels = 0.2 * torch.rand(dim, generator=g), (torch.rand(dim, generator=g) > 0.5).float()
    contrast = torch.tensor([[0.0, 0.3, 0.8, 1.0, 0.6, 0.2], [0.1, 0.9, 0.5, 0.0, 0.0, 0.0]])
    x = background[None, :, None] + vessels[None, :, None] * contrast[:, None, :]
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    torch.manual_seed(0)
    model = GenerativeAttention(dim, hidden=16)

    def loss_on_fixed_draws():
        with torch.no_grad():
            return sum(model.cvae_step_loss(x, mask, _gen(100 + k))[0].item() for k in range(4)) / 4

    before = loss_on_fixed_draws()
    optimiser = torch.optim.Adam(model.cvae_parameters(), lr=3e-3)
    generator = _gen(12)
    for _ in range(200):
        loss, _ = model.cvae_step_loss(x, mask, generator)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    after = loss_on_fixed_draws()
    assert after < before / 10, (before, after)


# --------------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------------


def test_bad_inputs_are_clear_errors():
    model = _model()
    x, mask = _sequences([4, 2], 4)
    lam = torch.rand(x.shape)
    with pytest.raises(ValueError, match=r"x must be \(B, D, T\)"):
        model(x[0], mask)
    with pytest.raises(ValueError, match="16 features per step"):
        model(x[:, :9], mask)
    with pytest.raises(ValueError, match=r"mask must be \(B, T\) = \(2, 4\)"):
        model(x, mask[:, :3])
    with pytest.raises(ValueError, match=r"mask must be \(B, T\)"):
        model.cvae_step_loss(x, mask[:1])
    with pytest.raises(ValueError, match="mask must be a bool tensor"):
        model(x, mask.float())
    with pytest.raises(ValueError, match="lam must have the shape of x"):
        model.cvae(x, lam[:, :, :3], mask)
    with pytest.raises(ValueError, match="lam must have 16 features per step"):
        model.cvae.reconstruct_from_attention(lam[:, :8], mask)
    with pytest.raises(ValueError, match="normalise must be one of batch, video, none, got 'sum'"):
        attended_features(x, lam, mask, normalise="sum")
    with pytest.raises(ValueError, match="normalise must be one of"):
        GenerativeAttention(D, hidden=HIDDEN, normalise="global")
    with pytest.raises(ValueError, match="feature_dim must be a square"):
        GenerativeAttention(15)
    with pytest.raises(ValueError, match="recon must have the shape of x"):
        reconstruction_loss(x, x[:, :, :2], mask)
    with pytest.raises(ValueError, match="logvar must have the shape of x"):
        cvae_loss(x, x, x, x[:1], x, mask)
    with pytest.raises(ValueError, match="no valid step"):
        reconstruction_loss(x, x, torch.zeros_like(mask))
