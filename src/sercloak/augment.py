"""On-the-fly augmentation of log-mel training batches (batch, frames, mels), in dB.

Each function draws its random amounts from a `torch.Generator`, so a seeded
run is repeatable, and returns its input unchanged at strength 0.

- `warp`: tempo perturbation (stretch or squeeze time by up to ±`tempo`) and
  vocal-tract-length perturbation (stretch the mel axis by a factor within
  ±`vtlp`, anchored at 0 Hz), one bilinear resampling for both.
- `random_gain`: the same dB offset on every cell of a segment (a louder or
  quieter recording), never below the feature floor.
- `spec_augment`: SpecAugment's time and frequency masks.
- `mixup`: convex mixtures of pairs of segments and of their labels.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def _uniform(n: int, spread: float, gen: torch.Generator) -> torch.Tensor:
    """`n` factors drawn uniformly from [1 - spread, 1 + spread]."""
    return 1.0 + spread * (2.0 * torch.rand(n, generator=gen) - 1.0)


def warp_by(x: torch.Tensor, time_rate: torch.Tensor, mel_factor: torch.Tensor) -> torch.Tensor:
    """Resample each segment: output frame t reads input frame centre + (t - centre) * rate,
    output bin f reads input bin f * factor. Positions past an edge read the edge."""
    b = x.shape[0]
    theta = torch.zeros(b, 2, 3, dtype=x.dtype, device=x.device)
    # affine_grid's coordinates run over [-1, 1]: index 0 is x (mel bins), 1 is y (frames)
    theta[:, 0, 0] = mel_factor.to(x)
    theta[:, 0, 2] = mel_factor.to(x) - 1.0  # keeps bin 0 (-1) fixed: -1 * m + (m - 1) = -1
    theta[:, 1, 1] = time_rate.to(x)  # stretches time about the segment's centre
    grid = F.affine_grid(theta, [b, 1, *x.shape[1:]], align_corners=True)
    out = F.grid_sample(x.unsqueeze(1), grid, mode="bilinear", padding_mode="border",
                        align_corners=True)
    return out.squeeze(1)


def warp(x: torch.Tensor, tempo: float, vtlp: float, gen: torch.Generator) -> torch.Tensor:
    """Random tempo (±`tempo`) and mel-axis warp (±`vtlp`) per segment."""
    if tempo == 0 and vtlp == 0:
        return x
    n = x.shape[0]
    return warp_by(x, _uniform(n, tempo, gen), _uniform(n, vtlp, gen))


def random_gain(x: torch.Tensor, max_db: float, floor: float, gen: torch.Generator) -> torch.Tensor:
    """Add one offset in [-max_db, max_db] dB per segment, clamped at the dB floor."""
    if max_db == 0:
        return x
    offset = max_db * (2.0 * torch.rand(x.shape[0], 1, 1, generator=gen) - 1.0)
    return (x + offset.to(x)).clamp_min(floor)


def spec_augment(x: torch.Tensor, fill: torch.Tensor, n_masks: int, gen: torch.Generator,
                 max_time: int = 20, max_freq: int = 12) -> torch.Tensor:
    """`n_masks` time bands and `n_masks` frequency bands per segment set to `fill` (per bin)."""
    if n_masks == 0:
        return x
    b, t, f = x.shape
    keep = torch.ones(b, t, f, dtype=torch.bool)
    frames, bins = torch.arange(t), torch.arange(f)
    for _ in range(n_masks):
        for size, axis, limit in ((max_time, frames, t), (max_freq, bins, f)):
            width = torch.randint(0, size + 1, (b, 1), generator=gen)
            start = (torch.rand(b, 1, generator=gen) * (limit - width)).long()
            band = (axis >= start) & (axis < start + width)  # (b, t) or (b, f)
            keep &= ~(band[:, :, None] if axis is frames else band[:, None, :])
    return torch.where(keep.to(x.device), x, fill.to(x))


def mixup(x: torch.Tensor, targets: torch.Tensor, alpha: float,
          gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Mix each segment with a random partner: weight λ ~ Beta(α, α), kept ≥ 0.5 so the
    segment stays the larger part. `targets` are one-hot (or soft) label rows."""
    if alpha == 0:
        return x, targets
    n = x.shape[0]
    # Beta(α, α) from two Gamma draws, so the generator (not the global RNG) decides
    g1 = torch._standard_gamma(torch.full((n,), alpha), generator=gen)
    g2 = torch._standard_gamma(torch.full((n,), alpha), generator=gen)
    lam = torch.maximum(g1 / (g1 + g2), g2 / (g1 + g2))
    partner = torch.randperm(n, generator=gen)
    lam_x = lam.to(x).view(n, 1, 1)
    lam_y = lam.to(targets).view(n, 1)
    return (lam_x * x + (1 - lam_x) * x[partner],
            lam_y * targets + (1 - lam_y) * targets[partner])
