"""The experiment's human report: Markdown tables and PNG figures.

- ``pareto.png``: emotion UAR against the worst-case gender UAR, one point
  per method and setting in results.json, the clean models and chance marked,
  and the target region (gender ≤ 65%, emotion within 2 points of clean).
- ``tradeoff.png`` (the paper's Figure 4): UAR against suppression ratio for
  the emotion model, the paper's ignorant and informed gender attackers and
  the worst case over the whole attacker suite, Cloak vs Cloak +
  adversarial, with the clean baselines as dotted lines.
- ``noise_map.png`` (the paper's Figure 5): σ and the suppression mask of the
  SR = 60% cloaks of the first fold against time and frequency (Hz), with vs
  without adversarial training.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .baselines import confusion_md, fmt, table2  # noqa: E402
from .cloak import Cloak  # noqa: E402
from .data import Workdir  # noqa: E402
from .features import mel_centres_hz  # noqa: E402

STYLE = {"emotion": ("emotion (f_θ)", "tab:blue"),
         "gender_ignorant": ("gender, ignorant cnn (paper)", "tab:orange"),
         "gender_informed": ("gender, informed cnn", "tab:red"),
         "gender_worst": ("gender, worst case (any attacker)", "tab:purple")}
FAMILY_NAMES = {"cnn": "CNN+RNN", "stats": "stats", "dvector": "d-vector"}
# how the parts of a method's name read: cloak_temporal_warp_minmax_adapted ->
# "Cloak (temporal, warp) + min–max, adapted"
METHOD_WORDS = {"temporal": "temporal", "warp": "warp", "saliency": "saliency mask"}
GAME_WORDS = {"adversarial": "adversarial", "minmax": "min–max"}
BASELINE_NAMES = {"mcadams": "McAdams (VPC B2)", "pitch_shift": "Pitch shift"}
PAPER_METHODS = ("cloak", "cloak_adversarial")
TARGET = {"gender": 65.0, "emotion_drop": 2.0}  # issue 10's target operating point


def method_label(entry: dict, short: bool = False) -> str:
    """How a results.json entry's method reads in tables and legends."""
    method = entry.get("method", "cloak_adversarial" if entry["adversarial"] else "cloak")
    parts = method.split("_")
    adapted = parts[-1] == "adapted"
    parts = parts[:-1] if adapted else parts
    if parts[0] != "cloak":
        label = BASELINE_NAMES.get("_".join(parts), "_".join(parts))
    else:
        game = [GAME_WORDS[p] for p in parts[1:] if p in GAME_WORDS]
        kinds = [METHOD_WORDS.get(p, p) for p in parts[1:] if p not in GAME_WORDS]
        label = "Cloak" + (f" ({', '.join(kinds)})" if kinds else "")
        label += f" + {game[0]}" if game else ""
    label += ", adapted" if adapted else ""
    return label.replace("adversarial", "adv.") if short else label


def file_suffix(results: dict) -> str:
    """'' for the paper's attacker pool, '-pool-all' for the `all` pool."""
    pool = results["config"].get("attacks", {}).get("pool", "adversary")
    return "" if pool == "adversary" else f"-pool-{pool}"


def pareto_figure(results: dict, out: Path) -> None:
    """Emotion UAR against worst-case gender UAR: every method and setting, clean, chance."""
    base = results["baseline"]
    clean_emotion = base["emotion"]["uar"]["mean"]
    fig, ax = plt.subplots(figsize=(9, 5.5))
    ax.axvspan(45, TARGET["gender"], ymin=0, ymax=1, color="tab:green", alpha=0.06)
    ax.axhspan(clean_emotion - TARGET["emotion_drop"], 100, color="tab:green", alpha=0.06,
               label=f"target: gender ≤ {TARGET['gender']:.0f}%, emotion within "
                     f"{TARGET['emotion_drop']:.0f} points of clean (both shaded)")
    methods = list(dict.fromkeys(method_label(e) for e in results["cloak"]))
    colours = plt.get_cmap("tab20")(np.linspace(0, 1, max(len(methods), 2)))
    markers = "osD^v<>phX*"
    for i, method in enumerate(methods):
        entries = [e for e in results["cloak"] if method_label(e) == method]
        x = [e["gender_worst"]["uar"]["mean"] for e in entries]
        y = [e["emotion"]["uar"]["mean"] for e in entries]
        ax.errorbar(x, y, xerr=[e["gender_worst"]["uar"]["std"] for e in entries],
                    yerr=[e["emotion"]["uar"]["std"] for e in entries], fmt=markers[i % 11],
                    color=colours[i], capsize=2, alpha=0.85, label=method, elinewidth=0.6)
        for e, xi, yi in zip(entries, x, y, strict=True):
            if e["suppression_ratio"]:
                ax.annotate(f"SR {e['suppression_ratio']:g}", (xi, yi), fontsize=6,
                            xytext=(3, 3), textcoords="offset points")
    if "gender_worst" in base:
        ax.plot(base["gender_worst"]["uar"]["mean"], clean_emotion, "k*", ms=14,
                label="clean (no protection)")
    for tag, agg in results.get("clean_emotion", {}).items():
        if abs(agg["uar"]["mean"] - clean_emotion) > 1e-9:
            ax.axhline(agg["uar"]["mean"], color="grey", ls="--", lw=0.8)
            ax.annotate(f"clean f_θ {tag}", (50.5, agg["uar"]["mean"]), fontsize=7)
    ax.axhline(clean_emotion, color="black", ls=":", lw=1)
    ax.axvline(50, color="grey", ls=":", lw=1)
    ax.annotate("gender chance", (50.3, ax.get_ylim()[0] + 1), fontsize=7, color="grey")
    ax.set_xlabel("worst-case gender UAR (%), any attacker, informed or not (lower is better)")
    ax.set_ylabel("emotion UAR (%) (higher is better)")
    ax.set_title("Privacy against utility on test speakers, mean ± std over folds")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def tradeoff_figure(results: dict, out: Path) -> bool:
    """The paper's Figure 4 for its two methods; False when results.json has neither."""
    paper = [e for e in results["cloak"] if e.get("method", PAPER_METHODS[e["adversarial"]])
             in PAPER_METHODS]
    if not paper:
        return False
    fig, ax = plt.subplots(figsize=(10, 4.5))
    for adversarial, line, shift in ((False, "--o", -0.7), (True, "-s", 0.7)):
        entries = sorted((e for e in paper if e["adversarial"] == adversarial),
                         key=lambda e: e["suppression_ratio"])
        if not entries:
            continue
        ratios = [e["suppression_ratio"] + shift for e in entries]  # error bars side by side
        for key, (label, colour) in STYLE.items():
            if key not in entries[0]:
                continue
            mean = [e[key]["uar"]["mean"] for e in entries]
            std = [e[key]["uar"]["std"] for e in entries]
            name = f"{label}, {method_label(entries[0])}"
            ax.errorbar(ratios, mean, yerr=std, fmt=line, color=colour, capsize=3,
                        alpha=1.0 if adversarial else 0.6, label=name)
    base = results["baseline"]
    ax.axhline(base["emotion"]["uar"]["mean"], color="tab:blue", ls=":", lw=1)
    ax.axhline(base["gender"]["uar"]["mean"], color="tab:orange", ls=":", lw=1)
    if "gender_worst" in base:
        ax.axhline(base["gender_worst"]["uar"]["mean"], color="tab:purple", ls=":", lw=1)
    ax.axhline(50, color="grey", ls=":", lw=1)
    ax.set_xlabel("suppression ratio SR (%)")
    ax.set_ylabel("UAR (%), mean ± std over folds")
    ax.set_title("Privacy–utility trade-off (dotted: clean baselines, chance gender 50%)")
    ax.set_xticks(sorted({e["suppression_ratio"] for e in paper}))
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return True


def noise_map_figure(wd: Workdir, cloak_dir: Path, out: Path) -> bool:
    """σ and mask of the SR=60 cloaks, plain vs adversarial; False if they are missing."""
    files = [cloak_dir / "cloak_sr60.npz", cloak_dir / "adversarial_sr60.npz"]
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
    fig.suptitle("Noise maps at SR = 60% (first fold)")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return True


def _per_corpus_table(results: dict) -> str:
    """Markdown: per setting and corpus, emotion UAR and every attacker's gender UAR."""
    corpora = sorted(results["baseline"]["emotion"]["per_corpus"])
    families = list(results["baseline"].get("attackers", {}))
    columns = [("emotion", None)] + ([(f, v) for f in families for v in ("ignorant", "informed")]
                                     if families else [("gender_ignorant", None),
                                                       ("gender_informed", None)])
    head = ["setting", "SR %", "corpus"] + [k if v is None else f"{FAMILY_NAMES[k]} {v[:3]}."
                                            for k, v in columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for e in results["cloak"]:
        name = method_label(e, short=True)
        for c in corpora:
            cells = [fmt((e[k] if v is None else e["attackers"][k][v])["per_corpus"][c]["uar"])
                     for k, v in columns]
            lines.append(f"| {name} | {e['suppression_ratio']} | {c} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def clean_attackers_table(results: dict) -> str:
    """Markdown: each attacker's gender UAR on clean test utterances, overall and per corpus."""
    attackers = results["baseline"]["attackers"]
    corpora = sorted(results["baseline"]["emotion"]["per_corpus"])
    lines = ["| attacker | all | " + " | ".join(corpora) + " |", "|---" * (len(corpora) + 2) + "|"]
    for family, agg in attackers.items():
        cells = [fmt(agg["uar"])] + [fmt(agg["per_corpus"][c]["uar"]) if c in agg["per_corpus"]
                                     else "–" for c in corpora]
        lines.append(f"| {FAMILY_NAMES.get(family, family)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def privacy_table(results: dict) -> str:
    """Markdown: per setting, emotion UAR, every attacker's gender UAR, worst case, EER.

    Attacker cells read "ignorant / informed" (means over folds); the clean
    row has one figure per attacker (all fitted on clean features).
    """
    base = results["baseline"]
    families = list(base.get("attackers", {}))
    head = ["setting", "SR %", "emotion UAR"]
    head += [f"{FAMILY_NAMES.get(f, f)} (ign. / inf.)" for f in families]
    head += ["worst case", "worst attacker", "speaker EER"] if families else \
        ["gender ignorant", "gender informed"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    if families:
        cells = [f"{base['attackers'][f]['uar']['mean']:.1f}" for f in families]
        cells += [fmt(base["gender_worst"]["uar"]), base["gender_worst"]["attacker"],
                  _eer(base)]
    else:
        cells = [fmt(base["gender"]["uar"])] * 2
    lines.append(f"| clean | – | {fmt(base['emotion']['uar'])} | " + " | ".join(cells) + " |")
    for entry in results["cloak"]:
        name = method_label(entry)
        if families:
            cells = [f"{entry['attackers'][f]['ignorant']['uar']['mean']:.1f} / "
                     f"{entry['attackers'][f]['informed']['uar']['mean']:.1f}" for f in families]
            cells += [fmt(entry["gender_worst"]["uar"]), entry["gender_worst"]["attacker"],
                      _eer(entry)]
        else:
            cells = [fmt(entry["gender_ignorant"]["uar"]), fmt(entry["gender_informed"]["uar"])]
        lines.append(f"| {name} | {entry['suppression_ratio']} | {fmt(entry['emotion']['uar'])} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def selection_table(results: dict) -> str:
    """Markdown: per method its operating point chosen on validation speakers, then test.

    Drops are against the clean f_θ on the same speakers (validation or test).
    """
    chosen = [e for e in results["cloak"] if "validation" in e]
    if not chosen:
        return ""
    clean = results["baseline"]["emotion"]["uar"]["mean"]
    head = ["method", "SR %", "valid: emotion drop", "valid: worst gender",
            "test: emotion UAR", "emotion drop", "worst gender UAR", "worst attacker",
            "speaker EER", "adversary's last accuracy"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    worst = results["baseline"].get("gender_worst")
    lines.append(f"| clean | – | – | – | {fmt(results['baseline']['emotion']['uar'])} | 0.0 | "
                 f"{fmt(worst['uar']) if worst else '–'} | {worst['attacker'] if worst else '–'}"
                 f" | {_eer(results['baseline'])} | – |")
    for e in sorted(chosen, key=lambda e: e["gender_worst"]["uar"]["mean"]):
        v = e["validation"]
        valid_drop = e["validation_clean"]["valid_emotion"]["mean"] - v["emotion"]["uar"]["mean"]
        accuracy = ", ".join(f"{k} {a['mean']:.0f}%" for k, a in
                             e.get("adversary_accuracy", {}).items()) or "–"
        lines.append(
            f"| {method_label(e)} | {e['suppression_ratio']:g} | {valid_drop:.1f} | "
            f"{v['gender_worst']['uar']['mean']:.1f} | {fmt(e['emotion']['uar'])} | "
            f"{clean - e['emotion']['uar']['mean']:.1f} | {fmt(e['gender_worst']['uar'])} | "
            f"{e['gender_worst']['attacker']} | {_eer(e)} | {accuracy} |")
    return "\n".join(lines) + "\n"


def _eer(entry: dict) -> str:
    return fmt(entry["speaker_eer"]) if "speaker_eer" in entry else "–"


def training_table(wd: Workdir, results: dict) -> str:
    """Markdown: how each fold's SR 0 cloaks of the last run ended training (the history in
    their files), with the adversaries' accuracy on their last epoch's batches."""
    lines = ["| fold | setting | mean σ | emotion CE | gender CE of ψ | ψ accuracy |",
             "|---|---|---|---|---|---|"]
    cloak_dir = wd.root / results["config"]["cloak_dir"]
    for fold in results["config"]["folds"]:
        for name in ("cloak_sr0", "adversarial_sr0"):
            file = cloak_dir / f"fold{fold}" / f"{name}.npz"
            if not file.is_file():
                continue
            last = Cloak.load(file, wd.cfg).meta["history"][-1]
            adversarial = name.startswith("adversarial")
            psi = f"{last['gender_ce']:.2f}" if "gender_ce" in last and adversarial else "–"
            accuracy = ", ".join(f"{k.removeprefix('adversary_acc_')} {v:.0f}%"
                                 for k, v in last.items() if k.startswith("adversary_acc_"))
            lines.append(f"| {fold} | {'adversarial' if adversarial else 'plain'} | "
                         f"{last['sigma_mean']:.2f} | {last['emotion_ce']:.2f} | {psi} | "
                         f"{accuracy or '–'} |")
    return "\n".join(lines) + "\n"


ATTACKERS_TEXT = (
    "Each attacker family exists in two versions. *Ignorant*: fitted on clean features of its "
    "pool. *Informed*: fitted on cloaked features of its pool (the CNN+RNN fine-tuned with fresh "
    "noise every batch, the others on {draws} noise draws per utterance) and selected on cloaked "
    "validation speakers. `cnn` is the paper's CNN+RNN f_g; `stats` a logistic regression on "
    "per-bin utterance statistics; `dvector` a logistic regression on d-vectors of a pretrained "
    "speaker encoder. All are scored on cloaked test utterances; the *worst case* is, per fold, "
    "the highest gender UAR of any of them (mean ± std over folds). Speaker EER: speaker "
    "verification among the test utterances from d-vector cosines (50% = nothing links). "
    "Attackers train on the {pool} pool.")


def write_report(wd: Workdir, results: dict) -> Path:
    """report.md and its figures, from results.json's content and the cloak files it names."""
    cfg = results["config"]
    suffix = file_suffix(results)
    tradeoff, pareto = f"tradeoff{suffix}.png", f"pareto{suffix}.png"
    has_tradeoff = tradeoff_figure(results, wd.root / tradeoff)
    pareto_figure(results, wd.root / pareto)
    first_fold_dir = wd.root / cfg["cloak_dir"] / f"fold{cfg['folds'][0]}"
    has_map = noise_map_figure(wd, first_fold_dir, wd.root / "noise_map.png")
    attacks = cfg.get("attacks", {})
    text = [
        f"# sercloak experiment: {', '.join(wd.corpora)} ({cfg['model']} model, "
        f"folds {cfg['folds']})", "",
        "Utterance-level results on the test speakers of each fold, mean ± std over folds, "
        "in percent.", "",
        "## Clean baselines (the paper's Table 2)", "", table2(results["baseline"]),
    ]
    if "attackers" in results["baseline"]:
        text += ["Gender attackers on clean features (UAR):", "",
                 clean_attackers_table(results), ""]
    text += [
        "## Privacy and utility under the cloak (UAR)", "",
        ATTACKERS_TEXT.format(draws=attacks.get("informed_draws", 1),
                              pool=attacks.get("pool", "adversary")), "",
        privacy_table(results), "", f"![privacy against utility]({pareto})", "",
    ]
    if selection_table(results):
        text += ["## Operating points chosen on validation speakers", "",
                 "Per method, the setting with the lowest worst-case gender UAR among those "
                 "costing at most 2 points of emotion UAR on the primary pool's validation "
                 "speakers (else the one costing least); then its test figures.", "",
                 selection_table(results), ""]
    if has_tradeoff:
        text += [f"![trade-off]({tradeoff})", ""]
    if has_map:
        text += ["![noise maps](noise_map.png)", ""]
    text += ["## Cloak training (SR 0, last epoch, primary training speakers)", "",
             training_table(wd, results), "",
             "## Per corpus", "", _per_corpus_table(results), "",
             confusion_md(results["baseline"]["emotion"], "Clean emotion confusion"), "",
             f"Cloak settings: {cfg['cloak']}; training: {cfg['cloak_train']}; attackers: "
             f"{attacks}; cloak files in `{cfg['cloak_dir']}`.", "",
             f"Wall time: {results['wall_time_s']} s.", ""]
    out = wd.root / f"report{suffix}.md"
    out.write_text("\n".join(text))
    return out
