"""The cloak and how it is trained.

- `noise`: φ, the learned noise injection on log-mel features (`Cloak`), its
  kinds, warp and suppression mask, and the cloak file;
- `adversaries`: the gender networks ψ a cloak trains against;
- `training`: the perturbation and suppression stages, with the paper's
  gradient-reversal game or a min–max game;
- `saliency`: which mel bins reveal gender more than emotion (a mask rule).
"""

from ..cloakfile import CLOAK_FORMAT
from .adversaries import ADVERSARIES, new_adversary, reverse_gradient
from .noise import KINDS, MASKS, Cloak, CloakConfig

__all__ = ["ADVERSARIES", "CLOAK_FORMAT", "KINDS", "MASKS", "Cloak", "CloakConfig",
           "new_adversary", "reverse_gradient"]
