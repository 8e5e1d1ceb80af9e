"""The cloak: learned noise injection φ(x) on the client's log-mel features.

    φ(x)   = x + σ·ε + μ                         (perturbation stage)
    φ_s(x) = x·m + σ·ε·m + μ_s                   (after suppression)

with ε ~ N(0, 1) drawn afresh on every call, σ = σ_min + (σ_max − σ_min)·(1 +
tanh ρ)/2, and m the mask that is 0 on the SR% of features with the largest
σ (the least useful to the emotion model, Cloak's insight) and 1 elsewhere.

Units. The noise lives in the standardised space of the emotion model f_θ
(each mel bin divided by its standard deviation over the training speakers),
so σ = 1 means noise as large as a bin's natural spread whatever the corpus'
recording level. The cloak takes and returns dB features, so any model
(f_θ, an attacker) reads cloaked features exactly as it reads clean ones.

Shapes. ``mel``: one μ and σ per mel bin, the same for every frame, so the
cloak applies to utterances of any length and to a stream, frame by frame.
``cell``: one per time–frequency cell of the 2 s window (the published code).

Initialisation. The paper initialises ρ = −10, where tanh is saturated: the
gradient reaching ρ is about 1e-8 of what it would be at 0, and σ never moves.
Here ρ starts at −1 (σ at 12% of its range, tanh' = 0.42), which learns.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .features import FeatureConfig

CLOAK_FORMAT = "sercloak.cloak/1"


@dataclass(frozen=True)
class CloakConfig:
    shape: str = "mel"  # "mel" (per mel bin) or "cell" (per cell of the 2 s window)
    sigma_min: float = 0.0
    sigma_max: float = 5.0  # in standard deviations of each mel bin
    rho_init: float = -1.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> CloakConfig:
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})


class Cloak(nn.Module):
    """φ as a module: dB features (batch, frames, mels) in, cloaked dB features out."""

    def __init__(self, cfg: CloakConfig, feat_mean: torch.Tensor, feat_std: torch.Tensor,
                 n_frames: int = 200):
        super().__init__()
        if cfg.shape not in ("mel", "cell"):
            raise ValueError(f"cloak shape must be 'mel' or 'cell', not {cfg.shape!r}")
        self.cfg = cfg
        n_mels = feat_mean.numel()
        shape = (n_mels,) if cfg.shape == "mel" else (n_frames, n_mels)
        self.mu = nn.Parameter(torch.zeros(shape))
        self.rho = nn.Parameter(torch.full(shape, float(cfg.rho_init)))
        self.mu_s = nn.Parameter(torch.zeros(shape))  # suppression values, used once masked
        self.register_buffer("mask", torch.ones(shape))  # 1 = kept, 0 = suppressed
        self.register_buffer("suppressed", torch.tensor(False))
        self.register_buffer("feat_mean", feat_mean.detach().clone().float())
        self.register_buffer("feat_std", feat_std.detach().clone().float())

    def sigma(self) -> torch.Tensor:
        lo, hi = self.cfg.sigma_min, self.cfg.sigma_max
        return lo + (hi - lo) * (1 + torch.tanh(self.rho)) / 2

    def information_loss(self) -> torch.Tensor:
        """L_c = −mean(log σ²): small when σ is large, i.e. little of x gets through."""
        return -torch.log(self.sigma().square() + 1e-12).mean()

    @property
    def suppression_ratio(self) -> float:
        """Percent of features suppressed (0 before `suppress`)."""
        return 100.0 * float((self.mask == 0).float().mean())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x - self.feat_mean) / self.feat_std
        noise = self.sigma() * torch.randn_like(z)
        if self.suppressed:
            z = (z + noise) * self.mask + self.mu_s
        else:
            z = z + noise + self.mu
        return z * self.feat_std + self.feat_mean

    @torch.no_grad()
    def suppress(self, ratio: float) -> None:
        """Mask the `ratio` percent of features with the largest σ; μ_s starts from μ.

        (The published code's evaluation masked at percentile SR instead of
        100 − SR, suppressing the complementary set; topk avoids percentiles.)
        """
        if not 0 <= ratio < 100:
            raise ValueError(f"suppression ratio must be in [0, 100), not {ratio}")
        sigma = self.sigma().flatten()
        k = int(round(ratio / 100 * sigma.numel()))
        mask = torch.ones_like(sigma)
        mask[torch.topk(sigma, k).indices] = 0
        self.mask.copy_(mask.view_as(self.mask))
        self.mu_s.copy_(self.mu)
        self.suppressed.fill_(True)

    # -- the cloak file: numpy arrays + JSON, no pickle ---------------------------------

    def save(self, path: Path | str, feature_cfg: FeatureConfig, extra: dict | None = None) -> None:
        meta = {"format": CLOAK_FORMAT, "cloak_config": self.cfg.to_dict(),
                "feature_config": feature_cfg.to_dict(), "suppressed": bool(self.suppressed),
                "suppression_ratio": self.suppression_ratio, **(extra or {})}
        arrays = {k: v.detach().cpu().numpy() for k, v in
                  [("mu", self.mu), ("rho", self.rho), ("sigma", self.sigma()),
                   ("mu_s", self.mu_s), ("mask", self.mask), ("feat_mean", self.feat_mean),
                   ("feat_std", self.feat_std)]}
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, meta=np.array(json.dumps(meta)), **arrays)
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path | str, feature_cfg: FeatureConfig | None = None) -> Cloak:
        """Load a cloak file exactly; refuse one made for other feature settings."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as f:
                arrays = {k: f[k] for k in f.files}
            meta = json.loads(str(arrays.pop("meta")))
        except Exception as err:
            raise ValueError(f"{path}: not a readable cloak file ({err})") from err
        if meta.get("format") != CLOAK_FORMAT:
            raise ValueError(f"{path}: not a {CLOAK_FORMAT} file")
        if feature_cfg is not None and not feature_cfg.matches(meta["feature_config"]):
            raise ValueError(
                f"{path} was made for other features (ours != its: "
                f"{feature_cfg.describe_mismatch(meta['feature_config'])})"
            )
        saved = FeatureConfig.from_dict(meta["feature_config"])
        cloak = cls(CloakConfig.from_dict(meta["cloak_config"]),
                    torch.from_numpy(arrays["feat_mean"]), torch.from_numpy(arrays["feat_std"]),
                    n_frames=saved.segment_frames)
        with torch.no_grad():
            for name in ("mu", "rho", "mu_s", "mask"):
                getattr(cloak, name).copy_(torch.from_numpy(arrays[name]))
            cloak.suppressed.fill_(meta["suppressed"])
            if not np.allclose(cloak.sigma().numpy(), arrays["sigma"], rtol=1e-5, atol=1e-6):
                raise ValueError(f"{path}: its σ does not follow from its ρ and σ range")
        cloak.meta = meta
        return cloak


class GradientReversal(torch.autograd.Function):
    """Identity forward; multiplies the gradient by −α backward (Ganin & Lempitsky)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, alpha: float) -> torch.Tensor:
        ctx.alpha = alpha
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.alpha * grad, None


def reverse_gradient(x: torch.Tensor, alpha: float = 0.1) -> torch.Tensor:
    return GradientReversal.apply(x, alpha)
