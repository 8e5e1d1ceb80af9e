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

Kinds (`CloakConfig.kind`). ``noise`` is the paper's cloak above. Its noise
is drawn independently for every frame, so it averages out over an
utterance: the long-term spectrum, which carries gender, gets through.
``temporal`` adds a second learned component that does not average out:

    φ(x) = x + σ·ε + τ·η + μ,    η ~ N(0, 1) once per mel bin and 2 s window

one spectral offset per window (`n_frames` frames), held over the window's
frames, with τ = σ_min + (σ_max − σ_min)·(1 + tanh ρ_τ)/2 learned like σ and
masked like it after suppression. A 2 s training segment gets one offset;
an utterance of n windows gets n, so its mean spectrum keeps noise of
std τ/√n instead of σ/√(frames).

Warping (`CloakConfig.warp` > 0, any kind). Before the noise, the mel axis
of each utterance (each segment in training) is stretched by one random
factor drawn uniformly from [1 − warp, 1 + warp], anchored at 0 Hz, the
vocal-tract-length perturbation of `augment.warp_by`: wide enough, male and
female formant positions overlap. The emotion model is trained with the same
warp range (`TrainConfig.vtlp`), so it tolerates it. Factor 1 is the identity.

Suppression mask (`CloakConfig.mask_by`). ``sigma`` (the paper's): mask the
features with the largest noise. ``saliency``: mask those whose gender
saliency, relative to their emotion saliency, is largest (`cloak.saliency`).

Initialisation. The paper initialises ρ = −10, where tanh is saturated: the
gradient reaching ρ is about 1e-8 of what it would be at 0, and σ never moves.
Here ρ starts at −1 (σ at 12% of its range, tanh' = 0.42), which learns.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import cloakfile
from ..augment import warp_by
from ..features import FeatureConfig
from ..settings import from_fields

KINDS = ("noise", "temporal")
MASKS = ("sigma", "saliency")


@dataclass(frozen=True)
class CloakConfig:
    kind: str = "noise"  # "noise" (the paper's) or "temporal" (plus a per-window offset)
    shape: str = "mel"  # "mel" (per mel bin) or "cell" (per cell of the 2 s window)
    sigma_min: float = 0.0
    sigma_max: float = 5.0  # in standard deviations of each mel bin
    rho_init: float = -1.0
    warp: float = 0.0  # random mel-axis warp factor in [1 - warp, 1 + warp]; 0 = none
    mask_by: str = "sigma"  # what the suppression mask follows: "sigma" or "saliency"

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown cloak kind {self.kind!r} (known: {', '.join(KINDS)})")
        if self.shape not in ("mel", "cell"):
            raise ValueError(f"cloak shape must be 'mel' or 'cell', not {self.shape!r}")
        if self.kind == "temporal" and self.shape != "mel":
            raise ValueError("a temporal cloak has one offset per mel bin: use shape 'mel'")
        if self.mask_by not in MASKS:
            raise ValueError(f"unknown mask rule {self.mask_by!r} (known: {', '.join(MASKS)})")
        if not 0 <= self.warp < 1:
            raise ValueError(f"warp must be in [0, 1), not {self.warp}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> CloakConfig:
        return from_fields(cls, d, "cloak")


class Cloak(nn.Module):
    """φ as a module: dB features (batch, frames, mels) in, cloaked dB features out."""

    def __init__(self, cfg: CloakConfig, feat_mean: torch.Tensor, feat_std: torch.Tensor,
                 n_frames: int = 200):
        super().__init__()
        self.cfg, self.window = cfg, n_frames
        n_mels = feat_mean.numel()
        shape = (n_mels,) if cfg.shape == "mel" else (n_frames, n_mels)
        self.mu = nn.Parameter(torch.zeros(shape))
        self.rho = nn.Parameter(torch.full(shape, float(cfg.rho_init)))
        self.mu_s = nn.Parameter(torch.zeros(shape))  # suppression values, used once masked
        # τ's ρ: the temporal kind's per-window offset scale (None for the paper's kind)
        self.rho_offset = (nn.Parameter(torch.full(shape, float(cfg.rho_init)))
                           if cfg.kind == "temporal" else None)
        self.register_buffer("mask", torch.ones(shape))  # 1 = kept, 0 = suppressed
        self.register_buffer("suppressed", torch.tensor(False))
        self.register_buffer("feat_mean", feat_mean.detach().clone().float())
        self.register_buffer("feat_std", feat_std.detach().clone().float())

    def _scale(self, rho: torch.Tensor) -> torch.Tensor:
        lo, hi = self.cfg.sigma_min, self.cfg.sigma_max
        return lo + (hi - lo) * (1 + torch.tanh(rho)) / 2

    def sigma(self) -> torch.Tensor:
        """Std of the per-frame noise, in standard units of each mel bin."""
        return self._scale(self.rho)

    def offset_sigma(self) -> torch.Tensor:
        """τ: std of the temporal kind's per-window offset (zero for other kinds)."""
        if self.rho_offset is None:
            return torch.zeros_like(self.rho)
        return self._scale(self.rho_offset)

    def parameters_to_learn(self) -> list[nn.Parameter]:
        """What the perturbation stage trains: μ and the noise scales of this kind."""
        return [p for p in (self.mu, self.rho, self.rho_offset) if p is not None]

    def information_loss(self) -> torch.Tensor:
        """L_c = −mean(log σ²) (and of τ²): small when the noise is large, i.e. little of x
        gets through."""
        scales = [self._scale(rho) for rho in (self.rho, self.rho_offset) if rho is not None]
        return torch.stack([-torch.log(s.square() + 1e-12).mean() for s in scales]).mean()

    def noise(self, z: torch.Tensor) -> torch.Tensor:
        """A fresh draw of the additive noise for standardised features z (batch, frames, mels)."""
        noise = self.sigma() * torch.randn_like(z)
        if self.rho_offset is not None:
            batch, frames, mels = z.shape
            windows = -(-frames // self.window)
            eta = torch.randn(batch, windows, mels, device=z.device, dtype=z.dtype)
            noise = noise + self.offset_sigma() * eta.repeat_interleave(self.window, 1)[:, :frames]
        return noise

    @property
    def suppression_ratio(self) -> float:
        """Percent of features suppressed (0 before `suppress`)."""
        return 100.0 * float((self.mask == 0).float().mean())

    def warp(self, x: torch.Tensor) -> torch.Tensor:
        """Stretch each item's mel axis by a fresh random factor (identity when warp = 0)."""
        if self.cfg.warp == 0:
            return x
        factor = 1.0 + self.cfg.warp * (2.0 * torch.rand(x.shape[0], device=x.device) - 1.0)
        return warp_by(x, torch.ones_like(factor), factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (self.warp(x) - self.feat_mean) / self.feat_std
        noise = self.noise(z)
        if self.suppressed:
            z = (z + noise) * self.mask + self.mu_s
        else:
            z = z + noise + self.mu
        return z * self.feat_std + self.feat_mean

    @torch.no_grad()
    def suppress(self, ratio: float, scores: torch.Tensor | None = None) -> None:
        """Mask the `ratio` percent of features with the largest `scores` (default: the
        largest noise, Cloak's rule); μ_s starts from μ.

        (The published code's evaluation masked at percentile SR instead of
        100 − SR, suppressing the complementary set; topk avoids percentiles.)
        """
        if not 0 <= ratio < 100:
            raise ValueError(f"suppression ratio must be in [0, 100), not {ratio}")
        if scores is None:
            # with a temporal offset, its scale counts too: both say "emotion needs little here"
            scores = (self.sigma().square() + self.offset_sigma().square()).sqrt()
        if scores.shape != self.mask.shape:
            raise ValueError(f"mask scores of shape {tuple(scores.shape)}, the cloak's mask "
                             f"is {tuple(self.mask.shape)}")
        scores = scores.flatten().to(self.mask.device)
        k = int(round(ratio / 100 * scores.numel()))
        mask = torch.ones_like(scores)
        mask[torch.topk(scores, k).indices] = 0
        self.mask.copy_(mask.view_as(self.mask))
        self.mu_s.copy_(self.mu)
        self.suppressed.fill_(True)

    # -- the cloak file: numpy arrays + JSON, no pickle ---------------------------------

    def save(self, path: Path | str, feature_cfg: FeatureConfig, extra: dict | None = None) -> None:
        meta = {"cloak_config": self.cfg.to_dict(),
                "feature_config": feature_cfg.to_dict(), "suppressed": bool(self.suppressed),
                "suppression_ratio": self.suppression_ratio, **(extra or {})}
        arrays = {k: v.detach().cpu().numpy() for k, v in
                  [("mu", self.mu), ("rho", self.rho), ("sigma", self.sigma()),
                   ("mu_s", self.mu_s), ("mask", self.mask), ("feat_mean", self.feat_mean),
                   ("feat_std", self.feat_std)]}
        if self.rho_offset is not None:  # the temporal kind's τ
            arrays["rho_offset"] = self.rho_offset.detach().cpu().numpy()
            arrays["offset_sigma"] = self.offset_sigma().detach().cpu().numpy()
        cloakfile.write(path, meta, arrays)

    @classmethod
    def load(cls, path: Path | str, feature_cfg: FeatureConfig | None = None) -> Cloak:
        """Load a cloak file exactly; refuse one made for other feature settings."""
        path = Path(path)
        meta, arrays = cloakfile.read(path)
        if feature_cfg is not None and not feature_cfg.matches(meta["feature_config"]):
            raise ValueError(
                f"{path} was made for other features (ours != its: "
                f"{feature_cfg.describe_mismatch(meta['feature_config'])})"
            )
        try:
            saved = FeatureConfig.from_dict(meta["feature_config"])
            cfg = CloakConfig.from_dict(meta["cloak_config"])
        except (ValueError, TypeError) as err:  # e.g. a kind this version does not know
            raise ValueError(f"{path}: {err}: delete it and run the method again (it is "
                             f"trained anew)") from err
        cloak = cls(cfg,
                    torch.from_numpy(arrays["feat_mean"]), torch.from_numpy(arrays["feat_std"]),
                    n_frames=saved.segment_frames)
        with torch.no_grad():
            for name in ("mu", "rho", "mu_s", "mask", "rho_offset"):
                if getattr(cloak, name) is not None:
                    getattr(cloak, name).copy_(torch.from_numpy(arrays[name]))
            cloak.suppressed.fill_(meta["suppressed"])
            if not np.allclose(cloak.sigma().numpy(), arrays["sigma"], rtol=1e-5, atol=1e-6):
                raise ValueError(f"{path}: its σ does not follow from its ρ and σ range")
        cloak.meta = meta
        return cloak
