"""The report's figures (PNG).

- ``pareto.png``: the paired emotion drop against the privacy figure (the
  gender attacker chosen on validation speakers, `privacy.py`), one point per
  method (every setting when none was chosen), 95% interval whiskers on both
  axes, each point's chance band (a grey bar at its height), the clean point,
  the deployable target as one rectangle, and the floor (`methods.FLOOR`: what
  the emotion output alone leaks) as a point with a dashed line; when some
  design lies far out, a second panel draws the same around the target.
- ``tradeoff.png`` (the paper's Figure 4): UAR against suppression ratio for
  the emotion model, the paper's ignorant and informed gender attackers and
  the privacy figure, Cloak vs Cloak + adversarial, with the clean baselines
  as dotted lines; where each fold chose its own ratio on its validation
  speakers, one marker per fold at the ratio it chose.
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

from ..cloak import Cloak  # noqa: E402
from ..data import Workdir  # noqa: E402
from ..features import mel_centres_hz  # noqa: E402
from ..files import atomic_write  # noqa: E402
from ..methods import FLOOR, PAPER_METHODS  # noqa: E402
from ..targets import DEPLOYABLE_DROP, DEPLOYABLE_GENDER  # noqa: E402
from .format import (  # noqa: E402
    lead,
    method_label,
    point_words,
    privacy,
    shown_entries,
)

# the zoomed panel reaches this many points of gender UAR past the target, and is drawn
# only when some design lies further out than twice that
ZOOM_MARGIN = 5.0

STYLE = {"emotion": ("emotion (f_θ)", "tab:blue"),
         "gender_ignorant": ("gender, ignorant cnn (paper)", "tab:orange"),
         "gender_informed": ("gender, informed cnn", "tab:red"),
         "gender_privacy": ("gender, attacker chosen on validation", "tab:purple")}


def _whisker(stat: dict) -> tuple[float, float]:
    lo, hi = stat.get("ci95", (stat["mean"] - stat["std"], stat["mean"] + stat["std"]))
    return stat["mean"] - lo, hi - stat["mean"]


def pareto_figure(results: dict, out: Path) -> None:
    """Paired emotion drop against the privacy figure, with 95% intervals on both and the
    privacy figure's chance band; beside it, when some design lies far from the rest, the
    same drawn again around chance and the target, where the designs crowd."""
    base = results["baseline"]
    floor = next((e for e in shown_entries(results) if e["method"] == FLOOR.name), None)
    entries = [e for e in shown_entries(results) if e["method"] != FLOOR.name]
    points = [(privacy(e), e["emotion_drop"]) for e in entries]
    if floor is not None:
        points.append((privacy(floor), {"mean": 0.0, "std": 0.0}))
    points.append((privacy(base), {"mean": 0.0, "std": 0.0}))
    xs = [v for x, _ in points for v in (x["mean"] - _whisker(x)[0], x["mean"] + _whisker(x)[1])]
    ys = [v for _, y in points for v in (y["mean"] - _whisker(y)[0], y["mean"] + _whisker(y)[1])]
    xlim = (min(45.0, *xs) - 2, max(xs) + 2)
    ylim = (min(-3.0, *ys) - 1, max(DEPLOYABLE_DROP + 1, *ys) + 1)
    near = (xlim[0], DEPLOYABLE_GENDER + ZOOM_MARGIN)
    zoom = xlim[1] > near[1] + ZOOM_MARGIN
    fig, axes = plt.subplots(1, 2 if zoom else 1, figsize=(16 if zoom else 10, 5.5),
                             squeeze=False)
    for ax, limits in zip(axes[0], [xlim, near], strict=False):
        _draw_pareto(ax, entries, points, base, floor, limits, ylim)
        _pareto_axes(ax, results["config"], limits, ylim)
    if zoom:  # one legend, beside the zoomed panel
        axes[0][1].set_title(f"the same, gender UAR ≤ {near[1]:.0f}%", fontsize=9)
        axes[0][0].get_legend().remove()
    fig.tight_layout()
    atomic_write(out, lambda tmp: fig.savefig(tmp, dpi=120))
    plt.close(fig)


def _draw_pareto(ax, entries: list[dict], points: list[tuple[dict, dict]], base: dict,
                 floor: dict | None, xlim: tuple, ylim: tuple) -> None:
    """The target, chance bands, one marker with whiskers per design, the clean point and
    the floor, on one pair of axes."""
    ax.add_patch(plt.Rectangle((xlim[0], ylim[0]), DEPLOYABLE_GENDER - xlim[0],
                               DEPLOYABLE_DROP - ylim[0], color="tab:green", alpha=0.12, lw=0,
                               label=f"deployable target: gender ≤ {DEPLOYABLE_GENDER:.0f}% (or "
                                     f"chance), emotion drop ≤ {DEPLOYABLE_DROP:.0f} point"))
    _chance_bars(ax, points[:-1], (ylim[1] - ylim[0]) * 0.05)
    colours = plt.get_cmap("tab20")(np.linspace(0, 1, max(len(entries), 2)))
    markers = "osD^v<>phX*"
    for i, (e, (x, y)) in enumerate(zip(entries, points, strict=False)):
        ax.errorbar(x["mean"], y["mean"], xerr=np.array([_whisker(x)]).T,
                    yerr=np.array([_whisker(y)]).T, fmt=markers[i % len(markers)],
                    color=colours[i], capsize=2, elinewidth=0.8,
                    label=method_label(e) + ("" if point_words(e) == "–" else
                                             f", {point_words(e)}"))
    clean = privacy(base)
    ax.errorbar(clean["mean"], 0, xerr=np.array([_whisker(clean)]).T, fmt="k*", ms=14,
                capsize=2, label="clean (no protection)")
    if floor is not None:  # what f_θ's own outputs leak: left of it only at a cost
        x = privacy(floor)
        ax.errorbar(x["mean"], 0, xerr=np.array([_whisker(x)]).T, fmt="kx", ms=8, capsize=2,
                    label=f"floor: f_θ's window posteriors alone ({x['mean']:.1f}%)")
        ax.axvline(x["mean"], color="grey", ls="--", lw=1.2)


def _chance_bars(ax, points: list[tuple[dict, dict]], height: float) -> None:
    """Each figure's own chance band (it depends on its attacker's predictions): a grey bar
    from the null's mean to its 95th percentile at the figure's own height (not the clean
    point's: far from chance, its band would only hide the floor's)."""
    for i, (x, y) in enumerate(points):
        ax.barh(y["mean"], x["chance"]["p95"] - x["chance"]["mean"], left=x["chance"]["mean"],
                height=height, color="grey", alpha=0.3, lw=0, zorder=0,
                label=None if i else "chance band: the permutation null's mean to its 95th "
                                     "percentile")


def _pareto_axes(ax, config: dict, xlim: tuple, ylim: tuple) -> None:
    """The Pareto figure's zero lines, limits, labels, title and legend."""
    ax.axhline(0, color="black", ls=":", lw=1)
    ax.axvline(50, color="grey", ls=":", lw=1)
    ax.annotate("gender chance", (50.3, ylim[1] - 0.5), fontsize=7, color="grey", va="top")
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_xlabel("gender UAR (%) of the attacker chosen on validation speakers\n"
                  "(speaker-balanced; lower is better)")
    ax.set_ylabel("emotion drop (points of speaker-balanced UAR,\nclean f_θ minus protected; "
                  "lower is better)")
    ax.set_title(f"Privacy against utility on test speakers ({config['protocol']} protocol, "
                 f"folds {config['folds']}, seeds {config['seeds']})\nwhiskers: 95% "
                 f"intervals (speaker bootstrap)", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))


def _ratios(entry: dict) -> list[int]:
    """The suppression ratio each fold was scored at (one value when the entry is a grid
    point; each fold's own when it was chosen on that fold's validation speakers)."""
    return [p["suppression_ratio"] for p in entry["points"]]


def tradeoff_figure(results: dict, out: Path) -> bool:
    """The paper's Figure 4 for its two methods; False when results.json has neither. A
    grid's points make a line per variant; an entry whose folds chose their own points
    (`--select-on-valid`) is drawn as one marker per fold at the ratio it chose, with that
    fold's test figure."""
    paper = [e for e in results["cloak"] if e["method"] in PAPER_METHODS]
    if not paper:
        return False
    fig, ax = plt.subplots(figsize=(10, 4.5))
    for adversarial, line, shift in ((False, "--o", -0.7), (True, "-s", 0.7)):
        variant = [e for e in paper if e["points"][0]["adversarial"] == adversarial]
        grid = sorted((e for e in variant if len(set(_ratios(e))) == 1),
                      key=lambda e: _ratios(e)[0])
        if grid:
            _draw_grid(ax, grid, line, shift, alpha=1.0 if adversarial else 0.6)
        for e in (e for e in variant if len(set(_ratios(e))) > 1):
            _draw_per_fold(ax, e, line[-1], shift, alpha=1.0 if adversarial else 0.6)
    base = results["baseline"]
    ax.axhline(lead(base["emotion"])["mean"], color="tab:blue", ls=":", lw=1)
    ax.axhline(lead(base["gender"])["mean"], color="tab:orange", ls=":", lw=1)
    ax.axhline(privacy(base)["mean"], color="tab:purple", ls=":", lw=1)
    ax.axhline(50, color="grey", ls=":", lw=1)
    ax.set_xlabel("suppression ratio SR (%)")
    ax.set_ylabel("speaker-balanced UAR (%), mean ± std over folds")
    ax.set_title("Privacy–utility trade-off\n(dotted: clean baselines, chance gender 50%)",
                 fontsize=10)
    ax.set_xticks(sorted({r for e in paper for r in _ratios(e)}))
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    atomic_write(out, lambda tmp: fig.savefig(tmp, dpi=120))
    plt.close(fig)
    return True


def _draw_grid(ax, entries: list[dict], line: str, shift: float, alpha: float) -> None:
    """One variant's grid points (each scored at one ratio on every fold): a line per
    figure, mean ± std over folds, shifted sideways so the two variants' bars do not
    overlap."""
    ratios = [_ratios(e)[0] + shift for e in entries]
    for key, (label, colour) in STYLE.items():
        if key not in entries[0]:
            continue
        mean = [lead(e[key])["mean"] for e in entries]
        std = [lead(e[key])["std"] for e in entries]
        ax.errorbar(ratios, mean, yerr=std, fmt=line, color=colour, capsize=3, alpha=alpha,
                    label=f"{label}, {method_label(entries[0])}")


def _draw_per_fold(ax, entry: dict, marker: str, shift: float, alpha: float) -> None:
    """An entry whose folds chose their own ratios: each fold's test figure at its ratio."""
    ratios = [r + shift for r in _ratios(entry)]
    for key, (label, colour) in STYLE.items():
        if key not in entry:
            continue
        ax.plot(ratios, lead(entry[key])["folds"], marker, ls="none", color=colour,
                alpha=alpha, mfc="none",
                label=f"{label}, {method_label(entry)}, per fold (its chosen SR)")


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
    atomic_write(out, lambda tmp: fig.savefig(tmp, dpi=120))
    plt.close(fig)
    return True
