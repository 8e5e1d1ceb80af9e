"""Markdown tables: Table 2, confusions, the attackers on clean speech, the privacy
table, the operating points chosen on validation speakers, the cloaks' training, per
corpus."""

from __future__ import annotations

from ..attacks.suite import FAMILIES as ATTACK_FAMILIES
from ..cloak import Cloak
from ..cloak.training import adversary_accuracies
from ..data import Workdir
from ..layout import setting_name
from ..targets import USER_LEVEL_REQUESTS
from .format import (
    FAMILY_NAMES,
    WHY_SPEAKER_BALANCED,
    fmt,
    fmt_chance,
    fmt_ci,
    fmt_privacy,
    lead,
    method_label,
    point_words,
    privacy,
)


def table2(results: dict) -> str:
    """Markdown shaped like the paper's Table 2, speaker-balanced UAR first."""
    emo, gen = results["emotion"], results["gender"]

    def cells(e: dict, g: dict) -> str:
        return " | ".join(fmt_ci(lead(x)) for x in (e, g)) \
            + " | " + " | ".join(f"{fmt(x['uar'])} | {fmt(x['acc'])}" for x in (e, g))

    lines = ["| test set | emotion UAR (speaker-bal.) | gender UAR (speaker-bal.) | "
             "emotion UAR | emotion acc | gender UAR | gender acc |",
             "|---|---|---|---|---|---|---|",
             f"| all | {cells(emo, gen)} |"]
    for c in emo["per_corpus"]:
        lines.append(f"| {c} | {cells(emo['per_corpus'][c], gen['per_corpus'][c])} |")
    return "\n".join(lines) + "\n"


def confusion_md(agg: dict, title: str) -> str:
    labels = agg["labels"]
    lines = [f"{title} (rows: truth, columns: prediction; summed over folds and seeds)", "",
             "| | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    lines += [f"| {lab} | " + " | ".join(map(str, row)) + " |"
              for lab, row in zip(labels, agg["confusion"], strict=True)]
    return "\n".join(lines) + "\n"


def seeds_line(stat: dict, what: str) -> str:
    """One sentence on the spread across seeds, when there are several."""
    if "seeds" not in stat:
        return ""
    per_seed = ", ".join(f"{v:.1f}" for v in stat["seeds"])
    return (f"{what} per seed (mean over folds): {per_seed}; std across seeds "
            f"{stat['seed_std']:.1f} (across folds {stat['std']:.1f}).\n")


def baselines_md(results: dict) -> str:
    """baselines-<family>-folds<F>-seeds<S>.md: Table 2 with intervals, the spread across
    seeds, confusions."""
    emotion = results["emotion"]
    return (f"# Clean-input baselines ({results['family']} models, protocol "
            f"{results['protocol']}, {results['normalise']} normalisation, folds "
            f"{results['folds']}, seeds {results['seeds']})\n\n"
            f"Utterance-level figures (%) on the test speakers, mean over seeds and folds; "
            f"± is the std over folds, [..] the 95% interval (speaker bootstrap). "
            f"{WHY_SPEAKER_BALANCED}\n\n" + table2(results) + "\n"
            + seeds_line(lead(emotion), "Emotion UAR (speaker-balanced)")
            + seeds_line(lead(results["gender"]), "Gender UAR (speaker-balanced)")
            + f"\nEmotion UAR (speaker-balanced) on the validation speakers where operating "
              f"points are chosen: {fmt(lead(results['valid_emotion']))}.\n\n"
            + confusion_md(emotion, "Emotion confusion") + "\n"
            + confusion_md(results["gender"], "Gender confusion")
            + f"\nWall time: {results['wall_time_s']} s\n")


def per_corpus_table(results: dict) -> str:
    """Markdown: per setting and corpus, emotion UAR and every attacker's gender UAR."""
    corpora = sorted(results["baseline"]["emotion"]["per_corpus"])
    families = list(results["baseline"].get("attackers", {}))
    columns = [("emotion", None)] + [  # the versions some setting has (dvector_ft: informed)
        (f, v) for f in families for v in ("ignorant", "informed")
        if any(v in e["attackers"].get(f, {}) for e in results["cloak"])]
    head = ["setting", "point", "corpus"] + [
        k if v is None else f"{FAMILY_NAMES.get(k, k)} {v[:3]}." for k, v in columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for e in results["cloak"]:
        name = method_label(e, short=True)
        for c in corpora:
            cells = [_cell(e[k] if v is None else e["attackers"].get(k, {}).get(v), c)
                     for k, v in columns]
            lines.append(f"| {name} | {point_words(e)} | {c} | " + " | ".join(cells)
                         + " |")
    return "\n".join(lines) + "\n"


def _cell(agg: dict | None, corpus: str) -> str:
    return fmt(lead(agg["per_corpus"][corpus])) if agg and corpus in agg["per_corpus"] else "–"


def _versions(entry: dict, family: str) -> str:
    """"ignorant / informed" UARs of one family (– where the entry has no such attacker)."""
    versions = entry["attackers"].get(family)
    if versions is None:
        return "–"
    return " / ".join(f"{lead(versions[v])['mean']:.1f}" if v in versions else "–"
                      for v in ("ignorant", "informed"))


def _others(entry: dict, families: list[str]) -> str:
    """The attackers of a design's own (e.g. `lr`, `gbt` on posteriors), informed."""
    others = [f for f in entry["attackers"] if f not in families]
    return ", ".join(f"{f} {lead(entry['attackers'][f]['informed'])['mean']:.1f}"
                     for f in others) or "–"


def clean_attackers_table(results: dict) -> str:
    """Markdown: each attacker's gender UAR on clean test utterances, overall and per corpus."""
    attackers = results["baseline"]["attackers"]
    corpora = sorted(results["baseline"]["emotion"]["per_corpus"])
    lines = ["| attacker | all (speaker-bal.) | all (pooled) | " + " | ".join(corpora) + " |",
             "|---" * (len(corpora) + 3) + "|"]
    for family, agg in attackers.items():
        cells = [fmt(lead(agg)), fmt(agg["uar"])]
        cells += [fmt(lead(agg["per_corpus"][c])) if c in agg["per_corpus"] else "–"
                  for c in corpora]
        lines.append(f"| {FAMILY_NAMES.get(family, family)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _eer(entry: dict) -> str:
    """The speaker EER (frozen encoder; / retrained on what is sent, where it was)."""
    if "speaker_eer" not in entry:
        return "–"
    retrained = entry.get("speaker_eer_retrained")
    return fmt(entry["speaker_eer"]) + (f" / {retrained['mean']:.1f}" if retrained else "")


def _privacy_cells(entry: dict) -> list[str]:
    """The privacy figure [CI], its chance band and p, the upper bound, the chosen attacker,
    the user-level figure after `USER_LEVEL_REQUESTS` requests."""
    figures = entry["gender_privacy"]
    return [fmt_privacy(privacy(entry)), fmt_chance(privacy(entry)),
            fmt_ci(figures["upper_bound"]["uar_speaker"]), figures["attacker"],
            fmt_privacy(figures["user_level"][str(USER_LEVEL_REQUESTS)])]


PRIVACY_HEAD = ["gender UAR, attacker chosen on validation [95% CI]",
                "chance: mean / 95th pct., p", "upper bound: best attacker on test [95% CI]",
                "chosen attacker (most often)",
                f"user level, {USER_LEVEL_REQUESTS} requests [95% CI]"]


def privacy_table(results: dict) -> str:
    """Markdown: per setting, emotion UAR and its paired drop, every attacker's gender UAR,
    the privacy figures, the EER.

    Attacker cells read "ignorant / informed" (means over seeds and folds);
    the clean row has one figure per attacker (all fitted on clean features).
    """
    base = results["baseline"]
    # the families on clean speech, then those trained on protected speech only
    families = list(dict.fromkeys([*base["attackers"], *(
        f for e in results["cloak"] for f, versions in e["attackers"].items()
        if "ignorant" in versions or f in ATTACK_FAMILIES)]))
    head = ["setting", "point", "emotion UAR", "emotion drop [95% CI]"]
    head += [f"{FAMILY_NAMES.get(f, f)} (ign. / inf.)" for f in families]
    head += ["other attackers (inf.)", *PRIVACY_HEAD, "speaker EER (frozen / retrained)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    cells = [f"{lead(base['attackers'][f])['mean']:.1f}" if f in base["attackers"] else "–"
             for f in families] + ["–"]
    cells += [*_privacy_cells(base), _eer(base)]
    lines.append(f"| clean | – | {fmt_ci(lead(base['emotion']))} | 0 | " + " | ".join(cells)
                 + " |")
    for entry in results["cloak"]:
        cells = [_versions(entry, f) for f in families] + [_others(entry, families)]
        cells += [*_privacy_cells(entry), _eer(entry)]
        lines.append(f"| {method_label(entry)} | {point_words(entry)} | "
                     f"{fmt(lead(entry['emotion']))} | {fmt_ci(entry['emotion_drop'])} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def selection_table(results: dict) -> str:
    """Markdown: per method its operating points chosen on each fold's validation speakers,
    their validation figures, then the test figures: the headline table. Drops are paired
    (clean f_θ on the same utterances)."""
    chosen = [e for e in results["cloak"] if "validation" in e]
    if not chosen:
        return ""
    head = ["method", "point", "valid: emotion drop", "valid: gender UAR",
            "test: emotion UAR", "emotion drop [95% CI]", *PRIVACY_HEAD,
            "speaker EER (frozen / retrained)", "adversary's last accuracy"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    base = results["baseline"]
    lines.append(f"| clean | – | – | – | {fmt_ci(lead(base['emotion']))} | 0 | "
                 + " | ".join(_privacy_cells(base)) + f" | {_eer(base)} | – |")
    for e in sorted(chosen, key=lambda e: privacy(e)["mean"]):
        v = e["validation"]
        accuracy = ", ".join(f"{k} {a['mean']:.0f}%" for k, a in
                             e.get("adversary_accuracy", {}).items()) or "–"
        lines.append(
            f"| {method_label(e)} | {point_words(e)} | "
            f"{v['emotion_drop']['mean']:.1f} | {privacy(v)['mean']:.1f} | "
            f"{fmt(lead(e['emotion']))} | {fmt_ci(e['emotion_drop'])} | "
            + " | ".join(_privacy_cells(e)) + f" | {_eer(e)} | {accuracy} |")
    return "\n".join(lines) + "\n"


def training_table(wd: Workdir, results: dict) -> str:
    """Markdown: how the SR 0 cloaks of the last run ended training (first seed; the history
    in their files), with the adversaries' accuracy on their last epoch's batches."""
    lines = ["| fold | setting | mean σ | emotion CE | gender CE of ψ | ψ accuracy |",
             "|---|---|---|---|---|---|"]
    cfg = results["config"]
    for fold in cfg["folds"]:
        for adversarial in (False, True):
            file = wd.layout.entry_setting(cfg["cloak_dir"], cfg["seeds"][0], fold,
                                           setting_name(0, adversarial)).cloak
            if not file.is_file():
                continue
            last = Cloak.load(file, wd.cfg).meta["history"][-1]
            psi = f"{last['gender_ce']:.2f}" if "gender_ce" in last and adversarial else "–"
            accuracy = ", ".join(f"{k} {v:.0f}%" for k, v in adversary_accuracies(last).items())
            lines.append(f"| {fold} | {'adversarial' if adversarial else 'plain'} | "
                         f"{last['sigma_mean']:.2f} | {last['emotion_ce']:.2f} | {psi} | "
                         f"{accuracy or '–'} |")
    return "\n".join(lines) + "\n"
