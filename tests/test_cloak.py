"""The noise module, suppression, the cloak file and the gradient-reversal layer."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from sercloak.augment import warp_by
from sercloak.cloak import Cloak, CloakConfig, reverse_gradient
from sercloak.cloak.saliency import gender_over_emotion
from sercloak.corpora import Utterance
from sercloak.data import SegmentSet
from sercloak.features import FeatureConfig
from sercloak.models import CnnRnn

MEAN, STD = torch.full((128,), -30.0), torch.full((128,), 12.0)


def make(shape="mel", **kw) -> Cloak:
    return Cloak(CloakConfig(shape=shape, **kw), MEAN, STD)


@pytest.mark.parametrize("shape, param_shape", [("mel", (128,)), ("cell", (200, 128))])
def test_shapes_and_sigma_range(shape, param_shape):
    cloak = make(shape, sigma_min=0.5, sigma_max=3.0)
    assert cloak.mu.shape == cloak.rho.shape == param_shape
    with torch.no_grad():
        cloak.rho.copy_(torch.linspace(-50, 50, cloak.rho.numel()).view(param_shape))
    sigma = cloak.sigma().detach()
    assert sigma.min() >= 0.5 and sigma.max() <= 3.0
    assert sigma.min().item() == pytest.approx(0.5) and sigma.max().item() == pytest.approx(3.0)
    x = torch.randn(2, 200, 128)
    assert cloak(x).shape == x.shape


def test_noise_is_fresh_on_every_call_and_in_standardised_units():
    cloak = make(rho_init=0.0, sigma_max=2.0)  # σ = 1 everywhere
    x = torch.zeros(64, 200, 128)
    a, b = cloak(x), cloak(x)
    assert not torch.equal(a, b)
    # σ = 1 standardised unit = one STD (12 dB) around the mean offset of x
    assert ((a - x) / STD).std().item() == pytest.approx(1.0, abs=0.01)


def test_gradients_reach_mu_and_rho_and_minus_ten_is_saturated():
    model = CnnRnn(4).eval()
    x, y = torch.randn(4, 200, 128) * 12 - 30, torch.tensor([0, 1, 2, 3])
    grads = {}
    for rho_init in (-1.0, -10.0):
        torch.manual_seed(0)
        cloak = Cloak(CloakConfig(rho_init=rho_init), model.feat_mean, model.feat_std)
        loss = F.cross_entropy(model(cloak(x)), y) + 0.1 * cloak.information_loss()
        loss.backward()
        assert cloak.mu.grad.abs().sum() > 0
        grads[rho_init] = cloak.rho.grad.abs().mean().item()
    assert grads[-1.0] > 0
    assert grads[-10.0] < 1e-6 * grads[-1.0]  # the paper's init cannot learn


@pytest.mark.parametrize("shape", ["mel", "cell"])
@pytest.mark.parametrize("ratio", [20, 40, 60])
def test_mask_fraction_equals_sr_and_masks_the_largest_sigma(shape, ratio):
    cloak = make(shape)
    with torch.no_grad():
        cloak.rho.normal_()
        cloak.mu.normal_()
    cloak.suppress(ratio)
    n = cloak.mask.numel()
    assert int((cloak.mask == 0).sum()) == round(ratio / 100 * n)
    assert cloak.suppression_ratio == pytest.approx(ratio, abs=100 / n)
    sigma = cloak.sigma()
    assert sigma[cloak.mask == 0].min() >= sigma[cloak.mask == 1].max()
    assert torch.equal(cloak.mu_s, cloak.mu)


def test_suppressed_features_carry_nothing_of_x():
    cloak = make("cell")
    cloak.suppress(60)
    x1, x2 = torch.randn(1, 200, 128) * 12, torch.randn(1, 200, 128) * 12
    torch.manual_seed(3)
    out1 = cloak(x1)
    torch.manual_seed(3)
    out2 = cloak(x2)
    masked = (cloak.mask == 0).expand_as(out1)
    assert torch.equal(out1[masked], out2[masked])  # only μ_s there
    assert not torch.equal(out1[~masked], out2[~masked])


def test_cloak_file_round_trip_and_refusals(tmp_path):
    cloak = make("cell", sigma_max=4.0)
    with torch.no_grad():
        cloak.rho.normal_()
        cloak.mu.normal_()
    cloak.suppress(40)
    with torch.no_grad():
        cloak.mu_s.add_(1.0)
    cloak.save(tmp_path / "c.npz", FeatureConfig(), extra={"fold": 2})
    back = Cloak.load(tmp_path / "c.npz", FeatureConfig())
    for name in ("mu", "rho", "mu_s", "mask", "feat_mean", "feat_std"):
        assert torch.equal(getattr(back, name), getattr(cloak, name)), name
    assert torch.equal(back.sigma(), cloak.sigma()) and bool(back.suppressed)
    assert back.cfg == cloak.cfg and back.meta["fold"] == 2
    x = torch.randn(2, 200, 128)
    torch.manual_seed(0)
    a = cloak(x)
    torch.manual_seed(0)
    assert torch.equal(back(x), a)
    # no pickle inside: plain arrays and a JSON string
    with np.load(tmp_path / "c.npz", allow_pickle=False) as f:
        assert "meta" in f.files and f["mask"].dtype == np.float32
    with pytest.raises(ValueError, match="n_mels: 64 != 128"):
        Cloak.load(tmp_path / "c.npz", FeatureConfig(n_mels=64))
    (tmp_path / "bad.npz").write_bytes(b"junk")
    with pytest.raises(ValueError, match="bad.npz"):
        Cloak.load(tmp_path / "bad.npz")


def test_tampered_sigma_range_is_refused(tmp_path):
    """The published code rebuilt σ with another σ_max at evaluation; we refuse that."""
    cloak = make(sigma_max=5.0)
    cloak.save(tmp_path / "c.npz", FeatureConfig())
    with np.load(tmp_path / "c.npz", allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    arrays["meta"] = np.array(str(arrays["meta"]).replace('"sigma_max": 5.0', '"sigma_max": 2.0'))
    np.savez(tmp_path / "t.npz", **arrays)
    with pytest.raises(ValueError, match="σ does not follow"):
        Cloak.load(tmp_path / "t.npz")


def test_gradient_reversal_sign_and_scale():
    x = torch.randn(5, requires_grad=True)
    y = reverse_gradient(x, 0.1)
    assert torch.equal(y, x)
    (y * torch.arange(5.0)).sum().backward()
    assert torch.allclose(x.grad, -0.1 * torch.arange(5.0))


# -- the temporal kind: a learned offset per 2 s window that does not average out ----------


def temporal(**kw) -> Cloak:
    cloak = make(kind="temporal", sigma_max=2.0, **kw)
    with torch.no_grad():
        cloak.rho.fill_(-30.0)  # σ ≈ 0: only the offset is left
        cloak.rho_offset.fill_(0.0)  # τ = 1
    return cloak


def test_temporal_offset_is_constant_within_a_window_and_fresh_across_windows():
    cloak = temporal()
    x = torch.zeros(8, 450, 128)  # 2 full windows of 200 frames and a partial one
    offset = (cloak(x) - x - MEAN) / STD
    for lo, hi in ((0, 200), (200, 400), (400, 450)):
        window = offset[:, lo:hi]
        assert torch.allclose(window, window[:, :1].expand_as(window), atol=1e-5)
    assert not torch.allclose(offset[:, 0], offset[:, 200])
    # τ = 1 standardised unit: per window, per bin, across draws
    assert offset[:, ::200].std().item() == pytest.approx(1.0, abs=0.1)


def test_temporal_offset_survives_averaging_over_an_utterance_and_frame_noise_does_not():
    x = torch.zeros(256, 200, 128)
    noise_only = make(rho_init=0.0, sigma_max=2.0)  # σ = 1, drawn per frame
    utterance_mean = ((noise_only(x) - MEAN) / STD).mean(dim=1)
    assert utterance_mean.std().item() < 0.1  # ≈ 1/√200
    utterance_mean = ((temporal()(x) - MEAN) / STD).mean(dim=1)
    assert utterance_mean.std().item() == pytest.approx(1.0, abs=0.05)


def test_temporal_scale_is_learned_saved_and_counted_in_the_mask(tmp_path):
    cloak = temporal()
    assert any(p is cloak.rho_offset for p in cloak.parameters_to_learn())
    assert len(make().parameters_to_learn()) == 2 and len(cloak.parameters_to_learn()) == 3
    cloak.information_loss().backward()
    assert cloak.rho_offset.grad.abs().sum() > 0
    with torch.no_grad():  # τ large on the first 32 bins: those are the least useful
        cloak.rho_offset[:32] = 5.0
    cloak.suppress(25)
    assert (cloak.mask[:32] == 0).all() and (cloak.mask[32:] == 1).all()
    cloak.save(tmp_path / "t.npz", FeatureConfig())
    back = Cloak.load(tmp_path / "t.npz", FeatureConfig())
    assert back.cfg.kind == "temporal"
    assert torch.equal(back.offset_sigma(), cloak.offset_sigma().detach())


def test_temporal_kind_needs_the_mel_shape_and_unknown_kinds_are_refused():
    with pytest.raises(ValueError, match="use shape 'mel'"):
        make("cell", kind="temporal")
    with pytest.raises(ValueError, match="unknown cloak kind 'wobble'"):
        make(kind="wobble")
    assert torch.equal(make().offset_sigma(), torch.zeros(128))


def test_cloak_files_from_before_the_temporal_kind_are_refused_with_what_to_do(tmp_path):
    cloak = make(rho_init=0.3)
    cloak.save(tmp_path / "c.npz", FeatureConfig())
    with np.load(tmp_path / "c.npz", allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files if k not in ("rho_offset", "offset_sigma")}
    meta = json.loads(str(arrays["meta"]))
    del meta["cloak_config"]["kind"]
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(tmp_path / "old.npz", **arrays)
    with pytest.raises(ValueError, match=r"old\.npz: cloak settings from another version of "
                                         r"sercloak \(missing \['kind'\]\): delete it"):
        Cloak.load(tmp_path / "old.npz", FeatureConfig())


# -- issue 10: warping, the saliency mask, the file format of every kind -------------------


def test_warp_is_the_identity_at_factor_one_and_moves_spectra_otherwise():
    x = torch.randn(3, 200, 128)
    # exact up to rounding: float64 shows it, float32's grid coordinates round at ~1e-4
    ones = torch.ones(3, dtype=torch.float64)
    assert torch.allclose(warp_by(x.double(), ones, ones), x.double(), atol=1e-10)
    assert torch.allclose(warp_by(x, torch.ones(3), torch.ones(3)), x, atol=1e-3)
    # a peak at bin 60 moves down the mel axis when stretched by 1.2 (bin f reads f * 1.2)
    peak = torch.zeros(1, 200, 128)
    peak[..., 60] = 1.0
    moved = warp_by(peak, torch.ones(1), torch.full((1,), 1.2))
    assert moved[0, 0].argmax().item() == 50
    cloak = make(warp=0.2, rho_init=-50.0)  # σ ≈ 0: only the warp acts
    out = cloak(x * 12 - 30)
    assert out.shape == x.shape and not torch.allclose(out, x * 12 - 30, atol=1e-3)
    assert torch.allclose(make(warp=0.0, rho_init=-50.0)(x), x, atol=1e-4)


def test_warp_factors_are_drawn_per_item_within_the_range():
    cloak = make(warp=0.1, rho_init=-50.0)
    ramp = torch.linspace(0, 127, 128).expand(64, 200, 128).contiguous()  # value = bin index
    out = cloak(ramp)
    factors = out[:, 0, 1:100].diff(dim=-1).mean(-1)  # slope of the warped ramp = the factor
    assert factors.min() >= 0.9 - 1e-3 and factors.max() <= 1.1 + 1e-3
    assert factors.std() > 0.03  # different items, different factors
    # within an item, every frame has the same factor: one warp per utterance
    assert torch.allclose(out[:, 0], out[:, -1])


def test_mask_follows_given_scores_and_refuses_the_wrong_shape():
    cloak = make()
    scores = torch.zeros(128)
    scores[[3, 70, 100]] = 1.0
    cloak.suppress(100 * 3 / 128, scores)
    assert torch.nonzero(cloak.mask == 0).flatten().tolist() == [3, 70, 100]
    with pytest.raises(ValueError, match="mask scores of shape"):
        make().suppress(20, torch.zeros(5))


def test_saliency_scores_point_at_the_bins_that_carry_gender():
    """Gender lives in bins 10-13 and emotion in bins 40-43: the mask goes to 10-13."""
    torch.manual_seed(0)
    n = 256
    gender = torch.randint(0, 2, (n,))
    emotion = torch.randint(0, 4, (n,))
    x = torch.randn(n, 20, 128)  # short segments: the scores only need bins
    x[:, :, 10:14] += 2.0 * gender[:, None, None]
    x[:, :, 40:44] += 1.5 * emotion[:, None, None]
    genders = ("female", "male")
    utts = [Utterance(f"s:u{i}", "s", f"s:spk{i % 8}", genders[int(gender[i])], "happy",
                      Path("x.wav"), 2.0) for i in range(n)]
    data = SegmentSet(x=x, y=emotion, utt=torch.arange(n), speaker=torch.arange(n) % 8,
                      utterances=utts, speakers=[f"spk{i}" for i in range(8)],
                      labels=("neutral", "happy", "sad", "angry"))

    class EmotionProbe(torch.nn.Module):  # reads the emotion bins only, as f_θ would
        def forward(self, x):
            return x[:, :, 40:44].mean(dim=(1, 2))[:, None] * torch.arange(4.0) - torch.arange(
                4.0) ** 2 / 2 * 1.5

    cloak = Cloak(CloakConfig(rho_init=-50.0), torch.zeros(128), torch.ones(128))
    scores = gender_over_emotion(cloak, EmotionProbe(), data)
    assert set(scores.topk(4).indices.tolist()) == {10, 11, 12, 13}
    assert scores[40:44].max() < scores.median()


def test_cloak_file_carries_warp_and_mask_rule_and_refuses_unknown_kinds(tmp_path):
    cloak = make(kind="temporal", warp=0.15, mask_by="saliency")
    cloak.save(tmp_path / "c.npz", FeatureConfig())
    again = Cloak.load(tmp_path / "c.npz", FeatureConfig())
    assert again.cfg == cloak.cfg
    with np.load(tmp_path / "c.npz", allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(str(arrays["meta"]))
    meta["cloak_config"]["kind"] = "hologram"
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(tmp_path / "future.npz", **arrays)
    with pytest.raises(ValueError, match=r"future\.npz: unknown cloak kind 'hologram'"):
        Cloak.load(tmp_path / "future.npz", FeatureConfig())
    with pytest.raises(ValueError, match="unknown mask rule"):
        CloakConfig(mask_by="vibes")
    with pytest.raises(ValueError, match="warp must be"):
        CloakConfig(warp=1.5)
