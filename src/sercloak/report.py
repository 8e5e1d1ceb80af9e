"""The human side of results: Markdown tables and PNG figures.

Tables lead with the speaker-balanced UAR (every test speaker weighs the
same; `evaluate.py` says why) and give the pooled UAR beside it; emotion
costs are paired drops from the clean emotion model on the same utterances,
with 95% intervals from the speaker-level bootstrap (`results.py`).

- ``pareto.png``: the paired emotion drop against the privacy figure (the
  gender attacker chosen on validation speakers, `privacy.py`), one point per
  method (every setting when none was chosen), 95% interval whiskers on both
  axes, the clean point, the chance band of the privacy figure, the target as
  one rectangle, and the floor (`posteriors`: what the emotion output alone
  leaks) as a vertical band.
- ``tradeoff.png`` (the paper's Figure 4): UAR against suppression ratio for
  the emotion model, the paper's ignorant and informed gender attackers and
  the worst case over the whole attacker suite, Cloak vs Cloak +
  adversarial, with the clean baselines as dotted lines.
- ``noise_map.png`` (the paper's Figure 5): σ and the suppression mask of the
  SR = 60% cloaks of the first seed and fold against time and frequency (Hz),
  with vs without adversarial training.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .cloak import Cloak  # noqa: E402
from .data import Workdir  # noqa: E402
from .features import mel_centres_hz  # noqa: E402
from .layout import setting_name  # noqa: E402
from .methods import Method  # noqa: E402
from .results import LEAD_METRIC  # noqa: E402

STYLE = {"emotion": ("emotion (f_θ)", "tab:blue"),
         "gender_ignorant": ("gender, ignorant cnn (paper)", "tab:orange"),
         "gender_informed": ("gender, informed cnn", "tab:red"),
         "gender_privacy": ("gender, attacker chosen on validation", "tab:purple")}
FAMILY_NAMES = {"cnn": "CNN+RNN", "cnn_scratch": "CNN+RNN from scratch", "stats": "stats",
                "dvector": "d-vector", "dvector_ft": "retrained encoder"}
PAPER_METHODS = ("cloak", "cloak_adversarial")
FLOOR = "posteriors"  # drawn as the floor, not as a design
TARGET = {"gender": 65.0, "emotion_drop": 2.0}  # issue 10's target operating point
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


def _uar(agg: dict) -> dict:
    """The lead UAR of an aggregate (results written before it existed have only `uar`)."""
    return agg.get(LEAD_METRIC, agg["uar"])


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


# -- the clean baselines (the paper's Table 2) ---------------------------------------------


def table2(results: dict) -> str:
    """Markdown shaped like the paper's Table 2, speaker-balanced UAR first."""
    emo, gen = results["emotion"], results["gender"]

    def cells(e: dict, g: dict) -> str:
        return " | ".join(fmt_ci(_uar(x)) if "ci95" in _uar(x) else fmt(_uar(x)) for x in (e, g)) \
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
    """baselines-<family>.md: Table 2 with intervals, the spread across seeds, confusions."""
    emotion = results["emotion"]
    return (f"# Clean-input baselines ({results['family']} models, protocol "
            f"{results['protocol']}, {results['normalise']} normalisation, folds "
            f"{results['folds']}, seeds {results['seeds']})\n\n"
            f"Utterance-level figures (%) on the test speakers, mean over seeds and folds; "
            f"± is the std over folds, [..] the 95% interval (speaker bootstrap). "
            f"{WHY_SPEAKER_BALANCED}\n\n" + table2(results) + "\n"
            + seeds_line(_uar(emotion), "Emotion UAR (speaker-balanced)")
            + seeds_line(_uar(results["gender"]), "Gender UAR (speaker-balanced)")
            + f"\nEmotion UAR (speaker-balanced) on the validation speakers where operating "
              f"points are chosen: {fmt(_uar(results['valid_emotion']))}.\n\n"
            + confusion_md(emotion, "Emotion confusion") + "\n"
            + confusion_md(results["gender"], "Gender confusion")
            + f"\nWall time: {results['wall_time_s']} s\n")


# -- figures --------------------------------------------------------------------------------


def shown_entries(results: dict) -> list[dict]:
    """The entries the headline shows: those chosen on validation speakers, when any were
    (settings of earlier runs that were not chosen are left out), else every entry."""
    chosen = [e for e in results["cloak"] if "validation" in e]
    return chosen or results["cloak"]


def _point_words(point: dict, cloaked: bool) -> str:
    if point["dims"] is not None:
        return f"k {point['dims']}"
    return f"SR {point['suppression_ratio']:g}" if cloaked else "–"


def _point(entry: dict) -> str:
    """The operating point in words: SR 60 (a cloak's), k 16 (a split network's), – (a
    method with one point: a transform, the posteriors), or each fold's when they differ
    ("SR 0 ×3, SR 60 ×2": chosen per fold on its validation speakers)."""
    words = [_point_words(p, entry["spec"]["cloak"] is not None) for p in entry["points"]]
    if len(set(words)) == 1:
        return words[0]
    return ", ".join(f"{w} ×{words.count(w)}" for w in dict.fromkeys(words))


def the_point(entry: dict) -> dict:
    """The one point an entry was scored at on every fold (a grid's entries)."""
    if any(p != entry["points"][0] for p in entry["points"]):
        raise ValueError(f"{entry['method']}: each fold chose its own point")
    return entry["points"][0]


def _whisker(stat: dict) -> tuple[float, float]:
    lo, hi = stat.get("ci95", (stat["mean"] - stat["std"], stat["mean"] + stat["std"]))
    return stat["mean"] - lo, hi - stat["mean"]


def pareto_figure(results: dict, out: Path) -> None:
    """Paired emotion drop against the privacy figure, with 95% intervals on both and the
    privacy figure's chance band."""
    base = results["baseline"]
    floor = next((e for e in shown_entries(results) if e["method"] == FLOOR), None)
    entries = [e for e in shown_entries(results) if e["method"] != FLOOR]
    points = [(privacy(e), e["emotion_drop"]) for e in entries]
    if floor is not None:
        points.append((privacy(floor), {"mean": 0.0, "std": 0.0}))
    points.append((privacy(base), {"mean": 0.0, "std": 0.0}))
    xs = [v for x, _ in points for v in (x["mean"] - _whisker(x)[0], x["mean"] + _whisker(x)[1])]
    ys = [v for _, y in points for v in (y["mean"] - _whisker(y)[0], y["mean"] + _whisker(y)[1])]
    xlim = (min(45.0, *xs) - 2, max(xs) + 2)
    ylim = (min(-3.0, *ys) - 1, max(TARGET["emotion_drop"] + 1, *ys) + 1)
    fig, ax = plt.subplots(figsize=(10, 5.5))
    ax.add_patch(plt.Rectangle((xlim[0], ylim[0]), TARGET["gender"] - xlim[0],
                               TARGET["emotion_drop"] - ylim[0], color="tab:green", alpha=0.12,
                               lw=0, label=f"target: gender ≤ {TARGET['gender']:.0f}%, emotion "
                                           f"drop ≤ {TARGET['emotion_drop']:.0f} points"))
    chance = [x["chance"] for x, _ in points]
    ax.axvspan(min(c["mean"] for c in chance), max(c["p95"] for c in chance), color="grey",
               alpha=0.25, lw=0, label="chance band: the permutation null's mean to its 95th "
                                       "percentile")
    colours = plt.get_cmap("tab20")(np.linspace(0, 1, max(len(entries), 2)))
    markers = "osD^v<>phX*"
    for i, (e, (x, y)) in enumerate(zip(entries, points, strict=False)):
        ax.errorbar(x["mean"], y["mean"], xerr=np.array([_whisker(x)]).T,
                    yerr=np.array([_whisker(y)]).T, fmt=markers[i % len(markers)],
                    color=colours[i], capsize=2, elinewidth=0.8,
                    label=method_label(e) + (f", {_point(e)}" if _point(e) != "–" else ""))
    clean = privacy(base)
    ax.errorbar(clean["mean"], 0, xerr=np.array([_whisker(clean)]).T, fmt="k*", ms=14,
                capsize=2, label="clean (no protection)")
    if floor is not None:  # what f_θ's own outputs leak: left of it only at a cost
        x = privacy(floor)
        ax.axvspan(x["mean"] - _whisker(x)[0], x["mean"] + _whisker(x)[1], color="grey",
                   alpha=0.15, lw=0)
        ax.axvline(x["mean"], color="grey", ls="--", lw=1.2,
                   label=f"floor: f_θ's window posteriors alone ({x['mean']:.1f}%)")
    ax.axhline(0, color="black", ls=":", lw=1)
    ax.axvline(50, color="grey", ls=":", lw=1)
    ax.annotate("gender chance", (50.3, ylim[1] - 0.5), fontsize=7, color="grey", va="top")
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_xlabel("gender UAR (%) of the attacker chosen on validation speakers, "
                  "speaker-balanced (lower is better)")
    ax.set_ylabel("emotion drop (points of speaker-balanced UAR,\nclean f_θ minus protected; "
                  "lower is better)")
    config = results["config"]
    ax.set_title(f"Privacy against utility on test speakers ({config.get('protocol')} protocol, "
                 f"folds {config['folds']}, seeds {config.get('seeds', [0])})\nwhiskers: 95% "
                 f"intervals (speaker bootstrap)", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def tradeoff_figure(results: dict, out: Path) -> bool:
    """The paper's Figure 4 for its two methods; False when results.json has neither."""
    paper = [e for e in results["cloak"] if e["method"] in PAPER_METHODS]
    if not paper:
        return False
    fig, ax = plt.subplots(figsize=(10, 4.5))
    for adversarial, line, shift in ((False, "--o", -0.7), (True, "-s", 0.7)):
        entries = sorted((e for e in paper if the_point(e)["adversarial"] == adversarial),
                         key=lambda e: the_point(e)["suppression_ratio"])
        if not entries:
            continue
        # error bars side by side
        ratios = [the_point(e)["suppression_ratio"] + shift for e in entries]
        for key, (label, colour) in STYLE.items():
            if key not in entries[0]:
                continue
            mean = [_uar(e[key])["mean"] for e in entries]
            std = [_uar(e[key])["std"] for e in entries]
            name = f"{label}, {method_label(entries[0])}"
            ax.errorbar(ratios, mean, yerr=std, fmt=line, color=colour, capsize=3,
                        alpha=1.0 if adversarial else 0.6, label=name)
    base = results["baseline"]
    ax.axhline(_uar(base["emotion"])["mean"], color="tab:blue", ls=":", lw=1)
    ax.axhline(_uar(base["gender"])["mean"], color="tab:orange", ls=":", lw=1)
    ax.axhline(privacy(base)["mean"], color="tab:purple", ls=":", lw=1)
    ax.axhline(50, color="grey", ls=":", lw=1)
    ax.set_xlabel("suppression ratio SR (%)")
    ax.set_ylabel("speaker-balanced UAR (%), mean ± std over folds")
    ax.set_title("Privacy–utility trade-off (dotted: clean baselines, chance gender 50%)")
    ax.set_xticks(sorted({the_point(e)["suppression_ratio"] for e in paper}))
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return True


def noise_map_figure(wd: Workdir, files: list[Path], out: Path) -> bool:
    """σ and mask of two cloak files (SR 60, plain and adversarial); False if they are
    missing."""
    if not all(f.is_file() for f in files):
        return False
    hz = mel_centres_hz(wd.cfg)
    fig, axes = plt.subplots(2, 2, figsize=(10, 6), sharey=True)
    for row, (file, title) in enumerate(zip(files, ("Cloak", "Cloak + adversarial"),
                                            strict=True)):
        cloak = Cloak.load(file, wd.cfg)
        sigma = cloak.sigma().detach().numpy()
        mask = cloak.mask.numpy()
        if sigma.ndim == 1:  # per mel bin: the same for every frame
            sigma = np.tile(sigma, (wd.cfg.segment_frames, 1))
            mask = np.tile(mask, (wd.cfg.segment_frames, 1))
        seconds = wd.cfg.segment_frames * wd.cfg.hop_length / wd.cfg.sample_rate
        extent = (0, seconds, 0, len(hz))
        for col, (values, label) in enumerate(((sigma, "σ (standardised units)"),
                                               (1 - mask, "suppressed (1) / kept (0)"))):
            ax = axes[row, col]
            im = ax.imshow(values.T, origin="lower", aspect="auto", extent=extent,
                           cmap="magma" if col == 0 else "Greys")
            ticks = np.linspace(0, len(hz) - 1, 6).astype(int)
            ax.set_yticks(ticks + 0.5, [f"{hz[t]:.0f}" for t in ticks])
            ax.set_title(f"{title}: {label}", fontsize=9)
            ax.set_xlabel("time in the 2 s window (s)")
            fig.colorbar(im, ax=ax)
        axes[row, 0].set_ylabel("frequency (Hz)")
    fig.suptitle("Noise maps at SR = 60% (first seed and fold)")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return True


# -- tables ---------------------------------------------------------------------------------


def _per_corpus_table(results: dict) -> str:
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
            lines.append(f"| {name} | {_point(e)} | {c} | " + " | ".join(cells)
                         + " |")
    return "\n".join(lines) + "\n"


def _cell(agg: dict | None, corpus: str) -> str:
    return fmt(_uar(agg["per_corpus"][corpus])) if agg and corpus in agg["per_corpus"] else "–"


def _versions(entry: dict, family: str) -> str:
    """"ignorant / informed" UARs of one family (– where the entry has no such attacker)."""
    versions = entry["attackers"].get(family)
    if versions is None:
        return "–"
    return " / ".join(f"{_uar(versions[v])['mean']:.1f}" if v in versions else "–"
                      for v in ("ignorant", "informed"))


def _others(entry: dict, families: list[str]) -> str:
    """The attackers of a design's own (e.g. `lr`, `gbt` on posteriors), informed."""
    others = [f for f in entry["attackers"] if f not in families]
    return ", ".join(f"{f} {_uar(entry['attackers'][f]['informed'])['mean']:.1f}"
                     for f in others) or "–"


def clean_attackers_table(results: dict) -> str:
    """Markdown: each attacker's gender UAR on clean test utterances, overall and per corpus."""
    attackers = results["baseline"]["attackers"]
    corpora = sorted(results["baseline"]["emotion"]["per_corpus"])
    lines = ["| attacker | all (speaker-bal.) | all (pooled) | " + " | ".join(corpora) + " |",
             "|---" * (len(corpora) + 3) + "|"]
    for family, agg in attackers.items():
        cells = [fmt(_uar(agg)), fmt(agg["uar"])]
        cells += [fmt(_uar(agg["per_corpus"][c])) if c in agg["per_corpus"] else "–"
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
    the user-level figure after 20 requests."""
    figures = entry["gender_privacy"]
    return [fmt_privacy(privacy(entry)), fmt_chance(privacy(entry)),
            fmt_ci(figures["upper_bound"]["uar_speaker"]), figures["attacker"],
            fmt_privacy(figures["user_level"]["20"])]


PRIVACY_HEAD = ["gender UAR, attacker chosen on validation [95% CI]",
                "chance: mean / 95th pct., p", "upper bound: best attacker on test [95% CI]",
                "chosen attacker (most often)", "user level, 20 requests [95% CI]"]


def privacy_table(results: dict) -> str:
    """Markdown: per setting, emotion UAR and its paired drop, every attacker's gender UAR,
    the privacy figures, the EER.

    Attacker cells read "ignorant / informed" (means over seeds and folds);
    the clean row has one figure per attacker (all fitted on clean features).
    """
    base = results["baseline"]
    families = list(base.get("attackers", {}))
    head = ["setting", "point", "emotion UAR", "emotion drop [95% CI]"]
    head += [f"{FAMILY_NAMES.get(f, f)} (ign. / inf.)" for f in families]
    head += ["other attackers (inf.)", *PRIVACY_HEAD, "speaker EER (frozen / retrained)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    cells = [f"{_uar(base['attackers'][f])['mean']:.1f}" for f in families] + ["–"]
    cells += [*_privacy_cells(base), _eer(base)]
    lines.append(f"| clean | – | {fmt_ci(_uar(base['emotion']))} | 0 | " + " | ".join(cells)
                 + " |")
    for entry in results["cloak"]:
        cells = [_versions(entry, f) for f in families] + [_others(entry, families)]
        cells += [*_privacy_cells(entry), _eer(entry)]
        lines.append(f"| {method_label(entry)} | {_point(entry)} | "
                     f"{fmt(_uar(entry['emotion']))} | {fmt_ci(entry['emotion_drop'])} | "
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
    lines.append(f"| clean | – | – | – | {fmt_ci(_uar(base['emotion']))} | 0 | "
                 + " | ".join(_privacy_cells(base)) + f" | {_eer(base)} | – |")
    for e in sorted(chosen, key=lambda e: privacy(e)["mean"]):
        v = e["validation"]
        accuracy = ", ".join(f"{k} {a['mean']:.0f}%" for k, a in
                             e.get("adversary_accuracy", {}).items()) or "–"
        lines.append(
            f"| {method_label(e)} | {_point(e)} | "
            f"{v['emotion_drop']['mean']:.1f} | {privacy(v)['mean']:.1f} | "
            f"{fmt(_uar(e['emotion']))} | {fmt_ci(e['emotion_drop'])} | "
            + " | ".join(_privacy_cells(e)) + f" | {_eer(e)} | {accuracy} |")
    return "\n".join(lines) + "\n"


def training_table(wd: Workdir, results: dict) -> str:
    """Markdown: how the SR 0 cloaks of the last run ended training (first seed; the history
    in their files), with the adversaries' accuracy on their last epoch's batches."""
    lines = ["| fold | setting | mean σ | emotion CE | gender CE of ψ | ψ accuracy |",
             "|---|---|---|---|---|---|"]
    cfg = results["config"]
    run_dir = wd.root / cfg["cloak_dir"]
    for fold in cfg["folds"]:
        for adversarial in (False, True):
            file = wd.layout.setting(run_dir, cfg["seeds"][0], fold,
                                     setting_name(0, adversarial)).cloak
            if not file.is_file():
                continue
            last = Cloak.load(file, wd.cfg).meta["history"][-1]
            psi = f"{last['gender_ce']:.2f}" if "gender_ce" in last and adversarial else "–"
            accuracy = ", ".join(f"{k.removeprefix('adversary_acc_')} {v:.0f}%"
                                 for k, v in last.items() if k.startswith("adversary_acc_"))
            lines.append(f"| {fold} | {'adversarial' if adversarial else 'plain'} | "
                         f"{last['sigma_mean']:.2f} | {last['emotion_ce']:.2f} | {psi} | "
                         f"{accuracy or '–'} |")
    return "\n".join(lines) + "\n"


ATTACKERS_TEXT = (
    "Each attacker family exists in two versions. *Ignorant*: fitted on clean features of its "
    "speakers. *Informed*: fitted on protected features of its speakers (the CNN+RNN fine-tuned "
    "with fresh noise every batch, the others on {draws} noise draws per utterance) and "
    "selected on protected validation speakers. `cnn` is the paper's CNN+RNN f_g; `stats` a "
    "logistic regression on per-bin utterance statistics; `dvector` a logistic regression on "
    "d-vectors of a pretrained speaker encoder. All are scored on protected test utterances. "
    "The *privacy figure* is, per seed and fold, the gender UAR of the attacker that does "
    "best on its own validation speakers; its *chance band* is the same figure after "
    "permuting the test speakers' genders (p >= 0.05: indistinguishable from chance); the "
    "*upper bound* is the best attacker on the test speakers, chosen with their labels; the "
    "*user level* is the chosen attacker pooling 20 utterances per user. Speaker "
    "EER: speaker verification among the test utterances from d-vector cosines (50% = nothing "
    "links). Protocol {protocol}: {speakers}")
PROTOCOL_TEXT = {
    "paper": "the emotion model and the cloak train on the primary pool, the attackers on the "
             "adversary pool (the paper's).",
    "shared": "the emotion model, the cloak and the attackers all train on every non-test "
              "speaker (the attackers select on the adversary pool's validation speakers).",
}


def write_report(wd: Workdir, results: dict) -> Path:
    """report.md and its figures, from results.json's content and the cloak files it names."""
    cfg = results["config"]
    protocol, layout = cfg["protocol"], wd.layout
    has_tradeoff = tradeoff_figure(results, layout.figure(protocol, "tradeoff"))
    pareto_figure(results, layout.figure(protocol, "pareto"))
    sr60 = [layout.setting(wd.root / cfg["cloak_dir"], cfg["seeds"][0], cfg["folds"][0],
                           setting_name(60, adversarial)).cloak for adversarial in (False, True)]
    has_map = noise_map_figure(wd, sr60, layout.figure(protocol, "noise_map"))
    attacks = cfg.get("attacks", {})
    name = {k: layout.figure(protocol, k).name for k in ("pareto", "tradeoff", "noise_map")}
    text = [
        f"# sercloak experiment: {', '.join(wd.corpora)} ({cfg['model']} model, protocol "
        f"{protocol}, folds {cfg['folds']}, seeds {cfg['seeds']})", "",
        "Utterance-level results (%) on the test speakers of each fold, mean over seeds and "
        "folds; ± is the std over folds, [..] the 95% interval from a speaker-level bootstrap. "
        + WHY_SPEAKER_BALANCED, "",
        "## Clean baselines (the paper's Table 2)", "", table2(results["baseline"]),
        seeds_line(_uar(results["baseline"]["emotion"]), "Emotion UAR (speaker-balanced)"),
        "Gender attackers on clean features (UAR):", "", clean_attackers_table(results), "",
    ]
    if selection_table(results):
        text += ["## Operating points chosen on validation speakers", "",
                 "Per method and fold, the setting with the lowest privacy figure among those "
                 "whose emotion drop is at most 2 points on that fold's own validation "
                 "speakers of the primary pool (else the one costing least); then its test "
                 "figures.", "",
                 selection_table(results), ""]
    text += [
        "## Privacy and utility (UAR)", "",
        ATTACKERS_TEXT.format(draws=attacks.get("informed_draws", 1), protocol=protocol,
                              speakers=PROTOCOL_TEXT[protocol]), "",
        privacy_table(results), "", f"![privacy against utility]({name['pareto']})", "",
    ]
    if has_tradeoff:
        text += [f"![trade-off]({name['tradeoff']})", ""]
    if has_map:
        text += [f"![noise maps]({name['noise_map']})", ""]
    text += ["## Cloak training (SR 0, last epoch, first seed)", "",
             training_table(wd, results), "",
             "## Per corpus (speaker-balanced UAR)", "", _per_corpus_table(results), "",
             confusion_md(results["baseline"]["emotion"], "Clean emotion confusion"), "",
             f"Cloak settings: {cfg['cloak']}; training: {cfg['cloak_train']}; attackers: "
             f"{attacks}; cloak files in `{cfg['cloak_dir']}`.", "",
             f"Wall time: {results['wall_time_s']} s.", ""]
    out = layout.report(protocol)
    out.write_text("\n".join(text))
    return out
