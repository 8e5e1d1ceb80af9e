"""The last screen of a run: one line per setting that a person reads in a terminal.

report.md holds every table (16 columns and more); what `sercloak experiment` and the
demo print at the end is at most `COLUMNS` wide: per setting its emotion UAR, the paired
emotion drop, the privacy figure with its chance band and p, and a verdict in words.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from ..targets import CHANCE_ALPHA
from .format import lead, method_label, point_words, privacy, shown_entries

COLUMNS = 100
# widths of the figures' columns: emotion, drop [CI], gender [CI], chance band and p, verdict
WIDTHS = (7, 18, 20, 17, 7)
HEAD = ("emotion", "drop [95% CI]", "gender [95% CI]", "chance band, p", "verdict")
SETTING_WIDTH = COLUMNS - sum(WIDTHS) - len(WIDTHS)


def verdict(stat: dict) -> str:
    """A privacy figure in plain words: "chance" when its p cannot tell it from chance."""
    return "chance" if stat["indistinguishable_from_chance"] else "leaks"


def _interval(stat: dict) -> str:
    lo, hi = stat["ci95"]
    return f"{stat['mean']:.1f} [{lo:.1f}, {hi:.1f}]"


def _chance(stat: dict) -> str:
    c = stat["chance"]
    return f"{c['mean']:.0f}–{c['p95']:.0f}, p={c['p']:.2g}"


def _setting(text: str) -> str:
    return text if len(text) <= SETTING_WIDTH else text[:SETTING_WIDTH - 1] + "…"


def _line(setting: str, cells: tuple[str, ...]) -> str:
    """The setting left-aligned, figures right-aligned, the verdict left-aligned."""
    *figures, words = cells
    return " ".join([f"{_setting(setting):<{SETTING_WIDTH}}",
                     *(f"{c:>{w}}" for c, w in zip(figures, WIDTHS[:-1], strict=True)),
                     f"{words:<{WIDTHS[-1]}}"]).rstrip()


def _row(setting: str, emotion: float, drop: str, figure: dict) -> str:
    return _line(setting, (f"{emotion:.1f}", drop, _interval(figure), _chance(figure),
                           verdict(figure)))


def summary(results: dict, report: Path) -> str:
    """The clean reference and each shown setting (those chosen on validation speakers,
    when any were), a line each, then what the verdict means and where report.md is."""
    base = results["baseline"]
    lines = [_line("setting", HEAD),
             _row("clean (no protection)", lead(base["emotion"])["mean"], "0", privacy(base))]
    for e in shown_entries(results):
        point = point_words(e)
        name = method_label(e, short=True) + ("" if point == "–" else f", {point}")
        lines.append(_row(name, lead(e["emotion"])["mean"], _interval(e["emotion_drop"]),
                          privacy(e)))
    cfg = results["config"]
    note = (f"Speaker-balanced UAR (%), test speakers, folds {cfg['folds']}, seeds "
            f"{cfg['seeds']}; drop: clean f_θ minus the setting; gender: the attacker chosen "
            f"on validation speakers; chance band: the same with genders shuffled (mean–95th "
            f"pct.); verdict: chance = indistinguishable from chance (p ≥ {CHANCE_ALPHA}), "
            f"leaks = the attacker beats chance.")
    return "\n".join([*lines, "", *textwrap.wrap(note, COLUMNS),
                      f"Every table: {report}"])
