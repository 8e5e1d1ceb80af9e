"""How figures read in tables and legends: numbers with their spread or interval, the
privacy figure and its chance band, a method's label and its operating point."""

from __future__ import annotations

from ..methods import Method
from ..results import LEAD_METRIC

FAMILY_NAMES = {"cnn": "CNN+RNN", "cnn_scratch": "CNN+RNN from scratch", "stats": "stats",
                "dvector": "d-vector", "dvector_ft": "retrained encoder"}
WHY_SPEAKER_BALANCED = (
    "UAR is speaker-balanced (every test speaker weighs the same; the pooled UAR, "
    "dominated by the few speakers with the most utterances, is given beside it).")


def fmt(stat: dict) -> str:
    return f"{stat['mean']:.1f} ± {stat['std']:.1f}"


def fmt_ci(stat: dict) -> str:
    """mean [lo, hi] when the figure has a 95% interval, else mean ± std over folds."""
    if "ci95" not in stat:
        return fmt(stat)
    lo, hi = stat["ci95"]
    return f"{stat['mean']:.1f} [{lo:.1f}, {hi:.1f}]"


def fmt_seeds(stat: dict) -> str:
    """The figure per seed (mean over folds) and the std across seeds; "–" with one seed."""
    if "seeds" not in stat:
        return "–"
    return f"{', '.join(f'{v:.1f}' for v in stat['seeds'])} (std {stat['seed_std']:.1f})"


def lead(agg: dict) -> dict:
    """The UAR tables lead with (speaker-balanced) of an aggregate."""
    return agg[LEAD_METRIC]


def privacy(entry: dict) -> dict:
    """The privacy figure of an entry (or the clean reference): the gender UAR of the
    attacker chosen on validation speakers, with its interval and chance band."""
    return entry["gender_privacy"]["uar_speaker"]


def fmt_privacy(stat: dict) -> str:
    """The figure with its interval, or "chance" when it cannot be told from chance."""
    text = fmt_ci(stat)
    return f"{text} (chance)" if stat["indistinguishable_from_chance"] else text


def fmt_chance(stat: dict) -> str:
    c = stat["chance"]
    return f"{c['mean']:.1f} / {c['p95']:.1f}, p = {c['p']:.3g}"


def method_label(entry: dict, short: bool = False) -> str:
    """How a results.json entry's method reads in tables and legends (`methods.Method`)."""
    label = Method.from_dict(entry["spec"]).label
    return label.replace("adversarial", "adv.") if short else label


def shown_entries(results: dict) -> list[dict]:
    """The entries the headline shows: those chosen on validation speakers, when any were
    (settings of earlier runs that were not chosen are left out), else every entry."""
    chosen = [e for e in results["cloak"] if "validation" in e]
    return chosen or results["cloak"]


def _words_of(point: dict, cloaked: bool) -> str:
    if point["dims"] is not None:
        return f"k {point['dims']}"
    return f"SR {point['suppression_ratio']:g}" if cloaked else "–"


def point_words(entry: dict) -> str:
    """The operating point in words: SR 60 (a cloak's), k 16 (a split network's), – (a
    method with one point: a transform, the posteriors), or each fold's when they differ
    ("SR 0 ×3, SR 60 ×2": chosen per fold on its validation speakers)."""
    words = [_words_of(p, entry["spec"]["cloak"] is not None) for p in entry["points"]]
    if len(set(words)) == 1:
        return words[0]
    return ", ".join(f"{w} ×{words.count(w)}" for w in dict.fromkeys(words))

