"""The experiment's human report: Markdown tables and two PNG figures.

- ``tradeoff.png`` (the paper's Figure 4): UAR against suppression ratio for
  the emotion model and the ignorant and informed gender attackers, Cloak vs
  Cloak + adversarial, with the clean baselines as dashed lines.
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
         "gender_ignorant": ("gender, ignorant attacker", "tab:orange"),
         "gender_informed": ("gender, informed attacker", "tab:red")}


def tradeoff_figure(results: dict, out: Path) -> None:
    fig, ax = plt.subplots(figsize=(10, 4.5))
    for adversarial, line, shift in ((False, "--o", -0.7), (True, "-s", 0.7)):
        entries = sorted((e for e in results["cloak"] if e["adversarial"] == adversarial),
                         key=lambda e: e["suppression_ratio"])
        ratios = [e["suppression_ratio"] + shift for e in entries]  # error bars side by side
        for key, (label, colour) in STYLE.items():
            mean = [e[key]["uar"]["mean"] for e in entries]
            std = [e[key]["uar"]["std"] for e in entries]
            name = f"{label}, {'Cloak + adversarial' if adversarial else 'Cloak'}"
            ax.errorbar(ratios, mean, yerr=std, fmt=line, color=colour, capsize=3,
                        alpha=1.0 if adversarial else 0.6, label=name)
    base = results["baseline"]
    ax.axhline(base["emotion"]["uar"]["mean"], color="tab:blue", ls=":", lw=1)
    ax.axhline(base["gender"]["uar"]["mean"], color="tab:orange", ls=":", lw=1)
    ax.axhline(50, color="grey", ls=":", lw=1)
    ax.set_xlabel("suppression ratio SR (%)")
    ax.set_ylabel("UAR (%), mean ± std over folds")
    ax.set_title("Privacy–utility trade-off (dotted: clean baselines, chance gender 50%)")
    ax.set_xticks(sorted({e["suppression_ratio"] for e in results["cloak"]}))
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


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
    corpora = sorted(results["baseline"]["emotion"]["per_corpus"])
    lines = ["| setting | SR % | corpus | emotion UAR | gender ignorant | gender informed |",
             "|---|---|---|---|---|---|"]
    for e in results["cloak"]:
        name = "Cloak + adv." if e["adversarial"] else "Cloak"
        for c in corpora:
            cells = [fmt(e[k]["per_corpus"][c]["uar"]) for k in STYLE]
            lines.append(f"| {name} | {e['suppression_ratio']} | {c} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def privacy_table(results: dict) -> str:
    """Markdown: one row per setting, UAR (%) of the three models as mean ± std."""
    base = results["baseline"]
    lines = ["| setting | SR % | emotion UAR | gender UAR, ignorant | gender UAR, informed |",
             "|---|---|---|---|---|",
             f"| clean | – | {fmt(base['emotion']['uar'])} | {fmt(base['gender']['uar'])} | "
             f"{fmt(base['gender']['uar'])} |"]
    for entry in results["cloak"]:
        name = "Cloak + adversarial" if entry["adversarial"] else "Cloak"
        lines.append(f"| {name} | {entry['suppression_ratio']} | {fmt(entry['emotion']['uar'])} | "
                     f"{fmt(entry['gender_ignorant']['uar'])} | "
                     f"{fmt(entry['gender_informed']['uar'])} |")
    return "\n".join(lines) + "\n"


def training_table(wd: Workdir, results: dict) -> str:
    """Markdown: how each fold's SR 0 cloaks ended training (the history in their files)."""
    lines = ["| fold | setting | mean σ | emotion CE | gender CE of ψ |", "|---|---|---|---|---|"]
    cloak_dir = wd.root / results["config"]["cloak_dir"]
    for fold in results["config"]["folds"]:
        for name in ("cloak_sr0", "adversarial_sr0"):
            file = cloak_dir / f"fold{fold}" / f"{name}.npz"
            if not file.is_file():
                continue
            last = Cloak.load(file, wd.cfg).meta["history"][-1]
            adversarial = name.startswith("adversarial")
            psi = f"{last['gender_ce']:.2f}" if adversarial else "–"
            lines.append(f"| {fold} | {'Cloak + adv.' if adversarial else 'Cloak'} | "
                         f"{last['sigma_mean']:.2f} | {last['emotion_ce']:.2f} | {psi} |")
    return "\n".join(lines) + "\n"


def write_report(wd: Workdir, results: dict) -> Path:
    """report.md and its figures, from results.json's content and the cloak files it names."""
    cfg = results["config"]
    tradeoff_figure(results, wd.root / "tradeoff.png")
    first_fold_dir = wd.root / cfg["cloak_dir"] / f"fold{cfg['folds'][0]}"
    has_map = noise_map_figure(wd, first_fold_dir, wd.root / "noise_map.png")
    text = [
        f"# sercloak experiment: {', '.join(wd.corpora)} ({cfg['model']} model, "
        f"folds {cfg['folds']})", "",
        "Utterance-level results on the test speakers of each fold, mean ± std over folds, "
        "in percent.", "",
        "## Clean baselines (the paper's Table 2)", "", table2(results["baseline"]),
        "## Privacy and utility under the cloak (UAR)", "",
        "The ignorant attacker is f_g trained on clean adversary-pool data (the paper's "
        "protocol); the informed attacker is f_g fine-tuned on cloaked adversary-pool data "
        "with fresh noise every batch, selected on cloaked validation speakers.", "",
        privacy_table(results), "", "![trade-off](tradeoff.png)", "",
    ]
    if has_map:
        text += ["![noise maps](noise_map.png)", ""]
    text += ["## Cloak training (SR 0, last epoch, primary training speakers)", "",
             training_table(wd, results), "",
             "## Per corpus", "", _per_corpus_table(results), "",
             confusion_md(results["baseline"]["emotion"], "Clean emotion confusion"), "",
             f"Cloak settings: {cfg['cloak']}; training: {cfg['cloak_train']}; informed "
             f"attacker fine-tuning epochs: {cfg['informed_epochs']}; cloak files in "
             f"`{cfg['cloak_dir']}`.", "",
             f"Wall time: {results['wall_time_s']} s.", ""]
    out = wd.root / "report.md"
    out.write_text("\n".join(text))
    return out
