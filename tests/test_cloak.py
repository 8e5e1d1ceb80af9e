"""The noise module, suppression, the cloak file and the gradient-reversal layer."""

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from sercloak.cloak import Cloak, CloakConfig, reverse_gradient
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
