"""The human side of results: report.md with its tables (`tables.py`) and PNG figures
(`figures.py`), from results.json and the cloak files it names; the last screen a run
prints (`screen.py`).

Tables lead with the speaker-balanced UAR (every test speaker weighs the same;
`evaluate.py` says why) and give the pooled UAR beside it; emotion costs are
paired drops from the clean emotion model on the same utterances, with 95%
intervals from the speaker-level bootstrap (`results.py`); the privacy figure is
the gender attacker chosen on validation speakers, with its interval and chance
band (`privacy.py`).
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..data import Workdir
from ..files import write_text
from ..layout import setting_name
from ..targets import CHANCE_ALPHA, MAX_EMOTION_DROP, USER_LEVEL_REQUESTS
from .figures import noise_map_figure, pareto_figure, tradeoff_figure
from .format import WHY_SPEAKER_BALANCED, lead
from .tables import (
    baselines_md,
    clean_attackers_table,
    confusion_md,
    per_corpus_table,
    privacy_table,
    seeds_line,
    selection_table,
    table2,
    training_table,
)

__all__ = ["baselines_md", "privacy_table", "selection_table", "table2", "write_report"]


ATTACKERS_TEXT = (
    "Each attacker family exists in two versions. *Ignorant*: fitted on clean features of its "
    "speakers. *Informed*: fitted on protected features of its speakers (the CNN+RNN fine-tuned "
    "with fresh noise every batch, the others on {draws} noise draws per utterance) and "
    "selected on protected validation speakers. `cnn` is the paper's CNN+RNN f_g; `stats` a "
    "logistic regression on per-bin utterance statistics; `dvector` a logistic regression on "
    "d-vectors of a pretrained speaker encoder. All are scored on protected test utterances. "
    "The *privacy figure* is, per seed and fold, the gender UAR of the attacker that does "
    "best on its own validation speakers; its *chance band* is the same figure after "
    f"permuting the test speakers' genders (p >= {CHANCE_ALPHA}: indistinguishable from "
    "chance); the *upper bound* is the best attacker on the test speakers, chosen with their "
    f"labels; the *user level* is the chosen attacker pooling {USER_LEVEL_REQUESTS} "
    "utterances per user. Speaker "
    "EER: speaker verification among the test utterances from d-vector cosines (50% = nothing "
    "links). Protocol {protocol}: {speakers}")
PROTOCOL_TEXT = {
    "paper": "the emotion model and the cloak train on the primary pool, the attackers on the "
             "adversary pool (the paper's).",
    "shared": "the emotion model, the cloak and the attackers all train on every non-test "
              "speaker (the attackers select on the adversary pool's validation speakers).",
}


def write_report(wd: Workdir, results: dict, file: Path) -> Path:
    """report.md and its figures beside `file`, from its content (`results`) and the cloak
    files it names."""
    cfg = results["config"]
    protocol, layout = cfg["protocol"], wd.layout
    figure = {k: layout.figure(file, k) for k in ("pareto", "tradeoff", "noise_map")}
    sr60 = [layout.entry_setting(cfg["cloak_dir"], cfg["seeds"][0], cfg["folds"][0],
                                 setting_name(60, adversarial)).cloak
            for adversarial in (False, True)]
    draw = {"tradeoff": lambda: tradeoff_figure(results, figure["tradeoff"]),
            "pareto": lambda: pareto_figure(results, figure["pareto"]),
            "noise_map": lambda: noise_map_figure(wd, sr60, figure["noise_map"])}
    failed: dict[str, str] = {}
    drawn = {k: _drawn(k, draw[k], figure[k], failed) for k in draw}
    attacks = cfg["attacks"]
    name = {k: f.name for k, f in figure.items()}
    text = [
        f"# sercloak experiment: {', '.join(wd.corpora)} ({cfg['model']} model, protocol "
        f"{protocol}, folds {cfg['folds']}, seeds {cfg['seeds']})", "",
        "Utterance-level results (%) on the test speakers of each fold, mean over seeds and "
        "folds; ± is the std over folds, [..] the 95% interval from a speaker-level bootstrap. "
        + WHY_SPEAKER_BALANCED, "",
        "## Clean baselines (the paper's Table 2)", "", table2(results["baseline"]),
        seeds_line(lead(results["baseline"]["emotion"]), "Emotion UAR (speaker-balanced)"),
        "Gender attackers on clean features (UAR):", "", clean_attackers_table(results), "",
    ]
    if selection_table(results):
        text += ["## Operating points chosen on validation speakers", "",
                 "Per method and fold, the setting with the lowest privacy figure among those "
                 f"whose emotion drop is at most {MAX_EMOTION_DROP:g} points on that fold's "
                 "own validation speakers of the primary pool (else the one costing least); "
                 "then its test figures.", "",
                 selection_table(results), ""]
    text += [
        "## Privacy and utility (UAR)", "",
        ATTACKERS_TEXT.format(draws=attacks.get("informed_draws", 1), protocol=protocol,
                              speakers=PROTOCOL_TEXT[protocol]), "",
        privacy_table(results), "",
    ]
    if drawn["pareto"]:
        text += [f"![privacy against utility]({name['pareto']})", ""]
    if drawn["tradeoff"]:
        text += [f"![trade-off]({name['tradeoff']})", ""]
    if drawn["noise_map"]:
        text += [f"![noise maps]({name['noise_map']})", ""]
    text += ["## Cloak training (SR 0, last epoch, first seed)", "",
             training_table(wd, results), "",
             "## Per corpus (speaker-balanced UAR)", "", per_corpus_table(results), "",
             confusion_md(results["baseline"]["emotion"], "Clean emotion confusion"), "",
             f"Cloak settings: {cfg['cloak']}; training: {cfg['cloak_train']}; attackers: "
             f"{attacks}; cloak files in `{cfg['cloak_dir']}`.", "",
             f"Wall time: {results['wall_time_s']} s.", ""]
    text += [f"*The {k} figure could not be drawn: {why}*" for k, why in failed.items()]
    out = layout.report(file)
    write_text(out, "\n".join(text))
    return out


def _drawn(name: str, draw, out: Path, failed: dict[str, str]) -> bool:
    """Whether `draw()` drew figure `name` into `out` (it returns False when there is
    nothing to draw). A figure never fails the run that made the results (hours of work
    are in results.json already): its error is printed and kept in `failed`, the report
    says so instead of showing it, and an older `out` is removed (it would show another
    run's figures)."""
    try:
        return draw() is not False
    except Exception as err:  # noqa: BLE001 - any failure to draw is reported, not raised
        failed[name] = f"{type(err).__name__}: {err}"
        print(f"warning: the {name} figure could not be drawn ({failed[name]}); the tables "
              f"are complete", file=sys.stderr)
        out.unlink(missing_ok=True)
        return False
