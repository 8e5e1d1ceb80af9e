"""Gender attackers and speaker linkability: how much a cloak really hides.

- `base`: what an attacker sees (`View`) and the fit / predict_proba verbs;
- `cnn`, `stats`, `dvector`: the three attacker families;
- `speaker_encoder`: the pretrained GE2E encoder behind `dvector`, fed from our features;
- `linkability`: the speaker-verification EER among test utterances;
- `suite`: every attacker of a fold, ignorant and informed.

Their figures across folds and seeds (the worst case among them included)
are summarised in `results.py`.
"""

from .base import View, check_disjoint, fit_and_score, score
from .suite import FAMILIES, AttackConfig, FoldAttacks

__all__ = ["FAMILIES", "AttackConfig", "FoldAttacks", "View", "check_disjoint", "fit_and_score",
           "score"]
